//! # wgrad — a GPU tensor autograd engine on wgpu
//!
//! Build a computational graph on the CPU; its nodes own GPU buffers; forward ops run as WGSL
//! compute shaders; backward runs vector-Jacobian-product kernels on the device. The CPU only
//! decides the order and records dispatches.
//!
//! ```
//! use wgrad::{Device, Graph};
//! # fn main() -> wgrad::Result<()> {
//! let device = Device::auto();          // a hardware GPU if one opens, else the CPU backend
//! let mut g = Graph::new(&device);
//! let x = g.input("X", &[2, 3])?;
//! let w = g.parameter("W", &[3, 1], &[0.1, -0.2, 0.3])?;
//! let b = g.parameter("B", &[1], &[0.0])?;
//! let xw = g.matmul(x, w)?;
//! let z = g.bias_add(xw, b)?;
//! let h = g.sigmoid(z)?;                // H = σ(XW + B)
//! let loss = g.mean(h)?;
//! g.write(x, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! g.backward(loss)?;                    // forward + backward, one submission
//! let dw = g.grad(w)?;                  // ∂loss/∂W, read back from the device
//! assert_eq!(dw.len(), 3);
//! # Ok(()) }
//! ```
//!
//! ## The model in one page
//!
//! - **Nodes own buffers.** A [`Graph`] is a list of nodes: inputs ([`Graph::input`]), written
//!   by you; parameters ([`Graph::parameter`]), trainable; and op results ([`Graph::matmul`],
//!   [`Graph::sigmoid`], …). Each node owns a device buffer for its value and, once a backward
//!   pass needs it, one for its gradient. Shapes are checked when a node is added, so a bad
//!   graph never reaches the device ([`Error::ShapeMismatch`] names the op and both shapes).
//! - **Forward runs in creation order.** An op can only read nodes created before it, so
//!   creation order is a topological order. [`Graph::forward`] lowers every node to its
//!   kernels (the `forward` match in `src/ops/mod.rs`), compiles them once into a program
//!   (cached pipelines, bind groups made once — `src/backend/gpu/`; each kernel family's
//!   lowering and CPU reference in `src/kernels/`) and replays it as one
//!   command encoder and one queue submission.
//! - **Backward runs in reverse order, with VJPs, not Jacobians.** [`Graph::backward`] seeds
//!   d(loss) = 1 and visits the nodes that lead to the loss from the last to the first
//!   (`src/graph/backward.rs`, one screen). Each op contributes its vector-Jacobian product,
//!   `(∂y/∂x)ᵀ · d_y` for each input x (the `vjp` match in `src/ops/mod.rs`): matmul's
//!   dA = G·Bᵀ and dB = Aᵀ·G read the operands transposed inside the kernel
//!   (`shaders/matmul.wgsl`), bias-add's db is a column sum, sigmoid's VJP uses the saved
//!   output, G ⊙ y ⊙ (1 − y). No Jacobian is ever formed; [`Graph::backward_from`] runs the same
//!   pass from any node with any seed, which yields one row of a Jacobian when you want one.
//! - **Fan-out accumulates.** A node read by several ops receives the sum of their
//!   gradients: the first contribution writes, later ones add (`written` in
//!   `src/graph/backward.rs`). Parameter gradients also add up across backward calls until
//!   [`Graph::zero_grad`].
//! - **Build once, run many.** After the first run nothing is allocated: new data goes into
//!   the same buffers ([`Graph::write`]), and [`Graph::train_step`] records zero-grad, forward,
//!   backward and the optimizer update ([`Sgd`], [`Adam`], run on the device) as one
//!   submission. [`Graph::counters`] shows buffers, bind groups, pipelines and submissions.
//! - **Two backends, one API.** [`Device::gpu`] (wgpu: Vulkan, Metal, DX12, GL) and
//!   [`Device::cpu`], the reference implementation every GPU result is tested against
//!   (`src/backend/cpu.rs` running each kernel's CPU reference); [`Device::auto`] falls back
//!   to it when no adapter exists.
//!
//! - **Branches share parameters.** Reading a value, a backward pass or a training step runs
//!   only the nodes it depends on ([`Graph::forward_to`]), so one graph can hold a training
//!   branch and an inference branch of another batch size over the same parameter buffers.
//! - **In the browser** (wasm32, WebGPU): open the device with [`Device::gpu_async`] and read with
//!   [`Graph::value_async`] / [`Graph::train_step_async`]; a blocking read there returns
//!   [`Error::WouldBlock`].
//!
//! A small convolutional network, trained and evaluated at another batch size over the same
//! weights:
//!
//! ```
//! use wgrad::{Adam, Conv2dOptions, Device, Graph, NodeId, Pool2dOptions};
//! # fn main() -> wgrad::Result<()> {
//! let mut g = Graph::new(&Device::cpu());
//! let w = g.parameter("conv.weight", &[4, 1, 3, 3], &[0.1; 36])?;
//! let b = g.parameter("conv.bias", &[4], &[0.0; 4])?;
//! let fc = g.parameter("fc.weight", &[16, 2], &[0.05; 32])?;
//! let net = |g: &mut Graph, x: NodeId, rows: usize| -> wgrad::Result<NodeId> {
//!     let h = g.conv2d(x, w, Some(b), Conv2dOptions::default().padding(1))?; // [rows, 4, 4, 4]
//!     let h = g.relu(h)?;
//!     let h = g.max_pool2d(h, Pool2dOptions::new(2))?;                       // [rows, 4, 2, 2]
//!     let h = g.dropout(h, 0.1)?;
//!     let h = g.reshape(h, &[rows, 16])?;
//!     g.matmul(h, fc)
//! };
//! let x = g.input("x", &[8, 1, 4, 4])?;
//! let logits = net(&mut g, x, 8)?;
//! let labels = g.input("labels", &[8])?;
//! let loss = g.softmax_cross_entropy(logits, labels)?;
//! g.set_optimizer(Adam::new(1e-2))?;
//! g.write(x, &[0.5; 128])?;
//! g.write_labels(labels, &[0, 1, 0, 1, 0, 1, 0, 1])?;
//! g.train_step(loss)?;
//! // One image through the same weights (dropout off: a branch without it).
//! let x1 = g.input("x1", &[1, 1, 4, 4])?;
//! let h = g.conv2d(x1, w, Some(b), Conv2dOptions::default().padding(1))?;
//! let h = g.relu(h)?;
//! let h = g.max_pool2d(h, Pool2dOptions::new(2))?;
//! let h = g.reshape(h, &[1, 16])?;
//! let one = g.matmul(h, fc)?;
//! g.write(x1, &[0.5; 16])?;
//! assert_eq!(g.value(one)?.len(), 2);
//! # let _ = net; Ok(()) }
//! ```
//!
//! Errors never panic: every fallible call returns [`Result`], including wgpu validation,
//! out-of-memory and device-lost errors, which are caught with error scopes.

#![warn(missing_docs)]

pub mod backend;
pub mod data;
pub mod device;
pub mod error;
pub mod graph;
pub mod io;
pub(crate) mod kernels;
pub mod nn;
pub(crate) mod ops;
pub mod optim;
pub mod train;

pub use backend::gpu::{
    enumerate_adapters, shader_sources, DeviceInfo, GpuDevice, GpuOptions, MatmulKernel, MatmulTiles, PipelineCacheDir,
    PipelineCacheState, PipelineCompile, SUBGROUP_SHADERS,
};
pub use backend::{BinaryOp, Counters, ReadFuture, ReduceOp, UnaryOp, Window2d};
pub use device::Device;
pub use error::{Error, Result};
pub use graph::{Conv2dOptions, Graph, NodeId, NodeKind, Pool2dOptions};
pub use ops::MAX_RANK;
pub use optim::{Adam, AdamW, Optimizer, Sgd};
pub use wgpu;
