//! Row-wise kernels and their VJPs (`shaders/softmax.wgsl`): softmax, softmax cross-entropy, and
//! the normalisation of layer norm.

use super::{par, put, u, wgsl_params, with_out, with_outs, BufId, Cx, Kernel, KernelDef, Launch, Real, LOOP_BUDGET};
use crate::error::{Error, Result};

wgsl_params! {
    /// `Params` of `shaders/softmax.wgsl`.
    SoftmaxParams for "softmax" {
        rows: u32,
        cols: u32,
        acc: u32,
        /// the ε of `normalize` (added to the variance)
        eps: f32,
    }
}

/// Rows of at most this many columns run one thread per row, longer ones a workgroup per row.
const SERIAL_ROW: usize = 64;

/// Softmax rows longer than this are refused: the workgroup-per-row kernels make three passes
/// over a row with 256 threads, `3·cols/256` loop iterations per invocation.
pub(crate) const SOFTMAX_MAX_COLS: usize = 256 * LOOP_BUDGET / 3;

/// Row-wise softmax of a rows×cols matrix.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Softmax {
    pub x: BufId,
    pub out: BufId,
    pub rows: usize,
    pub cols: usize,
}

/// d_x (+)= y ⊙ (g − Σ_row g⊙y)
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SoftmaxBackward {
    pub y: BufId,
    pub g: BufId,
    pub out: BufId,
    pub rows: usize,
    pub cols: usize,
    pub acc: bool,
}

/// Per row: probs = softmax(logits), loss_rows[r] = logsumexp − logits[r, label[r]].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SoftmaxXent {
    pub logits: BufId,
    pub labels: BufId,
    pub probs: BufId,
    pub loss_rows: BufId,
    pub rows: usize,
    pub cols: usize,
}

/// d_logits (+)= g[0] · (probs − onehot(labels)) / rows
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SoftmaxXentBackward {
    pub probs: BufId,
    pub labels: BufId,
    pub g: BufId,
    pub out: BufId,
    pub rows: usize,
    pub cols: usize,
    pub acc: bool,
}

/// Per row of a rows×cols matrix: out = (x − mean)·rstd with rstd = 1/√(variance + ε) (the
/// biased variance, as layer norm takes it); `rstd` (rows) is saved for the VJP.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Normalize {
    pub x: BufId,
    pub out: BufId,
    pub rstd: BufId,
    pub rows: usize,
    pub cols: usize,
    pub eps: f32,
}

/// d_x (+)= rstd ⊙ (g − mean_row g − x̂ ⊙ mean_row(g ⊙ x̂)), x̂ the normalised values.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NormalizeBackward {
    pub xhat: BufId,
    pub rstd: BufId,
    pub g: BufId,
    pub out: BufId,
    pub rows: usize,
    pub cols: usize,
    pub acc: bool,
}

/// A row-wise launch: `short` (a thread per row) for short rows, else `long` (a workgroup per
/// row); rows past [`SOFTMAX_MAX_COLS`] are refused.
fn rows_launch(
    cx: &Cx,
    (short, long): (&'static str, &'static str),
    (rows, cols, acc): (usize, usize, bool),
    binds: Vec<(u32, BufId, bool)>,
) -> Result<Vec<Launch>> {
    rows_launch_eps(cx, (short, long), (rows, cols, acc), 0.0, binds)
}

/// [`rows_launch`] with the ε of `normalize`.
fn rows_launch_eps(
    cx: &Cx,
    (short, long): (&'static str, &'static str),
    (rows, cols, acc): (usize, usize, bool),
    eps: f32,
    binds: Vec<(u32, BufId, bool)>,
) -> Result<Vec<Launch>> {
    if cols > SOFTMAX_MAX_COLS {
        let op = long.split('_').next().unwrap_or(long);
        return Err(Error::LimitExceeded {
            what: format!("{op} over rows of {cols} columns"),
            size: cols as u64,
            limit_name: "columns per row of a row-wise kernel (loop iterations per invocation)",
            limit: SOFTMAX_MAX_COLS as u64,
        });
    }
    let p = SoftmaxParams {
        rows: u(rows),
        cols: u(cols),
        acc: acc as u32,
        eps,
    };
    Ok(vec![if cols <= SERIAL_ROW {
        Launch::new(short, &p, binds, cx.elems(rows)?)
    } else {
        Launch::new(long, &p, binds, cx.grid(rows)?)
    }])
}

impl KernelDef for Softmax {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let entries = ("softmax_forward_rows", "softmax_forward");
        rows_launch(
            cx,
            entries,
            (self.rows, self.cols, false),
            vec![(1, self.x, true), (4, self.out, false)],
        )
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        with_out!(b, self.out, |o, b| softmax(&b[self.x], o, self.rows, self.cols))
    }
}

impl KernelDef for Normalize {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let entries = ("normalize_forward_rows", "normalize_forward");
        let binds = vec![(1, self.x, true), (4, self.out, false), (5, self.rstd, false)];
        rows_launch_eps(cx, entries, (self.rows, self.cols, false), self.eps, binds)
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let Normalize { x, rows, cols, eps, .. } = *self;
        with_outs!(b, [self.out, self.rstd], |[o, rs], b| {
            let inv = 1.0 / cols as f64;
            let (o, rs) = (&mut o[..rows * cols], &mut rs[..rows]);
            par::rows2(
                o,
                cols,
                rs,
                1,
                4 * cols,
                #[inline(always)]
                |rows, o, rs| {
                    for (i, r) in rows.enumerate() {
                        let (xr, or) = (&b[x][r * cols..(r + 1) * cols], &mut o[i * cols..(i + 1) * cols]);
                        // Mean and variance in f64, in two passes (the variance of the centred values).
                        let mean = xr.iter().map(|v| v.to_f64()).sum::<f64>() * inv;
                        let var = xr.iter().map(|v| (v.to_f64() - mean).powi(2)).sum::<f64>() * inv;
                        let rstd = 1.0 / (var + eps as f64).sqrt();
                        let (m, s) = (T::from_f64(mean), T::from_f64(rstd));
                        for (o, &v) in or.iter_mut().zip(xr) {
                            *o = (v - m) * s;
                        }
                        rs[i] = s;
                    }
                },
            )
        })
    }
}

impl KernelDef for NormalizeBackward {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let entries = ("normalize_backward_rows", "normalize_backward");
        let binds = vec![
            (1, self.xhat, true),
            (3, self.g, true),
            (4, self.out, false),
            (5, self.rstd, false),
        ];
        rows_launch(cx, entries, (self.rows, self.cols, self.acc), binds)
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let NormalizeBackward {
            xhat,
            rstd,
            g,
            rows,
            cols,
            acc,
            ..
        } = *self;
        with_out!(b, self.out, |o, b| {
            let inv = 1.0 / cols as f64;
            par::rows(
                &mut o[..rows * cols],
                cols,
                4 * cols,
                #[inline(always)]
                |rows, o| {
                    for (i, r) in rows.enumerate() {
                        let span = r * cols..(r + 1) * cols;
                        let (xr, gr) = (&b[xhat][span.clone()], &b[g][span]);
                        let or = &mut o[i * cols..(i + 1) * cols];
                        let mg = gr.iter().map(|v| v.to_f64()).sum::<f64>() * inv;
                        let mgx = gr.iter().zip(xr).map(|(g, x)| g.to_f64() * x.to_f64()).sum::<f64>() * inv;
                        let (mg, mgx, s) = (T::from_f64(mg), T::from_f64(mgx), b[rstd][r]);
                        for c in 0..cols {
                            put(&mut or[c], s * (gr[c] - mg - xr[c] * mgx), acc);
                        }
                    }
                },
            )
        })
    }
}

impl KernelDef for SoftmaxBackward {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let entries = ("softmax_backward_rows", "softmax_backward");
        let binds = vec![(1, self.y, true), (3, self.g, true), (4, self.out, false)];
        rows_launch(cx, entries, (self.rows, self.cols, self.acc), binds)
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let SoftmaxBackward {
            y, g, rows, cols, acc, ..
        } = *self;
        with_out!(b, self.out, |o, b| {
            // Rows sliced up front; the dot product in eight partial sums, so both loops vectorise.
            par::rows(
                &mut o[..rows * cols],
                cols,
                2 * cols,
                #[inline(always)]
                |rows, o| {
                    for (i, r) in rows.enumerate() {
                        let span = r * cols..(r + 1) * cols;
                        let (yr, gr) = (&b[y][span.clone()], &b[g][span]);
                        let or = &mut o[i * cols..(i + 1) * cols];
                        let s = sum8(cols, |c| gr[c] * yr[c]);
                        for c in 0..cols {
                            put(&mut or[c], yr[c] * (gr[c] - s), acc);
                        }
                    }
                },
            )
        })
    }
}

impl KernelDef for SoftmaxXent {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let entries = ("softmax_xent_forward_rows", "softmax_xent_forward");
        let binds = vec![
            (1, self.logits, true),
            (2, self.labels, true),
            (4, self.probs, false),
            (5, self.loss_rows, false),
        ];
        rows_launch(cx, entries, (self.rows, self.cols, false), binds)
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let (rows, cols) = (self.rows, self.cols);
        with_outs!(b, [self.probs, self.loss_rows], |[probs, loss], b| {
            let (logits, labels) = (&b[self.logits], &b[self.labels]);
            softmax(logits, probs, rows, cols);
            par::rows(
                &mut loss[..rows],
                1,
                8 * cols,
                #[inline(always)]
                |rows, loss| {
                    for (i, r) in rows.enumerate() {
                        let row = &logits[r * cols..(r + 1) * cols];
                        let m = row_max(row);
                        let s = row.iter().fold(T::zero(), |s, &v| s + (v - m).exp());
                        let label = (labels[r].to_f64() as usize).min(cols - 1);
                        loss[i] = m + s.ln() - row[label];
                    }
                },
            )
        });
    }
}

impl KernelDef for SoftmaxXentBackward {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let SoftmaxXentBackward {
            probs,
            labels,
            g,
            out,
            rows,
            cols,
            acc,
        } = *self;
        let p = SoftmaxParams {
            rows: u(rows),
            cols: u(cols),
            acc: acc as u32,
            ..Default::default()
        };
        let binds = vec![(1, probs, true), (2, labels, true), (3, g, true), (4, out, false)];
        Ok(vec![Launch::new(
            "softmax_xent_backward",
            &p,
            binds,
            cx.elems(rows * cols)?,
        )])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let (probs, labels, g) = (self.probs, self.labels, self.g);
        let (rows, cols, acc) = (self.rows, self.cols, self.acc);
        with_out!(b, self.out, |o, b| {
            let scale = b[g][0] / T::from_f64(rows as f64);
            for (r, &lab) in b[labels].iter().enumerate().take(rows) {
                // Clamped as in the forward pass (the graph refuses labels past the classes;
                // forward and backward still agree on one meaning if one gets through).
                let label = (lab.to_f64() as usize).min(cols - 1);
                for c in 0..cols {
                    let i = r * cols + c;
                    let onehot = if c == label { T::one() } else { T::zero() };
                    put(&mut o[i], scale * (b[probs][i] - onehot), acc);
                }
            }
        })
    }
}

/// The largest element of a row by `v > m` (a NaN never wins, except a NaN first element, which
/// stays), in eight running maxima, then the tail: one running maximum is a chain of dependent
/// compare-and-selects that does not vectorise (most of a 64-column softmax's time). Each lane
/// starts from the first element, so the result is the one of a single running maximum.
#[inline(always)]
fn row_max<T: Real>(row: &[T]) -> T {
    let mut lanes = [row[0]; 8];
    let mut chunks = row.chunks_exact(8);
    for ch in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(ch) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut m = row[0];
    for &v in lanes.iter().chain(chunks.remainder()) {
        m = if v > m { v } else { m };
    }
    m
}

/// Σ term(i) for i in 0..n in eight partial sums (then the tail): unlike one running sum, the
/// loop vectorises.
#[inline(always)]
fn sum8<T: Real>(n: usize, term: impl Fn(usize) -> T) -> T {
    let mut lanes = [T::zero(); 8];
    let chunks = n / 8;
    for ch in 0..chunks {
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane += term(ch * 8 + l);
        }
    }
    let mut s = T::zero();
    for lane in lanes {
        s += lane;
    }
    for i in chunks * 8..n {
        s += term(i);
    }
    s
}

/// Row-wise softmax, computed as exp(x − max) / Σ exp(x − max). The exponentials, the sum (in
/// eight partial sums) and the division are separate loops, so that each vectorises.
#[inline(always)]
fn softmax<T: Real>(x: &[T], out: &mut [T], rows: usize, cols: usize) {
    par::rows(
        &mut out[..rows * cols],
        cols,
        8 * cols,
        #[inline(always)]
        |rs, run| {
            for (i, r) in rs.enumerate() {
                let row = &x[r * cols..(r + 1) * cols];
                let o = &mut run[i * cols..(i + 1) * cols];
                let m = row_max(row);
                for (o, &v) in o.iter_mut().zip(row) {
                    *o = (v - m).exp();
                }
                let s = sum8(cols, |i| o[i]);
                for v in o.iter_mut() {
                    *v = *v / s;
                }
            }
        },
    )
}

/// Representative kernels: short and long rows lower to different entry points.
pub(crate) fn examples() -> Vec<Kernel> {
    let mut ks: Vec<Kernel> = vec![SoftmaxXentBackward {
        probs: 0,
        labels: 1,
        g: 2,
        out: 3,
        rows: 2,
        cols: 3,
        acc: false,
    }
    .into()];
    for cols in [3, 1000] {
        ks.push(
            Softmax {
                x: 0,
                out: 1,
                rows: 2,
                cols,
            }
            .into(),
        );
        ks.push(
            Normalize {
                x: 0,
                out: 1,
                rstd: 2,
                rows: 2,
                cols,
                eps: 1e-5,
            }
            .into(),
        );
        ks.push(
            NormalizeBackward {
                xhat: 0,
                rstd: 1,
                g: 2,
                out: 3,
                rows: 2,
                cols,
                acc: true,
            }
            .into(),
        );
        ks.push(
            SoftmaxBackward {
                y: 0,
                g: 1,
                out: 2,
                rows: 2,
                cols,
                acc: false,
            }
            .into(),
        );
        ks.push(
            SoftmaxXent {
                logits: 0,
                labels: 1,
                probs: 2,
                loss_rows: 3,
                rows: 2,
                cols,
            }
            .into(),
        );
    }
    ks
}
