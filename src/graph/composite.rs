//! Ops built from other ops: their gradients are the chain rule through the parts, so they
//! need no kernels of their own.

use super::{Graph, NodeId};
use crate::error::{Error, Result};
use crate::ops::Op;

impl Graph {
    fn last_axis(&self, op: &'static str, x: NodeId) -> Result<usize> {
        let shape = self.shape(x)?;
        if shape.is_empty() {
            return Err(Error::invalid_shape(op, &shape, "needs at least one axis"));
        }
        Ok(shape.len() - 1)
    }

    fn check_axis(&self, op: &'static str, x: NodeId, axis: usize) -> Result<()> {
        let shape = self.shape(x)?;
        if axis >= shape.len() {
            return Err(Error::invalid_shape(
                op,
                &shape,
                format!("axis {axis} is out of range for rank {}", shape.len()),
            ));
        }
        Ok(())
    }

    /// Layer normalisation over the last axis (PyTorch's `layer_norm` with
    /// `normalized_shape = [D]`): (x − mean) / √(var + eps), times `weight` and plus `bias`
    /// (each of shape `[D]`) when given; var is the biased variance.
    pub fn layer_norm(&mut self, x: NodeId, weight: Option<NodeId>, bias: Option<NodeId>, eps: f32) -> Result<NodeId> {
        let axis = self.last_axis("layer_norm", x)?;
        let d = self.shape(x)?[axis];
        for (what, p) in [("weight", weight), ("bias", bias)] {
            if let Some(p) = p {
                let ps = self.shape(p)?;
                if ps != [d] {
                    return Err(Error::invalid_shape(
                        "layer_norm",
                        &ps,
                        format!("{what} must have shape [{d}] (the last axis of {:?})", self.shape(x)?),
                    ));
                }
            }
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(Error::arg(
                "layer_norm",
                format!("eps {eps} must be finite and non-negative"),
            ));
        }
        // One row-wise kernel and its VJP (x̂ and 1/σ saved); rows too long for one
        // invocation's loops are composed from reductions instead, whose kernels split them.
        let mut y = if d <= crate::kernels::softmax::SOFTMAX_MAX_COLS {
            let xi = self.check(x)?;
            self.add_op(Op::Normalize { x: xi, eps }, None)?
        } else {
            let mean = self.mean_axis(x, axis, true)?;
            let centred = self.sub(x, mean)?;
            let sq = self.square(centred)?;
            let var = self.mean_axis(sq, axis, true)?;
            let var_eps = self.add_scalar(var, eps)?;
            let inv_std = self.rsqrt(var_eps)?;
            self.mul(centred, inv_std)?
        };
        if let Some(w) = weight {
            y = self.mul(y, w)?;
        }
        if let Some(b) = bias {
            y = self.add(y, b)?;
        }
        Ok(y)
    }

    /// log softmax along `axis`: x − max − log Σ exp(x − max), stable for any range of x.
    pub fn log_softmax(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        self.check_axis("log_softmax", x, axis)?;
        // The max only shifts the exponentials; its gradient cancels exactly, so it is detached.
        let max = self.max_axis(x, axis, true)?;
        let max = self.detach(max)?;
        let shifted = self.sub(x, max)?;
        let e = self.exp(shifted)?;
        let s = self.sum_axis(e, axis, true)?;
        let lse = self.log(s)?;
        self.sub(shifted, lse)
    }

    /// Softmax along any axis (the last axis runs the softmax kernel directly; another axis is
    /// moved last and back).
    pub fn softmax_axis(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        self.check_axis("softmax_axis", x, axis)?;
        let last = self.last_axis("softmax_axis", x)?;
        if axis == last {
            return self.softmax(x);
        }
        let moved = self.transpose_axes(x, axis, last)?;
        let s = self.softmax(moved)?;
        self.transpose_axes(s, axis, last)
    }

    /// `a` where `cond` (broadcast) is nonzero, `b` elsewhere (PyTorch's `where`); `a` and `b`
    /// have one shape. Each branch's gradient flows only where it was taken, and a value of the
    /// branch not taken (even ±∞ or NaN) never reaches the result.
    pub fn where_mask(&mut self, cond: NodeId, a: NodeId, b: NodeId) -> Result<NodeId> {
        let (sa, sb) = (self.shape(a)?, self.shape(b)?);
        if sa != sb {
            return Err(Error::shape("where_mask", &sa, &sb));
        }
        let from_a = self.masked_fill_with(a, cond, 0.0, true)?;
        let from_b = self.masked_fill_with(b, cond, 0.0, false)?;
        self.add(from_a, from_b)
    }

    /// A `[t, t]` input holding 1 above the diagonal (column > row) and 0 elsewhere: the
    /// positions a causal attention must not see, for [`Graph::masked_fill`] with −∞.
    pub fn causal_mask(&mut self, t: usize) -> Result<NodeId> {
        let m = self.input("causal_mask", &[t, t])?;
        let data: Vec<f32> = (0..t * t).map(|i| if i % t > i / t { 1.0 } else { 0.0 }).collect();
        self.write(m, &data)?;
        Ok(m)
    }

    /// Mean over the rows whose label is not `ignore_index` of −log softmax(logits)\[label\]
    /// (PyTorch's `cross_entropy(logits, labels, ignore_index=…)`): `logits` is `[rows, classes]`,
    /// `labels` an input of `[rows]` holding class indices or `ignore_index` (below 2^24; it
    /// may be a class, then that class is never learned). With every row ignored the loss is
    /// NaN, as in PyTorch. Built from `log_softmax`, comparisons and sums: no gradient reaches an
    /// ignored row.
    pub fn cross_entropy_ignore(&mut self, logits: NodeId, labels: NodeId, ignore_index: u32) -> Result<NodeId> {
        const OP: &str = "cross_entropy_ignore";
        let (ls, ys) = (self.shape(logits)?, self.shape(labels)?);
        if ls.len() != 2 || ys != [ls[0]] {
            return Err(Error::shape(OP, &ls, &ys));
        }
        let (rows, classes) = (ls[0], ls[1]);
        let y = self.check(labels)?;
        if self.nodes[y].op != crate::ops::Op::Input {
            return Err(Error::arg(
                OP,
                format!("labels '{}' must be an input node", self.nodes[y].name),
            ));
        }
        if ignore_index >= 1 << 24 || classes > 1 << 24 {
            return Err(Error::arg(OP, "labels and classes must stay below 2^24 (exact in f32)"));
        }
        if self.nodes[y].label_ignore.is_some_and(|ig| ig != ignore_index)
            || self.nodes[y].label_classes.is_some_and(|c| c != classes)
        {
            return Err(Error::arg(
                OP,
                format!(
                    "labels '{}' are already used with other classes or ignore index",
                    self.nodes[y].name
                ),
            ));
        }
        let written = self.written_values(y)?;
        super::build::check_labels(
            OP,
            &self.nodes[y].name,
            written.into_iter(),
            classes,
            Some(ignore_index),
        )?;
        let constant = |g: &mut Graph, name: &str, shape: &[usize], data: Vec<f32>| -> Result<NodeId> {
            let c = g.input(name, shape)?;
            g.write(c, &data)?;
            Ok(c)
        };
        let class_ids = constant(
            self,
            "class_ids",
            &[1, classes],
            (0..classes).map(|c| c as f32).collect(),
        )?;
        let ignore = constant(self, "ignore_index", &[1], vec![ignore_index as f32])?;
        let one = constant(self, "one", &[1], vec![1.0])?;
        let lsm = self.log_softmax(logits, 1)?;
        let column = self.reshape(labels, &[rows, 1])?;
        let onehot = self.eq(column, class_ids)?;
        let picked = self.mul(onehot, lsm)?;
        let picked = self.sum_axis(picked, 1, false)?;
        let ignored = self.eq(labels, ignore)?;
        let valid = self.sub(one, ignored)?;
        let kept = self.mul(picked, valid)?;
        let total = self.sum(kept)?;
        let count = self.sum(valid)?;
        let mean = self.div(total, count)?;
        let loss = self.neg(mean)?;
        self.nodes[y].label_classes = Some(classes);
        self.nodes[y].label_ignore = Some(ignore_index);
        Ok(loss)
    }

    /// The slices of `x` at the integer ids `ids` along `axis` (PyTorch's `index_select`):
    /// `ids` is an input of shape `[n]` (written with [`Graph::write_labels`], values below
    /// x's extent along `axis`); the result is x's shape with that extent replaced by n. Built
    /// on [`Graph::embedding`] (the gradient, a deterministic scatter-add, sums repeated ids),
    /// moving `axis` to the front and back when it is not the first.
    pub fn index_select(&mut self, x: NodeId, axis: usize, ids: NodeId) -> Result<NodeId> {
        self.check_axis("index_select", x, axis)?;
        let (shape, ids_shape) = (self.shape(x)?, self.shape(ids)?);
        if ids_shape.len() != 1 {
            return Err(Error::shape("index_select", &shape, &ids_shape));
        }
        let rank = shape.len();
        // Move `axis` first, keeping the order of the others.
        let perm: Vec<usize> = std::iter::once(axis).chain((0..rank).filter(|&a| a != axis)).collect();
        let front = if axis == 0 { x } else { self.permute(x, &perm)? };
        let moved: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
        let rest: usize = moved[1..].iter().product();
        let table = self.reshape(front, &[moved[0], rest])?;
        let rows = self.embedding(table, ids)?;
        let mut picked = moved.clone();
        picked[0] = ids_shape[0];
        let picked_node = self.reshape(rows, &picked)?;
        if axis == 0 {
            return Ok(picked_node);
        }
        // The inverse permutation puts the axis back.
        let mut inverse = vec![0; rank];
        for (i, &a) in perm.iter().enumerate() {
            inverse[a] = i;
        }
        self.permute(picked_node, &inverse)
    }
}
