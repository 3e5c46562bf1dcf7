//! # wgrad — a GPU tensor autograd engine on wgpu
//!
//! Build a computational graph on the CPU; its nodes own GPU buffers; forward ops run as WGSL
//! compute shaders; backward runs vector-Jacobian-product kernels on the device. The CPU only
//! decides the order and records dispatches.
//!
//! ```
//! use wgrad::{Device, Graph};
//! # fn main() -> wgrad::Result<()> {
//! let device = Device::auto();          // a GPU if one opens, else the CPU backend
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
//! See the README for the model in more depth.

#![warn(missing_docs)]

pub mod backend;
pub mod data;
pub mod device;
pub mod error;
pub mod graph;
pub mod io;
pub mod nn;
pub(crate) mod ops;
pub mod optim;
pub mod train;

pub use backend::gpu::{enumerate_adapters, DeviceInfo, GpuDevice, GpuOptions, MatmulKernel, SHADERS};
pub use backend::{BinaryOp, Counters, ReadFuture, ReduceOp, UnaryOp};
pub use device::Device;
pub use error::{Error, Result};
pub use graph::{Graph, NodeId, NodeKind};
pub use ops::MAX_RANK;
pub use optim::{Adam, Optimizer, Sgd};
pub use wgpu;
