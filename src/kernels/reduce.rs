//! Sum, mean and max along one axis, and their VJPs (`shaders/reduce.wgsl`).

use super::{
    put, slices, u, wgsl_params, with_out, with_outs, BufId, Cx, Kernel, KernelDef, Launch, Real, LOOP_BUDGET,
};
use crate::error::Result;

/// Reductions along one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Σ
    Sum,
    /// Σ / n
    Mean,
    /// max; the VJP routes the gradient to the first maximal element.
    Max,
}

impl ReduceOp {
    /// Every reduction.
    pub const ALL: [ReduceOp; 3] = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max];

    /// Short lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
        }
    }
}

wgsl_params! {
    /// `Params` of `shaders/reduce.wgsl`.
    ReduceParams for "reduce" {
        outer: u32,
        axis: u32,
        inner: u32,
        acc: u32,
        /// the slice a0 .. a1 of the axis this dispatch folds
        a0: u32,
        a1: u32,
        /// max: merge with the result of the previous slices
        merge: u32,
        /// always 0 (see `opaque` in the shader)
        zero: u32,
    }
}

/// Reductions over at most this many elements run one thread per output (no barriers).
const SERIAL_AXIS: usize = 1024;

/// x viewed as [outer, axis, inner]; out[o, i] (+)= reduce_a x[o, a, i]; Max also writes the
/// argmax index into `arg`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Reduce {
    pub op: ReduceOp,
    pub x: BufId,
    pub out: BufId,
    pub arg: BufId,
    pub outer: usize,
    pub axis: usize,
    pub inner: usize,
    pub acc: bool,
}

/// d_x[o, a, i] (+)= g[o, i] · (1 | 1/n | [a == arg[o, i]])
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ReduceBackward {
    pub op: ReduceOp,
    pub g: BufId,
    pub arg: BufId,
    pub out: BufId,
    pub outer: usize,
    pub axis: usize,
    pub inner: usize,
    pub acc: bool,
}

impl KernelDef for Reduce {
    /// Short axes: a thread per output walks the axis (no barriers). Long axes: a workgroup per
    /// output and a tree, split into slices of at most `256 · LOOP_BUDGET` elements, each adding
    /// into (max: merging with) the previous ones.
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let Reduce {
            op,
            outer,
            axis,
            inner,
            acc,
            ..
        } = *self;
        let (x, arg, out) = (self.x, self.arg, self.out);
        let p = ReduceParams {
            outer: u(outer),
            axis: u(axis),
            inner: u(inner),
            acc: acc as u32,
            a0: 0,
            a1: u(axis),
            ..Default::default()
        };
        let serial = axis <= SERIAL_AXIS;
        let groups = if serial {
            cx.elems(outer * inner)?
        } else {
            cx.grid(outer * inner)?
        };
        let max = op == ReduceOp::Max;
        let entry = match (max, serial) {
            (true, true) => "reduce_max_serial",
            (true, false) => "reduce_max_forward",
            (false, true) => "reduce_serial",
            (false, false) => "reduce_forward",
        };
        let l = if max {
            Launch::new(entry, &p, vec![(1, x, true), (2, arg, false), (3, out, false)], groups)
        } else {
            Launch::new(entry, &p, vec![(1, x, true), (3, out, false)], groups)
                .with("MEAN", (op == ReduceOp::Mean) as u32)
        };
        if serial {
            return Ok(vec![l]);
        }
        let parts = slices(axis, 256 * LOOP_BUDGET, &|| {
            format!("{} over an axis of {axis}", op.name())
        })?;
        Ok(l.split(parts.into_iter().enumerate().map(|(i, (a0, a1))| ReduceParams {
            a0: u(a0),
            a1: u(a1),
            acc: (acc || (i > 0 && !max)) as u32,
            merge: (i > 0 && max) as u32,
            ..p
        })))
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let (op, x, arg) = (self.op, self.x, self.arg);
        let (outer, axis, inner, acc) = (self.outer, self.axis, self.inner, self.acc);
        if op == ReduceOp::Max {
            with_outs!(b, [self.out, arg], |[o, idx], b| {
                reduce(op, &b[x], o, idx, outer, axis, inner, acc)
            });
        } else {
            // Only max records indices; sum and mean leave `arg` untouched.
            with_out!(b, self.out, |o, b| reduce(
                op,
                &b[x],
                o,
                &mut [],
                outer,
                axis,
                inner,
                acc
            ))
        }
    }
}

impl KernelDef for ReduceBackward {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let (g, arg, out) = (self.g, self.arg, self.out);
        let p = ReduceParams {
            outer: u(self.outer),
            axis: u(self.axis),
            inner: u(self.inner),
            acc: self.acc as u32,
            ..Default::default()
        };
        let op = self.op;
        let groups = cx.elems(self.outer * self.axis * self.inner)?;
        Ok(vec![if op == ReduceOp::Max {
            Launch::new(
                "reduce_max_backward",
                &p,
                vec![(1, g, true), (3, out, false), (4, arg, true)],
                groups,
            )
        } else {
            Launch::new("reduce_backward", &p, vec![(1, g, true), (3, out, false)], groups)
                .with("MEAN", (op == ReduceOp::Mean) as u32)
        }])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let k = self;
        with_out!(b, k.out, |o, b| {
            reduce_backward(k.op, &b[k.g], &b[k.arg], o, k.outer, k.axis, k.inner, k.acc)
        })
    }
}

/// Reduce x viewed as [outer, axis, inner] along the middle axis. Inlined into the kernel, so
/// that it is compiled in the executor's AVX2 build (see `CpuExecutor::exec`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn reduce<T: Real>(
    op: ReduceOp,
    x: &[T],
    out: &mut [T],
    arg: &mut [T],
    outer: usize,
    axis: usize,
    inner: usize,
    acc: bool,
) {
    // The op is chosen outside the loops, so each loop is straight-line code.
    match op {
        ReduceOp::Sum | ReduceOp::Mean => {
            // Accumulated in f64: exact for any f32 sum of fewer than 2^29 terms of similar
            // magnitude, so this backend can be the reference for long axes. The rows along the
            // axis are added in order into one sum per inner index: each sum takes its terms in
            // the order a strided walk would, and every read is contiguous (a walk down each
            // column of a [2048, 256] gradient took 30× PyTorch's time).
            let mut sums = vec![0.0f64; inner];
            for o in 0..outer {
                sums.iter_mut().for_each(|s| *s = 0.0);
                for row in x[o * axis * inner..(o + 1) * axis * inner].chunks_exact(inner) {
                    for (s, v) in sums.iter_mut().zip(row) {
                        *s += v.to_f64();
                    }
                }
                for (d, &s) in out[o * inner..(o + 1) * inner].iter_mut().zip(&sums) {
                    let v = if op == ReduceOp::Mean { s / axis as f64 } else { s };
                    put(d, T::from_f64(v), acc);
                }
            }
        }
        ReduceOp::Max if inner == 1 => {
            // Contiguous rows (the windows of a max-pool): the same comparisons, without the
            // strided index arithmetic.
            for (o, row) in x.chunks_exact(axis).take(outer).enumerate() {
                let (mut best, mut besti) = (row[0], 0);
                for (a, &v) in row.iter().enumerate().skip(1) {
                    if v > best || (v.is_nan() && !best.is_nan()) {
                        best = v;
                        besti = a;
                    }
                }
                arg[o] = T::from_f64(besti as f64);
                put(&mut out[o], best, acc);
            }
        }
        ReduceOp::Max => {
            for o in 0..outer {
                for i in 0..inner {
                    let at = |a: usize| x[(o * axis + a) * inner + i];
                    let (mut best, mut besti) = (at(0), 0);
                    for a in 1..axis {
                        // NaN propagates: a NaN anywhere makes the max NaN, as IEEE max-with-NaN does in NumPy.
                        let v = at(a);
                        if v > best || (v.is_nan() && !best.is_nan()) {
                            best = v;
                            besti = a;
                        }
                    }
                    arg[o * inner + i] = T::from_f64(besti as f64);
                    put(&mut out[o * inner + i], best, acc);
                }
            }
        }
    }
}

/// Gradient of a reduction: spread g over the reduced axis (inlined like [`reduce`]: compiled
/// apart, without AVX2, a sum's gradient over a [2048, 256] activation took longer than the
/// matmul before it).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn reduce_backward<T: Real>(
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
        let gs = &g[o * inner..(o + 1) * inner];
        let dst = &mut out[o * axis * inner..(o + 1) * axis * inner];
        match op {
            ReduceOp::Sum | ReduceOp::Mean => {
                let f = if op == ReduceOp::Mean { inv } else { T::one() };
                for row in dst.chunks_exact_mut(inner) {
                    for (d, &gv) in row.iter_mut().zip(gs) {
                        put(d, gv * f, acc);
                    }
                }
            }
            ReduceOp::Max if inner == 1 => {
                let k = arg[o].to_f64() as usize;
                for (a, d) in dst.iter_mut().enumerate() {
                    put(d, if a == k { gs[0] } else { T::zero() }, acc);
                }
            }
            ReduceOp::Max => {
                let args = &arg[o * inner..(o + 1) * inner];
                for a in 0..axis {
                    for i in 0..inner {
                        let v = if args[i].to_f64() as usize == a {
                            gs[i]
                        } else {
                            T::zero()
                        };
                        put(&mut dst[a * inner + i], v, acc);
                    }
                }
            }
        }
    }
}

/// Representative kernels: short and long axes lower to different entry points.
pub(crate) fn examples() -> Vec<Kernel> {
    let mut ks = Vec::new();
    for op in ReduceOp::ALL {
        for axis in [3, 5000] {
            ks.push(
                Reduce {
                    op,
                    x: 0,
                    out: 1,
                    arg: 2,
                    outer: 2,
                    axis,
                    inner: 1,
                    acc: false,
                }
                .into(),
            );
        }
        ks.push(
            ReduceBackward {
                op,
                g: 0,
                arg: 1,
                out: 2,
                outer: 2,
                axis: 3,
                inner: 1,
                acc: false,
            }
            .into(),
        );
    }
    ks
}
