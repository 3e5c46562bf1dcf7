//! Lowering: each backend-neutral `Kernel` becomes one dispatch description (shader, entry
//! point, override constants, parameter words, bindings, grid), with the matmul kernel shapes
//! chosen per adapter class.

use super::{MatmulKernel, MatmulTiles};
use crate::backend::{Bcast, BufId, Kernel, OptimRule, ReduceOp};
use crate::error::{Error, Result};

/// Matmul kernel shapes of a device, chosen from its adapter class and limits when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MatmulConfig {
    kernel: MatmulKernel,
    /// Workgroup shape (x along n, y along m) of the register-blocked `matmul_reg` kernel (8×8
    /// outputs per invocation, no workgroup memory), used for shapes it supports; `None`: the
    /// workgroup-memory `matmul` kernel runs every shape. This is the shape for wide outputs;
    /// [`MatmulConfig::reg_shape`] narrows it for a given m×n.
    reg: Option<(u32, u32)>,
    /// Largest workgroup y extent a narrowed `matmul_reg` shape may use (adapter limit, ≤ 64).
    reg_max_y: u32,
    /// Most subgroups per workgroup of the 8-wide subgroup kernel `matmul_sg` (0: not used),
    /// which then runs every vec4-aligned shape.
    sg_max: u32,
    /// Tile shapes of the workgroup-memory kernel: for outputs of at least `BIG_GROUPS` large
    /// tiles, and for the others.
    tiles: (MatmulTiles, MatmulTiles),
}

/// Outputs that make at least this many large tiles use them (a large GPU has ~100 cores).
const BIG_GROUPS: usize = 128;

impl MatmulConfig {
    /// CPU adapters (llvmpipe, SwiftShader, WARP) run a workgroup's invocations as SIMD lanes and
    /// pay per lane for each load and a context switch per barrier: they get `matmul_reg`, 16×4
    /// invocations (a 32×128 tile of C). Real GPUs get the workgroup-memory tile kernel with
    /// shapes from the table below (or `tiles`): on an NVIDIA H200 (Vulkan) it runs W1 at 4096³
    /// at 22.7 TFLOP/s against the register kernel's 18.4; a device whose limits cannot hold
    /// the tiles falls back to `matmul_reg` with a shape that fits. CPU adapters whose
    /// subgroups are all 8 wide (`subgroup8`) run large vec4-aligned shapes with `matmul_sg`
    /// instead, which shares op(A) across the lanes with subgroup broadcasts (2–2.7×
    /// `matmul_reg` on llvmpipe).
    pub(super) fn choose(
        kernel: MatmulKernel,
        ty: wgpu::DeviceType,
        l: &wgpu::Limits,
        subgroup8: bool,
        tiles: Option<MatmulTiles>,
    ) -> MatmulConfig {
        let fits = |x: u32, y: u32, shared: u32| {
            x * y <= l.max_compute_invocations_per_workgroup
                && x <= l.max_compute_workgroup_size_x
                && y <= l.max_compute_workgroup_size_y
                && shared <= l.max_compute_workgroup_storage_size
        };
        let reg = [(16, 4), (8, 4), (4, 2), (1, 1)]
            .into_iter()
            .find(|&(x, y)| fits(x, y, 0));
        // Tile table: discrete GPUs take large tiles for large outputs; every other class, and
        // every output too small to fill a large GPU with large tiles, the small ones.
        let small = MatmulTiles::SMALL;
        let large = match ty {
            wgpu::DeviceType::DiscreteGpu if MatmulTiles::LARGE.check(l).is_ok() => MatmulTiles::LARGE,
            _ => small,
        };
        let tiles = tiles.map_or((large, small), |t| (t, t));
        let tiles_fit = tiles.0.check(l).is_ok() && tiles.1.check(l).is_ok();
        let reg = match kernel {
            MatmulKernel::Register | MatmulKernel::Naive => reg,
            MatmulKernel::Tiled if tiles_fit => None,
            MatmulKernel::Auto if tiles_fit && ty != wgpu::DeviceType::Cpu => None,
            _ => reg,
        };
        let use_sg = subgroup8
            && reg.is_some()
            && match kernel {
                MatmulKernel::Subgroup => true,
                MatmulKernel::Auto => ty == wgpu::DeviceType::Cpu,
                _ => false,
            };
        let sg_max = [2, 1]
            .into_iter()
            .find(|&g| fits(8 * g, 1, 0))
            .filter(|_| use_sg)
            .unwrap_or(0);
        MatmulConfig {
            kernel,
            reg,
            reg_max_y: l.max_compute_workgroup_size_y.min(64),
            sg_max,
            tiles,
        }
    }

    /// Whether the kernel a forward m×k·k×n lowers to has the layer epilogue
    /// ([`epilogue_entry`]); the register kernels and the naive one do not.
    pub(super) fn has_epilogue(&self, m: usize, k: usize, n: usize) -> bool {
        let probe = Kernel::MatMul {
            a: 0,
            b: 0,
            out: 0,
            m,
            k,
            n,
            ta: false,
            tb: false,
            acc: false,
        };
        lower_all(&probe, u32::MAX, *self).is_ok_and(|l| l.len() == 1 && epilogue_entry(l[0].entry).is_some())
    }

    /// One line naming the kernels this configuration runs, for logs and benchmark headers.
    pub(super) fn describe(&self) -> String {
        let t = |t: MatmulTiles| format!("{}×{}×{} tiles, {}×{} per thread", t.bm, t.bn, t.bk, t.tm, t.tn);
        let main = match (self.kernel, self.reg) {
            (MatmulKernel::Naive, _) => return "matmul_naive (one output per thread)".into(),
            (_, None) if self.tiles.0 == self.tiles.1 => format!("matmul ({})", t(self.tiles.0)),
            (_, None) => format!(
                "matmul ({} from {BIG_GROUPS} tiles up, else {})",
                t(self.tiles.0),
                t(self.tiles.1)
            ),
            (kernel, Some((x, y))) if self.sg_max > 0 => format!(
                "matmul_sg (8-wide subgroups, 32×8 per invocation, up to {} subgroups per workgroup) for \
                 vec4-aligned products{}, else matmul_reg / matmul_reg_any ({x}×{y} invocations, 8×8 each)",
                self.sg_max,
                if kernel == MatmulKernel::Auto {
                    format!(" of 2^{} multiply-adds and more", SUBGROUP_FROM_MACS.trailing_zeros())
                } else {
                    String::new()
                }
            ),
            (_, Some((x, y))) => format!("matmul_reg / matmul_reg_any ({x}×{y} invocations, 8×8 each)"),
        };
        if self.kernel == MatmulKernel::Auto {
            format!(
                "{main}; matmul_naive under 2^{} multiply-adds",
                NAIVE_BELOW_MACS.trailing_zeros()
            )
        } else {
            main
        }
    }

    /// Subgroups per workgroup of `matmul_sg` for an m×n output: the most the device allows,
    /// halved while that leaves fewer than 8 workgroups (the adapter spreads workgroups over
    /// its cores).
    fn sg_shape(&self, m: usize, n: usize) -> u32 {
        let mut g = self.sg_max;
        while g > 1 && n.div_ceil(64) * m.div_ceil(32 * g as usize) < 8 {
            g /= 2;
        }
        g
    }

    /// Workgroup shape of `matmul_reg` / `matmul_reg_any` for an m×n output: the configured shape
    /// when n fills it; for narrower n, just enough invocations along n (a power of two, each 8
    /// columns wide) and the freed invocations moved to m, so that lanes past the right edge are
    /// not run for nothing; then y is halved while that leaves fewer than `MIN_GROUPS` workgroups
    /// (a software adapter spreads workgroups, not invocations, over its cores), down to 8
    /// invocations (one 256-bit SIMD batch).
    fn reg_shape(&self, (x, y): (u32, u32), m: usize, n: usize) -> (u32, u32) {
        const MIN_GROUPS: usize = 8;
        let mut rx = x;
        while rx > 1 && 8 * (rx as usize / 2) >= n {
            rx /= 2;
        }
        let mut ry = (x * y / rx).min(self.reg_max_y).max(1);
        let groups = |ry: u32| n.div_ceil(8 * rx as usize) * m.div_ceil(8 * ry as usize);
        while ry > 1 && rx * ry > 8 && groups(ry) < MIN_GROUPS {
            ry /= 2;
        }
        (rx, ry)
    }
}

/// One dispatch, described before it is bound: which entry point, its constants, its
/// parameter words (binding 0) and its storage bindings (binding, buffer, read-only).
#[derive(Clone, Debug)]
pub(super) struct Launch {
    pub shader: &'static str,
    pub entry: &'static str,
    pub consts: Vec<(&'static str, f64)>,
    pub params: Vec<u32>,
    pub binds: Vec<(u32, BufId, bool)>,
    pub groups: [u32; 3],
}

pub(super) const PARAM_SLOT: u64 = 256;

fn u(v: usize) -> u32 {
    v as u32
}

/// Workgroup grid covering `n` workgroups, folded into 2-D past the per-dimension limit.
fn grid(n: usize, max_dim: u32) -> Result<[u32; 3]> {
    let n = n.max(1) as u64;
    let max = max_dim as u64;
    if n <= max {
        return Ok([n as u32, 1, 1]);
    }
    let y = n.div_ceil(max);
    if y > max {
        return Err(Error::LimitExceeded {
            what: format!("dispatch of {n} workgroups"),
            size: n,
            limit_name: "max_compute_workgroups_per_dimension²",
            limit: max * max,
        });
    }
    Ok([max as u32, y as u32, 1])
}

/// The entry point with the layer epilogue (C, Z = C + b, H = f(Z)) of a matmul entry point.
fn epilogue_entry(entry: &str) -> Option<&'static str> {
    match entry {
        "matmul_sg" => Some("matmul_sg_bias_act"),
        "matmul" => Some("matmul_bias_act"),
        _ => None,
    }
}

/// Workgroup grid of a matmul with tw×th tiles of C.
fn matmul_grid(m: usize, k: usize, n: usize, tw: usize, th: usize, max_dim: u32) -> Result<[u32; 3]> {
    let (gx, gy) = (n.div_ceil(tw), m.div_ceil(th));
    if gx > max_dim as usize || gy > max_dim as usize {
        return Err(Error::LimitExceeded {
            what: format!("matmul {m}×{k}·{k}×{n} dispatch"),
            size: gx.max(gy) as u64,
            limit_name: "max_compute_workgroups_per_dimension",
            limit: max_dim as u64,
        });
    }
    Ok([gx.max(1) as u32, gy.max(1) as u32, 1])
}

/// Under [`MatmulKernel::Auto`], products of fewer multiply-adds than this run the naive kernel:
/// on llvmpipe it compiles in ~0.03 s against 0.6–0.9 s for a register-kernel variant, and at
/// these sizes a dispatch costs about as much as the arithmetic (64×128×10: 0.58 against
/// 0.15 ms).
const NAIVE_BELOW_MACS: usize = 1 << 17;
/// Under [`MatmulKernel::Auto`], the subgroup kernel (CPU adapters with 8-wide subgroups) runs
/// products of at least this many multiply-adds; below, the register kernel, within 15 % of it
/// there (64×64×128: 0.35 against 0.30 ms) at a tenth of its compile time (0.6 against 4.6–7.3 s
/// on llvmpipe with Mesa's shader cache off).
const SUBGROUP_FROM_MACS: usize = 1 << 22;

/// Reductions over at most this many elements run one thread per output (no barriers).
const SERIAL_AXIS: usize = 1024;
/// Softmax rows of at most this many columns run one thread per row.
const SERIAL_ROW: usize = 64;

/// The most loop iterations one invocation runs in one dispatch. Mesa's llvmpipe 22.x (Debian
/// 12's driver) silently stops a shader's loops after 65,535 iterations; other drivers have
/// watchdogs. Kernels whose loops grow with a size (the inner dimension of a matmul, the axis
/// of a reduction, the rows of a column sum) are split by [`lower_all`] into dispatches that
/// each run at most this many iterations per invocation, a quarter of that limit, and add
/// into (or merge with) the previous ones; loops that cannot be split are refused above it.
pub(crate) const LOOP_BUDGET: usize = 16384;
/// Most dispatches one kernel is split into (beyond that the shape is refused).
const MAX_SPLIT: usize = 65536;

/// Slice of the inner dimension one dispatch of a matmul entry point may sum: `LOOP_BUDGET`
/// iterations of its k loop (4 k per iteration in the register kernels, 1 in the naive one);
/// the tile kernel runs several short loops per BK-deep stage, so it takes 2048 (a multiple of
/// every BK).
fn k_slice(entry: &str) -> usize {
    match entry {
        "matmul_naive" => LOOP_BUDGET,
        "matmul" | "matmul_bias_act" => 2048,
        _ => 4 * LOOP_BUDGET,
    }
}

/// Slices `0 .. len` into pieces of at most `slice`, refusing more than `MAX_SPLIT` of them.
fn slices(len: usize, slice: usize, what: &dyn Fn() -> String) -> Result<Vec<(usize, usize)>> {
    let n = len.div_ceil(slice).max(1);
    if n > MAX_SPLIT {
        return Err(Error::LimitExceeded {
            what: what(),
            size: len as u64,
            limit_name: "loop iterations per invocation × dispatches per kernel",
            limit: (slice * MAX_SPLIT) as u64,
        });
    }
    Ok((0..n).map(|i| (i * slice, ((i + 1) * slice).min(len))).collect())
}

/// Every dispatch of one kernel: [`lower`]'s launch, split where its loops would run more than
/// [`LOOP_BUDGET`] iterations per invocation (see there), or an error where they cannot be.
pub(super) fn lower_all(k: &Kernel, max_dim: u32, mm: MatmulConfig) -> Result<Vec<Launch>> {
    use Kernel::*;
    let l = lower(k, max_dim, mm)?;
    // Copies of `l` over the slices, with word `lo`/`hi` set to each slice and word `acc` (if
    // any) set on every slice after the first.
    let split = |l: Launch, parts: Vec<(usize, usize)>, lo: usize, acc: Option<usize>| -> Vec<Launch> {
        parts
            .into_iter()
            .enumerate()
            .map(|(i, (a, b))| {
                let mut s = l.clone();
                s.params[lo] = u(a);
                s.params[lo + 1] = u(b);
                if let (Some(w), true) = (acc, i > 0) {
                    s.params[w] = 1;
                }
                s
            })
            .collect()
    };
    Ok(match *k {
        MatMul { m, k, n, .. } => {
            let parts = slices(k, k_slice(l.entry), &|| format!("matmul {m}×{k}·{k}×{n}"))?;
            split(l, parts, 4, Some(3))
        }
        MatMulBiasAct { m, k, n, .. } => {
            if k > k_slice(l.entry) {
                return Err(Error::arg(
                    "matmul_bias_act",
                    format!("inner dimension {k} needs a split matmul (m={m}, n={n}); the graph runs it unfused"),
                ));
            }
            vec![l]
        }
        Reduce { op, axis, .. } if axis > SERIAL_AXIS => {
            let parts = slices(axis, 256 * LOOP_BUDGET, &|| {
                format!("{} over an axis of {axis}", op.name())
            })?;
            if op == ReduceOp::Max {
                // Later slices merge with the earlier result (word 6) instead of adding.
                split(l, parts, 4, Some(6))
            } else {
                split(l, parts, 4, Some(3))
            }
        }
        Mse { len, .. } => {
            let parts = slices(len, 256 * LOOP_BUDGET, &|| format!("mse over {len} elements"))?;
            split(l, parts, 4, Some(1))
        }
        BiasActBackward { rows, cols, .. } => {
            let parts = slices(rows, 4 * LOOP_BUDGET, &|| {
                format!("bias_act_backward over {rows}×{cols}")
            })?;
            split(l, parts, 4, Some(3))
        }
        Softmax { cols, .. } | SoftmaxBackward { cols, .. } | SoftmaxXent { cols, .. } if cols > SOFTMAX_MAX_COLS => {
            return Err(Error::LimitExceeded {
                what: format!("softmax over rows of {cols} columns"),
                size: cols as u64,
                limit_name: "columns per softmax row (loop iterations per invocation)",
                limit: SOFTMAX_MAX_COLS as u64,
            });
        }
        BinaryBackward { bc, which, .. } => {
            let target = if which == 0 { bc.a_shape } else { bc.b_shape };
            let ext: [usize; 4] = std::array::from_fn(|d| if target[d] != bc.out[d] { bc.out[d] } else { 1 });
            binary_boxes(&ext)?
                .into_iter()
                .enumerate()
                .map(|(i, (lo, hi))| {
                    let mut s = l.clone();
                    for d in 0..4 {
                        s.params[20 + d] = u(lo[d]);
                        s.params[24 + d] = u(hi[d]);
                    }
                    if i > 0 {
                        s.params[17] = 1;
                    }
                    s
                })
                .collect()
        }
        _ => vec![l],
    })
}

/// Softmax rows longer than this are refused: the workgroup-per-row kernels make three passes
/// over a row with 256 threads, `3·cols/256` loop iterations per invocation.
const SOFTMAX_MAX_COLS: usize = 256 * LOOP_BUDGET / 3;

/// Boxes (lo, hi per axis) that cover the summed index space `ext` of a broadcast VJP with at
/// most [`LOOP_BUDGET`] loop iterations each: the outermost axis whose inner extents fit is cut
/// into slices, the axes outside it into single indices.
fn binary_boxes(ext: &[usize; 4]) -> Result<Vec<([usize; 4], [usize; 4])>> {
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

pub(super) fn lower(k: &Kernel, max_dim: u32, mm: MatmulConfig) -> Result<Launch> {
    use Kernel::*;
    let elems = |len: usize| grid(len.div_ceil(256), max_dim);
    // Softmax rows: a thread each when short, a workgroup each otherwise.
    let row_groups = |rows: usize, cols: usize| {
        if cols <= SERIAL_ROW {
            elems(rows)
        } else {
            grid(rows, max_dim)
        }
    };
    let b = |acc: bool| acc as u32;
    let l = match *k {
        Fill { out, len, value, acc } => Launch {
            shader: "misc",
            entry: "fill",
            consts: vec![],
            params: vec![u(len), b(acc), 0, 0, value.to_bits(), 0, 0, 0],
            binds: vec![(3, out, false)],
            groups: elems(len)?,
        },
        Copy { x, out, len, acc } => Launch {
            shader: "misc",
            entry: "copy",
            consts: vec![],
            params: vec![u(len), b(acc), 0, 0, 0, 0, 0, 0],
            binds: vec![(1, x, true), (3, out, false)],
            groups: elems(len)?,
        },
        BiasAdd {
            x,
            bias,
            out,
            rows,
            cols,
        } => Launch {
            shader: "misc",
            entry: "bias_add",
            consts: vec![],
            params: vec![u(rows * cols), 0, u(rows), u(cols), 0, 0, 0, 0],
            binds: vec![(1, x, true), (2, bias, true), (3, out, false)],
            groups: elems(rows * cols)?,
        },
        Transpose {
            x,
            out,
            rows,
            cols,
            acc,
        } => Launch {
            shader: "misc",
            entry: "transpose",
            consts: vec![],
            params: vec![u(rows * cols), b(acc), u(rows), u(cols), 0, 0, 0, 0],
            binds: vec![(1, x, true), (3, out, false)],
            groups: elems(rows * cols)?,
        },
        MatMul {
            a,
            b: bb,
            out,
            m,
            k,
            n,
            ta,
            tb,
            acc,
        } => {
            // `matmul_reg` reads each operand as vec4s along its contiguous dimension;
            // `matmul_reg_any` cuts unaligned vec4s out of aligned pairs and runs every shape.
            // With A read transposed and m < 512, `matmul_reg` measured 3–13× slower than
            // `matmul_reg_any` on llvmpipe (256×256×256 dB, 256×128×16 dB); from m = 512 on it is
            // as fast or faster (benches/NOTES.md).
            let vec4_ok = k % 4 == 0 && (!ta || m % 4 == 0) && (tb || n % 4 == 0);
            // Under `Auto` the kernel also depends on the work: tiny products run the naive
            // kernel, and only large ones the subgroup kernel, whose compile time (seconds on
            // llvmpipe, at the first dispatch) the speed-up pays back only at large sizes
            // (benches/NOTES.md, "First run").
            let macs = m.saturating_mul(k).saturating_mul(n);
            let auto = mm.kernel == MatmulKernel::Auto;
            let naive = mm.kernel == MatmulKernel::Naive || (auto && macs < NAIVE_BELOW_MACS);
            if mm.sg_max > 0 && vec4_ok && !naive && (!auto || macs >= SUBGROUP_FROM_MACS) {
                let g = mm.sg_shape(m, n);
                return Ok(Launch {
                    shader: "matmul_sg",
                    entry: "matmul_sg",
                    consts: vec![("TA", ta as u32 as f64), ("TB", tb as u32 as f64), ("SGN", g as f64)],
                    params: vec![u(m), u(k), u(n), b(acc), 0, u(k), 0, 0],
                    binds: vec![(4, a, true), (5, bb, true), (3, out, false)],
                    groups: matmul_grid(m, k, n, 64, 32 * g as usize, max_dim)?,
                });
            }
            let reg = match (naive, mm.reg) {
                (true, _) => None,
                (false, wg) => wg.map(|wg| mm.reg_shape(wg, m, n)),
            };
            let big = mm.tiles.0;
            let tile = if n.div_ceil(big.bn as usize) * m.div_ceil(big.bm as usize) >= BIG_GROUPS {
                big
            } else {
                mm.tiles.1
            };
            let (tw, th, entry) = match (naive, reg) {
                (true, _) => (16, 16, "matmul_naive"),
                (_, Some((x, y))) => (
                    8 * x as usize,
                    8 * y as usize,
                    if vec4_ok && (!ta || m >= 512) {
                        "matmul_reg"
                    } else {
                        "matmul_reg_any"
                    },
                ),
                (_, None) => (tile.bn as usize, tile.bm as usize, "matmul"),
            };
            let groups = matmul_grid(m, k, n, tw, th, max_dim)?;
            let mut consts = vec![("TA", ta as u32 as f64), ("TB", tb as u32 as f64)];
            let binds = match (naive, reg) {
                (true, _) => vec![(1, a, true), (2, bb, true), (3, out, false)],
                (_, Some((x, y))) => {
                    consts.extend([("RWX", x as f64), ("RWY", y as f64)]);
                    vec![(4, a, true), (5, bb, true), (3, out, false)]
                }
                (_, None) => {
                    // vec4 loads along each operand's contiguous dimension where it is aligned.
                    let av = if ta { m % 4 == 0 } else { k % 4 == 0 };
                    let bv = if tb { k % 4 == 0 } else { n % 4 == 0 };
                    consts.extend([
                        ("BM", tile.bm as f64),
                        ("BN", tile.bn as f64),
                        ("BK", tile.bk as f64),
                        ("TM", tile.tm as f64),
                        ("TN", tile.tn as f64),
                        ("AV", av as u32 as f64),
                        ("BV", bv as u32 as f64),
                    ]);
                    vec![(4, a, true), (5, bb, true), (3, out, false)]
                }
            };
            Launch {
                shader: "matmul",
                entry,
                consts,
                params: vec![u(m), u(k), u(n), b(acc), 0, u(k), 0, 0],
                binds,
                groups,
            }
        }
        MatMulBiasAct {
            op,
            a,
            b: bb,
            bias,
            xw,
            z,
            y,
            m,
            k,
            n,
        } => {
            // The same kernel choice as the forward MatMul, with the epilogue entry point.
            let mut l = lower(
                &MatMul {
                    a,
                    b: bb,
                    out: xw,
                    m,
                    k,
                    n,
                    ta: false,
                    tb: false,
                    acc: false,
                },
                max_dim,
                mm,
            )?;
            l.entry = epilogue_entry(l.entry).ok_or_else(|| {
                Error::arg(
                    "matmul_bias_act",
                    format!("kernel {} has no layer epilogue (m={m}, k={k}, n={n})", l.entry),
                )
            })?;
            l.consts.push(("ACT", op.code() as f64));
            l.binds.extend([(6, bias, true), (7, z, false), (8, y, false)]);
            l
        }
        Unary { op, x, out, len } => Launch {
            shader: "unary",
            entry: "unary_forward",
            consts: vec![("OP", op.code() as f64)],
            params: vec![u(len), 0, op.alpha().to_bits(), 0],
            binds: vec![(1, x, true), (4, out, false)],
            groups: elems(len)?,
        },
        UnaryBackward {
            op,
            x,
            y,
            g,
            out,
            len,
            acc,
        } => Launch {
            shader: "unary",
            entry: "unary_backward",
            consts: vec![("OP", op.code() as f64)],
            params: vec![u(len), b(acc), op.alpha().to_bits(), 0],
            binds: vec![(1, x, true), (2, y, true), (3, g, true), (4, out, false)],
            groups: elems(len)?,
        },
        Binary { op, a, b: bb, out, bc } => {
            let mut params = bcast_params(&bc, &bc.out);
            params.extend([u(bc.numel()), 0, 0, 0]);
            Launch {
                shader: "binary",
                entry: "binary_forward",
                consts: vec![("OP", op.code() as f64)],
                params,
                binds: vec![(1, a, true), (2, bb, true), (4, out, false)],
                groups: elems(bc.numel())?,
            }
        }
        BinaryBackward {
            op,
            a,
            b: bb,
            g,
            out,
            bc,
            which,
            acc,
        } => {
            let target = if which == 0 { bc.a_shape } else { bc.b_shape };
            let len: usize = target.iter().product();
            let mut params = bcast_params(&bc, &target);
            params.extend([u(len), b(acc), which, 0]);
            // The box of summed indices (lo .. hi per axis): all of it unless split.
            params.extend([0, 0, 0, 0, u32::MAX, u32::MAX, u32::MAX, u32::MAX]);
            Launch {
                shader: "binary",
                entry: "binary_backward",
                consts: vec![("OP", op.code() as f64)],
                params,
                binds: vec![(1, a, true), (2, bb, true), (3, g, true), (4, out, false)],
                groups: elems(len)?,
            }
        }
        Reduce {
            op,
            x,
            out,
            arg,
            outer,
            axis,
            inner,
            acc,
        } => {
            let params = vec![u(outer), u(axis), u(inner), b(acc), 0, u(axis), 0, 0];
            // Short axes: a thread per output walks the axis (no barriers); long axes: a
            // workgroup per output and a tree.
            let serial = axis <= SERIAL_AXIS;
            let groups = if serial {
                elems(outer * inner)?
            } else {
                grid(outer * inner, max_dim)?
            };
            let entry = match (op == ReduceOp::Max, serial) {
                (true, true) => "reduce_max_serial",
                (true, false) => "reduce_max_forward",
                (false, true) => "reduce_serial",
                (false, false) => "reduce_forward",
            };
            let (consts, binds) = if op == ReduceOp::Max {
                (vec![], vec![(1, x, true), (2, arg, false), (3, out, false)])
            } else {
                (
                    vec![("MEAN", (op == ReduceOp::Mean) as u32 as f64)],
                    vec![(1, x, true), (3, out, false)],
                )
            };
            Launch {
                shader: "reduce",
                entry,
                consts,
                params,
                binds,
                groups,
            }
        }
        ReduceBackward {
            op,
            g,
            arg,
            out,
            outer,
            axis,
            inner,
            acc,
        } => {
            let params = vec![u(outer), u(axis), u(inner), b(acc)];
            let groups = elems(outer * axis * inner)?;
            let (entry, consts, binds) = if op == ReduceOp::Max {
                (
                    "reduce_max_backward",
                    vec![],
                    vec![(1, g, true), (3, out, false), (4, arg, true)],
                )
            } else {
                let mean = (op == ReduceOp::Mean) as u32 as f64;
                (
                    "reduce_backward",
                    vec![("MEAN", mean)],
                    vec![(1, g, true), (3, out, false)],
                )
            };
            Launch {
                shader: "reduce",
                entry,
                consts,
                params,
                binds,
                groups,
            }
        }
        Softmax { x, out, rows, cols } => Launch {
            shader: "softmax",
            entry: if cols <= SERIAL_ROW {
                "softmax_forward_rows"
            } else {
                "softmax_forward"
            },
            consts: vec![],
            params: vec![u(rows), u(cols), 0, 0],
            binds: vec![(1, x, true), (4, out, false)],
            groups: row_groups(rows, cols)?,
        },
        SoftmaxBackward {
            y,
            g,
            out,
            rows,
            cols,
            acc,
        } => Launch {
            shader: "softmax",
            entry: if cols <= SERIAL_ROW {
                "softmax_backward_rows"
            } else {
                "softmax_backward"
            },
            consts: vec![],
            params: vec![u(rows), u(cols), b(acc), 0],
            binds: vec![(1, y, true), (3, g, true), (4, out, false)],
            groups: row_groups(rows, cols)?,
        },
        SoftmaxXent {
            logits,
            labels,
            probs,
            loss_rows,
            rows,
            cols,
        } => Launch {
            shader: "softmax",
            entry: if cols <= SERIAL_ROW {
                "softmax_xent_forward_rows"
            } else {
                "softmax_xent_forward"
            },
            consts: vec![],
            params: vec![u(rows), u(cols), 0, 0],
            binds: vec![
                (1, logits, true),
                (2, labels, true),
                (4, probs, false),
                (5, loss_rows, false),
            ],
            groups: row_groups(rows, cols)?,
        },
        SoftmaxXentBackward {
            probs,
            labels,
            g,
            out,
            rows,
            cols,
            acc,
        } => Launch {
            shader: "softmax",
            entry: "softmax_xent_backward",
            consts: vec![],
            params: vec![u(rows), u(cols), b(acc), 0],
            binds: vec![(1, probs, true), (2, labels, true), (3, g, true), (4, out, false)],
            groups: elems(rows * cols)?,
        },
        Mse { p, t, out, len } => Launch {
            shader: "loss",
            entry: "mse_forward",
            consts: vec![],
            params: vec![u(len), 0, 0, 0, 0, u(len), 0, 0],
            binds: vec![(1, p, true), (2, t, true), (4, out, false)],
            groups: [1, 1, 1],
        },
        MseBackward {
            p,
            t,
            g,
            out,
            len,
            which,
            acc,
        } => Launch {
            shader: "loss",
            entry: "mse_backward",
            consts: vec![],
            params: vec![u(len), b(acc), which, 0],
            binds: vec![(1, p, true), (2, t, true), (3, g, true), (4, out, false)],
            groups: elems(len)?,
        },
        BiasActForward {
            op,
            xw,
            bias,
            z,
            y,
            rows,
            cols,
        } => Launch {
            shader: "fused",
            entry: "bias_act_forward",
            consts: vec![("OP", op.code() as f64)],
            params: vec![u(rows), u(cols), 0, 0],
            binds: vec![(7, xw, true), (8, bias, true), (9, z, false), (10, y, false)],
            groups: elems(rows * cols)?,
        },
        BiasActBackward {
            op,
            z,
            y,
            g,
            dz,
            dx,
            db,
            rows,
            cols,
            acc_dx,
            acc_db,
        } => Launch {
            shader: "fused",
            entry: "bias_act_backward",
            consts: vec![("OP", op.code() as f64)],
            params: vec![u(rows), u(cols), b(acc_dx), b(acc_db), 0, u(rows), 0, 0],
            binds: vec![
                (1, z, true),
                (2, y, true),
                (3, g, true),
                (4, dz, false),
                (5, dx, false),
                (6, db, false),
            ],
            groups: grid(cols.div_ceil(64), max_dim)?,
        },
        Optim {
            rule,
            param,
            grad,
            state,
            hyper,
            len,
        } => {
            let entry = match rule {
                OptimRule::Sgd => "sgd_step",
                OptimRule::Adam => "adam_step",
            };
            Launch {
                shader: "optim",
                entry,
                consts: vec![],
                params: vec![u(len), 0, 0, 0],
                binds: vec![(1, grad, true), (2, hyper, true), (3, param, false), (4, state, false)],
                groups: elems(len)?,
            }
        }
    };
    Ok(l)
}

fn bcast_params(bc: &Bcast, target: &[usize; 4]) -> Vec<u32> {
    let sa = Bcast::strides(&bc.a_shape);
    let sb = Bcast::strides(&bc.b_shape);
    let mut v = Vec::with_capacity(20);
    v.extend(bc.out.iter().map(|&d| u(d)));
    v.extend(sa.iter().map(|&d| u(d)));
    v.extend(sb.iter().map(|&d| u(d)));
    v.extend(target.iter().map(|&d| u(d)));
    v
}

/// A compute pipeline the crate can create: shader family, entry point and override constants.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineVariant {
    /// Shader family (a key of [`SHADERS`](super::SHADERS)).
    pub shader: &'static str,
    /// Entry point.
    pub entry: &'static str,
    /// Pipeline-overridable constants.
    pub constants: Vec<(&'static str, f64)>,
}

/// Every (shader, entry point, constants) combination the kernels lower to, under every matmul
/// configuration an adapter class can get. The naga translation test checks each on every
/// target language, so a variant that only some adapter would compile is still covered.
pub fn pipeline_variants() -> Vec<PipelineVariant> {
    use crate::backend::{BinaryOp, UnaryOp};
    let unary = UnaryOp::all(2.0);
    let bc = Bcast {
        out: [1, 1, 2, 3],
        a_shape: [1, 1, 2, 3],
        b_shape: [1, 1, 1, 3],
    };
    let mut ks = vec![
        Kernel::Fill {
            out: 0,
            len: 5,
            value: 1.0,
            acc: false,
        },
        Kernel::Copy {
            x: 0,
            out: 1,
            len: 5,
            acc: true,
        },
        Kernel::BiasAdd {
            x: 0,
            bias: 1,
            out: 2,
            rows: 2,
            cols: 3,
        },
        Kernel::Transpose {
            x: 0,
            out: 1,
            rows: 2,
            cols: 3,
            acc: false,
        },
        Kernel::Softmax {
            x: 0,
            out: 1,
            rows: 2,
            cols: 3,
        },
        Kernel::SoftmaxBackward {
            y: 0,
            g: 1,
            out: 2,
            rows: 2,
            cols: 3,
            acc: false,
        },
        Kernel::SoftmaxXent {
            logits: 0,
            labels: 1,
            probs: 2,
            loss_rows: 3,
            rows: 2,
            cols: 3,
        },
        Kernel::SoftmaxXentBackward {
            probs: 0,
            labels: 1,
            g: 2,
            out: 3,
            rows: 2,
            cols: 3,
            acc: false,
        },
        Kernel::Mse {
            p: 0,
            t: 1,
            out: 2,
            len: 5,
        },
        Kernel::MseBackward {
            p: 0,
            t: 1,
            g: 2,
            out: 3,
            len: 5,
            which: 1,
            acc: false,
        },
    ];
    for op in unary {
        ks.push(Kernel::Unary {
            op,
            x: 0,
            out: 1,
            len: 5,
        });
        ks.push(Kernel::UnaryBackward {
            op,
            x: 0,
            y: 1,
            g: 2,
            out: 3,
            len: 5,
            acc: false,
        });
    }
    for op in BinaryOp::ALL {
        ks.push(Kernel::Binary {
            op,
            a: 0,
            b: 1,
            out: 2,
            bc,
        });
        for which in 0..2 {
            ks.push(Kernel::BinaryBackward {
                op,
                a: 0,
                b: 1,
                g: 2,
                out: 3,
                bc,
                which,
                acc: false,
            });
        }
    }
    // Short and long rows / axes lower to different entry points.
    for cols in [3, 1000] {
        ks.push(Kernel::Softmax {
            x: 0,
            out: 1,
            rows: 2,
            cols,
        });
        ks.push(Kernel::SoftmaxBackward {
            y: 0,
            g: 1,
            out: 2,
            rows: 2,
            cols,
            acc: false,
        });
        ks.push(Kernel::SoftmaxXent {
            logits: 0,
            labels: 1,
            probs: 2,
            loss_rows: 3,
            rows: 2,
            cols,
        });
    }
    for op in ReduceOp::ALL {
        for axis in [3, 5000] {
            ks.push(Kernel::Reduce {
                op,
                x: 0,
                out: 1,
                arg: 2,
                outer: 2,
                axis,
                inner: 1,
                acc: false,
            });
        }
        ks.push(Kernel::ReduceBackward {
            op,
            g: 0,
            arg: 1,
            out: 2,
            outer: 2,
            axis: 3,
            inner: 1,
            acc: false,
        });
    }
    for rule in [OptimRule::Sgd, OptimRule::Adam] {
        ks.push(Kernel::Optim {
            rule,
            param: 0,
            grad: 1,
            state: 2,
            hyper: 3,
            len: 5,
        });
    }
    for op in [UnaryOp::Sigmoid, UnaryOp::Relu, UnaryOp::Tanh] {
        ks.push(Kernel::BiasActForward {
            op,
            xw: 0,
            bias: 1,
            z: 2,
            y: 3,
            rows: 2,
            cols: 3,
        });
        ks.push(Kernel::BiasActBackward {
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
        });
    }
    // Sizes that reach every narrowed `matmul_reg` workgroup shape, aligned and not.
    // (64, 64, 128) and (65, 70, 33): mid-sized, where `Auto` takes the register kernel even
    // on adapters with the subgroup one; (4096, 4, 1024) reaches the subgroup kernel.
    let mut mm_shapes = vec![(4, 4, 4), (3, 5, 7), (64, 64, 128), (65, 70, 33)];
    for m in [1, 8, 16, 32, 64, 128, 256, 512, 1024, 4096] {
        for n in [1, 9, 17, 33, 65, 129, 1024] {
            mm_shapes.extend([(m, 4, n), (m, 5, n)]);
        }
    }
    for (m, k, n) in mm_shapes.iter().copied() {
        for op in [UnaryOp::Sigmoid, UnaryOp::Relu, UnaryOp::Tanh] {
            ks.push(Kernel::MatMulBiasAct {
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
            });
        }
    }
    for (m, k, n) in mm_shapes {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            ks.push(Kernel::MatMul {
                a: 0,
                b: 1,
                out: 2,
                m,
                k,
                n,
                ta,
                tb,
                acc: false,
            });
        }
    }
    let mut configs = Vec::new();
    for kernel in [
        MatmulKernel::Auto,
        MatmulKernel::Tiled,
        MatmulKernel::Register,
        MatmulKernel::Subgroup,
        MatmulKernel::Naive,
    ] {
        for ty in [wgpu::DeviceType::Cpu, wgpu::DeviceType::DiscreteGpu] {
            for limits in [wgpu::Limits::default(), wgpu::Limits::downlevel_defaults()] {
                for subgroup8 in [false, true] {
                    configs.push(MatmulConfig::choose(kernel, ty, &limits, subgroup8, None));
                }
                for tiles in [MatmulTiles::LARGE, MatmulTiles::SMALL] {
                    configs.push(MatmulConfig::choose(kernel, ty, &limits, false, Some(tiles)));
                }
            }
        }
    }
    let mut out: Vec<PipelineVariant> = Vec::new();
    for cfg in configs {
        for k in &ks {
            if let Kernel::MatMulBiasAct { m, k, n, .. } = *k {
                if !cfg.has_epilogue(m, k, n) {
                    continue;
                }
            }
            let l = lower(k, 65535, cfg).expect("representative kernels lower for every configuration");
            let v = PipelineVariant {
                shader: l.shader,
                entry: l.entry,
                constants: l.consts,
            };
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::grid;

    #[test]
    fn huge_vectors_use_a_two_dimensional_grid() {
        assert_eq!(grid(10, 65535).unwrap(), [10, 1, 1]);
        assert_eq!(grid(65535 * 3 + 1, 65535).unwrap(), [65535, 4, 1]);
        assert!(grid(65535usize * 65535 + 1, 65535).is_err());
    }
}
