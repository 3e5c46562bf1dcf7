//! Matrix products (`shaders/matmul_common.wgsl` with `matmul.wgsl` or `matmul_sg.wgsl`):
//! the kernel families, the choice between them per adapter class and shape, and the CPU
//! reference (the `matrixmultiply` GEMM with strided operands, so transposed reads cost nothing).

use super::{slices, u, wgsl_params, BufId, Cx, Kernel, KernelDef, Launch, Real, LOOP_BUDGET};
use crate::error::{Error, Result};

wgsl_params! {
    /// `Params` of the matmul families (`shaders/matmul_common.wgsl`).
    MatmulParams for "matmul", "matmul_sg" {
        m: u32,
        k: u32,
        n: u32,
        acc: u32,
        /// the slice k0 .. k1 of the inner dimension this dispatch sums
        k0: u32,
        k1: u32,
        /// element offsets of A, B and C of the first product of the batch
        a_off: u32,
        b_off: u32,
        c_off: u32,
        /// element strides from one product of the batch (workgroup z) to the next
        sa: u32,
        sb: u32,
        sc: u32,
    }
}

/// Tile shape of the workgroup-memory matmul kernel (`matmul` in `shaders/matmul.wgsl`): a
/// `bm`×`bn` tile of C per workgroup of (`bn`/`tn`)×(`bm`/`tm`) threads, each computing a
/// `tm`×`tn` block, staging `bk`-deep slices of both operands in workgroup memory. The values
/// become pipeline-overridable constants, so tuning them needs no shader edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulTiles {
    /// Rows of C per workgroup (a multiple of `tm`).
    pub bm: u32,
    /// Columns of C per workgroup (a multiple of `tn`).
    pub bn: u32,
    /// Depth of each staged slice (a multiple of 4).
    pub bk: u32,
    /// Rows per thread: 4 or 8.
    pub tm: u32,
    /// Columns per thread: 4 or 8.
    pub tn: u32,
}

impl MatmulTiles {
    /// 128×128 tiles, 8×8 per thread, 8-deep slices: 256 threads, 8 KiB of workgroup memory,
    /// 64 multiply-adds per 4 workgroup-memory loads. For large outputs on discrete GPUs.
    pub const LARGE: MatmulTiles = MatmulTiles {
        bm: 128,
        bn: 128,
        bk: 8,
        tm: 8,
        tn: 8,
    };
    /// 64×64 tiles, 4×4 per thread, 16-deep slices: 256 threads, 8 KiB. More workgroups for
    /// the same output, for smaller GPUs and smaller outputs.
    pub const SMALL: MatmulTiles = MatmulTiles {
        bm: 64,
        bn: 64,
        bk: 16,
        tm: 4,
        tn: 4,
    };

    /// Workgroup shape (x along n, y along m).
    pub fn workgroup(&self) -> (u32, u32) {
        (self.bn / self.tn, self.bm / self.tm)
    }

    /// Workgroup memory used, in bytes (u64: any u32 fields give an exact answer).
    pub fn shared_bytes(&self) -> u64 {
        4 * self.bk as u64 * (self.bm as u64 + self.bn as u64)
    }

    /// Checks the shape rules and the device limits; the error names the rule broken.
    pub fn check(&self, l: &wgpu::Limits) -> Result<()> {
        let bad = |why: String| Err(Error::arg("matmul tiles", format!("{self:?}: {why}")));
        if ![4, 8].contains(&self.tm) || ![4, 8].contains(&self.tn) {
            return bad("tm and tn must be 4 or 8".into());
        }
        if self.bm == 0 || self.bn == 0 || !self.bm.is_multiple_of(self.tm) || !self.bn.is_multiple_of(self.tn) {
            return bad("bm must be a positive multiple of tm, bn of tn".into());
        }
        if self.bk == 0 || !self.bk.is_multiple_of(4) {
            return bad("bk must be a positive multiple of 4".into());
        }
        let (x, y) = self.workgroup();
        if x > l.max_compute_workgroup_size_x
            || y > l.max_compute_workgroup_size_y
            || x as u64 * y as u64 > l.max_compute_invocations_per_workgroup as u64
        {
            return bad(format!(
                "a {x}×{y} workgroup exceeds the device's limits ({}×{}, {} invocations)",
                l.max_compute_workgroup_size_x, l.max_compute_workgroup_size_y, l.max_compute_invocations_per_workgroup
            ));
        }
        if self.shared_bytes() > l.max_compute_workgroup_storage_size as u64 {
            return bad(format!(
                "{} bytes of workgroup memory exceed max_compute_workgroup_storage_size ({})",
                self.shared_bytes(),
                l.max_compute_workgroup_storage_size
            ));
        }
        Ok(())
    }
}

/// Which matmul kernel a device runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatmulKernel {
    /// Chosen per adapter class when the device is created: workgroup-memory tiles on GPUs;
    /// on CPU-class adapters (llvmpipe, WARP) the barrier-free subgroup kernel where the
    /// adapter has 8-wide subgroups and the product is large and vec4-aligned, else the
    /// register-blocked one. Under `Auto` tiny products (under 2^17 multiply-adds) run the
    /// naive kernel, which compiles fastest.
    #[default]
    Auto,
    /// Always the workgroup-memory tiled kernel, the real-GPU kernel (tile shape from the table
    /// or [`GpuOptions::tiles`](crate::GpuOptions::tiles)) — e.g. to test it on a software adapter.
    Tiled,
    /// Always the register-blocked kernel (8×8 outputs per invocation, no workgroup memory).
    Register,
    /// The subgroup kernel for CPU-class adapters with 8-wide subgroups (32×8 outputs per
    /// invocation, op(A) shared through `subgroupBroadcast`) for every vec4-aligned shape, the
    /// register-blocked kernel for the others. Opening a device with this option fails when the
    /// adapter has no 8-wide subgroups.
    Subgroup,
    /// One output per thread, straight from global memory: the simple baseline.
    Naive,
}

/// Matmul kernel shapes of a device, chosen from its adapter class and limits when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MatmulConfig {
    pub(crate) kernel: MatmulKernel,
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
    pub(crate) fn choose(
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
    pub(crate) fn has_epilogue(&self, m: usize, k: usize, n: usize) -> bool {
        let probe = MatMul {
            a: 0,
            b: 0,
            out: 0,
            m,
            k,
            n,
            ta: false,
            tb: false,
            acc: false,
            batch: Batch::ONE,
        };
        let cx = Cx {
            max_dim: u32::MAX,
            mm: *self,
        };
        probe
            .lower(&cx)
            .is_ok_and(|l| l.len() == 1 && epilogue_entry(l[0].entry).is_some())
    }

    /// One line naming the kernels this configuration runs, for logs and benchmark headers.
    pub(crate) fn describe(&self) -> String {
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

    /// Every configuration an adapter class can get (for the pipeline-variant list).
    pub(crate) fn every() -> Vec<MatmulConfig> {
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
        configs
    }
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

/// Slice of the inner dimension one dispatch of a matmul entry point may sum: `LOOP_BUDGET`
/// iterations of its k loop (4 k per iteration in the register kernels, 1 in the naive one);
/// the tile kernel runs several short loops per BK-deep stage, so it takes 2048 (a multiple of
/// every BK).
pub(crate) fn k_slice(entry: &str) -> usize {
    match entry {
        "matmul_naive" => LOOP_BUDGET,
        "matmul" | "matmul_bias_act" => 2048,
        _ => 4 * LOOP_BUDGET,
    }
}

/// The entry point with the layer epilogue (C, Z = C + b, H = f(Z)) of a matmul entry point.
pub(crate) fn epilogue_entry(entry: &str) -> Option<&'static str> {
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

/// A batch of products in one dispatch (workgroup z): product z reads A from element
/// `a_off + z·sa`, B from `b_off + z·sb` and writes C from `c_off + z·sc`; a stride of 0
/// broadcasts an operand. Two products must not write the same C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    pub count: usize,
    pub a_off: usize,
    pub b_off: usize,
    pub c_off: usize,
    pub sa: usize,
    pub sb: usize,
    pub sc: usize,
}

impl Batch {
    /// One product, every matrix at the start of its buffer.
    pub const ONE: Batch = Batch {
        count: 1,
        a_off: 0,
        b_off: 0,
        c_off: 0,
        sa: 0,
        sb: 0,
        sc: 0,
    };
}

/// out (+)= op(A)·op(B), A is m×k after the optional transpose, B is k×n; for each product of
/// `batch`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MatMul {
    pub a: BufId,
    pub b: BufId,
    pub out: BufId,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub ta: bool,
    pub tb: bool,
    pub acc: bool,
    pub batch: Batch,
}

impl MatMul {
    /// The one dispatch over the whole inner dimension, kernel chosen for the shape.
    pub(crate) fn launch(&self, cx: &Cx) -> Result<Launch> {
        let MatMul {
            a,
            b: bb,
            out,
            m,
            k,
            n,
            ta,
            tb,
            acc,
            batch: bt,
        } = *self;
        let (mm, max_dim) = (cx.mm, cx.max_dim);
        let p = MatmulParams {
            m: u(m),
            k: u(k),
            n: u(n),
            acc: acc as u32,
            k0: 0,
            k1: u(k),
            a_off: u(bt.a_off),
            b_off: u(bt.b_off),
            c_off: u(bt.c_off),
            sa: u(bt.sa),
            sb: u(bt.sb),
            sc: u(bt.sc),
        };
        // The vec4 paths read each product's A and B from a multiple of 4 floats.
        let a4 = bt.a_off % 4 == 0 && bt.sa % 4 == 0;
        let b4 = bt.b_off % 4 == 0 && bt.sb % 4 == 0;
        // `matmul_reg` reads each operand as vec4s along its contiguous dimension;
        // `matmul_reg_any` cuts unaligned vec4s out of aligned pairs and runs every shape.
        // With A read transposed and m < 512, `matmul_reg` measured 3–13× slower than
        // `matmul_reg_any` on llvmpipe (256×256×256 dB, 256×128×16 dB); from m = 512 on it is
        // as fast or faster (benches/NOTES.md).
        let vec4_ok = k % 4 == 0 && (!ta || m % 4 == 0) && (tb || n % 4 == 0) && a4 && b4;
        // Under `Auto` the kernel also depends on the work: tiny products run the naive
        // kernel, and only large ones the subgroup kernel, whose compile time (seconds on
        // llvmpipe, at the first dispatch) the speed-up pays back only at large sizes
        // (benches/NOTES.md, "First run").
        let macs = m.saturating_mul(k).saturating_mul(n);
        let auto = mm.kernel == MatmulKernel::Auto;
        let naive = mm.kernel == MatmulKernel::Naive || (auto && macs < NAIVE_BELOW_MACS);
        let ops = vec![(4, a, true), (5, bb, true), (3, out, false)];
        if mm.sg_max > 0 && vec4_ok && !naive && (!auto || macs >= SUBGROUP_FROM_MACS) {
            let g = mm.sg_shape(m, n);
            let mut l = Launch::new(
                "matmul_sg",
                &p,
                ops,
                matmul_grid(m, k, n, 64, 32 * g as usize, max_dim)?,
            )
            .with("TA", ta as u32)
            .with("TB", tb as u32)
            .with("SGN", g);
            l.shader = "matmul_sg";
            l.groups[2] = u(bt.count);
            if bt != Batch::ONE {
                l.consts.push(("BATCHED", 1.0));
            }
            return Ok(l);
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
        let l = match (naive, reg) {
            (true, _) => Launch::new(
                "matmul_naive",
                &p,
                vec![(1, a, true), (2, bb, true), (3, out, false)],
                matmul_grid(m, k, n, 16, 16, max_dim)?,
            ),
            (_, Some((x, y))) => {
                let entry = if vec4_ok && (!ta || m >= 512) {
                    "matmul_reg"
                } else {
                    "matmul_reg_any"
                };
                let groups = matmul_grid(m, k, n, 8 * x as usize, 8 * y as usize, max_dim)?;
                Launch::new(entry, &p, ops, groups).with("RWX", x).with("RWY", y)
            }
            (_, None) => {
                // vec4 loads along each operand's contiguous dimension where it is aligned.
                let av = a4 && if ta { m % 4 == 0 } else { k % 4 == 0 };
                let bv = b4 && if tb { k % 4 == 0 } else { n % 4 == 0 };
                let groups = matmul_grid(m, k, n, tile.bn as usize, tile.bm as usize, max_dim)?;
                Launch::new("matmul", &p, ops, groups)
                    .with("BM", tile.bm)
                    .with("BN", tile.bn)
                    .with("BK", tile.bk)
                    .with("TM", tile.tm)
                    .with("TN", tile.tn)
                    .with("AV", av as u32)
                    .with("BV", bv as u32)
            }
        };
        // TA and TB come first among the constants (as in the other entry points).
        let mut l = l;
        l.groups[2] = u(bt.count);
        if bt != Batch::ONE {
            l.consts.push(("BATCHED", 1.0));
        }
        l.consts
            .splice(0..0, [("TA", ta as u32 as f64), ("TB", tb as u32 as f64)]);
        Ok(l)
    }
}

impl KernelDef for MatMul {
    /// Split into dispatches of at most [`k_slice`] of the inner dimension each, every one after
    /// the first adding into C, and batches into dispatches of at most the grid's z limit.
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let MatMul { m, k, n, acc, .. } = *self;
        let bt = self.batch;
        let mut out = Vec::new();
        for z0 in (0..bt.count.max(1)).step_by(cx.max_dim as usize) {
            let part = MatMul {
                batch: Batch {
                    count: (bt.count - z0).min(cx.max_dim as usize),
                    a_off: bt.a_off + z0 * bt.sa,
                    b_off: bt.b_off + z0 * bt.sb,
                    c_off: bt.c_off + z0 * bt.sc,
                    ..bt
                },
                ..self.clone()
            };
            let l = part.launch(cx)?;
            let parts = slices(k, k_slice(l.entry), &|| format!("matmul {m}×{k}·{k}×{n}"))?;
            let base: MatmulParams = bytemuck::cast_slice(&l.params)[0];
            out.extend(l.split(parts.into_iter().enumerate().map(|(i, (k0, k1))| MatmulParams {
                k0: u(k0),
                k1: u(k1),
                acc: (acc || i > 0) as u32,
                ..base
            })));
        }
        Ok(out)
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let MatMul {
            a,
            b: bb,
            m,
            k,
            n,
            ta,
            tb,
            acc,
            batch: bt,
            ..
        } = *self;
        super::with_out!(b, self.out, |o, b| {
            for z in 0..bt.count {
                let (ao, bo, co) = (bt.a_off + z * bt.sa, bt.b_off + z * bt.sb, bt.c_off + z * bt.sc);
                matmul(&b[a][ao..], &b[bb][bo..], &mut o[co..], m, k, n, ta, tb, acc);
            }
        })
    }
}

/// out (+)= op(A)·op(B); A is m×k (stored k×m when `ta`), B is k×n (stored n×k when `tb`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: Real>(
    a: &[T],
    b: &[T],
    out: &mut [T],
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    acc: bool,
) {
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

/// Shapes that reach every narrowed `matmul_reg` workgroup shape, aligned and not.
/// (64, 64, 128) and (65, 70, 33): mid-sized, where `Auto` takes the register kernel even
/// on adapters with the subgroup one; (4096, 4, 1024) reaches the subgroup kernel.
pub(crate) fn example_shapes() -> Vec<(usize, usize, usize)> {
    let mut shapes = vec![(4, 4, 4), (3, 5, 7), (64, 64, 128), (65, 70, 33)];
    for m in [1, 8, 16, 32, 64, 128, 256, 512, 1024, 4096] {
        for n in [1, 9, 17, 33, 65, 129, 1024] {
            shapes.extend([(m, 4, n), (m, 5, n)]);
        }
    }
    shapes
}

/// Representative kernels: every shape of [`example_shapes`] with every transpose, one product
/// and (another pipeline: `BATCHED`) a batch of them.
pub(crate) fn examples() -> Vec<Kernel> {
    let mut ks = Vec::new();
    let batched = Batch {
        count: 3,
        a_off: 0,
        b_off: 0,
        c_off: 0,
        sa: 1 << 20,
        sb: 0,
        sc: 1 << 20,
    };
    for ((m, k, n), batch) in example_shapes()
        .into_iter()
        .flat_map(|s| [(s, Batch::ONE), (s, batched)])
    {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            ks.push(
                MatMul {
                    a: 0,
                    b: 1,
                    out: 2,
                    m,
                    k,
                    n,
                    ta,
                    tb,
                    acc: false,
                    batch,
                }
                .into(),
            );
        }
    }
    ks
}
