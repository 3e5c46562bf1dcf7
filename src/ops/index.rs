//! Indexing and masking: rows of a table by integer ids (embedding; `shaders/gather.wgsl`) and
//! masked fill (`shaders/mask.wgsl`).

use super::{numel, pad4, Arg, GradTarget};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::kernels::{Bcast, BufId, Kernel};

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

/// x with `value` where `mask` (broadcast to x's shape) is nonzero, or zero when `invert`.
pub(super) fn masked_fill_shape(x: &[usize], mask: &[usize]) -> Result<Vec<usize>> {
    super::layout::expand_shape(mask, x).map_err(|_| Error::shape("masked_fill", x, mask))
}

/// x's shape and the mask's strides over it (0 along the axes the mask is broadcast over).
fn mask_geometry(x: &[usize], mask: &[usize]) -> ([usize; 4], [usize; 4]) {
    (pad4(x), Bcast::strides(&pad4(mask)))
}

pub(super) fn masked_fill_forward(x: Arg, mask: Arg, value: f32, invert: bool, out: Arg) -> Vec<Kernel> {
    let (shape, mask_strides) = mask_geometry(x.shape, mask.shape);
    vec![Kernel::MaskFill(kn::MaskFill {
        x: x.buf,
        mask: mask.buf,
        out: out.buf,
        shape,
        mask_strides,
        value,
        invert,
    })]
}

/// d_x (+)= g where the mask is not set (the filled value does not depend on x).
pub(super) fn masked_fill_vjp(x: Arg, mask: Arg, invert: bool, g: BufId, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    let (shape, mask_strides) = mask_geometry(x.shape, mask.shape);
    t[0].map(|dx| {
        Kernel::MaskFillBackward(kn::MaskFillBackward {
            g,
            mask: mask.buf,
            out: dx.buf,
            shape,
            mask_strides,
            invert,
            acc: dx.acc,
        })
    })
    .into_iter()
    .collect()
}
