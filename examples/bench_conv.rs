//! Convolutions as implicit GEMMs against an explicit im2col and a matmul, on one device in one
//! run: a LeNet-sized stack (batch 64 of 1×28×28 → conv 6@5×5 → ReLU → max-pool 2 → conv 16@5×5
//! → ReLU → max-pool 2) and one 3×3 convolution of 64 to 64 channels over 32×32 images (batch
//! 16, padding 1). Forward, and forward + backward (the gradients of the weights and of the
//! stack's input). Reported: median ms of 10 timed blocks, GFLOP/s of the convolutions' own
//! multiply-adds (2 flops each forward, 6 forward + backward), and implicit / im2col time. The
//! two paths' losses and input gradients must agree (exit status 1 otherwise).
//!
//! Run: `cargo run --release --example bench_conv [-- --device gpu] [--reps 20] [--kernel tiled]`

use wgrad::data::Rng;
use wgrad::{Conv2dOptions, Device, GpuOptions, Graph, MatmulKernel, NodeId, Pool2dOptions};

mod common;

const USAGE: &str = "\
usage: bench_conv [--device auto|gpu|cpu] [--reps N] [--kernel auto|tiled]
    --device NAME   where to run                                        [default: auto]
    --reps N        timed passes per measurement, N >= 1 (in 10 blocks)  [default: 10]
    --kernel NAME   GPU matmul family: auto (per adapter) or tiled (the
                    tile kernel for the explicit path too, so both paths
                    run the same kernel)                                [default: auto]
    -h, --help      print this help
exit status: 0 success, 1 an error, 2 bad command line";

fn main() {
    let cli = common::Cli::new("bench_conv", USAGE, &["--reps", "--kernel"]);
    let parsed = (|| -> Result<(usize, bool), String> {
        let reps = match cli.flag("--reps") {
            Some(v) => common::positive("--reps", &v)?,
            None => 10,
        };
        let tiled = match cli.flag("--kernel").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("auto") => false,
            Some("tiled") => true,
            Some(other) => return Err(format!("--kernel: '{other}' is not auto or tiled")),
        };
        Ok((reps, tiled))
    })();
    let (reps, tiled) = parsed.unwrap_or_else(|msg| common::usage_error("bench_conv", &msg, USAGE));
    common::run_checked(|| run(&cli, reps, tiled), "bench_conv");
}

fn run(cli: &common::Cli, reps: usize, tiled: bool) -> wgrad::Result<bool> {
    let mut dev = cli.device()?;
    if tiled && matches!(dev, Device::Gpu(_)) {
        dev = Device::gpu_with(&GpuOptions {
            matmul: MatmulKernel::Tiled,
            ..Default::default()
        })?;
    }
    println!("{}", dev.info());
    let mut agree = true;
    for problem in [Problem::LeNet, Problem::Conv64] {
        let mut row = Vec::new();
        let mut results = Vec::new();
        // Both paths timed in turn, a block of each per round (see `median_block_ms`).
        let (g0, x0, l0) = problem.build(&dev, false)?;
        let (g1, x1, l1) = problem.build(&dev, true)?;
        let (mut gs, xs, losses) = ([g0, g1], [x0, x1], [l0, l1]);
        let fwd = time(&mut gs, losses, reps, false)?;
        let both = time(&mut gs, losses, reps, true)?;
        for (implicit, g) in [false, true].into_iter().zip(&mut gs) {
            let i = implicit as usize;
            let (fwd, both) = (fwd[i], both[i]);
            results.push((g.value(losses[i])?[0], g.grad(xs[i])?));
            let gflop = 2.0 * problem.macs() / 1e9;
            println!(
                "  {:<8} {:<8} fwd {fwd:8.3} ms {:7.2} GFLOP/s | fwd+bwd {both:8.3} ms {:7.2} GFLOP/s",
                problem.name(),
                if implicit { "implicit" } else { "im2col" },
                gflop / fwd * 1e3,
                3.0 * gflop / both * 1e3,
            );
            row.push((fwd, both));
        }
        println!(
            "  {:<8} implicit / im2col time: fwd {:.2}, fwd+bwd {:.2}",
            problem.name(),
            row[1].0 / row[0].0,
            row[1].1 / row[0].1
        );
        // The same loss and input gradient either way (to rounding: the sums run in another order).
        let ((l0, d0), (l1, d1)) = (&results[0], &results[1]);
        let scale = d0.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = d0.iter().zip(d1).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        if (l0 - l1).abs() > 1e-4 * l0.abs().max(1e-3) || worst > 1e-3 * scale {
            eprintln!(
                "  {}: the paths disagree: loss {l0} vs {l1}, input gradient off by {worst} (largest {scale})",
                problem.name()
            );
            agree = false;
        }
    }
    Ok(agree)
}

#[derive(Clone, Copy)]
enum Problem {
    LeNet,
    Conv64,
}

impl Problem {
    fn name(self) -> &'static str {
        match self {
            Problem::LeNet => "lenet",
            Problem::Conv64 => "conv64",
        }
    }

    /// Multiply-adds of the convolutions, forward.
    fn macs(self) -> f64 {
        match self {
            Problem::LeNet => 64.0 * (6.0 * 24.0 * 24.0 * 25.0 + 16.0 * 8.0 * 8.0 * 6.0 * 25.0),
            Problem::Conv64 => 16.0 * 64.0 * 32.0 * 32.0 * 64.0 * 9.0,
        }
    }

    /// The graph, its input (which needs a gradient) and its scalar loss (the mean of the last
    /// layer).
    fn build(self, dev: &Device, implicit: bool) -> wgrad::Result<(Graph, NodeId, NodeId)> {
        let mut rng = Rng::new(0);
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_f32() - 0.5).collect() };
        let mut g = Graph::new(dev);
        g.set_implicit_conv(Some(implicit));
        let d = Conv2dOptions::default();
        let (x, h) = match self {
            Problem::LeNet => {
                let x = g.input_with_grad("x", &[64, 1, 28, 28])?;
                let w1 = g.parameter("w1", &[6, 1, 5, 5], &draw(150))?;
                let b1 = g.parameter("b1", &[6], &draw(6))?;
                let w2 = g.parameter("w2", &[16, 6, 5, 5], &draw(2400))?;
                let b2 = g.parameter("b2", &[16], &draw(16))?;
                let h = g.conv2d(x, w1, Some(b1), d)?;
                let h = g.relu(h)?;
                let h = g.max_pool2d(h, Pool2dOptions::new(2))?;
                let h = g.conv2d(h, w2, Some(b2), d)?;
                let h = g.relu(h)?;
                (x, g.max_pool2d(h, Pool2dOptions::new(2))?)
            }
            Problem::Conv64 => {
                let x = g.input_with_grad("x", &[16, 64, 32, 32])?;
                let w = g.parameter("w", &[64, 64, 3, 3], &draw(64 * 64 * 9))?;
                (x, g.conv2d(x, w, None, d.padding(1))?)
            }
        };
        let loss = g.mean(h)?;
        let n: usize = g.shape(x)?.iter().product();
        g.write(x, &draw(n))?;
        Ok((g, x, loss))
    }
}

/// Median ms of one forward (+ backward, after zeroing the gradients; the forward runs either
/// way) of each graph, see [`common::median_block_ms`].
fn time(gs: &mut [Graph], losses: [NodeId; 2], reps: usize, backward: bool) -> wgrad::Result<Vec<f64>> {
    common::median_block_ms(gs, reps, |i, g| {
        g.zero_grad()?;
        g.forward()?;
        if backward {
            g.backward(losses[i])?;
        }
        Ok(())
    })
}
