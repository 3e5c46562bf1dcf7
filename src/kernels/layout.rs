//! Strided copies between views of buffers (`shaders/layout.wgsl`): what permute, narrow and
//! concatenation, and their VJPs, run on.

use super::{par, put, u, wgsl_params, with_out, BufId, Cx, Kernel, KernelDef, Launch, Real};
use crate::error::Result;

wgsl_params! {
    /// `Params` of `shaders/layout.wgsl`.
    LayoutParams for "layout" {
        /// the index space, rank 4 with leading extents 1
        shape: [u32; 4],
        /// element strides of the source view
        x_str: [u32; 4],
        /// element strides of the destination view
        out_str: [u32; 4],
        x_off: u32,
        out_off: u32,
        /// elements copied: the product of `shape`
        len: u32,
        acc: u32,
    }
}

/// A view of a buffer: its first element and the element stride of each of 4 axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct View {
    pub offset: usize,
    pub strides: [usize; 4],
}

impl View {
    /// The whole of a contiguous tensor of `shape` (rank 4).
    pub fn contiguous(shape: &[usize; 4]) -> View {
        let mut strides = [0; 4];
        let mut acc = 1;
        for d in (0..4).rev() {
            strides[d] = acc;
            acc *= shape[d];
        }
        View { offset: 0, strides }
    }

    #[inline(always)]
    fn at(&self, i: &[usize; 4]) -> usize {
        self.offset + i.iter().zip(&self.strides).map(|(a, s)| a * s).sum::<usize>()
    }
}

/// For every index i of `shape`: out[out_view(i)] (+)= x[x_view(i)]. The destination view
/// must not map two indices to one element.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StridedCopy {
    pub x: BufId,
    pub out: BufId,
    pub shape: [usize; 4],
    pub x_view: View,
    pub out_view: View,
    pub acc: bool,
}

impl KernelDef for StridedCopy {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let len: usize = self.shape.iter().product();
        let p = LayoutParams {
            shape: self.shape.map(u),
            x_str: self.x_view.strides.map(u),
            out_str: self.out_view.strides.map(u),
            x_off: u(self.x_view.offset),
            out_off: u(self.out_view.offset),
            len: u(len),
            acc: self.acc as u32,
        };
        let binds = vec![(1, self.x, true), (3, self.out, false)];
        Ok(vec![Launch::new("strided_copy", &p, binds, cx.elems(len)?)])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let acc = self.acc;
        let (s, xv, ov) = by_destination(self.shape, self.x_view, self.out_view);
        with_out!(b, self.out, |o, b| {
            let x = &b[self.x];
            let (xs3, os3) = (xv.strides[3], ov.strides[3]);
            // One row of the innermost axis, from x[x0] on into `o`.
            let n3 = s[3];
            #[inline(always)]
            fn copy<T: Real>(o: &mut [T], x: &[T], x0: usize, n3: usize, [xs3, os3]: [usize; 2], acc: bool) {
                if xs3 == 1 && os3 == 1 && !acc {
                    o[..n3].copy_from_slice(&x[x0..x0 + n3]);
                } else {
                    for i3 in 0..n3 {
                        put(&mut o[i3 * os3], x[x0 + i3 * xs3], acc);
                    }
                }
            }
            let st = [xs3, os3];
            let rows = s[0] * s[1] * s[2];
            match pitch(&s, &ov.strides) {
                // Rows `pitch` apart in the destination, each within its pitch: runs of rows,
                // one per thread (the last row on its own: it may end before its pitch does).
                Some(pitch) if rows > 1 && s[3] > 0 => {
                    let o = &mut o[ov.offset..];
                    let (body, last) = o.split_at_mut((rows - 1) * pitch);
                    par::rows(
                        body,
                        pitch,
                        s[3],
                        #[inline(always)]
                        |rs, run| {
                            let mut i = 0;
                            super::binary::rows_in(
                                &s,
                                &xv.strides,
                                &[0; 4],
                                rs,
                                #[inline(always)]
                                |_, x0, _, _, _, _| {
                                    copy(&mut run[i * pitch..], x, xv.offset + x0, n3, st, acc);
                                    i += 1;
                                },
                            )
                        },
                    );
                    super::binary::rows_in(&s, &xv.strides, &[0; 4], rows - 1..rows, |_, x0, _, _, _, _| {
                        copy(last, x, xv.offset + x0, n3, st, acc)
                    });
                }
                _ => {
                    for i0 in 0..s[0] {
                        for i1 in 0..s[1] {
                            for i2 in 0..s[2] {
                                // One row of the innermost axis: its start through the views.
                                let row = [i0, i1, i2, 0];
                                copy(&mut o[ov.at(&row)..], x, xv.at(&row), n3, st, acc);
                            }
                        }
                    }
                }
            }
        })
    }
}

/// The same copy with its axes ordered by the destination's strides, largest first (axes of
/// extent 1 first of all): a destination that a permutation made strided is walked in memory
/// order. Each destination element still receives exactly one value, so the order of the walk
/// changes nothing.
fn by_destination(shape: [usize; 4], x: View, out: View) -> ([usize; 4], View, View) {
    let mut axes = [0, 1, 2, 3];
    axes.sort_by_key(|&d| std::cmp::Reverse(if shape[d] == 1 { usize::MAX } else { out.strides[d] }));
    let pick = |v: &View| View {
        offset: v.offset,
        strides: axes.map(|d| if shape[d] == 1 { 0 } else { v.strides[d] }),
    };
    (axes.map(|d| shape[d]), pick(&x), pick(&out))
}

/// The distance between consecutive rows (over axes 0..2, innermost last) of a destination laid
/// out as rows at a fixed pitch, with each row (`shape[3]` elements at `strides[3]`) inside its
/// pitch; `None` for any other layout.
fn pitch(shape: &[usize; 4], strides: &[usize; 4]) -> Option<usize> {
    let span = shape[3].saturating_sub(1) * strides[3] + 1;
    let inner = (0..3).rev().find(|&d| shape[d] > 1)?;
    let pitch = strides[inner];
    let mut expected = pitch;
    for d in (0..3).rev().filter(|&d| shape[d] > 1) {
        if strides[d] != expected {
            return None;
        }
        expected *= shape[d];
    }
    (pitch >= span).then_some(pitch)
}

/// Representative kernels of the family (one entry point, no constants).
pub(crate) fn examples() -> Vec<Kernel> {
    let shape = [1, 2, 3, 4];
    vec![StridedCopy {
        x: 0,
        out: 1,
        shape,
        x_view: View::contiguous(&shape),
        out_view: View::contiguous(&shape),
        acc: false,
    }
    .into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_at_a_pitch_are_recognised_and_nothing_else() {
        // Contiguous: the pitch is the row length.
        assert_eq!(pitch(&[2, 3, 4, 5], &View::contiguous(&[2, 3, 4, 5]).strides), Some(5));
        // A narrow's destination: rows of 64 every 192.
        assert_eq!(pitch(&[1, 1, 2048, 64], &[0, 0, 192, 1]), Some(192));
        // Axes of extent 1 carry any stride.
        assert_eq!(pitch(&[1, 4, 1, 8], &[7, 8, 99, 1]), Some(8));
        // Rows that overlap the next one, or outer axes that do not nest, are not pitched rows.
        assert_eq!(pitch(&[1, 1, 10, 8], &[0, 0, 4, 1]), None);
        assert_eq!(pitch(&[1, 3, 4, 5], &[0, 5, 15, 1]), None);
        // A single row has no pitch to speak of.
        assert_eq!(pitch(&[1, 1, 1, 8], &[0, 0, 0, 1]), None);
    }

    #[test]
    fn a_permuted_destination_is_walked_in_memory_order() {
        // out[i0, i2, i1, i3] = x[i0, i1, i2, i3] (heads moved in front of time): the
        // destination's strides in iteration order are [4096, 16, 64, 1].
        let (s, xv, ov) = by_destination(
            [32, 4, 64, 16],
            View {
                offset: 0,
                strides: [4096, 1024, 16, 1],
            },
            View {
                offset: 0,
                strides: [4096, 16, 64, 1],
            },
        );
        assert_eq!(s, [32, 64, 4, 16]);
        assert_eq!(ov.strides, View::contiguous(&s).strides);
        assert_eq!(xv.strides, [4096, 16, 1024, 1]);
    }
}
