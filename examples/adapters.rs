//! Lists every adapter wgpu sees, the one `Device::gpu()` opens and what `Device::auto()` chooses.
//!
//! Run: `cargo run --example adapters` (honours `WGPU_BACKEND`, e.g. `WGPU_BACKEND=gl`).

mod common;

const USAGE: &str = "\
usage: adapters
    lists every adapter wgpu sees (honouring WGPU_BACKEND) and the one wgrad would pick
    (honouring WGPU_ADAPTER_NAME); takes no flags
    -h, --help      print this help
exit status: 0 (also when there is no adapter), 2 bad command line";

fn main() {
    match common::Cli::parse(std::env::args_os().skip(1), &[]) {
        Ok(Some(_)) => {}
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(msg) => common::usage_error("adapters", &msg, USAGE),
    }
    // Device::gpu()'s error names a WGPU_BACKEND or WGPU_ADAPTER_NAME that selects nothing.
    let opened = wgrad::Device::gpu();
    let adapters = wgrad::enumerate_adapters(None);
    if adapters.is_empty() {
        match opened {
            Err(e) => println!("{e}; wgrad would fall back to the CPU backend"),
            Ok(_) => println!("no GPU adapter found; wgrad would fall back to the CPU backend"),
        }
        println!("(on Linux, `apt-get install mesa-vulkan-drivers` provides a software Vulkan adapter)");
        return;
    }
    for (i, a) in adapters.iter().enumerate() {
        let info = a.get_info();
        let l = a.limits();
        println!(
            "[{i}] {} — {:?}, {:?}, driver {} {}",
            info.name, info.backend, info.device_type, info.driver, info.driver_info
        );
        println!(
            "    max_buffer_size {} B, max_storage_buffer_binding_size {} B, max_compute_invocations_per_workgroup {}, \
             max_compute_workgroup_size {}x{}x{}, max_compute_workgroup_storage_size {} B, max_compute_workgroups_per_dimension {}",
            l.max_buffer_size,
            l.max_storage_buffer_binding_size,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_size_x,
            l.max_compute_workgroup_size_y,
            l.max_compute_workgroup_size_z,
            l.max_compute_workgroup_storage_size,
            l.max_compute_workgroups_per_dimension
        );
        println!("    features: {:?}", a.features());
    }
    println!("adapters are ranked discrete > integrated > virtual > software, native APIs before GL");
    match opened {
        Ok(wgrad::Device::Gpu(g)) => {
            println!("Device::gpu() / --device gpu opens {}", g.info());
            println!("matmul kernels on it: {}", g.matmul_kernels());
        }
        Ok(_) => {}
        Err(e) => println!("Device::gpu() / --device gpu opens none: {e}"),
    }
    let (auto, why) = wgrad::Device::auto_with_reason();
    println!("Device::auto() / --device auto chooses {} — {why}", auto.info().name);
}
