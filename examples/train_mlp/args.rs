//! train_mlp's command line and the checks made before any work starts: flags, output paths,
//! the model's memory, and the rule that says a finished run diverged. Pure functions (apart
//! from the path probes), so tests/cli.rs tests them directly.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::common::{self, MissingFolder};
use wgrad::nn::Activation;

pub const USAGE: &str = "\
train_mlp: train an MLP classifier with wgrad

USAGE:
    cargo run --release --example train_mlp -- [FLAGS]

DATA:
    --data DIR            MNIST IDX files in DIR (train-images-idx3-ubyte, ... optionally .gz);
                          default: the embedded digits set (1,797 8x8 images), split 80/20
                          with --seed
MODEL:
    --hidden W[,W...]     hidden layer widths                     [default: 128]
    --activation NAME     relu | gelu | silu | sigmoid | tanh | …  [default: relu]
TRAINING:
    --optimizer NAME      sgd | adam                               [default: adam]
    --lr X                learning rate, > 0 and representable in f32
                                                     [default: adam 0.01, sgd 0.1]
    --momentum X          SGD momentum in [0, 1)                   [default: 0.9]
    --batch N             minibatch size (a trailing partial batch is dropped) [default: 64]
    --epochs N            passes over the training set; 0 only evaluates [default: 20]
    --seed N              seed of the split, the weights and the shuffles [default: 0]
    --loss-every N        read the loss back every N steps (0: last step only) [default: 10]
    --device NAME         auto | gpu | cpu                         [default: auto]
                          (auto says on stderr why it falls back to the CPU backend)
FILES (written only when asked; checked before training starts):
    --load PATH           load safetensors weights before training
    --save PATH           save the trained weights (safetensors); its folder must exist
    --plot PATH           SVG plot of the training loss and test accuracy per epoch
    --graph PATH          Graphviz DOT of the model graph (also PATH.svg if `dot` is installed)
    --json PATH           JSON summary of the run
                          (--plot, --graph and --json create a missing folder, and say so)
    -h, --help            print this help

Before anything is allocated, the model's largest buffer is checked against the device's
buffer limit and its memory against the host's available memory; a model too large is
refused with its size.

EXIT CODES:
    0  training finished (or --epochs 0 evaluated) and did not diverge
    1  an error (device, data, file, a model too large), device memory grew during
       training, or training diverged. With L0 and L1 the loss on (up to) 1,024
       training rows before and after training and B = max(2·L0, ln(classes)), it
       diverged when a training loss was NaN or infinite (training stops there), or
       L1 > B, or an epoch's mean training loss exceeded B and L1 > ln(classes)/2
       (it blew up and did not recover). The files asked for are still written.
    2  bad command line, a --load file that does not exist, or an output path that
       cannot be written (the message says what is wrong; nothing has run)";

/// The parsed command line.
#[derive(Debug)]
pub struct Args {
    pub data: Option<PathBuf>,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub optimizer: String,
    pub lr: Option<f32>,
    pub momentum: Option<f32>,
    pub batch: usize,
    pub epochs: usize,
    pub seed: u64,
    pub device: String,
    pub loss_every: usize,
    pub load: Option<PathBuf>,
    pub save: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub graph: Option<PathBuf>,
    pub json: Option<PathBuf>,
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

/// Parses the flags (`--flag value` or `--flag=value`). `Ok(None)` means `--help`; `Err`
/// says what is wrong.
pub fn parse_args(argv: impl IntoIterator<Item = OsString>) -> Result<Option<Args>, String> {
    use lexopt::Arg::{Long, Short};
    let mut a = Args::default();
    let mut p = lexopt::Parser::from_args(argv);
    while let Some(arg) = p.next().map_err(common::lexopt_message)? {
        let flag = match arg {
            Short('h') | Long("help") => return Ok(None),
            Long(f) => format!("--{f}"),
            other => return Err(common::lexopt_message(other.unexpected())),
        };
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
        let v = common::text(&flag, p.value().map_err(common::lexopt_message)?)?;
        match flag.as_str() {
            "--data" => a.data = Some(PathBuf::from(v)),
            "--hidden" => {
                a.hidden = v
                    .split(',')
                    .map(|w| match common::uint::<usize>(&flag, w)? {
                        0 => Err(format!("--hidden: layer widths must be at least 1, got '{v}'")),
                        n => Ok(n),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--activation" => {
                a.activation =
                    Activation::parse(&v).map_err(|_| format!("--activation: '{v}' is not one of {}", activations()))?
            }
            "--optimizer" => {
                let o = v.to_ascii_lowercase();
                if o != "sgd" && o != "adam" {
                    return Err(format!("--optimizer: '{v}' is not sgd or adam"));
                }
                a.optimizer = o;
            }
            "--lr" => {
                let lr = common::float(&flag, &v)?;
                if !(lr.is_finite() && lr > 0.0) {
                    return Err(format!("--lr: {v} must be a positive finite number"));
                }
                a.lr = Some(lr);
            }
            "--momentum" => {
                let m = common::float(&flag, &v)?;
                if !(0.0..1.0).contains(&m) {
                    return Err(format!("--momentum: {v} must be in [0, 1)"));
                }
                a.momentum = Some(m);
            }
            "--batch" => a.batch = common::positive(&flag, &v)?,
            "--epochs" => a.epochs = common::uint(&flag, &v)?,
            "--seed" => a.seed = common::uint(&flag, &v)?,
            "--loss-every" => a.loss_every = common::uint(&flag, &v)?,
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

/// Checks every output path before training: each must be writable as a file. `--save`
/// refuses a missing folder; `--plot`, `--graph` and `--json` create it (and say so). Two
/// flags may not name the same file.
pub fn check_outputs(a: &Args) -> Result<(), String> {
    let outputs: Vec<(&str, &std::path::Path, MissingFolder)> = [
        ("--save", &a.save, MissingFolder::Refuse),
        ("--plot", &a.plot, MissingFolder::Create),
        ("--graph", &a.graph, MissingFolder::Create),
        ("--json", &a.json, MissingFolder::Create),
    ]
    .into_iter()
    .filter_map(|(f, p, m)| p.as_deref().map(|p| (f, p, m)))
    .collect();
    common::check_distinct(&outputs.iter().map(|&(f, p, _)| (f, p)).collect::<Vec<_>>())?;
    for (flag, path, missing) in outputs {
        common::check_output(flag, path, missing)?;
    }
    if let Some(load) = &a.load {
        if !load.is_file() {
            return Err(format!("--load: '{}' is not a file", load.display()));
        }
    }
    Ok(())
}

/// Where the model would live, for [`check_model_size`].
#[derive(Clone, Copy, Debug)]
pub enum Placement {
    /// A GPU whose largest buffer is `limit` bytes (the limit named `limit_name`).
    Gpu { limit: u64, limit_name: &'static str },
    /// The CPU backend: every buffer is host memory.
    Cpu,
}

/// Refuses, before anything is allocated, a model that cannot fit: layer widths `sizes`
/// (input first), `batch` rows, `optimizer_states` f32 values of optimizer state per
/// parameter (Adam 2, SGD 1). Every weight matrix and activation must hold fewer than 2^31
/// elements (a graph tensor's bound) and, on a GPU, fit in one buffer; the host must hold the weights while they are initialised (and, on the CPU
/// backend, the weights, gradients, optimizer state and activations). `host_available` is
/// the host's available memory in bytes, when known. `Err` names the sizes.
pub fn check_model_size(
    sizes: &[usize],
    batch: usize,
    optimizer_states: u32,
    placement: Placement,
    host_available: Option<u64>,
) -> Result<(), String> {
    // u128 with saturation: widths and batches near usize::MAX cannot overflow.
    let mul = |a: u128, b: u128| a.saturating_mul(b);
    const F32: u128 = 4;
    let widest = sizes.iter().copied().max().unwrap_or(0) as u128;
    let act_bytes = mul(mul(F32, batch as u128), widest);
    // The largest weight matrix, its layer, and the totals.
    let (mut big, mut big_layer, mut params) = (0u128, 0usize, 0u128);
    for (i, w) in sizes.windows(2).enumerate() {
        let (fan_in, fan_out) = (w[0] as u128, w[1] as u128);
        let bytes = mul(mul(F32, fan_in), fan_out);
        if bytes > big {
            (big, big_layer) = (bytes, i);
        }
        params = params.saturating_add(mul(fan_in, fan_out).saturating_add(fan_out));
    }
    let layer = |i: usize| format!("layer {i} ({} → {})", sizes[i], sizes[i + 1]);
    // A graph tensor holds fewer than 2^31 elements (the kernels index with 32-bit integers),
    // whatever the device.
    let max_elements = u128::from(u32::MAX / 2);
    if big / F32 > max_elements {
        return Err(format!(
            "the model is too large: {}'s weight matrix has {} × {} = {} weights ({}), more than \
             the 2^31 elements a wgrad tensor can hold",
            layer(big_layer),
            sizes[big_layer],
            sizes[big_layer + 1],
            big / F32,
            common::bytes(big)
        ));
    }
    if act_bytes / F32 > max_elements {
        return Err(format!(
            "the model is too large: an activation of {batch} rows × {widest} units = {} values ({}) is more \
             than the 2^31 elements a wgrad tensor can hold (lower --batch or the widths)",
            act_bytes / F32,
            common::bytes(act_bytes)
        ));
    }
    if let Placement::Gpu { limit, limit_name } = placement {
        let limit = u128::from(limit);
        if big > limit {
            return Err(format!(
                "the model is too large for this device: {}'s weight matrix is {} × {} × 4 B = {}, \
                 above the device's {limit_name} of {}",
                layer(big_layer),
                sizes[big_layer],
                sizes[big_layer + 1],
                common::bytes(big),
                common::bytes(limit)
            ));
        }
        if act_bytes > limit {
            return Err(format!(
                "the model is too large for this device: an activation of {batch} rows × {widest} units × 4 B = {}, \
                 above the device's {limit_name} of {} (lower --batch or the widths)",
                common::bytes(act_bytes),
                common::bytes(limit)
            ));
        }
    }
    // Host memory: the weights are sampled on the host one layer at a time (and copied once
    // for upload); on the CPU backend everything else lives there too: weights, gradients
    // and optimizer state, plus about six activation-sized buffers per layer (values and
    // gradients of the matmul, bias and activation results).
    let host = match placement {
        Placement::Gpu { .. } => mul(2, big),
        Placement::Cpu => {
            let acts = sizes[1..]
                .iter()
                .map(|&w| mul(batch as u128, w as u128))
                .fold(0u128, u128::saturating_add);
            big.saturating_add(mul(mul(F32, params), 2 + u128::from(optimizer_states)))
                .saturating_add(mul(6 * F32, acts))
        }
    };
    if let Some(avail) = host_available {
        if host > u128::from(avail) {
            return Err(format!(
                "the model is too large for this host: it needs about {} of host memory \
                 ({} parameters; largest: {}, {}) but {} is available",
                common::bytes(host),
                params,
                layer(big_layer),
                common::bytes(big),
                common::bytes(u128::from(avail))
            ));
        }
    }
    if host > isize::MAX as u128 {
        return Err(format!(
            "the model is too large: it needs about {} of host memory",
            common::bytes(host)
        ));
    }
    Ok(())
}

/// Mean softmax cross-entropy of row-major `logits` (`labels.len()` rows) against `labels`,
/// computed in f64 with the log-sum-exp shift.
pub fn cross_entropy(logits: &[f32], labels: &[u32]) -> f64 {
    if labels.is_empty() {
        return f64::NAN;
    }
    let c = logits.len() / labels.len();
    let total: f64 = logits
        .chunks_exact(c)
        .zip(labels)
        .map(|(row, &y)| {
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let lse = m + row.iter().map(|&v| (f64::from(v) - m).exp()).sum::<f64>().ln();
            lse - f64::from(row[y as usize])
        })
        .sum();
    total / labels.len() as f64
}

/// A loss for messages: four decimals, or three significant digits in e-notation when huge.
pub fn show_loss(x: f64) -> String {
    if x.abs() < 1e6 {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

/// The divergence rule, applied after training. `start` and `end` are the mean
/// cross-entropy on the same training rows before and after training, `peak` the highest
/// epoch-mean training loss. With the bound B = max(2·start, ln(classes)) — twice where the
/// loss started, and never below the loss of a uniform guess — training diverged when:
///
/// - a loss is NaN or infinite, or
/// - `end` is above B: the loss ended far above where it started, or
/// - `peak` rose above B and `end` is still above ln(classes)/2: the loss blew up and did not
///   come back to well below a uniform guess (a collapse to a constant prediction).
///
/// A transient spike that training recovers from, and a slow start, are not divergence.
/// `Some(why)` when diverged.
pub fn divergence(start: f64, peak: f32, end: f64, n_classes: usize) -> Option<String> {
    let show = show_loss;
    if !peak.is_finite() && peak != f32::NEG_INFINITY {
        return Some(format!("the mean training loss of an epoch is {peak}"));
    }
    if !end.is_finite() {
        return Some(format!("the loss after training is {end}"));
    }
    let uniform = (n_classes.max(2) as f64).ln();
    let bound = if start.is_finite() {
        (2.0 * start).max(uniform)
    } else {
        uniform
    };
    let why_bound = format!(
        "{} (the larger of twice the loss before training, {}, and ln({n_classes}) = {uniform:.4})",
        show(bound),
        show(start)
    );
    if end > bound {
        return Some(format!("the loss after training, {}, is above {why_bound}", show(end)));
    }
    if f64::from(peak) > bound && end > uniform / 2.0 {
        return Some(format!(
            "the mean training loss rose to {} in an epoch, above {why_bound}, and the loss after \
             training, {}, is still above ln({n_classes})/2 = {:.4}: training did not recover",
            show(f64::from(peak)),
            show(end),
            uniform / 2.0
        ));
    }
    None
}

/// The activations `--activation` takes: every unary op that fuses as one.
fn activations() -> String {
    let names: Vec<&str> = wgrad::UnaryOp::all(1.0)
        .into_iter()
        .filter(|op| op.fusable())
        .map(|op| op.name())
        .collect();
    names.join(", ")
}
