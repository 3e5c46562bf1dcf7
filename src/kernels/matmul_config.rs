//! Which matmul kernel a device runs: the kernel families, the tile shapes of the
//! workgroup-memory kernel, and the choice per adapter class (made when a device is opened)
//! and per product shape.

use super::matmul::{epilogue_entry, Batch, MatMul};
use super::{Cx, KernelDef};
use crate::error::{Error, Result};

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
    /// 128×128 tiles, 8×8 per thread, 8-deep slices: 256 threads, 8 KiB of workgroup memory
    /// (and 2.2 KiB of window tables in an implicit GEMM), 64 multiply-adds per 4
    /// workgroup-memory loads. For large outputs on discrete GPUs.
    pub const LARGE: MatmulTiles = MatmulTiles {
        bm: 128,
        bn: 128,
        bk: 8,
        tm: 8,
        tn: 8,
    };
    /// 64×64 tiles, 4×4 per thread, 16-deep slices: 256 threads, 8 KiB (and 1.3 KiB). More workgroups for
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

    /// Workgroup memory used, in bytes (u64: any u32 fields give an exact answer): the staged
    /// slices of both operands, and the window tables of an implicit GEMM (`IM2COL`, 16 bytes
    /// per row of the tile and per k of a slice).
    pub fn shared_bytes(&self) -> u64 {
        4 * self.bk as u64 * (self.bm as u64 + self.bn as u64) + 16 * (self.bm as u64 + self.bk as u64 + 2)
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
    pub(super) reg: Option<(u32, u32)>,
    /// Largest workgroup y extent a narrowed `matmul_reg` shape may use (adapter limit, ≤ 64).
    pub(super) reg_max_y: u32,
    /// Most subgroups per workgroup of the 8-wide subgroup kernel `matmul_sg` (0: not used),
    /// which then runs every vec4-aligned shape.
    pub(super) sg_max: u32,
    /// Tile shapes of the workgroup-memory kernel: for outputs of at least `BIG_GROUPS` large
    /// tiles, and for the others.
    pub(super) tiles: (MatmulTiles, MatmulTiles),
}

/// Outputs that make at least this many large tiles use them (a large GPU has ~100 cores).
pub(super) const BIG_GROUPS: usize = 128;

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
    /// Whether convolutions run as implicit GEMMs here by default (see
    /// `Graph::set_implicit_conv`): where the matmul kernels are the tile and naive ones.
    pub(crate) fn implicit_conv_default(&self) -> bool {
        // The register kernels (CPU-like adapters) read A as vec4s, which a window matrix read
        // from the image cannot give; there an explicit im2col feeding them measured faster.
        self.reg.is_none()
    }

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
            a_win: None,
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
    pub(super) fn sg_shape(&self, m: usize, n: usize) -> u32 {
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
    pub(super) fn reg_shape(&self, (x, y): (u32, u32), m: usize, n: usize) -> (u32, u32) {
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
pub(super) const NAIVE_BELOW_MACS: usize = 1 << 17;
/// Under [`MatmulKernel::Auto`], the subgroup kernel (CPU adapters with 8-wide subgroups) runs
/// products of at least this many multiply-adds; below, the register kernel, within 15 % of it
/// there (64×64×128: 0.35 against 0.30 ms) at a tenth of its compile time (0.6 against 4.6–7.3 s
/// on llvmpipe with Mesa's shader cache off).
pub(super) const SUBGROUP_FROM_MACS: usize = 1 << 22;
