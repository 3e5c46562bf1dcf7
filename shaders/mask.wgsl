// Masked fill and its VJP: out = fill where the (broadcast) mask is set, x elsewhere.
//
// Bindings (group 0):
//   0  p    uniform Params
//   1  x    storage, read        the input (forward) or the upstream gradient (backward)
//   2  mask storage, read        the mask, read through strides (0 along broadcast axes)
//   3  out  storage, read_write  the result (forward) or d_x (backward)
// A mask element is set when it is nonzero (with `invert`, when it is zero). The forward writes
// `value` there and x elsewhere; the backward passes g where the mask is not set, 0 where it is
// (the filled value does not depend on x). Inputs and outputs are contiguous over `shape`.
// Dispatch: 1-D over `len`, workgroups of 256, folded into 2-D past the per-dimension limit.

// `struct Params` is generated from `MaskParams` in src/kernels/mask.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn is_set(i: u32) -> bool {
    let s = p.shape;
    let r2 = i / s.w;
    let r1 = r2 / s.z;
    let m = p.m_str;
    let mi = (r1 / s.y) * m.x + (r1 % s.y) * m.y + (r2 % s.z) * m.z + (i % s.w) * m.w;
    return (mask[mi] != 0.0) != (p.invert != 0u);
}

@compute @workgroup_size(256)
fn mask_fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    out[i] = select(x[i], p.value, is_set(i));
}

@compute @workgroup_size(256)
fn mask_fill_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    let d = select(x[i], 0.0, is_set(i));
    if (p.acc != 0u) {
        out[i] = out[i] + d;
    } else {
        out[i] = d;
    }
}
