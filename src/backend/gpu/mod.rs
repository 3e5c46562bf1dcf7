//! The wgpu backend: device selection, pipeline cache, buffer pool, programs and readback.
//!
//! A program is a kernel list prepared once: each kernel gets its cached pipeline, a slot in
//! one uniform buffer for its parameters and a bind group created at compile time. Running
//! programs records every dispatch into one command encoder and submits it once; nothing is
//! allocated on that path. Every wgpu call that can fail runs inside validation and
//! out-of-memory error scopes, so failures surface as [`Error`] values.

mod cache;
mod exec;
mod readback;
use crate::kernels::matmul::MatmulConfig;
pub use crate::kernels::matmul::{MatmulKernel, MatmulTiles};
use crate::kernels::Launch;
#[doc(hidden)]
pub use crate::kernels::{params_layouts, pipeline_variants, PipelineVariant};
pub use crate::kernels::{shader_sources, SUBGROUP_SHADERS};
pub use cache::{PipelineCacheDir, PipelineCacheState};
pub(crate) use exec::GpuExecutor;
pub use readback::PendingRead;

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Matmul kernel family; chosen per adapter class unless set.
    pub matmul: MatmulKernel,
    /// Tile shape of the workgroup-memory matmul kernel. `None`: per adapter class
    /// ([`MatmulTiles::LARGE`] for large outputs on discrete GPUs, [`MatmulTiles::SMALL`]
    /// otherwise). A shape the device cannot run is refused when the device is opened.
    pub tiles: Option<MatmulTiles>,
    /// Where compiled pipelines are kept across runs (Vulkan): by default the user's cache
    /// directory, or `WGRAD_PIPELINE_CACHE` (a directory, or `off`).
    pub pipeline_cache: PipelineCacheDir,
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

/// Opens the browser's WebGPU adapter (the high-performance one) and a device on it.
#[cfg(target_arch = "wasm32")]
pub(crate) async fn open_web(opts: &GpuOptions) -> Result<Arc<GpuDevice>> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::BROWSER_WEBGPU,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::NoAdapter(format!("this browser offers no WebGPU adapter ({e})")))?;
    GpuDevice::open_on_async(adapter, opts).await
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
    compile_log: Mutex<Vec<PipelineCompile>>,
    /// See [`GpuDevice::set_time_first_dispatch`].
    time_first_dispatch: std::sync::atomic::AtomicBool,
    matmul: MatmulConfig,
    /// wgpu's pipeline cache and the file it is saved to, where kept.
    cache: Option<(wgpu::PipelineCache, std::path::PathBuf)>,
    cache_state: PipelineCacheState,
}

/// One pipeline compilation on a device: which kernel variant, how long creating the pipeline
/// took (wall time of `create_compute_pipeline`; pipelines created concurrently overlap) and,
/// when [`GpuDevice::set_time_first_dispatch`] is on, how long its first, empty dispatch took.
/// Drivers differ in where they compile: most at creation, Mesa's llvmpipe (lavapipe) at the
/// first dispatch — which the engine issues, empty, right after creating a pipeline, so the
/// first-dispatch time is where llvmpipe's compile time shows.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineCompile {
    /// The device's cache key of the pipeline (shader, entry point, constants, bindings).
    pub name: String,
    /// Shader family (a key of [`shader_sources`]).
    pub shader: &'static str,
    /// Entry point.
    pub entry: &'static str,
    /// Pipeline-overridable constants of this variant.
    pub constants: Vec<(&'static str, f64)>,
    /// Seconds the pipeline took to create.
    pub seconds: f64,
    /// Seconds its first (empty) dispatch took, submitted alone and waited for, when timed:
    /// the compile time of drivers that compile on first use.
    pub first_dispatch_seconds: Option<f64>,
}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuDevice")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl GpuDevice {
    /// Opens the best adapter allowed by `opts` (discrete, then integrated, then software), as
    /// [`Device::gpu_with`](crate::Device::gpu_with) does (`WGPU_BACKEND` and
    /// `WGPU_ADAPTER_NAME` honoured, and named in the error when they select nothing).
    pub fn open(opts: &GpuOptions) -> Result<Arc<GpuDevice>> {
        match crate::Device::gpu_with(opts)? {
            crate::Device::Gpu(g) => Ok(g),
            _ => unreachable!("Device::gpu_with opens a GPU or fails"),
        }
    }

    /// Creates the device on a given adapter with `opts`' limits, matmul kernel and tiles (its
    /// backend and adapter-name fields are not used).
    pub fn open_on(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<Arc<GpuDevice>> {
        pollster::block_on(Self::open_on_async(adapter, opts))
    }

    /// [`GpuDevice::open_on`] without blocking: what a browser needs, where the device arrives
    /// through a promise.
    pub async fn open_on_async(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<Arc<GpuDevice>> {
        let (limits, matmul) = (opts.limits.clone(), opts.matmul);
        let ai = adapter.get_info();
        let required_limits = limits.unwrap_or_else(|| adapter.limits());
        // Subgroup operations are requested where the adapter has them; the subgroup matmul
        // kernel is written for 8-wide subgroups and used only where every subgroup is 8 wide.
        let subgroups = adapter.features().contains(wgpu::Features::SUBGROUP);
        let cache_file = match (
            cfg!(target_arch = "wasm32"),
            opts.pipeline_cache.resolve(),
            cache::file_name(&ai),
        ) {
            (true, _, _) => Err("in a browser".to_string()),
            (_, None, _) => Err(match opts.pipeline_cache {
                PipelineCacheDir::Default if std::env::var_os("WGRAD_PIPELINE_CACHE").is_some() => {
                    "WGRAD_PIPELINE_CACHE is off".to_string()
                }
                PipelineCacheDir::Default => "no cache directory: set WGRAD_PIPELINE_CACHE".to_string(),
                _ => "off".to_string(),
            }),
            (_, Some(_), None) => Err(format!("wgpu keeps none for {:?}", ai.backend)),
            (_, Some(_), Some(_)) if !adapter.features().contains(wgpu::Features::PIPELINE_CACHE) => {
                Err("the adapter has none".to_string())
            }
            (_, Some(dir), Some(name)) => Ok(dir.join(name)),
        };
        let subgroup8 = subgroups && ai.subgroup_min_size == 8 && ai.subgroup_max_size == 8;
        if matmul == MatmulKernel::Subgroup && !subgroup8 {
            return Err(Error::DeviceCreation(format!(
                "{} ({:?}): MatmulKernel::Subgroup needs 8-wide subgroups; the adapter has {} \
                 (sizes {}..={})",
                ai.name,
                ai.backend,
                if subgroups {
                    "subgroups"
                } else {
                    "no subgroup operations"
                },
                ai.subgroup_min_size,
                ai.subgroup_max_size
            )));
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgrad"),
                required_features: {
                    let mut f = wgpu::Features::empty();
                    f.set(wgpu::Features::SUBGROUP, subgroups);
                    f.set(wgpu::Features::PIPELINE_CACHE, cache_file.is_ok());
                    f
                },
                required_limits,
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
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
        if let Some(t) = &opts.tiles {
            t.check(&device.limits())?;
        }
        let matmul = MatmulConfig::choose(matmul, ai.device_type, &device.limits(), subgroup8, opts.tiles);
        let (cache, cache_state) = match cache_file {
            Err(why) => (None, PipelineCacheState::Unavailable(why)),
            Ok(path) => {
                let (data, ignored) = match cache::read(&path) {
                    Ok(file) => match cache::decode(&file) {
                        Ok(d) => (Some(d.to_vec()), None),
                        Err(why) => (None, Some(why)),
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
                    Err(e) => (None, Some(e.to_string())),
                };
                // SAFETY: `data` is byte for byte what `PipelineCache::get_data` returned to
                // `save_pipeline_cache` (the checksum over it matches; a file altered on purpose
                // to match is outside what a cache can defend against). wgpu checks that it comes
                // from this adapter, driver and wgpu version, and with `fallback` starts an empty
                // cache when it does not.
                let pc = unsafe {
                    device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                        label: Some("wgrad pipelines"),
                        data: data.as_deref(),
                        fallback: true,
                    })
                };
                let loaded = data.map_or(0, |d| d.len());
                (
                    Some((pc, path.clone())),
                    PipelineCacheState::Kept { path, loaded, ignored },
                )
            }
        };
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
            compile_log: Mutex::default(),
            time_first_dispatch: Default::default(),
            matmul,
            cache,
            cache_state,
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

    /// The matmul kernels this device runs (chosen from its adapter class, limits and options),
    /// in one line.
    pub fn matmul_kernels(&self) -> String {
        self.matmul.describe()
    }

    /// Whether the forward of a layer H = f(XW + b) with X m×k and W k×n runs as one kernel
    /// here (the matmul kernel chosen for the shape writes XW, Z and H from its registers); else
    /// it is the matmul and one bias-activation pass. Needs six storage buffers per kernel.
    pub fn has_layer_epilogue(&self, m: usize, k: usize, n: usize) -> bool {
        self.limits().max_storage_buffers_per_shader_stage >= 6 && self.matmul.has_epilogue(m, k, n)
    }

    /// Whether a convolution runs as an implicit GEMM by default here: where the matmul runs on
    /// the tile kernel (GPUs), not on the register kernels of CPU-like adapters.
    pub(crate) fn prefers_implicit_conv(&self) -> bool {
        self.matmul.implicit_conv_default()
    }

    /// Whether this device keeps compiled pipelines across runs, where, and what it found there
    /// when it was opened.
    pub fn pipeline_cache(&self) -> &PipelineCacheState {
        &self.cache_state
    }

    /// Writes the pipeline cache to its file now (the device also does so after each batch of
    /// new pipelines, ignoring errors there). Returns the bytes written, `None` where no cache
    /// is kept; errors when the file cannot be written.
    pub fn save_pipeline_cache(&self) -> Result<Option<usize>> {
        let Some((pc, path)) = &self.cache else {
            return Ok(None);
        };
        let Some(data) = pc.get_data() else {
            return Ok(None);
        };
        let file = cache::encode(&data);
        cache::write_atomic(path, &file).map_err(|e| Error::io(path.display().to_string(), e))?;
        Ok(Some(file.len()))
    }

    /// Pipelines compiled on this device so far (each is compiled once and cached).
    pub fn pipelines_compiled(&self) -> u64 {
        self.pipelines_compiled.load(Ordering::Relaxed)
    }

    /// Every pipeline compiled on this device so far, in order, with its compile time.
    pub fn compile_log(&self) -> Vec<PipelineCompile> {
        self.compile_log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A measurement mode: while on, the empty dispatch that follows each new pipeline's creation
    /// (where drivers that compile on first use, such as Mesa's llvmpipe, compile it) is
    /// submitted and waited for alone, and its time recorded in [`GpuDevice::compile_log`]. For
    /// finding where a first run's time goes (`examples/compile_times.rs`).
    pub fn set_time_first_dispatch(&self, on: bool) {
        self.time_first_dispatch.store(on, Ordering::Relaxed);
    }

    pub(crate) fn timing_first_dispatch(&self) -> bool {
        self.time_first_dispatch.load(Ordering::Relaxed)
    }

    /// Records the first-dispatch time of pipeline `name`; `false` if it was already recorded.
    pub(crate) fn record_first_dispatch(&self, name: &str, seconds: f64) -> bool {
        let mut log = self.compile_log.lock().unwrap_or_else(|p| p.into_inner());
        match log.iter_mut().find(|c| c.name == name) {
            Some(c) if c.first_dispatch_seconds.is_none() => {
                c.first_dispatch_seconds = Some(seconds);
                true
            }
            _ => false,
        }
    }

    /// Compiles the pipelines of `launches` that are not cached yet, several at once (one
    /// thread per available core; drivers compile independent pipelines in parallel), and
    /// returns the cache keys of those it compiled. [`GpuDevice::pipeline`] then finds them all
    /// cached.
    fn precompile(&self, launches: &[Launch]) -> Result<std::collections::HashSet<String>> {
        let mut todo: Vec<&Launch> = Vec::new();
        let mut names = std::collections::HashSet::new();
        {
            let cached = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
            let mut seen = std::collections::HashSet::new();
            for l in launches {
                let name = pipeline_name(l);
                if !cached.contains_key(&name) && seen.insert(name.clone()) {
                    todo.push(l);
                    names.insert(name);
                }
            }
        }
        // No threads in the browser: pipelines are created one after the other there.
        let threads = if cfg!(target_arch = "wasm32") {
            1
        } else {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(todo.len())
        };
        if threads <= 1 {
            for l in &todo {
                self.pipeline(l)?;
            }
        } else {
            self.create_concurrently(&todo, threads)?;
        }
        if !todo.is_empty() {
            // A cache that cannot be written (a read-only home) must not stop the work: the
            // next run compiles again. `save_pipeline_cache` reports the error.
            let _ = self.save_pipeline_cache();
        }
        Ok(names)
    }

    /// Creates the pipelines of `todo` on `threads` threads.
    fn create_concurrently(&self, todo: &[&Launch], threads: usize) -> Result<()> {
        let next = AtomicU64::new(0);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(l) = todo.get(i) else { break };
                    if let Err(e) = self.pipeline(l) {
                        first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                        break;
                    }
                });
            }
        });
        match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
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
        let (ve, oe) = (val.pop(), oom.pop());
        #[cfg(not(target_arch = "wasm32"))]
        {
            let (ve, oe) = (pollster::block_on(ve), pollster::block_on(oe));
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
        }
        // A browser cannot wait for the scopes: their errors arrive later and are reported by
        // the next call, as uncaptured errors are.
        #[cfg(target_arch = "wasm32")]
        {
            let slot = self.uncaptured.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let (ve, oe) = (ve.await, oe.await);
                if let Some(e) = oe.or(ve) {
                    let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
                    if s.is_none() {
                        *s = Some(format!("{during}: {e}"));
                    }
                }
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
        let src = crate::kernels::shader_source(shader).expect("every kernel names a shader family");
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
    fn pipeline(&self, l: &Launch) -> Result<(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        let key: Vec<(u32, bool)> = l.binds.iter().map(|&(b, _, ro)| (b, ro)).collect();
        let (bgl, pl) = self.layout(&key);
        let name = pipeline_name(l);
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&name) {
            return Ok((p.clone(), bgl));
        }
        let module = self.module(l.shader)?;
        let started = web_time::Instant::now();
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
                cache: self.cache.as_ref().map(|c| &c.0),
            })
        })?;
        self.pipelines_compiled.fetch_add(1, Ordering::Relaxed);
        self.compile_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(PipelineCompile {
                name: name.clone(),
                first_dispatch_seconds: None,
                shader: l.shader,
                entry: l.entry,
                constants: l.consts.clone(),
                seconds: started.elapsed().as_secs_f64(),
            });
        self.pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, p.clone());
        Ok((p, bgl))
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

/// The pipeline cache key of a launch: shader, entry point, constants and binding layout.
fn pipeline_name(l: &Launch) -> String {
    let key: Vec<(u32, bool)> = l.binds.iter().map(|&(b, _, ro)| (b, ro)).collect();
    format!("{}::{}{:?}{:?}", l.shader, l.entry, l.consts, key)
}
