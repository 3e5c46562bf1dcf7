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
        let (s, xv, ov, acc) = (self.shape, self.x_view, self.out_view, self.acc);
        with_out!(b, self.out, |o, b| {
            let x = &b[self.x];
            let (xs3, os3) = (xv.strides[3], ov.strides[3]);
            if !acc && ov.strides == View::contiguous(&s).strides {
                // A gather into a contiguous destination (a permutation's copy): runs of its
                // rows, one per thread.
                let (len, n3) = (s.iter().product::<usize>(), s[3]);
                let o = &mut o[ov.offset..ov.offset + len];
                par::rows(
                    o,
                    n3,
                    n3,
                    #[inline(always)]
                    |rows, run| {
                        let base = rows.start * n3;
                        super::binary::rows_in(&s, &xv.strides, &[0; 4], rows, |o0, x0, _, n, _, _| {
                            let (o, x0) = (&mut run[o0 - base..o0 - base + n], xv.offset + x0);
                            if xs3 == 1 {
                                o.copy_from_slice(&x[x0..x0 + n]);
                            } else {
                                for (i3, o) in o.iter_mut().enumerate() {
                                    *o = x[x0 + i3 * xs3];
                                }
                            }
                        })
                    },
                );
            } else {
                for i0 in 0..s[0] {
                    for i1 in 0..s[1] {
                        for i2 in 0..s[2] {
                            // One row of the innermost axis: its start through the views, then strides.
                            let row = [i0, i1, i2, 0];
                            let (x0, o0) = (xv.at(&row), ov.at(&row));
                            if xs3 == 1 && os3 == 1 && !acc {
                                o[o0..o0 + s[3]].copy_from_slice(&x[x0..x0 + s[3]]);
                            } else {
                                for i3 in 0..s[3] {
                                    put(&mut o[o0 + i3 * os3], x[x0 + i3 * xs3], acc);
                                }
                            }
                        }
                    }
                }
            }
        })
    }
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
