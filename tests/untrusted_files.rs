//! Random and mutated bytes fed to the file parsers (safetensors, IDX, digits CSV): every
//! input gives Ok or a clear Err, never a panic. The same targets run under libFuzzer with
//! `cargo fuzz run safetensors|idx|digits_csv` (see fuzz/).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use wgrad::io::{deserialize_safetensors, serialize_safetensors, NamedTensor};

fn runner(cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[3; 32]),
    )
}

#[test]
fn random_bytes_never_panic_the_parsers() {
    let errors = std::cell::Cell::new(0u32);
    runner(2000)
        .run(&prop::collection::vec(any::<u8>(), 0..512), |bytes| {
            errors.set(errors.get() + deserialize_safetensors(&bytes, "random").is_err() as u32);
            errors.set(errors.get() + wgrad::data::parse_idx(&bytes, "random").is_err() as u32);
            errors.set(errors.get() + wgrad::data::parse_digits_csv(&bytes, "random").is_err() as u32);
            Ok(())
        })
        .unwrap();
    eprintln!("2000 random inputs × 3 parsers: {} errors, 0 panics", errors.get());
}

#[test]
fn mutated_valid_files_never_panic_the_parsers() {
    let good = serialize_safetensors(&[
        NamedTensor::new("layers.0.weight", vec![3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        NamedTensor::new("layers.0.bias", vec![3], vec![0.5, -0.5, 0.0]),
    ])
    .unwrap();
    let mut idx = vec![0u8, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
    idx.extend(0..8u8);
    let n_err = std::cell::Cell::new(0u32);
    runner(2000)
        .run(
            &(
                prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                any::<prop::sample::Index>(),
            ),
            |(edits, cut)| {
                for base in [&good, &idx] {
                    let mut b = base.clone();
                    for (i, v) in &edits {
                        let at = i.index(b.len());
                        b[at] = *v;
                    }
                    b.truncate(cut.index(b.len() + 1));
                    n_err.set(n_err.get() + deserialize_safetensors(&b, "mutated").is_err() as u32);
                    n_err.set(n_err.get() + wgrad::data::parse_idx(&b, "mutated").is_err() as u32);
                }
                Ok(())
            },
        )
        .unwrap();
    eprintln!(
        "2000 mutated files × 2 parsers × 2 bases: {} errors, 0 panics",
        n_err.get()
    );
}
