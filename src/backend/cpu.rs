//! The CPU backend: reference implementations of every kernel, generic over f32 and f64.
//!
//! These functions are the ground truth the GPU kernels are tested against (in f32), and the
//! finite-difference gradient checks run them in f64. Matmul goes through the
//! `matrixmultiply` GEMM with strided operands, so transposed reads cost nothing.

use super::{
    Bcast, BinaryOp, BufId, Counters, Executor, Kernel, OptimRule, ProgramId, ReadFuture, ReadInner, ReduceOp, UnaryOp,
};
use crate::error::Result;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

/// Floating-point element type of the CPU backend (f32 for speed, f64 for gradient checks).
pub trait Real:
    Copy
    + PartialOrd
    + Default
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + std::fmt::Debug
{
    /// Conversion from f64 (rounding for f32).
    fn from_f64(v: f64) -> Self;
    /// Conversion to f64.
    fn to_f64(self) -> f64;
    /// e^x
    fn exp(self) -> Self;
    /// ln x
    fn ln(self) -> Self;
    /// tanh x
    fn tanh(self) -> Self;
    /// True for NaN.
    fn is_nan(self) -> bool;

    /// C = alpha·op(A)·op(B) + beta·C over strided views.
    ///
    /// # Safety
    /// Pointers and strides must describe valid, non-overlapping m×k, k×n and m×n views.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
    /// 0
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    /// 1
    fn one() -> Self {
        Self::from_f64(1.0)
    }
}

impl Real for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn exp(self) -> Self {
        exp_f32(self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }

    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded contract.
        unsafe { matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}

impl Real for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded contract.
        unsafe { matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}

/// e^x in f32 within 2 ulp of the correctly rounded result, written without branches or
/// library calls so that loops over it (σ, tanh, softmax) vectorise; libm's `expf` is a call
/// per element and dominated the CPU training step. Cody–Waite reduction x = n·ln2 + r with
/// |r| ≤ ln2/2, a degree-6 polynomial for e^r (Cephes' coefficients), and 2^n built from its
/// exponent bits in two halves so that n = 128 does not overflow early.
#[inline]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without SSE4.1's roundps.
    const ROUND: f32 = 12_582_912.0;
    // max/min (not clamp) so the loop vectorises: they map NaN to a bound (never NaN, so the
    // integer conversion below is sound); NaN is restored at the end.
    #[allow(clippy::manual_clamp)]
    let xc = x.max(-104.0).min(89.0);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // SAFETY: n is an integer in [-150, 129] (xc is finite and bounded), so the conversion is exact.
    let ni: i32 = unsafe { n.to_int_unchecked() };
    let h = ni >> 1;
    let s1 = f32::from_bits(((h + 127) as u32) << 23);
    let s2 = f32::from_bits(((ni - h + 127) as u32) << 23);
    let y = e * s1 * s2;
    // Saturate like expf: +inf above the range; NaN stays NaN.
    let y = if x > 88.722_84 { f32::INFINITY } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

#[inline(always)]
fn put<T: Real>(out: &mut T, v: T, acc: bool) {
    if acc {
        *out += v;
    } else {
        *out = v;
    }
}

/// out (+)= op(A)·op(B); A is m×k (stored k×m when `ta`), B is k×n (stored n×k when `tb`).
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Real>(a: &[T], b: &[T], out: &mut [T], m: usize, k: usize, n: usize, ta: bool, tb: bool, acc: bool) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && out.len() >= m * n,
        "matmul: buffers smaller than m×k, k×n, m×n"
    );
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    let beta = if acc { T::one() } else { T::zero() };
    // SAFETY: the assert above bounds every strided view inside its slice; `out` is a distinct &mut.
    unsafe {
        T::gemm(
            m,
            k,
            n,
            T::one(),
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Forward value of a unary op at x.
#[inline(always)]
pub fn unary_value<T: Real>(op: UnaryOp, x: T) -> T {
    match op {
        UnaryOp::Sigmoid => T::one() / (T::one() + (-x).exp()),
        UnaryOp::Relu => {
            if x > T::zero() {
                x
            } else {
                T::zero()
            }
        }
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Neg => -x,
        UnaryOp::Scale(a) => T::from_f64(a as f64) * x,
        UnaryOp::Square => x * x,
    }
}

/// `dst[i] = f(src[i])`, with the choice of f outside the loop so each loop vectorises.
#[inline(always)]
pub fn unary_map<T: Real>(op: UnaryOp, src: &[T], dst: &mut [T]) {
    // Plain indexed loops (bounds made equal up front): iterator adapters would be separate
    // functions, compiled outside the AVX2 build of the executor.
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    match op {
        UnaryOp::Sigmoid => {
            for i in 0..n {
                dst[i] = T::one() / (T::one() + (-src[i]).exp());
            }
        }
        UnaryOp::Exp => {
            for i in 0..n {
                dst[i] = src[i].exp();
            }
        }
        _ => {
            for i in 0..n {
                dst[i] = unary_value(op, src[i]);
            }
        }
    }
}

/// Fused layer forward over `rows` rows: z = xw + bias (per column), y = op(z), in one pass
/// (the activation chosen outside the loop, so the loop vectorises).
#[inline(always)]
fn bias_act<T: Real>(op: UnaryOp, xw: &[T], bias: &[T], z: &mut [T], y: &mut [T], rows: usize, cols: usize) {
    match op {
        // The op as a constant in each arm: `unary_value` folds to that one formula.
        UnaryOp::Sigmoid => bias_act_rows(|v| unary_value(UnaryOp::Sigmoid, v), xw, bias, z, y, rows, cols),
        UnaryOp::Tanh => bias_act_rows(|v| unary_value(UnaryOp::Tanh, v), xw, bias, z, y, rows, cols),
        _ => bias_act_rows(|v| unary_value(op, v), xw, bias, z, y, rows, cols),
    }
}

#[inline(always)]
fn bias_act_rows<T: Real>(
    f: impl Fn(T) -> T,
    xw: &[T],
    bias: &[T],
    z: &mut [T],
    y: &mut [T],
    rows: usize,
    cols: usize,
) {
    let bias = &bias[..cols];
    for r in 0..rows {
        let s = r * cols..(r + 1) * cols;
        let (xw, z, y) = (&xw[s.clone()], &mut z[s.clone()], &mut y[s]);
        for c in 0..cols {
            let v = xw[c] + bias[c];
            z[c] = v;
            y[c] = f(v);
        }
    }
}

/// Fused layer VJP over `rows` rows: d = g · f'(z) (from z and the saved y) is written to `dz`,
/// written or added to `dx`, and summed per column into `sums`. Row slices and the derivative
/// chosen outside the loop keep the inner loop a straight, vectorisable pass.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn bias_act_vjp<T: Real>(
    deriv: impl Fn(T, T) -> T,
    z: &[T],
    y: &[T],
    g: &[T],
    dz: &mut [T],
    dx: &mut [T],
    sums: &mut [f64],
    (rows, cols, acc_dx): (usize, usize, bool),
) {
    let sums = &mut sums[..cols];
    for r in 0..rows {
        let s = r * cols..(r + 1) * cols;
        let (z, y, g) = (&z[s.clone()], &y[s.clone()], &g[s.clone()]);
        let (dz, dx) = (&mut dz[s.clone()], &mut dx[s]);
        for c in 0..cols {
            let d = g[c] * deriv(z[c], y[c]);
            dz[c] = d;
            dx[c] = if acc_dx { dx[c] + d } else { d };
            sums[c] += d.to_f64();
        }
    }
}

/// Local derivative dy/dx, from the input x and the saved output y.
#[inline(always)]
pub fn unary_derivative<T: Real>(op: UnaryOp, x: T, y: T) -> T {
    match op {
        UnaryOp::Sigmoid => y * (T::one() - y),
        UnaryOp::Relu => {
            if x > T::zero() {
                T::one()
            } else {
                T::zero()
            }
        }
        UnaryOp::Tanh => T::one() - y * y,
        UnaryOp::Exp => y,
        UnaryOp::Log => T::one() / x,
        UnaryOp::Neg => -T::one(),
        UnaryOp::Scale(a) => T::from_f64(a as f64),
        UnaryOp::Square => T::from_f64(2.0) * x,
    }
}

fn binary_value<T: Real>(op: BinaryOp, a: T, b: T) -> T {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
    }
}

/// ∂(a∘b)/∂a (which = 0) or ∂(a∘b)/∂b (which = 1).
fn binary_partial<T: Real>(op: BinaryOp, a: T, b: T, which: u32) -> T {
    match (op, which) {
        (BinaryOp::Add, _) => T::one(),
        (BinaryOp::Sub, 0) => T::one(),
        (BinaryOp::Sub, _) => -T::one(),
        (BinaryOp::Mul, 0) => b,
        (BinaryOp::Mul, _) => a,
        (BinaryOp::Div, 0) => T::one() / b,
        (BinaryOp::Div, _) => -a / (b * b),
    }
}

fn unravel(mut i: usize, shape: &[usize; 4]) -> [usize; 4] {
    let mut idx = [0; 4];
    for d in (0..4).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

fn dot4(idx: &[usize; 4], strides: &[usize; 4]) -> usize {
    idx.iter().zip(strides).map(|(i, s)| i * s).sum()
}

/// out = a ∘ b with NumPy broadcasting.
#[inline]
pub fn binary<T: Real>(op: BinaryOp, a: &[T], b: &[T], out: &mut [T], bc: &Bcast) {
    let sa = Bcast::strides(&bc.a_shape);
    let sb = Bcast::strides(&bc.b_shape);
    for (i, o) in out.iter_mut().enumerate().take(bc.numel()) {
        let idx = unravel(i, &bc.out);
        *o = binary_value(op, a[dot4(&idx, &sa)], b[dot4(&idx, &sb)]);
    }
}

/// d_a (which = 0) or d_b (which = 1): g·∂(a∘b) summed over the axes that operand was broadcast along.
#[allow(clippy::too_many_arguments)]
pub fn binary_backward<T: Real>(
    op: BinaryOp,
    a: &[T],
    b: &[T],
    g: &[T],
    out: &mut [T],
    bc: &Bcast,
    which: u32,
    acc: bool,
) {
    let sa = Bcast::strides(&bc.a_shape);
    let sb = Bcast::strides(&bc.b_shape);
    let target = if which == 0 { bc.a_shape } else { bc.b_shape };
    let st = Bcast::strides(&target);
    let n: usize = target.iter().product();
    // Sums over the broadcast axes in f64 (see `reduce`).
    let mut sums = vec![0.0f64; n];
    for (i, &gi) in g.iter().enumerate().take(bc.numel()) {
        let idx = unravel(i, &bc.out);
        let (av, bv) = (a[dot4(&idx, &sa)], b[dot4(&idx, &sb)]);
        sums[dot4(&idx, &st)] += (gi * binary_partial(op, av, bv, which)).to_f64();
    }
    for (o, s) in out.iter_mut().zip(sums) {
        put(o, T::from_f64(s), acc);
    }
}

/// Reduce x viewed as [outer, axis, inner] along the middle axis.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn reduce<T: Real>(
    op: ReduceOp,
    x: &[T],
    out: &mut [T],
    arg: &mut [T],
    outer: usize,
    axis: usize,
    inner: usize,
    acc: bool,
) {
    for o in 0..outer {
        for i in 0..inner {
            let at = |a: usize| x[(o * axis + a) * inner + i];
            let v = match op {
                ReduceOp::Sum | ReduceOp::Mean => {
                    // Accumulated in f64: exact for any f32 sum of fewer than 2^29 terms of
                    // similar magnitude, so this backend can be the reference for long axes.
                    let s: f64 = (0..axis).map(|a| at(a).to_f64()).sum();
                    T::from_f64(if op == ReduceOp::Mean { s / axis as f64 } else { s })
                }
                ReduceOp::Max => {
                    let (mut best, mut besti) = (at(0), 0);
                    for a in 1..axis {
                        // NaN propagates: a NaN anywhere makes the max NaN, as IEEE max-with-NaN does in NumPy.
                        if at(a) > best || (at(a).is_nan() && !best.is_nan()) {
                            best = at(a);
                            besti = a;
                        }
                    }
                    arg[o * inner + i] = T::from_f64(besti as f64);
                    best
                }
            };
            put(&mut out[o * inner + i], v, acc);
        }
    }
}

/// Gradient of a reduction: spread g over the reduced axis.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn reduce_backward<T: Real>(
    op: ReduceOp,
    g: &[T],
    arg: &[T],
    out: &mut [T],
    outer: usize,
    axis: usize,
    inner: usize,
    acc: bool,
) {
    let inv = T::one() / T::from_f64(axis as f64);
    for o in 0..outer {
        for a in 0..axis {
            for i in 0..inner {
                let gi = g[o * inner + i];
                let v = match op {
                    ReduceOp::Sum => gi,
                    ReduceOp::Mean => gi * inv,
                    ReduceOp::Max => {
                        if arg[o * inner + i].to_f64() as usize == a {
                            gi
                        } else {
                            T::zero()
                        }
                    }
                };
                put(&mut out[(o * axis + a) * inner + i], v, acc);
            }
        }
    }
}

fn row_max<T: Real>(row: &[T]) -> T {
    row.iter().copied().fold(row[0], |m, v| if v > m { v } else { m })
}

/// Row-wise softmax, computed as exp(x − max) / Σ exp(x − max).
#[inline]
pub fn softmax<T: Real>(x: &[T], out: &mut [T], rows: usize, cols: usize) {
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let m = row_max(row);
        let mut s = T::zero();
        for (o, &v) in out[r * cols..(r + 1) * cols].iter_mut().zip(row) {
            *o = (v - m).exp();
            s += *o;
        }
        for o in &mut out[r * cols..(r + 1) * cols] {
            *o = *o / s;
        }
    }
}

/// d_x (+)= y ⊙ (g − Σ g⊙y) per row.
#[inline]
pub fn softmax_backward<T: Real>(y: &[T], g: &[T], out: &mut [T], rows: usize, cols: usize, acc: bool) {
    for r in 0..rows {
        let s = (0..cols).fold(T::zero(), |s, c| s + g[r * cols + c] * y[r * cols + c]);
        for c in 0..cols {
            let i = r * cols + c;
            put(&mut out[i], y[i] * (g[i] - s), acc);
        }
    }
}

/// Softmax cross-entropy per row in logsumexp form; also keeps the probabilities for the VJP.
pub fn softmax_xent<T: Real>(
    logits: &[T],
    labels: &[T],
    probs: &mut [T],
    loss_rows: &mut [T],
    rows: usize,
    cols: usize,
) {
    softmax(logits, probs, rows, cols);
    for r in 0..rows {
        let row = &logits[r * cols..(r + 1) * cols];
        let m = row_max(row);
        let s = row.iter().fold(T::zero(), |s, &v| s + (v - m).exp());
        let label = (labels[r].to_f64() as usize).min(cols - 1);
        loss_rows[r] = m + s.ln() - row[label];
    }
}

/// d_logits (+)= g · (probs − onehot) / rows.
#[allow(clippy::too_many_arguments)]
pub fn softmax_xent_backward<T: Real>(
    probs: &[T],
    labels: &[T],
    g: T,
    out: &mut [T],
    rows: usize,
    cols: usize,
    acc: bool,
) {
    let scale = g / T::from_f64(rows as f64);
    for (r, &lab) in labels.iter().enumerate().take(rows) {
        // Clamped as in the forward pass (the graph refuses labels past the classes; forward and
        // backward still agree on one meaning if one gets through).
        let label = (lab.to_f64() as usize).min(cols - 1);
        for c in 0..cols {
            let i = r * cols + c;
            let onehot = if c == label { T::one() } else { T::zero() };
            put(&mut out[i], scale * (probs[i] - onehot), acc);
        }
    }
}

/// Applies one optimizer update in place. `state` is the velocity (SGD) or the first moment
/// followed by the second moment (Adam).
#[inline(always)]
pub fn optim<T: Real>(rule: OptimRule, p: &mut [T], g: &[T], state: &mut [T], h: &[T]) {
    match rule {
        OptimRule::Sgd => {
            let (lr, mu, wd) = (h[0], h[1], h[2]);
            let n = p.len();
            let (g, v) = (&g[..n], &mut state[..n]);
            for i in 0..n {
                v[i] = mu * v[i] + (g[i] + wd * p[i]);
                p[i] = p[i] - lr * v[i];
            }
        }
        OptimRule::Adam => {
            let (lr, b1, b2, eps, wd, c1, c2) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
            let (m, v) = state.split_at_mut(p.len());
            for i in 0..p.len() {
                let d = g[i] + wd * p[i];
                m[i] = b1 * m[i] + (T::one() - b1) * d;
                v[i] = b2 * v[i] + (T::one() - b2) * d * d;
                let vhat = v[i] / c2;
                p[i] = p[i] - lr * (m[i] / c1) / (T::from_f64(vhat.to_f64().sqrt()) + eps);
            }
        }
    }
}

/// The CPU executor: buffers are plain vectors, programs are kernel lists run in order.
pub(crate) struct CpuExecutor<T: Real> {
    bufs: Vec<Vec<T>>,
    programs: Vec<Option<Vec<Kernel>>>,
    counters: Counters,
    /// The CPU has AVX2 and FMA: kernels run from a build of `exec_body` for them.
    wide: bool,
}

impl<T: Real> CpuExecutor<T> {
    pub fn new() -> Self {
        CpuExecutor {
            bufs: Vec::new(),
            programs: Vec::new(),
            counters: Counters::default(),
            #[cfg(target_arch = "x86_64")]
            wide: std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            wide: false,
        }
    }

    /// Runs one kernel. The loops are portable Rust that the compiler vectorises; on x86-64
    /// with AVX2 + FMA the same code is also built for those (8 lanes instead of SSE2's 4).
    fn exec(&mut self, k: &Kernel) {
        #[cfg(target_arch = "x86_64")]
        if self.wide {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn wide<T: Real>(e: &mut CpuExecutor<T>, k: &Kernel) {
                e.exec_body(k)
            }
            // SAFETY: `wide` is set only when the CPU reports AVX2 and FMA.
            return unsafe { wide(self, k) };
        }
        self.exec_body(k)
    }

    #[inline(always)]
    fn exec_body(&mut self, k: &Kernel) {
        use Kernel::*;
        // Each kernel writes one buffer: take it out so the inputs can be borrowed alongside.
        let out_id = match k {
            Fill { out, .. } | Copy { out, .. } | MatMul { out, .. } | BiasAdd { out, .. } | Unary { out, .. } => *out,
            UnaryBackward { out, .. } | Binary { out, .. } | BinaryBackward { out, .. } | Reduce { out, .. } => *out,
            ReduceBackward { out, .. } | Softmax { out, .. } | SoftmaxBackward { out, .. } => *out,
            SoftmaxXent { probs, .. } => *probs,
            SoftmaxXentBackward { out, .. } | Mse { out, .. } | MseBackward { out, .. } | Transpose { out, .. } => *out,
            Optim { param, .. } => *param,
            BiasActBackward { dz, .. } => *dz,
            BiasActForward { y, .. } | MatMulBiasAct { y, .. } => *y,
        };
        let mut o = std::mem::take(&mut self.bufs[out_id]);
        let b = &self.bufs;
        match *k {
            Fill { len, value, acc, .. } => o[..len].iter_mut().for_each(|v| put(v, T::from_f64(value as f64), acc)),
            Copy { x, len, acc, .. } => o[..len].iter_mut().zip(&b[x]).for_each(|(v, &s)| put(v, s, acc)),
            MatMul {
                a,
                b: bb,
                m,
                k,
                n,
                ta,
                tb,
                acc,
                ..
            } => matmul(&b[a], &b[bb], &mut o, m, k, n, ta, tb, acc),
            BiasAdd {
                x, bias, rows, cols, ..
            } => {
                for r in 0..rows {
                    for c in 0..cols {
                        o[r * cols + c] = b[x][r * cols + c] + b[bias][c];
                    }
                }
            }
            Unary { op, x, len, .. } => unary_map(op, &b[x][..len], &mut o[..len]),
            UnaryBackward {
                op, x, y, g, len, acc, ..
            } => {
                for i in 0..len {
                    put(&mut o[i], b[g][i] * unary_derivative(op, b[x][i], b[y][i]), acc);
                }
            }
            Binary { op, a, b: bb, bc, .. } => binary(op, &b[a], &b[bb], &mut o, &bc),
            BinaryBackward {
                op,
                a,
                b: bb,
                g,
                bc,
                which,
                acc,
                ..
            } => binary_backward(op, &b[a], &b[bb], &b[g], &mut o, &bc, which, acc),
            Reduce {
                op,
                x,
                arg,
                outer,
                axis,
                inner,
                acc,
                ..
            } => {
                // Only max records indices; sum and mean leave `arg` untouched.
                let mut idx = if op == ReduceOp::Max {
                    std::mem::take(&mut self.bufs[arg])
                } else {
                    Vec::new()
                };
                reduce(op, &self.bufs[x], &mut o, &mut idx, outer, axis, inner, acc);
                if op == ReduceOp::Max {
                    self.bufs[arg] = idx;
                }
            }
            ReduceBackward {
                op,
                g,
                arg,
                outer,
                axis,
                inner,
                acc,
                ..
            } => reduce_backward(op, &b[g], &b[arg], &mut o, outer, axis, inner, acc),
            Softmax { x, rows, cols, .. } => softmax(&b[x], &mut o, rows, cols),
            SoftmaxBackward {
                y, g, rows, cols, acc, ..
            } => softmax_backward(&b[y], &b[g], &mut o, rows, cols, acc),
            SoftmaxXent {
                logits,
                labels,
                loss_rows,
                rows,
                cols,
                ..
            } => {
                let mut lr = std::mem::take(&mut self.bufs[loss_rows]);
                softmax_xent(&self.bufs[logits], &self.bufs[labels], &mut o, &mut lr, rows, cols);
                self.bufs[loss_rows] = lr;
            }
            SoftmaxXentBackward {
                probs,
                labels,
                g,
                rows,
                cols,
                acc,
                ..
            } => softmax_xent_backward(&b[probs], &b[labels], b[g][0], &mut o, rows, cols, acc),
            Mse { p, t, len, .. } => {
                // Differences and squares in T, their sum in f64 (see `reduce`).
                let s: f64 = (0..len)
                    .map(|i| {
                        let d = b[p][i] - b[t][i];
                        (d * d).to_f64()
                    })
                    .sum();
                o[0] = T::from_f64(s / len as f64);
            }
            MseBackward {
                p,
                t,
                g,
                len,
                which,
                acc,
                ..
            } => {
                let sign = if which == 0 { 2.0 } else { -2.0 };
                let scale = b[g][0] * T::from_f64(sign / len as f64);
                for i in 0..len {
                    put(&mut o[i], scale * (b[p][i] - b[t][i]), acc);
                }
            }
            Transpose { x, rows, cols, acc, .. } => {
                for r in 0..rows {
                    for c in 0..cols {
                        put(&mut o[c * rows + r], b[x][r * cols + c], acc);
                    }
                }
            }
            BiasActForward {
                op,
                xw,
                bias,
                z,
                rows,
                cols,
                ..
            } => {
                let mut zv = std::mem::take(&mut self.bufs[z]);
                let (xb, bb) = (&self.bufs[xw], &self.bufs[bias]);
                bias_act(op, xb, bb, &mut zv, &mut o, rows, cols);
                self.bufs[z] = zv;
            }
            MatMulBiasAct {
                op,
                a,
                b: bb,
                bias,
                xw,
                z,
                m,
                k,
                n,
                ..
            } => {
                let mut xv = std::mem::take(&mut self.bufs[xw]);
                let mut zv = std::mem::take(&mut self.bufs[z]);
                let (av, bv, biasv) = (&self.bufs[a], &self.bufs[bb], &self.bufs[bias]);
                matmul(av, bv, &mut xv, m, k, n, false, false, false);
                bias_act(op, &xv, biasv, &mut zv, &mut o, m, n);
                self.bufs[xw] = xv;
                self.bufs[z] = zv;
            }
            BiasActBackward {
                op,
                z,
                y,
                g,
                dx,
                db,
                rows,
                cols,
                acc_dx,
                acc_db,
                ..
            } => {
                let mut dxv = std::mem::take(&mut self.bufs[dx]);
                let mut dbv = std::mem::take(&mut self.bufs[db]);
                let (zb, yb, gb) = (&self.bufs[z], &self.bufs[y], &self.bufs[g]);
                // Column sums in f64 (see `reduce`).
                let mut sums = vec![0.0f64; cols];
                let (dz, dxs, sm) = (&mut o[..], &mut dxv[..], &mut sums[..]);
                let shape = (rows, cols, acc_dx);
                // The op as a constant in each arm: `unary_derivative` folds to that one formula.
                let d = |op| move |x, y| unary_derivative(op, x, y);
                match op {
                    UnaryOp::Sigmoid => bias_act_vjp(d(UnaryOp::Sigmoid), zb, yb, gb, dz, dxs, sm, shape),
                    UnaryOp::Tanh => bias_act_vjp(d(UnaryOp::Tanh), zb, yb, gb, dz, dxs, sm, shape),
                    _ => bias_act_vjp(d(op), zb, yb, gb, dz, dxs, sm, shape),
                }
                for (v, s) in dbv.iter_mut().zip(sums) {
                    put(v, T::from_f64(s), acc_db);
                }
                self.bufs[dx] = dxv;
                self.bufs[db] = dbv;
            }
            Optim {
                rule,
                grad,
                state,
                hyper,
                ..
            } => {
                let mut st = std::mem::take(&mut self.bufs[state]);
                optim(rule, &mut o, &self.bufs[grad], &mut st, &self.bufs[hyper]);
                self.bufs[state] = st;
            }
        }
        self.bufs[out_id] = o;
        self.counters.dispatches += 1;
    }
}

impl<T: Real> Executor for CpuExecutor<T> {
    fn alloc(&mut self, len: usize, _what: &str) -> Result<BufId> {
        self.bufs.push(vec![T::zero(); len]);
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        self.counters.buffers_created += 1;
        self.counters.bytes_allocated += bytes;
        self.counters.live_buffers += 1;
        self.counters.live_bytes += bytes;
        Ok(self.bufs.len() - 1)
    }
    fn free(&mut self, buf: BufId) {
        let v = std::mem::take(&mut self.bufs[buf]);
        let bytes = (v.len() * std::mem::size_of::<T>()) as u64;
        self.counters.live_buffers -= 1;
        self.counters.live_bytes -= bytes;
    }
    fn write(&mut self, buf: BufId, data: &[f64]) -> Result<()> {
        for (d, &s) in self.bufs[buf].iter_mut().zip(data) {
            *d = T::from_f64(s);
        }
        Ok(())
    }
    fn write_f32(&mut self, buf: BufId, data: &[f32]) -> Result<()> {
        for (d, &s) in self.bufs[buf].iter_mut().zip(data) {
            *d = T::from_f64(s as f64);
        }
        Ok(())
    }
    fn read(&mut self, buf: BufId) -> Result<Vec<f64>> {
        Ok(self.bufs[buf].iter().map(|v| v.to_f64()).collect())
    }
    fn read_f32(&mut self, buf: BufId) -> Result<Vec<f32>> {
        Ok(self.bufs[buf].iter().map(|v| v.to_f64() as f32).collect())
    }
    fn compile(&mut self, kernels: Vec<Kernel>) -> Result<ProgramId> {
        self.programs.push(Some(kernels));
        Ok(self.programs.len() - 1)
    }
    fn run(&mut self, programs: &[ProgramId]) -> Result<()> {
        for &p in programs {
            let kernels = self.programs[p]
                .take()
                .expect("program ids handed out by compile stay valid until discard");
            for k in &kernels {
                self.exec(k);
            }
            self.programs[p] = Some(kernels);
        }
        self.counters.submissions += 1;
        Ok(())
    }
    fn discard(&mut self, program: ProgramId) {
        self.programs[program] = None;
    }
    fn counters(&self) -> Counters {
        self.counters
    }
    fn wait(&mut self) -> Result<()> {
        Ok(())
    }
    fn max_storage_buffers(&self) -> u32 {
        u32::MAX
    }
    fn fuses_matmul_bias_act(&self, _m: usize, _k: usize, _n: usize) -> bool {
        true
    }
    fn read_async(&mut self, buf: BufId) -> Result<ReadFuture> {
        let v = self.read_f32(buf);
        Ok(ReadFuture {
            inner: ReadInner::Ready(Some(v)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::exp_f32;

    #[test]
    fn fast_exp_is_within_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = -103.0f32;
        while x < 88.7 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            let ulp = (want as f32).abs() * f32::EPSILON;
            if want > 1e-37 {
                worst = worst.max((got - want).abs() / ulp as f64);
            } else {
                // Subnormal results: absolute error only.
                assert!((got - want).abs() < 1e-44, "exp({x}) = {got} vs {want}");
            }
            x += 0.0137;
        }
        assert!(worst <= 2.0, "max error {worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(200.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
    }
}
