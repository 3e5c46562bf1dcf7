//! The wgpu backend: device selection, pipeline cache, buffer pool, programs and readback.
//!
//! A program is a kernel list prepared once: each kernel gets its cached pipeline, a slot in
//! one uniform buffer for its parameters and a bind group created at compile time. Running
//! programs records every dispatch into one command encoder and submits it once; nothing is
//! allocated on that path. Every wgpu call that can fail runs inside validation and
//! out-of-memory error scopes, so failures surface as [`Error`] values.

use super::{BufId, Counters, Executor, Kernel, OptimRule, ProgramId, ReadFuture, ReadInner, ReduceOp};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Every WGSL source of the crate, by family name, as embedded in the binary.
pub const SHADERS: &[(&str, &str)] = &[
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    ("misc", include_str!("../../shaders/misc.wgsl")),
    ("unary", include_str!("../../shaders/unary.wgsl")),
    ("binary", include_str!("../../shaders/binary.wgsl")),
    ("reduce", include_str!("../../shaders/reduce.wgsl")),
    ("softmax", include_str!("../../shaders/softmax.wgsl")),
    ("loss", include_str!("../../shaders/loss.wgsl")),
    ("optim", include_str!("../../shaders/optim.wgsl")),
    ("fused", include_str!("../../shaders/fused.wgsl")),
];

/// Options for opening a GPU device.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Backends to consider. `None`: the `WGPU_BACKEND` environment variable
    /// (`vulkan`, `metal`, `dx12`, `gl`, comma separated), or all backends.
    pub backends: Option<wgpu::Backends>,
    /// Pick the first adapter whose name contains this (case-insensitive). `None`: the
    /// `WGPU_ADAPTER_NAME` environment variable, or the best adapter.
    pub adapter_name: Option<String>,
    /// Limits to request. `None`: the adapter's own limits, so large buffers work wherever the
    /// hardware allows. Pass smaller limits (e.g. `wgpu::Limits::downlevel_defaults()`) to
    /// test that code stays within them.
    pub limits: Option<wgpu::Limits>,
    /// Matmul kernel family; the tiled kernel unless set (the naive one is the benchmark baseline).
    pub matmul: MatmulKernel,
}

/// Which matmul kernel a device runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatmulKernel {
    /// Workgroup-memory tiles with a register block of outputs per thread.
    #[default]
    Tiled,
    /// One output per thread, straight from global memory: the simple baseline.
    Naive,
}

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
}

impl MatmulConfig {
    /// CPU adapters (llvmpipe, SwiftShader, WARP) run a workgroup's invocations as SIMD lanes and
    /// pay per lane for each load and a context switch per barrier: they get `matmul_reg`, 16×4
    /// invocations (a 32×128 tile of C). Real GPUs get the classic 64×64 workgroup-memory tile
    /// (16×16 invocations, 8 KiB of workgroup memory); a device whose limits cannot hold that
    /// falls back to `matmul_reg` with a shape that fits.
    fn choose(kernel: MatmulKernel, ty: wgpu::DeviceType, l: &wgpu::Limits) -> MatmulConfig {
        let fits = |x: u32, y: u32, shared: u32| {
            x * y <= l.max_compute_invocations_per_workgroup
                && x <= l.max_compute_workgroup_size_x
                && y <= l.max_compute_workgroup_size_y
                && shared <= l.max_compute_workgroup_storage_size
        };
        let reg = [(16, 4), (8, 4), (4, 2), (1, 1)]
            .into_iter()
            .find(|&(x, y)| fits(x, y, 0));
        let reg = if ty == wgpu::DeviceType::Cpu || !fits(16, 16, 8192) {
            reg
        } else {
            None
        };
        MatmulConfig {
            kernel,
            reg,
            reg_max_y: l.max_compute_workgroup_size_y.min(64),
        }
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

/// What was opened: adapter name, backend and device type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// "gpu" or "cpu".
    pub kind: &'static str,
    /// Adapter name (e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"), or the CPU backend's description.
    pub name: String,
    /// wgpu backend ("Vulkan", "Metal", "Dx12", "Gl"), or "cpu".
    pub backend: String,
    /// Discrete / integrated / virtual GPU, software ("Cpu") or other.
    pub device_type: String,
    /// Driver name and version, where reported.
    pub driver: String,
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind == "cpu" {
            write!(f, "{} (CPU backend)", self.name)
        } else {
            write!(f, "{} ({}, {}", self.name, self.backend, self.device_type)?;
            if !self.driver.is_empty() {
                write!(f, ", driver {}", self.driver)?;
            }
            write!(f, ")")
        }
    }
}

fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    // Native compute APIs before GL, which lacks some limits and is slower to drive.
    let be = if info.backend == wgpu::Backend::Gl { 1 } else { 0 };
    (ty, be)
}

/// Lists the adapters wgpu sees for the given backends (or `WGPU_BACKEND`), best first. With
/// neither, native APIs (Vulkan, Metal, DX12) are listed, or GL adapters when there are none.
pub fn enumerate_adapters(backends: Option<wgpu::Backends>) -> Vec<wgpu::Adapter> {
    let list = |backends: wgpu::Backends| {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
        adapters.sort_by_key(|a| rank(&a.get_info()));
        adapters
    };
    match backends.or_else(wgpu::Backends::from_env) {
        Some(b) => list(b),
        // GL is probed only when no native compute API has an adapter: it is the slowest path
        // and probing it prints windowing-system warnings on headless machines.
        None => {
            let primary = list(wgpu::Backends::PRIMARY);
            if primary.is_empty() {
                list(wgpu::Backends::SECONDARY)
            } else {
                primary
            }
        }
    }
}

/// Bind-group and pipeline layouts by binding signature ((binding, read-only) pairs).
type LayoutCache = HashMap<Vec<(u32, bool)>, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>;

/// The GPU context shared by every graph on it: device, queue, pipeline cache, buffer pool.
pub struct GpuDevice {
    adapter: wgpu::Adapter,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: DeviceInfo,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    layouts: Mutex<LayoutCache>,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
    pool: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    pipelines_compiled: AtomicU64,
    matmul: MatmulConfig,
}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuDevice")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl GpuDevice {
    /// Opens the best adapter allowed by `opts` (discrete, then integrated, then software).
    pub fn open(opts: &GpuOptions) -> Result<Arc<GpuDevice>> {
        let backends = opts.backends.or_else(wgpu::Backends::from_env);
        let adapters = enumerate_adapters(backends);
        if adapters.is_empty() {
            let which = backends
                .map(|b| format!("{b:?}"))
                .unwrap_or_else(|| "all backends".into());
            return Err(Error::NoAdapter(format!("wgpu found no adapter for {which}")));
        }
        let wanted = opts
            .adapter_name
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok());
        let adapter = match &wanted {
            Some(name) => {
                let lower = name.to_lowercase();
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&lower))
                    .ok_or_else(|| {
                        Error::NoAdapter(format!(
                            "no adapter name contains '{name}' (found: {})",
                            names.join(", ")
                        ))
                    })?
            }
            None => adapters.into_iter().next().expect("checked non-empty above"),
        };
        Self::from_adapter(adapter, opts.limits.clone(), opts.matmul)
    }

    /// Creates the device on a given adapter, with the adapter's own limits unless `limits` is set.
    pub fn from_adapter(
        adapter: wgpu::Adapter,
        limits: Option<wgpu::Limits>,
        matmul: MatmulKernel,
    ) -> Result<Arc<GpuDevice>> {
        let ai = adapter.get_info();
        let required_limits = limits.unwrap_or_else(|| adapter.limits());
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgrad"),
            required_features: wgpu::Features::empty(),
            required_limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::DeviceCreation(format!("{} ({:?}): {e}", ai.name, ai.backend)))?;
        let lost = Arc::new(Mutex::new(None));
        let l2 = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *l2.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{reason:?}: {msg}"));
        });
        let uncaptured = Arc::new(Mutex::new(None));
        let u2 = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = u2.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(e.to_string());
            }
        }));
        let info = DeviceInfo {
            kind: "gpu",
            name: ai.name.clone(),
            backend: format!("{:?}", ai.backend),
            device_type: format!("{:?}", ai.device_type),
            driver: [ai.driver.as_str(), ai.driver_info.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
        };
        let matmul = MatmulConfig::choose(matmul, ai.device_type, &device.limits());
        Ok(Arc::new(GpuDevice {
            adapter,
            device,
            queue,
            info,
            modules: Mutex::default(),
            layouts: Mutex::default(),
            pipelines: Mutex::default(),
            pool: Mutex::default(),
            lost,
            uncaptured,
            pipelines_compiled: AtomicU64::new(0),
            matmul,
        }))
    }

    /// Adapter name, backend and type.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The limits the device was created with.
    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// The underlying wgpu adapter.
    pub fn adapter(&self) -> &wgpu::Adapter {
        &self.adapter
    }

    /// Pipelines compiled on this device so far (each is compiled once and cached).
    pub fn pipelines_compiled(&self) -> u64 {
        self.pipelines_compiled.load(Ordering::Relaxed)
    }

    fn check_alive(&self) -> Result<()> {
        if let Some(m) = self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(Error::DeviceLost(m));
        }
        Ok(())
    }

    /// Runs `f` inside out-of-memory and validation error scopes.
    pub(crate) fn scoped<R>(&self, during: &'static str, f: impl FnOnce() -> R) -> Result<R> {
        self.check_alive()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let ve = pollster::block_on(val.pop());
        let oe = pollster::block_on(oom.pop());
        if let Some(e) = oe {
            return Err(Error::OutOfMemory {
                during,
                detail: e.to_string(),
            });
        }
        if let Some(e) = ve {
            return Err(Error::Gpu {
                during,
                detail: e.to_string(),
            });
        }
        if let Some(e) = self.uncaptured.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(Error::Gpu { during, detail: e });
        }
        self.check_alive()?;
        Ok(r)
    }

    fn module(&self, shader: &'static str) -> Result<wgpu::ShaderModule> {
        let mut mods = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = mods.get(shader) {
            return Ok(m.clone());
        }
        let src = SHADERS
            .iter()
            .find(|(n, _)| *n == shader)
            .map(|(_, s)| *s)
            .expect("every kernel names a shader listed in SHADERS");
        let m = self.scoped("shader compilation", || {
            self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            })
        })?;
        mods.insert(shader, m.clone());
        Ok(m)
    }

    fn layout(&self, key: &[(u32, bool)]) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        let mut layouts = self.layouts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = layouts.get(key) {
            return l.clone();
        }
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        for &(binding, read_only) in key {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let bgl = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: None,
            entries: &entries,
        });
        let pl = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        layouts.insert(key.to_vec(), (bgl.clone(), pl.clone()));
        (bgl, pl)
    }

    /// The cached pipeline for (shader, entry point, constants, binding layout).
    fn pipeline(&self, l: &Launch) -> Result<(wgpu::ComputePipeline, wgpu::BindGroupLayout, bool)> {
        let key: Vec<(u32, bool)> = l.binds.iter().map(|&(b, _, ro)| (b, ro)).collect();
        let (bgl, pl) = self.layout(&key);
        let name = format!("{}::{}{:?}{:?}", l.shader, l.entry, l.consts, key);
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&name) {
            return Ok((p.clone(), bgl, false));
        }
        let module = self.module(l.shader)?;
        let p = self.scoped("pipeline creation", || {
            self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&name),
                layout: Some(&pl),
                module: &module,
                entry_point: Some(l.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &l.consts,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        })?;
        self.pipelines_compiled.fetch_add(1, Ordering::Relaxed);
        self.pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, p.clone());
        Ok((p, bgl, true))
    }

    /// Size class for pooling: powers of two up to 1 MiB, then multiples of 1 MiB, never above `cap`.
    fn size_class(bytes: u64, cap: u64) -> u64 {
        let bytes = bytes.max(16).next_multiple_of(16);
        let class = if bytes <= 1 << 20 {
            bytes.next_power_of_two()
        } else {
            bytes.next_multiple_of(1 << 20)
        };
        if class > cap {
            bytes
        } else {
            class
        }
    }
}

/// One dispatch, described before it is bound: which entry point, its constants, its
/// parameter words (binding 0) and its storage bindings (binding, buffer, read-only).
#[derive(Debug)]
pub(crate) struct Launch {
    shader: &'static str,
    entry: &'static str,
    consts: Vec<(&'static str, f64)>,
    params: Vec<u32>,
    binds: Vec<(u32, BufId, bool)>,
    groups: [u32; 3],
}

const PARAM_SLOT: u64 = 256;

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

fn lower(k: &Kernel, max_dim: u32, mm: MatmulConfig) -> Result<Launch> {
    use Kernel::*;
    let elems = |len: usize| grid(len.div_ceil(256), max_dim);
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
            let reg = match (mm.kernel, mm.reg) {
                (MatmulKernel::Tiled, Some(wg)) => Some(mm.reg_shape(wg, m, n)),
                _ => None,
            };
            let (tw, th, entry) = match (mm.kernel, reg) {
                (MatmulKernel::Naive, _) => (16, 16, "matmul_naive"),
                (MatmulKernel::Tiled, Some((x, y))) => (
                    8 * x as usize,
                    8 * y as usize,
                    if vec4_ok && (!ta || m >= 512) {
                        "matmul_reg"
                    } else {
                        "matmul_reg_any"
                    },
                ),
                (MatmulKernel::Tiled, None) => (64, 64, "matmul"),
            };
            let gx = n.div_ceil(tw);
            let gy = m.div_ceil(th);
            if gx > max_dim as usize || gy > max_dim as usize {
                return Err(Error::LimitExceeded {
                    what: format!("matmul {m}×{k}·{k}×{n} dispatch"),
                    size: gx.max(gy) as u64,
                    limit_name: "max_compute_workgroups_per_dimension",
                    limit: max_dim as u64,
                });
            }
            let mut consts = vec![("TA", ta as u32 as f64), ("TB", tb as u32 as f64)];
            let binds = match reg {
                Some((x, y)) => {
                    consts.extend([("RWX", x as f64), ("RWY", y as f64)]);
                    vec![(4, a, true), (5, bb, true), (3, out, false)]
                }
                None => vec![(1, a, true), (2, bb, true), (3, out, false)],
            };
            Launch {
                shader: "matmul",
                entry,
                consts,
                params: vec![u(m), u(k), u(n), b(acc)],
                binds,
                groups: [gx.max(1) as u32, gy.max(1) as u32, 1],
            }
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
            let params = vec![u(outer), u(axis), u(inner), b(acc)];
            let groups = grid(outer * inner, max_dim)?;
            if op == ReduceOp::Max {
                Launch {
                    shader: "reduce",
                    entry: "reduce_max_forward",
                    consts: vec![],
                    params,
                    binds: vec![(1, x, true), (2, arg, false), (3, out, false)],
                    groups,
                }
            } else {
                Launch {
                    shader: "reduce",
                    entry: "reduce_forward",
                    consts: vec![("MEAN", (op == ReduceOp::Mean) as u32 as f64)],
                    params,
                    binds: vec![(1, x, true), (3, out, false)],
                    groups,
                }
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
            if op == ReduceOp::Max {
                Launch {
                    shader: "reduce",
                    entry: "reduce_max_backward",
                    consts: vec![],
                    params,
                    binds: vec![(1, g, true), (3, out, false), (4, arg, true)],
                    groups,
                }
            } else {
                Launch {
                    shader: "reduce",
                    entry: "reduce_backward",
                    consts: vec![("MEAN", (op == ReduceOp::Mean) as u32 as f64)],
                    params,
                    binds: vec![(1, g, true), (3, out, false)],
                    groups,
                }
            }
        }
        Softmax { x, out, rows, cols } => Launch {
            shader: "softmax",
            entry: "softmax_forward",
            consts: vec![],
            params: vec![u(rows), u(cols), 0, 0],
            binds: vec![(1, x, true), (4, out, false)],
            groups: grid(rows, max_dim)?,
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
            entry: "softmax_backward",
            consts: vec![],
            params: vec![u(rows), u(cols), b(acc), 0],
            binds: vec![(1, y, true), (3, g, true), (4, out, false)],
            groups: grid(rows, max_dim)?,
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
            entry: "softmax_xent_forward",
            consts: vec![],
            params: vec![u(rows), u(cols), 0, 0],
            binds: vec![
                (1, logits, true),
                (2, labels, true),
                (4, probs, false),
                (5, loss_rows, false),
            ],
            groups: grid(rows, max_dim)?,
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
            params: vec![u(len), 0, 0, 0],
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
            params: vec![u(rows), u(cols), b(acc_dx), b(acc_db)],
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

fn bcast_params(bc: &super::Bcast, target: &[usize; 4]) -> Vec<u32> {
    let sa = super::Bcast::strides(&bc.a_shape);
    let sb = super::Bcast::strides(&bc.b_shape);
    let mut v = Vec::with_capacity(20);
    v.extend(bc.out.iter().map(|&d| u(d)));
    v.extend(sa.iter().map(|&d| u(d)));
    v.extend(sb.iter().map(|&d| u(d)));
    v.extend(target.iter().map(|&d| u(d)));
    v
}

struct Prepared {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

struct Program {
    steps: Vec<Prepared>,
    _params: Option<wgpu::Buffer>,
    params_bytes: u64,
}

struct Slot {
    buffer: wgpu::Buffer,
    class: u64,
    len: usize,
}

/// The per-graph GPU executor: its buffers (from the device pool) and compiled programs.
pub(crate) struct GpuExecutor {
    dev: Arc<GpuDevice>,
    bufs: Vec<Option<Slot>>,
    programs: Vec<Option<Program>>,
    staging: Option<wgpu::Buffer>,
    counters: Counters,
}

impl GpuExecutor {
    pub fn new(dev: Arc<GpuDevice>) -> Self {
        GpuExecutor {
            dev,
            bufs: Vec::new(),
            programs: Vec::new(),
            staging: None,
            counters: Counters::default(),
        }
    }

    fn slot(&self, id: BufId) -> &Slot {
        self.bufs[id]
            .as_ref()
            .expect("buffer ids handed out by alloc stay valid while the executor lives")
    }

    fn create_buffer(&mut self, size: u64, usage: wgpu::BufferUsages, what: &'static str) -> Result<wgpu::Buffer> {
        let dev = self.dev.clone();
        let buf = dev.scoped(what, || {
            dev.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size,
                usage,
                mapped_at_creation: false,
            })
        })?;
        self.counters.buffers_created += 1;
        self.counters.bytes_allocated += size;
        Ok(buf)
    }

    /// Copies `len` floats of `id` into the staging buffer and submits; returns the staging buffer.
    fn submit_copy(&mut self, id: BufId) -> Result<(wgpu::Buffer, u64)> {
        let bytes = (self.slot(id).len * 4) as u64;
        if self.staging.as_ref().is_none_or(|s| s.size() < bytes) {
            let size = bytes.next_power_of_two().max(256);
            let s = self.create_buffer(
                size,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                "readback staging",
            )?;
            self.staging = Some(s);
        }
        let staging = self.staging.clone().expect("staging buffer ensured above");
        let dev = self.dev.clone();
        let src = self.slot(id).buffer.clone();
        dev.scoped("readback", || {
            let mut enc = dev.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
            enc.copy_buffer_to_buffer(&src, 0, &staging, 0, bytes);
            dev.queue.submit([enc.finish()]);
        })?;
        self.counters.submissions += 1;
        Ok((staging, bytes))
    }
}

fn copy_out(staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>> {
    let view = staging.get_mapped_range(..bytes).map_err(|e| Error::Gpu {
        during: "readback",
        detail: e.to_string(),
    })?;
    let v = bytemuck::cast_slice::<u8, f32>(&view).to_vec();
    drop(view);
    staging.unmap();
    Ok(v)
}

/// An in-flight asynchronous readback.
pub struct PendingRead {
    dev: Arc<GpuDevice>,
    staging: wgpu::Buffer,
    bytes: u64,
    state: Arc<Mutex<Option<std::result::Result<(), String>>>>,
}

impl PendingRead {
    pub(crate) fn poll(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<Vec<f32>>> {
        // Native wgpu delivers map callbacks from Device::poll; drive it without blocking.
        if let Err(e) = self.dev.device.poll(wgpu::PollType::Poll) {
            return std::task::Poll::Ready(Err(Error::Gpu {
                during: "readback",
                detail: e.to_string(),
            }));
        }
        match self.state.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(Ok(())) => std::task::Poll::Ready(copy_out(&self.staging, self.bytes)),
            Some(Err(e)) => std::task::Poll::Ready(Err(Error::Gpu {
                during: "readback",
                detail: e,
            })),
            None => {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        }
    }
}

impl Executor for GpuExecutor {
    fn alloc(&mut self, len: usize, what: &str) -> Result<BufId> {
        let limits = self.dev.device.limits();
        let bytes = (len as u64).saturating_mul(4);
        let cap = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        if bytes > limits.max_storage_buffer_binding_size {
            return Err(Error::LimitExceeded {
                what: what.to_string(),
                size: bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit: limits.max_storage_buffer_binding_size,
            });
        }
        if bytes > limits.max_buffer_size {
            return Err(Error::LimitExceeded {
                what: what.to_string(),
                size: bytes,
                limit_name: "max_buffer_size",
                limit: limits.max_buffer_size,
            });
        }
        let class = GpuDevice::size_class(bytes, cap);
        let pooled = self
            .dev
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&class)
            .and_then(|v| v.pop());
        let buffer = match pooled {
            Some(b) => {
                // A recycled buffer holds old data; the contract is zero-filled.
                self.dev.queue.write_buffer(&b, 0, &vec![0u8; bytes as usize]);
                b
            }
            None => self.create_buffer(
                class,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                "tensor",
            )?,
        };
        self.counters.live_buffers += 1;
        self.counters.live_bytes += class;
        self.bufs.push(Some(Slot { buffer, class, len }));
        Ok(self.bufs.len() - 1)
    }

    fn free(&mut self, buf: BufId) {
        if let Some(s) = self.bufs[buf].take() {
            self.counters.live_buffers -= 1;
            self.counters.live_bytes -= s.class;
            self.dev
                .pool
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(s.class)
                .or_default()
                .push(s.buffer);
        }
    }

    fn write(&mut self, buf: BufId, data: &[f64]) -> Result<()> {
        let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
        self.write_f32(buf, &v)
    }

    fn write_f32(&mut self, buf: BufId, data: &[f32]) -> Result<()> {
        let dev = self.dev.clone();
        let b = &self.slot(buf).buffer;
        dev.scoped("write", || dev.queue.write_buffer(b, 0, bytemuck::cast_slice(data)))
    }

    fn read(&mut self, buf: BufId) -> Result<Vec<f64>> {
        Ok(self.read_f32(buf)?.into_iter().map(|x| x as f64).collect())
    }

    fn read_f32(&mut self, buf: BufId) -> Result<Vec<f32>> {
        let (staging, bytes) = self.submit_copy(buf)?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
            let _ = tx.send(r.map_err(|e| e.to_string()));
        });
        // Another thread polling the same device may be the one that runs our callback, a
        // moment after our own poll returns: wait for the callback itself, not just the poll.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        let outcome = loop {
            self.dev
                .device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu {
                    during: "readback",
                    detail: e.to_string(),
                })?;
            self.dev.check_alive()?;
            match rx.recv_timeout(std::time::Duration::from_millis(1)) {
                Ok(r) => break r,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if std::time::Instant::now() < deadline => continue,
                Err(_) => break Err("buffer mapping did not complete".to_string()),
            }
        };
        match outcome {
            Ok(()) => copy_out(&staging, bytes),
            Err(e) => Err(Error::Gpu {
                during: "readback",
                detail: e,
            }),
        }
    }

    fn read_async(&mut self, buf: BufId) -> Result<ReadFuture> {
        let (staging, bytes) = self.submit_copy(buf)?;
        let state = Arc::new(Mutex::new(None));
        let s2 = state.clone();
        staging.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
            *s2.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.map_err(|e| e.to_string()));
        });
        Ok(ReadFuture {
            inner: ReadInner::Gpu(PendingRead {
                dev: self.dev.clone(),
                staging,
                bytes,
                state,
            }),
        })
    }

    fn compile(&mut self, kernels: Vec<Kernel>) -> Result<ProgramId> {
        let dev = self.dev.clone();
        let max_dim = dev.device.limits().max_compute_workgroups_per_dimension;
        let launches = kernels
            .iter()
            .map(|k| lower(k, max_dim, dev.matmul))
            .collect::<Result<Vec<_>>>()?;
        let align = (dev.device.limits().min_uniform_buffer_offset_alignment as u64).max(PARAM_SLOT);
        let params_bytes = align * launches.len() as u64;
        let params = if launches.is_empty() {
            None
        } else {
            let buf = self.create_buffer(
                params_bytes,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                "kernel parameters",
            )?;
            let mut bytes = vec![0u8; params_bytes as usize];
            for (i, l) in launches.iter().enumerate() {
                let off = i * align as usize;
                let words: &[u8] = bytemuck::cast_slice(&l.params);
                bytes[off..off + words.len()].copy_from_slice(words);
            }
            dev.queue.write_buffer(&buf, 0, &bytes);
            self.counters.live_buffers += 1;
            self.counters.live_bytes += params_bytes;
            Some(buf)
        };
        let mut steps = Vec::with_capacity(launches.len());
        for (i, l) in launches.iter().enumerate() {
            let (pipeline, bgl, compiled) = dev.pipeline(l)?;
            self.counters.pipelines_compiled += compiled as u64;
            let pbuf = params.as_ref().expect("a non-empty program has a parameter buffer");
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: pbuf,
                    offset: i as u64 * align,
                    size: wgpu::BufferSize::new(PARAM_SLOT),
                }),
            }];
            for &(binding, id, _) in &l.binds {
                entries.push(wgpu::BindGroupEntry {
                    binding,
                    resource: self.slot(id).buffer.as_entire_binding(),
                });
            }
            let bind_group = dev.scoped("bind group creation", || {
                dev.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(l.entry),
                    layout: &bgl,
                    entries: &entries,
                })
            })?;
            self.counters.bind_groups_created += 1;
            steps.push(Prepared {
                pipeline,
                bind_group,
                groups: l.groups,
            });
        }
        self.programs.push(Some(Program {
            steps,
            _params: params,
            params_bytes,
        }));
        Ok(self.programs.len() - 1)
    }

    fn run(&mut self, programs: &[ProgramId]) -> Result<()> {
        let dev = self.dev.clone();
        let mut dispatches = 0;
        {
            let progs: Vec<&Program> = programs
                .iter()
                .map(|&p| {
                    self.programs[p]
                        .as_ref()
                        .expect("program ids handed out by compile stay valid until discard")
                })
                .collect();
            dev.scoped("running kernels", || {
                let mut enc = dev.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("wgrad step"),
                });
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: None,
                    });
                    for prog in &progs {
                        for s in &prog.steps {
                            pass.set_pipeline(&s.pipeline);
                            pass.set_bind_group(0, &s.bind_group, &[]);
                            pass.dispatch_workgroups(s.groups[0], s.groups[1], s.groups[2]);
                            dispatches += 1;
                        }
                    }
                }
                dev.queue.submit([enc.finish()]);
            })?;
        }
        self.counters.submissions += 1;
        self.counters.dispatches += dispatches;
        Ok(())
    }

    fn discard(&mut self, program: ProgramId) {
        if let Some(p) = self.programs[program].take() {
            if p._params.is_some() {
                self.counters.live_buffers -= 1;
                self.counters.live_bytes -= p.params_bytes;
            }
        }
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn max_storage_buffers(&self) -> u32 {
        self.dev.device.limits().max_storage_buffers_per_shader_stage
    }

    fn wait(&mut self) -> Result<()> {
        self.dev
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu {
                during: "synchronize",
                detail: e.to_string(),
            })?;
        self.dev.check_alive()
    }
}

impl Drop for GpuExecutor {
    fn drop(&mut self) {
        // Return tensor buffers to the device pool so the next graph reuses them.
        let mut pool = self.dev.pool.lock().unwrap_or_else(|p| p.into_inner());
        for s in self.bufs.drain(..).flatten() {
            pool.entry(s.class).or_default().push(s.buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Option<Arc<GpuDevice>> {
        match GpuDevice::open(&GpuOptions::default()) {
            Ok(d) => Some(d),
            Err(e) if std::env::var("WGRAD_REQUIRE_GPU").as_deref() == Ok("1") => panic!("no GPU adapter: {e}"),
            Err(e) => {
                eprintln!("SKIPPED (no GPU adapter): {e}");
                None
            }
        }
    }

    #[test]
    fn validation_errors_become_err_values() {
        let Some(dev) = device() else { return };
        // MAP_READ may only be combined with COPY_DST: wgpu reports a validation error.
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE;
        let r = dev.scoped("test", || {
            dev.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 64,
                usage,
                mapped_at_creation: false,
            })
        });
        assert!(matches!(r, Err(Error::Gpu { during: "test", .. })), "{r:?}");
        // The device is still usable.
        let mut ex = GpuExecutor::new(dev.clone());
        let b = ex.alloc(4, "t").unwrap();
        ex.write_f32(b, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(ex.read_f32(b).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn absurd_allocation_is_an_error_not_an_abort() {
        let Some(dev) = device() else { return };
        let mut ex = GpuExecutor::new(dev.clone());
        let r = ex.alloc(usize::MAX / 8, "absurd");
        assert!(matches!(r, Err(Error::LimitExceeded { .. })), "{r:?}");
        // Past wgrad's own check, wgpu's error scopes catch what the driver refuses.
        let r = dev.scoped("raw", || {
            dev.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: u64::MAX / 4,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        });
        assert!(
            matches!(r, Err(Error::Gpu { .. }) | Err(Error::OutOfMemory { .. })),
            "{r:?}"
        );
    }

    #[test]
    fn lost_device_is_reported_on_the_next_call() {
        let Some(dev) = device() else { return };
        let mut ex = GpuExecutor::new(dev.clone());
        let b = ex.alloc(4, "t").unwrap();
        dev.device.destroy();
        let _ = dev.device.poll(wgpu::PollType::Poll);
        let r = ex.read_f32(b);
        assert!(matches!(r, Err(Error::DeviceLost(_)) | Err(Error::Gpu { .. })), "{r:?}");
        let r = ex.compile(vec![Kernel::Fill {
            out: b,
            len: 4,
            value: 1.0,
            acc: false,
        }]);
        assert!(r.is_err(), "after loss, calls fail instead of hanging");
    }

    #[test]
    fn huge_vectors_use_a_two_dimensional_grid() {
        assert_eq!(grid(10, 65535).unwrap(), [10, 1, 1]);
        assert_eq!(grid(65535 * 3 + 1, 65535).unwrap(), [65535, 4, 1]);
        assert!(grid(65535usize * 65535 + 1, 65535).is_err());
    }
}

/// A compute pipeline the crate can create: shader family, entry point and override constants.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineVariant {
    /// Shader family (a key of [`SHADERS`]).
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
    use super::{Bcast, BinaryOp, UnaryOp};
    let unary = [
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Tanh,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Neg,
        UnaryOp::Scale(2.0),
        UnaryOp::Square,
    ];
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
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
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
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
        ks.push(Kernel::Reduce {
            op,
            x: 0,
            out: 1,
            arg: 2,
            outer: 2,
            axis: 3,
            inner: 1,
            acc: false,
        });
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
    let mut mm_shapes = vec![(4, 4, 4), (3, 5, 7)];
    for m in [1, 8, 16, 32, 64, 128, 256, 512, 1024, 4096] {
        for n in [1, 9, 17, 33, 65, 129, 1024] {
            mm_shapes.extend([(m, 4, n), (m, 5, n)]);
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
    for kernel in [MatmulKernel::Tiled, MatmulKernel::Naive] {
        for ty in [wgpu::DeviceType::Cpu, wgpu::DeviceType::DiscreteGpu] {
            for limits in [wgpu::Limits::default(), wgpu::Limits::downlevel_defaults()] {
                configs.push(MatmulConfig::choose(kernel, ty, &limits));
            }
        }
    }
    let mut out: Vec<PipelineVariant> = Vec::new();
    for cfg in configs {
        for k in &ks {
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
