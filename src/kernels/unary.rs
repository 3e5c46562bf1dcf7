//! Elementwise functions of one argument (`shaders/unary.wgsl`), and the table of them.
//!
//! [`unary_ops!`] is the one place an op is defined: its name, its value and derivative in
//! WGSL (from which the prelude's `unary_f` / `unary_df` are generated, so the unary kernels,
//! the fused bias-activation kernels and the matmul epilogue all compute the same thing) and in
//! Rust for the CPU reference. An op missing from either cannot compile; an unknown op code in
//! a shader yields NaN, never another op.

use super::{par, put, wgsl_params, with_out, BufId, Cx, Kernel, KernelDef, Launch, Real};
use crate::error::Result;

/// `activation` or `elementwise` as a bool (any other word does not compile).
macro_rules! is_activation {
    (activation) => {
        true
    };
    (elementwise) => {
        false
    };
}

/// Defines [`UnaryOp`] and its table. First the names of the input, the saved output and the
/// op's parameter; then per op: doc comment, variant (with its parameter type, if any), name,
/// `activation` (a layer activation, fused with the bias-add before it; the fused kernels pass
/// no parameter) or `elementwise`, `wgsl(value; derivative)` (an expression, or statements ending in `return`), and
/// `cpu(value; derivative)`, the same in Rust over `T: Real`.
macro_rules! unary_ops {
    (|$x:ident, $y:ident, $a:ident|
     $($(#[$doc:meta])* $v:ident $(($pt:ty))? = $name:literal, $kind:ident,
        wgsl($wf:literal; $wdf:literal),
        cpu($cf:expr; $cdf:expr);)*) => {
        /// Elementwise functions of one argument.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum UnaryOp {
            $($(#[$doc])* $v $(($pt))?,)*
        }

        impl UnaryOp {
            /// Every unary op, with `alpha` as the parameter of those that take one.
            pub fn all(alpha: f32) -> Vec<UnaryOp> {
                vec![$(UnaryOp::$v $(({ let p: $pt = alpha; p }))?,)*]
            }

            /// Short lowercase name, as used in messages, DOT labels and on command lines.
            pub fn name(&self) -> &'static str {
                match self {
                    $(UnaryOp::$v { .. } => $name,)*
                }
            }

            /// Whether the op is a layer activation (marked `activation` in the table rather than
            /// `elementwise`): an MLP may use it, and the graph fuses it with the bias-add before
            /// it (and the matmul before that) into one kernel.
            pub fn fusable(&self) -> bool {
                match self {
                    $(UnaryOp::$v { .. } => is_activation!($kind),)*
                }
            }

            /// The op's code in the shaders (its position in the table).
            pub(crate) fn code(&self) -> u32 {
                const NAMES: &[&str] = &[$($name),*];
                NAMES.iter().position(|n| *n == self.name()).expect("every op is in the table") as u32
            }

            /// The value f(x); `a` is the op's parameter.
            #[inline(always)]
            #[allow(unused_variables)]
            pub fn value<T: Real>(self, $x: T) -> T {
                let $a = T::from_f64(self.alpha() as f64);
                match self {
                    $(UnaryOp::$v { .. } => $cf,)*
                }
            }

            /// The derivative dy/dx, from the input x and the saved output y = f(x).
            #[inline(always)]
            #[allow(unused_variables)]
            pub fn derivative<T: Real>(self, $x: T, $y: T) -> T {
                let $a = T::from_f64(self.alpha() as f64);
                match self {
                    $(UnaryOp::$v { .. } => $cdf,)*
                }
            }

            /// `dst[i] = f(src[i])`: one loop per op, the op chosen outside it, so each loop
            /// is straight-line code the compiler can vectorise.
            #[inline(always)]
            #[allow(unused_variables)]
            pub(crate) fn map_values<T: Real>(self, src: &[T], dst: &mut [T]) {
                let $a = T::from_f64(self.alpha() as f64);
                let n = src.len().min(dst.len());
                let (src, dst) = (&src[..n], &mut dst[..n]);
                match self {
                    $(UnaryOp::$v { .. } => {
                        for i in 0..n {
                            let $x = src[i];
                            dst[i] = $cf;
                        }
                    })*
                }
            }

            /// `out[i] (+)= g[i]·f'(x[i])` (from x and the saved y = f(x)), one loop per op.
            #[inline(always)]
            #[allow(unused_variables)]
            pub(crate) fn map_grads<T: Real>(self, xs: &[T], ys: &[T], g: &[T], out: &mut [T], acc: bool) {
                let $a = T::from_f64(self.alpha() as f64);
                let n = xs.len().min(ys.len()).min(g.len()).min(out.len());
                let (xs, ys, g, out) = (&xs[..n], &ys[..n], &g[..n], &mut out[..n]);
                match self {
                    $(UnaryOp::$v { .. } => {
                        for i in 0..n {
                            let ($x, $y) = (xs[i], ys[i]);
                            put(&mut out[i], g[i] * $cdf, acc);
                        }
                    })*
                }
            }
        }

        /// The WGSL functions `unary_f(op, x, a)` and `unary_df(op, x, y, a)`, one case per op.
        pub(crate) fn wgsl_functions() -> String {
            let ops = UnaryOp::all(1.0);
            let cases = |body: &dyn Fn(usize) -> &'static str| {
                ops.iter()
                    .map(|op| {
                        let i = op.code() as usize;
                        let b = body(i);
                        let b = if b.contains("return") { b.to_string() } else { format!("return {b};") };
                        format!("        case {i}u: {{ {b} }} // {}\n", op.name())
                    })
                    .collect::<String>()
            };
            const F: &[&str] = &[$($wf),*];
            const DF: &[&str] = &[$($wdf),*];
            format!(
                "// Generated from the table in src/kernels/unary.rs.\n\
                 fn unary_f(op: u32, x: f32, a: f32) -> f32 {{\n    switch op {{\n{}        default: {{ return nan(); }}\n    }}\n}}\n\n\
                 fn unary_df(op: u32, x: f32, y: f32, a: f32) -> f32 {{\n    switch op {{\n{}        default: {{ return nan(); }}\n    }}\n}}\n",
                cases(&|i| F[i]),
                cases(&|i| DF[i]),
            )
        }
    };
}

// tanh saturates to ±1 in f32 beyond |x| = 10; clamping keeps drivers whose tanh overflows honest.
unary_ops! {
    |x, y, a|
    /// σ(x) = 1 / (1 + e^(−x)); its VJP uses the saved output: g·y·(1−y).
    Sigmoid = "sigmoid", activation,
        wgsl("1.0 / (1.0 + exp(-x))"; "y * (1.0 - y)"),
        cpu(T::one() / (T::one() + (-x).exp()); y * (T::one() - y));
    /// max(x, 0); VJP `g·[x > 0]`.
    Relu = "relu", activation,
        wgsl("max(x, 0.0)"; "select(0.0, 1.0, x > 0.0)"),
        cpu(if x > T::zero() { x } else { T::zero() }; if x > T::zero() { T::one() } else { T::zero() });
    /// tanh(x); VJP g·(1 − y²).
    Tanh = "tanh", activation,
        wgsl("tanh(clamp(x, -15.0, 15.0))"; "1.0 - y * y"),
        cpu(x.tanh(); T::one() - y * y);
    /// e^x; VJP g·y.
    Exp = "exp", elementwise,
        wgsl("exp(x)"; "y"),
        cpu(x.exp(); y);
    /// ln x; VJP g / x.
    Log = "log", elementwise,
        wgsl("log(x)"; "1.0 / x"),
        cpu(x.ln(); T::one() / x);
    /// −x; VJP −g.
    Neg = "neg", elementwise,
        wgsl("-x"; "-1.0"),
        cpu(-x; -T::one());
    /// α·x; VJP α·g.
    Scale(f32) = "scale", elementwise,
        wgsl("a * x"; "a"),
        cpu(a * x; a);
    /// x²; VJP 2·g·x.
    Square = "square", elementwise,
        wgsl("x * x"; "2.0 * x"),
        cpu(x * x; T::from_f64(2.0) * x);
    /// √x; VJP g / (2y).
    Sqrt = "sqrt", elementwise,
        wgsl("sqrt(x)"; "0.5 / y"),
        cpu(x.sqrt(); T::from_f64(0.5) / y);
    /// 1/√x; VJP −g·y³/2.
    Rsqrt = "rsqrt", elementwise,
        wgsl("inverseSqrt(x)"; "-0.5 * y * y * y"),
        cpu(T::one() / x.sqrt(); T::from_f64(-0.5) * y * y * y);
    /// x + α; VJP g.
    AddScalar(f32) = "add_scalar", elementwise,
        wgsl("x + a"; "1.0"),
        cpu(x + a; T::one());
    /// GELU, tanh form (as PyTorch's `approximate="tanh"`):
    /// ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
    Gelu = "gelu", activation,
        wgsl("0.5 * x * (1.0 + tanh(clamp(0.7978845608 * (x + 0.044715 * x * x * x), -15.0, 15.0)))";
            "let t = tanh(clamp(0.7978845608 * (x + 0.044715 * x * x * x), -15.0, 15.0)); \
             return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608 * (1.0 + 0.134145 * x * x);"),
        cpu(gelu_tanh(x); gelu_tanh_df(x));
    /// GELU, exact form: x·Φ(x) = ½x(1 + erf(x/√2)).
    GeluErf = "gelu_erf", activation,
        wgsl("0.5 * x * (1.0 + erf(0.7071067812 * x))";
            "0.5 * (1.0 + erf(0.7071067812 * x)) + 0.3989422804 * x * exp(-0.5 * x * x)"),
        cpu(T::from_f64(0.5) * x * (T::one() + (T::from_f64(std::f64::consts::FRAC_1_SQRT_2) * x).erf());
            T::from_f64(0.5) * (T::one() + (T::from_f64(std::f64::consts::FRAC_1_SQRT_2) * x).erf())
                + T::from_f64(0.398_942_280_401_432_7) * x * (T::from_f64(-0.5) * x * x).exp());
    /// SiLU (swish): x·σ(x); VJP g·(σ(x) + y·(1 − σ(x))).
    Silu = "silu", activation,
        wgsl("x / (1.0 + exp(-x))"; "let s = 1.0 / (1.0 + exp(-x)); return s + y * (1.0 - s);"),
        cpu(x / (T::one() + (-x).exp());
            { let s = T::one() / (T::one() + (-x).exp()); s + y * (T::one() - s) });
}

/// ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³).
#[inline(always)]
fn gelu_tanh<T: Real>(x: T) -> T {
    let u = T::from_f64(0.797_884_560_802_865_4) * (x + T::from_f64(0.044715) * x * x * x);
    T::from_f64(0.5) * x * (T::one() + u.tanh())
}

/// d/dx of [`gelu_tanh`]: ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²), t = tanh u.
#[inline(always)]
fn gelu_tanh_df<T: Real>(x: T) -> T {
    let c = T::from_f64(0.797_884_560_802_865_4);
    let t = (c * (x + T::from_f64(0.044715) * x * x * x)).tanh();
    let half = T::from_f64(0.5);
    half * (T::one() + t) + half * x * (T::one() - t * t) * c * (T::one() + T::from_f64(0.134145) * x * x)
}

impl UnaryOp {
    /// The op with this name, if any (`scale` takes `alpha`).
    pub fn from_name(name: &str, alpha: f32) -> Option<UnaryOp> {
        UnaryOp::all(alpha).into_iter().find(|op| op.name() == name)
    }

    /// The op's parameter (scale's factor, add_scalar's term), 0 for ops without one.
    pub fn alpha(&self) -> f32 {
        match self {
            UnaryOp::Scale(a) | UnaryOp::AddScalar(a) => *a,
            _ => 0.0,
        }
    }
}

wgsl_params! {
    /// `Params` of `shaders/unary.wgsl`.
    UnaryParams for "unary" {
        len: u32,
        /// backward: 1 accumulates into d_x
        acc: u32,
        /// the op's parameter
        alpha: f32,
        _pad: u32,
    }
}

/// out = f(x)
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Unary {
    pub op: UnaryOp,
    pub x: BufId,
    pub out: BufId,
    pub len: usize,
}

/// d_x (+)= g · f'(x) (using the saved output y where the rule allows)
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct UnaryBackward {
    pub op: UnaryOp,
    pub x: BufId,
    pub y: BufId,
    pub g: BufId,
    pub out: BufId,
    pub len: usize,
    pub acc: bool,
}

impl KernelDef for Unary {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let p = UnaryParams {
            len: self.len as u32,
            alpha: self.op.alpha(),
            ..Default::default()
        };
        let binds = vec![(1, self.x, true), (4, self.out, false)];
        Ok(vec![
            Launch::new("unary_forward", &p, binds, cx.elems(self.len)?).with("OP", self.op.code())
        ])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        with_out!(b, self.out, |o, b| {
            let x = &b[self.x][..self.len];
            par::rows(
                &mut o[..self.len],
                1,
                4,
                #[inline(always)]
                |rs, run| map(self.op, &x[rs], run),
            )
        })
    }
}

impl KernelDef for UnaryBackward {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let p = UnaryParams {
            len: self.len as u32,
            acc: self.acc as u32,
            alpha: self.op.alpha(),
            ..Default::default()
        };
        let binds = vec![
            (1, self.x, true),
            (2, self.y, true),
            (3, self.g, true),
            (4, self.out, false),
        ];
        Ok(vec![
            Launch::new("unary_backward", &p, binds, cx.elems(self.len)?).with("OP", self.op.code())
        ])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let UnaryBackward {
            op, x, y, g, len, acc, ..
        } = *self;
        with_out!(b, self.out, |o, b| {
            let (x, y, g) = (&b[x][..len], &b[y][..len], &b[g][..len]);
            par::rows(
                &mut o[..len],
                1,
                4,
                #[inline(always)]
                |rs, run| op.map_grads(&x[rs.clone()], &y[rs.clone()], &g[rs], run, acc),
            )
        })
    }
}

/// `dst[i] = f(src[i])`, with the choice of f outside the loop so each loop vectorises.
#[inline(always)]
pub(crate) fn map<T: Real>(op: UnaryOp, src: &[T], dst: &mut [T]) {
    op.map_values(src, dst)
}

/// Representative kernels: every op, forward and backward.
pub(crate) fn examples() -> Vec<Kernel> {
    let mut ks = Vec::new();
    for op in UnaryOp::all(2.0) {
        ks.push(
            Unary {
                op,
                x: 0,
                out: 1,
                len: 5,
            }
            .into(),
        );
        ks.push(
            UnaryBackward {
                op,
                x: 0,
                y: 1,
                g: 2,
                out: 3,
                len: 5,
                acc: false,
            }
            .into(),
        );
    }
    ks
}
