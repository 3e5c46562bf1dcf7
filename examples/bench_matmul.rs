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

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;
use wgrad::{Device, GpuOptions, Graph, MatmulKernel, MatmulTiles, NodeId};

mod common;

const USAGE: &str = "\
usage: bench_matmul [--sizes N|MxKxN,...] [--reps N] [--device gpu|cpu|both]
                    [--kernel auto|tiled|register|subgroup|naive|both|all]
                    [--tiles BMxBNxBKxTMxTN,...] [--json PATH]
    --sizes LIST    square sizes (1024) or MxKxN, comma separated, each >= 1 [default: 256,512,1024]
    --reps N        timed repetitions per measurement, N >= 1        [default: 10]
    --device NAME   gpu | cpu | both                                   [default: both]
    --kernel NAME   GPU matmul kernel family                           [default: auto]
    --tiles LIST    also run the tile kernel with each BMxBNxBKxTMxTN shape
    --json PATH     write the rows as JSON (its folder must exist)
    -h, --help      print this help
Sizes are checked before anything is allocated: each operand must fit the GPU's buffer
limit and all of them the host's available memory.
exit status: 0 success, 1 an error or a GPU result that disagrees with the CPU backend,
2 bad command line";

#[derive(Debug)]
struct Args {
    sizes: Vec<(usize, usize, usize)>,
    reps: usize,
    device: String,
    kernel: String,
    tiles: Vec<MatmulTiles>,
    json: Option<PathBuf>,
}

/// "AxBxC,DxE,...": comma-separated lists of x-separated positive integers.
fn dim_list<T: std::str::FromStr + PartialEq + Default>(flag: &str, s: &str) -> Result<Vec<Vec<T>>, String> {
    s.split(',')
        .map(|item| {
            item.split('x')
                .map(|v| match v.trim().parse::<T>() {
                    Ok(n) if n == T::default() => Err(format!("{flag}: '{item}': every number must be at least 1")),
                    Ok(n) => Ok(n),
                    Err(_) => Err(format!("{flag}: '{item}': '{v}' is not a positive integer")),
                })
                .collect()
        })
        .collect()
}

/// Parses the flags; `Ok(None)` for `--help`, `Err` says what is wrong.
fn parse_args(argv: impl IntoIterator<Item = OsString>) -> Result<Option<Args>, String> {
    use lexopt::Arg::{Long, Short};
    let mut a = Args {
        sizes: vec![(256, 256, 256), (512, 512, 512), (1024, 1024, 1024)],
        reps: 10,
        device: "both".into(),
        kernel: "auto".into(),
        tiles: Vec::new(),
        json: None,
    };
    let mut p = lexopt::Parser::from_args(argv);
    while let Some(arg) = p.next().map_err(common::lexopt_message)? {
        let flag = match arg {
            Short('h') | Long("help") => return Ok(None),
            Long(f @ ("sizes" | "reps" | "device" | "kernel" | "tiles" | "json")) => format!("--{f}"),
            other => return Err(common::lexopt_message(other.unexpected())),
        };
        let v = common::text(&flag, p.value().map_err(common::lexopt_message)?)?;
        match flag.as_str() {
            "--sizes" => {
                a.sizes = dim_list::<usize>(&flag, &v)?
                    .into_iter()
                    .map(|d| match d[..] {
                        [n] => Ok((n, n, n)),
                        [m, k, n] => Ok((m, k, n)),
                        _ => Err(format!("--sizes: '{}' is neither N nor MxKxN", join_x(&d))),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--reps" => a.reps = common::positive(&flag, &v)?,
            "--device" => {
                a.device = v.to_ascii_lowercase();
                if !["gpu", "cpu", "both"].contains(&a.device.as_str()) {
                    return Err(format!("--device: '{v}' is not gpu, cpu or both"));
                }
            }
            "--kernel" => {
                a.kernel = v.to_ascii_lowercase();
                if !["auto", "tiled", "register", "subgroup", "naive", "both", "all"].contains(&a.kernel.as_str()) {
                    return Err(format!(
                        "--kernel: '{v}' is not auto, tiled, register, subgroup, naive, both or all"
                    ));
                }
            }
            "--tiles" => {
                a.tiles = dim_list::<u32>(&flag, &v)?
                    .into_iter()
                    .map(|d| match d[..] {
                        [bm, bn, bk, tm, tn] => Ok(MatmulTiles { bm, bn, bk, tm, tn }),
                        _ => Err(format!("--tiles: '{}' is not BMxBNxBKxTMxTN", join_x(&d))),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--json" => a.json = Some(PathBuf::from(v)),
            _ => unreachable!("every accepted flag is handled"),
        }
    }
    Ok(Some(a))
}

fn join_x<T: ToString>(d: &[T]) -> String {
    d.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("x")
}

/// Refuses a size that cannot run, before anything is allocated: every operand (A m×k, B k×n,
/// C and its seed m×n, and the gradients of the same shapes) must fit in one buffer of
/// `buffer_limit` bytes when a GPU runs it, and the host must hold the random inputs, the CPU
/// backend's graph (values and gradients) and the results read back: about five copies of
/// A, B and C (`host_available` bytes, when known).
fn check_size(
    (m, k, n): (usize, usize, usize),
    buffer_limit: Option<(u64, &str)>,
    host_available: Option<u64>,
) -> Result<(), String> {
    let (m, k, n) = (m as u128, k as u128, n as u128);
    let size = format!("{m}x{k}x{n}");
    let operands = [("A", m, k), ("B", k, n), ("C", m, n)];
    if let Some((limit, name)) = buffer_limit {
        for (what, r, c) in operands {
            let b = 4u128.saturating_mul(r).saturating_mul(c);
            if b > u128::from(limit) {
                return Err(format!(
                    "size {size}: {what} is {r} × {c} × 4 B = {}, above the GPU's {name} of {}",
                    common::bytes(b),
                    common::bytes(u128::from(limit))
                ));
            }
        }
    }
    let host = operands
        .iter()
        .map(|&(_, r, c)| 20u128.saturating_mul(r).saturating_mul(c))
        .fold(0u128, u128::saturating_add);
    let too_big = match host_available {
        Some(avail) => host > u128::from(avail),
        None => host > isize::MAX as u128,
    };
    if too_big {
        return Err(format!(
            "size {size}: needs about {} of host memory (inputs, the CPU reference and the results), \
             more than the {} available",
            common::bytes(host),
            host_available.map_or("address space".into(), |a| common::bytes(u128::from(a)))
        ));
    }
    Ok(())
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
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(msg) => common::usage_error("bench_matmul", &msg, USAGE),
    };
    if let Some(path) = &args.json {
        if let Err(msg) = common::check_output("--json", path, common::MissingFolder::Refuse) {
            common::usage_error("bench_matmul", &msg, USAGE);
        }
    }
    // Sizes the host cannot hold are refused before a GPU is even opened.
    let host = common::host_available_bytes();
    for &size in &args.sizes {
        if let Err(msg) = check_size(size, None, host) {
            eprintln!("error: {msg}");
            std::process::exit(1);
        }
    }
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
                    if matches!(e, wgrad::Error::NoAdapter(_)) {
                        eprintln!("run with --device cpu to time the CPU backend only");
                    }
                    std::process::exit(1);
                }
            }
        }
        println!("GPU: {}", backends[0].1.info());
        // Each operand must fit in one GPU buffer: checked before anything is allocated.
        let limit = common::buffer_limit(&backends[0].1);
        for &size in &args.sizes {
            if let Err(msg) = check_size(size, limit, host) {
                eprintln!("error: {msg}");
                std::process::exit(1);
            }
        }
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
            eprintln!("error: {}: {e}", path.display());
            std::process::exit(1);
        }
        println!("wrote {}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[&str]) -> Result<Option<Args>, String> {
        parse_args(s.iter().map(OsString::from))
    }

    #[test]
    fn flags_are_parsed_and_bad_ones_are_named() {
        let a = parse(&["--sizes", "64,8x300x5", "--reps=3", "--tiles", "64x64x8x8x8"])
            .unwrap()
            .unwrap();
        assert_eq!(a.sizes, [(64, 64, 64), (8, 300, 5)]);
        assert_eq!(a.reps, 3);
        assert_eq!(a.tiles.len(), 1);
        for (bad, why) in [
            (&["--sizes", "0"][..], "--sizes: '0': every number must be at least 1"),
            (&["--sizes", "8x0x8"], "at least 1"),
            (&["--sizes", "8x8"], "--sizes: '8x8' is neither N nor MxKxN"),
            (&["--sizes", "abc"], "'abc' is not a positive integer"),
            (&["--reps", "0"], "--reps: must be at least 1, got 0"),
            (&["--device", "tpu"], "--device: 'tpu' is not gpu, cpu or both"),
            (&["--kernel", "fast"], "--kernel: 'fast' is not"),
            (&["--tiles", "8x8"], "is not BMxBNxBKxTMxTN"),
            (&["--bogus"], "unknown flag '--bogus'"),
            (&["--sizes"], "--sizes needs a value"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn sizes_too_large_are_refused_before_allocating() {
        let e = check_size((99999999, 99999999, 99999999), None, Some(16 << 30)).unwrap_err();
        assert!(
            e.contains("99999999x99999999x99999999") && e.contains("host memory"),
            "{e}"
        );
        let e = check_size((99999999, 99999999, 99999999), Some((1 << 30, "max_buffer_size")), None).unwrap_err();
        assert!(
            e.contains("A is 99999999 × 99999999") && e.contains("max_buffer_size"),
            "{e}"
        );
        // No overflow for sizes whose products exceed u64.
        assert!(check_size((usize::MAX, usize::MAX, usize::MAX), None, None).is_err());
        assert!(check_size((1024, 1024, 1024), Some((1 << 30, "max_buffer_size")), Some(1 << 30)).is_ok());
    }
}
