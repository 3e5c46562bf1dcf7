//! Dropout (`shaders/dropout.wgsl`): a random keep mask, saved, and its VJP g ⊙ mask (the binary
//! multiply's VJP kernel).

use super::{numel, Arg, GradTarget};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::kernels::{BinaryOp, BufId, Kernel};

/// The state input holds the draw counter and the seed as four 16-bit halves.
pub(super) fn shape(x: &[usize], state: &[usize]) -> Result<Vec<usize>> {
    if state != [4] {
        return Err(Error::shape("dropout", x, state));
    }
    Ok(x.to_vec())
}

pub(super) fn forward(x: Arg, state: Arg, p: f32, stream: u32, out: Arg, aux: &[BufId]) -> Vec<Kernel> {
    let (threshold, scale) = kn::dropout::threshold_and_scale(p);
    vec![Kernel::Dropout(kn::Dropout {
        x: x.buf,
        state: state.buf,
        out: out.buf,
        mask: aux[0],
        len: numel(x.shape),
        stream,
        threshold,
        scale,
    })]
}

/// d_x (+)= g ⊙ mask, with the mask the forward pass saved.
pub(super) fn vjp(x: Arg, out: Arg, g: BufId, aux: &[BufId], t: &[Option<GradTarget>]) -> Vec<Kernel> {
    let mask = Arg {
        buf: aux[0],
        shape: x.shape,
    };
    super::binary::vjp(BinaryOp::Mul, x, mask, out, g, &[t[0], None])
}
