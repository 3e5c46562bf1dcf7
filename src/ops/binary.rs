//! Broadcasting elementwise ops and bias-add. Kernels: `shaders/binary.wgsl`, `shaders/misc.wgsl`.

use super::{numel, pad4, Arg, GradTarget};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::kernels::{Bcast, BinaryOp, Kernel, ReduceOp};

/// NumPy broadcasting: align trailing axes; extents must match or be 1.
pub(super) fn shape(op: BinaryOp, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(Error::shape(op.name(), a, b)),
        };
    }
    Ok(out)
}

fn bcast(a: &[usize], b: &[usize], out: &[usize]) -> Bcast {
    Bcast {
        out: pad4(out),
        a_shape: pad4(a),
        b_shape: pad4(b),
    }
}

pub(super) fn forward(op: BinaryOp, a: Arg, b: Arg, out: Arg) -> Vec<Kernel> {
    vec![Kernel::Binary(kn::Binary {
        op,
        a: a.buf,
        b: b.buf,
        out: out.buf,
        bc: bcast(a.shape, b.shape, out.shape),
    })]
}

/// d_a = Σ_broadcast g ⊙ ∂(a∘b)/∂a, likewise for b.
pub(super) fn vjp(op: BinaryOp, a: Arg, b: Arg, out: Arg, g: usize, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    let bc = bcast(a.shape, b.shape, out.shape);
    (0..2)
        .filter_map(|which| {
            t[which].map(|d| {
                Kernel::BinaryBackward(kn::BinaryBackward {
                    op,
                    a: a.buf,
                    b: b.buf,
                    g,
                    out: d.buf,
                    bc,
                    which: which as u32,
                    acc: d.acc,
                })
            })
        })
        .collect()
}

pub(super) fn bias_add_shape(x: &[usize], bias: &[usize]) -> Result<Vec<usize>> {
    let ok =
        x.len() == 2 && ((bias.len() == 1 && bias[0] == x[1]) || (bias.len() == 2 && bias[0] == 1 && bias[1] == x[1]));
    if !ok {
        return Err(Error::shape("bias_add", x, bias));
    }
    Ok(x.to_vec())
}

pub(super) fn bias_add_forward(x: Arg, bias: Arg, out: Arg) -> Vec<Kernel> {
    vec![Kernel::BiasAdd(kn::BiasAdd {
        x: x.buf,
        bias: bias.buf,
        out: out.buf,
        rows: x.shape[0],
        cols: x.shape[1],
    })]
}

/// d_x = g; d_bias = column sums of g (a reduction over the rows).
pub(super) fn bias_add_vjp(x: Arg, g: usize, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    let (rows, cols) = (x.shape[0], x.shape[1]);
    let mut ks = vec![];
    if let Some(dx) = t[0] {
        ks.push(Kernel::Copy(kn::Copy {
            x: g,
            out: dx.buf,
            len: numel(x.shape),
            acc: dx.acc,
        }));
    }
    if let Some(db) = t[1] {
        ks.push(Kernel::Reduce(kn::Reduce {
            op: ReduceOp::Sum,
            x: g,
            out: db.buf,
            arg: db.buf,
            outer: 1,
            axis: rows,
            inner: cols,
            acc: db.acc,
        }));
    }
    ks
}
