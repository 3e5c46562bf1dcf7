//! Backends run kernels on buffers; they know nothing about graphs.
//!
//! The graph lowers itself into a list of `Kernel`s (plain data: "matmul these buffers into
//! that one"), compiles it once into a program, and runs programs by id. The GPU backend turns
//! each kernel into a cached pipeline, a bind group created once and a dispatch; the CPU backend
//! interprets the same list with the reference implementations in [`cpu`].

pub mod cpu;
pub mod gpu;

use crate::error::Result;

/// Index of a buffer inside one executor.
pub type BufId = usize;

/// Index of a compiled program inside one executor.
pub(crate) type ProgramId = usize;

/// Elementwise functions of one argument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// σ(x) = 1 / (1 + e^(−x)); its VJP uses the saved output: g·y·(1−y).
    Sigmoid,
    /// max(x, 0); VJP `g·[x > 0]`.
    Relu,
    /// tanh(x); VJP g·(1 − y²).
    Tanh,
    /// e^x; VJP g·y.
    Exp,
    /// ln x; VJP g / x.
    Log,
    /// −x; VJP −g.
    Neg,
    /// α·x; VJP α·g.
    Scale(f32),
    /// x²; VJP 2·g·x.
    Square,
}

impl UnaryOp {
    /// Every unary op, with `alpha` as the scale factor of [`UnaryOp::Scale`].
    pub fn all(alpha: f32) -> [UnaryOp; 8] {
        use UnaryOp::*;
        [Sigmoid, Relu, Tanh, Exp, Log, Neg, Scale(alpha), Square]
    }

    /// Short lowercase name, as used in shader entry points and DOT labels.
    pub fn name(&self) -> &'static str {
        match self {
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Relu => "relu",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Neg => "neg",
            UnaryOp::Scale(_) => "scale",
            UnaryOp::Square => "square",
        }
    }
    pub(crate) fn code(&self) -> u32 {
        match self {
            UnaryOp::Sigmoid => 0,
            UnaryOp::Relu => 1,
            UnaryOp::Tanh => 2,
            UnaryOp::Exp => 3,
            UnaryOp::Log => 4,
            UnaryOp::Neg => 5,
            UnaryOp::Scale(_) => 6,
            UnaryOp::Square => 7,
        }
    }
    pub(crate) fn alpha(&self) -> f32 {
        match self {
            UnaryOp::Scale(a) => *a,
            _ => 0.0,
        }
    }
}

/// Elementwise functions of two broadcast arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
}

impl BinaryOp {
    /// Every binary op.
    pub const ALL: [BinaryOp; 4] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];

    /// Short lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
    pub(crate) fn code(&self) -> u32 {
        match self {
            BinaryOp::Add => 0,
            BinaryOp::Sub => 1,
            BinaryOp::Mul => 2,
            BinaryOp::Div => 3,
        }
    }
}

/// Reductions along one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Σ
    Sum,
    /// Σ / n
    Mean,
    /// max; the VJP routes the gradient to the first maximal element.
    Max,
}

impl ReduceOp {
    /// Every reduction.
    pub const ALL: [ReduceOp; 3] = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max];

    /// Short lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
        }
    }
}

/// Broadcast geometry of a binary op, padded to rank 4 (leading dims of 1).
/// Strides are element strides into each operand; 0 on a broadcast axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bcast {
    /// Output shape.
    pub out: [usize; 4],
    /// Shape of the first operand.
    pub a_shape: [usize; 4],
    /// Shape of the second operand.
    pub b_shape: [usize; 4],
}

impl Bcast {
    /// Elements of the output.
    pub fn numel(&self) -> usize {
        self.out.iter().product()
    }
    /// Element strides of a contiguous tensor, 0 on axes of extent 1.
    pub fn strides(shape: &[usize; 4]) -> [usize; 4] {
        // Contiguous strides with 0 on axes of extent 1 (they broadcast).
        let mut s = [0; 4];
        let mut acc = 1;
        for d in (0..4).rev() {
            s[d] = if shape[d] == 1 { 0 } else { acc };
            acc *= shape[d];
        }
        s
    }
}

/// Optimizer update rules, run in place on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimRule {
    /// v = μ·v + (g + λ·p); p −= lr·v. Hyper buffer: [lr, μ, λ].
    Sgd,
    /// Bias-corrected Adam with L2 weight decay. Hyper buffer: [lr, β1, β2, ε, λ, 1−β1^t, 1−β2^t].
    Adam,
}

/// One unit of device work. Lengths are element counts; `acc` means "add into `out`"
/// instead of overwriting it (gradient accumulation).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kernel {
    /// out[i] = value (or += value when acc).
    Fill {
        out: BufId,
        len: usize,
        value: f32,
        acc: bool,
    },
    /// out (+)= x
    Copy {
        x: BufId,
        out: BufId,
        len: usize,
        acc: bool,
    },
    /// out (+)= op(A)·op(B), A is m×k after the optional transpose, B is k×n.
    MatMul {
        a: BufId,
        b: BufId,
        out: BufId,
        m: usize,
        k: usize,
        n: usize,
        ta: bool,
        tb: bool,
        acc: bool,
    },
    /// out[r, c] = x[r, c] + bias[c]
    BiasAdd {
        x: BufId,
        bias: BufId,
        out: BufId,
        rows: usize,
        cols: usize,
    },
    /// out = f(x)
    Unary {
        op: UnaryOp,
        x: BufId,
        out: BufId,
        len: usize,
    },
    /// d_x (+)= g · f'(x) (using the saved output y where the rule allows)
    UnaryBackward {
        op: UnaryOp,
        x: BufId,
        y: BufId,
        g: BufId,
        out: BufId,
        len: usize,
        acc: bool,
    },
    /// out = a ∘ b with broadcasting
    Binary {
        op: BinaryOp,
        a: BufId,
        b: BufId,
        out: BufId,
        bc: Bcast,
    },
    /// d_a or d_b (which = 0 or 1) (+)= reduce over broadcast axes of g·∂(a∘b)
    BinaryBackward {
        op: BinaryOp,
        a: BufId,
        b: BufId,
        g: BufId,
        out: BufId,
        bc: Bcast,
        which: u32,
        acc: bool,
    },
    /// x viewed as [outer, axis, inner]; out[o, i] (+)= reduce_a x[o, a, i]; Max also writes the argmax index into `arg`.
    Reduce {
        op: ReduceOp,
        x: BufId,
        out: BufId,
        arg: BufId,
        outer: usize,
        axis: usize,
        inner: usize,
        acc: bool,
    },
    /// d_x[o, a, i] (+)= g[o, i] · (1 | 1/n | [a == arg[o, i]])
    ReduceBackward {
        op: ReduceOp,
        g: BufId,
        arg: BufId,
        out: BufId,
        outer: usize,
        axis: usize,
        inner: usize,
        acc: bool,
    },
    /// Row-wise softmax of a rows×cols matrix.
    Softmax {
        x: BufId,
        out: BufId,
        rows: usize,
        cols: usize,
    },
    /// d_x (+)= y ⊙ (g − Σ_row g⊙y)
    SoftmaxBackward {
        y: BufId,
        g: BufId,
        out: BufId,
        rows: usize,
        cols: usize,
        acc: bool,
    },
    /// Per row: probs = softmax(logits), loss_rows[r] = logsumexp − logits[r, label[r]].
    SoftmaxXent {
        logits: BufId,
        labels: BufId,
        probs: BufId,
        loss_rows: BufId,
        rows: usize,
        cols: usize,
    },
    /// d_logits (+)= g[0] · (probs − onehot(labels)) / rows
    SoftmaxXentBackward {
        probs: BufId,
        labels: BufId,
        g: BufId,
        out: BufId,
        rows: usize,
        cols: usize,
        acc: bool,
    },
    /// out[0] = mean((p − t)²)
    Mse { p: BufId, t: BufId, out: BufId, len: usize },
    /// d_p or d_t (which = 0 or 1) (+)= ±g[0] · 2(p − t) / len
    MseBackward {
        p: BufId,
        t: BufId,
        g: BufId,
        out: BufId,
        len: usize,
        which: u32,
        acc: bool,
    },
    /// out (+)= xᵀ for x of shape rows×cols
    Transpose {
        x: BufId,
        out: BufId,
        rows: usize,
        cols: usize,
        acc: bool,
    },
    /// Fused forward of Z = XW + b, H = f(Z): writes both Z and H.
    BiasActForward {
        op: UnaryOp,
        xw: BufId,
        bias: BufId,
        z: BufId,
        y: BufId,
        rows: usize,
        cols: usize,
    },
    /// Fused layer forward with the matmul: XW = A·B (A m×k, B k×n), Z = XW + b, H = f(Z); writes
    /// all three. Emitted only where [`Executor::fuses_matmul_bias_act`] says the backend has it.
    MatMulBiasAct {
        op: UnaryOp,
        a: BufId,
        b: BufId,
        bias: BufId,
        xw: BufId,
        z: BufId,
        y: BufId,
        m: usize,
        k: usize,
        n: usize,
    },
    /// Fused VJP of H = f(Z), Z = XW + b: dz = g ⊙ f'(z, y); dx (+)= dz; db (+)= column sums of dz.
    BiasActBackward {
        op: UnaryOp,
        z: BufId,
        y: BufId,
        g: BufId,
        dz: BufId,
        dx: BufId,
        db: BufId,
        rows: usize,
        cols: usize,
        acc_dx: bool,
        acc_db: bool,
    },
    /// In-place parameter update from its gradient and state buffers.
    Optim {
        rule: OptimRule,
        param: BufId,
        grad: BufId,
        /// SGD: velocity (len). Adam: first moment then second moment (2·len), packed so the
        /// kernel needs four storage bindings (the downlevel limit).
        state: BufId,
        hyper: BufId,
        len: usize,
    },
}

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
