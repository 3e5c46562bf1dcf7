//! Optimizers, applied in place on the device by `shaders/optim.wgsl`.
//!
//! The [`Graph`] methods that take them, [`Graph::set_optimizer`] and
//! [`Graph::set_learning_rate`], are defined here too.

use crate::backend::OptimRule;
use crate::error::{Error, Result};
use crate::graph::{Graph, OptimSpec};

/// Stochastic gradient descent with momentum and L2 weight decay:
/// `v = μ·v + (g + λ·p); p −= lr·v`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum μ (0 disables it).
    pub momentum: f32,
    /// L2 weight decay λ.
    pub weight_decay: f32,
}

impl Sgd {
    /// Plain SGD with the given learning rate.
    pub fn new(lr: f32) -> Self {
        Sgd {
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }
}

/// Adam with bias correction (Kingma & Ba) and L2 weight decay added to the gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
    /// L2 weight decay.
    pub weight_decay: f32,
}

impl Adam {
    /// Adam with the usual defaults (β1 0.9, β2 0.999, ε 1e-8) and the given learning rate.
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Adam with decoupled weight decay (Loshchilov & Hutter; PyTorch's `AdamW`): each step first
/// shrinks the parameter, `p −= lr·λ·p`, then applies Adam's update to the plain gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
    /// Decoupled weight decay λ.
    pub weight_decay: f32,
}

impl AdamW {
    /// AdamW with PyTorch's defaults (β1 0.9, β2 0.999, ε 1e-8, weight decay 0.01) and the
    /// given learning rate.
    pub fn new(lr: f32) -> Self {
        AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// An optimizer configuration for [`Graph::set_optimizer`](crate::Graph::set_optimizer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// SGD with momentum.
    Sgd(Sgd),
    /// Adam.
    Adam(Adam),
    /// AdamW.
    AdamW(AdamW),
}

impl From<AdamW> for Optimizer {
    fn from(a: AdamW) -> Self {
        Optimizer::AdamW(a)
    }
}

impl From<Sgd> for Optimizer {
    fn from(s: Sgd) -> Self {
        Optimizer::Sgd(s)
    }
}

impl From<Adam> for Optimizer {
    fn from(a: Adam) -> Self {
        Optimizer::Adam(a)
    }
}

impl Optimizer {
    /// The learning rate.
    pub fn lr(&self) -> f32 {
        match self {
            Optimizer::Sgd(s) => s.lr,
            Optimizer::Adam(a) => a.lr,
            Optimizer::AdamW(a) => a.lr,
        }
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        let bad = |what: &str, v: f32| crate::Error::arg("set_optimizer", format!("{what} = {v} is out of range"));
        match *self {
            Optimizer::Sgd(s) => {
                if !(s.lr.is_finite() && s.lr >= 0.0) {
                    return Err(bad("lr", s.lr));
                }
                if !(0.0..1.0).contains(&s.momentum) {
                    return Err(bad("momentum", s.momentum));
                }
                if !(s.weight_decay.is_finite() && s.weight_decay >= 0.0) {
                    return Err(bad("weight_decay", s.weight_decay));
                }
            }
            Optimizer::Adam(Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            })
            | Optimizer::AdamW(AdamW {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            }) => {
                let a = Adam {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                };
                if !(a.lr.is_finite() && a.lr >= 0.0) {
                    return Err(bad("lr", a.lr));
                }
                if !(0.0..1.0).contains(&a.beta1) {
                    return Err(bad("beta1", a.beta1));
                }
                if !(0.0..1.0).contains(&a.beta2) {
                    return Err(bad("beta2", a.beta2));
                }
                if !(a.eps.is_finite() && a.eps > 0.0) {
                    return Err(bad("eps", a.eps));
                }
                if !(a.weight_decay.is_finite() && a.weight_decay >= 0.0) {
                    return Err(bad("weight_decay", a.weight_decay));
                }
            }
        }
        Ok(())
    }

    /// The update rule and hyper-parameters the graph runs for this configuration.
    pub(crate) fn spec(&self) -> OptimSpec {
        match *self {
            Optimizer::Sgd(s) => OptimSpec {
                rule: OptimRule::Sgd,
                values: vec![s.lr, s.momentum, s.weight_decay],
                clip: 0.0,
            },
            Optimizer::Adam(a) => OptimSpec {
                rule: OptimRule::Adam,
                values: vec![a.lr, a.beta1, a.beta2, a.eps, a.weight_decay],
                clip: 0.0,
            },
            Optimizer::AdamW(a) => OptimSpec {
                rule: OptimRule::AdamW,
                values: vec![a.lr, a.beta1, a.beta2, a.eps, a.weight_decay],
                clip: 0.0,
            },
        }
    }

    /// The configuration `spec` describes: the inverse of [`Optimizer::spec`].
    fn from_spec(spec: &OptimSpec) -> Optimizer {
        let v = &spec.values;
        match spec.rule {
            OptimRule::Sgd => Optimizer::Sgd(Sgd {
                lr: v[0],
                momentum: v[1],
                weight_decay: v[2],
            }),
            OptimRule::Adam => Optimizer::Adam(Adam {
                lr: v[0],
                beta1: v[1],
                beta2: v[2],
                eps: v[3],
                weight_decay: v[4],
            }),
            OptimRule::AdamW => Optimizer::AdamW(AdamW {
                lr: v[0],
                beta1: v[1],
                beta2: v[2],
                eps: v[3],
                weight_decay: v[4],
            }),
        }
    }
}

impl Graph {
    /// Chooses the optimizer used by [`Graph::step`] and [`Graph::train_step`]; allocates its
    /// state (zeroed) for every parameter that exists now.
    /// A gradient-norm limit set with [`Graph::set_grad_clip`] stays in force.
    pub fn set_optimizer(&mut self, opt: impl Into<Optimizer>) -> Result<()> {
        let opt = opt.into();
        opt.validate()?;
        let mut spec = opt.spec();
        spec.clip = self.optimizer_spec_mut().map_or(0.0, |s| s.clip);
        self.install_optimizer(spec)
    }

    /// Clips gradients by their global norm before every optimizer update (PyTorch's
    /// `clip_grad_norm_`): all parameter gradients are scaled by min(1, max_norm / (‖g‖ + 1e-6)),
    /// ‖g‖ the norm of all of them together, computed on the device inside the step. `None`
    /// turns clipping off. Needs an optimizer ([`Graph::set_optimizer`]); its state is kept.
    pub fn set_grad_clip(&mut self, max_norm: Option<f32>) -> Result<()> {
        let clip = match max_norm {
            None => 0.0,
            Some(c) if c.is_finite() && c > 0.0 => c,
            Some(c) => {
                return Err(Error::arg(
                    "set_grad_clip",
                    format!("max_norm = {c} must be positive and finite"),
                ))
            }
        };
        self.set_clip(clip)
    }

    /// Changes the learning rate of the configured optimizer (for schedules).
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        let spec = self.optimizer_spec_mut().ok_or(Error::NoOptimizer)?;
        let mut opt = Optimizer::from_spec(spec);
        match &mut opt {
            Optimizer::Sgd(s) => s.lr = lr,
            Optimizer::Adam(a) => a.lr = lr,
            Optimizer::AdamW(a) => a.lr = lr,
        }
        opt.validate()?;
        spec.values = opt.spec().values;
        Ok(())
    }
}
