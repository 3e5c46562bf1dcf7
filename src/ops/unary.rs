//! Elementwise functions of one argument. Kernel: `shaders/unary.wgsl`.

use super::{numel, Arg, GradTarget};
use crate::kernels as kn;
use crate::kernels::{Kernel, UnaryOp};

pub(super) fn forward(op: UnaryOp, x: Arg, out: Arg) -> Vec<Kernel> {
    vec![Kernel::Unary(kn::Unary {
        op,
        x: x.buf,
        out: out.buf,
        len: numel(x.shape),
    })]
}

/// d_x = g ⊙ f'(x), with f' taken from the saved output where it can (σ, tanh, exp).
pub(super) fn vjp(op: UnaryOp, x: Arg, out: Arg, g: usize, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    t[0].map(|dx| {
        Kernel::UnaryBackward(kn::UnaryBackward {
            op,
            x: x.buf,
            y: out.buf,
            g,
            out: dx.buf,
            len: numel(x.shape),
            acc: dx.acc,
        })
    })
    .into_iter()
    .collect()
}
