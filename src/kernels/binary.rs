//! Elementwise functions of two broadcast arguments and their VJPs (`shaders/binary.wgsl`).

use super::{par, put, u, wgsl_params, with_out, BufId, Cx, Kernel, KernelDef, Launch, Real, LOOP_BUDGET, MAX_SPLIT};
use crate::error::{Error, Result};

/// Elementwise functions of two broadcast arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
    /// 1 where a > b, else 0 (no gradient)
    Gt,
    /// 1 where a < b, else 0 (no gradient)
    Lt,
    /// 1 where a = b, else 0 (no gradient)
    Eq,
}

impl BinaryOp {
    /// Every binary op.
    pub const ALL: [BinaryOp; 7] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Gt,
        BinaryOp::Lt,
        BinaryOp::Eq,
    ];

    /// Short lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Gt => "gt",
            BinaryOp::Lt => "lt",
            BinaryOp::Eq => "eq",
        }
    }

    pub(crate) fn code(&self) -> u32 {
        *self as u32
    }

    /// a ∘ b
    #[inline(always)]
    fn value<T: Real>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Gt => T::from_f64((a > b) as u8 as f64),
            BinaryOp::Lt => T::from_f64((a < b) as u8 as f64),
            BinaryOp::Eq => T::from_f64((a == b) as u8 as f64),
        }
    }

    /// ∂(a∘b)/∂a (which = 0) or ∂(a∘b)/∂b (which = 1).
    #[inline(always)]
    fn partial<T: Real>(self, a: T, b: T, which: u32) -> T {
        match (self, which) {
            (BinaryOp::Add, _) => T::one(),
            (BinaryOp::Sub, 0) => T::one(),
            (BinaryOp::Sub, _) => -T::one(),
            (BinaryOp::Mul, 0) => b,
            (BinaryOp::Mul, _) => a,
            (BinaryOp::Div, 0) => T::one() / b,
            (BinaryOp::Div, _) => -a / (b * b),
            (BinaryOp::Gt | BinaryOp::Lt | BinaryOp::Eq, _) => T::zero(),
        }
    }
}

/// Broadcast geometry of a binary op, padded to rank 4 (leading dims of 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bcast {
    /// Output shape.
    pub out: [usize; 4],
    /// Shape of the first operand.
    pub a_shape: [usize; 4],
    /// Shape of the second operand.
    pub b_shape: [usize; 4],
}

impl Bcast {
    /// Elements of the output.
    pub fn numel(&self) -> usize {
        self.out.iter().product()
    }
    /// Element strides of a contiguous tensor, 0 on axes of extent 1 (they broadcast).
    pub fn strides(shape: &[usize; 4]) -> [usize; 4] {
        let mut s = [0; 4];
        let mut acc = 1;
        for d in (0..4).rev() {
            s[d] = if shape[d] == 1 { 0 } else { acc };
            acc *= shape[d];
        }
        s
    }
}

wgsl_params! {
    /// `Params` of `shaders/binary.wgsl`.
    BinaryParams for "binary" {
        out_shape: [u32; 4],
        a_str: [u32; 4],
        b_str: [u32; 4],
        /// backward: shape of the operand receiving the gradient
        t_shape: [u32; 4],
        /// elements of out (forward) or of the target (backward)
        len: u32,
        acc: u32,
        /// backward: 0 → d_a, 1 → d_b
        which: u32,
        _pad: u32,
        /// backward: the box lo .. hi of the summed axes this dispatch folds
        lo: [u32; 4],
        hi: [u32; 4],
    }
}

impl BinaryParams {
    fn new(bc: &Bcast, target: &[usize; 4], len: usize) -> BinaryParams {
        let w = |s: [usize; 4]| s.map(u);
        BinaryParams {
            out_shape: w(bc.out),
            a_str: w(Bcast::strides(&bc.a_shape)),
            b_str: w(Bcast::strides(&bc.b_shape)),
            t_shape: w(*target),
            len: u(len),
            hi: [u32::MAX; 4],
            ..Default::default()
        }
    }
}

/// out = a ∘ b with broadcasting
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Binary {
    pub op: BinaryOp,
    pub a: BufId,
    pub b: BufId,
    pub out: BufId,
    pub bc: Bcast,
}

/// d_a or d_b (which = 0 or 1) (+)= reduce over broadcast axes of g·∂(a∘b)
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BinaryBackward {
    pub op: BinaryOp,
    pub a: BufId,
    pub b: BufId,
    pub g: BufId,
    pub out: BufId,
    pub bc: Bcast,
    pub which: u32,
    pub acc: bool,
}

impl KernelDef for Binary {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let len = self.bc.numel();
        let p = BinaryParams::new(&self.bc, &self.bc.out, len);
        let binds = vec![(1, self.a, true), (2, self.b, true), (4, self.out, false)];
        Ok(vec![
            Launch::new("binary_forward", &p, binds, cx.elems(len)?).with("OP", self.op.code())
        ])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let Binary { op, a, b: bb, bc, .. } = *self;
        with_out!(b, self.out, |o, b| {
            let (sa, sb) = (Bcast::strides(&bc.a_shape), Bcast::strides(&bc.b_shape));
            let (av, bv) = (&b[a][..], &b[bb][..]);
            let (len, n3) = (bc.out.iter().product::<usize>(), bc.out[3]);
            // The op is chosen outside the loops, so each inner loop is straight-line code.
            each_op!(op, OP => par::rows(&mut o[..len], n3, n3, #[inline(always)] |rs, run| {
                let base = rs.start * n3;
                rows_in(&bc.out, &sa, &sb, rs, #[inline(always)] |o0, a0, b0, n, a3, b3| {
                    let o = &mut run[o0 - base..o0 - base + n];
                    if a3 == 1 && b3 == 1 {
                        let (a, b) = (&av[a0..a0 + n], &bv[b0..b0 + n]);
                        for j in 0..n {
                            o[j] = OP.value(a[j], b[j]);
                        }
                    } else {
                        for (j, o) in o.iter_mut().enumerate() {
                            *o = OP.value(av[a0 + j * a3], bv[b0 + j * b3]);
                        }
                    }
                })
            }))
        })
    }
}

impl KernelDef for BinaryBackward {
    /// One thread per element of the target; the broadcast axes it sums over are cut into
    /// boxes of at most [`LOOP_BUDGET`] elements, one dispatch each, adding into the gradient.
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let BinaryBackward {
            op,
            a,
            b,
            g,
            out,
            bc,
            which,
            acc,
        } = *self;
        let target = if which == 0 { bc.a_shape } else { bc.b_shape };
        let len: usize = target.iter().product();
        let p = BinaryParams {
            acc: acc as u32,
            which,
            ..BinaryParams::new(&bc, &target, len)
        };
        let binds = vec![(1, a, true), (2, b, true), (3, g, true), (4, out, false)];
        let l = Launch::new("binary_backward", &p, binds, cx.elems(len)?).with("OP", op.code());
        let ext: [usize; 4] = std::array::from_fn(|d| if target[d] != bc.out[d] { bc.out[d] } else { 1 });
        Ok(
            l.split(boxes(&ext)?.into_iter().enumerate().map(|(i, (lo, hi))| BinaryParams {
                acc: (acc || i > 0) as u32,
                lo: lo.map(u),
                hi: hi.map(u),
                ..p
            })),
        )
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let BinaryBackward {
            op,
            a,
            b: bb,
            g,
            bc,
            which,
            acc,
            ..
        } = *self;
        with_out!(b, self.out, |o, b| {
            let (sa, sb) = (Bcast::strides(&bc.a_shape), Bcast::strides(&bc.b_shape));
            let target = if which == 0 { bc.a_shape } else { bc.b_shape };
            let st = Bcast::strides(&target);
            let (av, bv, gv) = (&b[a][..], &b[bb][..], &b[g][..]);
            if st == Bcast::strides(&bc.out) {
                // Nothing to sum: the target has the output's shape.
                let (len, n3) = (bc.out.iter().product::<usize>(), bc.out[3]);
                each_op!(op, OP => par::rows(&mut o[..len], n3, 2 * n3, #[inline(always)] |rs, run| {
                    let base = rs.start * n3;
                    rows_in(&bc.out, &sa, &sb, rs, #[inline(always)] |o0, a0, b0, m, a3, b3| {
                        // Rows sliced up front (no bounds checks in the loop), and a loop of
                        // its own for operands both contiguous along the row, so it vectorises.
                        let (g, o) = (&gv[o0..o0 + m], &mut run[o0 - base..o0 - base + m]);
                        if a3 == 1 && b3 == 1 {
                            let (a, b) = (&av[a0..a0 + m], &bv[b0..b0 + m]);
                            for j in 0..m {
                                put(&mut o[j], g[j] * OP.partial(a[j], b[j], which), acc);
                            }
                        } else {
                            for j in 0..m {
                                let d = g[j] * OP.partial(av[a0 + j * a3], bv[b0 + j * b3], which);
                                put(&mut o[j], d, acc);
                            }
                        }
                    })
                }));
            } else {
                Self::sum_broadcast(op, which, acc, &bc, av, bv, gv, o);
            }
        })
    }
}

impl BinaryBackward {
    /// d_a or d_b (+)= g·∂(a∘b) summed over the axes the target is broadcast along, in f64
    /// (see `reduce`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn sum_broadcast<T: Real>(
        op: BinaryOp,
        which: u32,
        acc: bool,
        bc: &Bcast,
        av: &[T],
        bv: &[T],
        gv: &[T],
        o: &mut [T],
    ) {
        let (sa, sb) = (Bcast::strides(&bc.a_shape), Bcast::strides(&bc.b_shape));
        let target = if which == 0 { bc.a_shape } else { bc.b_shape };
        let st = Bcast::strides(&target);
        let n: usize = target.iter().product();
        let mut sums = vec![0.0f64; n];
        let t3 = st[3];
        let total: usize = bc.out.iter().product();
        // Runs of target elements, one per thread: each thread walks every row and adds only the
        // terms of its own elements, so every element receives its terms in the serial order.
        // (The closures are inlined by force: compiled apart, they lost the executor's AVX2 build.)
        par::rows(
            &mut sums,
            1,
            total / n.max(1),
            #[inline(always)]
            |ts, part| {
                each_op!(op, OP => rows(&bc.out, &sa, &sb, #[inline(always)] |o0, a0, b0, m, a3, b3| {
                    // The target's offset of this row: the output row's index through its strides.
                    let t0 = dot4(&unravel(o0, &bc.out), &st);
                    if t3 == 0 {
                        // The whole row sums into one element: four partial sums, then one add.
                        if !ts.contains(&t0) {
                            return;
                        }
                        let mut lanes = [0.0f64; 4];
                        for j in 0..m {
                            let d = gv[o0 + j] * OP.partial(av[a0 + j * a3], bv[b0 + j * b3], which);
                            lanes[j % 4] += d.to_f64();
                        }
                        part[t0 - ts.start] += (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
                        return;
                    }
                    // Element j of the row adds into t0 + j·t3: those of this run's elements.
                    let first = |t: usize| if t > t0 { (t - t0).div_ceil(t3).min(m) } else { 0 };
                    let (j0, j1) = (first(ts.start), first(ts.end));
                if j0 >= j1 {
                    return;
                }
                    if t3 == 1 && a3 == 1 && b3 == 1 {
                        // A row onto a row of the target (a bias's or a scale's gradient), all three
                        // contiguous: sliced up front, so the loop has no bounds checks.
                        let (g, a, b) = (&gv[o0 + j0..o0 + j1], &av[a0 + j0..a0 + j1], &bv[b0 + j0..b0 + j1]);
                        let s = &mut part[t0 + j0 - ts.start..t0 + j1 - ts.start];
                        for j in 0..j1 - j0 {
                            s[j] += (g[j] * OP.partial(a[j], b[j], which)).to_f64();
                        }
                    } else {
                        for j in j0..j1 {
                            let d = gv[o0 + j] * OP.partial(av[a0 + j * a3], bv[b0 + j * b3], which);
                            part[t0 + j * t3 - ts.start] += d.to_f64();
                        }
                    }
                }))
            },
        );
        for (o, s) in o.iter_mut().zip(sums) {
            put(o, T::from_f64(s), acc);
        }
    }
}

/// Runs `$body` with `$c` bound to `$op` as a constant, one match arm per op, so the op's
/// formula is folded into the loops inside.
macro_rules! each_op {
    ($op:expr, $c:ident => $body:expr) => {
        match $op {
            BinaryOp::Add => {
                const $c: BinaryOp = BinaryOp::Add;
                $body
            }
            BinaryOp::Sub => {
                const $c: BinaryOp = BinaryOp::Sub;
                $body
            }
            BinaryOp::Mul => {
                const $c: BinaryOp = BinaryOp::Mul;
                $body
            }
            BinaryOp::Div => {
                const $c: BinaryOp = BinaryOp::Div;
                $body
            }
            BinaryOp::Gt => {
                const $c: BinaryOp = BinaryOp::Gt;
                $body
            }
            BinaryOp::Lt => {
                const $c: BinaryOp = BinaryOp::Lt;
                $body
            }
            BinaryOp::Eq => {
                const $c: BinaryOp = BinaryOp::Eq;
                $body
            }
        }
    };
}
use each_op;

/// Calls `row(out_offset, a_offset, b_offset, len, a_stride, b_stride)` for every row (the
/// innermost axis) of the rank-4 index space `out`, with the operands read through their
/// broadcast strides: the per-element index arithmetic of the GPU kernel, once per row.
#[inline(always)]
pub(crate) fn rows(
    out: &[usize; 4],
    sa: &[usize; 4],
    sb: &[usize; 4],
    row: impl FnMut(usize, usize, usize, usize, usize, usize),
) {
    rows_in(out, sa, sb, 0..out[0] * out[1] * out[2], row)
}

/// [`rows`] for the rows `range` only (row r starts at output offset r·out[3]): what one thread
/// of a parallel loop ([`par::rows`]) runs.
#[inline(always)]
pub(crate) fn rows_in(
    out: &[usize; 4],
    sa: &[usize; 4],
    sb: &[usize; 4],
    range: std::ops::Range<usize>,
    mut row: impl FnMut(usize, usize, usize, usize, usize, usize),
) {
    if range.is_empty() {
        return;
    }
    // The first row's index, then a carry from axis 2 outwards.
    let (d1, d2) = (out[1], out[2]);
    let [mut i0, mut i1, mut i2] = [range.start / (d1 * d2), range.start / d2 % d1, range.start % d2];
    let mut o0 = range.start * out[3];
    for _ in range {
        let a0 = i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
        let b0 = i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
        row(o0, a0, b0, out[3], sa[3], sb[3]);
        o0 += out[3];
        i2 += 1;
        if i2 == d2 {
            i2 = 0;
            i1 += 1;
            if i1 == d1 {
                i1 = 0;
                i0 += 1;
            }
        }
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

/// Boxes (lo, hi per axis) that cover the summed index space `ext` of a broadcast VJP with at
/// most [`LOOP_BUDGET`] loop iterations each: the outermost axis whose inner extents fit is cut
/// into slices, the axes outside it into single indices.
fn boxes(ext: &[usize; 4]) -> Result<Vec<([usize; 4], [usize; 4])>> {
    let total: usize = ext.iter().product();
    if total <= LOOP_BUDGET {
        return Ok(vec![([0; 4], [u32::MAX as usize; 4])]);
    }
    // Smallest d whose inner product (axes after d) fits the budget.
    let inner = |d: usize| ext[d + 1..].iter().product::<usize>();
    let d = (0..4)
        .find(|&d| inner(d) <= LOOP_BUDGET)
        .expect("the last axis has an empty inner product");
    let slice = (LOOP_BUDGET / inner(d)).max(1);
    let outer: usize = ext[..d].iter().product();
    let count = outer * ext[d].div_ceil(slice);
    if count > MAX_SPLIT {
        return Err(Error::LimitExceeded {
            what: format!("broadcast gradient summing {total} elements per output ({ext:?})"),
            size: total as u64,
            limit_name: "loop iterations per invocation × dispatches per kernel",
            limit: (LOOP_BUDGET * MAX_SPLIT) as u64,
        });
    }
    let mut boxes = Vec::with_capacity(count);
    for o in 0..outer {
        // Unravel o over the axes before d.
        let mut idx = [0usize; 4];
        let mut r = o;
        for a in (0..d).rev() {
            idx[a] = r % ext[a];
            r /= ext[a];
        }
        for s in (0..ext[d]).step_by(slice) {
            let mut lo = [0usize; 4];
            let mut hi = [u32::MAX as usize; 4];
            for a in 0..d {
                lo[a] = idx[a];
                hi[a] = idx[a] + 1;
            }
            lo[d] = s;
            hi[d] = (s + slice).min(ext[d]);
            boxes.push((lo, hi));
        }
    }
    Ok(boxes)
}

/// Representative kernels: every op, forward and both VJPs.
pub(crate) fn examples() -> Vec<Kernel> {
    let bc = Bcast {
        out: [1, 1, 2, 3],
        a_shape: [1, 1, 2, 3],
        b_shape: [1, 1, 1, 3],
    };
    let mut ks = Vec::new();
    for op in BinaryOp::ALL {
        ks.push(
            Binary {
                op,
                a: 0,
                b: 1,
                out: 2,
                bc,
            }
            .into(),
        );
        for which in 0..2 {
            ks.push(
                BinaryBackward {
                    op,
                    a: 0,
                    b: 1,
                    g: 2,
                    out: 3,
                    bc,
                    which,
                    acc: false,
                }
                .into(),
            );
        }
    }
    ks
}
