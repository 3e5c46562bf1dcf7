//! Matrix products, batched with broadcasting by PyTorch's `matmul` rules. Kernel:
//! `shaders/matmul.wgsl` (and `matmul_sg.wgsl`), batches as workgroup z.

use super::{Arg, GradTarget};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::kernels::matmul::Batch;
use crate::kernels::{BufId, Kernel, Window2d};

/// A product as matrices: the batch dimensions of A, B and the result (each padded to 2 with
/// leading 1s), their number in the result, and m, k, n. A 1-D A is a 1×k row and a 1-D B a
/// k×1 column (their unit dimension is dropped from the result); the memory is the same.
struct Plan {
    ab: [usize; 2],
    bb: [usize; 2],
    ob: [usize; 2],
    rank: usize,
    m: usize,
    k: usize,
    n: usize,
}

fn plan(a: &[usize], b: &[usize]) -> Result<Plan> {
    let err = || Error::shape("matmul", a, b);
    if a.is_empty() || b.is_empty() {
        return Err(err());
    }
    let (m, ka) = if a.len() == 1 {
        (1, a[0])
    } else {
        (a[a.len() - 2], a[a.len() - 1])
    };
    let (kb, n) = if b.len() == 1 {
        (b[0], 1)
    } else {
        (b[b.len() - 2], b[b.len() - 1])
    };
    if ka != kb {
        return Err(err());
    }
    let batch = |s: &[usize]| -> Vec<usize> { s[..s.len().saturating_sub(2)].to_vec() };
    let (abat, bbat) = (batch(a), batch(b));
    let rank = abat.len().max(bbat.len());
    let pad = |v: &[usize]| -> [usize; 2] {
        let mut p = [1; 2];
        p[2 - v.len()..].copy_from_slice(v);
        p
    };
    if rank > 2 {
        return Err(err());
    }
    let (ab, bb) = (pad(&abat), pad(&bbat));
    let mut ob = [1; 2];
    for d in 0..2 {
        ob[d] = match (ab[d], bb[d]) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(err()),
        };
    }
    Ok(Plan {
        ab,
        bb,
        ob,
        rank,
        m,
        k: ka,
        n,
    })
}

pub(super) fn shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let p = plan(a, b)?;
    let mut s = p.ob[2 - p.rank..].to_vec();
    if a.len() > 1 {
        s.push(p.m);
    }
    if b.len() > 1 {
        s.push(p.n);
    }
    Ok(s)
}

/// One operand of a batched product: its buffer, batch dimensions and matrix size.
#[derive(Clone, Copy)]
struct Operand {
    buf: BufId,
    batch: [usize; 2],
    size: usize,
}

impl Operand {
    /// Element strides along the two batch dimensions (0 where broadcast).
    fn strides(&self) -> [usize; 2] {
        [
            if self.batch[0] == 1 {
                0
            } else {
                self.batch[1] * self.size
            },
            if self.batch[1] == 1 { 0 } else { self.size },
        ]
    }
}

/// Kernels computing t (+)= op(x)·op(y) for every index of the output batch `ob`. Batch
/// dimension 1 runs as workgroup z unless the target is broadcast along it; everything else
/// runs as dispatches one after another, those writing a target block again adding into it,
/// so a broadcast target receives the sum. `x_win`: x is the window matrix of the image in
/// `x.buf` (an implicit GEMM).
#[allow(clippy::too_many_arguments)]
fn batched(
    x: Operand,
    y: Operand,
    t: Operand,
    ob: [usize; 2],
    mkn: (usize, usize, usize),
    ta: bool,
    tb: bool,
    acc: bool,
    x_win: Option<Window2d>,
) -> Vec<Kernel> {
    let (sx, sy, st) = (x.strides(), y.strides(), t.strides());
    // Both batch dimensions as one workgroup z where the target is not broadcast and each
    // operand has the whole batch or none of it (its offset is then linear in the flattened
    // index): [B, H, m, k] × [B, H, k, n] is one dispatch of B·H products, not B of H.
    let per_product = |o: &Operand| match o.batch {
        b if b == ob => Some(o.size),
        [1, 1] => Some(0),
        _ => None,
    };
    let product = |batch: Batch, acc: bool| {
        Kernel::MatMul(kn::MatMul {
            a: x.buf,
            b: y.buf,
            out: t.buf,
            m: mkn.0,
            k: mkn.1,
            n: mkn.2,
            ta,
            tb,
            acc,
            batch,
            a_win: x_win,
        })
    };
    if let (true, Some(sa), Some(sb)) = (ob[0] > 1 && t.batch == ob, per_product(&x), per_product(&y)) {
        let batch = Batch {
            count: ob[0] * ob[1],
            a_off: 0,
            b_off: 0,
            c_off: 0,
            sa,
            sb,
            sc: t.size,
        };
        return vec![product(batch, acc)];
    }
    let z_batch = t.batch[1] == ob[1];
    let mut ks = Vec::new();
    for i0 in 0..ob[0] {
        let inner: Vec<(usize, usize)> = if z_batch {
            vec![(0, ob[1])]
        } else {
            (0..ob[1]).map(|i| (i, 1)).collect()
        };
        for (i1, count) in inner {
            let first = (i0 == 0 || t.batch[0] == ob[0]) && (i1 == 0 || t.batch[1] == ob[1]);
            let batch = Batch {
                count,
                a_off: i0 * sx[0] + i1 * sx[1],
                b_off: i0 * sy[0] + i1 * sy[1],
                c_off: i0 * st[0] + i1 * st[1],
                sa: sx[1],
                sb: sy[1],
                sc: st[1],
            };
            ks.push(product(batch, acc || !first));
        }
    }
    ks
}

fn operands(a: Arg, b: Arg) -> (Plan, Operand, Operand) {
    let mut p = plan(a.shape, b.shape).expect("shapes were checked when the node was added");
    // B shared by every product and A not broadcast (x·W on a batch of sequences): in memory
    // the products are one matmul with the batch folded into m, for the forward and both VJPs
    // (dB = A_flatᵀ·G_flat in one dispatch, not one dispatch per product adding into dB).
    if p.bb == [1, 1] && p.ab == p.ob {
        p.m *= p.ob[0] * p.ob[1];
        p.ab = [1, 1];
        p.ob = [1, 1];
    }
    let oa = Operand {
        buf: a.buf,
        batch: p.ab,
        size: p.m * p.k,
    };
    let ob = Operand {
        buf: b.buf,
        batch: p.bb,
        size: p.k * p.n,
    };
    (p, oa, ob)
}

/// C = A·B; with `a_win`, A is the window matrix (of shape `a.shape`) of the image in `a.buf`.
pub(super) fn forward(a: Arg, a_win: Option<Window2d>, b: Arg, out: Arg) -> Vec<Kernel> {
    let (p, oa, ob) = operands(a, b);
    let c = Operand {
        buf: out.buf,
        batch: p.ob,
        size: p.m * p.n,
    };
    batched(oa, ob, c, p.ob, (p.m, p.k, p.n), false, false, false, a_win)
}

/// dA = G·Bᵀ and dB = Aᵀ·G per product, the transposed operand read in place by the kernel,
/// summed over the batch dimensions an operand was broadcast along. `a_win` as in [`forward`]
/// (dA is then the window matrix's gradient, in `t[0]`'s buffer).
pub(super) fn vjp(a: Arg, a_win: Option<Window2d>, b: Arg, g: BufId, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    let (p, oa, ob) = operands(a, b);
    let og = Operand {
        buf: g,
        batch: p.ob,
        size: p.m * p.n,
    };
    let mut ks = vec![];
    if let Some(da) = t[0] {
        let target = Operand { buf: da.buf, ..oa };
        ks.extend(batched(
            og,
            ob,
            target,
            p.ob,
            (p.m, p.n, p.k),
            false,
            true,
            da.acc,
            None,
        ));
    }
    if let Some(db) = t[1] {
        let target = Operand { buf: db.buf, ..ob };
        ks.extend(batched(
            oa,
            og,
            target,
            p.ob,
            (p.k, p.m, p.n),
            true,
            false,
            db.acc,
            a_win,
        ));
    }
    ks
}
