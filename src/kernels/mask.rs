//! Masked fill and its VJP (`shaders/mask.wgsl`): what `masked_fill` and `where` run on.

use super::{par, put, u, wgsl_params, with_out, BufId, Cx, Kernel, KernelDef, Launch, Real};
use crate::error::Result;

wgsl_params! {
    /// `Params` of `shaders/mask.wgsl`.
    MaskParams for "mask" {
        /// the index space (x's shape), rank 4 with leading extents 1
        shape: [u32; 4],
        /// element strides of the mask (0 along axes it is broadcast over)
        m_str: [u32; 4],
        len: u32,
        acc: u32,
        /// 1: a zero mask element is "set"
        invert: u32,
        /// the fill value
        value: f32,
    }
}

/// out = value where the mask is set, x elsewhere; x and out contiguous over `shape`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MaskFill {
    pub x: BufId,
    pub mask: BufId,
    pub out: BufId,
    pub shape: [usize; 4],
    pub mask_strides: [usize; 4],
    pub value: f32,
    pub invert: bool,
}

/// d_x (+)= g where the mask is not set, 0 where it is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MaskFillBackward {
    pub g: BufId,
    pub mask: BufId,
    pub out: BufId,
    pub shape: [usize; 4],
    pub mask_strides: [usize; 4],
    pub invert: bool,
    pub acc: bool,
}

/// `f(i, set, &mut out[i])` for every flat index i of `shape`, `set` telling whether the mask
/// (read through its strides, once per row of the innermost axis) is set there, inverted with
/// `invert`: runs of rows, one per thread (`par::rows`). Pass `f` as an `#[inline(always)]`
/// closure.
#[inline(always)]
fn each_masked<T: Real>(
    mask: &[T],
    shape: &[usize; 4],
    strides: &[usize; 4],
    invert: bool,
    out: &mut [T],
    f: impl Fn(usize, bool, &mut T) + Sync,
) {
    let (len, n3) = (shape.iter().product::<usize>(), shape[3]);
    par::rows(
        &mut out[..len],
        n3,
        n3,
        #[inline(always)]
        |rows, run| {
            let base = rows.start * n3;
            super::binary::rows_in(
                shape,
                strides,
                &[0; 4],
                rows,
                #[inline(always)]
                |o0, m0, _, n, m3, _| {
                    for j in 0..n {
                        f(
                            o0 + j,
                            (mask[m0 + j * m3] != T::zero()) != invert,
                            &mut run[o0 + j - base],
                        );
                    }
                },
            )
        },
    )
}

fn params(shape: &[usize; 4], strides: &[usize; 4], invert: bool, acc: bool, value: f32) -> MaskParams {
    MaskParams {
        shape: shape.map(u),
        m_str: strides.map(u),
        len: u(shape.iter().product()),
        acc: acc as u32,
        invert: invert as u32,
        value,
    }
}

impl KernelDef for MaskFill {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let p = params(&self.shape, &self.mask_strides, self.invert, false, self.value);
        let binds = vec![(1, self.x, true), (2, self.mask, true), (3, self.out, false)];
        Ok(vec![Launch::new("mask_fill", &p, binds, cx.elems(p.len as usize)?)])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let value = T::from_f64(self.value as f64);
        with_out!(b, self.out, |o, b| {
            let x = &b[self.x];
            let (mask, strides) = (&b[self.mask], &self.mask_strides);
            each_masked(
                mask,
                &self.shape,
                strides,
                self.invert,
                o,
                #[inline(always)]
                |i, s, o| {
                    *o = if s { value } else { x[i] };
                },
            )
        })
    }
}

impl KernelDef for MaskFillBackward {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let p = params(&self.shape, &self.mask_strides, self.invert, self.acc, 0.0);
        let binds = vec![(1, self.g, true), (2, self.mask, true), (3, self.out, false)];
        Ok(vec![Launch::new(
            "mask_fill_backward",
            &p,
            binds,
            cx.elems(p.len as usize)?,
        )])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        with_out!(b, self.out, |o, b| {
            let g = &b[self.g];
            let (mask, strides) = (&b[self.mask], &self.mask_strides);
            each_masked(
                mask,
                &self.shape,
                strides,
                self.invert,
                o,
                #[inline(always)]
                |i, s, o| {
                    put(o, if s { T::zero() } else { g[i] }, self.acc);
                },
            )
        })
    }
}

/// Representative kernels of the family.
pub(crate) fn examples() -> Vec<Kernel> {
    let (shape, mask_strides) = ([1, 2, 3, 4], [0, 0, 4, 1]);
    vec![
        MaskFill {
            x: 0,
            mask: 1,
            out: 2,
            shape,
            mask_strides,
            value: -1.0,
            invert: false,
        }
        .into(),
        MaskFillBackward {
            g: 0,
            mask: 1,
            out: 2,
            shape,
            mask_strides,
            invert: true,
            acc: false,
        }
        .into(),
    ]
}
