//! Layers on top of the graph, as thin as possible: [`Linear`] and an [`Mlp`] builder, with
//! seeded Xavier/He initialisation and safetensors save/load; and the layers of a small
//! transformer ([`LayerNorm`], [`Embedding`], causal [`MultiHeadAttention`],
//! [`TransformerBlock`]) and a convolution ([`Conv2d`]) with PyTorch's parameter names.

use crate::data::Rng;
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::io::{layout_metadata, load_checkpoint, read_tensor, resolve_layout, save_checkpoint, Layout, NamedTensor};
use crate::kernels::UnaryOp;
use std::path::Path;

mod conv;
mod transformer;
pub use conv::Conv2d;
pub use transformer::{Embedding, LayerNorm, MultiHeadAttention, TransformerBlock};

/// Hidden-layer activation: any unary op that fuses with the bias-add before it
/// ([`UnaryOp::fusable`]): `Activation::Relu`, `Activation::Gelu`, `Activation::Silu`, ….
pub type Activation = UnaryOp;

impl UnaryOp {
    /// Parses an activation by name (`relu`, `gelu`, `silu`, `sigmoid`, `tanh`, …).
    pub fn parse(s: &str) -> Result<Self> {
        let name = s.to_ascii_lowercase();
        UnaryOp::from_name(&name, 1.0).filter(|op| op.fusable()).ok_or_else(|| {
            let names: Vec<&str> = UnaryOp::all(1.0)
                .into_iter()
                .filter(|op| op.fusable())
                .map(|op| op.name())
                .collect();
            Error::arg(
                "activation",
                format!("unknown activation '{s}': expected one of {}", names.join(", ")),
            )
        })
    }

    /// The initialisation that keeps activations well scaled: He for the rectifier family
    /// (ReLU, GELU, SiLU), Xavier otherwise.
    pub fn default_init(self) -> Init {
        match self {
            UnaryOp::Relu | UnaryOp::Gelu | UnaryOp::GeluErf | UnaryOp::Silu => Init::He,
            _ => Init::Xavier,
        }
    }

    /// Adds the activation node.
    pub fn apply(self, g: &mut Graph, x: NodeId) -> Result<NodeId> {
        g.unary(self, x)
    }
}

/// Weight initialisation schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Glorot/Xavier uniform: U(−a, a), a = √(6 / (fan_in + fan_out)).
    Xavier,
    /// He/Kaiming normal: N(0, 2 / fan_in).
    He,
}

impl Init {
    /// `fan_in × fan_out` weights drawn from `rng`.
    ///
    /// The size is checked before anything is allocated: zero or overflowing sizes, more than
    /// 2^31 values (what a graph tensor may hold), or more bytes than the operating system
    /// reports available give an error instead of an abort.
    pub fn sample(self, fan_in: usize, fan_out: usize, rng: &mut Rng) -> Result<Vec<f32>> {
        let shape = [fan_in, fan_out];
        let n = match fan_in.checked_mul(fan_out) {
            Some(n) if n > 0 && n <= MAX_SAMPLE => n,
            _ => {
                return Err(Error::invalid_shape(
                    "Init::sample",
                    &shape,
                    format!("need between 1 and {MAX_SAMPLE} weights (2^31)"),
                ))
            }
        };
        let what = format!("Init::sample: {fan_in}×{fan_out} initial weights");
        crate::graph::check_host_available(&what, n as u64 * 4)?;
        let mut w = Vec::new();
        w.try_reserve_exact(n)
            .map_err(|e| Error::arg("Init::sample", format!("{what}: {} bytes: {e}", n as u64 * 4)))?;
        match self {
            Init::Xavier => {
                let a = (6.0 / (fan_in as f64 + fan_out as f64)).sqrt() as f32;
                w.extend((0..n).map(|_| (2.0 * rng.next_f32() - 1.0) * a));
            }
            Init::He => {
                let s = (2.0 / fan_in as f64).sqrt() as f32;
                w.extend((0..n).map(|_| rng.normal() * s));
            }
        }
        Ok(w)
    }
}

/// The most weights [`Init::sample`] draws at once: a graph tensor's element bound.
const MAX_SAMPLE: usize = (u32::MAX / 2) as usize;

/// A fully connected layer y = x·W + b, W: in×out, b: out.
#[derive(Clone, Debug)]
pub struct Linear {
    /// The weight parameter, in×out.
    pub weight: NodeId,
    /// The bias parameter, out.
    pub bias: NodeId,
    /// Input features.
    pub fan_in: usize,
    /// Output features.
    pub fan_out: usize,
}

impl Linear {
    /// Adds the layer's parameters (`{name}.weight`, `{name}.bias`) to the graph.
    ///
    /// The sizes are checked against the device's limits and the host bound (see
    /// [`Graph::check_new_parameters`]) before any weight is sampled or buffer allocated; on
    /// any error the graph is left as it was.
    pub fn new(g: &mut Graph, name: &str, fan_in: usize, fan_out: usize, init: Init, rng: &mut Rng) -> Result<Linear> {
        let (wname, bname) = (format!("{name}.weight"), format!("{name}.bias"));
        g.check_new_parameters("Linear::new", &[(&wname, &[fan_in, fan_out]), (&bname, &[fan_out])])?;
        let len = g.len();
        Self::build(g, &wname, &bname, fan_in, fan_out, init, rng).inspect_err(|_| g.truncate_nodes(len))
    }

    fn build(
        g: &mut Graph,
        wname: &str,
        bname: &str,
        fan_in: usize,
        fan_out: usize,
        init: Init,
        rng: &mut Rng,
    ) -> Result<Linear> {
        let w = init.sample(fan_in, fan_out, rng)?;
        let weight = g.parameter(wname, &[fan_in, fan_out], &w)?;
        drop(w);
        let bias = g.parameter(bname, &[fan_out], &vec![0.0; fan_out])?;
        Ok(Linear {
            weight,
            bias,
            fan_in,
            fan_out,
        })
    }

    /// x·W + b for x: batch×in.
    pub fn forward(&self, g: &mut Graph, x: NodeId) -> Result<NodeId> {
        let xw = g.matmul(x, self.weight)?;
        g.bias_add(xw, self.bias)
    }
}

/// A multilayer perceptron: Linear → activation → … → Linear (the last layer gives logits).
#[derive(Clone, Debug)]
pub struct Mlp {
    /// The layers, input side first.
    pub layers: Vec<Linear>,
    /// Hidden activation.
    pub activation: Activation,
    /// Layer widths, input first, e.g. [64, 128, 10].
    pub sizes: Vec<usize>,
}

impl Mlp {
    /// Parameters for layer widths `sizes` (at least input and output), initialised from `seed`
    /// with the activation's default scheme. Layers are named `layers.{i}`.
    ///
    /// Every layer's sizes are checked against the device's limits and the host bound (see
    /// [`Graph::check_new_parameters`]) before any weight is sampled or buffer allocated; on
    /// any error the graph is left as it was.
    pub fn new(g: &mut Graph, sizes: &[usize], activation: Activation, seed: u64) -> Result<Mlp> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(Error::arg(
                "Mlp::new",
                format!("layer sizes {sizes:?}: need at least two, all non-zero"),
            ));
        }
        let names: Vec<(String, String)> = (0..sizes.len() - 1)
            .map(|i| (format!("layers.{i}.weight"), format!("layers.{i}.bias")))
            .collect();
        let shapes: Vec<([usize; 2], [usize; 1])> = sizes.windows(2).map(|w| ([w[0], w[1]], [w[1]])).collect();
        let tensors: Vec<(&str, &[usize])> = names
            .iter()
            .zip(&shapes)
            .flat_map(|((wn, bn), (ws, bs))| [(wn.as_str(), &ws[..]), (bn.as_str(), &bs[..])])
            .collect();
        g.check_new_parameters("Mlp::new", &tensors)?;
        let mut rng = Rng::new(seed);
        let init = activation.default_init();
        let len = g.len();
        let layers = names
            .iter()
            .zip(sizes.windows(2))
            .map(|((wn, bn), w)| Linear::build(g, wn, bn, w[0], w[1], init, &mut rng))
            .collect::<Result<Vec<_>>>()
            .inspect_err(|_| g.truncate_nodes(len))?;
        Ok(Mlp {
            layers,
            activation,
            sizes: sizes.to_vec(),
        })
    }

    /// Adds the forward pass for input `x` (`batch × sizes[0]`); returns the logits node.
    pub fn forward(&self, g: &mut Graph, x: NodeId) -> Result<NodeId> {
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(g, h)?;
            if i + 1 < self.layers.len() {
                h = self.activation.apply(g, h)?;
            }
        }
        Ok(h)
    }

    /// The weights as named tensors in PyTorch's `nn.Linear` layout ([`Layout::Torch`]):
    /// `layers.{i}.weight` is out×in (the transpose of the graph's in×out), `layers.{i}.bias`
    /// is out.
    pub fn state(&self, g: &mut Graph) -> Result<Vec<NamedTensor>> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let shape = [l.fan_in, l.fan_out];
            let w = Layout::Torch.from_graph(&shape, &g.value(l.weight)?);
            out.push(NamedTensor::new(
                format!("layers.{i}.weight"),
                Layout::Torch.file_shape(&shape),
                w,
            ));
            out.push(NamedTensor::new(
                format!("layers.{i}.bias"),
                vec![l.fan_out],
                g.value(l.bias)?,
            ));
        }
        Ok(out)
    }

    /// The names and graph shapes of the tensors the model reads from a checkpoint.
    fn wanted(&self) -> Vec<(String, Vec<usize>)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                [
                    (format!("layers.{i}.weight"), vec![l.fan_in, l.fan_out]),
                    (format!("layers.{i}.bias"), vec![l.fan_out]),
                ]
            })
            .collect()
    }

    /// Loads weights in PyTorch's layout, as [`Mlp::state`] gives them (or PyTorch's
    /// `state_dict` with the same names). Every tensor is checked (present, right shape,
    /// finite) before any is written, so a bad set changes nothing.
    pub fn load_state(&self, g: &mut Graph, tensors: &[NamedTensor]) -> Result<()> {
        self.load_state_as(g, tensors, Layout::Torch)
    }

    /// [`Mlp::load_state`] for tensors stored in `layout`: with [`Layout::Graph`] (as
    /// [`Graph::parameter_tensors`] gives them) `layers.{i}.weight` is in×out.
    pub fn load_state_as(&self, g: &mut Graph, tensors: &[NamedTensor], layout: Layout) -> Result<()> {
        let staged = self
            .layers
            .iter()
            .flat_map(|l| [l.weight, l.bias])
            .zip(self.wanted())
            .map(|(id, (name, shape))| read_tensor(tensors, &name, &shape, layout).map(|v| (id, v)))
            .collect::<Result<Vec<_>>>()?;
        for (id, v) in staged {
            g.write(id, &v)?;
        }
        Ok(())
    }

    /// Saves the weights to a safetensors file in PyTorch's `nn.Linear` layout, recorded in
    /// the file's metadata (`"wgrad.layout": "torch"`).
    pub fn save(&self, g: &mut Graph, path: &Path) -> Result<()> {
        save_checkpoint(path, &self.state(g)?, &layout_metadata(Layout::Torch))
    }

    /// Loads weights from a safetensors file (all or nothing).
    ///
    /// The file's recorded layout decides how it is read: a `"torch"` file as [`Mlp::save`]
    /// writes it, a `"graph"` file (as [`Graph::save_parameters`] writes) with the weights read
    /// in×out; any other recorded layout is refused. A file that records none (older versions,
    /// PyTorch) is read by the rule of [`resolve_layout`]: in PyTorch's layout when a
    /// non-square weight confirms it, else refused (square weights are ambiguous); state the
    /// layout with [`Mlp::load_as`] for such files. On any error no weight is changed.
    pub fn load(&self, g: &mut Graph, path: &Path) -> Result<()> {
        self.load_with(g, path, None)
    }

    /// [`Mlp::load`] with the file's layout stated by the caller, for files that record none.
    /// A file that records a different layout is refused.
    pub fn load_as(&self, g: &mut Graph, path: &Path, layout: Layout) -> Result<()> {
        self.load_with(g, path, Some(layout))
    }

    fn load_with(&self, g: &mut Graph, path: &Path, stated: Option<Layout>) -> Result<()> {
        let ckpt = load_checkpoint(path)?;
        let file = path.display().to_string();
        let layout = resolve_layout(&file, &ckpt, stated, Layout::Torch, &self.wanted())?;
        self.load_state_as(g, &ckpt.tensors, layout)
    }
}
