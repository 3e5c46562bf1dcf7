// Elementwise functions of one argument and their vector-Jacobian products.
//
// Bindings (group 0):
//   0  p    uniform Params
//   1  x    storage, read        input x
//   2  y    storage, read        saved output y = f(x)           (backward only)
//   3  g    storage, read        upstream gradient d_y           (backward only)
//   4  out  storage, read_write  y (forward) or d_x (backward)
// Override OP selects the function (codes as in UnaryOp::code):
//   0 sigmoid, 1 relu, 2 tanh, 3 exp, 4 log, 5 neg, 6 scale (by p.alpha), 7 square.
// Dispatch: 1-D over `len`, workgroups of 256, folded into 2-D past the per-dimension limit.

override OP: u32 = 0u;

struct Params {
    len: u32,
    acc: u32,    // backward: 1 accumulates into d_x
    alpha: f32,  // scale factor for OP 6
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

fn f(v: f32) -> f32 {
    if (OP == 0u) { return 1.0 / (1.0 + exp(-v)); }
    if (OP == 1u) { return max(v, 0.0); }
    // tanh saturates to ±1 in f32 beyond |v| = 10; clamping keeps drivers whose tanh overflows honest.
    if (OP == 2u) { return tanh(clamp(v, -15.0, 15.0)); }
    if (OP == 3u) { return exp(v); }
    if (OP == 4u) { return log(v); }
    if (OP == 5u) { return -v; }
    if (OP == 6u) { return p.alpha * v; }
    if (OP == 7u) { return v * v; }
    // An op code without a formula here gives NaN (check_finite reports it), never another op.
    return bitcast<f32>(0x7fc00000u);
}

// dy/dx given the input xv and the saved output yv.
fn df(xv: f32, yv: f32) -> f32 {
    if (OP == 0u) { return yv * (1.0 - yv); }
    if (OP == 1u) { return select(0.0, 1.0, xv > 0.0); }
    if (OP == 2u) { return 1.0 - yv * yv; }
    if (OP == 3u) { return yv; }
    if (OP == 4u) { return 1.0 / xv; }
    if (OP == 5u) { return -1.0; }
    if (OP == 6u) { return p.alpha; }
    if (OP == 7u) { return 2.0 * xv; }
    // An op code without a formula here gives NaN (check_finite reports it), never another op.
    return bitcast<f32>(0x7fc00000u);
}

@compute @workgroup_size(256)
fn unary_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    out[i] = f(x[i]);
}

@compute @workgroup_size(256)
fn unary_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    let d = g[i] * df(x[i], y[i]);
    if (p.acc != 0u) {
        out[i] = out[i] + d;
    } else {
        out[i] = d;
    }
}
