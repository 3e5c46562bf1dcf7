//! Indexing: rows of a table by integer ids (embedding). Kernels: `shaders/gather.wgsl`.

use super::{numel, Arg, GradTarget};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::kernels::{BufId, Kernel};

/// `table` [vocab, dim] and `ids` of any shape (rank ≤ 3): the result is ids' shape + [dim].
pub(super) fn embedding_shape(table: &[usize], ids: &[usize]) -> Result<Vec<usize>> {
    if table.len() != 2 || ids.len() > 3 {
        return Err(Error::shape("embedding", table, ids));
    }
    let mut s = ids.to_vec();
    s.push(table[1]);
    Ok(s)
}

pub(super) fn embedding_forward(table: Arg, ids: Arg, out: Arg) -> Vec<Kernel> {
    vec![Kernel::Gather(kn::Gather {
        table: table.buf,
        ids: ids.buf,
        out: out.buf,
        rows: numel(ids.shape),
        cols: table.shape[1],
        vocab: table.shape[0],
    })]
}

/// d_table[v] (+)= Σ over the positions holding id v of g's row there.
pub(super) fn embedding_vjp(table: Arg, ids: Arg, g: BufId, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    t[0].map(|dt| {
        Kernel::GatherBackward(kn::GatherBackward {
            ids: ids.buf,
            g,
            out: dt.buf,
            rows: numel(ids.shape),
            cols: table.shape[1],
            vocab: table.shape[0],
            acc: dt.acc,
        })
    })
    .into_iter()
    .collect()
}
