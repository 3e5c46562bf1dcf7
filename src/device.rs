//! Choosing where a graph runs: a GPU through wgpu, or the CPU backend.

pub use crate::backend::gpu::DeviceInfo;
use crate::backend::gpu::{enumerate_adapters, GpuDevice, GpuOptions};
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

/// What a command-line user is told to do instead (see [`Device::from_name`]).
const CLI_HINT: &str = "run with --device cpu to use the CPU backend instead";

impl Device {
    /// Opens the best GPU adapter: discrete, then integrated, then software; honours
    /// `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`. Fails with [`Error::NoAdapter`] when there is none,
    /// or when one of those variables is set to a value that selects no adapter (the message
    /// names the variable and its value).
    pub fn gpu() -> Result<Device> {
        Self::gpu_with(&GpuOptions::default())
    }

    /// Opens a GPU with explicit options (backends, adapter name, limits). Options left unset
    /// fall back to `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` as in [`Device::gpu`].
    pub fn gpu_with(opts: &GpuOptions) -> Result<Device> {
        open_gpu(opts, None)
    }

    /// Opens a GPU without blocking: the way to open one in a browser (WebGPU), where the
    /// adapter and the device arrive through promises; natively the same as
    /// [`Device::gpu_with`]. In a browser without WebGPU it fails with [`Error::NoAdapter`].
    pub async fn gpu_async(opts: &GpuOptions) -> Result<Device> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::backend::gpu::open_web(opts).await.map(Device::Gpu)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Self::gpu_with(opts)
        }
    }

    /// The CPU backend (f32).
    pub fn cpu() -> Device {
        Device::Cpu
    }

    /// The CPU backend in f64 precision.
    pub fn cpu_f64() -> Device {
        Device::CpuF64
    }

    /// The fastest device at hand: a hardware GPU (discrete, integrated or virtual) when one
    /// opens, else the CPU backend — also when the only adapter is a software one (llvmpipe /
    /// lavapipe, SwiftShader, WARP), which runs the same kernels on the same CPU cores several
    /// times slower than the CPU backend and first compiles every kernel. `WGPU_BACKEND` or
    /// `WGPU_ADAPTER_NAME` in the environment ask for a GPU explicitly: then the adapter they
    /// select is opened even if it is a software one. [`Device::gpu`] always opens the best
    /// adapter, software included. [`Device::auto_with_reason`] also says why.
    pub fn auto() -> Device {
        Self::auto_with_reason().0
    }

    /// Like [`Device::auto`], and one line saying why that device was chosen, for a program to
    /// print: e.g. "no hardware GPU; the CPU backend is faster than the software adapter
    /// llvmpipe (…)", "NVIDIA H200 is a hardware GPU (DiscreteGpu)", "WGPU_BACKEND=gl selects
    /// llvmpipe (…)", or why no GPU opened.
    pub fn auto_with_reason() -> (Device, String) {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let explicit: Vec<String> = ["WGPU_BACKEND", "WGPU_ADAPTER_NAME"]
            .into_iter()
            .filter_map(|n| var(n).map(|v| format!("{n}={v}")))
            .collect();
        if !explicit.is_empty() {
            let asked = explicit.join(", ");
            return match open_gpu(&GpuOptions::default(), None) {
                Ok(d) => {
                    let why = format!("{asked} selects {}", d.info().name);
                    (d, why)
                }
                Err(e) => (
                    Device::Cpu,
                    format!("{asked} opened no GPU ({e}); the CPU backend runs instead"),
                ),
            };
        }
        let Some(best) = enumerate_adapters(None).into_iter().next() else {
            return (
                Device::Cpu,
                "no GPU adapter found (Vulkan, Metal, DX12 and GL tried); the CPU backend runs instead".into(),
            );
        };
        let info = best.get_info();
        if info.device_type == wgpu::DeviceType::Cpu {
            return (
                Device::Cpu,
                format!(
                    "no hardware GPU; the CPU backend is faster than the software adapter {} ({:?}), which \
                     --device gpu, Device::gpu() or WGPU_BACKEND still select",
                    info.name, info.backend
                ),
            );
        }
        match GpuDevice::open_on(best, &GpuOptions::default()) {
            Ok(g) => (
                Device::Gpu(g),
                format!(
                    "{} is a hardware GPU ({:?}, {:?})",
                    info.name, info.device_type, info.backend
                ),
            ),
            Err(e) => (
                Device::Cpu,
                format!("the GPU {} did not open ({e}); the CPU backend runs instead", info.name),
            ),
        }
    }

    /// Parses `auto`, `gpu` or `cpu` (as given on a command line) and opens that device. When
    /// `gpu` finds no adapter the error says so and suggests `--device cpu`.
    pub fn from_name(name: &str) -> Result<Device> {
        match name.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::auto()),
            "gpu" => open_gpu(&GpuOptions::default(), Some(CLI_HINT)),
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
                    crate::kernels::par::threads()
                ),
                backend: "cpu".into(),
                device_type: "Cpu".into(),
                driver: String::new(),
            },
        }
    }
}

/// Opens the adapter `opts` selects. A selection that finds no adapter is an
/// [`Error::NoAdapter`] whose message ends with `hint` when one is given.
fn open_gpu(opts: &GpuOptions, hint: Option<&str>) -> Result<Device> {
    let env = |name: &str| std::env::var(name).ok();
    let adapter = select_adapter(opts, env("WGPU_BACKEND"), env("WGPU_ADAPTER_NAME")).map_err(|reason| {
        Error::NoAdapter(match hint {
            Some(h) => format!("{reason}; {h}"),
            None => reason,
        })
    })?;
    GpuDevice::open_on(adapter, opts).map(Device::Gpu)
}

/// Picks the adapter: among `opts.backends` (else the backends named by `env_backend`, the
/// value of `WGPU_BACKEND`, else all), the first whose name contains `opts.adapter_name`
/// (else `env_name`, the value of `WGPU_ADAPTER_NAME`), else the best. `Err` says why none
/// was picked, naming the variable when one of them is the cause.
fn select_adapter(
    opts: &GpuOptions,
    env_backend: Option<String>,
    env_name: Option<String>,
) -> std::result::Result<wgpu::Adapter, String> {
    let (backends, from_env) = match (opts.backends, &env_backend) {
        (Some(b), _) => (Some(b), false),
        (None, Some(v)) => (Some(parse_backend_env(v)?), true),
        (None, None) => (None, false),
    };
    let adapters = enumerate_adapters(backends);
    if adapters.is_empty() {
        return Err(match backends {
            Some(b) if from_env => format!(
                "wgpu found no adapter for WGPU_BACKEND={:?} ({}); unset it to try every backend",
                env_backend.unwrap_or_default(),
                backend_names(b)
            ),
            Some(b) => format!("wgpu found no adapter for {}", backend_names(b)),
            None => "wgpu found no adapter (Vulkan, Metal and DX12 tried, then GL)".into(),
        });
    }
    let (wanted, source) = match (&opts.adapter_name, env_name) {
        (Some(n), _) => (Some(n.clone()), None),
        (None, n) => (n, Some("WGPU_ADAPTER_NAME")),
    };
    let names: Vec<String> = adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?})", i.name, i.backend)
        })
        .collect();
    let plain: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
    let i =
        pick_adapter(&plain, wanted.as_deref(), source).map_err(|e| format!("{e} (found: {})", names.join(", ")))?;
    Ok(adapters
        .into_iter()
        .nth(i)
        .expect("pick_adapter returns an index into the list"))
}

/// Parses a `WGPU_BACKEND` value as wgpu does (comma-separated names, unknown ones ignored);
/// `Err` when it names no backend at all, which would otherwise select nothing silently.
fn parse_backend_env(value: &str) -> std::result::Result<wgpu::Backends, String> {
    let b = wgpu::Backends::from_comma_list(value);
    if b.is_empty() {
        return Err(format!(
            "WGPU_BACKEND={value:?} names no wgpu backend (expected vulkan, metal, dx12 or gl, comma separated); \
             unset it to try every backend"
        ));
    }
    Ok(b)
}

/// "Vulkan, GL" for a set of backends.
fn backend_names(b: wgpu::Backends) -> String {
    let names: Vec<&str> = [
        (wgpu::Backends::VULKAN, "Vulkan"),
        (wgpu::Backends::METAL, "Metal"),
        (wgpu::Backends::DX12, "DX12"),
        (wgpu::Backends::GL, "GL"),
        (wgpu::Backends::BROWSER_WEBGPU, "WebGPU"),
        (wgpu::Backends::NOOP, "noop"),
    ]
    .into_iter()
    .filter(|(f, _)| b.contains(*f))
    .map(|(_, n)| n)
    .collect();
    if names.is_empty() {
        "no backend".into()
    } else {
        names.join(", ")
    }
}

/// The index of the first adapter (best first) whose name contains `wanted`
/// (case-insensitive), or 0 when nothing is wanted. `source` names where `wanted` came from
/// (an environment variable) for the message; `None` for an API option.
fn pick_adapter(names: &[String], wanted: Option<&str>, source: Option<&str>) -> std::result::Result<usize, String> {
    let Some(wanted) = wanted else {
        return Ok(0);
    };
    let lower = wanted.to_lowercase();
    names
        .iter()
        .position(|n| n.to_lowercase().contains(&lower))
        .ok_or_else(|| match source {
            Some(var) => format!("{var}={wanted:?} matches no adapter name; unset it to use the best adapter"),
            None => format!("no adapter name contains '{wanted}'"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_wgpu_backend_is_named_not_shown_as_empty_flags() {
        let e = parse_backend_env("bogus").unwrap_err();
        assert!(
            e.contains("WGPU_BACKEND=\"bogus\"") && e.contains("names no wgpu backend"),
            "{e}"
        );
        assert!(!e.contains("Backends("), "{e}");
        assert!(parse_backend_env("").is_err());
        assert_eq!(parse_backend_env("Vulkan").unwrap(), wgpu::Backends::VULKAN);
        // As in wgpu: unknown entries beside a known one are ignored.
        assert_eq!(parse_backend_env("gl, bogus").unwrap(), wgpu::Backends::GL);
        assert_eq!(backend_names(wgpu::Backends::VULKAN | wgpu::Backends::GL), "Vulkan, GL");
    }

    #[test]
    fn an_adapter_name_that_matches_nothing_names_the_variable() {
        let names = ["llvmpipe (LLVM 15)".to_string(), "NVIDIA H100".to_string()];
        assert_eq!(pick_adapter(&names, None, None), Ok(0));
        assert_eq!(pick_adapter(&names, Some("nvidia"), Some("WGPU_ADAPTER_NAME")), Ok(1));
        let e = pick_adapter(&names, Some("nomatch"), Some("WGPU_ADAPTER_NAME")).unwrap_err();
        assert!(e.contains("WGPU_ADAPTER_NAME=\"nomatch\" matches no adapter"), "{e}");
        let e = pick_adapter(&names, Some("nomatch"), None).unwrap_err();
        assert!(e.contains("no adapter name contains 'nomatch'"), "{e}");
    }

    #[test]
    fn bad_environment_variables_make_no_adapter_errors_that_name_them() {
        let e = select_adapter(&GpuOptions::default(), Some("bogus".into()), None).unwrap_err();
        assert!(e.contains("WGPU_BACKEND=\"bogus\""), "{e}");
        // An explicit option wins over the variable.
        let opts = GpuOptions {
            backends: Some(wgpu::Backends::VULKAN),
            adapter_name: Some("no-such-adapter-xyz".into()),
            ..Default::default()
        };
        let e = select_adapter(&opts, Some("bogus".into()), Some("nomatch".into())).unwrap_err();
        assert!(!e.contains("WGPU_"), "{e}");
        let e = select_adapter(&GpuOptions::default(), None, Some("no-such-adapter-xyz".into())).unwrap_err();
        assert!(
            e.contains("WGPU_ADAPTER_NAME=\"no-such-adapter-xyz\"") || e.contains("found no adapter"),
            "{e}"
        );
    }
}
