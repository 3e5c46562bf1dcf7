//! Mean squared error and its VJP (`shaders/loss.wgsl`).

use super::{put, slices, u, wgsl_params, with_out, BufId, Cx, Kernel, KernelDef, Launch, Real, LOOP_BUDGET};
use crate::error::Result;

wgsl_params! {
    /// `Params` of `shaders/loss.wgsl`.
    LossParams for "loss" {
        len: u32,
        acc: u32,
        /// backward: 0 → d_pred, 1 → d_target
        which: u32,
        /// sum of squares: the element of `out` written
        out_index: u32,
        /// forward: the slice lo .. hi of the elements this dispatch folds
        lo: u32,
        hi: u32,
        /// always 0 (see `opaque` in the shader)
        zero: u32,
        _p1: u32,
    }
}

/// out[0] = mean((p − t)²)
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Mse {
    pub p: BufId,
    pub t: BufId,
    pub out: BufId,
    pub len: usize,
}

/// out[out_index] (+)= Σ x² (a gradient's squared norm, for clipping).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SumSquares {
    pub x: BufId,
    pub out: BufId,
    pub out_index: usize,
    pub len: usize,
    pub acc: bool,
}

impl KernelDef for SumSquares {
    /// `mse_forward` with `SQUARES = 1`: one workgroup, slices of at most `256 · LOOP_BUDGET`
    /// elements, each adding into the result.
    fn lower(&self, _cx: &Cx) -> Result<Vec<Launch>> {
        let len = self.len;
        let p = LossParams {
            len: u(len),
            out_index: u(self.out_index),
            ..Default::default()
        };
        let binds = vec![(1, self.x, true), (2, self.x, true), (4, self.out, false)];
        let l = Launch::new("mse_forward", &p, binds, [1, 1, 1]).with("SQUARES", 1);
        let parts = slices(len, 256 * LOOP_BUDGET, &|| format!("gradient norm over {len} elements"))?;
        Ok(l.split(parts.into_iter().enumerate().map(|(i, (lo, hi))| LossParams {
            acc: (self.acc || i > 0) as u32,
            lo: u(lo),
            hi: u(hi),
            ..p
        })))
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        with_out!(b, self.out, |o, b| {
            // Squares in T, their sum in f64 (see `reduce`).
            let s: f64 = b[self.x][..self.len].iter().map(|&v| (v * v).to_f64()).sum();
            put(&mut o[self.out_index], T::from_f64(s), self.acc);
        })
    }
}

/// d_p or d_t (which = 0 or 1) (+)= ±g[0] · 2(p − t) / len
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MseBackward {
    pub p: BufId,
    pub t: BufId,
    pub g: BufId,
    pub out: BufId,
    pub len: usize,
    pub which: u32,
    pub acc: bool,
}

impl KernelDef for Mse {
    /// One workgroup, split into slices of at most `256 · LOOP_BUDGET` elements, each adding its
    /// share into the loss.
    fn lower(&self, _cx: &Cx) -> Result<Vec<Launch>> {
        let len = self.len;
        let p = LossParams {
            len: u(len),
            ..Default::default()
        };
        let binds = vec![(1, self.p, true), (2, self.t, true), (4, self.out, false)];
        let l = Launch::new("mse_forward", &p, binds, [1, 1, 1]);
        let parts = slices(len, 256 * LOOP_BUDGET, &|| format!("mse over {len} elements"))?;
        Ok(l.split(parts.into_iter().enumerate().map(|(i, (lo, hi))| LossParams {
            acc: (i > 0) as u32,
            lo: u(lo),
            hi: u(hi),
            ..p
        })))
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let Mse { p, t, len, .. } = *self;
        with_out!(b, self.out, |o, b| {
            // Differences and squares in T, their sum in f64 (see `reduce`).
            let s: f64 = (0..len)
                .map(|i| {
                    let d = b[p][i] - b[t][i];
                    (d * d).to_f64()
                })
                .sum();
            o[0] = T::from_f64(s / len as f64);
        })
    }
}

impl KernelDef for MseBackward {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let p = LossParams {
            len: u(self.len),
            acc: self.acc as u32,
            which: self.which,
            ..Default::default()
        };
        let binds = vec![
            (1, self.p, true),
            (2, self.t, true),
            (3, self.g, true),
            (4, self.out, false),
        ];
        Ok(vec![Launch::new("mse_backward", &p, binds, cx.elems(self.len)?)])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let (p, t, g) = (self.p, self.t, self.g);
        let (len, which, acc) = (self.len, self.which, self.acc);
        with_out!(b, self.out, |o, b| {
            let sign = if which == 0 { 2.0 } else { -2.0 };
            let scale = b[g][0] * T::from_f64(sign / len as f64);
            for i in 0..len {
                put(&mut o[i], scale * (b[p][i] - b[t][i]), acc);
            }
        })
    }
}

/// Representative kernels of the family.
pub(crate) fn examples() -> Vec<Kernel> {
    vec![
        Mse {
            p: 0,
            t: 1,
            out: 2,
            len: 5,
        }
        .into(),
        MseBackward {
            p: 0,
            t: 1,
            g: 2,
            out: 3,
            len: 5,
            which: 1,
            acc: false,
        }
        .into(),
        SumSquares {
            x: 0,
            out: 1,
            out_index: 8,
            len: 5,
            acc: true,
        }
        .into(),
    ]
}
