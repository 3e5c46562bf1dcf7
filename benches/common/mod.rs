//! What the criterion benches share.

use wgrad::Device;

/// The GPU (when an adapter opens; said on stderr either way), then the CPU backend.
pub fn devices() -> Vec<(&'static str, Device)> {
    let mut v = Vec::new();
    match Device::gpu() {
        Ok(d) => {
            eprintln!("GPU: {}", d.info());
            v.push(("gpu", d));
        }
        Err(e) => eprintln!("no GPU adapter ({e}); benchmarking the CPU backend only"),
    }
    v.push(("cpu", Device::cpu()));
    v
}
