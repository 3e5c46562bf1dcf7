//! Rows of a table by integer ids (embedding lookup) and the VJP, a deterministic scatter-add
//! (`shaders/gather.wgsl`).

use super::{put, slices, u, wgsl_params, with_out, BufId, Cx, Kernel, KernelDef, Launch, Real, LOOP_BUDGET};
use crate::error::Result;

wgsl_params! {
    /// `Params` of `shaders/gather.wgsl`.
    GatherParams for "gather" {
        /// ids (rows of the output)
        rows: u32,
        /// elements per table row
        cols: u32,
        /// rows of the table
        vocab: u32,
        acc: u32,
        /// backward: the rows r0 .. r1 of the upstream gradient this dispatch sums
        r0: u32,
        r1: u32,
        /// always 0 (see `opaque` in the shader)
        zero: u32,
        _p1: u32,
    }
}

impl GatherParams {
    fn new(rows: usize, cols: usize, vocab: usize) -> GatherParams {
        GatherParams {
            rows: u(rows),
            cols: u(cols),
            vocab: u(vocab),
            ..Default::default()
        }
    }
}

/// The id of row r as a table row (ids are validated by the graph; clamped here as well, the
/// same way on every backend).
#[inline(always)]
fn row_id<T: Real>(ids: &[T], r: usize, vocab: usize) -> usize {
    (ids[r].to_f64().max(0.0) as usize).min(vocab - 1)
}

/// out[r, c] = table[ids[r], c] for r < rows, c < cols.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Gather {
    pub table: BufId,
    pub ids: BufId,
    pub out: BufId,
    pub rows: usize,
    pub cols: usize,
    pub vocab: usize,
}

/// d_table[v, c] (+)= Σ over rows r with ids[r] = v of g[r, c], in row order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GatherBackward {
    pub ids: BufId,
    pub g: BufId,
    pub out: BufId,
    pub rows: usize,
    pub cols: usize,
    pub vocab: usize,
    pub acc: bool,
}

impl KernelDef for Gather {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let p = GatherParams::new(self.rows, self.cols, self.vocab);
        let binds = vec![(1, self.table, true), (2, self.ids, true), (3, self.out, false)];
        Ok(vec![Launch::new(
            "gather_forward",
            &p,
            binds,
            cx.elems(self.rows * self.cols)?,
        )])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let (cols, vocab) = (self.cols, self.vocab);
        with_out!(b, self.out, |o, b| {
            for r in 0..self.rows {
                let v = row_id(&b[self.ids], r, vocab);
                o[r * cols..(r + 1) * cols].copy_from_slice(&b[self.table][v * cols..(v + 1) * cols]);
            }
        })
    }
}

impl KernelDef for GatherBackward {
    /// One invocation per table element; the rows are split into slices of at most
    /// `LOOP_BUDGET`, each slice after the first adding into the gradient.
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let p = GatherParams::new(self.rows, self.cols, self.vocab);
        let binds = vec![(1, self.g, true), (2, self.ids, true), (3, self.out, false)];
        let l = Launch::new("gather_backward", &p, binds, cx.elems(self.vocab * self.cols)?);
        let rows = self.rows;
        let parts = slices(rows, LOOP_BUDGET, &|| format!("embedding gradient over {rows} ids"))?;
        Ok(l.split(parts.into_iter().enumerate().map(|(i, (r0, r1))| GatherParams {
            acc: (self.acc || i > 0) as u32,
            r0: u(r0),
            r1: u(r1),
            ..p
        })))
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let (cols, vocab, acc) = (self.cols, self.vocab, self.acc);
        with_out!(b, self.out, |o, b| {
            // Sums in f64, rows in order (see `reduce`).
            let mut sums = vec![0.0f64; vocab * cols];
            for r in 0..self.rows {
                let v = row_id(&b[self.ids], r, vocab);
                for c in 0..cols {
                    sums[v * cols + c] += b[self.g][r * cols + c].to_f64();
                }
            }
            for (o, s) in o.iter_mut().zip(sums) {
                put(o, T::from_f64(s), acc);
            }
        })
    }
}

/// Representative kernels of the family.
pub(crate) fn examples() -> Vec<Kernel> {
    vec![
        Gather {
            table: 0,
            ids: 1,
            out: 2,
            rows: 3,
            cols: 4,
            vocab: 5,
        }
        .into(),
        GatherBackward {
            ids: 0,
            g: 1,
            out: 2,
            rows: 3,
            cols: 4,
            vocab: 5,
            acc: false,
        }
        .into(),
    ]
}
