//! Trains a multilayer perceptron classifier end to end on the device: the embedded UCI
//! digits data set by default (8×8 images, 64 → 128 → 10), or MNIST from IDX files with
//! `--data DIR` (784 → hidden → 10).
//!
//! Every training step is one queue submission (zero gradients, forward, backward, optimizer
//! update); the loss is read back only every `--loss-every` steps.
//!
//! Run: `cargo run --release --example train_mlp -- [FLAGS]` (see `--help`).

mod plot;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use wgrad::data::{self, Dataset};
use wgrad::nn::Activation;
use wgrad::train::{Classifier, ClassifierConfig};
use wgrad::{Adam, Device, Optimizer, Sgd};

const USAGE: &str = "\
train_mlp: train an MLP classifier with wgrad

USAGE:
    cargo run --release --example train_mlp -- [FLAGS]

DATA:
    --data DIR            MNIST IDX files in DIR (train-images-idx3-ubyte, ... optionally .gz);
                          default: the embedded digits set (1,797 8x8 images), split 80/20
                          with --seed
MODEL:
    --hidden W[,W...]     hidden layer widths                     [default: 128]
    --activation NAME     sigmoid | relu | tanh                    [default: relu]
TRAINING:
    --optimizer NAME      sgd | adam                               [default: adam]
    --lr X                learning rate              [default: adam 0.01, sgd 0.1]
    --momentum X          SGD momentum in [0, 1)                   [default: 0.9]
    --batch N             minibatch size (a trailing partial batch is dropped) [default: 64]
    --epochs N            passes over the training set; 0 only evaluates [default: 20]
    --seed N              seed of the split, the weights and the shuffles [default: 0]
    --loss-every N        read the loss back every N steps (0: last step only) [default: 10]
    --device NAME         auto | gpu | cpu                         [default: auto]
FILES (written only when asked):
    --load PATH           load safetensors weights before training
    --save PATH           save the trained weights (safetensors)
    --plot PATH           SVG plot of the training loss and test accuracy per epoch
    --graph PATH          Graphviz DOT of the model graph (also PATH.svg if `dot` is installed)
    --json PATH           JSON summary of the run
    -h, --help            print this help

EXIT CODES: 0 success, 1 error or a non-finite training loss, 2 bad command line";

/// The parsed command line.
#[derive(Debug)]
struct Args {
    data: Option<PathBuf>,
    hidden: Vec<usize>,
    activation: Activation,
    optimizer: String,
    lr: Option<f32>,
    momentum: Option<f32>,
    batch: usize,
    epochs: usize,
    seed: u64,
    device: String,
    loss_every: usize,
    load: Option<PathBuf>,
    save: Option<PathBuf>,
    plot: Option<PathBuf>,
    graph: Option<PathBuf>,
    json: Option<PathBuf>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            data: None,
            hidden: vec![128],
            activation: Activation::Relu,
            optimizer: "adam".into(),
            lr: None,
            momentum: None,
            batch: 64,
            epochs: 20,
            seed: 0,
            device: "auto".into(),
            loss_every: 10,
            load: None,
            save: None,
            plot: None,
            graph: None,
            json: None,
        }
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    let what = match std::any::type_name::<T>() {
        "f32" | "f64" => "a number",
        _ => "a non-negative integer",
    };
    v.trim().parse().map_err(|_| format!("{flag}: '{v}' is not {what}"))
}

/// Parses the flags (`--flag value` or `--flag=value`). `Ok(None)` means `--help`.
fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args::default();
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument '{arg}'"));
        }
        let known = [
            "--data",
            "--hidden",
            "--activation",
            "--optimizer",
            "--lr",
            "--momentum",
            "--batch",
            "--epochs",
            "--seed",
            "--device",
            "--loss-every",
            "--load",
            "--save",
            "--plot",
            "--graph",
            "--json",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown flag '{flag}'"));
        }
        let v = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{flag} needs a value"))?,
        };
        match flag.as_str() {
            "--data" => a.data = Some(PathBuf::from(v)),
            "--hidden" => {
                a.hidden = v
                    .split(',')
                    .map(|w| match number::<usize>(&flag, w)? {
                        0 => Err(format!("--hidden: layer widths must be at least 1, got '{v}'")),
                        n => Ok(n),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--activation" => {
                a.activation =
                    Activation::parse(&v).map_err(|_| format!("--activation: '{v}' is not sigmoid, relu or tanh"))?
            }
            "--optimizer" => {
                let o = v.to_ascii_lowercase();
                if o != "sgd" && o != "adam" {
                    return Err(format!("--optimizer: '{v}' is not sgd or adam"));
                }
                a.optimizer = o;
            }
            "--lr" => {
                let lr: f32 = number(&flag, &v)?;
                if !(lr.is_finite() && lr > 0.0) {
                    return Err(format!("--lr: {v} must be a positive number"));
                }
                a.lr = Some(lr);
            }
            "--momentum" => {
                let m: f32 = number(&flag, &v)?;
                if !(0.0..1.0).contains(&m) {
                    return Err(format!("--momentum: {v} must be in [0, 1)"));
                }
                a.momentum = Some(m);
            }
            "--batch" => {
                a.batch = number(&flag, &v)?;
                if a.batch == 0 {
                    return Err("--batch must be at least 1".into());
                }
            }
            "--epochs" => a.epochs = number(&flag, &v)?,
            "--seed" => a.seed = number(&flag, &v)?,
            "--loss-every" => a.loss_every = number(&flag, &v)?,
            "--device" => {
                let d = v.to_ascii_lowercase();
                if !["auto", "gpu", "cpu"].contains(&d.as_str()) {
                    return Err(format!("--device: '{v}' is not auto, gpu or cpu"));
                }
                a.device = d;
            }
            "--load" => a.load = Some(PathBuf::from(v)),
            "--save" => a.save = Some(PathBuf::from(v)),
            "--plot" => a.plot = Some(PathBuf::from(v)),
            "--graph" => a.graph = Some(PathBuf::from(v)),
            "--json" => a.json = Some(PathBuf::from(v)),
            _ => unreachable!("every known flag is handled"),
        }
    }
    if a.momentum.is_some() && a.optimizer != "sgd" {
        return Err("--momentum applies to --optimizer sgd only".into());
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("train_mlp: {msg}");
            eprintln!("run with --help for the list of flags");
            return ExitCode::from(2);
        }
    };
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

/// Creates the parent directory of an output file, so `--plot out/run1/loss.svg` just works.
fn create_parent(path: &Path) -> wgrad::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e)),
        _ => Ok(()),
    }
}

fn io_err(path: &Path, e: std::io::Error) -> wgrad::Error {
    wgrad::Error::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// Runs the whole job; `Ok(false)` when training produced a non-finite loss or device memory
/// grew between the first epoch and the end.
fn run(args: &Args) -> wgrad::Result<bool> {
    let device = Device::from_name(&args.device)?;
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
    if args.epochs > 0 && train.len() < args.batch {
        return Err(wgrad::Error::InvalidArgument {
            op: "train_mlp",
            reason: format!(
                "{} training samples are fewer than one batch of {}",
                train.len(),
                args.batch
            ),
        });
    }

    let style = ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg}")
        .expect("the progress template is valid")
        .progress_chars("=> ");
    let mut epochs: Vec<EpochRecord> = Vec::new();
    let mut step_losses: Vec<(f64, f64)> = Vec::new();
    let mut finite = true;
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

    for path in [&args.save, &args.plot, &args.graph, &args.json].into_iter().flatten() {
        create_parent(path)?;
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
        );
        std::fs::write(path, json).map_err(|e| io_err(path, e))?;
        println!("summary written to {}", path.display());
    }
    Ok(finite)
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
    use plot::{Panel, Series};
    let loss = Panel {
        title: "Training loss".into(),
        x_label: "epoch".into(),
        y_label: "cross-entropy".into(),
        series: vec![
            Series::faint(
                format!("loss read every {} steps", args.loss_every),
                "#1f77b4",
                step_losses.to_vec(),
            ),
            Series::new(
                "epoch mean",
                "#d62728",
                epochs
                    .iter()
                    .enumerate()
                    .map(|(i, e)| ((i + 1) as f64, f64::from(e.train_loss)))
                    .collect(),
            ),
        ],
        y_range: None,
        legend: plot::Corner::TopRight,
    };
    let acc_pts: Vec<(f64, f64)> = epochs
        .iter()
        .enumerate()
        .map(|(i, e)| ((i + 1) as f64, f64::from(e.test_accuracy) * 100.0))
        .collect();
    // Fit the bottom of the accuracy axis to the data (all of 0–100 when there is none).
    let lo = acc_pts
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);
    let lo = if lo.is_finite() { lo } else { 2.0 };
    let accuracy = Panel {
        title: "Test accuracy".into(),
        x_label: "epoch".into(),
        y_label: "accuracy (%)".into(),
        series: vec![Series::new("test accuracy", "#2ca02c", acc_pts)],
        y_range: Some(((lo - 2.0).max(0.0), 100.0)),
        legend: plot::Corner::BottomRight,
    };
    let title = format!(
        "MLP {sizes} ({act}), {}, batch {} on {adapter}",
        args.optimizer, args.batch
    );
    plot::write_svg(path, &title, &[loss, accuracy]).map_err(|e| io_err(path, e))
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A JSON number, or `null` for NaN and infinities (which JSON cannot represent).
fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn json_arr(vals: impl Iterator<Item = f64>) -> String {
    format!("[{}]", vals.map(json_num).collect::<Vec<_>>().join(", "))
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
) -> String {
    let final_loss = epochs.last().map_or(f64::NAN, |e| f64::from(e.train_loss));
    let fields = [
        ("adapter", json_str(&info.name)),
        ("backend", json_str(&info.backend)),
        ("device_type", json_str(&info.device_type)),
        (
            "data",
            json_str(&args.data.as_ref().map_or("digits".into(), |d| d.display().to_string())),
        ),
        ("hidden", format!("{:?}", args.hidden)),
        ("activation", json_str(&format!("{:?}", args.activation).to_lowercase())),
        ("optimizer", json_str(&args.optimizer)),
        ("batch", args.batch.to_string()),
        ("seed", args.seed.to_string()),
        ("epochs", epochs.len().to_string()),
        ("finite_loss", finite.to_string()),
        ("final_train_loss", json_num(final_loss)),
        ("test_accuracy", json_num(f64::from(test_accuracy))),
        ("test_samples", test.len().to_string()),
        ("seconds", json_num(seconds)),
        ("samples_per_sec", json_num(samples_per_sec)),
        (
            "epoch_train_loss",
            json_arr(epochs.iter().map(|e| f64::from(e.train_loss))),
        ),
        (
            "epoch_test_accuracy",
            json_arr(epochs.iter().map(|e| f64::from(e.test_accuracy))),
        ),
        ("epoch_seconds", json_arr(epochs.iter().map(|e| e.seconds))),
        (
            "epoch_samples_per_sec",
            json_arr(epochs.iter().map(|e| e.samples_per_sec)),
        ),
    ];
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("  \"{k}\": {v}")).collect();
    format!("{{\n{}\n}}\n", body.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[&str]) -> Result<Option<Args>, String> {
        parse_args(s.iter().map(|a| a.to_string()))
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
            &["--activation", "gelu"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\\n"), "\"a\\\"b\\\\\\n\"");
        assert_eq!(json_num(f64::NAN), "null");
    }
}
