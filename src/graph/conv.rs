//! Convolution and pooling over NCHW images. A convolution is a matrix product of the window
//! matrix of [`Graph::im2col`] with the weights: written by im2col, or, where the backend prefers
//! it (or [`Graph::set_implicit_conv`] says so), an implicit GEMM — one op, `WindowMatMul`, whose
//! matmul kernels read the window matrix from the image instead of a buffer. Its gradients are
//! the chain rule through those parts (im2col's VJP is col2im, a deterministic gather). A pooling
//! is one op, `Pool2d`, whose kernel takes the max or mean of each window straight from the image
//! and whose VJP gathers per pixel, in a fixed order.

use super::{Graph, NodeId};
use crate::error::{Error, Result};
use crate::kernels::Window2d;
use crate::ops::Op;

/// Options of [`Graph::conv2d`] (PyTorch's `conv2d` arguments; the default is theirs: stride 1,
/// no padding, no dilation, one group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step between windows (height, width).
    pub stride: [usize; 2],
    /// Zero padding on both sides (height, width).
    pub padding: [usize; 2],
    /// Spacing between kernel elements (height, width).
    pub dilation: [usize; 2],
    /// Channel groups: input and output channels split into this many independent convolutions.
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dOptions {
    /// The same options with a square stride.
    pub fn stride(self, s: usize) -> Self {
        Conv2dOptions { stride: [s, s], ..self }
    }
    /// The same options with the same padding on every side.
    pub fn padding(self, p: usize) -> Self {
        Conv2dOptions {
            padding: [p, p],
            ..self
        }
    }
    /// The same options with a square dilation.
    pub fn dilation(self, d: usize) -> Self {
        Conv2dOptions {
            dilation: [d, d],
            ..self
        }
    }
    /// The same options with `g` groups.
    pub fn groups(self, g: usize) -> Self {
        Conv2dOptions { groups: g, ..self }
    }
}

/// Options of [`Graph::max_pool2d`] and [`Graph::avg_pool2d`] (PyTorch's arguments, without
/// `ceil_mode`; average pooling counts the padding, PyTorch's `count_include_pad=True`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dOptions {
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Step between windows (PyTorch's default: the window size).
    pub stride: [usize; 2],
    /// Implicit padding on both sides, at most half the window.
    pub padding: [usize; 2],
    /// Spacing between window elements (max pooling only; average pooling needs 1).
    pub dilation: [usize; 2],
}

impl Pool2dOptions {
    /// A `k`×`k` window moving by `k`, no padding.
    pub fn new(k: usize) -> Self {
        Pool2dOptions {
            kernel: [k, k],
            stride: [k, k],
            padding: [0, 0],
            dilation: [1, 1],
        }
    }
    /// The same options with a square stride.
    pub fn stride(self, s: usize) -> Self {
        Pool2dOptions { stride: [s, s], ..self }
    }
    /// The same options with the same padding on every side.
    pub fn padding(self, p: usize) -> Self {
        Pool2dOptions {
            padding: [p, p],
            ..self
        }
    }
    /// The same options with a square dilation.
    pub fn dilation(self, d: usize) -> Self {
        Pool2dOptions {
            dilation: [d, d],
            ..self
        }
    }
}

impl Graph {
    fn image_shape(&self, op: &'static str, x: NodeId) -> Result<[usize; 4]> {
        let s = self.shape(x)?;
        s.as_slice()
            .try_into()
            .map_err(|_| Error::invalid_shape(op, &s, "expects an NCHW image (rank 4)"))
    }

    /// The sliding windows of an image as the rows of a matrix (im2col): for `x` of shape
    /// `[n, c, h, w]` the result is `[groups, n·oh·ow, (c / groups)·kh·kw]`, row
    /// `(n·oh + y)·ow + x` of group g holding the window at output position (y, x) over that
    /// group's channels, in (channel, row, column) order; a window element in the padding reads
    /// `pad_value`. The output extents are PyTorch's. Its VJP adds each element's gradient back
    /// at the pixel it read, in a fixed order (the same bits every run).
    pub fn im2col(&mut self, x: NodeId, win: Window2d) -> Result<NodeId> {
        let x = self.check(x)?;
        self.add_op(Op::Im2col { x, win }, None)
    }

    /// 2-D convolution (PyTorch's `conv2d`, a cross-correlation): `x` is `[n, c, h, w]`,
    /// `weight` `[oc, c / groups, kh, kw]`, `bias` (optional) `[oc]`; the result is
    /// `[n, oc, oh, ow]`. It runs as one matrix product of the window matrix and the weights per
    /// group on the matmul kernels, then a permute to NCHW. The window matrix is implicit on GPUs
    /// (the tile kernel reads each window element from the image; the backward writes only the
    /// matrix's gradient, when the image needs one) and written by an im2col on CPU-like adapters
    /// and the CPU backend ([`Graph::set_implicit_conv`]). When the window matrix (or its
    /// gradient) of the whole batch would exceed what the device holds in one buffer (its
    /// binding-size limit, or the host bound on the CPU backend), the batch is split into as many
    /// images per matrix as fit. A refused convolution (a bad
    /// shape, a single image's window matrix past the limit, a result too large) leaves the
    /// graph as it was.
    pub fn conv2d(&mut self, x: NodeId, weight: NodeId, bias: Option<NodeId>, opts: Conv2dOptions) -> Result<NodeId> {
        self.all_or_nothing(|g| g.conv2d_nodes(x, weight, bias, opts))
    }

    /// Runs `build`, removing every node it added when it fails.
    fn all_or_nothing(&mut self, build: impl FnOnce(&mut Graph) -> Result<NodeId>) -> Result<NodeId> {
        let len = self.len();
        build(self).inspect_err(|_| self.truncate_nodes(len))
    }

    fn conv2d_nodes(&mut self, x: NodeId, weight: NodeId, bias: Option<NodeId>, opts: Conv2dOptions) -> Result<NodeId> {
        const OP: &str = "conv2d";
        let image = self.image_shape(OP, x)?;
        let ws = self.shape(weight)?;
        let [n, c, _, _] = image;
        let groups = opts.groups;
        let [oc, kh, kw] = match ws[..] {
            [oc, cg, kh, kw] if groups > 0 && cg * groups == c && oc % groups == 0 => [oc, kh, kw],
            _ => {
                return Err(Error::invalid_shape(
                    OP,
                    &ws,
                    format!(
                        "weight must be [out_channels, {c} / groups, kh, kw] with out_channels divisible by {groups} groups, for input {image:?}"
                    ),
                ))
            }
        };
        if let Some(b) = bias {
            let bs = self.shape(b)?;
            if bs != [oc] {
                return Err(Error::shape(OP, &ws, &bs));
            }
        }
        let win = Window2d {
            image,
            kernel: [kh, kw],
            stride: opts.stride,
            padding: opts.padding,
            dilation: opts.dilation,
            groups,
            pad_value: 0.0,
        };
        // One window matrix for all the images, unless it would exceed what the device holds in
        // one buffer: then as many images per matrix as fit, each chunk its own im2col and
        // matmul, the results joined (a single image too large is refused by im2col).
        let chunk = self.images_per_window_matrix(&win);
        let wt = self.weight_matrix(weight, groups)?;
        let [oh, ow] = match win.checked_out_hw() {
            Some(hw) if chunk < n => hw,
            _ => return self.conv2d_chunk(x, wt, bias, win, oc),
        };
        let mut parts = Vec::new();
        for start in (0..n).step_by(chunk) {
            let len = chunk.min(n - start);
            let xs = self.narrow(x, 0, start, len)?;
            let w = Window2d {
                image: [len, c, win.image[2], win.image[3]],
                ..win
            };
            parts.push(self.conv2d_chunk(xs, wt, None, w, oc)?);
        }
        let y = self.concat(&parts, 0)?;
        debug_assert_eq!(self.shape(y)?, [n, oc, oh, ow]);
        self.add_bias(y, bias, oc)
    }

    /// The most images (at least 1) whose window matrix the device holds in one buffer.
    fn images_per_window_matrix(&self, win: &Window2d) -> usize {
        let n = win.image[0];
        let Some([oh, ow]) = win.checked_out_hw() else { return n };
        let per_image = (oh * ow) as u64 * (win.image[1] * win.kernel[0] * win.kernel[1]) as u64 * self.elem_bytes();
        let fits = |c: usize| {
            self.check_buffer("window matrix", per_image.saturating_mul(c as u64))
                .is_ok()
        };
        if fits(n) {
            return n;
        }
        let (mut lo, mut hi) = (1, n); // fits(lo) is assumed; the answer is in lo..hi
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The weight `[oc, c / groups, kh, kw]` as `[groups, k, oc / groups]`, k = (c / groups)·kh·kw
    /// (a plain k × oc matrix for one group, so that the product folds the windows of every
    /// image into one matmul).
    fn weight_matrix(&mut self, weight: NodeId, groups: usize) -> Result<NodeId> {
        let ws = self.shape(weight)?;
        let (oc, k) = (ws[0], ws[1..].iter().product::<usize>());
        if groups == 1 {
            let w2 = self.reshape(weight, &[oc, k])?;
            self.transpose(w2)
        } else {
            let w3 = self.reshape(weight, &[groups, oc / groups, k])?;
            self.transpose_axes(w3, 1, 2)
        }
    }

    /// The convolution of the images `x` (the window's image) with the weight matrix `wt` as
    /// im2col, one matmul per group and a permute to NCHW, plus the bias.
    fn conv2d_chunk(
        &mut self,
        x: NodeId,
        wt: NodeId,
        bias: Option<NodeId>,
        win: Window2d,
        oc: usize,
    ) -> Result<NodeId> {
        // [groups, n·l, ocg]: the window matrix times the weights, implicit or not.
        let y = if self.implicit_conv() {
            let (x, wt) = (self.check(x)?, self.check(wt)?);
            let y = self.add_op(Op::WindowMatMul { x, b: wt, win }, None)?;
            // The window matrix is not written, but its gradient is (when the image needs one)
            // and the kernels index it in 32 bits: it must fit a buffer as an explicit one would
            // (conv2d removes the node when it does not).
            let bytes = win.cols_shape().iter().map(|&d| d as u64).product::<u64>() * self.elem_bytes();
            self.check_buffer("window matrix of an implicit im2col", bytes)?;
            y
        } else {
            let cols = self.im2col(x, win)?;
            self.matmul(cols, wt)?
        };
        let [n, _, _, _] = win.image;
        let [oh, ow] = win.out_hw();
        let groups = win.groups;
        let (ocg, l) = (oc / groups, oh * ow);
        let y = self.reshape(y, &[groups, n, l, ocg])?;
        let y = self.permute(y, &[1, 0, 3, 2])?; // [n, groups, ocg, l]
        let y = self.reshape(y, &[n, oc, oh, ow])?;
        self.add_bias(y, bias, oc)
    }

    fn add_bias(&mut self, y: NodeId, bias: Option<NodeId>, oc: usize) -> Result<NodeId> {
        match bias {
            Some(b) => {
                let b = self.reshape(b, &[oc, 1, 1])?;
                self.add(y, b)
            }
            None => Ok(y),
        }
    }

    /// The pooling window over the image `x` (`[n, c, h, w]`), one window per channel, after the
    /// pooling's own checks (PyTorch's: padding at most half the window).
    fn pool_window(&self, op: &'static str, x: NodeId, o: Pool2dOptions, pad_value: f32) -> Result<Window2d> {
        let image = self.image_shape(op, x)?;
        for a in 0..2 {
            if 2 * o.padding[a] > o.kernel[a] {
                return Err(Error::arg(
                    op,
                    format!("padding {:?} must be at most half the window {:?}", o.padding, o.kernel),
                ));
            }
        }
        Ok(Window2d {
            image,
            kernel: o.kernel,
            stride: o.stride,
            padding: o.padding,
            dilation: o.dilation,
            groups: 1,
            pad_value,
        })
    }

    /// 2-D max pooling (PyTorch's `max_pool2d` without `ceil_mode`): the largest element of each
    /// window of `x` (`[n, c, h, w]`), the padding reading −∞. The gradient goes to the first
    /// largest element of each window. One kernel reads the windows from the image (no window
    /// matrix) and saves where each max was; its VJP gathers per pixel, in a fixed order.
    pub fn max_pool2d(&mut self, x: NodeId, opts: Pool2dOptions) -> Result<NodeId> {
        let win = self.pool_window("max_pool2d", x, opts, f32::NEG_INFINITY)?;
        let x = self.check(x)?;
        self.add_op(Op::Pool2d { x, win, max: true }, None)
    }

    /// 2-D average pooling (PyTorch's `avg_pool2d` with `count_include_pad=True`, without
    /// `ceil_mode`): the mean of each window of `x` (`[n, c, h, w]`), padding counted as zeros.
    pub fn avg_pool2d(&mut self, x: NodeId, opts: Pool2dOptions) -> Result<NodeId> {
        if opts.dilation != [1, 1] {
            return Err(Error::arg("avg_pool2d", "average pooling has no dilation"));
        }
        let win = self.pool_window("avg_pool2d", x, opts, 0.0)?;
        let x = self.check(x)?;
        self.add_op(Op::Pool2d { x, win, max: false }, None)
    }
}
