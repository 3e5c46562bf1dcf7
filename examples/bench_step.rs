//! W2: one training step of an MLP 784-256-256-10 (sigmoid hidden layers, softmax
//! cross-entropy, SGD, batch 128, random data), on the GPU and on the CPU backend side by side.
//! A step is write inputs + forward + backward + SGD update: one submission. Reported: the
//! median over 10 timed blocks of steps (min and max on stderr).
//!
//! Run: `cargo run --release --example bench_step [-- --steps 200] [--device gpu|cpu|both] [--no-fusion]`
//! (`--no-fusion` runs the layer pattern as separate kernels, to measure what fusion saves).

use std::time::Instant;
use wgrad::nn::{Activation, Mlp};
use wgrad::{Device, Graph, Sgd};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let steps: usize = flag("--steps")
        .and_then(|s| s.parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(200);
    let which = flag("--device").unwrap_or_else(|| "both".into());
    let fusion = !args.iter().any(|a| a == "--no-fusion");
    let mut devices = Vec::new();
    if which != "cpu" {
        match Device::gpu() {
            Ok(d) => devices.push(d),
            Err(e) => eprintln!("no GPU: {e}"),
        }
    }
    if which != "gpu" {
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
