// Elementwise functions of one argument and their vector-Jacobian products.
//
// Bindings (group 0):
//   0  p    uniform Params
//   1  x    storage, read        input x
//   2  y    storage, read        saved output y = f(x)           (backward only)
//   3  g    storage, read        upstream gradient d_y           (backward only)
//   4  out  storage, read_write  y (forward) or d_x (backward)
// Override OP selects the function: its code in the table of src/kernels/unary.rs, from which
// the prelude's `unary_f` (value) and `unary_df` (derivative) are generated.
// Dispatch: 1-D over `len`, workgroups of 256, folded into 2-D past the per-dimension limit.

override OP: u32 = 0u;

// `struct Params` is generated from `UnaryParams` in src/kernels/unary.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn unary_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    out[i] = unary_f(OP, x[i], p.alpha);
}

@compute @workgroup_size(256)
fn unary_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    let d = g[i] * unary_df(OP, x[i], y[i], p.alpha);
    if (p.acc != 0u) {
        out[i] = out[i] + d;
    } else {
        out[i] = d;
    }
}
