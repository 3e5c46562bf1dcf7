//! `Device::auto` picks the fastest device at hand: a hardware GPU, else the CPU backend (also
//! when the only adapter is a software one), unless `WGPU_BACKEND` / `WGPU_ADAPTER_NAME` ask for
//! a GPU explicitly; `Device::gpu` always opens the best adapter, software included.

use wgrad::{enumerate_adapters, Device};

#[test]
fn auto_prefers_a_hardware_gpu_then_the_cpu_backend_then_software_adapters() {
    let explicit = ["WGPU_BACKEND", "WGPU_ADAPTER_NAME"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    let (dev, why) = Device::auto_with_reason();
    eprintln!("auto chose {} — {why}", dev.info().name);
    assert!(!why.is_empty());
    if explicit {
        // Asked for explicitly (as CI's GL run does): the selected adapter, software or not.
        assert!(
            why.contains("WGPU_"),
            "the reason should name the variable that chose the device: {why}"
        );
        return;
    }
    match enumerate_adapters(None).first().map(|a| a.get_info()) {
        None => {
            assert!(!dev.is_gpu(), "no adapter, yet auto chose {}", dev.info().name);
            assert!(why.contains("no GPU adapter"), "{why}");
        }
        Some(best) if best.device_type == wgrad::wgpu::DeviceType::Cpu => {
            assert!(
                !dev.is_gpu(),
                "the only adapter is the software {}, yet auto chose it over the CPU backend",
                best.name
            );
            assert!(
                why.contains("software adapter") && why.contains(&best.name),
                "the reason should name the software adapter: {why}"
            );
            // Explicitly asked for, the software adapter still opens.
            let g = Device::gpu().expect("the software adapter opens when asked for");
            assert!(g.is_gpu());
            assert_eq!(g.info().name, best.name);
        }
        Some(best) => {
            assert!(
                dev.is_gpu(),
                "a hardware GPU ({}) is there, yet auto chose the CPU",
                best.name
            );
            assert_eq!(dev.info().name, best.name);
            assert!(why.contains("hardware GPU"), "{why}");
        }
    }
}
