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
use crate::backend::Kernel;
use crate::kernels as kn;
use crate::ops::{Arg, GradTarget};

/// Nodes through which the gradient of `loss` flows, as a mask over node indices.
pub(super) fn reached(nodes: &[Node], loss: usize) -> Vec<bool> {
    let mut needs = vec![false; nodes.len()];
    needs[loss] = nodes[loss].requires_grad;
    for i in (0..=loss).rev() {
        if !needs[i] {
            continue;
        }
        let inputs = nodes[i].op.inputs();
        for pos in nodes[i].op.differentiable() {
            if nodes[inputs[pos]].requires_grad {
                needs[inputs[pos]] = true;
            }
        }
    }
    needs
}

impl Graph {
    /// The kernels of the backward pass from `loss` through the nodes `needs` marks (see
    /// `backward_program`, which checks the loss, gives every reached node a gradient buffer and
    /// caches the program): d(loss) = 1 unless `seeded`, then each reached op's VJP in reverse
    /// order. `fresh`: leaf gradients are overwritten by their first contribution instead of
    /// added to.
    pub(super) fn backward_kernels(&self, loss: usize, needs: &[bool], seeded: bool, fresh: bool) -> Vec<Kernel> {
        let nodes = &self.nodes;
        let grad = |i: usize| {
            nodes[i]
                .grad
                .expect("backward_program allocates every reached gradient")
        };
        let mut written = vec![false; nodes.len()];
        // Gradients that add to what the buffer holds from earlier passes (leaves, unless fresh).
        let keep: Vec<bool> = nodes.iter().map(|n| n.is_leaf() && !fresh).collect();
        let mut ks = Vec::new();
        if !seeded {
            ks.push(Kernel::Fill(kn::Fill {
                out: grad(loss),
                len: 1,
                value: 1.0,
                acc: keep[loss],
            }));
        }
        written[loss] = true;
        let mut fusion = self.backward_fusion();
        for i in (0..=loss).rev() {
            if !needs[i] || nodes[i].is_leaf() || fusion.covers(i) {
                continue;
            }
            if let Some(k) = fusion.vjp(nodes, i, needs, &keep, &mut written, grad) {
                ks.push(k);
                continue;
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
            let aux: Vec<_> = node.aux.iter().chain(&node.scratch).copied().collect();
            ks.extend(node.op.vjp(
                &args,
                Arg {
                    buf: node.value,
                    shape: &node.shape,
                },
                grad(i),
                &aux,
                &targets,
            ));
        }
        ks
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
