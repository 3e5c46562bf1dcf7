//! Mean squared error. Kernel: `shaders/loss.wgsl`.

use super::{numel, Arg, GradTarget};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::kernels::Kernel;

pub(super) fn mse_shape(p: &[usize], t: &[usize]) -> Result<Vec<usize>> {
    if p != t {
        return Err(Error::shape("mse", p, t));
    }
    Ok(vec![])
}

pub(super) fn mse_forward(p: Arg, t: Arg, out: Arg) -> Vec<Kernel> {
    vec![Kernel::Mse(kn::Mse {
        p: p.buf,
        t: t.buf,
        out: out.buf,
        len: numel(p.shape),
    })]
}

/// d_p = g·2(p − t)/n, d_t = −d_p.
pub(super) fn mse_vjp(p: Arg, t: Arg, g: usize, tg: &[Option<GradTarget>]) -> Vec<Kernel> {
    (0..2)
        .filter_map(|which| {
            tg[which].map(|d| {
                Kernel::MseBackward(kn::MseBackward {
                    p: p.buf,
                    t: t.buf,
                    g,
                    out: d.buf,
                    len: numel(p.shape),
                    which: which as u32,
                    acc: d.acc,
                })
            })
        })
        .collect()
}
