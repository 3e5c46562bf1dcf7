//! Operations: one enum of data, one `match` each for shape inference, forward lowering and
//! the vector-Jacobian product. Each family lives in its own module beside its shader.
//!
//! An op never builds a Jacobian: for an upstream gradient `g = ∂z/∂y` its VJP emits kernels
//! computing `(∂y/∂x)ᵀ g` for each input x that needs a gradient, adding into that input's
//! gradient buffer when another consumer already wrote it (fan-out accumulates).

mod binary;
mod conv;
mod dropout;
mod index;
mod layout;
mod loss;
mod matmul;
mod reduce;
mod softmax;
mod unary;

use crate::error::Result;
use crate::kernels::{BinaryOp, BufId, Kernel, ReduceOp, UnaryOp, Window2d};

/// What a node computes. Inputs are node indices of the same graph, always earlier nodes,
/// so node order is a topological order.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Data written by the user; no gradient unless created with one.
    Input,
    /// Trainable tensor; always has a gradient.
    Parameter,
    /// C = A·B for A: m×k, B: k×n.
    MatMul { a: usize, b: usize },
    /// Y = X + b with b (length cols) broadcast over the rows of X.
    BiasAdd { x: usize, bias: usize },
    /// Elementwise function of one argument.
    Unary { op: UnaryOp, x: usize },
    /// Elementwise function of two broadcast arguments.
    Binary { op: BinaryOp, a: usize, b: usize },
    /// Sum, mean or max along one axis (or all elements when `axis` is `None`).
    Reduce {
        op: ReduceOp,
        x: usize,
        axis: Option<usize>,
        keepdim: bool,
    },
    /// Softmax along the last axis.
    Softmax { x: usize },
    /// (x − mean)/√(variance + eps) along the last axis: layer norm without its affine part.
    Normalize { x: usize, eps: f32 },
    /// Mean over rows of −log softmax(logits)[label]; labels hold class indices.
    SoftmaxCrossEntropy { logits: usize, labels: usize },
    /// Mean squared error between two tensors of one shape.
    Mse { pred: usize, target: usize },
    /// Transpose of a matrix.
    Transpose { x: usize },
    /// Same data, another shape.
    Reshape { x: usize },
    /// Same value, no gradient flows back through it.
    Detach { x: usize },
    /// The axes reordered: axis d of the result is axis `perm[d]` of x.
    Permute { x: usize, perm: Vec<usize> },
    /// Elements `start .. start + len` along one axis.
    Narrow {
        x: usize,
        axis: usize,
        start: usize,
        len: usize,
    },
    /// The inputs joined along one axis.
    Concat { xs: Vec<usize>, axis: usize },
    /// x broadcast to a larger shape.
    Expand { x: usize, shape: Vec<usize> },
    /// Rows of `table` picked by the integer ids in `ids`.
    Embedding { table: usize, ids: usize },
    /// x with `value` where `mask` (broadcast) is nonzero — zero when `invert`.
    MaskedFill {
        x: usize,
        mask: usize,
        value: f32,
        invert: bool,
    },
    /// The sliding windows of an image as the rows of a matrix `[groups, n·oh·ow, cg·kh·kw]`.
    Im2col { x: usize, win: Window2d },
    /// im2col(x)·b (batched as `MatMul`) as an implicit GEMM: the window matrix is read from the
    /// image by the matmul kernel, never written (a convolution's product).
    WindowMatMul { x: usize, b: usize, win: Window2d },
    /// Max (`max`) or mean of each window of an NCHW image, one window per channel: `[n, c, oh, ow]`.
    Pool2d { x: usize, win: Window2d, max: bool },
    /// x times a random mask: each element zeroed with probability `p`, the rest scaled by
    /// 1 / (1 − p). `state` is the graph's dropout state input (draw counter and seed);
    /// `stream` tells this node's draws from other dropout nodes'.
    Dropout {
        x: usize,
        state: usize,
        p: f32,
        stream: u32,
    },
}

/// Largest rank a tensor may have.
pub const MAX_RANK: usize = 4;

/// A buffer and the shape of the tensor it holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arg<'a> {
    pub buf: BufId,
    pub shape: &'a [usize],
}

/// Where one input's gradient goes: its buffer, and whether to add into it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GradTarget {
    pub buf: BufId,
    pub acc: bool,
}

pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// A shape padded to rank 4 with leading 1s (the kernels' index space).
pub(crate) fn pad4(shape: &[usize]) -> [usize; 4] {
    debug_assert!(shape.len() <= MAX_RANK, "ranks are checked when nodes are added");
    let mut p = [1; 4];
    p[4 - shape.len()..].copy_from_slice(shape);
    p
}

impl Op {
    /// The op's name, as in messages and DOT labels.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Parameter => "parameter",
            Op::MatMul { .. } => "matmul",
            Op::BiasAdd { .. } => "bias_add",
            Op::Unary { op, .. } => op.name(),
            Op::Binary { op, .. } => op.name(),
            Op::Reduce { op, .. } => op.name(),
            Op::Softmax { .. } => "softmax",
            Op::Normalize { .. } => "layer_norm",
            Op::SoftmaxCrossEntropy { .. } => "softmax_cross_entropy",
            Op::Mse { .. } => "mse",
            Op::Transpose { .. } => "transpose",
            Op::Reshape { .. } => "reshape",
            Op::Detach { .. } => "detach",
            Op::Permute { .. } => "permute",
            Op::Narrow { .. } => "narrow",
            Op::Concat { .. } => "concat",
            Op::Expand { .. } => "expand",
            Op::Embedding { .. } => "embedding",
            Op::MaskedFill { .. } => "masked_fill",
            Op::Im2col { .. } => "im2col",
            Op::WindowMatMul { .. } => "window_matmul",
            Op::Pool2d { max: true, .. } => "max_pool2d",
            Op::Pool2d { max: false, .. } => "avg_pool2d",
            Op::Dropout { .. } => "dropout",
        }
    }

    /// Node indices this op reads.
    pub fn inputs(&self) -> Vec<usize> {
        match *self {
            Op::Input | Op::Parameter => vec![],
            Op::MatMul { a, b } | Op::Binary { a, b, .. } => vec![a, b],
            Op::BiasAdd { x, bias } => vec![x, bias],
            Op::SoftmaxCrossEntropy { logits, labels } => vec![logits, labels],
            Op::Mse { pred, target } => vec![pred, target],
            Op::Embedding { table, ids } => vec![table, ids],
            Op::MaskedFill { x, mask, .. } => vec![x, mask],
            Op::Dropout { x, state, .. } => vec![x, state],
            Op::WindowMatMul { x, b, .. } => vec![x, b],
            Op::Unary { x, .. }
            | Op::Reduce { x, .. }
            | Op::Softmax { x }
            | Op::Normalize { x, .. }
            | Op::Transpose { x }
            | Op::Reshape { x }
            | Op::Detach { x }
            | Op::Permute { x, .. }
            | Op::Narrow { x, .. }
            | Op::Expand { x, .. }
            | Op::Im2col { x, .. }
            | Op::Pool2d { x, .. } => vec![x],
            Op::Concat { ref xs, .. } => xs.clone(),
        }
    }

    /// Positions (into `inputs()`) through which a gradient flows.
    pub(crate) fn differentiable(&self) -> Vec<usize> {
        match self {
            Op::Input | Op::Parameter | Op::Detach { .. } => vec![],
            Op::SoftmaxCrossEntropy { .. } | Op::Embedding { .. } | Op::MaskedFill { .. } | Op::Dropout { .. } => {
                vec![0]
            }
            Op::MatMul { .. } | Op::WindowMatMul { .. } | Op::Binary { .. } | Op::BiasAdd { .. } | Op::Mse { .. } => {
                vec![0, 1]
            }
            Op::Concat { xs, .. } => (0..xs.len()).collect(),
            _ => vec![0],
        }
    }

    /// Shape of the result, or the error naming the op and the offending shapes.
    /// `reshape` targets are checked by the graph, which knows the requested shape.
    pub(crate) fn infer_shape(&self, shapes: &[&[usize]]) -> Result<Vec<usize>> {
        match *self {
            Op::Input | Op::Parameter => unreachable!("leaves have no inferred shape"),
            Op::MatMul { .. } => matmul::shape(shapes[0], shapes[1]),
            Op::BiasAdd { .. } => binary::bias_add_shape(shapes[0], shapes[1]),
            Op::Unary { .. } => Ok(shapes[0].to_vec()),
            Op::Binary { op, .. } => binary::shape(op, shapes[0], shapes[1]),
            Op::Reduce { op, axis, keepdim, .. } => reduce::shape(op, shapes[0], axis, keepdim),
            Op::Softmax { .. } => softmax::shape(shapes[0]),
            Op::Normalize { .. } => softmax::normalize_shape(shapes[0]),
            Op::SoftmaxCrossEntropy { .. } => softmax::xent_shape(shapes[0], shapes[1]),
            Op::Mse { .. } => loss::mse_shape(shapes[0], shapes[1]),
            Op::Transpose { .. } => layout::transpose_shape(shapes[0]),
            Op::Reshape { .. } | Op::Detach { .. } => Ok(shapes[0].to_vec()),
            Op::Permute { ref perm, .. } => layout::permute_shape(shapes[0], perm),
            Op::Narrow { axis, start, len, .. } => layout::narrow_shape(shapes[0], axis, start, len),
            Op::Concat { axis, .. } => layout::concat_shape(shapes, axis),
            Op::Expand { ref shape, .. } => layout::expand_shape(shapes[0], shape),
            Op::Embedding { .. } => index::embedding_shape(shapes[0], shapes[1]),
            Op::MaskedFill { .. } => index::masked_fill_shape(shapes[0], shapes[1]),
            Op::Im2col { ref win, .. } => conv::im2col_shape("im2col", shapes[0], win),
            Op::WindowMatMul { ref win, .. } => conv::window_matmul_shape(shapes[0], shapes[1], win),
            Op::Pool2d { ref win, max, .. } => conv::pool_shape(shapes[0], win, max),
            Op::Dropout { .. } => dropout::shape(shapes[0], shapes[1]),
        }
    }

    /// Extra buffers (element counts) the op keeps for its VJP: softmax probabilities, argmax.
    pub(crate) fn aux_sizes(&self, shapes: &[&[usize]], out: &[usize]) -> Vec<usize> {
        match self {
            Op::Reduce { op: ReduceOp::Max, .. } => vec![numel(out)],
            Op::SoftmaxCrossEntropy { .. } => vec![numel(shapes[0]), shapes[0][0]],
            Op::Dropout { .. } | Op::Pool2d { max: true, .. } => vec![numel(out)],
            Op::Normalize { .. } => vec![softmax::rows_cols(out).0],
            _ => vec![],
        }
    }

    /// Buffers (element counts) the op's VJP writes and reads within one backward pass, allocated
    /// with the first backward program that runs it: the window matrix's gradient of a
    /// `WindowMatMul` whose image needs one (`input_needs`: which inputs get a gradient).
    pub(crate) fn vjp_scratch_sizes(&self, shapes: &[&[usize]], input_needs: &[bool]) -> Vec<usize> {
        match self {
            Op::WindowMatMul { win, .. } if input_needs[0] => {
                debug_assert_eq!(numel(shapes[0]), numel(&win.image));
                vec![numel(&win.cols_shape())]
            }
            _ => vec![],
        }
    }

    /// Kernels computing the node's value into `out`.
    pub(crate) fn forward(&self, args: &[Arg], out: Arg, aux: &[BufId]) -> Vec<Kernel> {
        match *self {
            Op::Input | Op::Parameter => vec![],
            Op::MatMul { .. } => matmul::forward(args[0], None, args[1], out),
            Op::BiasAdd { .. } => binary::bias_add_forward(args[0], args[1], out),
            Op::Unary { op, .. } => unary::forward(op, args[0], out),
            Op::Binary { op, .. } => binary::forward(op, args[0], args[1], out),
            Op::Reduce { op, axis, .. } => reduce::forward(op, args[0], axis, out, aux),
            Op::Softmax { .. } => softmax::forward(args[0], out),
            Op::Normalize { eps, .. } => softmax::normalize_forward(args[0], eps, out, aux),
            Op::SoftmaxCrossEntropy { .. } => softmax::xent_forward(args[0], args[1], out, aux),
            Op::Mse { .. } => loss::mse_forward(args[0], args[1], out),
            Op::Transpose { .. } => layout::transpose_forward(args[0], out),
            Op::Reshape { .. } | Op::Detach { .. } => layout::copy(args[0].buf, out.buf, numel(out.shape), false),
            Op::Permute { ref perm, .. } => layout::permute_forward(args[0], perm, out),
            Op::Narrow { axis, start, .. } => layout::narrow_forward(args[0], axis, start, out),
            Op::Concat { axis, .. } => layout::concat_forward(args, axis, out),
            Op::Expand { .. } => layout::expand_forward(args[0], out),
            Op::Embedding { .. } => index::embedding_forward(args[0], args[1], out),
            Op::MaskedFill { value, invert, .. } => index::masked_fill_forward(args[0], args[1], value, invert, out),
            Op::Im2col { ref win, .. } => conv::im2col_forward(args[0], win, out),
            Op::WindowMatMul { ref win, .. } => conv::window_matmul_forward(args[0], args[1], win, out),
            Op::Pool2d { ref win, max, .. } => conv::pool_forward(args[0], win, max, out, aux),
            Op::Dropout { p, stream, .. } => dropout::forward(args[0], args[1], p, stream, out, aux),
        }
    }

    /// Kernels adding (∂out/∂input)ᵀ·g into each input's gradient target (None: not needed).
    /// `aux`: the node's saved buffers, then its VJP scratch buffers ([`Op::vjp_scratch_sizes`]).
    pub(crate) fn vjp(
        &self,
        args: &[Arg],
        out: Arg,
        g: BufId,
        aux: &[BufId],
        targets: &[Option<GradTarget>],
    ) -> Vec<Kernel> {
        match *self {
            Op::Input | Op::Parameter | Op::Detach { .. } => vec![],
            Op::MatMul { .. } => matmul::vjp(args[0], None, args[1], g, targets),
            Op::BiasAdd { .. } => binary::bias_add_vjp(args[0], g, targets),
            Op::Unary { op, .. } => unary::vjp(op, args[0], out, g, targets),
            Op::Binary { op, .. } => binary::vjp(op, args[0], args[1], out, g, targets),
            Op::Reduce { op, axis, .. } => reduce::vjp(op, args[0], axis, g, aux, targets),
            Op::Softmax { .. } => softmax::vjp(out, g, targets),
            Op::Normalize { .. } => softmax::normalize_vjp(out, g, aux, targets),
            Op::SoftmaxCrossEntropy { .. } => softmax::xent_vjp(args[0], args[1], g, aux, targets),
            Op::Mse { .. } => loss::mse_vjp(args[0], args[1], g, targets),
            Op::Transpose { .. } => layout::transpose_vjp(args[0], g, targets),
            Op::Reshape { .. } => layout::reshape_vjp(args[0], g, targets),
            Op::Permute { ref perm, .. } => layout::permute_vjp(args[0], perm, out, g, targets),
            Op::Narrow { axis, start, .. } => layout::narrow_vjp(args[0], axis, start, out, g, targets),
            Op::Concat { axis, .. } => layout::concat_vjp(args, axis, out, g, targets),
            Op::Expand { .. } => layout::expand_vjp(args[0], out, g, targets),
            Op::Embedding { .. } => index::embedding_vjp(args[0], args[1], g, targets),
            Op::MaskedFill { invert, .. } => index::masked_fill_vjp(args[0], args[1], invert, g, targets),
            Op::Im2col { ref win, .. } => conv::im2col_vjp(win, g, targets),
            Op::WindowMatMul { ref win, .. } => conv::window_matmul_vjp(args[0], args[1], win, g, aux, targets),
            Op::Pool2d { ref win, max, .. } => conv::pool_vjp(win, max, g, aux, targets),
            Op::Dropout { .. } => dropout::vjp(args[0], out, g, aux, targets),
        }
    }
}
