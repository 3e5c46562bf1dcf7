//! Reverse-mode differentiation: the whole idea on one screen.
//!
//! 1. Find the nodes a gradient reaches: walk from the loss towards the front, following only
//!    inputs that require a gradient and that the op differentiates through.
//! 2. Seed d(loss) = 1.
//! 3. Visit those nodes in reverse creation order (a reverse topological order, so every
//!    consumer of a node is finished before the node itself) and emit each op's VJP kernels,
//!    which compute (∂out/∂input)ᵀ · d_out for each input — never a Jacobian.
//! 4. The first contribution to an intermediate gradient overwrites it; later ones (fan-out)
//!    add to it. Leaf gradients always add, so they accumulate across backward calls until
//!    `zero_grad`.

use super::{Graph, Node};
use crate::backend::{Kernel, ProgramId};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::ops::{numel, Arg, GradTarget, Op};

/// Nodes through which the gradient of `loss` flows, as a mask over node indices.
fn reached(nodes: &[Node], loss: usize) -> Vec<bool> {
    let mut needs = vec![false; nodes.len()];
    needs[loss] = nodes[loss].requires_grad;
    for i in (0..=loss).rev() {
        if !needs[i] {
            continue;
        }
        let inputs = nodes[i].op.inputs();
        for &pos in nodes[i].op.differentiable() {
            if nodes[inputs[pos]].requires_grad {
                needs[inputs[pos]] = true;
            }
        }
    }
    needs
}

/// The fused VJP of the layer pattern H = f(XW + b) (see [`super::layer_pattern`]) at the
/// activation node `k`, when XW and b both need gradients: one kernel computes d_Z, d_XW and
/// d_b (`shaders/fused.wgsl`). Returns None when it does not apply.
fn fused_layer_vjp(
    nodes: &[Node],
    k: usize,
    needs: &[bool],
    uses: &[usize],
    keep: &[bool],
    written: &mut [bool],
    grad: impl Fn(usize) -> crate::backend::BufId,
) -> Option<Kernel> {
    let (op, z, xw, bias) = super::layer_pattern(nodes, uses, k)?;
    if !needs[z] || !needs[xw] || !needs[bias] || written[z] {
        return None;
    }
    let (rows, cols) = (nodes[z].shape[0], nodes[z].shape[1]);
    let kernel = Kernel::BiasActBackward(kn::BiasActBackward {
        op,
        z: nodes[z].value,
        y: nodes[k].value,
        g: grad(k),
        dz: grad(z),
        dx: grad(xw),
        db: grad(bias),
        rows,
        cols,
        acc_dx: keep[xw] || written[xw],
        acc_db: keep[bias] || written[bias],
    });
    written[z] = true;
    written[xw] = true;
    written[bias] = true;
    Some(kernel)
}

impl Graph {
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
        let nodes = &self.nodes;
        let grad = |i: usize| nodes[i].grad.expect("every reached node got a gradient buffer above");
        let mut written = vec![false; nodes.len()];
        // Gradients that add to what the buffer holds from earlier passes (leaves, unless fresh).
        let keep: Vec<bool> = nodes.iter().map(|n| n.is_leaf() && !fresh).collect();
        let mut ks = Vec::new();
        if fresh {
            for n in nodes
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
        if !seeded {
            ks.push(Kernel::Fill(kn::Fill {
                out: grad(loss),
                len: 1,
                value: 1.0,
                acc: keep[loss],
            }));
        }
        written[loss] = true;
        let fuse = self.fusion && self.exec.max_storage_buffers() >= 6;
        let uses = super::use_counts(nodes);
        let mut fused = vec![false; nodes.len()];
        for i in (0..=loss).rev() {
            if !needs[i] || nodes[i].is_leaf() || fused[i] {
                continue;
            }
            if fuse {
                if let Some(k) = fused_layer_vjp(nodes, i, &needs, &uses, &keep, &mut written, grad) {
                    ks.push(k);
                    if let Op::Unary { x, .. } = nodes[i].op {
                        fused[x] = true;
                    }
                    continue;
                }
            }
            let node = &nodes[i];
            let inputs = node.op.inputs();
            let args: Vec<Arg> = inputs
                .iter()
                .map(|&j| Arg {
                    buf: nodes[j].value,
                    shape: &nodes[j].shape,
                })
                .collect();
            let targets: Vec<Option<GradTarget>> = inputs
                .iter()
                .enumerate()
                .map(|(pos, &j)| {
                    (needs[j] && node.op.differentiable().contains(&pos)).then(|| {
                        // The same node twice among one op's inputs (x·x) also accumulates.
                        let t = GradTarget {
                            buf: grad(j),
                            acc: keep[j] || written[j],
                        };
                        written[j] = true;
                        t
                    })
                })
                .collect();
            ks.extend(node.op.vjp(
                &args,
                Arg {
                    buf: node.value,
                    shape: &node.shape,
                },
                grad(i),
                &node.aux,
                &targets,
            ));
        }
        let p = self.exec.compile(ks)?;
        self.backward_progs.insert((loss, seeded, fresh), p);
        Ok(p)
    }

    /// After a backward from `loss`: leaves it reached hold gradients from now on; intermediate
    /// nodes hold gradients only if this pass reached them.
    pub(super) fn mark_grads(&mut self, loss: usize) {
        let needs = reached(&self.nodes, loss);
        for (n, reached) in self.nodes.iter_mut().zip(needs) {
            if n.is_leaf() {
                n.grad_ready |= reached;
            } else {
                n.grad_ready = reached;
            }
        }
    }
}
