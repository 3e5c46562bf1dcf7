//! Dropout and the graph's random stream: a seed and a draw counter kept in a small input the
//! dropout kernels read. Every forward pass that computes a dropout node draws anew (the
//! counter advances); the mask it drew is saved with the values, so the backward pass always
//! uses the mask of the values it differentiates.

use super::{Graph, NodeId};
use crate::error::{Error, Result};
use crate::ops::Op;

impl Graph {
    /// Dropout (PyTorch's `dropout` in training mode): each element of `x` is zeroed with
    /// probability `p` (in `[0, 1]`) and the others are scaled by 1 / (1 − p). The mask comes
    /// from a counter-based hash of the graph's seed ([`Graph::set_seed`]), this node and the
    /// draw: a new mask every forward pass, the same masks for the same seed and sequence of
    /// passes, on every device bit for bit. The gradient is g ⊙ mask with the mask saved by the
    /// forward pass. For evaluation, build the inference branch without it.
    pub fn dropout(&mut self, x: NodeId, p: f32) -> Result<NodeId> {
        let x = self.check(x)?;
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::arg("dropout", format!("probability {p} is not in [0, 1]")));
        }
        let state = self.dropout_state()?;
        let stream = self.nodes.len() as u32;
        self.add_op(Op::Dropout { x, state, p, stream }, None)
    }

    /// Seeds the random stream of [`Graph::dropout`] and restarts its draw counter: the same
    /// seed and the same sequence of forward passes give the same masks. The default seed is 0.
    pub fn set_seed(&mut self, seed: u64) -> Result<()> {
        self.rng_seed = (seed ^ (seed >> 32)) as u32;
        self.rng_counter = 0;
        self.write_rng_state()
    }

    /// The dropout state input, created with the first dropout node.
    fn dropout_state(&mut self) -> Result<usize> {
        if let Some(i) = self.rng_state.filter(|&i| i < self.nodes.len()) {
            return Ok(i);
        }
        let id = self.input("dropout_state", &[4])?;
        self.rng_state = Some(id.idx);
        self.write_rng_state()?;
        Ok(id.idx)
    }

    fn write_rng_state(&mut self) -> Result<()> {
        let Some(i) = self.rng_state.filter(|&i| i < self.nodes.len()) else {
            return Ok(());
        };
        let (c, s) = (self.rng_counter, self.rng_seed);
        let words = [c & 0xffff, c >> 16, s & 0xffff, s >> 16].map(f64::from);
        // Not a user write: the values computed so far stay current.
        self.exec.write(self.nodes[i].value, &words)
    }

    /// Before a forward program that computes a dropout node runs: a new draw.
    pub(super) fn advance_rng(&mut self) -> Result<()> {
        self.rng_counter = self.rng_counter.wrapping_add(1);
        self.write_rng_state()
    }
}
