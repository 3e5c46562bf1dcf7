//! The one error type of the crate.

use std::fmt;

/// Result alias used by every fallible public call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A shape written as `[2, 3]` in messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Dims(pub Vec<usize>);

impl fmt::Debug for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<&[usize]> for Dims {
    fn from(s: &[usize]) -> Self {
        Dims(s.to_vec())
    }
}

/// Everything that can go wrong in wgrad. Each variant says which operation failed and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two operand shapes are incompatible for `op`.
    #[error("{op}: shape mismatch between {lhs} and {rhs}")]
    ShapeMismatch {
        /// The operation that rejected the shapes.
        op: &'static str,
        /// Shape of the first operand.
        lhs: Dims,
        /// Shape of the second operand.
        rhs: Dims,
    },
    /// A single operand (or a requested shape) is not valid for `op`.
    #[error("{op}: invalid shape {shape}: {reason}")]
    InvalidShape {
        /// The operation that rejected the shape.
        op: &'static str,
        /// The offending shape.
        shape: Dims,
        /// Why it was rejected.
        reason: String,
    },
    /// An argument other than a shape is out of range.
    #[error("{op}: invalid argument: {reason}")]
    InvalidArgument {
        /// The operation that rejected the argument.
        op: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// Data written to a node does not have the node's number of elements.
    #[error("write to node {node} ({name}): expected {expected} values for shape {shape}, got {got}")]
    LengthMismatch {
        /// Node index.
        node: usize,
        /// Node name.
        name: String,
        /// Node shape.
        shape: Dims,
        /// Number of elements the node holds.
        expected: usize,
        /// Number of values supplied.
        got: usize,
    },
    /// `backward` was called on a node that is not a scalar.
    #[error("backward: the loss must be a scalar (one element), but node {node} ({name}) has shape {shape}")]
    NonScalarLoss {
        /// Node index.
        node: usize,
        /// Node name.
        name: String,
        /// Its shape.
        shape: Dims,
    },
    /// A node id was used with a graph that did not create it.
    #[error("node id {node} belongs to graph #{owner}, not to graph #{graph}")]
    ForeignNode {
        /// Node index.
        node: usize,
        /// Graph that created it.
        owner: u64,
        /// Graph it was used with.
        graph: u64,
    },
    /// A gradient was read that no backward pass has computed.
    #[error("gradient of node {node} ({name}) was never computed: run backward from a loss that depends on it, and make sure it requires a gradient")]
    GradientNotComputed {
        /// Node index.
        node: usize,
        /// Node name.
        name: String,
    },
    /// A node was written to that is not an input or a parameter.
    #[error("node {node} ({name}) is the result of {op}; only inputs and parameters can be written")]
    NotWritable {
        /// Node index.
        node: usize,
        /// Node name.
        name: String,
        /// The op that computes it.
        op: &'static str,
    },
    /// No GPU adapter could be opened. The message says why (naming `WGPU_BACKEND` or
    /// `WGPU_ADAPTER_NAME` when one of them selects nothing) and what to do instead.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The call would wait for the device, which a browser does not allow; `instead` names the
    /// asynchronous call to use.
    #[error("{what} would block, which a browser does not allow: use {instead}")]
    WouldBlock {
        /// The blocking call.
        what: &'static str,
        /// Its asynchronous counterpart.
        instead: &'static str,
    },
    /// The GPU device could not be created.
    #[error("could not create the GPU device: {0}")]
    DeviceCreation(String),
    /// The GPU reported that it ran out of memory.
    #[error("GPU out of memory during {during}: {detail}")]
    OutOfMemory {
        /// What wgrad was doing.
        during: &'static str,
        /// The driver's message.
        detail: String,
    },
    /// wgpu reported a validation or internal error.
    #[error("GPU error during {during}: {detail}")]
    Gpu {
        /// What wgrad was doing.
        during: &'static str,
        /// wgpu's message.
        detail: String,
    },
    /// The GPU device was lost (driver reset, removal); create a new device.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// A buffer request exceeds what the device allows.
    #[error("{what}: {size} bytes exceeds the device limit {limit_name} = {limit} bytes")]
    LimitExceeded {
        /// What was being allocated.
        what: String,
        /// Requested size in bytes.
        size: u64,
        /// The wgpu limit that was exceeded.
        limit_name: &'static str,
        /// Its value.
        limit: u64,
    },
    /// `check_finite` found a NaN or infinity.
    #[error("non-finite {what} at node {node} ({name}, {op}): element {index} is {value}")]
    NonFinite {
        /// Node index (the first in topological order with a non-finite entry).
        node: usize,
        /// Node name.
        name: String,
        /// The op computing it.
        op: &'static str,
        /// "value" or "gradient".
        what: &'static str,
        /// Flat index of the first non-finite element.
        index: usize,
        /// That element.
        value: f32,
    },
    /// No optimizer was configured before `step`.
    #[error("no optimizer configured: call Graph::set_optimizer first")]
    NoOptimizer,
    /// A malformed or unexpected file.
    #[error("{file}: {reason}")]
    Format {
        /// The file (or stream) being read.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor in a file does not match the model.
    #[error("tensor '{name}': {reason}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An operating-system I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn shape(op: &'static str, lhs: &[usize], rhs: &[usize]) -> Self {
        Error::ShapeMismatch {
            op,
            lhs: lhs.into(),
            rhs: rhs.into(),
        }
    }

    pub(crate) fn invalid_shape(op: &'static str, shape: &[usize], reason: impl Into<String>) -> Self {
        Error::InvalidShape {
            op,
            shape: shape.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn arg(op: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            reason: reason.into(),
        }
    }

    pub(crate) fn format(file: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Format {
            file: file.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
