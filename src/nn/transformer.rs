//! The layers of a small decoder-only transformer, built from graph ops, with PyTorch's
//! state-dict names: [`LayerNorm`], [`Embedding`], causal [`MultiHeadAttention`] (as
//! `nn.MultiheadAttention`: `in_proj_weight`, `in_proj_bias`, `out_proj.weight`, `out_proj.bias`)
//! and a pre-norm [`TransformerBlock`] (as `nn.TransformerEncoderLayer(norm_first=True,
//! activation="gelu")`: `self_attn`, `linear1`, `linear2`, `norm1`, `norm2`).
//!
//! Matrices are in the graph's layout (in×out); checkpoints in PyTorch's layout transpose them
//! on save and load (see [`crate::io::Layout`]). Sequences are `[batch, time, dim]`.

use super::{Init, Linear};
use crate::data::Rng;
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};

/// Layer normalisation over the last axis with a learned scale and shift (`{name}.weight`,
/// ones, and `{name}.bias`, zeros).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// Scale, `[dim]`.
    pub weight: NodeId,
    /// Shift, `[dim]`.
    pub bias: NodeId,
    /// ε added to the variance.
    pub eps: f32,
}

impl LayerNorm {
    /// The parameters for vectors of `dim`, ε = 1e-5 (PyTorch's default).
    pub fn new(g: &mut Graph, name: &str, dim: usize) -> Result<LayerNorm> {
        let weight = g.parameter(&format!("{name}.weight"), &[dim], &vec![1.0; dim])?;
        let bias = g.parameter(&format!("{name}.bias"), &[dim], &vec![0.0; dim])?;
        Ok(LayerNorm {
            weight,
            bias,
            eps: 1e-5,
        })
    }

    /// x normalised over its last axis.
    pub fn forward(&self, g: &mut Graph, x: NodeId) -> Result<NodeId> {
        g.layer_norm(x, Some(self.weight), Some(self.bias), self.eps)
    }
}

/// A table of `vocab` vectors of `dim` (`{name}.weight`, drawn from N(0, 1) as PyTorch does).
#[derive(Clone, Debug)]
pub struct Embedding {
    /// The table, `[vocab, dim]`.
    pub weight: NodeId,
}

impl Embedding {
    /// The table, initialised from `rng`.
    pub fn new(g: &mut Graph, name: &str, vocab: usize, dim: usize, rng: &mut Rng) -> Result<Embedding> {
        let init: Vec<f32> = (0..vocab.saturating_mul(dim)).map(|_| rng.normal()).collect();
        let weight = g.parameter(&format!("{name}.weight"), &[vocab, dim], &init)?;
        Ok(Embedding { weight })
    }

    /// The vectors of `ids` (an input of class indices): ids' shape plus `[dim]`.
    pub fn forward(&self, g: &mut Graph, ids: NodeId) -> Result<NodeId> {
        g.embedding(self.weight, ids)
    }
}

/// `[batch, time, dim]` as `[batch·time, dim]` (no copy), for the linear layers: each reshape
/// costs a copy of its gradient, so the blocks stay in this form between linear layers.
fn rows(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let s = g.shape(x)?;
    g.reshape(x, &[s[0] * s[1], s[2]])
}

/// Causal multi-head self-attention: each position attends to itself and the positions before.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    /// Q, K and V projections side by side (`in_proj_weight`, `in_proj_bias`): dim → 3·dim.
    pub in_proj: Linear,
    /// The output projection (`out_proj`): dim → dim.
    pub out_proj: Linear,
    /// Heads (dim is a multiple of it).
    pub heads: usize,
}

impl MultiHeadAttention {
    /// Parameters for `heads` heads over vectors of `dim` (Xavier-initialised projections,
    /// zero biases).
    pub fn new(g: &mut Graph, name: &str, dim: usize, heads: usize, rng: &mut Rng) -> Result<MultiHeadAttention> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            return Err(Error::arg(
                "MultiHeadAttention::new",
                format!("dim {dim} is not a multiple of {heads} heads"),
            ));
        }
        let in_proj = Linear::new(g, &format!("{name}.in_proj"), dim, 3 * dim, Init::Xavier, rng)?;
        g.set_name(in_proj.weight, &format!("{name}.in_proj_weight"))?;
        g.set_name(in_proj.bias, &format!("{name}.in_proj_bias"))?;
        let out_proj = Linear::new(g, &format!("{name}.out_proj"), dim, dim, Init::Xavier, rng)?;
        Ok(MultiHeadAttention {
            in_proj,
            out_proj,
            heads,
        })
    }

    /// softmax(Q·Kᵀ/√d + causal mask)·V per head, heads joined and projected; `x` is
    /// `[batch, time, dim]`, `mask` a `[time, time]` [`Graph::causal_mask`].
    pub fn forward(&self, g: &mut Graph, x: NodeId, mask: NodeId) -> Result<NodeId> {
        let s = g.shape(x)?;
        if s.len() != 3 {
            return Err(Error::invalid_shape(
                "MultiHeadAttention",
                &s,
                "expects [batch, time, dim]",
            ));
        }
        let (b, t, d) = (s[0], s[1], s[2]);
        let (h, hd) = (self.heads, d / self.heads);
        let flat = rows(g, x)?;
        let qkv = self.in_proj.forward(g, flat)?;
        // [b·t, 3d] → [b, h, t, hd] for each of Q, K, V.
        let mut split = |i: usize| -> Result<NodeId> {
            let part = g.narrow(qkv, 1, i * d, d)?;
            let heads = g.reshape(part, &[b, t, h, hd])?;
            g.permute(heads, &[0, 2, 1, 3])
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let kt = g.transpose_axes(k, 2, 3)?;
        let scores = g.matmul(q, kt)?;
        let scores = g.scale(scores, 1.0 / (hd as f32).sqrt())?;
        let masked = g.masked_fill(scores, mask, f32::NEG_INFINITY)?;
        let att = g.softmax(masked)?;
        let y = g.matmul(att, v)?;
        let y = g.permute(y, &[0, 2, 1, 3])?;
        let y = g.reshape(y, &[b * t, d])?;
        let y = self.out_proj.forward(g, y)?;
        g.reshape(y, &[b, t, d])
    }
}

/// A pre-norm transformer block: x + attention(norm1(x)), then + linear2(gelu(linear1(norm2(·)))).
#[derive(Clone, Debug)]
pub struct TransformerBlock {
    /// Before the attention.
    pub norm1: LayerNorm,
    /// Causal self-attention.
    pub self_attn: MultiHeadAttention,
    /// Before the feed-forward part.
    pub norm2: LayerNorm,
    /// dim → 4·dim.
    pub linear1: Linear,
    /// 4·dim → dim.
    pub linear2: Linear,
}

impl TransformerBlock {
    /// The block's parameters, named `{name}.norm1`, `{name}.self_attn`, … as in PyTorch.
    pub fn new(g: &mut Graph, name: &str, dim: usize, heads: usize, rng: &mut Rng) -> Result<TransformerBlock> {
        Ok(TransformerBlock {
            norm1: LayerNorm::new(g, &format!("{name}.norm1"), dim)?,
            self_attn: MultiHeadAttention::new(g, &format!("{name}.self_attn"), dim, heads, rng)?,
            norm2: LayerNorm::new(g, &format!("{name}.norm2"), dim)?,
            linear1: Linear::new(g, &format!("{name}.linear1"), dim, 4 * dim, Init::He, rng)?,
            linear2: Linear::new(g, &format!("{name}.linear2"), 4 * dim, dim, Init::Xavier, rng)?,
        })
    }

    /// The block on `x` (`[batch, time, dim]`) with a causal `mask` (`[time, time]`).
    pub fn forward(&self, g: &mut Graph, x: NodeId, mask: NodeId) -> Result<NodeId> {
        let n1 = self.norm1.forward(g, x)?;
        let a = self.self_attn.forward(g, n1, mask)?;
        let x = g.add(x, a)?;
        let n2 = self.norm2.forward(g, x)?;
        // The MLP on [b·t, dim] rows, where linear1 and the GELU form the layer pattern the graph
        // fuses.
        let flat = rows(g, n2)?;
        let h = self.linear1.forward(g, flat)?;
        let h = g.gelu(h)?;
        let f = self.linear2.forward(g, h)?;
        let f = g.reshape(f, &g.shape(x)?)?;
        g.add(x, f)
    }
}
