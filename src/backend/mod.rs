//! Backends run kernels on buffers; they know nothing about graphs.
//!
//! The graph lowers itself into a list of `Kernel`s (plain data: "matmul these buffers into
//! that one", see `src/kernels/`), compiles it once into a program, and runs programs by id.
//! The GPU backend turns each kernel into cached pipelines, bind groups created once and
//! dispatches; the CPU backend runs the same list with each kernel's CPU reference.

pub mod cpu;
pub mod gpu;

use crate::error::Result;

pub(crate) use crate::kernels::Kernel;
pub use crate::kernels::{Bcast, BinaryOp, BufId, OptimRule, ReduceOp, UnaryOp, Window2d};

/// Index of a compiled program inside one executor.
pub(crate) type ProgramId = usize;

/// Counters an executor keeps, to prove that repeated steps allocate nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Queue submissions (one per forward, backward, train step or readback).
    pub submissions: u64,
    /// GPU buffers created (values, gradients, state, uniforms, staging).
    pub buffers_created: u64,
    /// Total bytes of those buffers.
    pub bytes_allocated: u64,
    /// Buffers currently alive in this executor.
    pub live_buffers: u64,
    /// Bytes currently held by live buffers.
    pub live_bytes: u64,
    /// Bind groups created.
    pub bind_groups_created: u64,
    /// Compute pipelines compiled for this graph (pipelines are cached per device, so a graph
    /// reusing another's pipelines compiles none).
    pub pipelines_compiled: u64,
    /// Kernels dispatched.
    pub dispatches: u64,
}

/// What a graph needs from a backend.
pub(crate) trait Executor {
    /// A zero-filled buffer of `len` elements.
    fn alloc(&mut self, len: usize, what: &str) -> Result<BufId>;
    /// Releases a buffer (GPU: back to the device pool). The id must not be used again.
    fn free(&mut self, buf: BufId);
    fn write(&mut self, buf: BufId, data: &[f64]) -> Result<()>;
    fn write_f32(&mut self, buf: BufId, data: &[f32]) -> Result<()>;
    fn read(&mut self, buf: BufId) -> Result<Vec<f64>>;
    fn read_f32(&mut self, buf: BufId) -> Result<Vec<f32>>;
    /// Prepare kernels once; the returned id is run any number of times.
    fn compile(&mut self, kernels: Vec<Kernel>) -> Result<ProgramId>;
    /// Run programs in order, as one submission.
    fn run(&mut self, programs: &[ProgramId]) -> Result<()>;
    /// Forget a compiled program (its bind groups are dropped).
    fn discard(&mut self, program: ProgramId);
    fn counters(&self) -> Counters;
    /// Blocks until submitted work has finished.
    fn wait(&mut self) -> Result<()>;
    /// Storage buffers one kernel may bind (fused kernels need more than the downlevel 4).
    fn max_storage_buffers(&self) -> u32;
    /// Whether an m×k·k×n matmul followed by bias-add and activation runs as one
    /// [`Kernel::MatMulBiasAct`] (GPU: where the matmul kernel chosen for the shape has the
    /// epilogue and six storage buffers may be bound).
    fn fuses_matmul_bias_act(&self, m: usize, k: usize, n: usize) -> bool;
    /// Whether a convolution runs as an implicit GEMM unless the graph says otherwise
    /// (`Graph::set_implicit_conv`).
    fn prefers_implicit_conv(&self) -> bool;
    /// Submit a copy and return a future that resolves with the data (GPU) or at once (CPU).
    fn read_async(&mut self, buf: BufId) -> Result<ReadFuture>;
}

/// Future returned by asynchronous readback; resolves to the buffer's f32 contents.
pub struct ReadFuture {
    pub(crate) inner: ReadInner,
}

pub(crate) enum ReadInner {
    Ready(Option<Result<Vec<f32>>>),
    Gpu(gpu::PendingRead),
}

impl std::future::Future for ReadFuture {
    type Output = Result<Vec<f32>>;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match &mut self.inner {
            ReadInner::Ready(v) => std::task::Poll::Ready(v.take().unwrap_or_else(|| Ok(Vec::new()))),
            ReadInner::Gpu(p) => p.poll(cx),
        }
    }
}
