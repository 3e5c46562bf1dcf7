//! A layer's bias-add and activation fused, forward and VJP (`shaders/fused.wgsl`), and the
//! forward fused with the matmul before it (the matmul kernels' epilogue entry points).

use super::matmul::{epilogue_entry, k_slice, matmul, MatMul};
use super::{
    par, put, slices, u, wgsl_params, with_outs, BufId, Cx, Kernel, KernelDef, Launch, Real, UnaryOp, LOOP_BUDGET,
};
use crate::error::{Error, Result};

wgsl_params! {
    /// `Params` of `shaders/fused.wgsl`.
    FusedParams for "fused" {
        rows: u32,
        cols: u32,
        acc_dx: u32,
        acc_db: u32,
        /// backward: the rows r0 .. r1 this dispatch sums into the bias gradient
        r0: u32,
        r1: u32,
        _p0: u32,
        _p1: u32,
    }
}

/// Fused forward of Z = XW + b, H = f(Z): writes both Z and H.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BiasActForward {
    pub op: UnaryOp,
    pub xw: BufId,
    pub bias: BufId,
    pub z: BufId,
    pub y: BufId,
    pub rows: usize,
    pub cols: usize,
}

/// Fused layer forward with the matmul: XW = A·B (A m×k, B k×n), Z = XW + b, H = f(Z); writes
/// all three. Emitted only where the executor says the backend has it for the shape.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MatMulBiasAct {
    pub op: UnaryOp,
    pub a: BufId,
    pub b: BufId,
    pub bias: BufId,
    pub xw: BufId,
    pub z: BufId,
    pub y: BufId,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

/// Fused VJP of H = f(Z), Z = XW + b: dz = g ⊙ f'(z, y); dx (+)= dz; db (+)= column sums of dz.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BiasActBackward {
    pub op: UnaryOp,
    pub z: BufId,
    pub y: BufId,
    pub g: BufId,
    pub dz: BufId,
    pub dx: BufId,
    pub db: BufId,
    pub rows: usize,
    pub cols: usize,
    pub acc_dx: bool,
    pub acc_db: bool,
}

impl KernelDef for BiasActForward {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let p = FusedParams {
            rows: u(self.rows),
            cols: u(self.cols),
            ..Default::default()
        };
        let binds = vec![
            (7, self.xw, true),
            (8, self.bias, true),
            (9, self.z, false),
            (10, self.y, false),
        ];
        let groups = cx.elems(self.rows * self.cols)?;
        Ok(vec![
            Launch::new("bias_act_forward", &p, binds, groups).with("OP", self.op.code())
        ])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let k = self;
        with_outs!(b, [k.z, k.y], |[z, y], b| {
            bias_act(k.op, &b[k.xw], &b[k.bias], z, y, k.rows, k.cols)
        });
    }
}

impl KernelDef for MatMulBiasAct {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let MatMulBiasAct {
            op,
            a,
            b,
            bias,
            xw,
            z,
            y,
            m,
            k,
            n,
        } = *self;
        // The same kernel choice as the forward MatMul, with the epilogue entry point.
        let mm = MatMul {
            a,
            b,
            out: xw,
            m,
            k,
            n,
            ta: false,
            tb: false,
            acc: false,
            batch: super::matmul::Batch::ONE,
            a_win: None,
        };
        let mut l = mm.launch(cx)?;
        if k > k_slice(l.entry) {
            return Err(Error::arg(
                "matmul_bias_act",
                format!("inner dimension {k} needs a split matmul (m={m}, n={n}); the graph runs it unfused"),
            ));
        }
        l.entry = epilogue_entry(l.entry).ok_or_else(|| {
            Error::arg(
                "matmul_bias_act",
                format!("kernel {} has no layer epilogue (m={m}, k={k}, n={n})", l.entry),
            )
        })?;
        l.consts.push(("ACT", op.code() as f64));
        l.binds.extend([(6, bias, true), (7, z, false), (8, y, false)]);
        Ok(vec![l])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let f = self;
        with_outs!(b, [f.xw, f.z, f.y], |[xw, z, y], b| {
            matmul(&b[f.a], &b[f.b], xw, f.m, f.k, f.n, false, false, false);
            bias_act(f.op, xw, &b[f.bias], z, y, f.m, f.n);
        });
    }
}

impl KernelDef for BiasActBackward {
    /// Split over rows so that no invocation sums more than `4 · LOOP_BUDGET` of them.
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let BiasActBackward {
            op, rows, cols, acc_db, ..
        } = *self;
        let (z, y, g, dz, dx, db) = (self.z, self.y, self.g, self.dz, self.dx, self.db);
        let binds = vec![
            (1, z, true),
            (2, y, true),
            (3, g, true),
            (4, dz, false),
            (5, dx, false),
            (6, db, false),
        ];
        let p = FusedParams {
            rows: u(rows),
            cols: u(cols),
            acc_dx: self.acc_dx as u32,
            ..Default::default()
        };
        let l = Launch::new("bias_act_backward", &p, binds, cx.grid(cols.div_ceil(64))?).with("OP", op.code());
        let parts = slices(rows, 4 * LOOP_BUDGET, &|| {
            format!("bias_act_backward over {rows}×{cols}")
        })?;
        Ok(l.split(parts.into_iter().enumerate().map(|(i, (r0, r1))| FusedParams {
            acc_db: (acc_db || i > 0) as u32,
            r0: u(r0),
            r1: u(r1),
            ..p
        })))
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let k = self;
        with_outs!(b, [k.dz, k.dx, k.db], |[dz, dx, db], b| {
            // Column sums in f64 (see `reduce`).
            let mut sums = vec![0.0f64; k.cols];
            let (zb, yb, gb) = (&b[k.z][..], &b[k.y][..], &b[k.g][..]);
            let (dz, dx, sm) = (&mut dz[..], &mut dx[..], &mut sums[..]);
            let shape = (k.rows, k.cols, k.acc_dx);
            bias_act_vjp(k.op, zb, yb, gb, dz, dx, sm, shape);
            for (v, s) in db.iter_mut().zip(sums) {
                put(v, T::from_f64(s), k.acc_db);
            }
        });
    }
}

/// Fused layer forward over `rows` rows: z = xw + bias (per column), y = op(z), a row at a
/// time (in cache): the add, then the op's own loop (`map_values`: the op chosen outside it, its
/// formula expanded inside, so the loop vectorises in the executor's AVX2 build — an activation
/// passed in as a closure was compiled apart, without AVX2, and the GELU layer ran 1.7× slower).
#[inline(always)]
fn bias_act<T: Real>(op: UnaryOp, xw: &[T], bias: &[T], z: &mut [T], y: &mut [T], rows: usize, cols: usize) {
    let bias = &bias[..cols];
    let (z, y) = (&mut z[..rows * cols], &mut y[..rows * cols]);
    par::rows2(
        z,
        cols,
        y,
        cols,
        4 * cols,
        #[inline(always)]
        |rs, z, y| {
            for (i, r) in rs.enumerate() {
                let xw = &xw[r * cols..(r + 1) * cols];
                let s = i * cols..(i + 1) * cols;
                let (z, y) = (&mut z[s.clone()], &mut y[s]);
                for c in 0..cols {
                    z[c] = xw[c] + bias[c];
                }
                op.map_values(z, y);
            }
        },
    )
}

/// Fused layer VJP over `rows` rows: d = g · f'(z) (from z and the saved y) is written to `dz`,
/// written or added to `dx`, and summed per column into `sums`. Runs of rows in parallel: the
/// op's own loop for d (`map_grads`, see [`bias_act`]), then d_x; then runs of columns in
/// parallel, each column summed in f64 down its rows in order (the order of one serial pass, so
/// the same bits whatever the split).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn bias_act_vjp<T: Real>(
    op: UnaryOp,
    z: &[T],
    y: &[T],
    g: &[T],
    dz: &mut [T],
    dx: &mut [T],
    sums: &mut [f64],
    (rows, cols, acc_dx): (usize, usize, bool),
) {
    let (dz, dx) = (&mut dz[..rows * cols], &mut dx[..rows * cols]);
    par::rows2(
        dz,
        cols,
        dx,
        cols,
        4 * cols,
        #[inline(always)]
        |rs, dz, dx| {
            for (i, r) in rs.enumerate() {
                let s = r * cols..(r + 1) * cols;
                let (z, y, g) = (&z[s.clone()], &y[s.clone()], &g[s]);
                let s = i * cols..(i + 1) * cols;
                let (dz, dx) = (&mut dz[s.clone()], &mut dx[s]);
                op.map_grads(z, y, g, dz, false);
                for c in 0..cols {
                    dx[c] = if acc_dx { dx[c] + dz[c] } else { dz[c] };
                }
            }
        },
    );
    let dz = &*dz;
    par::rows(
        &mut sums[..cols],
        1,
        rows,
        #[inline(always)]
        |cs, sums| {
            for r in 0..rows {
                let row = &dz[r * cols + cs.start..r * cols + cs.end];
                for (s, d) in sums.iter_mut().zip(row) {
                    *s += d.to_f64();
                }
            }
        },
    )
}

/// Representative kernels: every fusable activation; the layer epilogue at every example matmul
/// shape for the MLP activations (the shape picks the kernel and its constants) and at two
/// shapes for the others (the op only picks a case of `unary_f`).
pub(crate) fn examples() -> Vec<Kernel> {
    let mut ks = Vec::new();
    for op in UnaryOp::all(2.0).into_iter().filter(|op| op.fusable()) {
        ks.push(
            BiasActForward {
                op,
                xw: 0,
                bias: 1,
                z: 2,
                y: 3,
                rows: 2,
                cols: 3,
            }
            .into(),
        );
        ks.push(
            BiasActBackward {
                op,
                z: 0,
                y: 1,
                g: 2,
                dz: 3,
                dx: 4,
                db: 5,
                rows: 2,
                cols: 3,
                acc_dx: false,
                acc_db: false,
            }
            .into(),
        );
        let shapes = match op {
            UnaryOp::Sigmoid | UnaryOp::Relu | UnaryOp::Tanh => super::matmul::example_shapes(),
            _ => vec![(64, 64, 128), (4096, 4, 1024)],
        };
        for (m, k, n) in shapes {
            ks.push(
                MatMulBiasAct {
                    op,
                    a: 0,
                    b: 1,
                    bias: 2,
                    xw: 3,
                    z: 4,
                    y: 5,
                    m,
                    k,
                    n,
                }
                .into(),
            );
        }
    }
    ks
}
