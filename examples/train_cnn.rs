//! Trains a small convolutional network on the embedded digits (8×8 images) or on MNIST from
//! IDX files (`--data DIR`, 28×28): for each entry of `--channels`, a 3×3 convolution (padding
//! 1), ReLU and 2×2 max pooling; then a linear layer to the 10 classes, softmax cross-entropy and
//! Adam with a cosine learning-rate schedule. Each training step is one submission.
//!
//! The test set is evaluated by an inference branch of the same graph, built for the test
//! chunk's size and reading the same parameter buffers as the training branch: no weight is
//! copied and no row is padded.
//!
//! It checks itself: the run fails (exit status 1) if a loss is not finite or the test accuracy
//! is not above chance; it says whether the default run's target, ≥ 98.5 % test accuracy on the
//! digits, was met.
//!
//! Run: `cargo run --release --example train_cnn [-- --epochs 20] [--device auto|gpu|cpu]`

use std::path::PathBuf;
use std::time::Instant;
use wgrad::data::{self, Rng};
use wgrad::nn::{Conv2d, Init, Linear};
use wgrad::{Adam, Conv2dOptions, Graph, NodeId, Pool2dOptions};

mod common;
#[path = "train_mlp/plot.rs"]
mod plot;

const USAGE: &str = "\
usage: train_cnn [FLAGS]
    --data DIR        MNIST IDX files in DIR instead of the embedded digits
    --epochs N        passes over the training set                  [default: 20]
    --batch N         images per step                               [default: 32]
    --channels C,...  output channels of each conv-ReLU-pool stage  [default: 32,64]
    --lr X            Adam's initial learning rate (cosine decay)  [default: 0.003]
    --seed N          initialisation, split and shuffles            [default: 0]
    --device NAME     auto | gpu | cpu                              [default: auto]
    --json FILE       write a summary (losses, accuracies, timing) as JSON
    --plot FILE       write the loss and accuracy curves as SVG
    --graph FILE      write the training graph as DOT (and SVG with Graphviz)
    -h, --help        print this help
exit status: 0 trained, 1 a non-finite loss, no learning or an error, 2 bad command line";

/// Test accuracy the default run on the digits must reach.
const TARGET: f64 = 0.985;
/// Most test rows one inference branch evaluates at once.
const EVAL_CHUNK: usize = 1000;

struct Args {
    data: Option<PathBuf>,
    epochs: usize,
    batch: usize,
    channels: Vec<usize>,
    lr: f32,
    seed: u64,
    device: String,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
    graph: Option<PathBuf>,
}

fn parse_args() -> Result<Option<Args>, String> {
    use lexopt::Arg::{Long, Short};
    let mut a = Args {
        data: None,
        epochs: 20,
        batch: 32,
        channels: vec![32, 64],
        lr: 3e-3,
        seed: 0,
        device: "auto".into(),
        json: None,
        plot: None,
        graph: None,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next().map_err(common::lexopt_message)? {
        let flag = match &arg {
            Short('h') | Long("help") => return Ok(None),
            Long(f) => format!("--{f}"),
            other => return Err(common::lexopt_message(other.clone().unexpected())),
        };
        let v = common::text(&flag, p.value().map_err(common::lexopt_message)?)?;
        match flag.as_str() {
            "--data" => a.data = Some(PathBuf::from(v)),
            "--epochs" => a.epochs = common::positive(&flag, &v)?,
            "--batch" => a.batch = common::positive(&flag, &v)?,
            "--channels" => {
                a.channels = v
                    .split(',')
                    .map(|c| common::positive(&flag, c.trim()))
                    .collect::<Result<_, _>>()?
            }
            "--lr" => a.lr = common::float(&flag, &v)?,
            "--seed" => a.seed = common::uint(&flag, &v)?,
            "--device" => a.device = v,
            "--json" => a.json = Some(PathBuf::from(v)),
            "--plot" => a.plot = Some(PathBuf::from(v)),
            "--graph" => a.graph = Some(PathBuf::from(v)),
            _ => return Err(format!("unknown flag '{flag}'")),
        }
    }
    Ok(Some(a))
}

fn main() {
    common::train_main(
        "train_cnn",
        USAGE,
        parse_args,
        |a: &Args| {
            vec![
                ("--json", a.json.clone()),
                ("--plot", a.plot.clone()),
                ("--graph", a.graph.clone()),
            ]
        },
        run,
    );
}

/// The network's layers; its parameters live in the graph, shared by every branch.
struct Cnn {
    side: usize,
    convs: Vec<Conv2d>,
    head: Linear,
}

impl Cnn {
    fn new(g: &mut Graph, side: usize, channels: &[usize], classes: usize, rng: &mut Rng) -> wgrad::Result<Cnn> {
        let (mut c, mut s) = (1, side);
        let mut convs = Vec::new();
        for (i, &out) in channels.iter().enumerate() {
            if s < 2 {
                return Err(common::fail(
                    "train_cnn",
                    format!(
                        "{side}×{side} images are too small for {} pooling stages",
                        channels.len()
                    ),
                ));
            }
            let opts = Conv2dOptions::default().padding(1);
            convs.push(Conv2d::new(g, &format!("convs.{i}"), c, out, [3, 3], opts, rng)?);
            (c, s) = (out, s / 2);
        }
        let head = Linear::new(g, "head", c * s * s, classes, Init::Xavier, rng)?;
        Ok(Cnn { side, convs, head })
    }

    /// Logits `[rows, classes]` of the images in `x` (`[rows, side²]`, row-major pixels).
    fn forward(&self, g: &mut Graph, x: NodeId) -> wgrad::Result<NodeId> {
        let rows = g.shape(x)?[0];
        let mut h = g.reshape(x, &[rows, 1, self.side, self.side])?;
        for conv in &self.convs {
            h = conv.forward(g, h)?;
            h = g.relu(h)?;
            h = g.max_pool2d(h, Pool2dOptions::new(2))?;
        }
        let features: usize = g.shape(h)?[1..].iter().product();
        let flat = g.reshape(h, &[rows, features])?;
        self.head.forward(g, flat)
    }
}

/// An inference branch: images of `rows` in, logits out.
struct Branch {
    x: NodeId,
    logits: NodeId,
}

fn run(a: &Args) -> wgrad::Result<bool> {
    let dev = common::open_device(&a.device)?;
    let (train, test, source) = match &a.data {
        Some(dir) => {
            let (tr, te) = data::load_mnist_dir(dir)?;
            (tr, te, format!("MNIST from {}", dir.display()))
        }
        None => {
            let (tr, te) = data::digits()?.split(0.2, a.seed)?;
            (tr, te, "digits (embedded)".to_string())
        }
    };
    let side = (train.n_features as f64).sqrt().round() as usize;
    if side * side != train.n_features {
        return Err(common::fail(
            "train_cnn",
            format!("{} features per sample are not a square image", train.n_features),
        ));
    }
    if train.len() < a.batch {
        return Err(common::fail(
            "train_cnn",
            format!("--batch {} exceeds the {} training samples", a.batch, train.len()),
        ));
    }
    println!(
        "data: {source}: {} training and {} test images of {side}×{side}, {} classes",
        train.len(),
        test.len(),
        train.n_classes
    );

    let mut g = Graph::new(&dev);
    let mut rng = Rng::new(a.seed);
    let net = Cnn::new(&mut g, side, &a.channels, train.n_classes, &mut rng)?;
    let x = g.input("x", &[a.batch, train.n_features])?;
    let logits = net.forward(&mut g, x)?;
    let labels = g.input("labels", &[a.batch])?;
    let loss = g.softmax_cross_entropy(logits, labels)?;
    g.set_name(loss, "loss")?;
    // Inference branches for the test set, over the same parameters: whole chunks and the rest.
    let chunk = test.len().min(EVAL_CHUNK);
    let mut branches = Vec::new();
    for rows in [chunk, test.len() % chunk] {
        if rows > 0 && !branches.iter().any(|b: &(usize, Branch)| b.0 == rows) {
            let bx = g.input(&format!("x_eval{rows}"), &[rows, train.n_features])?;
            let bl = net.forward(&mut g, bx)?;
            branches.push((rows, Branch { x: bx, logits: bl }));
        }
    }
    g.set_optimizer(Adam::new(a.lr))?;
    let params: usize = g
        .parameters()
        .iter()
        .map(|&p| g.shape(p).map_or(0, |s| s.iter().product::<usize>()))
        .sum();
    println!(
        "model: conv3×3-ReLU-maxpool2 × {:?} → linear {}: {params} parameters; batch {}, Adam lr {} (cosine)",
        a.channels, train.n_classes, a.batch, a.lr
    );
    if let Some(path) = &a.graph {
        common::save_graph(&g, path, loss)?;
    }
    common::compiling(&dev, || g.prepare_train_step(loss))?;

    let evaluate = |g: &mut Graph| -> wgrad::Result<f64> {
        let mut correct = 0;
        let nf = test.n_features;
        for (start, rows) in (0..test.len()).step_by(chunk).map(|s| (s, chunk.min(test.len() - s))) {
            let b = &branches
                .iter()
                .find(|b| b.0 == rows)
                .expect("a branch per chunk size")
                .1;
            g.write(b.x, &test.features[start * nf..(start + rows) * nf])?;
            let l = g.value(b.logits)?;
            let nc = l.len() / rows;
            for (r, row) in l.chunks_exact(nc).enumerate() {
                let best = (0..nc).fold(0, |m, c| if row[c] > row[m] { c } else { m });
                correct += (best as u32 == test.labels[start + r]) as usize;
            }
        }
        Ok(correct as f64 / test.len() as f64)
    };

    let steps_per_epoch = train.len() / a.batch;
    let mut order: Vec<usize> = (0..train.len()).collect();
    let (mut feats, mut labs) = (Vec::new(), Vec::new());
    let (mut curve_loss, mut curve_acc, mut throughput) = (Vec::new(), Vec::new(), Vec::new());
    let mut finite = true;
    let started = Instant::now();
    for epoch in 1..=a.epochs {
        let t0 = Instant::now();
        rng.shuffle(&mut order);
        let (mut sum, mut reads) = (0.0, 0);
        for s in 0..steps_per_epoch {
            // Cosine decay from --lr to 0 over the run.
            let done = ((epoch - 1) * steps_per_epoch + s) as f64 / (a.epochs * steps_per_epoch) as f64;
            g.set_learning_rate(a.lr * (0.5 * (1.0 + (std::f64::consts::PI * done).cos())) as f32)?;
            train.gather(&order[s * a.batch..(s + 1) * a.batch], &mut feats, &mut labs)?;
            g.write(x, &feats)?;
            g.write_labels(labels, &labs)?;
            g.train_step(loss)?;
            // Every tenth loss is read back (a read waits for the device).
            if s % 10 == 9 || s + 1 == steps_per_epoch {
                let l = g.scalar(loss)? as f64;
                finite &= l.is_finite();
                sum += l;
                reads += 1;
                curve_loss.push(((epoch - 1) as f64 + (s + 1) as f64 / steps_per_epoch as f64, l));
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let acc = evaluate(&mut g)?;
        let rate = (steps_per_epoch * a.batch) as f64 / secs;
        curve_acc.push((epoch as f64, 100.0 * acc));
        throughput.push((epoch as f64, rate));
        println!(
            "epoch {epoch:3}/{}  loss {:.4}  test accuracy {:.2} %  ({rate:.0} images/s)",
            a.epochs,
            sum / reads as f64,
            100.0 * acc
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let final_acc = curve_acc.last().map_or(0.0, |p| p.1 / 100.0);
    let chance = 1.0 / train.n_classes as f64;
    print!(
        "test accuracy {:.2} % after {} epochs in {seconds:.1} s",
        100.0 * final_acc,
        a.epochs
    );
    if a.data.is_none() {
        println!(
            "; target ≥ {:.1} %: {}",
            100.0 * TARGET,
            if final_acc >= TARGET { "met" } else { "not met" }
        );
    } else {
        println!();
    }

    if let Some(path) = &a.json {
        let summary = serde_json::json!({
            "device": dev.info().name,
            "data": source,
            "epochs": a.epochs,
            "batch": a.batch,
            "channels": a.channels,
            "parameters": params,
            "seconds": seconds,
            "test_accuracy": final_acc,
            "accuracy_curve": curve_acc,
            "loss_curve": curve_loss,
        });
        std::fs::write(path, format!("{summary:#}\n")).map_err(|e| common::fail("--json", e.to_string()))?;
        println!("summary written to {}", path.display());
    }
    if let Some(path) = &a.plot {
        let loss_lines = [("training loss (every 10 steps)", &curve_loss[..], false)];
        let acc_lines = [("test accuracy", &curve_acc[..], true)];
        plot::two_panels(
            path,
            &format!("CNN {:?} on {source}, {}", a.channels, dev.info().name),
            [
                plot::Panel::new("Loss", "cross-entropy", &loss_lines),
                plot::Panel::new("Accuracy", "test accuracy (%)", &acc_lines),
            ],
        )
        .map_err(|e| common::fail("--plot", e))?;
        println!("plot written to {}", path.display());
    }
    if !finite {
        eprintln!("the run failed: a loss was not finite");
        return Ok(false);
    }
    if final_acc <= 2.0 * chance {
        eprintln!(
            "the run failed: test accuracy {:.1} % is near chance",
            100.0 * final_acc
        );
        return Ok(false);
    }
    Ok(true)
}
