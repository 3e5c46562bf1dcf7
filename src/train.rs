//! A small, reusable minibatch trainer for classifiers: an [`Mlp`] with a softmax
//! cross-entropy loss, trained with the graph's fused training step.
//!
//! The graph is built once for a fixed batch size, so every training step is the same
//! program replayed: write a batch, then [`Graph::train_step`] (zero gradients, forward,
//! backward, optimizer update) as **one** submission. The loss is read back only when asked,
//! which is the one point where the host waits for the device.
//!
//! ```
//! use wgrad::train::{Classifier, ClassifierConfig};
//! use wgrad::{data, Device};
//! # fn main() -> wgrad::Result<()> {
//! let (train, test) = data::digits()?.split(0.2, 7)?;
//! let cfg = ClassifierConfig { batch: 64, ..ClassifierConfig::default() };
//! let mut clf = Classifier::new(&Device::cpu(), train.n_features, train.n_classes, &cfg)?;
//! let stats = clf.train_epoch(&train, 0, 10, |_, _, _| {})?;
//! assert!(stats.mean_loss.is_finite());
//! let acc = clf.accuracy(&test)?;
//! assert!((0.0..=1.0).contains(&acc));
//! # Ok(()) }
//! ```

use std::path::Path;
use web_time::Instant;

use crate::data::{Dataset, Rng};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::io::{Layout, NamedTensor};
use crate::nn::{Activation, Mlp};
use crate::optim::{Adam, Optimizer};

/// What to build and how to train it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierConfig {
    /// Widths of the hidden layers, input side first (may be empty: a linear classifier).
    pub hidden: Vec<usize>,
    /// Activation after every hidden layer.
    pub activation: Activation,
    /// Optimizer applied at every training step.
    pub optimizer: Optimizer,
    /// Rows per minibatch; the graph is built for exactly this many rows.
    pub batch: usize,
    /// Seed of the weight initialisation and of the per-epoch shuffles.
    pub seed: u64,
}

impl Default for ClassifierConfig {
    /// One hidden layer of 128 ReLU units, Adam with learning rate 1e-2, batch 64, seed 0.
    fn default() -> Self {
        ClassifierConfig {
            hidden: vec![128],
            activation: Activation::Relu,
            optimizer: Optimizer::Adam(Adam::new(1e-2)),
            batch: 64,
            seed: 0,
        }
    }
}

/// Summary of one call to [`Classifier::train_epoch`].
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    /// Mean of the losses that were read back during the epoch (see `loss_every`). NaN or
    /// infinite when training diverged.
    pub mean_loss: f32,
    /// The loss of the epoch's last step (always read back).
    pub last_loss: f32,
    /// How many losses were read back (and averaged into `mean_loss`).
    pub losses_read: usize,
    /// Training steps run (full batches).
    pub steps: usize,
    /// Samples trained on: `steps * batch` (a trailing partial batch is dropped).
    pub samples: usize,
    /// Wall-clock seconds of the epoch, from the first batch write to the last loss read
    /// (which waits for the device to finish).
    pub seconds: f64,
}

impl EpochStats {
    /// Training throughput: samples per wall-clock second.
    pub fn samples_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.samples as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// An [`Mlp`] classifier with a softmax cross-entropy loss, built on one [`Graph`] for a
/// fixed batch size.
///
/// The graph holds an input `x` (batch × n_features), a labels input (batch), the MLP's
/// parameters, the `logits` (batch × n_classes) and the scalar `loss` (mean cross-entropy
/// over the batch). The fields are public so callers can inspect the graph (DOT export,
/// counters, gradients); changing its structure is not supported.
///
/// Features are used exactly as given: nothing is standardised or rescaled inside.
#[derive(Debug)]
pub struct Classifier {
    /// The graph everything runs on.
    pub graph: Graph,
    /// The model (its parameters live in `graph`).
    pub mlp: Mlp,
    /// Input features, batch × n_features.
    pub x: NodeId,
    /// Class labels of the batch, shape `[batch]`.
    pub labels: NodeId,
    /// Output logits, batch × n_classes.
    pub logits: NodeId,
    /// Mean softmax cross-entropy over the batch.
    pub loss: NodeId,
    /// Rows per batch.
    pub batch: usize,
    n_features: usize,
    n_classes: usize,
    optimizer: Optimizer,
    seed: u64,
    feat_buf: Vec<f32>,
    label_buf: Vec<u32>,
    /// Inference branches over the same parameters: (rows, input, logits).
    eval: Vec<(usize, NodeId, NodeId)>,
}

/// Most rows one inference branch takes on the CPU backend; longer evaluations run in chunks of
/// this size. On a GPU the chunks are of the training batch size instead: its products have the
/// training forward's shapes, so evaluation runs the pipelines training compiled and compiles
/// none of its own (1,024-row products chose the subgroup matmul kernel on llvmpipe, seconds to
/// compile, at the first evaluation of a run).
const EVAL_ROWS: usize = 1024;

impl Classifier {
    /// Builds the graph on `device`: layer widths `n_features → cfg.hidden… → n_classes`,
    /// weights initialised from `cfg.seed` (He for ReLU, Xavier otherwise), and the optimizer
    /// configured.
    ///
    /// Errors when `cfg.batch`, `n_features`, `n_classes` or a hidden width is zero, when the
    /// optimizer's hyper-parameters are out of range, or when the device cannot allocate the
    /// buffers.
    pub fn new(device: &Device, n_features: usize, n_classes: usize, cfg: &ClassifierConfig) -> Result<Self> {
        if cfg.batch == 0 {
            return Err(Error::arg("Classifier::new", "batch size must be at least 1"));
        }
        if n_features == 0 || n_classes == 0 {
            return Err(Error::arg(
                "Classifier::new",
                format!("need at least one feature and one class, got {n_features} features and {n_classes} classes"),
            ));
        }
        if cfg.hidden.contains(&0) {
            return Err(Error::arg(
                "Classifier::new",
                format!("hidden layer widths {:?} must all be non-zero", cfg.hidden),
            ));
        }
        let mut sizes = Vec::with_capacity(cfg.hidden.len() + 2);
        sizes.push(n_features);
        sizes.extend_from_slice(&cfg.hidden);
        sizes.push(n_classes);

        let mut graph = Graph::new(device);
        let x = graph.input("x", &[cfg.batch, n_features])?;
        let mlp = Mlp::new(&mut graph, &sizes, cfg.activation, cfg.seed)?;
        let logits = mlp.forward(&mut graph, x)?;
        graph.set_name(logits, "logits")?;
        let labels = graph.input("labels", &[cfg.batch])?;
        let loss = graph.softmax_cross_entropy(logits, labels)?;
        graph.set_name(loss, "loss")?;
        graph.set_optimizer(cfg.optimizer)?;
        Ok(Classifier {
            graph,
            mlp,
            x,
            labels,
            logits,
            loss,
            batch: cfg.batch,
            n_features,
            n_classes,
            optimizer: cfg.optimizer,
            seed: cfg.seed,
            feat_buf: Vec::new(),
            label_buf: Vec::new(),
            eval: Vec::new(),
        })
    }

    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Checks that `data` is consistent and fits this model.
    fn check_data(&self, op: &'static str, data: &Dataset) -> Result<()> {
        data.validate()?;
        if data.n_features != self.n_features {
            return Err(Error::arg(
                op,
                format!(
                    "the data set has {} features per sample but the model takes {}",
                    data.n_features, self.n_features
                ),
            ));
        }
        if data.n_classes > self.n_classes {
            return Err(Error::arg(
                op,
                format!(
                    "the data set has {} classes but the model predicts {}",
                    data.n_classes, self.n_classes
                ),
            ));
        }
        Ok(())
    }

    /// One training step on exactly one batch: `features` holds `batch × n_features` values
    /// row-major and `labels` holds `batch` class indices below `n_classes`.
    ///
    /// Writes the batch and runs [`Graph::train_step`]: one submission, no read-back. Read
    /// the step's loss afterwards with [`Classifier::loss`] if needed.
    pub fn train_batch(&mut self, features: &[f32], labels: &[u32]) -> Result<()> {
        if labels.len() != self.batch || features.len() != self.batch * self.n_features {
            return Err(Error::arg(
                "Classifier::train_batch",
                format!(
                    "a batch is {} rows of {} features ({} values) and {} labels, got {} values and {} labels",
                    self.batch,
                    self.n_features,
                    self.batch * self.n_features,
                    self.batch,
                    features.len(),
                    labels.len()
                ),
            ));
        }
        if let Some(&l) = labels.iter().find(|&&l| l as usize >= self.n_classes) {
            return Err(Error::arg(
                "Classifier::train_batch",
                format!("label {l} is not a class index in 0..{}", self.n_classes),
            ));
        }
        // Validate both before writing either, so a rejected batch writes nothing.
        self.graph.write(self.x, features)?;
        self.graph.write_labels(self.labels, labels)?;
        self.graph.train_step(self.loss)
    }

    /// Compiles the training step (and with it the forward pass used by evaluation) without
    /// running it — on a GPU, every pipeline the classifier needs, concurrently. Training and
    /// evaluation do this on first use anyway; calling it first lets a program say that
    /// kernels are being compiled.
    pub fn prepare(&mut self) -> Result<()> {
        self.graph.prepare_train_step(self.loss)
    }

    /// The loss of the last forward pass (the last training step's batch), read back from the
    /// device: this waits for all submitted work to finish.
    pub fn loss(&mut self) -> Result<f32> {
        self.graph.scalar(self.loss)
    }

    /// One epoch over `data` in shuffled minibatches.
    ///
    /// The row order is shuffled with an [`Rng`] seeded with `cfg.seed + epoch`, so a run is
    /// reproducible and every epoch sees a different order. The graph has a fixed batch size,
    /// so only `len / batch` full batches are trained on: **a trailing partial batch is
    /// dropped** (its rows get their turn in other epochs, since the order changes). Each
    /// step is one [`Graph::train_step`], i.e. one submission.
    ///
    /// The loss is read back (a host–device synchronisation) every `loss_every` steps and at
    /// the last step; `loss_every` 0 reads it only at the last step. After each step
    /// `on_step(step, batches, loss)` is called with the 0-based step, the number of batches
    /// in the epoch and the loss when it was read.
    ///
    /// Errors when `data` is inconsistent, does not fit the model (feature count, classes),
    /// or holds fewer rows than one batch; and on device errors. A diverging loss is not an
    /// error: check [`EpochStats::mean_loss`] for finiteness.
    pub fn train_epoch(
        &mut self,
        data: &Dataset,
        epoch: u64,
        loss_every: usize,
        mut on_step: impl FnMut(usize, usize, Option<f32>),
    ) -> Result<EpochStats> {
        self.check_data("Classifier::train_epoch", data)?;
        let batches = data.len() / self.batch;
        if batches == 0 {
            return Err(Error::arg(
                "Classifier::train_epoch",
                format!(
                    "the data set has {} samples, fewer than one batch of {}",
                    data.len(),
                    self.batch
                ),
            ));
        }
        let start = Instant::now();
        let mut order: Vec<usize> = (0..data.len()).collect();
        Rng::new(self.seed.wrapping_add(epoch)).shuffle(&mut order);
        let (mut sum, mut read, mut last) = (0.0f64, 0usize, f32::NAN);
        let mut feats = std::mem::take(&mut self.feat_buf);
        let mut labs = std::mem::take(&mut self.label_buf);
        let result = (|| -> Result<()> {
            for (step, rows) in order.chunks_exact(self.batch).enumerate() {
                data.gather(rows, &mut feats, &mut labs)?;
                self.train_batch(&feats, &labs)?;
                let is_last = step + 1 == batches;
                let due = loss_every > 0 && (step + 1) % loss_every == 0;
                let loss = if is_last || due {
                    let l = self.loss()?;
                    sum += f64::from(l);
                    read += 1;
                    last = l;
                    Some(l)
                } else {
                    None
                };
                on_step(step, batches, loss);
            }
            Ok(())
        })();
        self.feat_buf = feats;
        self.label_buf = labs;
        result?;
        Ok(EpochStats {
            mean_loss: (sum / read as f64) as f32,
            last_loss: last,
            losses_read: read,
            steps: batches,
            samples: batches * self.batch,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// The logits of every row of `features` (row-major, `n_features` per row), row-major
    /// `rows × n_classes`.
    ///
    /// Runs an inference branch of the graph: the same parameters (no copy), an input of the
    /// rows asked for (in chunks of at most 1,024 rows on the CPU backend, of the training batch
    /// on a GPU), only that branch's nodes. The first request
    /// for a row count builds its branch (buffers for that many rows, kept for later calls; a
    /// long evaluation needs at most two: whole chunks and the rest). No row is padded. Errors
    /// when `features.len()` is not a multiple of `n_features`.
    pub fn logits(&mut self, features: &[f32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.check_rows("Classifier::logits", features)? * self.n_classes);
        for chunk in features.chunks(self.eval_rows() * self.n_features) {
            let (x, logits) = self.branch(chunk.len() / self.n_features)?;
            self.graph.write(x, chunk)?;
            out.extend(self.graph.value(logits)?);
        }
        Ok(out)
    }

    /// [`Classifier::logits`] without blocking: each chunk's logits are awaited, as a browser
    /// requires.
    pub async fn logits_async(&mut self, features: &[f32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.check_rows("Classifier::logits_async", features)? * self.n_classes);
        for chunk in features.chunks(self.eval_rows() * self.n_features) {
            let (x, logits) = self.branch(chunk.len() / self.n_features)?;
            self.graph.write(x, chunk)?;
            out.extend(self.graph.value_async(logits)?.await?);
        }
        Ok(out)
    }

    /// [`Classifier::accuracy`] without blocking.
    pub async fn accuracy_async(&mut self, data: &Dataset) -> Result<f32> {
        self.check_data("Classifier::accuracy_async", data)?;
        if data.is_empty() {
            return Err(Error::arg("Classifier::accuracy_async", "the data set is empty"));
        }
        let logits = self.logits_async(&data.features).await?;
        let correct = logits
            .chunks_exact(self.n_classes)
            .map(argmax)
            .zip(&data.labels)
            .filter(|(p, l)| p == *l)
            .count();
        Ok(correct as f32 / data.len() as f32)
    }

    /// [`Classifier::loss`] without blocking.
    pub async fn loss_async(&mut self) -> Result<f32> {
        let v = self.graph.value_async(self.loss)?.await?;
        Ok(v[0])
    }

    /// The number of rows in `features`, or an error when they are not whole rows.
    fn check_rows(&self, op: &'static str, features: &[f32]) -> Result<usize> {
        let nf = self.n_features;
        if !features.len().is_multiple_of(nf) {
            return Err(Error::arg(
                op,
                format!("{} feature values are not whole rows of {nf} features", features.len()),
            ));
        }
        Ok(features.len() / nf)
    }

    /// Rows per inference chunk: [`EVAL_ROWS`] on the CPU backend, the training batch on a GPU.
    fn eval_rows(&self) -> usize {
        if self.graph.device().is_gpu() {
            self.batch
        } else {
            EVAL_ROWS
        }
    }

    /// The inference branch for `rows` rows (input, logits), built on first use.
    fn branch(&mut self, rows: usize) -> Result<(NodeId, NodeId)> {
        if let Some(&(_, x, l)) = self.eval.iter().find(|b| b.0 == rows) {
            return Ok((x, l));
        }
        let len = self.graph.len();
        let built = (|| {
            let x = self.graph.input(&format!("x_eval{rows}"), &[rows, self.n_features])?;
            let logits = self.mlp.forward(&mut self.graph, x)?;
            Ok((x, logits))
        })();
        match built {
            Ok((x, l)) => {
                self.eval.push((rows, x, l));
                Ok((x, l))
            }
            Err(e) => {
                self.graph.truncate_nodes(len);
                Err(e)
            }
        }
    }

    /// The predicted class (arg-max of the logits, first one on ties) of every row of
    /// `features` (row-major, `n_features` per row).
    ///
    /// Runs an inference branch as [`Classifier::logits`] does; the arg-max is taken on the CPU
    /// from the logits read back. Errors when `features.len()` is not a multiple of
    /// `n_features`.
    pub fn predict(&mut self, features: &[f32]) -> Result<Vec<u32>> {
        let logits = self.logits(features)?;
        Ok(logits.chunks_exact(self.n_classes).map(argmax).collect())
    }

    /// Fraction of the rows of `data` whose predicted class equals the label, in `[0, 1]`.
    ///
    /// Errors when `data` is empty, inconsistent or does not fit the model.
    pub fn accuracy(&mut self, data: &Dataset) -> Result<f32> {
        self.check_data("Classifier::accuracy", data)?;
        if data.is_empty() {
            return Err(Error::arg("Classifier::accuracy", "the data set is empty"));
        }
        let pred = self.predict(&data.features)?;
        let correct = pred.iter().zip(&data.labels).filter(|(p, l)| p == l).count();
        Ok(correct as f32 / data.len() as f32)
    }

    /// The current weights as named tensors (`layers.{i}.weight` out×in, `layers.{i}.bias`),
    /// as [`Mlp::state`] gives them.
    pub fn weights(&mut self) -> Result<Vec<NamedTensor>> {
        self.mlp.state(&mut self.graph)
    }

    /// Saves the weights to a safetensors file (see [`Mlp::save`]; PyTorch `nn.Linear` layout).
    pub fn save(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.mlp.save(&mut self.graph, path.as_ref())
    }

    /// Loads weights from a safetensors file written by [`Classifier::save`], by
    /// [`Graph::save_parameters`] on a classifier's graph, or by PyTorch with the same layer
    /// names and shapes. The file's recorded layout decides how weights are read; a file that
    /// records none is read as [`Mlp::load`] says (refused when its weights are all square:
    /// state the layout with [`Classifier::load_as`]).
    ///
    /// All or nothing: every tensor is checked (present, right shape, finite) before any is
    /// written, so on error — a missing or misshapen tensor, a corrupt or unreadable file —
    /// the weights are unchanged and the error names the tensor or the file. On success the
    /// optimizer state (momentum, Adam moments and step count) is reset, since it belonged
    /// to the previous weights.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.mlp.load(&mut self.graph, path.as_ref())?;
        self.graph.set_optimizer(self.optimizer)
    }

    /// [`Classifier::load`] for a file whose layout the caller states (files that record none:
    /// older versions, other tools). A file that records a different layout is refused.
    pub fn load_as(&mut self, path: impl AsRef<Path>, layout: Layout) -> Result<()> {
        self.mlp.load_as(&mut self.graph, path.as_ref(), layout)?;
        self.graph.set_optimizer(self.optimizer)
    }
}

/// Index of the largest value (the first one on ties; NaN never wins).
fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || (row[best].is_nan() && !v.is_nan()) {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_ties_and_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.2]), 1);
        assert_eq!(argmax(&[-1.0]), 0);
    }

    #[test]
    fn bad_configs_are_errors() {
        let d = Device::cpu();
        let cfg = ClassifierConfig::default();
        assert!(Classifier::new(
            &d,
            4,
            3,
            &ClassifierConfig {
                batch: 0,
                ..cfg.clone()
            }
        )
        .is_err());
        assert!(Classifier::new(&d, 0, 3, &cfg).is_err());
        assert!(Classifier::new(&d, 4, 0, &cfg).is_err());
        assert!(Classifier::new(
            &d,
            4,
            3,
            &ClassifierConfig {
                hidden: vec![8, 0],
                ..cfg.clone()
            }
        )
        .is_err());
        let bad_lr = ClassifierConfig {
            optimizer: Optimizer::Adam(Adam::new(f32::NAN)),
            ..cfg.clone()
        };
        assert!(Classifier::new(&d, 4, 3, &bad_lr).is_err());
    }

    #[test]
    fn bad_data_is_an_error() {
        let cfg = ClassifierConfig {
            hidden: vec![8],
            batch: 4,
            ..ClassifierConfig::default()
        };
        let mut c = Classifier::new(&Device::cpu(), 3, 2, &cfg).unwrap();
        let wrong_nf = Dataset::new(vec![0.0; 16], vec![0; 8], 2, 2).unwrap();
        assert!(c.train_epoch(&wrong_nf, 0, 1, |_, _, _| {}).is_err());
        assert!(c.accuracy(&wrong_nf).is_err());
        let too_few = Dataset::new(vec![0.0; 9], vec![0; 3], 3, 2).unwrap();
        let err = c.train_epoch(&too_few, 0, 1, |_, _, _| {}).unwrap_err();
        assert!(err.to_string().contains("fewer than one batch"), "{err}");
        let many_classes = Dataset::new(vec![0.0; 12], vec![0, 1, 2, 0], 3, 3).unwrap();
        assert!(c.train_epoch(&many_classes, 0, 1, |_, _, _| {}).is_err());
        let mut broken = Dataset::new(vec![0.0; 12], vec![0; 4], 3, 2).unwrap();
        broken.labels.push(1);
        assert!(c.train_epoch(&broken, 0, 1, |_, _, _| {}).is_err());
        assert!(c.predict(&[0.0; 4]).is_err());
        assert!(c.train_batch(&[0.0; 12], &[0, 1, 2, 0]).is_err());
        assert!(c.train_batch(&[0.0; 11], &[0, 1, 1, 0]).is_err());
        assert!(c.accuracy(&Dataset::new(vec![], vec![], 3, 2).unwrap()).is_err());
    }

    #[test]
    fn epoch_drops_partial_batch_and_reads_loss() {
        let cfg = ClassifierConfig {
            hidden: vec![8],
            batch: 4,
            ..ClassifierConfig::default()
        };
        let mut c = Classifier::new(&Device::cpu(), 2, 2, &cfg).unwrap();
        let n = 18;
        let feats: Vec<f32> = (0..n * 2).map(|i| (i as f32 * 0.37).sin()).collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
        let data = Dataset::new(feats, labels, 2, 2).unwrap();
        let mut calls = Vec::new();
        let s = c
            .train_epoch(&data, 0, 2, |step, total, loss| {
                calls.push((step, total, loss.is_some()))
            })
            .unwrap();
        assert_eq!(s.steps, 4);
        assert_eq!(s.samples, 16);
        assert_eq!(s.losses_read, 2);
        assert!(s.mean_loss.is_finite() && s.last_loss.is_finite());
        assert_eq!(calls, [(0, 4, false), (1, 4, true), (2, 4, false), (3, 4, true)]);
        let s0 = c.train_epoch(&data, 1, 0, |_, _, _| {}).unwrap();
        assert_eq!(s0.losses_read, 1);
        // Prediction pads the last partial batch and returns one class per row.
        let pred = c.predict(&data.features).unwrap();
        assert_eq!(pred.len(), n);
        assert!(pred.iter().all(|&p| p < 2));
        assert!(c.predict(&[]).unwrap().is_empty());
    }
}
