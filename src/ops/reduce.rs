//! Sum, mean and max along an axis. Kernel: `shaders/reduce.wgsl`.

use super::{numel, Arg, GradTarget};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::kernels::{BufId, Kernel, ReduceOp};

pub(super) fn shape(op: ReduceOp, x: &[usize], axis: Option<usize>, keepdim: bool) -> Result<Vec<usize>> {
    match axis {
        None if keepdim => Ok(vec![1; x.len()]),
        None => Ok(vec![]),
        Some(a) if a >= x.len() => Err(Error::invalid_shape(
            op.name(),
            x,
            format!("axis {a} is out of range for rank {}", x.len()),
        )),
        Some(a) => {
            let mut s = x.to_vec();
            if keepdim {
                s[a] = 1;
            } else {
                s.remove(a);
            }
            Ok(s)
        }
    }
}

/// x viewed as [outer, axis, inner].
fn split(x: &[usize], axis: Option<usize>) -> (usize, usize, usize) {
    match axis {
        None => (1, numel(x), 1),
        Some(a) => (numel(&x[..a]), x[a], numel(&x[a + 1..])),
    }
}

pub(super) fn forward(op: ReduceOp, x: Arg, axis: Option<usize>, out: Arg, aux: &[BufId]) -> Vec<Kernel> {
    let (outer, ax, inner) = split(x.shape, axis);
    let arg = aux.first().copied().unwrap_or(out.buf);
    vec![Kernel::Reduce(kn::Reduce {
        op,
        x: x.buf,
        out: out.buf,
        arg,
        outer,
        axis: ax,
        inner,
        acc: false,
    })]
}

pub(super) fn vjp(
    op: ReduceOp,
    x: Arg,
    axis: Option<usize>,
    g: usize,
    aux: &[BufId],
    t: &[Option<GradTarget>],
) -> Vec<Kernel> {
    let (outer, ax, inner) = split(x.shape, axis);
    let arg = aux.first().copied().unwrap_or(g);
    t[0].map(|dx| {
        Kernel::ReduceBackward(kn::ReduceBackward {
            op,
            g,
            arg,
            out: dx.buf,
            outer,
            axis: ax,
            inner,
            acc: dx.acc,
        })
    })
    .into_iter()
    .collect()
}
