//! W2: one training step of an MLP 784-256-256-10 (sigmoid hidden layers, softmax
//! cross-entropy, SGD, batch 128, random data), on the GPU and on the CPU backend side by side.
//! A step is write inputs + forward + backward + SGD update: one submission. Reported: the
//! median over 10 timed blocks of steps (min and max on stderr).
//!
//! Run: `cargo run --release --example bench_step [-- --steps 200] [--device gpu|cpu|both] [--no-fusion]`
//! (`--no-fusion` runs the layer pattern as separate kernels, to measure what fusion saves).

use std::ffi::OsString;
use std::time::Instant;
use wgrad::nn::{Activation, Mlp};
use wgrad::{Device, Graph, Sgd};

mod common;

const USAGE: &str = "\
usage: bench_step [--steps N] [--device gpu|cpu|both] [--no-fusion]
    --steps N       timed training steps, N >= 1 (in 10 blocks)   [default: 200]
    --device NAME   gpu | cpu | both (the GPU beside the CPU backend) [default: both]
    --no-fusion     run the layer pattern as separate kernels
    -h, --help      print this help
exit status: 0 success, 1 an error (including --device gpu without a GPU), 2 bad command line";

/// The parsed command line.
#[derive(Debug, PartialEq)]
struct Args {
    steps: usize,
    device: String,
    fusion: bool,
}

/// Parses the flags; `Ok(None)` for `--help`, `Err` says what is wrong.
fn parse_args(argv: impl IntoIterator<Item = OsString>) -> Result<Option<Args>, String> {
    use lexopt::Arg::{Long, Short};
    let mut a = Args {
        steps: 200,
        device: "both".into(),
        fusion: true,
    };
    let mut p = lexopt::Parser::from_args(argv);
    while let Some(arg) = p.next().map_err(common::lexopt_message)? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("steps") => {
                let v = common::text("--steps", p.value().map_err(common::lexopt_message)?)?;
                a.steps = common::positive("--steps", &v)?;
            }
            Long("device") => {
                let v = common::text("--device", p.value().map_err(common::lexopt_message)?)?;
                a.device = v.to_ascii_lowercase();
                if !["gpu", "cpu", "both"].contains(&a.device.as_str()) {
                    return Err(format!("--device: '{v}' is not gpu, cpu or both"));
                }
            }
            Long("no-fusion") => a.fusion = false,
            other => return Err(common::lexopt_message(other.unexpected())),
        }
    }
    Ok(Some(a))
}

fn main() {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(msg) => common::usage_error("bench_step", &msg, USAGE),
    };
    let (steps, fusion) = (args.steps, args.fusion);
    let mut devices = Vec::new();
    if args.device != "cpu" {
        match Device::from_name("gpu") {
            Ok(d) => devices.push(d),
            Err(e) if args.device == "gpu" => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
            Err(e) => eprintln!("note: timing the CPU backend only: {e}"),
        }
    }
    if args.device != "gpu" {
        devices.push(Device::cpu());
    }
    let mut results = Vec::new();
    for dev in &devices {
        match run(dev, steps, fusion) {
            Ok(ms) => {
                let tag = if fusion { "fused" } else { "unfused" };
                println!(
                    "{:<70} {tag:<8} {ms:>8.3} ms/step {:>9.1} steps/s",
                    dev.info().to_string(),
                    1e3 / ms
                );
                results.push(ms);
            }
            Err(e) => {
                eprintln!("error on {}: {e}", dev.info());
                std::process::exit(1);
            }
        }
    }
    if results.len() == 2 {
        // > 1: the GPU is faster; the H100 target is ≥ 10.
        println!(
            "GPU speed-up over the CPU backend: {:.2}x (GPU {:.3} ms, CPU {:.3} ms per step)",
            results[1] / results[0],
            results[0],
            results[1]
        );
    }
}

fn run(dev: &Device, steps: usize, fusion: bool) -> wgrad::Result<f64> {
    let batch = 128;
    let mut g = Graph::new(dev);
    g.set_fusion(fusion);
    let x = g.input("x", &[batch, 784])?;
    let y = g.input("y", &[batch])?;
    let mlp = Mlp::new(&mut g, &[784, 256, 256, 10], Activation::Sigmoid, 0)?;
    let logits = mlp.forward(&mut g, x)?;
    let loss = g.softmax_cross_entropy(logits, y)?;
    g.set_optimizer(Sgd {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
    })?;
    let mut rng = wgrad::data::Rng::new(1);
    let xs: Vec<Vec<f32>> = (0..4)
        .map(|_| (0..batch * 784).map(|_| rng.next_f32()).collect())
        .collect();
    let ys: Vec<Vec<u32>> = (0..4)
        .map(|_| (0..batch).map(|_| rng.below(10) as u32).collect())
        .collect();
    // Warm-up compiles pipelines and allocates everything.
    for i in 0..5 {
        g.write(x, &xs[i % 4])?;
        g.write_labels(y, &ys[i % 4])?;
        g.train_step(loss)?;
    }
    g.synchronize()?;
    let c0 = g.counters();
    // Steps are timed in BLOCKS blocks, each ended by a device sync (steps within a block
    // pipeline as in training); the median block is reported, so a burst of noise from a
    // shared host moves one block, not the figure.
    const BLOCKS: usize = 10;
    let per_block = steps.div_ceil(BLOCKS);
    let mut block_ms = Vec::with_capacity(BLOCKS);
    for b in 0..BLOCKS {
        let t = Instant::now();
        for i in 0..per_block {
            let i = b * per_block + i;
            g.write(x, &xs[i % 4])?;
            g.write_labels(y, &ys[i % 4])?;
            g.train_step(loss)?;
        }
        g.synchronize()?;
        block_ms.push(t.elapsed().as_secs_f64() * 1e3 / per_block as f64);
    }
    block_ms.sort_by(f64::total_cmp);
    let ms = block_ms[BLOCKS / 2];
    eprintln!(
        "  {}: {BLOCKS} blocks of {per_block} steps, ms/step min {:.3} median {ms:.3} max {:.3}",
        dev.info().name,
        block_ms[0],
        block_ms[BLOCKS - 1]
    );
    let c1 = g.counters();
    assert_eq!(
        c1.submissions - c0.submissions,
        (BLOCKS * per_block) as u64,
        "one submission per step"
    );
    assert_eq!(c1.buffers_created, c0.buffers_created, "no allocation per step");
    let l = g.scalar(loss)?;
    if !l.is_finite() {
        return Err(wgrad::Error::InvalidArgument {
            op: "bench_step",
            reason: format!("loss became {l}"),
        });
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[&str]) -> Result<Option<Args>, String> {
        parse_args(s.iter().map(OsString::from))
    }

    #[test]
    fn flags_are_parsed_and_bad_ones_are_named() {
        let a = parse(&["--steps", "50", "--device=cpu", "--no-fusion"])
            .unwrap()
            .unwrap();
        assert_eq!(
            a,
            Args {
                steps: 50,
                device: "cpu".into(),
                fusion: false
            }
        );
        assert!(parse(&["-h"]).unwrap().is_none());
        for (bad, why) in [
            (&["--steps", "abc"][..], "--steps: 'abc' is not a positive integer"),
            (&["--steps", "0"], "--steps: must be at least 1, got 0"),
            (&["--device", "bogus"], "--device: 'bogus' is not gpu, cpu or both"),
            (&["--bogus"], "unknown flag '--bogus'"),
            (&["--steps"], "--steps needs a value"),
            (&["--no-fusion=1"], "--no-fusion takes no value"),
            (&["stray"], "unexpected argument 'stray'"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
