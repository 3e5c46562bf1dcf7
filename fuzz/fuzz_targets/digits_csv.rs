//! Untrusted digits CSV bytes (raw or gzip): must return Ok or Err, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wgrad::data::parse_digits_csv(data, "fuzz");
});
