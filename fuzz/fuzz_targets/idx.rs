//! Untrusted IDX bytes (raw or gzip): must return Ok or Err, never panic or over-allocate.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wgrad::data::parse_idx(data, "fuzz");
});
