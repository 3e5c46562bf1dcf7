//! The element type of the CPU reference kernels: f32 for speed, f64 for gradient checks.

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
    /// The error function erf x.
    fn erf(self) -> Self;
    /// √x
    fn sqrt(self) -> Self;
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
    #[inline]
    fn tanh(self) -> Self {
        tanh_f32(self)
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
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
    fn erf(self) -> Self {
        libm::erf(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
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

/// tanh(x) in f32 within a few ulp, without branches or library calls so that loops over it
/// (tanh, the GELU) vectorise; libm's `tanhf` is a call per element. Near 0 an odd Taylor
/// polynomial (relative error below 1e-9 for |x| < 0.2); elsewhere 1 − 2/(e^{2|x|} + 1) through
/// [`exp_f32`] (about 8 ulp at |x| = 0.2, fewer beyond), with the sign of x put back.
#[inline]
pub fn tanh_f32(x: f32) -> f32 {
    let ax = x.abs();
    let x2 = x * x;
    let small = x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (62.0 / 2835.0)))));
    // e^{2|x|} overflows to +inf past |x| ≈ 44: 2/inf = 0 gives 1, as it should.
    let large = 1.0 - 2.0 / (exp_f32(2.0 * ax) + 1.0);
    let large = f32::from_bits(large.to_bits() | (x.to_bits() & 0x8000_0000));
    if ax < 0.2 {
        small
    } else {
        large
    }
}

/// Writes `v` into `out`, or adds it when `acc` (gradient accumulation).
#[inline(always)]
pub(crate) fn put<T: Real>(out: &mut T, v: T, acc: bool) {
    if acc {
        *out += v;
    } else {
        *out = v;
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

    #[test]
    fn fast_tanh_is_within_ten_ulp() {
        use super::tanh_f32;
        let mut worst = 0.0f64;
        let mut x = -20.0f32;
        while x < 20.0 {
            let want = (x as f64).tanh();
            let got = tanh_f32(x) as f64;
            let ulp = ((want as f32).abs() * f32::EPSILON).max(f32::MIN_POSITIVE) as f64;
            worst = worst.max((got - want).abs() / ulp);
            x += 0.000_937;
        }
        assert!(worst <= 10.0, "max error {worst} ulp");
        for (x, want) in [
            (0.0, 0.0),
            (100.0, 1.0),
            (-100.0, -1.0),
            (f32::INFINITY, 1.0),
            (f32::NEG_INFINITY, -1.0),
        ] {
            assert_eq!(tanh_f32(x), want, "tanh({x})");
        }
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
    }
}
