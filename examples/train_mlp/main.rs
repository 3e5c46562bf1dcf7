//! Trains a multilayer perceptron classifier end to end on the device: the embedded UCI
//! digits data set by default (8×8 images, 64 → 128 → 10), or MNIST from IDX files with
//! `--data DIR` (784 → hidden → 10).
//!
//! Every training step is one queue submission (zero gradients, forward, backward, optimizer
//! update); the loss is read back only every `--loss-every` steps.
//!
//! Run: `cargo run --release --example train_mlp -- [FLAGS]` (see `--help`).

mod args;
#[path = "../common/mod.rs"]
mod common;
mod plot;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use args::{Args, Placement, USAGE};
use indicatif::{ProgressBar, ProgressStyle};
use wgrad::data::{self, Dataset};
use wgrad::train::{Classifier, ClassifierConfig};
use wgrad::{Adam, Optimizer, Sgd};

/// The usage line printed under a command-line error (`--help` prints [`USAGE`]).
const SHORT_USAGE: &str = "\
usage: train_mlp [--data DIR] [--hidden W[,W...]] [--activation sigmoid|relu|tanh]
                 [--optimizer sgd|adam] [--lr X] [--momentum X] [--batch N] [--epochs N]
                 [--seed N] [--loss-every N] [--device auto|gpu|cpu] [--load PATH]
                 [--save PATH] [--plot PATH] [--graph PATH] [--json PATH]
run with --help for what each flag does and the exit codes";

fn main() -> ExitCode {
    let args = match args::parse_args(std::env::args_os().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => common::usage_error("train_mlp", &msg, SHORT_USAGE),
    };
    // Output paths are checked before the device opens, so a typo costs no training run.
    if let Err(msg) = args::check_outputs(&args) {
        common::usage_error("train_mlp", &msg, SHORT_USAGE);
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One epoch's results.
struct EpochRecord {
    train_loss: f32,
    test_accuracy: f32,
    seconds: f64,
    samples: usize,
    samples_per_sec: f64,
}

fn io_err(path: &Path, e: std::io::Error) -> wgrad::Error {
    wgrad::Error::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// Why a run stopped with an error.
enum Failure {
    /// The library reported an error.
    Wgrad(wgrad::Error),
    /// The run was refused before any work (a model too large, too little data).
    Refused(String),
}

impl From<wgrad::Error> for Failure {
    fn from(e: wgrad::Error) -> Self {
        Failure::Wgrad(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Wgrad(e) => e.fmt(f),
            Failure::Refused(why) => f.write_str(why),
        }
    }
}

/// Runs the whole job; `Ok(false)` when training diverged (see [`args::divergence`]) or
/// device memory grew between the first epoch and the end.
fn run(args: &Args) -> Result<bool, Failure> {
    let device = common::open_device(&args.device)?;
    let info = device.info();
    println!("adapter: {}", info.name);
    println!("backend: {} ({})", info.backend, info.device_type);

    let (train, test, source) = match &args.data {
        Some(dir) => {
            let (tr, te) = data::load_mnist_dir(dir)?;
            (tr, te, format!("MNIST from {}", dir.display()))
        }
        None => {
            let (tr, te) = data::digits()?.split(0.2, args.seed)?;
            (tr, te, "digits (embedded)".to_string())
        }
    };
    let optimizer: Optimizer = match args.optimizer.as_str() {
        "sgd" => Sgd {
            lr: args.lr.unwrap_or(0.1),
            momentum: args.momentum.unwrap_or(0.9),
            weight_decay: 0.0,
        }
        .into(),
        _ => Adam::new(args.lr.unwrap_or(1e-2)).into(),
    };
    let cfg = ClassifierConfig {
        hidden: args.hidden.clone(),
        activation: args.activation,
        optimizer,
        batch: args.batch,
        seed: args.seed,
    };
    // Refuse a model that cannot fit before a byte of it is allocated or initialised.
    let mut layer_sizes = vec![train.n_features];
    layer_sizes.extend(&args.hidden);
    layer_sizes.push(train.n_classes);
    let placement = match common::buffer_limit(&device) {
        Some((limit, limit_name)) => Placement::Gpu { limit, limit_name },
        None => Placement::Cpu,
    };
    let states = if matches!(optimizer, Optimizer::Adam(_)) { 2 } else { 1 };
    args::check_model_size(
        &layer_sizes,
        args.batch,
        states,
        placement,
        common::host_available_bytes(),
    )
    .map_err(Failure::Refused)?;
    if args.epochs > 0 && train.len() < args.batch {
        return Err(Failure::Refused(format!(
            "{} training samples are fewer than one batch of {}",
            train.len(),
            args.batch
        )));
    }
    let mut clf = Classifier::new(&device, train.n_features, train.n_classes, &cfg)?;
    let sizes = clf
        .mlp
        .sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("→");
    let act = format!("{:?}", args.activation).to_lowercase();
    println!(
        "data: {source}: {} train / {} test samples, {} features, {} classes",
        train.len(),
        test.len(),
        train.n_features,
        train.n_classes
    );
    println!(
        "model: MLP {sizes} ({act}), {} lr {}, batch {}, {} epochs, seed {}",
        args.optimizer,
        optimizer.lr(),
        args.batch,
        args.epochs,
        args.seed
    );
    if let Some(path) = &args.load {
        clf.load(path)?;
        println!("loaded weights from {}", path.display());
    }
    // On a GPU the kernels are compiled on first use; do it now and say so, so the first
    // epoch's time is training, not compilation.
    common::compiling(&device, || clf.prepare())?;
    // The loss before training, the reference of the divergence rule: the mean cross-entropy
    // of the untrained (or loaded) model on up to 1,024 training rows.
    let start_loss = if args.epochs > 0 {
        let l = sample_loss(&mut clf, &train)?;
        println!("loss before training: {l:.4} (on up to {SAMPLE_ROWS} training rows)");
        l
    } else {
        f64::NAN
    };

    let style = ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg}")
        .expect("the progress template is valid")
        .progress_chars("=> ");
    let mut epochs: Vec<EpochRecord> = Vec::new();
    let mut step_losses: Vec<(f64, f64)> = Vec::new();
    let mut finite = true;
    // The highest epoch-mean training loss, for the divergence rule.
    let mut peak = f32::NEG_INFINITY;
    let width = args.epochs.to_string().len();
    // Device memory after the first epoch, compared with the end: it must not grow.
    let mut after_first: Option<wgrad::Counters> = None;
    for epoch in 0..args.epochs {
        let bar = ProgressBar::new((train.len() / args.batch) as u64);
        bar.set_style(style.clone());
        bar.set_prefix(format!("epoch {:>width$}/{}", epoch + 1, args.epochs));
        let started = Instant::now();
        let mut last_loss = f32::NAN;
        let batch = args.batch;
        let stats = clf.train_epoch(&train, epoch as u64, args.loss_every, |step, batches, loss| {
            if let Some(l) = loss {
                last_loss = l;
                step_losses.push((epoch as f64 + (step + 1) as f64 / batches as f64, f64::from(l)));
            }
            let rate = ((step + 1) * batch) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("loss {last_loss:.4} · {rate:.0} samples/s"));
            bar.inc(1);
        })?;
        bar.finish_and_clear();
        if !stats.mean_loss.is_finite() {
            eprintln!(
                "epoch {}: the training loss is {} — training diverged; try a smaller --lr",
                epoch + 1,
                stats.mean_loss
            );
            epochs.push(EpochRecord {
                train_loss: stats.mean_loss,
                test_accuracy: f32::NAN,
                seconds: stats.seconds,
                samples: stats.samples,
                samples_per_sec: stats.samples_per_sec(),
            });
            finite = false;
            break;
        }
        peak = peak.max(stats.mean_loss);
        let acc = clf.accuracy(&test)?;
        println!(
            "epoch {:>width$}/{}  train loss {:.4}  test acc {:6.2}%  {:6.3} s  {:8.0} samples/s",
            epoch + 1,
            args.epochs,
            stats.mean_loss,
            acc * 100.0,
            stats.seconds,
            stats.samples_per_sec()
        );
        after_first.get_or_insert(clf.graph.counters());
        epochs.push(EpochRecord {
            train_loss: stats.mean_loss,
            test_accuracy: acc,
            seconds: stats.seconds,
            samples: stats.samples,
            samples_per_sec: stats.samples_per_sec(),
        });
    }

    // The divergence rule (see --help and args::divergence): a non-finite loss stopped the
    // loop above; the loss after training, compared with the loss before, decides the rest.
    let mut diverged = !finite;
    if finite && !epochs.is_empty() {
        let end_loss = sample_loss(&mut clf, &train)?;
        println!(
            "loss after training: {} (before: {})",
            args::show_loss(end_loss),
            args::show_loss(start_loss)
        );
        if let Some(why) = args::divergence(start_loss, peak, end_loss, train.n_classes) {
            eprintln!("error: training diverged: {why}; try a smaller --lr");
            diverged = true;
        }
    }

    let test_accuracy = match epochs.last() {
        Some(e) if finite => e.test_accuracy,
        _ => clf.accuracy(&test)?,
    };
    let seconds: f64 = epochs.iter().fold(0.0, |s, e| s + e.seconds);
    let samples: f64 = epochs.iter().map(|e| e.samples as f64).sum();
    let samples_per_sec = if seconds > 0.0 { samples / seconds } else { 0.0 };
    let correct = (test_accuracy * test.len() as f32).round() as usize;
    if epochs.is_empty() {
        println!(
            "test accuracy: {:.2}% ({correct}/{}), no training",
            test_accuracy * 100.0,
            test.len()
        );
    } else {
        println!(
            "final test accuracy: {:.2}% ({correct}/{}) after {} epoch(s); training took {seconds:.2} s ({samples_per_sec:.0} samples/s)",
            test_accuracy * 100.0,
            test.len(),
            epochs.len()
        );
    }

    let mem = clf.graph.counters();
    println!(
        "device memory held by the training graph: {} buffers, {} bytes",
        mem.live_buffers, mem.live_bytes
    );
    if let Some(first) = after_first {
        if (first.live_buffers, first.live_bytes, first.buffers_created)
            != (mem.live_buffers, mem.live_bytes, mem.buffers_created)
        {
            eprintln!("error: device memory grew during training: {first:?} after epoch 1, {mem:?} at the end");
            return Ok(false);
        }
        println!("memory flat: the same buffers and bytes after epoch 1 and after the last step");
    }

    if let Some(path) = &args.save {
        clf.save(path)?;
        println!("weights saved to {}", path.display());
    }
    if let Some(path) = &args.plot {
        write_plot(path, &epochs, &step_losses, &info.name, &sizes, &act, args)?;
        println!("plot written to {}", path.display());
    }
    if let Some(path) = &args.graph {
        let svg = clf.graph.save_dot(path, Some(clf.loss))?;
        println!("graph written to {}", path.display());
        match svg {
            Some(svg) => println!("graph rendered to {}", svg.display()),
            None => println!("(install Graphviz's `dot` to render {} as SVG)", path.display()),
        }
    }
    if let Some(path) = &args.json {
        let json = summary_json(
            &info,
            args,
            &epochs,
            test_accuracy,
            seconds,
            samples_per_sec,
            &test,
            finite,
            diverged,
        );
        std::fs::write(path, json).map_err(|e| io_err(path, e))?;
        println!("summary written to {}", path.display());
    }
    if diverged {
        eprintln!("the run failed: training diverged (exit status 1)");
    }
    Ok(!diverged)
}

/// Rows of the training set on which the loss before and after training is measured.
const SAMPLE_ROWS: usize = 1024;

/// Mean cross-entropy of the model on the first [`SAMPLE_ROWS`] training rows (forward only).
fn sample_loss(clf: &mut Classifier, train: &Dataset) -> wgrad::Result<f64> {
    let rows = train.len().min(SAMPLE_ROWS);
    let logits = clf.logits(&train.features[..rows * train.n_features])?;
    Ok(args::cross_entropy(&logits, &train.labels[..rows]))
}

/// Renders the DOT file to SVG with Graphviz when `dot` is on the PATH.
fn write_plot(
    path: &Path,
    epochs: &[EpochRecord],
    step_losses: &[(f64, f64)],
    adapter: &str,
    sizes: &str,
    act: &str,
    args: &Args,
) -> wgrad::Result<()> {
    let title = format!(
        "MLP {sizes} ({act}), {}, batch {} on {adapter}",
        args.optimizer, args.batch
    );
    let epoch_loss: Vec<(f64, f64)> = epochs
        .iter()
        .enumerate()
        .map(|(i, e)| ((i + 1) as f64, f64::from(e.train_loss)))
        .collect();
    let accuracy: Vec<(f64, f64)> = epochs
        .iter()
        .enumerate()
        .map(|(i, e)| ((i + 1) as f64, f64::from(e.test_accuracy) * 100.0))
        .collect();
    let every = format!("loss read every {} steps", args.loss_every);
    let loss_lines = [
        (every.as_str(), step_losses, false),
        ("epoch mean", &epoch_loss[..], true),
    ];
    plot::two_panels(
        path,
        &title,
        [
            plot::Panel::new("Training loss", "cross-entropy", &loss_lines),
            plot::Panel::new("Test accuracy", "accuracy (%)", &[("test accuracy", &accuracy, true)]),
        ],
    )
    .map_err(|e| io_err(path, std::io::Error::other(e)))
}

#[allow(clippy::too_many_arguments)]
fn summary_json(
    info: &wgrad::DeviceInfo,
    args: &Args,
    epochs: &[EpochRecord],
    test_accuracy: f32,
    seconds: f64,
    samples_per_sec: f64,
    test: &Dataset,
    finite: bool,
    diverged: bool,
) -> String {
    let per_epoch = |f: fn(&EpochRecord) -> f64| epochs.iter().map(f).collect::<Vec<_>>();
    // serde_json writes NaN and infinities (which JSON cannot represent) as null.
    let summary = serde_json::json!({
        "adapter": info.name,
        "backend": info.backend,
        "device_type": info.device_type,
        "data": args.data.as_ref().map_or("digits".into(), |d| d.display().to_string()),
        "hidden": args.hidden,
        "activation": args.activation.name(),
        "optimizer": args.optimizer,
        "batch": args.batch,
        "seed": args.seed,
        "epochs": epochs.len(),
        "finite_loss": finite,
        "diverged": diverged,
        "final_train_loss": epochs.last().map_or(f64::NAN, |e| f64::from(e.train_loss)),
        "test_accuracy": f64::from(test_accuracy),
        "test_samples": test.len(),
        "seconds": seconds,
        "samples_per_sec": samples_per_sec,
        "epoch_train_loss": per_epoch(|e| f64::from(e.train_loss)),
        "epoch_test_accuracy": per_epoch(|e| f64::from(e.test_accuracy)),
        "epoch_seconds": per_epoch(|e| e.seconds),
        "epoch_samples_per_sec": per_epoch(|e| e.samples_per_sec),
    });
    format!("{summary:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[&str]) -> Result<Option<Args>, String> {
        args::parse_args(s.iter().map(std::ffi::OsString::from))
    }

    #[test]
    fn flags() {
        let a = parse(&[
            "--hidden",
            "256,128",
            "--lr=0.5",
            "--optimizer",
            "sgd",
            "--momentum",
            "0.5",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.hidden, [256, 128]);
        assert_eq!(a.lr, Some(0.5));
        assert!(parse(&["--help"]).unwrap().is_none());
        for bad in [
            &["--batch", "0"][..],
            &["--hidden", "12,,3"],
            &["--lr", "-1"],
            &["--device", "tpu"],
            &["--epochs"],
            &["--bogus", "1"],
            &["stray"],
            &["--momentum", "0.9"],
            &["--activation", "swish"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
