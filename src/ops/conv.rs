//! Sliding windows over NCHW images (`shaders/conv.wgsl`): im2col (the windows as the rows of a
//! matrix, what an explicit convolution multiplies), the implicit-GEMM convolution's product
//! (`WindowMatMul`, the matmul kernels reading the windows from the image) and pooling (`Pool2d`).

use super::{matmul, numel, Arg, GradTarget};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::kernels::{BufId, Kernel, Window2d};

/// Most elements one window may have: col2im loops over a window per pixel, and a loop must
/// stay far below the 65,535 iterations at which llvmpipe cuts an invocation short.
pub(crate) const MAX_WINDOW: usize = 4096;

/// Checks a window against the image `x` it slides over (any rank-4 tensor with the image's
/// element count and spatial extents: `[n, c, h, w]` may be read as `[1, n·c, h, w]`) and
/// returns the window matrix's shape `[groups, n·oh·ow, (c / groups)·kh·kw]`.
pub(super) fn im2col_shape(op: &'static str, x: &[usize], win: &Window2d) -> Result<Vec<usize>> {
    let bad = |why: String| Err(Error::invalid_shape(op, x, why));
    if x.len() != 4 || numel(x) != numel(&win.image) || x[2..] != win.image[2..] {
        return bad(format!("expects an NCHW image of shape {:?}", win.image));
    }
    let (k, s, p, d) = (win.kernel, win.stride, win.padding, win.dilation);
    if k.contains(&0) || s.contains(&0) || d.contains(&0) || win.groups == 0 {
        return bad(format!(
            "kernel {k:?}, stride {s:?} and dilation {d:?} must be positive, groups {} too",
            win.groups
        ));
    }
    if !win.image[1].is_multiple_of(win.groups) {
        return bad(format!(
            "{} channels do not split into {} groups",
            win.image[1], win.groups
        ));
    }
    if k[0] * k[1] > MAX_WINDOW {
        return bad(format!("a {}×{} window exceeds {MAX_WINDOW} elements", k[0], k[1]));
    }
    if win.pad_value.is_nan() {
        return Err(Error::arg(op, "the padding value is NaN"));
    }
    for a in 0..2 {
        // Coordinates in the padded image are signed 32-bit in the kernels.
        let (ext, span) = (win.image[2 + a] as u64, (d[a] * (k[a] - 1) + 1) as u64);
        let padded = ext + 2 * p[a] as u64;
        if padded + span + s[a] as u64 >= 1 << 31 {
            return bad(format!("padded extent {padded} with window span {span} is too large"));
        }
        if span > padded {
            return bad(format!(
                "a window spanning {span} (kernel {}, dilation {}) does not fit the padded extent {padded}",
                k[a], d[a]
            ));
        }
    }
    Ok(win.cols_shape().to_vec())
}

pub(super) fn im2col_forward(x: Arg, win: &Window2d, out: Arg) -> Vec<Kernel> {
    vec![Kernel::Im2col(kn::Im2col {
        x: x.buf,
        out: out.buf,
        win: *win,
    })]
}

/// d_x (+)= col2im(g): each window element's gradient added at the pixel it read.
pub(super) fn im2col_vjp(win: &Window2d, g: BufId, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    t[0].map(|dx| {
        Kernel::Col2im(kn::Col2im {
            g,
            out: dx.buf,
            win: *win,
            acc: dx.acc,
        })
    })
    .into_iter()
    .collect()
}

/// The shape of im2col(x)·b: the window matrix's (checked as im2col's) times b by `matmul`'s rules.
pub(super) fn window_matmul_shape(x: &[usize], b: &[usize], win: &Window2d) -> Result<Vec<usize>> {
    let cols = im2col_shape("im2col", x, win)?;
    matmul::shape(&cols, b)
}

/// im2col(x)·b with the window matrix read from the image by the matmul kernel.
pub(super) fn window_matmul_forward(x: Arg, b: Arg, win: &Window2d, out: Arg) -> Vec<Kernel> {
    let cols = win.cols_shape();
    let a = Arg {
        buf: x.buf,
        shape: &cols,
    };
    matmul::forward(a, Some(*win), b, out)
}

/// d_b (+)= colsᵀ·g with the window matrix read from the image again (no saved copy); d_x (+)=
/// col2im(g·bᵀ), the window matrix's gradient written to the scratch buffer `scratch[0]` first.
pub(super) fn window_matmul_vjp(
    x: Arg,
    b: Arg,
    win: &Window2d,
    g: BufId,
    scratch: &[BufId],
    t: &[Option<GradTarget>],
) -> Vec<Kernel> {
    let cols = win.cols_shape();
    let a = Arg {
        buf: x.buf,
        shape: &cols,
    };
    // The scratch buffer exists only when the image needs a gradient.
    let dcols = t[0].map(|_| scratch[0]);
    let targets = [dcols.map(|buf| GradTarget { buf, acc: false }), t[1]];
    let mut ks = matmul::vjp(a, Some(*win), b, g, &targets);
    if let Some(buf) = dcols {
        ks.extend(im2col_vjp(win, buf, &t[..1]));
    }
    ks
}

/// The pooled image's shape `[n, c, oh, ow]`, the window checked as im2col's (one window per
/// channel: `win.groups` is 1) under the pooling's name.
pub(super) fn pool_shape(x: &[usize], win: &Window2d, max: bool) -> Result<Vec<usize>> {
    let op = if max { "max_pool2d" } else { "avg_pool2d" };
    im2col_shape(op, x, win)?;
    let [oh, ow] = win.out_hw();
    Ok(vec![x[0], x[1], oh, ow])
}

/// Max pooling saves each window index of the max in `aux[0]`.
pub(super) fn pool_forward(x: Arg, win: &Window2d, max: bool, out: Arg, aux: &[BufId]) -> Vec<Kernel> {
    vec![Kernel::Pool(kn::Pool {
        x: x.buf,
        out: out.buf,
        arg: max.then(|| aux[0]),
        win: *win,
    })]
}

pub(super) fn pool_vjp(win: &Window2d, max: bool, g: BufId, aux: &[BufId], t: &[Option<GradTarget>]) -> Vec<Kernel> {
    t[0].map(|dx| {
        Kernel::PoolBackward(kn::PoolBackward {
            g,
            arg: max.then(|| aux[0]),
            out: dx.buf,
            win: *win,
            acc: dx.acc,
        })
    })
    .into_iter()
    .collect()
}
