//! Optimizers, applied in place on the device by `shaders/optim.wgsl`.

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

/// An optimizer configuration for [`Graph::set_optimizer`](crate::Graph::set_optimizer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// SGD with momentum.
    Sgd(Sgd),
    /// Adam.
    Adam(Adam),
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
            Optimizer::Adam(a) => {
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

    /// Hyper-parameter words for step number `t` (1-based), as `shaders/optim.wgsl` reads them.
    pub(crate) fn hyper(&self, t: u64) -> Vec<f64> {
        match *self {
            Optimizer::Sgd(s) => vec![s.lr as f64, s.momentum as f64, s.weight_decay as f64],
            Optimizer::Adam(a) => {
                let c1 = 1.0 - (a.beta1 as f64).powf(t as f64);
                let c2 = 1.0 - (a.beta2 as f64).powf(t as f64);
                vec![
                    a.lr as f64,
                    a.beta1 as f64,
                    a.beta2 as f64,
                    a.eps as f64,
                    a.weight_decay as f64,
                    c1,
                    c2,
                ]
            }
        }
    }
}
