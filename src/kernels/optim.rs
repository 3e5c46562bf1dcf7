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
}

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
}

impl KernelDef for Optim {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let entry = match self.rule {
            OptimRule::Sgd => "sgd_step",
            OptimRule::Adam => "adam_step",
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
        Ok(vec![Launch::new(entry, &p, binds, cx.elems(self.len)?)])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let (rule, grad, state, hyper) = (self.rule, self.grad, self.state, self.hyper);
        with_outs!(b, [self.param, state], |[p, st], b| update(
            rule, p, &b[grad], st, &b[hyper]
        ));
    }
}

/// Applies one optimizer update in place. `state` is the velocity (SGD) or the first moment
/// followed by the second moment (Adam).
#[inline(always)]
fn update<T: Real>(rule: OptimRule, p: &mut [T], g: &[T], state: &mut [T], h: &[T]) {
    match rule {
        OptimRule::Sgd => {
            let (lr, mu, wd) = (h[0], h[1], h[2]);
            let n = p.len();
            let (g, v) = (&g[..n], &mut state[..n]);
            for i in 0..n {
                v[i] = mu * v[i] + (g[i] + wd * p[i]);
                p[i] = p[i] - lr * v[i];
            }
        }
        OptimRule::Adam => {
            let (lr, b1, b2, eps, wd, c1, c2) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
            let (m, v) = state.split_at_mut(p.len());
            for i in 0..p.len() {
                let d = g[i] + wd * p[i];
                m[i] = b1 * m[i] + (T::one() - b1) * d;
                v[i] = b2 * v[i] + (T::one() - b2) * d * d;
                let vhat = v[i] / c2;
                p[i] = p[i] - lr * (m[i] / c1) / (T::from_f64(vhat.to_f64().sqrt()) + eps);
            }
        }
    }
}

/// Representative kernels: both rules.
pub(crate) fn examples() -> Vec<Kernel> {
    [OptimRule::Sgd, OptimRule::Adam]
        .map(|rule| {
            Optim {
                rule,
                param: 0,
                grad: 1,
                state: 2,
                hyper: 3,
                len: 5,
            }
            .into()
        })
        .to_vec()
}
