//! Batched matmul against one matmul of the same flop count: [16, 256, 256] × [16, 256, 256]
//! and [4096, 256] × [256, 256], forward and both VJPs (a backward from the sum), through the
//! graph API, on the GPU and the CPU backend. Reported: median ms and GFLOP/s of 10 timed
//! blocks, and the batched product's share of the single one's GFLOP/s.
//!
//! Run: `cargo run --release --example bench_batched [-- --reps 20] [--device gpu|cpu|both]`

use wgrad::{Device, Graph};

mod common;

const USAGE: &str = "\
usage: bench_batched [--reps N] [--device gpu|cpu|both] [--forward-only]
    --reps N        timed forward+backward passes, N >= 1 (in 10 blocks) [default: 20]
    --device NAME   gpu | cpu | both                                     [default: both]
    --forward-only  time the products alone (GFLOP/s then counts 2·m·k·n)
    -h, --help      print this help
exit status: 0 success, 1 an error, 2 bad command line";

fn main() {
    let (mut reps, mut device, mut backward) = (20, "both".to_string(), true);
    let mut p = lexopt::Parser::from_env();
    let parsed: Result<(), String> = (|| {
        use lexopt::Arg::{Long, Short};
        while let Some(arg) = p.next().map_err(common::lexopt_message)? {
            match arg {
                Short('h') | Long("help") => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                Long("reps") => {
                    reps = common::positive(
                        "--reps",
                        &common::text("--reps", p.value().map_err(common::lexopt_message)?)?,
                    )?
                }
                Long("device") => {
                    device = common::text("--device", p.value().map_err(common::lexopt_message)?)?.to_ascii_lowercase();
                    if !["gpu", "cpu", "both"].contains(&device.as_str()) {
                        return Err(format!("--device: '{device}' is not gpu, cpu or both"));
                    }
                }
                Long("forward-only") => backward = false,
                other => return Err(common::lexopt_message(other.unexpected())),
            }
        }
        Ok(())
    })();
    if let Err(msg) = parsed {
        common::usage_error("bench_batched", &msg, USAGE);
    }
    let names: &[&str] = match device.as_str() {
        "both" => &["gpu", "cpu"],
        d => {
            if d == "gpu" {
                &["gpu"]
            } else {
                &["cpu"]
            }
        }
    };
    for name in names {
        let result = common::open_device(name).and_then(|dev| {
            // Both products timed in turn, a block of each per round (see `median_block_ms`).
            let (g1, l1) = product(&dev, &[4096, 256], &[256, 256])?;
            let (g2, l2) = product(&dev, &[16, 256, 256], &[16, 256, 256])?;
            let losses = [l1, l2];
            let ms = common::median_block_ms(&mut [g1, g2], reps, |i, g| {
                g.forward()?;
                if backward {
                    g.backward(losses[i])?;
                }
                Ok(())
            })?;
            let (single, batched) = (ms[0], ms[1]);
            // fwd 2·m·k·n, backward twice that: 6 · 4096·256·256 flops either way.
            let gflop = if backward { 6.0 } else { 2.0 } * 4096.0 * 256.0 * 256.0 / 1e9;
            println!("{}", dev.info());
            println!(
                "  [4096,256]x[256,256]          {single:8.3} ms  {:7.1} GFLOP/s",
                gflop / single * 1e3
            );
            println!(
                "  [16,256,256]x[16,256,256]     {batched:8.3} ms  {:7.1} GFLOP/s",
                gflop / batched * 1e3
            );
            println!("  batched / single GFLOP/s: {:.0} %", 100.0 * single / batched);
            Ok(())
        });
        if let Err(e) = result {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    }
}

/// A graph computing sum(A·B) for A and B of these shapes (both with gradients), and the sum.
fn product(dev: &Device, a: &[usize], b: &[usize]) -> wgrad::Result<(Graph, wgrad::NodeId)> {
    let mut g = Graph::new(dev);
    let an = g.input_with_grad("a", a)?;
    let bn = g.input_with_grad("b", b)?;
    let c = g.matmul(an, bn)?;
    let loss = g.sum(c)?;
    let mut rng = wgrad::data::Rng::new(3);
    g.write(an, &common_random(&mut rng, a.iter().product()))?;
    g.write(bn, &common_random(&mut rng, b.iter().product()))?;
    Ok((g, loss))
}

fn common_random(rng: &mut wgrad::data::Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
}
