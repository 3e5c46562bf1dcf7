//! Transpose, reshape and detach. Kernels: `shaders/misc.wgsl`.

use super::{numel, Arg, GradTarget};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::kernels::{BufId, Kernel};

pub(super) fn transpose_shape(x: &[usize]) -> Result<Vec<usize>> {
    if x.len() != 2 {
        return Err(Error::invalid_shape("transpose", x, "expects a matrix (rank 2)"));
    }
    Ok(vec![x[1], x[0]])
}

pub(super) fn transpose_forward(x: Arg, out: Arg) -> Vec<Kernel> {
    vec![Kernel::Transpose(kn::Transpose {
        x: x.buf,
        out: out.buf,
        rows: x.shape[0],
        cols: x.shape[1],
        acc: false,
    })]
}

/// d_x = gᵀ, where g has the transposed shape cols×rows.
pub(super) fn transpose_vjp(x: Arg, g: usize, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    t[0].map(|dx| {
        Kernel::Transpose(kn::Transpose {
            x: g,
            out: dx.buf,
            rows: x.shape[1],
            cols: x.shape[0],
            acc: dx.acc,
        })
    })
    .into_iter()
    .collect()
}

pub(super) fn copy(x: BufId, out: BufId, len: usize, acc: bool) -> Vec<Kernel> {
    vec![Kernel::Copy(kn::Copy { x, out, len, acc })]
}

pub(super) fn reshape_vjp(x: Arg, g: usize, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    t[0].map(|dx| {
        Kernel::Copy(kn::Copy {
            x: g,
            out: dx.buf,
            len: numel(x.shape),
            acc: dx.acc,
        })
    })
    .into_iter()
    .collect()
}
