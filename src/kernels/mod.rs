//! Kernels: the units of device work a graph lowers to, one family per module beside its shader.
//!
//! A family module (say [`unary`], beside `shaders/unary.wgsl`) holds everything about it:
//! - its kernel structs, plain data ("apply this op to that buffer, writing this one");
//! - a `Params` struct declared with [`wgsl_params!`], the one definition of the shader's uniform
//!   `Params` on the Rust side (a test checks it against naga's reflection of the shader);
//! - the GPU lowering ([`KernelDef::lower`]): entry point, override constants, parameters,
//!   bindings and grid, split into several dispatches where one would loop too long;
//! - the CPU reference ([`KernelDef::run_cpu`]), generic over f32 and f64, which the GPU
//!   results are tested against and the finite-difference checks run in f64;
//! - `examples()`: representative kernels whose pipelines the naga translation test covers.
//!
//! [`Kernel`] lists the kernels, one line each; both executors dispatch through it.

mod real;

pub(crate) mod binary;
pub(crate) mod conv;
pub(crate) mod dropout;
pub(crate) mod fused;
pub(crate) mod gather;
pub(crate) mod layout;
pub(crate) mod loss;
pub(crate) mod mask;
pub(crate) mod matmul;
mod matmul_config;
pub(crate) mod misc;
pub(crate) mod optim;
pub(crate) mod par;
pub(crate) mod reduce;
pub(crate) mod softmax;
pub(crate) mod unary;

pub use binary::{Bcast, BinaryOp};
pub use conv::Window2d;
pub use optim::OptimRule;
pub(crate) use real::put;
pub use real::Real;
pub use reduce::ReduceOp;
pub use unary::UnaryOp;

// The kernel structs, for building kernel lists: `Kernel::MatMul(kn::MatMul { .. })`.
pub(crate) use binary::{Binary, BinaryBackward};
pub(crate) use conv::{Col2im, Im2col, Pool, PoolBackward};
pub(crate) use dropout::Dropout;
pub(crate) use fused::{BiasActBackward, BiasActForward, MatMulBiasAct};
pub(crate) use gather::{Gather, GatherBackward};
pub(crate) use layout::{StridedCopy, View};
pub(crate) use loss::{Mse, MseBackward, SumSquares};
pub(crate) use mask::{MaskFill, MaskFillBackward};
pub(crate) use matmul::MatMul;
pub(crate) use misc::{BiasAdd, Copy, Fill, Transpose};
pub(crate) use optim::Optim;
pub(crate) use reduce::{Reduce, ReduceBackward};
pub(crate) use softmax::{Normalize, NormalizeBackward, Softmax, SoftmaxBackward, SoftmaxXent, SoftmaxXentBackward};
pub(crate) use unary::{Unary, UnaryBackward};

use crate::error::{Error, Result};
use matmul::MatmulConfig;
use std::sync::LazyLock;

/// Index of a buffer inside one executor.
pub type BufId = usize;

/// What every kernel provides: its GPU dispatches and its CPU reference.
pub(crate) trait KernelDef {
    /// The dispatches that run this kernel on a GPU (several where a loop is split).
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>>;
    /// Runs the kernel on the CPU buffers `b` (indexed by [`BufId`]).
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]);
}

macro_rules! kernels {
    ($($(#[$doc:meta])* $variant:ident($ty:ty),)*) => {
        /// One unit of device work. Lengths are element counts; `acc` means "add into the
        /// output" instead of overwriting it (gradient accumulation).
        #[derive(Clone, Debug, PartialEq)]
        pub(crate) enum Kernel {
            $($(#[$doc])* $variant($ty),)*
        }

        impl Kernel {
            /// The GPU dispatches of this kernel.
            pub(crate) fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
                match self {
                    $(Kernel::$variant(k) => k.lower(cx),)*
                }
            }
            /// Runs this kernel on CPU buffers.
            #[inline(always)]
            pub(crate) fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
                match self {
                    $(Kernel::$variant(k) => k.run_cpu(b),)*
                }
            }
        }

        $(impl From<$ty> for Kernel {
            fn from(k: $ty) -> Kernel {
                Kernel::$variant(k)
            }
        })*
    };
}

kernels! {
    /// out (+)= value
    Fill(misc::Fill),
    /// out (+)= x
    Copy(misc::Copy),
    /// out = x + bias (per column)
    BiasAdd(misc::BiasAdd),
    /// out (+)= xᵀ
    Transpose(misc::Transpose),
    /// out (+)= op(A)·op(B)
    MatMul(matmul::MatMul),
    /// out = f(x)
    Unary(unary::Unary),
    /// d_x (+)= g · f'(x)
    UnaryBackward(unary::UnaryBackward),
    /// out = a ∘ b, broadcast
    Binary(binary::Binary),
    /// d_a or d_b (+)= g · ∂(a∘b), summed over broadcast axes
    BinaryBackward(binary::BinaryBackward),
    /// sum, mean or max along an axis
    Reduce(reduce::Reduce),
    /// VJP of a reduction
    ReduceBackward(reduce::ReduceBackward),
    /// row-wise softmax
    Softmax(softmax::Softmax),
    /// VJP of softmax
    SoftmaxBackward(softmax::SoftmaxBackward),
    /// softmax cross-entropy per row
    SoftmaxXent(softmax::SoftmaxXent),
    /// VJP of softmax cross-entropy
    SoftmaxXentBackward(softmax::SoftmaxXentBackward),
    /// row-wise normalisation (layer norm without its affine part)
    Normalize(softmax::Normalize),
    /// VJP of the normalisation
    NormalizeBackward(softmax::NormalizeBackward),
    /// mean squared error
    Mse(loss::Mse),
    /// VJP of the mean squared error
    MseBackward(loss::MseBackward),
    /// fused bias-add and activation
    BiasActForward(fused::BiasActForward),
    /// fused matmul, bias-add and activation
    MatMulBiasAct(fused::MatMulBiasAct),
    /// fused VJP of bias-add and activation
    BiasActBackward(fused::BiasActBackward),
    /// in-place optimizer update
    Optim(optim::Optim),
    /// out view (+)= x view, elementwise over an index space
    StridedCopy(layout::StridedCopy),
    /// rows of a table by ids
    Gather(gather::Gather),
    /// the table's gradient: rows of g added at their ids
    GatherBackward(gather::GatherBackward),
    /// a fill value where a mask is set
    MaskFill(mask::MaskFill),
    /// VJP of the masked fill
    MaskFillBackward(mask::MaskFillBackward),
    /// a squared norm, added into one element
    SumSquares(loss::SumSquares),
    /// sliding windows of an image laid out as rows
    Im2col(conv::Im2col),
    /// VJP of im2col: window gradients added back at their pixels
    Col2im(conv::Col2im),
    /// max or average pooling straight from the image
    Pool(conv::Pool),
    /// VJP of the pooling: gathered per pixel
    PoolBackward(conv::PoolBackward),
    /// x times a random keep mask, the mask saved
    Dropout(dropout::Dropout),
}

/// Representative kernels of every family, for the pipeline-variant list.
fn examples() -> Vec<Kernel> {
    [
        misc::examples(),
        matmul::examples(),
        unary::examples(),
        binary::examples(),
        reduce::examples(),
        softmax::examples(),
        loss::examples(),
        fused::examples(),
        optim::examples(),
        layout::examples(),
        gather::examples(),
        mask::examples(),
        conv::examples(),
        dropout::examples(),
    ]
    .concat()
}

// ---------------------------------------------------------------------------------------------
// WGSL sources

/// The shader families: name, parameter struct, files. Each is compiled as the prelude, the
/// generated activation functions, the generated `struct Params`, then its files (WGSL has no
/// include).
type Family = (&'static str, fn() -> String, &'static [&'static str]);
const FAMILIES: &[Family] = &[
    (
        "misc",
        misc::MiscParams::wgsl,
        &[include_str!("../../shaders/misc.wgsl")],
    ),
    (
        "matmul",
        matmul::MatmulParams::wgsl,
        &[
            include_str!("../../shaders/matmul_common.wgsl"),
            include_str!("../../shaders/matmul.wgsl"),
        ],
    ),
    (
        "matmul_sg",
        matmul::MatmulParams::wgsl,
        &[
            include_str!("../../shaders/matmul_common.wgsl"),
            include_str!("../../shaders/matmul_sg.wgsl"),
        ],
    ),
    (
        "unary",
        unary::UnaryParams::wgsl,
        &[include_str!("../../shaders/unary.wgsl")],
    ),
    (
        "binary",
        binary::BinaryParams::wgsl,
        &[include_str!("../../shaders/binary.wgsl")],
    ),
    (
        "reduce",
        reduce::ReduceParams::wgsl,
        &[include_str!("../../shaders/reduce.wgsl")],
    ),
    (
        "softmax",
        softmax::SoftmaxParams::wgsl,
        &[include_str!("../../shaders/softmax.wgsl")],
    ),
    (
        "loss",
        loss::LossParams::wgsl,
        &[include_str!("../../shaders/loss.wgsl")],
    ),
    (
        "fused",
        fused::FusedParams::wgsl,
        &[include_str!("../../shaders/fused.wgsl")],
    ),
    (
        "optim",
        optim::OptimParams::wgsl,
        &[include_str!("../../shaders/optim.wgsl")],
    ),
    (
        "layout",
        layout::LayoutParams::wgsl,
        &[include_str!("../../shaders/layout.wgsl")],
    ),
    (
        "gather",
        gather::GatherParams::wgsl,
        &[include_str!("../../shaders/gather.wgsl")],
    ),
    (
        "mask",
        mask::MaskParams::wgsl,
        &[include_str!("../../shaders/mask.wgsl")],
    ),
    (
        "conv",
        conv::ConvParams::wgsl,
        &[include_str!("../../shaders/conv.wgsl")],
    ),
    (
        "dropout",
        dropout::DropoutParams::wgsl,
        &[include_str!("../../shaders/dropout.wgsl")],
    ),
];

/// The shader families that use subgroup operations: they are compiled only on devices created
/// with [`wgpu::Features::SUBGROUP`] and validated with naga's `SUBGROUP` capability.
pub const SUBGROUP_SHADERS: &[&str] = &["matmul_sg"];

/// Helpers every shader may use (`flat`, `nan`, `erf`), in front of every family.
const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// Every WGSL program of the crate, by family name, as the GPU compiles it: `shaders/prelude.wgsl`,
/// the activation functions generated from [`UnaryOp`]'s table, the family's `struct Params`
/// generated from its Rust parameter struct, then the family's files.
pub fn shader_sources() -> &'static [(&'static str, String)] {
    static SOURCES: LazyLock<Vec<(&'static str, String)>> = LazyLock::new(|| {
        let generated = unary::wgsl_functions();
        FAMILIES
            .iter()
            .map(|(name, params, files)| {
                let mut s = format!("{PRELUDE}\n{generated}\n{}", params());
                for f in *files {
                    s.push('\n');
                    s.push_str(f);
                }
                (*name, s)
            })
            .collect()
    });
    &SOURCES
}

/// The source of one family.
pub(crate) fn shader_source(name: &str) -> Option<&'static str> {
    shader_sources()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s.as_str())
}

// ---------------------------------------------------------------------------------------------
// Uniform parameters

/// Declares a family's uniform parameter struct: `#[repr(C)]`, plain old data, and the one
/// definition of the WGSL `struct Params` of the shaders named, which is generated from it and
/// put in front of them (a test checks the two layouts agree with naga's reflection). Fields
/// are `u32`, `f32` or `[u32; 4]` (a `vec4<u32>`).
macro_rules! wgsl_params {
    ($(#[$meta:meta])* $name:ident for $($shader:literal),+ { $($(#[$fm:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $($(#[$fm])* pub $field: $ty,)*
        }

        impl $crate::kernels::Params for $name {
            const SHADERS: &'static [&'static str] = &[$($shader),+];
            fn layout() -> $crate::kernels::ParamsLayout {
                vec![$((stringify!($field), std::mem::offset_of!($name, $field), std::mem::size_of::<$ty>()),)*]
            }
            fn wgsl() -> String {
                let mut s = format!("// Generated from {} in src/kernels/.\nstruct Params {{\n", stringify!($name));
                $(s.push_str(&format!("    {}: {},\n", stringify!($field), $crate::kernels::wgsl_type(stringify!($ty))));)*
                s.push_str("}\n");
                s
            }
        }
    };
}
pub(crate) use wgsl_params;

/// The WGSL type of a parameter field's Rust type.
pub(crate) fn wgsl_type(rust: &str) -> &'static str {
    match rust.replace(' ', "").as_str() {
        "u32" => "u32",
        "f32" => "f32",
        "[u32;4]" => "vec4<u32>",
        other => panic!("parameter field type {other} has no WGSL counterpart"),
    }
}

/// A uniform parameter struct declared with [`wgsl_params!`].
pub(crate) trait Params: bytemuck::Pod {
    /// The shader families whose `Params` this struct mirrors.
    const SHADERS: &'static [&'static str];
    /// (field, byte offset, byte size) in declaration order.
    fn layout() -> ParamsLayout;
    /// The WGSL declaration `struct Params { … }`, put in front of the family's shader.
    fn wgsl() -> String;
    /// The struct as the words written to the uniform buffer.
    fn words(&self) -> Vec<u32> {
        bytemuck::cast_slice(bytemuck::bytes_of(self)).to_vec()
    }
}

/// A parameter struct's fields: (name, byte offset, byte size), in declaration order.
pub type ParamsLayout = Vec<(&'static str, usize, usize)>;

/// Every family's parameter layout as (shader, fields): what the reflection test compares.
#[doc(hidden)]
pub fn params_layouts() -> Vec<(&'static str, ParamsLayout)> {
    fn of<P: Params>() -> Vec<(&'static str, ParamsLayout)> {
        P::SHADERS.iter().map(|s| (*s, P::layout())).collect()
    }
    [
        of::<misc::MiscParams>(),
        of::<matmul::MatmulParams>(),
        of::<unary::UnaryParams>(),
        of::<binary::BinaryParams>(),
        of::<reduce::ReduceParams>(),
        of::<softmax::SoftmaxParams>(),
        of::<loss::LossParams>(),
        of::<fused::FusedParams>(),
        of::<optim::OptimParams>(),
        of::<layout::LayoutParams>(),
        of::<gather::GatherParams>(),
        of::<mask::MaskParams>(),
        of::<conv::ConvParams>(),
        of::<dropout::DropoutParams>(),
    ]
    .concat()
}

// ---------------------------------------------------------------------------------------------
// Lowering

/// One dispatch, described before it is bound: which entry point, its constants, its
/// parameter words (binding 0) and its storage bindings (binding, buffer, read-only).
#[derive(Clone, Debug)]
pub(crate) struct Launch {
    pub shader: &'static str,
    pub entry: &'static str,
    pub consts: Vec<(&'static str, f64)>,
    pub params: Vec<u32>,
    pub binds: Vec<(u32, BufId, bool)>,
    pub groups: [u32; 3],
}

impl Launch {
    /// A launch of `entry` in the (first) family of `P`, without override constants.
    pub fn new<P: Params>(entry: &'static str, p: &P, binds: Vec<(u32, BufId, bool)>, groups: [u32; 3]) -> Launch {
        Launch {
            shader: P::SHADERS[0],
            entry,
            consts: vec![],
            params: p.words(),
            binds,
            groups,
        }
    }

    /// The same launch with an override constant added.
    pub fn with(mut self, name: &'static str, value: impl Into<f64>) -> Launch {
        self.consts.push((name, value.into()));
        self
    }

    /// Copies of this launch, one per parameter struct in `params`.
    pub fn split<P: Params>(&self, params: impl IntoIterator<Item = P>) -> Vec<Launch> {
        params
            .into_iter()
            .map(|p| Launch {
                params: p.words(),
                ..self.clone()
            })
            .collect()
    }
}

/// What lowering needs to know of the device: its grid limit and its matmul configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cx {
    pub max_dim: u32,
    pub mm: MatmulConfig,
}

impl Cx {
    /// Grid of `n` workgroups, folded into 2-D past the per-dimension limit.
    pub fn grid(&self, n: usize) -> Result<[u32; 3]> {
        grid(n, self.max_dim)
    }
    /// Grid of workgroups of 256 invocations covering `len` elements.
    pub fn elems(&self, len: usize) -> Result<[u32; 3]> {
        grid(len.div_ceil(256), self.max_dim)
    }
}

/// A size as a shader word (sizes are checked against `u32` before lowering).
pub(crate) fn u(v: usize) -> u32 {
    v as u32
}

/// Workgroup grid covering `n` workgroups, folded into 2-D past the per-dimension limit.
pub(crate) fn grid(n: usize, max_dim: u32) -> Result<[u32; 3]> {
    let n = n.max(1) as u64;
    let max = max_dim as u64;
    if n <= max {
        return Ok([n as u32, 1, 1]);
    }
    let y = n.div_ceil(max);
    if y > max {
        return Err(Error::LimitExceeded {
            what: format!("dispatch of {n} workgroups"),
            size: n,
            limit_name: "max_compute_workgroups_per_dimension²",
            limit: max * max,
        });
    }
    Ok([max as u32, y as u32, 1])
}

/// Loop iterations one invocation may run, all loops together, before a kernel is split into
/// several dispatches. Mesa's llvmpipe (lavapipe) counts the iterations of every loop of a
/// shader invocation in one counter and cuts the invocation short at 65,535; this budget keeps
/// every kernel well inside that, with the remainder left for fixed-length loops.
pub(crate) const LOOP_BUDGET: usize = 16384;
/// Most dispatches one kernel is split into (beyond that the shape is refused).
pub(crate) const MAX_SPLIT: usize = 65536;

/// Slices `0 .. len` into pieces of at most `slice`, refusing more than [`MAX_SPLIT`] of them.
pub(crate) fn slices(len: usize, slice: usize, what: &dyn Fn() -> String) -> Result<Vec<(usize, usize)>> {
    let n = len.div_ceil(slice).max(1);
    if n > MAX_SPLIT {
        return Err(Error::LimitExceeded {
            what: what(),
            size: len as u64,
            limit_name: "loop iterations per invocation × dispatches per kernel",
            limit: (slice * MAX_SPLIT) as u64,
        });
    }
    Ok((0..n).map(|i| (i * slice, ((i + 1) * slice).min(len))).collect())
}

/// A compute pipeline the crate can create: shader family, entry point and override constants.
#[derive(Clone, Debug, PartialEq)]
#[doc(hidden)]
pub struct PipelineVariant {
    /// Shader family (a key of [`shader_sources`]).
    pub shader: &'static str,
    /// Entry point.
    pub entry: &'static str,
    /// Pipeline-overridable constants.
    pub constants: Vec<(&'static str, f64)>,
}

/// Every (shader, entry point, constants) combination the kernels lower to, under every matmul
/// configuration an adapter class can get. The naga translation test checks each on every
/// target language, so a variant that only some adapter would compile is still covered.
#[doc(hidden)]
pub fn pipeline_variants() -> Vec<PipelineVariant> {
    let ks = examples();
    let mut out: Vec<PipelineVariant> = Vec::new();
    for mm in MatmulConfig::every() {
        let cx = Cx { max_dim: 65535, mm };
        for k in &ks {
            if let Kernel::MatMulBiasAct(f) = k {
                if !mm.has_epilogue(f.m, f.k, f.n) {
                    continue;
                }
            }
            let ls = k
                .lower(&cx)
                .expect("representative kernels lower for every configuration");
            for l in ls {
                let v = PipelineVariant {
                    shader: l.shader,
                    entry: l.entry,
                    constants: l.consts,
                };
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// CPU buffers

/// Runs a block with buffer `out` taken out of the CPU buffers (so that inputs can be borrowed
/// alongside it): `with_out!(b, self.out, |o, b| …)`. A macro, not a function taking a closure,
/// so the block is compiled inside the executor's AVX2 build like the rest of the kernel.
/// The block must not `return` (nor use `?`): that would leave `out` taken, empty, and every
/// later kernel reading it would see no data.
macro_rules! with_out {
    ($bufs:expr, $id:expr, |$o:ident, $b:ident| $body:expr) => {{
        let (bufs, id) = ($bufs, $id);
        let mut $o = std::mem::take(&mut bufs[id]);
        let r = {
            let $b: &[Vec<_>] = &*bufs;
            let $o = &mut $o;
            $body
        };
        bufs[id] = $o;
        r
    }};
}
pub(crate) use with_out;

/// [`with_out!`] for a kernel writing several buffers: `with_outs!(b, [k.z, k.y], |[z, y], b| …)`.
macro_rules! with_outs {
    ($bufs:expr, [$($id:expr),+], |[$($o:ident),+], $b:ident| $body:expr) => {{
        let bufs = $bufs;
        let ids = [$($id),+];
        let mut taken = ids.map(|id| std::mem::take(&mut bufs[id]));
        {
            let $b: &[Vec<_>] = &*bufs;
            let [$($o),+] = &mut taken;
            $body
        };
        for (id, v) in ids.into_iter().zip(taken) {
            bufs[id] = v;
        }
    }};
}
pub(crate) use with_outs;

#[cfg(test)]
mod tests {
    use super::grid;

    #[test]
    fn huge_vectors_use_a_two_dimensional_grid() {
        assert_eq!(grid(10, 65535).unwrap(), [10, 1, 1]);
        assert_eq!(grid(65535 * 3 + 1, 65535).unwrap(), [65535, 4, 1]);
        assert!(grid(65535usize * 65535 + 1, 65535).is_err());
    }
}
