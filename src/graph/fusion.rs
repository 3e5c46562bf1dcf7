//! Kernel fusion: where the graph has the layer pattern H = f(XW + b), the forward pass computes
//! Z = XW + b and H together (with the matmul too where the backend's matmul kernel has the
//! epilogue), and the backward pass computes d_Z, d_XW and d_b in one kernel. Everything here
//! only decides which kernels replace which nodes' own; results are the same either way.

use super::{Graph, Node};
use crate::backend::{BufId, Kernel, UnaryOp};
use crate::kernels as kn;
use crate::ops::Op;

/// How many times each node is read by an op (an op reading a node twice counts twice).
pub(super) fn use_counts(nodes: &[Node]) -> Vec<usize> {
    let mut uses = vec![0usize; nodes.len()];
    for n in nodes {
        n.op.inputs().into_iter().for_each(|j| uses[j] += 1);
    }
    uses
}

/// The layer pattern H = f(Z), Z = XW + b with f ∈ {σ, ReLU, tanh}, seen from the activation
/// node `k`, when Z is read by f alone (so Z's gradient is f's VJP alone and Z can be computed
/// together with H). Returns (f, Z, XW, b) as node indices.
fn layer_pattern(nodes: &[Node], uses: &[usize], k: usize) -> Option<(UnaryOp, usize, usize, usize)> {
    let Op::Unary { op, x: z } = nodes[k].op else {
        return None;
    };
    if !op.fusable() || uses[z] != 1 {
        return None;
    }
    match nodes[z].op {
        Op::BiasAdd { x: xw, bias } if xw != bias => Some((op, z, xw, bias)),
        _ => None,
    }
}

/// A layer whose forward pass runs fused, planned at its bias-add node Z: (the activation node H,
/// f, XW, b, and the matmul's operands (m×k, k×n) where the matmul is fused too).
pub(super) type FusedLayer = (usize, UnaryOp, usize, usize, Option<(usize, usize)>);

impl Graph {
    /// The forward pass's fusion plan: the fused layer computed at each bias-add node, if any,
    /// and the nodes whose own kernels are skipped because a fused kernel elsewhere computes
    /// them: here the matmuls fused into their bias-add (`forward_program` adds each activation
    /// when it emits its layer's kernel).
    pub(super) fn forward_fusion(&self) -> (Vec<Option<FusedLayer>>, Vec<bool>) {
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
                            // Only a plain matrix product (no batch, no vector operand).
                            let (sa, sb) = (&self.nodes[a].shape, &self.nodes[b].shape);
                            (sa.len() == 2 && sb.len() == 2 && self.exec.fuses_matmul_bias_act(sa[0], sa[1], sb[1]))
                                .then_some((a, b))
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
        (fused_into, skip)
    }

    /// The fused forward kernel of `layer` at its bias-add node `n`: Z and H = f(Z), and XW as
    /// well where the layer's matmul is fused.
    pub(super) fn fused_forward(&self, n: &Node, (k, op, xw, bias, mm): FusedLayer) -> Kernel {
        let (rows, cols) = (n.shape[0], n.shape[1]);
        let (xw, bias, y) = (self.nodes[xw].value, self.nodes[bias].value, self.nodes[k].value);
        match mm {
            Some((a, b)) => Kernel::MatMulBiasAct(kn::MatMulBiasAct {
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
            }),
            None => Kernel::BiasActForward(kn::BiasActForward {
                op,
                xw,
                bias,
                z: n.value,
                y,
                rows,
                cols,
            }),
        }
    }

    /// The backward pass's fusion state, fresh for one backward program.
    pub(super) fn backward_fusion(&self) -> BackwardFusion {
        BackwardFusion {
            on: self.fusion && self.exec.max_storage_buffers() >= 6,
            uses: use_counts(&self.nodes),
            fused: vec![false; self.nodes.len()],
        }
    }
}

/// The fused VJP of the layer pattern H = f(XW + b) (see [`layer_pattern`]) at the
/// activation node `k`, when XW and b both need gradients: one kernel computes d_Z, d_XW and
/// d_b (`shaders/fused.wgsl`). Returns None when it does not apply.
fn fused_layer_vjp(
    nodes: &[Node],
    k: usize,
    needs: &[bool],
    uses: &[usize],
    keep: &[bool],
    written: &mut [bool],
    grad: impl Fn(usize) -> BufId,
) -> Option<Kernel> {
    let (op, z, xw, bias) = layer_pattern(nodes, uses, k)?;
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

/// Layer fusion in one backward program, which visits the nodes in reverse order.
pub(super) struct BackwardFusion {
    /// Fusion is on and the backend binds enough storage buffers for the fused kernel.
    on: bool,
    uses: Vec<usize>,
    /// Bias-add nodes whose VJP a fused kernel at their activation has already emitted.
    fused: Vec<bool>,
}

impl BackwardFusion {
    /// Whether a fused kernel already emitted node `i`'s VJP.
    pub(super) fn covers(&self, i: usize) -> bool {
        self.fused[i]
    }

    /// The fused VJP at node `k` (see [`fused_layer_vjp`]), when fusion is on and it applies;
    /// the layer's bias-add then needs no VJP of its own.
    pub(super) fn vjp(
        &mut self,
        nodes: &[Node],
        k: usize,
        needs: &[bool],
        keep: &[bool],
        written: &mut [bool],
        grad: impl Fn(usize) -> BufId,
    ) -> Option<Kernel> {
        if !self.on {
            return None;
        }
        let kernel = fused_layer_vjp(nodes, k, needs, &self.uses, keep, written, grad)?;
        if let Op::Unary { x, .. } = nodes[k].op {
            self.fused[x] = true;
        }
        Some(kernel)
    }
}
