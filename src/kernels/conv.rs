//! Sliding windows over NCHW images (`shaders/conv.wgsl`): `im2col`, which lays every window out
//! as a row so that a convolution is one matrix product and a pooling one reduction, and its VJP
//! `col2im`, which adds each window element's gradient back at the pixel it was read from.

use super::{par, put, u, wgsl_params, with_out, BufId, Cx, Kernel, KernelDef, Launch, Real};
use crate::error::Result;

wgsl_params! {
    /// `Params` of `shaders/conv.wgsl`.
    ConvParams for "conv" {
        /// batch, channels, height, width of the image
        nchw: [u32; 4],
        /// kernel height and width, output height and width
        kernel: [u32; 4],
        /// stride (height, width), padding (height, width)
        sp: [u32; 4],
        /// dilation (height, width), groups, channels per group
        dil: [u32; 4],
        /// elements written
        len: u32,
        acc: u32,
        /// the value read outside the image (0 for convolution, −∞ for max pooling)
        pad_value: f32,
        /// kernel height × width
        kk: u32,
    }
}

/// Where a 2-D window slides over an NCHW image `[n, c, h, w]`: the window's size, stride,
/// zero-based padding on each side and dilation (height, width), and the channel groups (a
/// window reads the `c / groups` channels of its group). Output extents follow PyTorch:
/// `(h + 2·pad − dil·(k − 1) − 1) / stride + 1`, rounded down.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window2d {
    /// `[n, c, h, w]` of the image.
    pub image: [usize; 4],
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Step between windows (height, width).
    pub stride: [usize; 2],
    /// Implicit padding on both sides (height, width).
    pub padding: [usize; 2],
    /// Spacing between window elements (height, width).
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
    /// The value a window reads in the padding.
    pub pad_value: f32,
}

impl Window2d {
    /// Output height and width (the caller has checked the window fits: see
    /// [`Window2d::checked_out_hw`]).
    pub fn out_hw(&self) -> [usize; 2] {
        self.checked_out_hw()
            .expect("the window was checked against the image when its node was added")
    }

    /// Output height and width, or `None` when a window does not fit the padded image (or a
    /// size is zero).
    pub fn checked_out_hw(&self) -> Option<[usize; 2]> {
        if self.stride.contains(&0) || self.dilation.contains(&0) {
            return None;
        }
        let out = |d: usize| {
            let span = self.dilation[d]
                .checked_mul(self.kernel[d].checked_sub(1)?)?
                .checked_add(1)?;
            let padded = self.image[2 + d].checked_add(self.padding[d].checked_mul(2)?)?;
            Some(padded.checked_sub(span)? / self.stride[d] + 1)
        };
        Some([out(0)?, out(1)?])
    }

    /// Channels per group.
    pub fn group_channels(&self) -> usize {
        self.image[1] / self.groups
    }

    /// The shape of the window matrix: `[groups, n·oh·ow, (c / groups)·kh·kw]`, one row per
    /// window position, its elements in (channel, row, column) order.
    pub fn cols_shape(&self) -> [usize; 3] {
        let [oh, ow] = self.out_hw();
        let k = self.group_channels() * self.kernel[0] * self.kernel[1];
        [self.groups, self.image[0] * oh * ow, k]
    }

    fn params(&self, len: usize, acc: bool) -> ConvParams {
        let [oh, ow] = self.out_hw();
        ConvParams {
            nchw: self.image.map(u),
            kernel: [self.kernel[0], self.kernel[1], oh, ow].map(u),
            sp: [self.stride[0], self.stride[1], self.padding[0], self.padding[1]].map(u),
            dil: [self.dilation[0], self.dilation[1], self.groups, self.group_channels()].map(u),
            len: u(len),
            acc: acc as u32,
            pad_value: self.pad_value,
            kk: u(self.kernel[0] * self.kernel[1]),
        }
    }

    /// The image coordinate window element `k` of output position `o` reads along axis `d`
    /// (0: height, 1: width), or `None` in the padding.
    #[inline(always)]
    fn source(&self, d: usize, o: usize, k: usize) -> Option<usize> {
        (o * self.stride[d] + k * self.dilation[d])
            .checked_sub(self.padding[d])
            .filter(|&s| s < self.image[2 + d])
    }

    /// The image columns each output column's window reads, for the CPU loops.
    fn columns(&self) -> Columns {
        let ([_, kw], [_, ow], wd) = (self.kernel, self.out_hw(), self.image[3]);
        let mut source = Vec::with_capacity(ow * kw);
        let mut run = Vec::with_capacity(ow);
        for xo in 0..ow {
            let first = source.len();
            source.extend((0..kw).map(|kx| self.source(1, xo, kx).unwrap_or(wd)));
            let s0 = source[first];
            let consecutive = source[first..]
                .iter()
                .enumerate()
                .all(|(kx, &sx)| sx == s0 + kx && sx < wd);
            run.push(consecutive.then_some(s0));
        }
        Columns { source, run }
    }
}

/// `$fixed::<K, T>(args)` for a length `K` of 1 to 8, else `$other`: the few elements of one
/// window row as fixed-size arrays, which compile to a handful of moves (a `memcpy` call per
/// window row was most of the CPU im2col's time).
macro_rules! by_short_len {
    ($len:expr, $fixed:ident::<$t:ty>($($arg:expr),*), $other:expr) => {
        match $len {
            1 => $fixed::<1, $t>($($arg),*),
            2 => $fixed::<2, $t>($($arg),*),
            3 => $fixed::<3, $t>($($arg),*),
            4 => $fixed::<4, $t>($($arg),*),
            5 => $fixed::<5, $t>($($arg),*),
            6 => $fixed::<6, $t>($($arg),*),
            7 => $fixed::<7, $t>($($arg),*),
            8 => $fixed::<8, $t>($($arg),*),
            _ => $other,
        }
    };
}

/// `dst.copy_from_slice(src)` for one window row.
#[inline(always)]
fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    fn fixed<const K: usize, T: Copy>(dst: &mut [T], src: &[T]) {
        let d: &mut [T; K] = dst.try_into().expect("K elements");
        *d = *<&[T; K]>::try_from(src).expect("K elements");
    }
    by_short_len!(dst.len(), fixed::<T>(dst, src), dst.copy_from_slice(src))
}

/// `dst[i] += src[i]` for one window row.
#[inline(always)]
fn add_short<T: Real>(dst: &mut [T], src: &[T]) {
    fn fixed<const K: usize, T: Real>(dst: &mut [T], src: &[T]) {
        let d: &mut [T; K] = dst.try_into().expect("K elements");
        let s: &[T; K] = src.try_into().expect("K elements");
        for (d, &s) in d.iter_mut().zip(s) {
            put(d, s, true);
        }
    }
    by_short_len!(
        dst.len(),
        fixed::<T>(dst, src),
        dst.iter_mut().zip(src).for_each(|(d, &s)| put(d, s, true))
    )
}

/// Per output column `xo`: `source[xo·kw + kx]`, the image column window element `kx` reads
/// (the image width where it falls in the padding), and `run[xo]`, the first of them where all
/// `kw` are consecutive pixels of the row (no padding, dilation 1).
struct Columns {
    source: Vec<usize>,
    run: Vec<Option<usize>>,
}

/// cols\[g, (n·oh + y)·ow + x, (ci·kh + ky)·kw + kx\] = image\[n, g·cg + ci, y·sh + ky·dh − ph,
/// x·sw + kx·dw − pw\], or the pad value outside the image.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Im2col {
    pub x: BufId,
    pub out: BufId,
    pub win: Window2d,
}

/// d_image (+)= the sum, over the window elements that read each pixel, of their gradient in
/// `g` (the window matrix's shape), in a fixed order: no atomics, the same bits every run.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Col2im {
    pub g: BufId,
    pub out: BufId,
    pub win: Window2d,
    pub acc: bool,
}

impl KernelDef for Im2col {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let len: usize = self.win.cols_shape().iter().product();
        let p = self.win.params(len, false);
        let binds = vec![(1, self.x, true), (3, self.out, false)];
        Ok(vec![Launch::new("im2col", &p, binds, cx.elems(len)?)])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        with_out!(b, self.out, |o, b| im2col_into(&self.win, &b[self.x], o))
    }
}

/// The window matrix of the image `x` into `o` (the CPU im2col; also what an implicit GEMM's A
/// stands for).
#[inline(always)]
pub(crate) fn im2col_into<T: Real>(w: &Window2d, x: &[T], o: &mut [T]) {
    let [n, c, h, wd] = w.image;
    let ([kh, kw], [oh, ow], cg) = (w.kernel, w.out_hw(), w.group_channels());
    let pad = T::from_f64(w.pad_value as f64);
    let cols = w.columns();
    let k = cg * kh * kw;
    let len = w.groups * n * oh * ow * k;
    // Runs of window rows (one per output pixel of a group: g, image, y, x), one per thread.
    par::rows(
        &mut o[..len],
        k,
        k,
        #[inline(always)]
        |rs, o| {
            let mut i = 0;
            for r in rs {
                let (xo, y, ni, g) = (r % ow, r / ow % oh, r / (ow * oh) % n, r / (ow * oh * n));
                for ci in 0..cg {
                    let plane = (ni * c + g * cg + ci) * h;
                    for ky in 0..kh {
                        let out = &mut o[i..i + kw];
                        i += kw;
                        let Some(sy) = w.source(0, y, ky) else {
                            out.fill(pad);
                            continue;
                        };
                        let row = &x[(plane + sy) * wd..(plane + sy + 1) * wd];
                        match cols.run[xo] {
                            // The window's columns are consecutive pixels of the row.
                            Some(s0) => copy_short(out, &row[s0..s0 + kw]),
                            None => {
                                for (v, &sx) in out.iter_mut().zip(&cols.source[xo * kw..]) {
                                    *v = if sx < wd { row[sx] } else { pad };
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

impl KernelDef for Col2im {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let len: usize = self.win.image.iter().product();
        let p = self.win.params(len, self.acc);
        let binds = vec![(1, self.g, true), (3, self.out, false)];
        Ok(vec![Launch::new("col2im", &p, binds, cx.elems(len)?)])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let w = &self.win;
        let [n, c, h, wd] = w.image;
        let ([kh, kw], [oh, ow], cg) = (w.kernel, w.out_hw(), w.group_channels());
        let k = cg * kh * kw;
        with_out!(b, self.out, |o, b| {
            let gr = &b[self.g];
            if !self.acc {
                o.iter_mut().for_each(|v| *v = T::zero());
            }
            // Scatter in the CPU reference (the GPU gathers per pixel; both add the same terms,
            // the CPU in f64 for the f64 checks).
            let cols = w.columns();
            // Images in runs, one per thread: an image's pixels receive only its own window
            // rows, each pixel its terms in the order of the serial loop (a channel belongs to
            // one group, so moving the image loop outside the group loop keeps that order).
            let plane_len = c * h * wd;
            par::rows(
                &mut o[..n * plane_len],
                plane_len,
                oh * ow * k,
                #[inline(always)]
                |images, o| {
                    for (i, ni) in images.enumerate() {
                        let o = &mut o[i * plane_len..(i + 1) * plane_len];
                        for g in 0..w.groups {
                            for y in 0..oh {
                                for xo in 0..ow {
                                    let row = ((g * n + ni) * oh + y) * ow + xo;
                                    for ci in 0..cg {
                                        let plane = (g * cg + ci) * h;
                                        for ky in 0..kh {
                                            let Some(sy) = w.source(0, y, ky) else { continue };
                                            let j = row * k + (ci * kh + ky) * kw;
                                            let src = &gr[j..j + kw];
                                            let dst = &mut o[(plane + sy) * wd..(plane + sy + 1) * wd];
                                            match cols.run[xo] {
                                                Some(s0) => add_short(&mut dst[s0..s0 + kw], src),
                                                None => {
                                                    for (&v, &sx) in src.iter().zip(&cols.source[xo * kw..]) {
                                                        if sx < wd {
                                                            put(&mut dst[sx], v, true);
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
            )
        })
    }
}

/// Pooling straight from the image (`[n, c, h, w]`, one window per channel: `win.groups` is 1):
/// with `arg`, the largest element of each window (the padding reads `win.pad_value`, −∞; the
/// first largest wins, a NaN over numbers) and its window index saved in `arg`; without, the
/// mean of each window (the padding counted as zeros). out is `[n, c, oh, ow]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Pool {
    pub x: BufId,
    pub out: BufId,
    pub arg: Option<BufId>,
    pub win: Window2d,
}

/// VJP of [`Pool`]: d_image (+)= each output's gradient at the pixel that was its window's max
/// (`arg`), or spread evenly over its window (no `arg`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PoolBackward {
    pub g: BufId,
    pub arg: Option<BufId>,
    pub out: BufId,
    pub win: Window2d,
    pub acc: bool,
}

impl Window2d {
    /// Output positions (plane, y, x) of the planes `planes` with their flat index, in order,
    /// for the pooling loops.
    #[inline(always)]
    fn each_output(&self, planes: std::ops::Range<usize>, mut f: impl FnMut(usize, usize, usize, usize)) {
        let [oh, ow] = self.out_hw();
        let mut i = planes.start * oh * ow;
        for plane in planes {
            for y in 0..oh {
                for xo in 0..ow {
                    f(i, plane, y, xo);
                    i += 1;
                }
            }
        }
    }

    /// The image index window element (ky, kx) of output (plane, y, x) reads, or `None` in the
    /// padding.
    #[inline(always)]
    fn pixel(&self, plane: usize, y: usize, xo: usize, ky: usize, kx: usize) -> Option<usize> {
        let (sy, sx) = (self.source(0, y, ky)?, self.source(1, xo, kx)?);
        Some((plane * self.image[2] + sy) * self.image[3] + sx)
    }
}

/// A pooling kernel over `p.len` elements: the max entry point, which also binds the window
/// indices `arg`, or the mean one; `(x, out)` as bindings 1 and 3.
fn pool_launch(
    cx: &Cx,
    (max, avg): (&'static str, &'static str),
    p: ConvParams,
    (x, out): (BufId, BufId),
    arg: Option<BufId>,
) -> Result<Vec<Launch>> {
    let mut binds = vec![(1, x, true), (3, out, false)];
    binds.extend(arg.map(|a| (2, a, false)));
    let entry = if arg.is_some() { max } else { avg };
    Ok(vec![Launch::new(entry, &p, binds, cx.elems(p.len as usize)?)])
}

impl KernelDef for Pool {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let [n, c, _, _] = self.win.image;
        let [oh, ow] = self.win.out_hw();
        let p = self.win.params(n * c * oh * ow, false);
        pool_launch(cx, ("pool_max", "pool_avg"), p, (self.x, self.out), self.arg)
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let w = &self.win;
        let ([n, c, h, wd], [kh, kw], [oh, ow]) = (w.image, w.kernel, w.out_hw());
        let pad = T::from_f64(w.pad_value as f64);
        // Per output row: its windows' image rows (`None` in the padding), looked up once; per
        // output: its columns' sources from a table (the image width in the padding). The inner
        // loops only compare or add. (The loop nest is written out for each op: through a shared
        // helper taking a closure the max pooling measured 40 % slower.)
        let cols = w.columns();
        match self.arg {
            Some(arg) => super::with_outs!(b, [self.out, arg], |[o, a], b| {
                let x = &b[self.x];
                let per = oh * ow;
                let (o, a) = (&mut o[..n * c * per], &mut a[..n * c * per]);
                // Planes in runs, one per thread.
                par::rows2(
                    o,
                    per,
                    a,
                    per,
                    per * kh * kw,
                    #[inline(always)]
                    |planes, o, a| {
                        let mut rows: Vec<Option<usize>> = vec![None; kh];
                        let mut starts = vec![0; kh];
                        // Output columns whose windows are consecutive columns inside the image
                        // (a range: outside it the window reaches into the padding).
                        let lo = (0..ow).find(|&xo| cols.run[xo].is_some()).unwrap_or(ow);
                        let inner = (lo, (lo..ow).find(|&xo| cols.run[xo].is_none()).unwrap_or(ow));
                        let sw = w.stride[1];
                        let mut i = 0;
                        for plane in planes {
                            for y in 0..oh {
                                for (ky, r) in rows.iter_mut().enumerate() {
                                    *r = w.source(0, y, ky).map(|sy| (plane * h + sy) * wd);
                                    starts[ky] = r.unwrap_or(0);
                                }
                                // The outputs whose windows lie inside the image (all of them
                                // without padding): one window element at a time across all of
                                // them, the comparisons of the loop below in the same order per
                                // output, as selects over a row (no branch per element).
                                let (lo, hi) = if rows.iter().all(Option::is_some) {
                                    inner
                                } else {
                                    (0, 0)
                                };
                                if hi > lo {
                                    let s0 = cols.run[lo].expect("an interior column");
                                    let (ob, ab) = (&mut o[i + lo..i + hi], &mut a[i + lo..i + hi]);
                                    let mut e = 0;
                                    for &r in &starts {
                                        for kx in 0..kw {
                                            let xs = x[r + s0 + kx..].iter().step_by(sw);
                                            if e == 0 {
                                                for ((o, a), &v) in ob.iter_mut().zip(ab.iter_mut()).zip(xs) {
                                                    (*o, *a) = (v, T::zero());
                                                }
                                            } else {
                                                let et = T::from_f64(e as f64);
                                                for ((o, a), &v) in ob.iter_mut().zip(ab.iter_mut()).zip(xs) {
                                                    let take = v > *o || (v.is_nan() && !o.is_nan());
                                                    *o = if take { v } else { *o };
                                                    *a = if take { et } else { *a };
                                                }
                                            }
                                            e += 1;
                                        }
                                    }
                                }
                                for xo in 0..ow {
                                    if (lo..hi).contains(&xo) {
                                        i += 1;
                                        continue;
                                    }
                                    let src = &cols.source[xo * kw..(xo + 1) * kw];
                                    let (mut best, mut besti, mut e) = (pad, 0, 0);
                                    for r in &rows {
                                        for &sx in src {
                                            let v = match *r {
                                                Some(r) if sx < wd => x[r + sx],
                                                _ => pad,
                                            };
                                            if e == 0 || v > best || (v.is_nan() && !best.is_nan()) {
                                                best = v;
                                                besti = e;
                                            }
                                            e += 1;
                                        }
                                    }
                                    o[i] = best;
                                    a[i] = T::from_f64(besti as f64);
                                    i += 1;
                                }
                            }
                        }
                    },
                )
            }),
            None => with_out!(b, self.out, |o, b| {
                let (x, kk) = (&b[self.x], (kh * kw) as f64);
                let per = oh * ow;
                par::rows(
                    &mut o[..n * c * per],
                    per,
                    per * kh * kw,
                    #[inline(always)]
                    |planes, o| {
                        let mut rows: Vec<Option<usize>> = vec![None; kh];
                        let mut i = 0;
                        for plane in planes {
                            for y in 0..oh {
                                for (ky, r) in rows.iter_mut().enumerate() {
                                    *r = w.source(0, y, ky).map(|sy| (plane * h + sy) * wd);
                                }
                                for xo in 0..ow {
                                    let src = &cols.source[xo * kw..(xo + 1) * kw];
                                    let mut s = 0.0f64;
                                    for r in rows.iter().flatten() {
                                        for &sx in src.iter().filter(|&&sx| sx < wd) {
                                            s += x[r + sx].to_f64();
                                        }
                                    }
                                    o[i] = T::from_f64(s / kk);
                                    i += 1;
                                }
                            }
                        }
                    },
                )
            }),
        }
    }
}

impl KernelDef for PoolBackward {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let p = self.win.params(self.win.image.iter().product(), self.acc);
        let entries = ("pool_max_backward", "pool_avg_backward");
        pool_launch(cx, entries, p, (self.g, self.out), self.arg)
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let w = &self.win;
        let [kh, kw] = w.kernel;
        let [n, c, h, wd] = w.image;
        let [oh, ow] = w.out_hw();
        with_out!(b, self.out, |o, b| {
            if !self.acc {
                o.iter_mut().for_each(|v| *v = T::zero());
            }
            // Scattered per output here (the GPU gathers per pixel; both add the same terms).
            // Planes in runs, one per thread: a plane's pixels receive only its own outputs'.
            let g = &b[self.g];
            let work = oh * ow * if self.arg.is_some() { 1 } else { kh * kw };
            par::rows(
                &mut o[..n * c * h * wd],
                h * wd,
                work,
                #[inline(always)]
                |planes, o| {
                    let base = planes.start * h * wd;
                    match self.arg {
                        Some(arg) => {
                            let a = &b[arg];
                            w.each_output(planes, |i, plane, y, xo| {
                                let e = a[i].to_f64() as usize;
                                if let Some(p) = w.pixel(plane, y, xo, e / kw, e % kw) {
                                    o[p - base] += g[i];
                                }
                            })
                        }
                        None => {
                            let inv = T::one() / T::from_f64((kh * kw) as f64);
                            w.each_output(planes, |i, plane, y, xo| {
                                for ky in 0..kh {
                                    for kx in 0..kw {
                                        if let Some(p) = w.pixel(plane, y, xo, ky, kx) {
                                            o[p - base] += g[i] * inv;
                                        }
                                    }
                                }
                            })
                        }
                    }
                },
            )
        })
    }
}

/// Representative kernels of the family (one entry point each, no constants).
pub(crate) fn examples() -> Vec<Kernel> {
    let win = Window2d {
        image: [2, 4, 5, 6],
        kernel: [3, 2],
        stride: [2, 1],
        padding: [1, 0],
        dilation: [1, 2],
        groups: 2,
        pad_value: 0.0,
    };
    let pool = Window2d {
        groups: 1,
        pad_value: f32::NEG_INFINITY,
        ..win
    };
    vec![
        Pool {
            x: 0,
            out: 1,
            arg: Some(2),
            win: pool,
        }
        .into(),
        Pool {
            x: 0,
            out: 1,
            arg: None,
            win: Window2d { pad_value: 0.0, ..pool },
        }
        .into(),
        PoolBackward {
            g: 0,
            arg: Some(2),
            out: 1,
            win: pool,
            acc: true,
        }
        .into(),
        PoolBackward {
            g: 0,
            arg: None,
            out: 1,
            win: pool,
            acc: false,
        }
        .into(),
        Im2col { x: 0, out: 1, win }.into(),
        Col2im {
            g: 0,
            out: 1,
            win,
            acc: true,
        }
        .into(),
    ]
}
