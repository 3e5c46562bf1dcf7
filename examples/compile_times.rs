//! Where the first run's time goes on a GPU: builds a model (the main job's digits classifier by
//! default) on a freshly opened device, compiles its programs (then runs one training step and
//! one evaluation batch, which compile nothing more), and prints per pipeline the time to create
//! it and the time of its first, empty dispatch, where drivers that compile on first use (Mesa's
//! llvmpipe) compile it — slowest first, then the totals.
//!
//! ```text
//! cargo run --release --example compile_times [-- --model digits|w2] [--kernel auto|register|tiled|subgroup|naive]
//! ```
//! `digits`: 64→128→10 ReLU, Adam, batch 64 (what `train_mlp` runs); `w2`: 784→256→256→10
//! sigmoid, SGD, batch 128 (`bench_step`). Opens the GPU explicitly (`Device::gpu_with`), so it
//! measures a software adapter too; run with `MESA_SHADER_CACHE_DISABLE=true` to measure Mesa's
//! cold compile.

use std::process::ExitCode;
use std::time::Instant;
use wgrad::nn::Activation;
use wgrad::train::{Classifier, ClassifierConfig};
use wgrad::{Adam, Device, GpuOptions, MatmulKernel, Optimizer, Sgd};

mod common;

const USAGE: &str = "usage: compile_times [--model digits|w2] [--kernel auto|register|tiled|subgroup|naive]";

fn parse() -> Result<(String, MatmulKernel), String> {
    use lexopt::prelude::*;
    let (mut model, mut kernel) = ("digits".to_string(), MatmulKernel::Auto);
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next().map_err(common::lexopt_message)? {
        match arg {
            Long("model") => {
                model = common::text("--model", p.value().map_err(common::lexopt_message)?)?;
                if model != "digits" && model != "w2" {
                    return Err(format!("--model: '{model}' is not digits or w2"));
                }
            }
            Long("kernel") => {
                let v = common::text("--kernel", p.value().map_err(common::lexopt_message)?)?;
                kernel = match v.as_str() {
                    "auto" => MatmulKernel::Auto,
                    "register" => MatmulKernel::Register,
                    "tiled" => MatmulKernel::Tiled,
                    "subgroup" => MatmulKernel::Subgroup,
                    "naive" => MatmulKernel::Naive,
                    _ => {
                        return Err(format!(
                            "--kernel: '{v}' is not auto, register, tiled, subgroup or naive"
                        ))
                    }
                };
            }
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(common::lexopt_message(other.unexpected())),
        }
    }
    Ok((model, kernel))
}

fn main() -> ExitCode {
    let (model, kernel) = parse().unwrap_or_else(|e| common::usage_error("compile_times", &e, USAGE));
    let t_open = Instant::now();
    let device = match Device::gpu_with(&GpuOptions {
        matmul: kernel,
        ..Default::default()
    }) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let open_s = t_open.elapsed().as_secs_f64();
    let Device::Gpu(gpu) = &device else {
        unreachable!("gpu_with opens a GPU")
    };
    println!("device: {} (opened in {open_s:.2} s)", device.info());
    println!("matmul kernels: {}", gpu.matmul_kernels());
    println!("{}", gpu.pipeline_cache());
    let (features, classes, cfg) = match model.as_str() {
        "w2" => (
            784,
            10,
            ClassifierConfig {
                hidden: vec![256, 256],
                activation: Activation::Sigmoid,
                optimizer: Optimizer::Sgd(Sgd {
                    lr: 0.05,
                    momentum: 0.9,
                    weight_decay: 0.0,
                }),
                batch: 128,
                seed: 0,
            },
        ),
        _ => (
            64,
            10,
            ClassifierConfig {
                optimizer: Optimizer::Adam(Adam::new(1e-2)),
                ..ClassifierConfig::default()
            },
        ),
    };
    // Build the model and compile its programs, each new pipeline's empty first dispatch timed
    // on its own; then one training step and one evaluation batch.
    gpu.set_time_first_dispatch(true);
    let t = Instant::now();
    let run = || -> wgrad::Result<()> {
        let mut clf = Classifier::new(&device, features, classes, &cfg)?;
        clf.prepare()?;
        let mut rng = wgrad::data::Rng::new(1);
        let x: Vec<f32> = (0..cfg.batch * features).map(|_| rng.next_f32()).collect();
        let y: Vec<u32> = (0..cfg.batch).map(|_| rng.below(classes) as u32).collect();
        clf.train_batch(&x, &y)?;
        clf.loss()?;
        clf.logits(&x)?;
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let wall = t.elapsed().as_secs_f64();
    let mut log = gpu.compile_log();
    let create: f64 = log.iter().map(|c| c.seconds).sum();
    let first: f64 = log.iter().filter_map(|c| c.first_dispatch_seconds).sum();
    let key = |c: &wgrad::PipelineCompile| c.seconds + c.first_dispatch_seconds.unwrap_or(0.0);
    log.sort_by(|a, b| key(b).total_cmp(&key(a)));
    println!("{:>8} {:>8}  pipeline", "create", "1st disp");
    for c in &log {
        let consts: Vec<String> = c.constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let fd = c.first_dispatch_seconds.map_or("-".to_string(), |s| format!("{s:.3}"));
        println!(
            "{:>8.3} {fd:>8}  {}::{} {}",
            c.seconds,
            c.shader,
            c.entry,
            consts.join(" ")
        );
    }
    println!(
        "{} pipelines for model {model}: {create:.2} s creating pipelines, {first:.2} s in first dispatches, \
         {wall:.2} s wall (model built, compiled, one step and one evaluation batch run)",
        log.len()
    );
    ExitCode::SUCCESS
}
