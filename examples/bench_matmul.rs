//! Matmul forward and backward on the GPU against the CPU backend, side by side in one run.
//!
//! For each size the GPU results are first checked against the CPU backend (a wrong kernel is
//! never timed); then forward C = A·B, backward (dA = G·Bᵀ and dB = Aᵀ·G) and both are timed
//! after warm-up, synchronised with the device, as the median of `--reps` runs.
//!
//! ```text
//! cargo run --release --example bench_matmul -- --sizes 256,512,1024 --reps 10
//!     [--device gpu|cpu|both] [--kernel auto|tiled|register|subgroup|naive|both|all]
//!     [--tiles BMxBNxBKxTMxTN,...] [--json PATH]
//! ```
//! Sizes are square (`1024`) or `MxKxN`. Flops: forward 2mkn, backward 4mkn, W1 = 6mkn.

use std::time::Instant;
use wgrad::{Device, GpuOptions, Graph, MatmulKernel, MatmulTiles, NodeId};

struct Args {
    sizes: Vec<(usize, usize, usize)>,
    reps: usize,
    device: String,
    kernel: String,
    tiles: Vec<MatmulTiles>,
    json: Option<String>,
}

fn usage() -> ! {
    eprintln!("usage: bench_matmul [--sizes 256,512,1024|MxKxN,...] [--reps N] [--device gpu|cpu|both] [--kernel auto|tiled|register|subgroup|naive|both|all] [--tiles BMxBNxBKxTMxTN,...] [--json PATH]");
    std::process::exit(2);
}

/// "AxBxC,DxE,...": comma-separated lists of x-separated numbers (usage on anything else).
fn dim_list<T: std::str::FromStr>(s: &str) -> Vec<Vec<T>> {
    s.split(',')
        .map(|item| {
            item.split('x')
                .map(|v| v.trim().parse().unwrap_or_else(|_| usage()))
                .collect()
        })
        .collect()
}

fn parse_args() -> Args {
    let mut a = Args {
        sizes: vec![(256, 256, 256), (512, 512, 512), (1024, 1024, 1024)],
        reps: 10,
        device: "both".into(),
        kernel: "auto".into(),
        tiles: Vec::new(),
        json: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned();
        let need = || val.clone().unwrap_or_else(|| usage());
        match argv[i].as_str() {
            "--sizes" => {
                a.sizes = dim_list(&need())
                    .into_iter()
                    .map(|d| match d[..] {
                        [n] if n > 0 => (n, n, n),
                        [m, k, n] if m > 0 && k > 0 && n > 0 => (m, k, n),
                        _ => usage(),
                    })
                    .collect()
            }
            "--reps" => a.reps = need().parse().ok().filter(|&r| r > 0).unwrap_or_else(|| usage()),
            "--device" => a.device = need(),
            "--kernel" => a.kernel = need(),
            "--tiles" => {
                a.tiles = dim_list(&need())
                    .into_iter()
                    .map(|d| match d[..] {
                        [bm, bn, bk, tm, tn] => MatmulTiles { bm, bn, bk, tm, tn },
                        _ => usage(),
                    })
                    .collect()
            }
            "--json" => a.json = Some(need()),
            "--help" | "-h" => usage(),
            _ => usage(),
        }
        i += 2;
    }
    if !["gpu", "cpu", "both"].contains(&a.device.as_str())
        || !["auto", "tiled", "register", "subgroup", "naive", "both", "all"].contains(&a.kernel.as_str())
    {
        usage();
    }
    a
}

struct Bench {
    g: Graph,
    a: NodeId,
    b: NodeId,
    c: NodeId,
    seed: Vec<f32>,
}

impl Bench {
    fn new(dev: &Device, (m, k, n): (usize, usize, usize), data: &[Vec<f32>; 3]) -> wgrad::Result<Bench> {
        let mut g = Graph::new(dev);
        let a = g.input_with_grad("A", &[m, k])?;
        let b = g.input_with_grad("B", &[k, n])?;
        let c = g.matmul(a, b)?;
        g.write(a, &data[0])?;
        g.write(b, &data[1])?;
        Ok(Bench {
            g,
            a,
            b,
            c,
            seed: data[2].clone(),
        })
    }
    fn forward(&mut self) -> wgrad::Result<()> {
        self.g.forward()?;
        self.g.synchronize()
    }
    fn backward(&mut self) -> wgrad::Result<()> {
        self.g.backward_from(self.c, &self.seed)?;
        self.g.synchronize()
    }
    fn both(&mut self) -> wgrad::Result<()> {
        self.g.forward()?;
        self.g.backward_from(self.c, &self.seed)?;
        self.g.synchronize()
    }
    fn results(&mut self) -> wgrad::Result<[Vec<f32>; 3]> {
        self.g.forward()?;
        self.g.backward_from(self.c, &self.seed)?;
        Ok([self.g.value(self.c)?, self.g.grad(self.a)?, self.g.grad(self.b)?])
    }
}

fn median_ms(reps: usize, mut f: impl FnMut() -> wgrad::Result<()>) -> wgrad::Result<f64> {
    for _ in 0..2 {
        f()?;
    }
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f().map(|_| s.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<wgrad::Result<_>>()?;
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[t.len() / 2])
}

fn max_rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0.0, f32::max)
}

#[derive(Default)]
struct Row {
    name: String,
    size: String,
    fwd_ms: f64,
    bwd_ms: f64,
    both_ms: f64,
    flops: [f64; 3],
    err: f32,
}

fn main() {
    let args = parse_args();
    let mut backends: Vec<(String, Device)> = Vec::new();
    if args.device != "cpu" {
        let kernels: Vec<MatmulKernel> = match args.kernel.as_str() {
            "naive" => vec![MatmulKernel::Naive],
            "tiled" => vec![MatmulKernel::Tiled],
            "register" => vec![MatmulKernel::Register],
            "subgroup" => vec![MatmulKernel::Subgroup],
            "both" => vec![MatmulKernel::Auto, MatmulKernel::Naive],
            "all" => vec![
                MatmulKernel::Auto,
                MatmulKernel::Tiled,
                MatmulKernel::Register,
                MatmulKernel::Subgroup,
                MatmulKernel::Naive,
            ],
            _ => vec![MatmulKernel::Auto],
        };
        // `--tiles`: the tile kernel once per given tile shape (to tune them on a new adapter).
        let mut runs: Vec<(MatmulKernel, Option<MatmulTiles>)> = kernels.into_iter().map(|k| (k, None)).collect();
        runs.extend(args.tiles.iter().map(|&t| (MatmulKernel::Tiled, Some(t))));
        for (k, tiles) in runs {
            let name = match tiles {
                Some(t) => format!("gpu-tiled-{}x{}x{}x{}x{}", t.bm, t.bn, t.bk, t.tm, t.tn),
                None => format!("gpu-{}", format!("{k:?}").to_lowercase()),
            };
            match Device::gpu_with(&GpuOptions {
                matmul: k,
                tiles,
                ..Default::default()
            }) {
                Ok(d) => backends.push((name, d)),
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::exit(1);
                }
            }
        }
        println!("GPU: {}", backends[0].1.info());
        for (name, d) in &backends {
            if let Device::Gpu(g) = d {
                println!("  {name}: {}", g.matmul_kernels());
            }
        }
    }
    let cpu = Device::cpu();
    println!("CPU: {}", cpu.info());
    let mut rows: Vec<Row> = Vec::new();
    for &(m, k, n) in &args.sizes {
        let mut rng = wgrad::data::Rng::new(1);
        let mut rand = |len: usize| (0..len).map(|_| rng.next_f32() * 2.0 - 1.0).collect::<Vec<f32>>();
        let data = [rand(m * k), rand(k * n), rand(m * n)];
        let size = format!("{m}x{k}x{n}");
        let f = 2.0 * (m * k * n) as f64;
        let mut run = || -> wgrad::Result<()> {
            let mut cpu_b = Bench::new(&cpu, (m, k, n), &data)?;
            let reference = cpu_b.results()?;
            let mut out = Vec::new();
            for (name, dev) in &backends {
                let mut gb = Bench::new(dev, (m, k, n), &data)?;
                let got = gb.results()?;
                let err = (0..3).map(|i| max_rel_err(&got[i], &reference[i])).fold(0.0, f32::max);
                // f32 dot products of length k: relative error grows like √k·ε; 1e-3 is far above that.
                if err > 1e-3 {
                    eprintln!("{name} {size}: max relative error {err:.2e} vs the CPU backend — refusing to time a wrong kernel");
                    std::process::exit(1);
                }
                let reps = args.reps;
                out.push(Row {
                    name: name.clone(),
                    size: size.clone(),
                    fwd_ms: median_ms(reps, || gb.forward())?,
                    bwd_ms: median_ms(reps, || gb.backward())?,
                    both_ms: median_ms(reps, || gb.both())?,
                    flops: [f, 2.0 * f, 3.0 * f],
                    err,
                });
            }
            if args.device != "gpu" {
                let reps = args.reps;
                out.push(Row {
                    name: "cpu".into(),
                    size: size.clone(),
                    fwd_ms: median_ms(reps, || cpu_b.forward())?,
                    bwd_ms: median_ms(reps, || cpu_b.backward())?,
                    both_ms: median_ms(reps, || cpu_b.both())?,
                    flops: [f, 2.0 * f, 3.0 * f],
                    err: 0.0,
                });
            }
            for r in &out {
                let g = |i: usize, ms: f64| r.flops[i] / (ms * 1e-3) / 1e9;
                println!(
                    "{:<10} {:>16}  fwd {:>9.3} ms {:>8.1} GFLOP/s | bwd {:>9.3} ms {:>8.1} GFLOP/s | fwd+bwd {:>9.3} ms {:>8.1} GFLOP/s | max rel err {:.1e}",
                    r.name, r.size, r.fwd_ms, g(0, r.fwd_ms), r.bwd_ms, g(1, r.bwd_ms), r.both_ms, g(2, r.both_ms), r.err
                );
            }
            if let Some(c) = out.iter().find(|r| r.name == "cpu") {
                for r in out.iter().filter(|r| r.name != "cpu") {
                    println!(
                        "{:<10} {:>16}  speed-up vs CPU: fwd {:.2}x, bwd {:.2}x, fwd+bwd {:.2}x",
                        r.name,
                        r.size,
                        c.fwd_ms / r.fwd_ms,
                        c.bwd_ms / r.bwd_ms,
                        c.both_ms / r.both_ms
                    );
                }
            }
            rows.extend(out);
            Ok(())
        };
        if let Err(e) = run() {
            eprintln!("error at {size}: {e}");
            std::process::exit(1);
        }
    }
    if let Some(path) = &args.json {
        let gpu_name = backends.first().map(|(_, d)| d.info().to_string()).unwrap_or_default();
        let mut s = format!(
            "{{\n  \"gpu\": {:?},\n  \"cpu\": {:?},\n  \"rows\": [\n",
            gpu_name,
            cpu.info().to_string()
        );
        for (i, r) in rows.iter().enumerate() {
            let g = |j: usize, ms: f64| r.flops[j] / (ms * 1e-3) / 1e9;
            s += &format!(
                "    {{\"backend\": {:?}, \"size\": {:?}, \"fwd_ms\": {:.4}, \"fwd_gflops\": {:.2}, \"bwd_ms\": {:.4}, \"bwd_gflops\": {:.2}, \"both_ms\": {:.4}, \"both_gflops\": {:.2}, \"max_rel_err\": {:e}}}{}\n",
                r.name, r.size, r.fwd_ms, g(0, r.fwd_ms), r.bwd_ms, g(1, r.bwd_ms), r.both_ms, g(2, r.both_ms), r.err,
                if i + 1 < rows.len() { "," } else { "" }
            );
        }
        s += "  ]\n}\n";
        if let Err(e) = std::fs::write(path, s) {
            eprintln!("error: {path}: {e}");
            std::process::exit(1);
        }
        println!("wrote {path}");
    }
}
