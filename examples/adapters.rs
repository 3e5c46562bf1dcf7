//! Lists every adapter wgpu sees and the one wgrad would pick.
//!
//! Run: `cargo run --example adapters` (honours `WGPU_BACKEND`, e.g. `WGPU_BACKEND=gl`).

fn main() {
    let adapters = wgrad::enumerate_adapters(None);
    if adapters.is_empty() {
        println!("no GPU adapter found; wgrad would fall back to the CPU backend");
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
    let best = adapters[0].get_info();
    println!(
        "wgrad picks [0] {} ({:?}): adapters are ranked discrete > integrated > virtual > software, native APIs before GL",
        best.name, best.backend
    );
    match wgrad::Device::gpu() {
        Ok(wgrad::Device::Gpu(g)) => println!("matmul kernels on it: {}", g.matmul_kernels()),
        Ok(_) => {}
        Err(e) => println!("opening it failed: {e}"),
    }
}
