// Strided copies: permute, narrow and concatenate, and their vector-Jacobian products.
//
// Bindings (group 0):
//   0  p    uniform Params
//   1  x    storage, read        the source
//   3  out  storage, read_write  the destination
// For every index i of `shape` (rank 4, leading extents 1):
//   out[out_off + i·out_str] = x[x_off + i·x_str]   (or += when acc)
// Each destination element is written by one invocation (the views never overlap themselves).
// Dispatch: 1-D over `len` = the product of `shape`, workgroups of 256, folded into 2-D past the
// per-dimension limit.

// `struct Params` is generated from `LayoutParams` in src/kernels/layout.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn offset(i: vec4<u32>, s: vec4<u32>) -> u32 {
    return i.x * s.x + i.y * s.y + i.z * s.z + i.w * s.w;
}

@compute @workgroup_size(256)
fn strided_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    let s = p.shape;
    let r2 = i / s.w;
    let r1 = r2 / s.z;
    let idx = vec4<u32>(r1 / s.y, r1 % s.y, r2 % s.z, i % s.w);
    let v = x[p.x_off + offset(idx, p.x_str)];
    let o = p.out_off + offset(idx, p.out_str);
    if (p.acc != 0u) {
        out[o] = out[o] + v;
    } else {
        out[o] = v;
    }
}
