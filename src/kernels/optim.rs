//! Optimizer updates, in place on the device (`shaders/optim.wgsl`).

use super::{u, wgsl_params, with_outs, BufId, Cx, Kernel, KernelDef, Launch, Real};
use crate::error::Result;

/// Optimizer update rules, run in place on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimRule {
    /// v = μ·v + (g + λ·p); p −= lr·v. Hyper buffer: [lr, μ, λ].
    Sgd,
    /// Bias-corrected Adam with L2 weight decay. Hyper buffer: [lr, β1, β2, ε, λ, 1−β1^t, 1−β2^t].
    Adam,
    /// Adam with decoupled weight decay (p −= lr·λ·p before the Adam update), hyper buffer as
    /// Adam's.
    AdamW,
}

impl OptimRule {
    /// State elements per parameter element (SGD's velocity; Adam's two moments).
    pub fn slots(self) -> usize {
        match self {
            OptimRule::Sgd => 1,
            OptimRule::Adam | OptimRule::AdamW => 2,
        }
    }
}

/// Words of the hyper buffer: the rule's values from 0, then at [`CLIP_MAX`] the gradient-norm
/// limit (0: no clipping) and at [`CLIP_SUMSQ`] the squared global gradient norm, which the
/// step's `SumSquares` kernels write before the updates read it.
pub(crate) const HYPER_WORDS: usize = 9;
/// Index of the gradient-norm limit in the hyper buffer.
pub(crate) const CLIP_MAX: usize = 7;
/// Index of the squared global gradient norm in the hyper buffer.
pub(crate) const CLIP_SUMSQ: usize = 8;

wgsl_params! {
    /// `Params` of `shaders/optim.wgsl`.
    OptimParams for "optim" {
        len: u32,
        _p0: u32,
        _p1: u32,
        _p2: u32,
    }
}

/// In-place parameter update from its gradient and state buffers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Optim {
    pub rule: OptimRule,
    pub param: BufId,
    pub grad: BufId,
    /// SGD: velocity (len). Adam: first moment then second moment (2·len), packed so the
    /// kernel needs four storage bindings (the downlevel limit).
    pub state: BufId,
    pub hyper: BufId,
    pub len: usize,
    /// The step clips gradients: the update reads the clipping factor from the hyper buffer.
    pub clip: bool,
}

impl KernelDef for Optim {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let entry = match self.rule {
            OptimRule::Sgd => "sgd_step",
            OptimRule::Adam => "adam_step",
            OptimRule::AdamW => "adamw_step",
        };
        let p = OptimParams {
            len: u(self.len),
            ..Default::default()
        };
        let binds = vec![
            (1, self.grad, true),
            (2, self.hyper, true),
            (3, self.param, false),
            (4, self.state, false),
        ];
        Ok(vec![
            Launch::new(entry, &p, binds, cx.elems(self.len)?).with("CLIP", self.clip as u32)
        ])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let (rule, grad, state, hyper) = (self.rule, self.grad, self.state, self.hyper);
        with_outs!(b, [self.param, state], |[p, st], b| update(
            rule, p, &b[grad], st, &b[hyper]
        ));
    }
}

/// The factor the gradients are scaled by: min(1, limit / (‖g‖ + 1e-6)) when a limit is set
/// (PyTorch's `clip_grad_norm_`), else 1.
#[inline(always)]
fn clip_scale<T: Real>(h: &[T]) -> T {
    let (limit, sumsq) = (h[CLIP_MAX].to_f64(), h[CLIP_SUMSQ].to_f64());
    if limit <= 0.0 {
        return T::one();
    }
    T::from_f64((limit / (sumsq.sqrt() + 1e-6)).min(1.0))
}

/// Applies one optimizer update in place. `state` is the velocity (SGD) or the first moment
/// followed by the second moment (Adam, AdamW).
#[inline(always)]
fn update<T: Real>(rule: OptimRule, p: &mut [T], g: &[T], state: &mut [T], h: &[T]) {
    let n = p.len();
    let c = clip_scale(h);
    match rule {
        OptimRule::Sgd => {
            let (lr, mu, wd) = (h[0], h[1], h[2]);
            let (g, v) = (&g[..n], &mut state[..n]);
            for i in 0..n {
                v[i] = mu * v[i] + (c * g[i] + wd * p[i]);
                p[i] = p[i] - lr * v[i];
            }
        }
        OptimRule::Adam | OptimRule::AdamW => {
            let (lr, b1, b2, eps, wd, c1, c2) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
            let decoupled = rule == OptimRule::AdamW;
            let (m, v) = state.split_at_mut(n);
            for i in 0..n {
                let d = if decoupled { c * g[i] } else { c * g[i] + wd * p[i] };
                if decoupled {
                    p[i] = p[i] - lr * wd * p[i];
                }
                m[i] = b1 * m[i] + (T::one() - b1) * d;
                v[i] = b2 * v[i] + (T::one() - b2) * d * d;
                let vhat = v[i] / c2;
                p[i] = p[i] - lr * (m[i] / c1) / (T::from_f64(vhat.to_f64().sqrt()) + eps);
            }
        }
    }
}

/// Representative kernels: every rule, with and without clipping.
pub(crate) fn examples() -> Vec<Kernel> {
    let rules = [OptimRule::Sgd, OptimRule::Adam, OptimRule::AdamW];
    rules
        .into_iter()
        .flat_map(|rule| [false, true].map(|clip| (rule, clip)))
        .map(|(rule, clip)| {
            Optim {
                rule,
                param: 0,
                grad: 1,
                state: 2,
                hyper: 3,
                len: 5,
                clip,
            }
            .into()
        })
        .collect()
}
