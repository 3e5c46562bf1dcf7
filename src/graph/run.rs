//! Running the graph: the forward, backward and zero-gradient programs (compiled once, replayed
//! as one submission each), reading values and gradients back, and the opt-in finiteness check.

use super::{layer_pattern, use_counts, Graph, NodeId};
use crate::backend::{BufId, Kernel, ProgramId, ReadFuture};
use crate::error::{Error, Result};
use crate::ops::{numel, Arg, Op};

impl Graph {
    pub(super) fn forward_program(&mut self) -> Result<ProgramId> {
        if let Some(p) = self.forward_prog {
            return Ok(p);
        }
        let mut ks = Vec::new();
        let fuse = self.fusion && self.exec.max_storage_buffers() >= 4;
        let uses = use_counts(&self.nodes);
        // Activation nodes whose bias-add input is computed together with them, and, where XW is
        // a matmul read by the bias-add alone and the backend has the epilogue, the matmul too
        // (computed at the bias-add's place: nothing between reads XW).
        let mut fused_into = vec![None; self.nodes.len()];
        let mut skip = vec![false; self.nodes.len()];
        if fuse {
            for k in 0..self.nodes.len() {
                if let Some((op, z, xw, bias)) = layer_pattern(&self.nodes, &uses, k) {
                    // The matmul's operands (m×k, k×n), where it is fused too.
                    let mm = match self.nodes[xw].op {
                        Op::MatMul { a, b } if uses[xw] == 1 => {
                            let (sa, sb) = (&self.nodes[a].shape, &self.nodes[b].shape);
                            self.exec.fuses_matmul_bias_act(sa[0], sa[1], sb[1]).then_some((a, b))
                        }
                        _ => None,
                    };
                    if mm.is_some() {
                        skip[xw] = true;
                    }
                    fused_into[z] = Some((k, op, xw, bias, mm));
                }
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if skip[i] {
                continue;
            }
            if let Some((k, op, xw, bias, mm)) = fused_into[i] {
                let (rows, cols) = (n.shape[0], n.shape[1]);
                let (xw, bias, y) = (self.nodes[xw].value, self.nodes[bias].value, self.nodes[k].value);
                ks.push(match mm {
                    Some((a, b)) => Kernel::MatMulBiasAct {
                        op,
                        a: self.nodes[a].value,
                        b: self.nodes[b].value,
                        bias,
                        xw,
                        z: n.value,
                        y,
                        m: rows,
                        k: self.nodes[a].shape[1],
                        n: cols,
                    },
                    None => Kernel::BiasActForward {
                        op,
                        xw,
                        bias,
                        z: n.value,
                        y,
                        rows,
                        cols,
                    },
                });
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
        let p = self.exec.compile(ks)?;
        self.forward_prog = Some(p);
        Ok(p)
    }

    /// Computes every node's value, in node order, as one submission.
    pub fn forward(&mut self) -> Result<()> {
        let p = self.forward_program()?;
        self.exec.run(&[p])?;
        self.dirty = false;
        Ok(())
    }

    /// Programs to prepend so values are current: the forward pass when inputs changed.
    fn pending_forward(&mut self) -> Result<Vec<ProgramId>> {
        Ok(if self.dirty {
            vec![self.forward_program()?]
        } else {
            vec![]
        })
    }

    /// Seeds d(loss) = 1 and runs the VJP of every node on the path to the parameters, in
    /// reverse order, as one submission (with the forward pass first if inputs changed since
    /// the last one). Parameter gradients accumulate across calls until [`Graph::zero_grad`].
    pub fn backward(&mut self, loss: NodeId) -> Result<()> {
        let l = self.check(loss)?;
        let bp = self.backward_program(l, false, false)?;
        let mut progs = self.pending_forward()?;
        progs.push(bp);
        self.exec.run(&progs)?;
        self.dirty = false;
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
        let mut progs = self.pending_forward()?;
        progs.push(bp);
        self.exec.run(&progs)?;
        self.dirty = false;
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
                n.grad.map(|g| Kernel::Fill {
                    out: g,
                    len: numel(&n.shape),
                    value: 0.0,
                    acc: false,
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

    fn ensure_current(&mut self) -> Result<()> {
        if self.dirty {
            self.forward()?;
        }
        Ok(())
    }

    /// The node's value (running the forward pass first if inputs changed), blocking.
    pub fn value(&mut self, id: NodeId) -> Result<Vec<f32>> {
        let i = self.check(id)?;
        self.check_read(i, 4)?;
        self.ensure_current()?;
        self.exec.read_f32(self.nodes[i].value)
    }

    /// The node's value in f64 (exact on the f64 CPU backend).
    pub fn value_f64(&mut self, id: NodeId) -> Result<Vec<f64>> {
        let i = self.check(id)?;
        self.check_read(i, 8)?;
        self.ensure_current()?;
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
        self.ensure_current()?;
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
        self.ensure_current()?;
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
