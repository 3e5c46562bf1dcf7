//! Fills, copies, bias-add and transpose (`shaders/misc.wgsl`).

use super::{par, put, u, wgsl_params, with_out, BufId, Cx, Kernel, KernelDef, Launch, Real};
use crate::error::Result;

wgsl_params! {
    /// `Params` of `shaders/misc.wgsl`.
    MiscParams for "misc" {
        /// elements written
        len: u32,
        /// 1: out += v, 0: out = v
        acc: u32,
        rows: u32,
        cols: u32,
        /// fill value
        value: f32,
    }
}

/// out[i] = value (or += value when acc).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Fill {
    pub out: BufId,
    pub len: usize,
    pub value: f32,
    pub acc: bool,
}

/// out (+)= x
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Copy {
    pub x: BufId,
    pub out: BufId,
    pub len: usize,
    pub acc: bool,
}

/// out[r, c] = x[r, c] + bias[c]
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BiasAdd {
    pub x: BufId,
    pub bias: BufId,
    pub out: BufId,
    pub rows: usize,
    pub cols: usize,
}

/// out (+)= xᵀ for x of shape rows×cols
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Transpose {
    pub x: BufId,
    pub out: BufId,
    pub rows: usize,
    pub cols: usize,
    pub acc: bool,
}

impl KernelDef for Fill {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let p = MiscParams {
            len: u(self.len),
            acc: self.acc as u32,
            value: self.value,
            ..Default::default()
        };
        Ok(vec![Launch::new(
            "fill",
            &p,
            vec![(3, self.out, false)],
            cx.elems(self.len)?,
        )])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let v = T::from_f64(self.value as f64);
        b[self.out][..self.len].iter_mut().for_each(|o| put(o, v, self.acc));
    }
}

impl KernelDef for Copy {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let p = MiscParams {
            len: u(self.len),
            acc: self.acc as u32,
            ..Default::default()
        };
        let binds = vec![(1, self.x, true), (3, self.out, false)];
        Ok(vec![Launch::new("copy", &p, binds, cx.elems(self.len)?)])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        with_out!(b, self.out, |o, b| {
            let x = &b[self.x][..self.len];
            par::rows(
                &mut o[..self.len],
                1,
                1,
                #[inline(always)]
                |rows, run| run.iter_mut().zip(&x[rows]).for_each(|(v, &s)| put(v, s, self.acc)),
            )
        })
    }
}

impl KernelDef for BiasAdd {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let len = self.rows * self.cols;
        let p = MiscParams {
            len: u(len),
            rows: u(self.rows),
            cols: u(self.cols),
            ..Default::default()
        };
        let binds = vec![(1, self.x, true), (2, self.bias, true), (3, self.out, false)];
        Ok(vec![Launch::new("bias_add", &p, binds, cx.elems(len)?)])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let BiasAdd {
            x, bias, rows, cols, ..
        } = *self;
        with_out!(b, self.out, |o, b| {
            // Rows sliced up front so the inner loop has no bounds checks and vectorises.
            let (xs, bs) = (&b[x][..rows * cols], &b[bias][..cols]);
            par::rows(
                &mut o[..rows * cols],
                cols,
                cols,
                #[inline(always)]
                |rs, run| {
                    for (i, r) in rs.enumerate() {
                        let (orow, xrow) = (&mut run[i * cols..(i + 1) * cols], &xs[r * cols..(r + 1) * cols]);
                        for c in 0..cols {
                            orow[c] = xrow[c] + bs[c];
                        }
                    }
                },
            )
        })
    }
}

impl KernelDef for Transpose {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let len = self.rows * self.cols;
        let p = MiscParams {
            len: u(len),
            acc: self.acc as u32,
            rows: u(self.rows),
            cols: u(self.cols),
            ..Default::default()
        };
        let binds = vec![(1, self.x, true), (3, self.out, false)];
        Ok(vec![Launch::new("transpose", &p, binds, cx.elems(len)?)])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let Transpose { x, rows, cols, acc, .. } = *self;
        with_out!(b, self.out, |o, b| {
            for r in 0..rows {
                for c in 0..cols {
                    put(&mut o[c * rows + r], b[x][r * cols + c], acc);
                }
            }
        })
    }
}

/// Representative kernels of the family.
pub(crate) fn examples() -> Vec<Kernel> {
    vec![
        Fill {
            out: 0,
            len: 5,
            value: 1.0,
            acc: false,
        }
        .into(),
        Copy {
            x: 0,
            out: 1,
            len: 5,
            acc: true,
        }
        .into(),
        BiasAdd {
            x: 0,
            bias: 1,
            out: 2,
            rows: 2,
            cols: 3,
        }
        .into(),
        Transpose {
            x: 0,
            out: 1,
            rows: 2,
            cols: 3,
            acc: false,
        }
        .into(),
    ]
}
