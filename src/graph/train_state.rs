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
use crate::kernels::optim::{CLIP_MAX, CLIP_SUMSQ, HYPER_WORDS};
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
    /// Limit of the global gradient norm (gradients scaled down to it before the update), 0 for
    /// none.
    pub clip: f32,
}

impl OptimSpec {
    /// Hyper-parameter words for step number `t` (1-based), as `shaders/optim.wgsl` reads them:
    /// the values, then for Adam the bias corrections 1 − β1ᵗ and 1 − β2ᵗ.
    fn hyper(&self, t: u64) -> Vec<f64> {
        let mut words: Vec<f64> = self.values.iter().map(|&v| v as f64).collect();
        if self.rule != OptimRule::Sgd {
            let (beta1, beta2) = (words[1], words[2]);
            words.push(1.0 - beta1.powf(t as f64));
            words.push(1.0 - beta2.powf(t as f64));
        }
        // Then the clipping limit; the squared norm after it is written on the device.
        words.resize(CLIP_MAX, 0.0);
        words.push(self.clip as f64);
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
    /// Per parameter, its state buffer (to rebuild the program when clipping changes).
    states: Vec<BufId>,
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
        let (slots, eb) = (rule.slots() as u64, self.elem_bytes());
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
        let built = self.build_optimizer(rule, spec.clip, &mut buffers);
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
        let states = buffers[1..].to_vec();
        self.optim = Some(OptimState {
            spec,
            t: 0,
            hyper,
            program,
            buffers,
            states,
            params,
        });
        Ok(())
    }

    fn build_optimizer(&mut self, rule: OptimRule, clip: f32, buffers: &mut Vec<BufId>) -> Result<(BufId, ProgramId)> {
        let hyper = self.exec.alloc(HYPER_WORDS, "optimizer hyper-parameters")?;
        buffers.push(hyper);
        for n in self.nodes.iter().filter(|n| n.op == Op::Parameter) {
            let state = self.exec.alloc(
                rule.slots() * numel(&n.shape),
                &format!("optimizer state of {}", n.name),
            )?;
            buffers.push(state);
        }
        let ks = self.optim_kernels(rule, clip, hyper, &buffers[1..]);
        Ok((hyper, self.exec.compile(ks)?))
    }

    /// The update program: with a clipping limit, first the squared global gradient norm into
    /// the hyper buffer (every gradient's sum of squares added up), then each parameter's
    /// update, which scales its gradient by the clipping factor.
    fn optim_kernels(&self, rule: OptimRule, clip: f32, hyper: BufId, states: &[BufId]) -> Vec<Kernel> {
        let params: Vec<_> = self.nodes.iter().filter(|n| n.op == Op::Parameter).collect();
        let grad = |n: &super::Node| n.grad.expect("parameters always own a gradient buffer");
        let mut ks = Vec::new();
        if clip > 0.0 {
            for (i, n) in params.iter().enumerate() {
                ks.push(Kernel::SumSquares(kn::SumSquares {
                    x: grad(n),
                    out: hyper,
                    out_index: CLIP_SUMSQ,
                    len: numel(&n.shape),
                    acc: i > 0,
                }));
            }
        }
        for (n, &state) in params.iter().zip(states) {
            ks.push(Kernel::Optim(kn::Optim {
                rule,
                param: n.value,
                grad: grad(n),
                state,
                hyper,
                len: numel(&n.shape),
                clip: clip > 0.0,
            }));
        }
        ks
    }

    /// Sets the global gradient-norm limit of the configured optimizer (0: none), keeping its
    /// state; the update program is rebuilt.
    pub(crate) fn set_clip(&mut self, clip: f32) -> Result<()> {
        let st = self.optim.as_ref().ok_or(Error::NoOptimizer)?;
        let (rule, hyper, states, old) = (st.spec.rule, st.hyper, st.states.clone(), st.program);
        let program = self.exec.compile(self.optim_kernels(rule, clip, hyper, &states))?;
        self.exec.discard(old);
        let st = self.optim.as_mut().expect("checked above");
        st.program = program;
        st.spec.clip = clip;
        Ok(())
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
        self.forward_program(Some(l))?;
        self.backward_program(l, false, true)?;
        self.optim_program()?;
        Ok(())
    }

    /// [`Graph::train_step`], then an asynchronous read of the step's loss: the way to train in
    /// a browser, where the loss cannot be read by blocking. The step is submitted before this
    /// returns; await the future for its loss (all of `loss`'s elements).
    pub fn train_step_async(&mut self, loss: NodeId) -> Result<crate::backend::ReadFuture> {
        self.train_step(loss)?;
        self.value_async(loss)
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
        let f = self.forward_run(Some(l))?;
        let b = self.backward_program(l, false, true)?;
        let o = self.optim_program()?;
        self.exec.run(&[f, b, o])?;
        // The parameters changed: what the loss depends on holds this step's forward values
        // (as documented); every other branch is computed again when read.
        self.mark_stale();
        self.mark_current(Some(l));
        self.mark_grads(l);
        Ok(())
    }
}
