//! Choosing where a graph runs: a GPU through wgpu, or the CPU backend.

pub use crate::backend::gpu::DeviceInfo;
use crate::backend::gpu::{GpuDevice, GpuOptions};
use crate::error::{Error, Result};
use std::sync::Arc;

/// Where a [`Graph`](crate::Graph) runs. Cloning is cheap: GPU devices are shared.
#[derive(Clone, Debug)]
pub enum Device {
    /// A wgpu device (Vulkan, Metal, DX12 or GL).
    Gpu(Arc<GpuDevice>),
    /// The CPU backend in f32: the reference implementation and the fallback.
    Cpu,
    /// The CPU backend in f64, for gradient checks by finite differences.
    CpuF64,
}

impl Device {
    /// Opens the best GPU adapter: discrete, then integrated, then software; honours
    /// `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`. Fails with [`Error::NoAdapter`] when there is none.
    pub fn gpu() -> Result<Device> {
        Self::gpu_with(&GpuOptions::default())
    }

    /// Opens a GPU with explicit options (backends, adapter name, limits).
    pub fn gpu_with(opts: &GpuOptions) -> Result<Device> {
        GpuDevice::open(opts).map(Device::Gpu)
    }

    /// The CPU backend (f32).
    pub fn cpu() -> Device {
        Device::Cpu
    }

    /// The CPU backend in f64 precision.
    pub fn cpu_f64() -> Device {
        Device::CpuF64
    }

    /// A GPU when one can be opened, else the CPU backend. Check [`Device::info`] to see which.
    pub fn auto() -> Device {
        Self::gpu().unwrap_or(Device::Cpu)
    }

    /// Parses `auto`, `gpu` or `cpu` (as given on a command line) and opens that device.
    pub fn from_name(name: &str) -> Result<Device> {
        match name.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::auto()),
            "gpu" => Self::gpu(),
            "cpu" => Ok(Self::cpu()),
            other => Err(Error::arg(
                "device",
                format!("unknown device '{other}': expected auto, gpu or cpu"),
            )),
        }
    }

    /// True for a GPU device.
    pub fn is_gpu(&self) -> bool {
        matches!(self, Device::Gpu(_))
    }

    /// What runs: adapter name, backend, device type.
    pub fn info(&self) -> DeviceInfo {
        match self {
            Device::Gpu(g) => g.info().clone(),
            Device::Cpu | Device::CpuF64 => DeviceInfo {
                kind: "cpu",
                name: format!(
                    "wgrad CPU backend ({}, {} threads)",
                    if matches!(self, Device::Cpu) { "f32" } else { "f64" },
                    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
                ),
                backend: "cpu".into(),
                device_type: "Cpu".into(),
                driver: String::new(),
            },
        }
    }
}
