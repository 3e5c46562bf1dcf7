//! Softmax, the fused softmax cross-entropy loss, and layer norm's normalisation. Kernel:
//! `shaders/softmax.wgsl`.

use super::{numel, Arg, GradTarget};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::kernels::{BufId, Kernel, ReduceOp};

pub(super) fn shape(x: &[usize]) -> Result<Vec<usize>> {
    if x.is_empty() {
        return Err(Error::invalid_shape("softmax", x, "needs at least one axis"));
    }
    Ok(x.to_vec())
}

/// Rows and columns of a row-wise op over the last axis.
pub(super) fn rows_cols(x: &[usize]) -> (usize, usize) {
    let cols = *x.last().expect("softmax shapes have rank ≥ 1");
    (numel(x) / cols, cols)
}

pub(super) fn forward(x: Arg, out: Arg) -> Vec<Kernel> {
    let (rows, cols) = rows_cols(x.shape);
    vec![Kernel::Softmax(kn::Softmax {
        x: x.buf,
        out: out.buf,
        rows,
        cols,
    })]
}

pub(super) fn vjp(out: Arg, g: usize, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    let (rows, cols) = rows_cols(out.shape);
    t[0].map(|dx| {
        Kernel::SoftmaxBackward(kn::SoftmaxBackward {
            y: out.buf,
            g,
            out: dx.buf,
            rows,
            cols,
            acc: dx.acc,
        })
    })
    .into_iter()
    .collect()
}

pub(super) fn normalize_shape(x: &[usize]) -> Result<Vec<usize>> {
    if x.is_empty() || x.contains(&0) {
        return Err(Error::invalid_shape(
            "layer_norm",
            x,
            "needs at least one axis and no empty one",
        ));
    }
    Ok(x.to_vec())
}

/// aux[0]: 1/√(variance + ε) per row, for the VJP.
pub(super) fn normalize_forward(x: Arg, eps: f32, out: Arg, aux: &[BufId]) -> Vec<Kernel> {
    let (rows, cols) = rows_cols(x.shape);
    vec![Kernel::Normalize(kn::Normalize {
        x: x.buf,
        out: out.buf,
        rstd: aux[0],
        rows,
        cols,
        eps,
    })]
}

/// d_x = rstd ⊙ (g − mean g − x̂ ⊙ mean(g ⊙ x̂)) per row, from the saved x̂ (the value) and rstd.
pub(super) fn normalize_vjp(out: Arg, g: usize, aux: &[BufId], t: &[Option<GradTarget>]) -> Vec<Kernel> {
    let (rows, cols) = rows_cols(out.shape);
    t[0].map(|dx| {
        Kernel::NormalizeBackward(kn::NormalizeBackward {
            xhat: out.buf,
            rstd: aux[0],
            g,
            out: dx.buf,
            rows,
            cols,
            acc: dx.acc,
        })
    })
    .into_iter()
    .collect()
}

pub(super) fn xent_shape(logits: &[usize], labels: &[usize]) -> Result<Vec<usize>> {
    if logits.len() != 2 || labels.len() != 1 || labels[0] != logits[0] {
        return Err(Error::shape("softmax_cross_entropy", logits, labels));
    }
    if logits[1] > 1 << 24 {
        return Err(Error::invalid_shape(
            "softmax_cross_entropy",
            logits,
            "more than 2^24 classes cannot be indexed exactly by f32 labels",
        ));
    }
    Ok(vec![])
}

/// aux[0]: probabilities (rows×cols), aux[1]: per-row losses, averaged into the scalar.
pub(super) fn xent_forward(logits: Arg, labels: Arg, out: Arg, aux: &[BufId]) -> Vec<Kernel> {
    let (rows, cols) = (logits.shape[0], logits.shape[1]);
    vec![
        Kernel::SoftmaxXent(kn::SoftmaxXent {
            logits: logits.buf,
            labels: labels.buf,
            probs: aux[0],
            loss_rows: aux[1],
            rows,
            cols,
        }),
        Kernel::Reduce(kn::Reduce {
            op: ReduceOp::Mean,
            x: aux[1],
            out: out.buf,
            arg: out.buf,
            outer: 1,
            axis: rows,
            inner: 1,
            acc: false,
        }),
    ]
}

/// d_logits = g · (softmax − onehot) / rows; labels get no gradient.
pub(super) fn xent_vjp(logits: Arg, labels: Arg, g: usize, aux: &[BufId], t: &[Option<GradTarget>]) -> Vec<Kernel> {
    let (rows, cols) = (logits.shape[0], logits.shape[1]);
    t[0].map(|d| {
        Kernel::SoftmaxXentBackward(kn::SoftmaxXentBackward {
            probs: aux[0],
            labels: labels.buf,
            g,
            out: d.buf,
            rows,
            cols,
            acc: d.acc,
        })
    })
    .into_iter()
    .collect()
}
