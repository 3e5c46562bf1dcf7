//! Dropout's mask from a counter-based hash (`shaders/dropout.wgsl`): element i of a draw is kept
//! when a hash of (seed, stream, counter, i) clears a threshold. The hash is integer arithmetic,
//! so the GPU and the CPU reference draw the same mask bit for bit, and a seed and a counter
//! give the same mask on every run.

use super::{u, wgsl_params, with_outs, BufId, Cx, Kernel, KernelDef, Launch, Real};
use crate::error::Result;

wgsl_params! {
    /// `Params` of `shaders/dropout.wgsl`.
    DropoutParams for "dropout" {
        len: u32,
        /// which dropout node draws (its node index): independent masks per node
        stream: u32,
        /// an element is kept when the hash's top 24 bits are at least this: round(p·2^24)
        threshold: u32,
        /// 1 / (1 − p), the kept elements' factor (0 when p = 1)
        scale: f32,
    }
}

/// out = x ⊙ mask, mask\[i\] = `scale` where element i is kept, else 0 (the mask is saved for
/// the VJP, d_x = g ⊙ mask). `state` holds the draw counter and the seed, four 16-bit halves
/// stored as floats (exact on every backend): counter low, counter high, seed low, seed high.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Dropout {
    pub x: BufId,
    pub state: BufId,
    pub out: BufId,
    pub mask: BufId,
    pub len: usize,
    pub stream: u32,
    pub threshold: u32,
    pub scale: f32,
}

/// lowbias32 (Wellons): a bijective 32-bit mixer with low bias.
#[inline(always)]
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The 32-bit hash element `i` of draw `counter` of `stream` under `seed` is kept by; the same
/// operations as `keep_hash` in the shader.
#[inline(always)]
pub(crate) fn keep_hash(seed: u32, stream: u32, counter: u32, i: u32) -> u32 {
    let k1 = mix(seed ^ mix(stream.wrapping_add(0x632b_e5ab)));
    let k2 = mix(counter ^ k1);
    mix(mix(i ^ k1).wrapping_add(k2))
}

/// The threshold and factor of a drop probability `p` in `[0, 1]`.
pub(crate) fn threshold_and_scale(p: f32) -> (u32, f32) {
    let threshold = (p as f64 * (1u64 << 24) as f64).round() as u32;
    let scale = if p >= 1.0 { 0.0 } else { 1.0 / (1.0 - p) };
    (threshold, scale)
}

impl KernelDef for Dropout {
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let p = DropoutParams {
            len: u(self.len),
            stream: self.stream,
            threshold: self.threshold,
            scale: self.scale,
        };
        let binds = vec![
            (1, self.x, true),
            (2, self.state, true),
            (3, self.out, false),
            (4, self.mask, false),
        ];
        Ok(vec![Launch::new("dropout", &p, binds, cx.elems(self.len)?)])
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let s: Vec<u32> = b[self.state].iter().map(|v| v.to_f64() as u32).collect();
        let (counter, seed) = (s[0] | (s[1] << 16), s[2] | (s[3] << 16));
        // The factor in f32, as the GPU multiplies by it.
        let scale = T::from_f64(self.scale as f64);
        with_outs!(b, [self.out, self.mask], |[o, m], b| {
            let x = &b[self.x];
            for i in 0..self.len {
                let kept = keep_hash(seed, self.stream, counter, i as u32) >> 8 >= self.threshold;
                m[i] = if kept { scale } else { T::zero() };
                o[i] = x[i] * m[i];
            }
        })
    }
}

/// Representative kernels of the family.
pub(crate) fn examples() -> Vec<Kernel> {
    let (threshold, scale) = threshold_and_scale(0.25);
    vec![Dropout {
        x: 0,
        state: 1,
        out: 2,
        mask: 3,
        len: 10,
        stream: 7,
        threshold,
        scale,
    }
    .into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mixer_is_a_bijection_on_a_sample_and_keeps_the_expected_fraction() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u32 {
            assert!(seen.insert(mix(i)));
        }
        let (t, _) = threshold_and_scale(0.3);
        let kept = (0..1_000_000u32).filter(|&i| keep_hash(1, 2, 3, i) >> 8 >= t).count();
        assert!((kept as f64 / 1e6 - 0.7).abs() < 0.003, "{kept}");
    }
}
