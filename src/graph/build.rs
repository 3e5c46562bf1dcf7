//! The builder API: inputs, parameters and ops, each checked (shapes, arguments) as it is added,
//! and the writes that put new data into inputs and parameters.

use super::{Graph, NodeId};
use crate::backend::{BinaryOp, ReduceOp, UnaryOp};
use crate::error::{Error, Result};
use crate::ops::{numel, Op};

impl Graph {
    /// An input tensor: data the user writes, no gradient.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> Result<NodeId> {
        self.push(name.to_string(), Op::Input, shape.to_vec(), false)
    }

    /// An input whose gradient is computed by backward (e.g. to inspect ∂loss/∂x).
    pub fn input_with_grad(&mut self, name: &str, shape: &[usize]) -> Result<NodeId> {
        self.push(name.to_string(), Op::Input, shape.to_vec(), true)
    }

    /// A trainable parameter with initial values `init` (row-major, `shape`'s element count).
    pub fn parameter(&mut self, name: &str, shape: &[usize], init: &[f32]) -> Result<NodeId> {
        Self::check_shape("parameter", shape)?;
        if init.len() != numel(shape) {
            return Err(Error::LengthMismatch {
                node: self.nodes.len(),
                name: name.to_string(),
                shape: shape.into(),
                expected: numel(shape),
                got: init.len(),
            });
        }
        let id = self.push(name.to_string(), Op::Parameter, shape.to_vec(), true)?;
        self.exec.write_f32(self.nodes[id.idx].value, init)?;
        Ok(id)
    }

    pub(super) fn add_op(&mut self, op: Op, name: Option<String>) -> Result<NodeId> {
        let inputs = op.inputs();
        let shapes: Vec<&[usize]> = inputs.iter().map(|&i| self.nodes[i].shape.as_slice()).collect();
        let shape = op.infer_shape(&shapes)?;
        let diff = op.differentiable();
        let requires_grad = inputs
            .iter()
            .enumerate()
            .any(|(pos, &i)| diff.contains(&pos) && self.nodes[i].requires_grad);
        let name = name.unwrap_or_else(|| format!("{}{}", op.name(), self.nodes.len()));
        self.push(name, op, shape, requires_grad)
    }

    /// C = A·B for A: m×k and B: k×n.
    pub fn matmul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        let (a, b) = (self.check(a)?, self.check(b)?);
        self.add_op(Op::MatMul { a, b }, None)
    }

    /// Y = X + b, with b of length cols (or 1×cols) added to every row of X (rows×cols).
    pub fn bias_add(&mut self, x: NodeId, bias: NodeId) -> Result<NodeId> {
        let (x, bias) = (self.check(x)?, self.check(bias)?);
        self.add_op(Op::BiasAdd { x, bias }, None)
    }

    /// Applies an elementwise function.
    pub fn unary(&mut self, op: UnaryOp, x: NodeId) -> Result<NodeId> {
        let x = self.check(x)?;
        if !op.alpha().is_finite() {
            return Err(Error::arg(op.name(), format!("parameter {} is not finite", op.alpha())));
        }
        self.add_op(Op::Unary { op, x }, None)
    }

    /// α·x, elementwise.
    pub fn scale(&mut self, x: NodeId, alpha: f32) -> Result<NodeId> {
        self.unary(UnaryOp::Scale(alpha), x)
    }

    /// x + α, elementwise.
    pub fn add_scalar(&mut self, x: NodeId, alpha: f32) -> Result<NodeId> {
        self.unary(UnaryOp::AddScalar(alpha), x)
    }

    /// An elementwise op with NumPy broadcasting.
    pub fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        let (a, b) = (self.check(a)?, self.check(b)?);
        self.add_op(Op::Binary { op, a, b }, None)
    }

    /// a + b (broadcasting).
    pub fn add(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Add, a, b)
    }

    /// a − b (broadcasting).
    pub fn sub(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Sub, a, b)
    }

    /// a · b elementwise (broadcasting).
    pub fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Mul, a, b)
    }

    /// a / b elementwise (broadcasting).
    pub fn div(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Div, a, b)
    }

    /// 1 where a > b, else 0, with broadcasting (a mask: no gradient flows through it).
    pub fn gt(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Gt, a, b)
    }

    /// 1 where a < b, else 0, with broadcasting (a mask: no gradient flows through it).
    pub fn lt(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Lt, a, b)
    }

    /// 1 where a = b, else 0, with broadcasting (a mask: no gradient flows through it).
    pub fn eq(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Eq, a, b)
    }

    /// A reduction along `axis` (all elements when `None`), keeping the axis as extent 1 when `keepdim`.
    pub fn reduce(&mut self, op: ReduceOp, x: NodeId, axis: Option<usize>, keepdim: bool) -> Result<NodeId> {
        let x = self.check(x)?;
        self.add_op(Op::Reduce { op, x, axis, keepdim }, None)
    }

    /// Sum of all elements: a scalar.
    pub fn sum(&mut self, x: NodeId) -> Result<NodeId> {
        self.reduce(ReduceOp::Sum, x, None, false)
    }

    /// Mean of all elements: a scalar.
    pub fn mean(&mut self, x: NodeId) -> Result<NodeId> {
        self.reduce(ReduceOp::Mean, x, None, false)
    }

    /// Sum along one axis.
    pub fn sum_axis(&mut self, x: NodeId, axis: usize, keepdim: bool) -> Result<NodeId> {
        self.reduce(ReduceOp::Sum, x, Some(axis), keepdim)
    }

    /// Mean along one axis.
    pub fn mean_axis(&mut self, x: NodeId, axis: usize, keepdim: bool) -> Result<NodeId> {
        self.reduce(ReduceOp::Mean, x, Some(axis), keepdim)
    }

    /// Max along one axis; the gradient goes to the first maximal element.
    pub fn max_axis(&mut self, x: NodeId, axis: usize, keepdim: bool) -> Result<NodeId> {
        self.reduce(ReduceOp::Max, x, Some(axis), keepdim)
    }

    /// Softmax along the last axis.
    pub fn softmax(&mut self, x: NodeId) -> Result<NodeId> {
        let x = self.check(x)?;
        self.add_op(Op::Softmax { x }, None)
    }

    /// Mean over the batch of `−log softmax(logits)[label]`, computed in the stable logsumexp form.
    /// `logits` is batch×classes; `labels` is an input of shape `[batch]` holding class indices
    /// (write it with [`Graph::write_labels`]).
    pub fn softmax_cross_entropy(&mut self, logits: NodeId, labels: NodeId) -> Result<NodeId> {
        let (l, y) = (self.check(logits)?, self.check(labels)?);
        if self.nodes[y].op != Op::Input {
            return Err(Error::arg(
                "softmax_cross_entropy",
                format!(
                    "labels must be an input node, but '{}' is the result of {}",
                    self.nodes[y].name,
                    self.nodes[y].op.name()
                ),
            ));
        }
        if self.nodes[y].label_ignore.is_some() {
            return Err(Error::arg(
                "softmax_cross_entropy",
                format!(
                    "labels '{}' carry an ignore index: use cross_entropy_ignore",
                    self.nodes[y].name
                ),
            ));
        }
        let classes = self.nodes[l].shape.get(1).copied();
        if let (Some(prev), Some(c)) = (self.nodes[y].label_classes, classes) {
            if prev != c {
                return Err(Error::arg(
                    "softmax_cross_entropy",
                    format!("labels '{}' already index {prev} classes, not {c}", self.nodes[y].name),
                ));
            }
        }
        // Labels written before the loss existed were not checked then: check them now (one
        // readback of the label vector), so forward and backward never see an index past the
        // classes. Later writes are checked as they happen.
        if let Some(c) = classes {
            let written = self.written_values(y)?;
            check_labels(
                "softmax_cross_entropy",
                &self.nodes[y].name,
                written.into_iter(),
                c,
                None,
            )?;
        }
        let id = self.add_op(Op::SoftmaxCrossEntropy { logits: l, labels: y }, None)?;
        self.nodes[y].label_classes = classes;
        Ok(id)
    }

    /// Rows of `table` (`[vocab, dim]`) picked by integer ids (PyTorch's `embedding`): `ids` is
    /// an input of any shape up to rank 3 holding row indices in `0..vocab` (write it with
    /// [`Graph::write_labels`]; values outside are refused when written); the result has ids'
    /// shape plus `[dim]`. The table's gradient adds each position's gradient row at its id, in
    /// a fixed order (the same bits every run).
    pub fn embedding(&mut self, table: NodeId, ids: NodeId) -> Result<NodeId> {
        let (t, y) = (self.check(table)?, self.check(ids)?);
        if self.nodes[y].op != Op::Input {
            return Err(Error::arg(
                "embedding",
                format!(
                    "ids must be an input node, but '{}' is the result of {}",
                    self.nodes[y].name,
                    self.nodes[y].op.name()
                ),
            ));
        }
        let vocab = match self.nodes[t].shape[..] {
            [v, _] => v,
            _ => return Err(Error::shape("embedding", &self.nodes[t].shape, &self.nodes[y].shape)),
        };
        // Ids written before now were not checked against this table: check them (one readback).
        let bound = self.nodes[y].label_classes.map_or(vocab, |c| c.min(vocab));
        let written = self.written_values(y)?;
        if self.nodes[y].label_ignore.is_some() {
            return Err(Error::arg(
                "embedding",
                format!("ids '{}' carry an ignore index, which is no row", self.nodes[y].name),
            ));
        }
        check_labels("embedding", &self.nodes[y].name, written.into_iter(), bound, None)?;
        let id = self.add_op(Op::Embedding { table: t, ids: y }, None)?;
        self.nodes[y].label_classes = Some(bound);
        Ok(id)
    }

    /// x with `value` wherever `mask` (broadcast to x's shape) is nonzero (PyTorch's
    /// `masked_fill`); `value` may be ±∞ (e.g. −∞ before a softmax; [`Graph::check_finite`]
    /// then reports this node), not NaN. No gradient flows to the mask; x's gradient is zero
    /// where it was filled.
    pub fn masked_fill(&mut self, x: NodeId, mask: NodeId, value: f32) -> Result<NodeId> {
        self.masked_fill_with(x, mask, value, false)
    }

    pub(super) fn masked_fill_with(&mut self, x: NodeId, mask: NodeId, value: f32, invert: bool) -> Result<NodeId> {
        let (x, mask) = (self.check(x)?, self.check(mask)?);
        if value.is_nan() {
            return Err(Error::arg("masked_fill", "the fill value is NaN"));
        }
        self.add_op(Op::MaskedFill { x, mask, value, invert }, None)
    }

    /// Mean squared error mean((pred − target)²): a scalar.
    pub fn mse(&mut self, pred: NodeId, target: NodeId) -> Result<NodeId> {
        let (p, t) = (self.check(pred)?, self.check(target)?);
        self.add_op(Op::Mse { pred: p, target: t }, None)
    }

    /// Transpose of a matrix.
    pub fn transpose(&mut self, x: NodeId) -> Result<NodeId> {
        let x = self.check(x)?;
        self.add_op(Op::Transpose { x }, None)
    }

    /// The same elements in another shape (same element count).
    pub fn reshape(&mut self, x: NodeId, shape: &[usize]) -> Result<NodeId> {
        let xi = self.check(x)?;
        Self::check_shape("reshape", shape)?;
        if numel(shape) != numel(&self.nodes[xi].shape) {
            return Err(Error::shape("reshape", &self.nodes[xi].shape, shape));
        }
        let id = self.add_op(Op::Reshape { x: xi }, None)?;
        // The generic shape rule keeps the input shape; a reshape sets its own (same buffer size).
        self.nodes[id.idx].shape = shape.to_vec();
        Ok(id)
    }

    /// The axes reordered: axis d of the result is axis `perm[d]` of x (PyTorch's `permute`).
    /// The result is a new contiguous tensor.
    pub fn permute(&mut self, x: NodeId, perm: &[usize]) -> Result<NodeId> {
        let x = self.check(x)?;
        self.add_op(Op::Permute { x, perm: perm.to_vec() }, None)
    }

    /// Axes `a` and `b` swapped (PyTorch's `transpose(a, b)`); [`Graph::transpose`] is the
    /// matrix case.
    pub fn transpose_axes(&mut self, x: NodeId, a: usize, b: usize) -> Result<NodeId> {
        let rank = self.node(x)?.shape.len();
        if a >= rank || b >= rank {
            return Err(Error::invalid_shape(
                "transpose_axes",
                &self.node(x)?.shape,
                format!("axes {a} and {b} for rank {rank}"),
            ));
        }
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(a, b);
        self.permute(x, &perm)
    }

    /// Elements `start .. start + len` along `axis` (PyTorch's `narrow`), as a new tensor.
    pub fn narrow(&mut self, x: NodeId, axis: usize, start: usize, len: usize) -> Result<NodeId> {
        let x = self.check(x)?;
        self.add_op(Op::Narrow { x, axis, start, len }, None)
    }

    /// The tensors joined along `axis` (PyTorch's `cat`): equal shapes except along `axis`.
    pub fn concat(&mut self, xs: &[NodeId], axis: usize) -> Result<NodeId> {
        if xs.is_empty() {
            return Err(Error::arg("concat", "no tensors to join"));
        }
        let xs = xs.iter().map(|&x| self.check(x)).collect::<Result<Vec<_>>>()?;
        self.add_op(Op::Concat { xs, axis }, None)
    }

    /// x broadcast to `shape` (PyTorch's `expand` / `broadcast_to`): trailing axes aligned, each
    /// extent of x equal to the target's or 1. The result is a new tensor; its gradient sums
    /// over the broadcast axes.
    pub fn expand(&mut self, x: NodeId, shape: &[usize]) -> Result<NodeId> {
        let x = self.check(x)?;
        Self::check_shape("expand", shape)?;
        self.add_op(
            Op::Expand {
                x,
                shape: shape.to_vec(),
            },
            None,
        )
    }

    /// The same value, but no gradient flows back through it.
    pub fn detach(&mut self, x: NodeId) -> Result<NodeId> {
        let x = self.check(x)?;
        self.add_op(Op::Detach { x }, None)
    }

    /// Renames a node (names appear in errors, DOT output and saved files).
    pub fn set_name(&mut self, id: NodeId, name: &str) -> Result<()> {
        let i = self.check(id)?;
        self.nodes[i].name = name.to_string();
        Ok(())
    }

    fn writable(&self, i: usize, len: usize) -> Result<()> {
        let n = &self.nodes[i];
        if !n.is_leaf() {
            return Err(Error::NotWritable {
                node: i,
                name: n.name.clone(),
                op: n.op.name(),
            });
        }
        if len != numel(&n.shape) {
            return Err(Error::LengthMismatch {
                node: i,
                name: n.name.clone(),
                shape: n.shape.as_slice().into(),
                expected: numel(&n.shape),
                got: len,
            });
        }
        Ok(())
    }

    /// Writes new values into an input or parameter (row-major).
    pub fn write(&mut self, id: NodeId, data: &[f32]) -> Result<()> {
        let i = self.check(id)?;
        self.writable(i, data.len())?;
        if let Some(c) = self.nodes[i].label_classes {
            let ignore = self.nodes[i].label_ignore;
            check_labels("write", &self.nodes[i].name, data.iter().map(|&v| v as f64), c, ignore)?;
        }
        self.exec.write_f32(self.nodes[i].value, data)?;
        self.nodes[i].written = true;
        self.mark_stale();
        Ok(())
    }

    /// Writes f64 values (kept exactly on the f64 CPU backend, rounded to f32 elsewhere).
    pub fn write_f64(&mut self, id: NodeId, data: &[f64]) -> Result<()> {
        let i = self.check(id)?;
        self.writable(i, data.len())?;
        if let Some(c) = self.nodes[i].label_classes {
            let ignore = self.nodes[i].label_ignore;
            check_labels("write", &self.nodes[i].name, data.iter().copied(), c, ignore)?;
        }
        self.exec.write(self.nodes[i].value, data)?;
        self.nodes[i].written = true;
        self.mark_stale();
        Ok(())
    }

    /// The values written into input `y` (read back), or none when nothing was written (its
    /// zeros are valid labels): a graph built in a browser, where a read cannot block, reads
    /// nothing as long as labels are written after the loss is built.
    pub(super) fn written_values(&mut self, y: usize) -> Result<Vec<f64>> {
        if self.nodes[y].written {
            self.exec.read(self.nodes[y].value)
        } else {
            Ok(Vec::new())
        }
    }

    /// Writes class indices into a labels input of [`Graph::softmax_cross_entropy`].
    pub fn write_labels(&mut self, id: NodeId, labels: &[u32]) -> Result<()> {
        let v: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
        if let Some(&big) = labels.iter().find(|&&l| l >= 1 << 24) {
            return Err(Error::arg(
                "write_labels",
                format!("label {big} cannot be represented exactly"),
            ));
        }
        self.write(id, &v)
    }
}

pub(super) fn check_labels(
    op: &'static str,
    name: &str,
    values: impl Iterator<Item = f64>,
    classes: usize,
    ignore: Option<u32>,
) -> Result<()> {
    for (i, v) in values.enumerate() {
        let class = v >= 0.0 && v < classes as f64 && v.fract() == 0.0;
        if !class && ignore.is_none_or(|ig| v != ig as f64) {
            let also = ignore
                .map(|ig| format!(" or the ignore index {ig}"))
                .unwrap_or_default();
            return Err(Error::arg(
                op,
                format!("labels '{name}'[{i}] = {v} is not a class index in 0..{classes}{also}"),
            ));
        }
    }
    Ok(())
}

/// One builder method per unary op without a parameter: `method => UnaryOp variant`.
macro_rules! unary_methods {
    ($($(#[$doc:meta])* $method:ident => $op:ident;)*) => {
        impl Graph {
            $($(#[$doc])*
            pub fn $method(&mut self, x: NodeId) -> Result<NodeId> {
                self.unary(UnaryOp::$op, x)
            })*
        }
    };
}

unary_methods! {
    /// σ(x) = 1/(1+e^(−x)), elementwise.
    sigmoid => Sigmoid;
    /// max(x, 0), elementwise.
    relu => Relu;
    /// tanh(x), elementwise.
    tanh => Tanh;
    /// e^x, elementwise.
    exp => Exp;
    /// ln x, elementwise.
    log => Log;
    /// −x, elementwise.
    neg => Neg;
    /// x², elementwise.
    square => Square;
    /// √x, elementwise.
    sqrt => Sqrt;
    /// 1/√x, elementwise.
    rsqrt => Rsqrt;
    /// GELU in its tanh form, ½x(1 + tanh(√(2/π)(x + 0.044715x³))), elementwise (PyTorch's
    /// `gelu(x, approximate="tanh")`).
    gelu => Gelu;
    /// GELU in its exact form, x·Φ(x) = ½x(1 + erf(x/√2)), elementwise (PyTorch's `gelu(x)`).
    gelu_erf => GeluErf;
    /// SiLU (swish), x·σ(x), elementwise.
    silu => Silu;
}
