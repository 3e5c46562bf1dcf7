//! Optimizer state: the update rule and hyper-parameters a graph runs, the update program and
//! its per-parameter state buffers, and the step functions that run it (alone, or after forward
//! and backward as one training step).
//!
//! Users' optimizer configurations (`crate::optim::Optimizer`) are translated into an
//! [`OptimSpec`] by that module, so this one knows only the backend's update rules.

use super::{Graph, NodeId};
use crate::backend::{BufId, Kernel, OptimRule, ProgramId};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::ops::{numel, Op};

/// An optimizer as a graph runs it: an update rule and its hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OptimSpec {
    /// The update rule.
    pub rule: OptimRule,
    /// The rule's hyper-parameters in the order of its hyper buffer (see [`OptimRule`]), without
    /// the bias corrections that end Adam's and change every step: SGD [lr, μ, λ], Adam
    /// [lr, β1, β2, ε, λ].
    pub values: Vec<f32>,
}

impl OptimSpec {
    /// Hyper-parameter words for step number `t` (1-based), as `shaders/optim.wgsl` reads them:
    /// the values, then for Adam the bias corrections 1 − β1ᵗ and 1 − β2ᵗ.
    fn hyper(&self, t: u64) -> Vec<f64> {
        let mut words: Vec<f64> = self.values.iter().map(|&v| v as f64).collect();
        if self.rule == OptimRule::Adam {
            let (beta1, beta2) = (words[1], words[2]);
            words.push(1.0 - beta1.powf(t as f64));
            words.push(1.0 - beta2.powf(t as f64));
        }
        words
    }
}

pub(super) struct OptimState {
    spec: OptimSpec,
    t: u64,
    hyper: BufId,
    program: ProgramId,
    /// Every buffer the optimizer owns (hyper-parameters and per-parameter state).
    buffers: Vec<BufId>,
    /// Parameters it updates (those that existed when it was set).
    params: usize,
}

impl Graph {
    /// Makes `spec` the optimizer used by [`Graph::step`] and [`Graph::train_step`] (for
    /// [`Graph::set_optimizer`], which validates it first); allocates its state (zeroed) for
    /// every parameter that exists now. On failure the old optimizer is kept.
    pub(crate) fn install_optimizer(&mut self, spec: OptimSpec) -> Result<()> {
        let rule = spec.rule;
        // Check the state's sizes first, then build it; on failure free what was made and keep
        // the old optimizer.
        let (slots, eb) = (if rule == OptimRule::Adam { 2u64 } else { 1 }, self.elem_bytes());
        let mut total = 0u64;
        for n in self.nodes.iter().filter(|n| n.op == Op::Parameter) {
            let bytes = slots * numel(&n.shape) as u64 * eb;
            self.check_buffer(&format!("optimizer state of {}", n.name), bytes)?;
            total = total.saturating_add(bytes);
        }
        if !self.device.is_gpu() {
            self.check_host("optimizer state", total)?;
        }
        let mut buffers = Vec::new();
        let built = self.build_optimizer(rule, &mut buffers);
        let (hyper, program) = match built {
            Ok(v) => v,
            Err(e) => {
                for b in buffers {
                    self.exec.free(b);
                }
                return Err(e);
            }
        };
        if let Some(old) = self.optim.take() {
            self.exec.discard(old.program);
            for b in old.buffers {
                self.exec.free(b);
            }
        }
        let params = self.parameters().len();
        self.optim = Some(OptimState {
            spec,
            t: 0,
            hyper,
            program,
            buffers,
            params,
        });
        Ok(())
    }

    fn build_optimizer(&mut self, rule: OptimRule, buffers: &mut Vec<BufId>) -> Result<(BufId, ProgramId)> {
        let hyper = self.exec.alloc(8, "optimizer hyper-parameters")?;
        buffers.push(hyper);
        let mut ks = Vec::new();
        for n in self.nodes.iter().filter(|n| n.op == Op::Parameter) {
            let len = numel(&n.shape);
            let slots = if rule == OptimRule::Adam { 2 } else { 1 };
            let state = self
                .exec
                .alloc(slots * len, &format!("optimizer state of {}", n.name))?;
            buffers.push(state);
            let grad = n.grad.expect("parameters always own a gradient buffer");
            ks.push(Kernel::Optim(kn::Optim {
                rule,
                param: n.value,
                grad,
                state,
                hyper,
                len,
            }));
        }
        Ok((hyper, self.exec.compile(ks)?))
    }

    /// The configured optimizer, to change its hyper-parameters between steps (for
    /// [`Graph::set_learning_rate`]); its rule must stay, the state buffers are laid out for it.
    pub(crate) fn optimizer_spec_mut(&mut self) -> Option<&mut OptimSpec> {
        self.optim.as_mut().map(|st| &mut st.spec)
    }

    fn optim_program(&mut self) -> Result<ProgramId> {
        let params = self.parameters().len();
        let st = self.optim.as_mut().ok_or(Error::NoOptimizer)?;
        if st.params != params {
            return Err(Error::arg(
                "step",
                format!(
                    "{} parameters were added after set_optimizer; call set_optimizer again to include them",
                    params - st.params
                ),
            ));
        }
        st.t += 1;
        let (hyper, words, p) = (st.hyper, st.spec.hyper(st.t), st.program);
        self.exec.write(hyper, &words)?;
        Ok(p)
    }

    /// Applies one optimizer update to every parameter from its current gradient.
    pub fn step(&mut self) -> Result<()> {
        let p = self.optim_program()?;
        self.exec.run(&[p])
    }

    /// Compiles everything [`Graph::train_step`] with `loss` runs (forward, backward and the
    /// optimizer update) without running it: on a GPU that is where pipelines are compiled on
    /// first use, so a program can do it up front and say so. Later steps reuse it.
    pub fn prepare_train_step(&mut self, loss: NodeId) -> Result<()> {
        let l = self.check(loss)?;
        if self.optim.is_none() {
            return Err(Error::NoOptimizer);
        }
        self.forward_program()?;
        self.backward_program(l, false, true)?;
        self.optim_program()?;
        Ok(())
    }

    /// One training step as ONE submission: zero the gradients, forward, backward from `loss`,
    /// optimizer update. Values read afterwards are those of this step's forward pass.
    pub fn train_step(&mut self, loss: NodeId) -> Result<()> {
        let l = self.check(loss)?;
        if self.optim.is_none() {
            return Err(Error::NoOptimizer);
        }
        // The fresh backward overwrites every parameter gradient (zeroing unreached ones), so
        // no separate zero_grad pass is needed.
        let f = self.forward_program()?;
        let b = self.backward_program(l, false, true)?;
        let o = self.optim_program()?;
        self.exec.run(&[f, b, o])?;
        self.dirty = false;
        self.mark_grads(l);
        Ok(())
    }
}
