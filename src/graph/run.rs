//! Running the graph: the forward, backward and zero-gradient programs (compiled once, replayed
//! as one submission each), reading values and gradients back, and the opt-in finiteness check.

use super::backward::reached;
use super::{Graph, NodeId};
use crate::backend::{BufId, Kernel, ProgramId, ReadFuture};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::ops::{numel, Arg};

/// The nodes `target` depends on (itself included): what computing its value runs.
fn ancestors(nodes: &[super::Node], target: usize) -> Vec<bool> {
    let mut needs = vec![false; nodes.len()];
    needs[target] = true;
    for i in (0..=target).rev() {
        if needs[i] {
            for j in nodes[i].op.inputs() {
                needs[j] = true;
            }
        }
    }
    needs
}

impl Graph {
    /// A forward program: the kernels of every node (`target` None) or of the nodes `target`
    /// depends on, in node order, with the layers that [`Graph::forward_fusion`] plans as fused
    /// kernels. Several branches of one graph (a training batch and a batch-1 inference head
    /// reading the same parameters) each run only their own nodes.
    pub(super) fn forward_program(&mut self, target: Option<usize>) -> Result<ProgramId> {
        Ok(self.forward_program_draws(target)?.0)
    }

    /// [`Graph::forward_program`] and whether the program computes a dropout node.
    fn forward_program_draws(&mut self, target: Option<usize>) -> Result<(ProgramId, bool)> {
        if let Some(&p) = self.forward_progs.get(&target) {
            return Ok(p);
        }
        let needed = target.map(|t| ancestors(&self.nodes, t));
        let mut draws = false;
        let mut ks = Vec::new();
        let (fused_into, mut skip) = self.forward_fusion();
        for (i, n) in self.nodes.iter().enumerate() {
            // A fused kernel is emitted at its first node, which every later node of the layer
            // depends on; it may also compute a node the target does not need, which is harmless.
            // An aliased reshape or detach has its input's buffer: nothing to compute.
            if skip[i] || n.aliased || needed.as_ref().is_some_and(|m| !m[i]) {
                continue;
            }
            draws |= matches!(n.op, crate::ops::Op::Dropout { .. });
            if let Some(layer @ (k, ..)) = fused_into[i] {
                ks.push(self.fused_forward(n, layer));
                skip[k] = true;
                continue;
            }
            let args: Vec<Arg> =
                n.op.inputs()
                    .iter()
                    .map(|&i| Arg {
                        buf: self.nodes[i].value,
                        shape: &self.nodes[i].shape,
                    })
                    .collect();
            ks.extend(n.op.forward(
                &args,
                Arg {
                    buf: n.value,
                    shape: &n.shape,
                },
                &n.aux,
            ));
        }
        let p = (self.exec.compile(ks)?, draws);
        self.forward_progs.insert(target, p);
        Ok(p)
    }

    /// A forward program about to run: the program, after a new dropout draw when it computes
    /// a dropout node.
    pub(super) fn forward_run(&mut self, target: Option<usize>) -> Result<ProgramId> {
        let (p, draws) = self.forward_program_draws(target)?;
        if draws {
            self.advance_rng()?;
        }
        Ok(p)
    }

    /// Every value is out of date (an input or parameter was written, or nodes changed).
    pub(super) fn mark_stale(&mut self) {
        for n in &mut self.nodes {
            n.current = false;
        }
    }

    /// The values a forward program for `target` computes are now current.
    pub(super) fn mark_current(&mut self, target: Option<usize>) {
        match target {
            None => self.nodes.iter_mut().for_each(|n| n.current = true),
            Some(t) => {
                let needed = ancestors(&self.nodes, t);
                for (n, need) in self.nodes.iter_mut().zip(needed) {
                    n.current |= need;
                }
            }
        }
    }

    /// Computes every node's value, in node order, as one submission.
    pub fn forward(&mut self) -> Result<()> {
        let p = self.forward_run(None)?;
        self.exec.run(&[p])?;
        self.mark_current(None);
        Ok(())
    }

    /// Computes the value of `node` and of what it depends on, nothing else, as one submission
    /// (nothing when they are current). A graph may hold several branches over the same
    /// parameters — a training batch and an inference head of another batch size, say — and
    /// each runs only its own nodes; updates to the shared parameters are seen by all.
    pub fn forward_to(&mut self, node: NodeId) -> Result<()> {
        let i = self.check(node)?;
        let progs = self.pending_forward(i)?;
        self.exec.run(&progs)?;
        self.mark_current(Some(i));
        Ok(())
    }

    /// Programs to prepend so the value of `target` is current: the forward pass of what it
    /// depends on, when an input or parameter it may read was written since.
    fn pending_forward(&mut self, target: usize) -> Result<Vec<ProgramId>> {
        Ok(if self.nodes[target].current {
            vec![]
        } else {
            vec![self.forward_run(Some(target))?]
        })
    }

    /// The backward program from `loss`. `seeded`: the caller writes d(loss) itself (any shape,
    /// see `backward_from`); otherwise the loss must be a scalar and d(loss) = 1.
    /// `fresh`: the program stands for zero_grad + backward — leaf gradients are overwritten by
    /// their first contribution and leaves it does not reach are zeroed, which saves a pass of
    /// fills over every parameter gradient in a training step.
    pub(super) fn backward_program(&mut self, loss: usize, seeded: bool, fresh: bool) -> Result<ProgramId> {
        let n = &self.nodes[loss];
        if !seeded && numel(&n.shape) != 1 {
            return Err(Error::NonScalarLoss {
                node: loss,
                name: n.name.clone(),
                shape: n.shape.as_slice().into(),
            });
        }
        if !n.requires_grad {
            return Err(Error::arg(
                "backward",
                format!(
                    "'{}' does not depend on any parameter or input that requires a gradient",
                    n.name
                ),
            ));
        }
        if seeded && n.is_leaf() {
            return Err(Error::arg(
                "backward_from",
                format!("'{}' is an input or parameter, not the result of an op", n.name),
            ));
        }
        if let Some(&p) = self.backward_progs.get(&(loss, seeded, fresh)) {
            return Ok(p);
        }
        let needs = reached(&self.nodes, loss);
        // Intermediate gradient buffers are allocated once, the first time a backward needs them.
        for (i, &need) in needs.iter().enumerate().take(loss + 1) {
            if need && self.nodes[i].grad.is_none() {
                let name = format!("gradient of {}", self.nodes[i].name);
                let g = self.exec.alloc(numel(&self.nodes[i].shape), &name)?;
                self.nodes[i].grad = Some(g);
            }
        }
        // So are the scratch buffers of the VJPs it runs.
        for i in 0..=loss {
            let n = &self.nodes[i];
            if !needs[i] || n.is_leaf() || !n.scratch.is_empty() {
                continue;
            }
            let inputs = n.op.inputs();
            let shapes: Vec<&[usize]> = inputs.iter().map(|&j| self.nodes[j].shape.as_slice()).collect();
            let input_needs: Vec<bool> = inputs.iter().map(|&j| needs[j]).collect();
            let sizes = n.op.vjp_scratch_sizes(&shapes, &input_needs);
            let name = format!("scratch of the gradient of {}", n.name);
            let mut bufs = Vec::with_capacity(sizes.len());
            for len in sizes {
                match self.exec.alloc(len, &name) {
                    Ok(b) => bufs.push(b),
                    Err(e) => {
                        bufs.into_iter().for_each(|b| self.exec.free(b));
                        return Err(e);
                    }
                }
            }
            self.nodes[i].scratch = bufs;
        }
        let mut ks = Vec::new();
        // A fresh program zeroes the gradients of the leaves it does not reach.
        if fresh {
            for n in self
                .nodes
                .iter()
                .enumerate()
                .filter(|&(i, n)| n.is_leaf() && !needs[i])
                .map(|(_, n)| n)
            {
                if let Some(g) = n.grad {
                    ks.push(Kernel::Fill(kn::Fill {
                        out: g,
                        len: numel(&n.shape),
                        value: 0.0,
                        acc: false,
                    }));
                }
            }
        }
        ks.extend(self.backward_kernels(loss, &needs, seeded, fresh));
        let p = self.exec.compile(ks)?;
        self.backward_progs.insert((loss, seeded, fresh), p);
        Ok(p)
    }

    /// Seeds d(loss) = 1 and runs the VJP of every node on the path to the parameters, in
    /// reverse order, as one submission (with the forward pass first if inputs changed since
    /// the last one). Parameter gradients accumulate across calls until [`Graph::zero_grad`].
    pub fn backward(&mut self, loss: NodeId) -> Result<()> {
        let l = self.check(loss)?;
        let bp = self.backward_program(l, false, false)?;
        let mut progs = self.pending_forward(l)?;
        progs.push(bp);
        self.exec.run(&progs)?;
        self.mark_current(Some(l));
        self.mark_grads(l);
        Ok(())
    }

    /// A vector-Jacobian product from any node: seeds d(node) = `seed` (row-major, the node's
    /// shape) instead of 1 and runs backward, so each reached gradient becomes
    /// (∂node/∂x)ᵀ · seed. With a one-hot seed this yields one row of the Jacobian.
    pub fn backward_from(&mut self, node: NodeId, seed: &[f32]) -> Result<()> {
        let i = self.check(node)?;
        let len = numel(&self.nodes[i].shape);
        if seed.len() != len {
            let n = &self.nodes[i];
            return Err(Error::LengthMismatch {
                node: i,
                name: n.name.clone(),
                shape: n.shape.as_slice().into(),
                expected: len,
                got: seed.len(),
            });
        }
        let bp = self.backward_program(i, true, false)?;
        let g = self.nodes[i]
            .grad
            .expect("the backward program allocates the seed's gradient buffer");
        self.exec.write_f32(g, seed)?;
        let mut progs = self.pending_forward(i)?;
        progs.push(bp);
        self.exec.run(&progs)?;
        self.mark_current(Some(i));
        self.mark_grads(i);
        Ok(())
    }

    /// Blocks until all work submitted by this graph has finished on the device (for timing).
    pub fn synchronize(&mut self) -> Result<()> {
        self.exec.wait()
    }

    fn zero_program(&mut self) -> Result<ProgramId> {
        if let Some(p) = self.zero_prog {
            return Ok(p);
        }
        let ks: Vec<Kernel> = self
            .nodes
            .iter()
            .filter(|n| n.is_leaf())
            .filter_map(|n| {
                n.grad.map(|g| {
                    Kernel::Fill(kn::Fill {
                        out: g,
                        len: numel(&n.shape),
                        value: 0.0,
                        acc: false,
                    })
                })
            })
            .collect();
        let p = self.exec.compile(ks)?;
        self.zero_prog = Some(p);
        Ok(p)
    }

    /// Sets every parameter (and input) gradient to zero, as one submission.
    pub fn zero_grad(&mut self) -> Result<()> {
        let p = self.zero_program()?;
        self.exec.run(&[p])
    }

    fn ensure_current(&mut self, i: usize) -> Result<()> {
        if !self.nodes[i].current {
            let p = self.forward_run(Some(i))?;
            self.exec.run(&[p])?;
            self.mark_current(Some(i));
        }
        Ok(())
    }

    /// The node's value (running the forward pass first if inputs changed), blocking.
    pub fn value(&mut self, id: NodeId) -> Result<Vec<f32>> {
        let i = self.check(id)?;
        self.check_read(i, 4)?;
        self.ensure_current(i)?;
        self.exec.read_f32(self.nodes[i].value)
    }

    /// The node's value in f64 (exact on the f64 CPU backend).
    pub fn value_f64(&mut self, id: NodeId) -> Result<Vec<f64>> {
        let i = self.check(id)?;
        self.check_read(i, 8)?;
        self.ensure_current(i)?;
        self.exec.read(self.nodes[i].value)
    }

    /// The value of a one-element node.
    pub fn scalar(&mut self, id: NodeId) -> Result<f32> {
        let i = self.check(id)?;
        if numel(&self.nodes[i].shape) != 1 {
            return Err(Error::invalid_shape(
                "scalar",
                &self.nodes[i].shape,
                "not a one-element tensor",
            ));
        }
        Ok(self.value(id)?[0])
    }

    /// Starts an asynchronous read of the node's value; await the returned future.
    pub fn value_async(&mut self, id: NodeId) -> Result<ReadFuture> {
        let i = self.check(id)?;
        self.check_read(i, 4)?;
        self.ensure_current(i)?;
        self.exec.read_async(self.nodes[i].value)
    }

    /// Refuses a read of node `i`'s value or gradient, `elem` bytes per element, that the host
    /// cannot hold.
    fn check_read(&self, i: usize, elem: u64) -> Result<()> {
        let n = &self.nodes[i];
        self.check_host(
            &format!("read of {} ({})", n.name, n.op.name()),
            numel(&n.shape) as u64 * elem,
        )
    }

    fn grad_buf(&self, id: NodeId) -> Result<BufId> {
        let n = self.node(id)?;
        match n.grad {
            Some(g) if n.grad_ready => Ok(g),
            _ => Err(Error::GradientNotComputed {
                node: id.idx,
                name: n.name.clone(),
            }),
        }
    }

    /// The gradient ∂loss/∂node from the last backward pass, blocking.
    pub fn grad(&mut self, id: NodeId) -> Result<Vec<f32>> {
        let g = self.grad_buf(id)?;
        self.check_read(id.idx, 4)?;
        self.exec.read_f32(g)
    }

    /// The gradient in f64 (exact on the f64 CPU backend).
    pub fn grad_f64(&mut self, id: NodeId) -> Result<Vec<f64>> {
        let g = self.grad_buf(id)?;
        self.check_read(id.idx, 8)?;
        self.exec.read(g)
    }

    /// Starts an asynchronous read of the gradient.
    pub fn grad_async(&mut self, id: NodeId) -> Result<ReadFuture> {
        let g = self.grad_buf(id)?;
        self.check_read(id.idx, 4)?;
        self.exec.read_async(g)
    }

    /// Opt-in numerical check: reads back every value (and every gradient the last backward
    /// computed) and returns [`Error::NonFinite`] for the first node, in topological order,
    /// holding a NaN or an infinity. Costs one readback per buffer; meant for debugging.
    pub fn check_finite(&mut self) -> Result<()> {
        if self.nodes.iter().any(|n| !n.current) {
            self.forward()?;
        }
        for i in 0..self.nodes.len() {
            let n = &self.nodes[i];
            let mut bufs = vec![("value", n.value)];
            if let (Some(g), true) = (n.grad, n.grad_ready) {
                bufs.push(("gradient", g));
            }
            for (what, b) in bufs {
                let v = self.exec.read_f32(b)?;
                if let Some(index) = v.iter().position(|x| !x.is_finite()) {
                    let n = &self.nodes[i];
                    return Err(Error::NonFinite {
                        node: i,
                        name: n.name.clone(),
                        op: n.op.name(),
                        what,
                        index,
                        value: v[index],
                    });
                }
            }
        }
        Ok(())
    }
}
