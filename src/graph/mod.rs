//! The computational graph: nodes that own device buffers, a builder API that checks shapes
//! as nodes are added, and forward/backward/optimizer programs compiled once and replayed.
//!
//! Nodes are append-only and an op can only read earlier nodes, so the node order is a
//! topological order: forward walks it from the front, backward (see `backward.rs`) from the
//! loss towards the front.

// This file holds the nodes and the graph's storage; the rest is split by concern: build.rs (the
// builder API and input writes), limits.rs (size and host-memory checks), run.rs (forward,
// backward and zero programs, readback), backward.rs (the chain rule), fusion.rs (fused layer
// kernels), train_state.rs (optimizer state and training steps) and dot.rs (DOT export). The
// methods that take optimizer or checkpoint types live with those types, in crate::optim and
// crate::io::checkpoint, so that graph depends on neither.

mod backward;
mod build;
mod composite;
mod conv;
mod dot;
mod fusion;
mod limits;
mod random;
mod run;
mod train_state;

pub use conv::{Conv2dOptions, Pool2dOptions};
pub(crate) use limits::check_host_available;
pub(crate) use train_state::OptimSpec;
use train_state::OptimState;

use crate::backend::cpu::CpuExecutor;
use crate::backend::gpu::GpuExecutor;
use crate::backend::{BufId, Counters, Executor, ProgramId};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::{numel, Op};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_GRAPH: AtomicU64 = AtomicU64::new(1);

/// Handle to a node of one [`Graph`]. Using it with another graph is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeId {
    idx: usize,
    graph: u64,
}

impl NodeId {
    /// Position of the node in its graph (creation order, a topological order).
    pub fn index(&self) -> usize {
        self.idx
    }
}

/// The role of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// Written by the user.
    Input,
    /// Trainable.
    Parameter,
    /// Computed by an op.
    Result,
}

pub(crate) struct Node {
    pub name: String,
    pub op: Op,
    pub shape: Vec<usize>,
    pub value: BufId,
    pub grad: Option<BufId>,
    pub aux: Vec<BufId>,
    /// Buffers the VJP uses within one backward pass ([`Op::vjp_scratch_sizes`]), allocated
    /// with the first backward program that runs it.
    pub scratch: Vec<BufId>,
    pub requires_grad: bool,
    /// The last backward pass wrote this node's gradient (leaves: any backward since creation).
    pub grad_ready: bool,
    /// Set for label inputs of softmax_cross_entropy: the number of classes they index.
    pub label_classes: Option<usize>,
    /// A label value that marks a row to ignore ([`Graph::cross_entropy_ignore`]); it passes
    /// the class check.
    pub label_ignore: Option<u32>,
    /// The value was computed after the last write to any input or parameter.
    pub current: bool,
    /// Data was written into this input or parameter by the user (else it holds its zeros or
    /// its initial values).
    pub written: bool,
    /// The value buffer is the input's (a reshape or detach): no kernel computes it, and it
    /// is not this node's to free.
    pub aliased: bool,
}

impl Node {
    fn is_leaf(&self) -> bool {
        matches!(self.op, Op::Input | Op::Parameter)
    }
    fn kind(&self) -> NodeKind {
        match self.op {
            Op::Input => NodeKind::Input,
            Op::Parameter => NodeKind::Parameter,
            _ => NodeKind::Result,
        }
    }
}

/// A computational graph on one [`Device`].
///
/// Build it once (inputs, parameters, ops), then run it many times: write new inputs,
/// [`forward`](Graph::forward), [`backward`](Graph::backward), read values and gradients.
/// After the first run no buffer is allocated, and each pass is one queue submission.
pub struct Graph {
    id: u64,
    device: Device,
    exec: Box<dyn Executor + Send>,
    nodes: Vec<Node>,
    /// The forward programs: every node (key `None`), or only what one node depends on.
    /// Each with whether it computes a dropout node (then every run draws anew).
    forward_progs: HashMap<Option<usize>, (ProgramId, bool)>,
    /// The dropout state input (see random.rs), its seed and its draw counter.
    rng_state: Option<usize>,
    rng_seed: u32,
    rng_counter: u32,
    backward_progs: HashMap<(usize, bool, bool), ProgramId>,
    zero_prog: Option<ProgramId>,
    optim: Option<OptimState>,
    /// Use fused kernels where the graph has their pattern.
    fusion: bool,
    /// Convolutions as implicit GEMMs (`None`: where the backend prefers them).
    implicit_conv: Option<bool>,
    /// The most host memory one request may take, set by the caller (see
    /// [`Graph::set_host_memory_limit`]).
    host_limit: Option<u64>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("id", &self.id)
            .field("device", &self.device.info())
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl Graph {
    /// An empty graph on `device`.
    pub fn new(device: &Device) -> Graph {
        let exec: Box<dyn Executor + Send> = match device {
            Device::Gpu(g) => Box::new(GpuExecutor::new(g.clone())),
            Device::Cpu => Box::new(CpuExecutor::<f32>::new()),
            Device::CpuF64 => Box::new(CpuExecutor::<f64>::new()),
        };
        Graph {
            id: NEXT_GRAPH.fetch_add(1, Ordering::Relaxed),
            device: device.clone(),
            exec,
            nodes: Vec::new(),
            forward_progs: HashMap::new(),
            rng_state: None,
            rng_seed: 0,
            rng_counter: 0,
            backward_progs: HashMap::new(),
            zero_prog: None,
            optim: None,
            fusion: true,
            implicit_conv: None,
            host_limit: None,
        }
    }

    /// Enables or disables kernel fusion (on by default). With it, the layer pattern
    /// H = f(XW + b) (f = sigmoid, ReLU or tanh, Z = XW + b read by f alone) runs its forward
    /// as one kernel where the backend's matmul kernel for the shape has the epilogue (else as
    /// the matmul and one bias-activation pass instead of two), and its backward as one kernel
    /// instead of three. Results are the same either way; the switch exists to measure what
    /// fusion saves.
    pub fn set_fusion(&mut self, on: bool) {
        if on != self.fusion {
            self.fusion = on;
            self.invalidate();
        }
    }

    /// Whether [`Graph::conv2d`] builds convolutions as implicit GEMMs, the matmul kernel reading
    /// each window from the image, or as an explicit im2col (the window matrix written to a
    /// buffer) and a matmul. `None` (the default) leaves it to the backend: implicit on GPUs whose
    /// matmul runs on the tile kernel, explicit on CPU-like adapters (their register kernels read
    /// vec4s) and on the CPU backend (which reuses the written matrix for the weight gradient).
    /// Results agree to rounding either way. Applies to convolutions added after the call.
    pub fn set_implicit_conv(&mut self, on: Option<bool>) {
        self.implicit_conv = on;
    }

    /// Whether a convolution added now runs as an implicit GEMM (see
    /// [`Graph::set_implicit_conv`]).
    pub fn implicit_conv(&self) -> bool {
        self.implicit_conv.unwrap_or_else(|| self.exec.prefers_implicit_conv())
    }

    /// The device this graph runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Work and allocation counters of this graph (buffers, submissions, pipelines, ...).
    pub fn counters(&self) -> Counters {
        self.exec.counters()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn check(&self, id: NodeId) -> Result<usize> {
        if id.graph != self.id {
            return Err(Error::ForeignNode {
                node: id.idx,
                owner: id.graph,
                graph: self.id,
            });
        }
        Ok(id.idx)
    }

    fn node(&self, id: NodeId) -> Result<&Node> {
        Ok(&self.nodes[self.check(id)?])
    }

    /// Shape of a node.
    pub fn shape(&self, id: NodeId) -> Result<Vec<usize>> {
        Ok(self.node(id)?.shape.clone())
    }

    /// Name of a node.
    pub fn name(&self, id: NodeId) -> Result<&str> {
        Ok(&self.node(id)?.name)
    }

    /// Name of the op computing a node ("input", "parameter", "matmul", ...).
    pub fn op_name(&self, id: NodeId) -> Result<&'static str> {
        Ok(self.node(id)?.op.name())
    }

    /// Role of a node.
    pub fn kind(&self, id: NodeId) -> Result<NodeKind> {
        Ok(self.node(id)?.kind())
    }

    /// Whether gradients flow to this node.
    pub fn requires_grad(&self, id: NodeId) -> Result<bool> {
        Ok(self.node(id)?.requires_grad)
    }

    /// Every parameter, in creation order.
    pub fn parameters(&self) -> Vec<NodeId> {
        self.ids()
            .filter(|&id| self.nodes[id.idx].op == Op::Parameter)
            .collect()
    }

    /// Every node, in creation (topological) order.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len()).map(|idx| NodeId { idx, graph: self.id })
    }

    /// Finds a node by name (the first one, if names repeat).
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .map(|idx| NodeId { idx, graph: self.id })
    }

    /// layer whose creation failed part way, so a refused layer leaves the graph as it was.
    pub(crate) fn truncate_nodes(&mut self, len: usize) {
        if len >= self.nodes.len() {
            return;
        }
        for n in self.nodes.drain(len..) {
            let value = (!n.aliased).then_some(n.value);
            for b in value.into_iter().chain(n.grad).chain(n.aux).chain(n.scratch) {
                self.exec.free(b);
            }
        }
        self.invalidate();
    }

    /// A node is being added. It is no input of any existing node, so the programs that run
    /// what one node depends on (forward for a value, backward from a loss) stay as they are —
    /// adding an inference branch does not rebuild the training step. Those over every node
    /// (the whole forward pass, zeroing every gradient) are rebuilt lazily, and so are the
    /// backward passes that zero the leaves they do not reach when the node is such a leaf.
    fn node_added(&mut self, leaf_with_grad: bool) {
        for p in [self.forward_progs.remove(&None).map(|p| p.0), self.zero_prog.take()]
            .into_iter()
            .flatten()
        {
            self.exec.discard(p);
        }
        if leaf_with_grad {
            let fresh: Vec<_> = self.backward_progs.keys().filter(|k| k.2).copied().collect();
            for k in fresh {
                if let Some(p) = self.backward_progs.remove(&k) {
                    self.exec.discard(p);
                }
            }
        }
    }

    fn invalidate(&mut self) {
        // New nodes change what forward and backward must run; programs are rebuilt lazily.
        self.mark_stale();
        if let Some(p) = self.zero_prog.take() {
            self.exec.discard(p);
        }
        for (_, (p, _)) in self.forward_progs.drain() {
            self.exec.discard(p);
        }
        for (_, p) in self.backward_progs.drain() {
            self.exec.discard(p);
        }
    }

    fn push(&mut self, name: String, op: Op, shape: Vec<usize>, requires_grad: bool) -> Result<NodeId> {
        let opname = op.name();
        Self::check_shape(opname, &shape)?;
        let input_shapes: Vec<Vec<usize>> = op.inputs().iter().map(|&i| self.nodes[i].shape.clone()).collect();
        let refs: Vec<&[usize]> = input_shapes.iter().map(|s| s.as_slice()).collect();
        let aux_sizes = op.aux_sizes(&refs, &shape);
        // Allocate everything first; on failure give back what was made, so a refused node
        // leaves the graph (and its memory) as it was.
        let is_leaf = matches!(op, Op::Parameter | Op::Input);
        // A reshape or detach of anything but a parameter shares its input's buffer: the same
        // data seen in another shape needs no copy. (A parameter's is copied: the optimizer
        // updates parameters in place, and the copy keeps the value the last forward pass saw.)
        let alias = match op {
            Op::Reshape { x } | Op::Detach { x } if self.nodes[x].op != Op::Parameter => Some(self.nodes[x].value),
            _ => None,
        };
        let mut sizes = Vec::new();
        if alias.is_none() {
            sizes.push((numel(&shape), format!("value of {name} ({opname})")));
        }
        if requires_grad && is_leaf {
            sizes.push((numel(&shape), format!("gradient of {name}")));
        }
        sizes.extend(
            aux_sizes
                .iter()
                .map(|&n| (n, format!("saved state of {name} ({opname})"))),
        );
        // Check every buffer, and on the CPU backend their total, before allocating any.
        let eb = self.elem_bytes();
        let mut total = 0u64;
        for (n, what) in &sizes {
            let bytes = (*n as u64).saturating_mul(eb);
            self.check_buffer(what, bytes)?;
            total = total.saturating_add(bytes);
        }
        if !self.device.is_gpu() {
            self.check_host(&format!("buffers of {name} ({opname})"), total)?;
        }
        let mut bufs = Vec::with_capacity(sizes.len());
        for (n, what) in &sizes {
            match self.exec.alloc(*n, what) {
                Ok(b) => bufs.push(b),
                Err(e) => {
                    bufs.into_iter().for_each(|b| self.exec.free(b));
                    return Err(e);
                }
            }
        }
        let (value, rest) = match alias {
            Some(v) => (v, &bufs[..]),
            None => (bufs[0], &bufs[1..]),
        };
        let grad = (requires_grad && is_leaf).then(|| rest[0]);
        let aux = rest[grad.is_some() as usize..].to_vec();
        self.node_added(grad.is_some());
        self.nodes.push(Node {
            name,
            op,
            shape,
            value,
            grad,
            aux,
            scratch: Vec::new(),
            requires_grad,
            grad_ready: false,
            label_classes: None,
            label_ignore: None,
            current: false,
            written: false,
            aliased: alias.is_some(),
        });
        Ok(NodeId {
            idx: self.nodes.len() - 1,
            graph: self.id,
        })
    }
}
