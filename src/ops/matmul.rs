//! Matrix multiply. Kernel: `shaders/matmul.wgsl`.

use super::{Arg, GradTarget};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::kernels::Kernel;

pub(super) fn shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    if a.len() != 2 || b.len() != 2 || a[1] != b[0] {
        return Err(Error::shape("matmul", a, b));
    }
    Ok(vec![a[0], b[1]])
}

pub(super) fn forward(a: Arg, b: Arg, out: Arg) -> Vec<Kernel> {
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1]);
    vec![Kernel::MatMul(kn::MatMul {
        a: a.buf,
        b: b.buf,
        out: out.buf,
        m,
        k,
        n,
        ta: false,
        tb: false,
        acc: false,
    })]
}

/// dA = G·Bᵀ and dB = Aᵀ·G, the transposed operand read in place by the kernel.
pub(super) fn vjp(a: Arg, b: Arg, g: usize, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1]);
    let mut ks = vec![];
    if let Some(da) = t[0] {
        ks.push(Kernel::MatMul(kn::MatMul {
            a: g,
            b: b.buf,
            out: da.buf,
            m,
            k: n,
            n: k,
            ta: false,
            tb: true,
            acc: da.acc,
        }));
    }
    if let Some(db) = t[1] {
        ks.push(Kernel::MatMul(kn::MatMul {
            a: a.buf,
            b: g,
            out: db.buf,
            m: k,
            k: m,
            n,
            ta: true,
            tb: false,
            acc: db.acc,
        }));
    }
    ks
}
