// Shared helpers, placed in front of every shader family (WGSL has no include), followed by
// the activation functions `unary_f` and `unary_df` generated from the Rust table of unary ops
// (src/kernels/unary.rs). No bindings.

// The flat index of an invocation in a 1-D grid of 256-wide workgroups folded into 2-D past
// the per-dimension limit.
fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

// A quiet NaN: what an op code without a formula computes (check_finite reports it). Read from
// a variable: a constant expression that evaluates to NaN is a shader-creation error in WGSL
// (browsers' compilers enforce it).
var<private> nan_bits: u32 = 0x7fc00000u;

fn nan() -> f32 {
    return bitcast<f32>(nan_bits);
}

// The error function (WGSL has none): Abramowitz and Stegun 7.1.26, absolute error ≤ 1.5e-7.
fn erf(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-x * x));
}
