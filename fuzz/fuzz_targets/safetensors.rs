//! Untrusted safetensors bytes: must return Ok or Err, never panic or over-allocate.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wgrad::io::deserialize_safetensors(data, "fuzz");
});
