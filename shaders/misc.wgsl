// Data movement: fill, copy, bias_add, transpose.
//
// Bindings (group 0):
//   0  p    uniform Params
//   1  x    storage, read        source (copy, bias_add, transpose)
//   2  y    storage, read        bias vector (bias_add)
//   3  out  storage, read_write  destination
// Dispatch: 1-D over `len` elements in workgroups of 256, folded into a 2-D grid when the
// workgroup count exceeds the per-dimension limit; the flat id is rebuilt from num_workgroups.

// `struct Params` is generated from `MiscParams` in src/kernels/misc.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn store(i: u32, v: f32) {
    if (p.acc != 0u) {
        out[i] = out[i] + v;
    } else {
        out[i] = v;
    }
}

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    store(i, p.value);
}

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    store(i, x[i]);
}

// out[r, c] = x[r, c] + y[c]
@compute @workgroup_size(256)
fn bias_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    out[i] = x[i] + y[i % p.cols];
}

// out (+)= xᵀ, x is rows×cols; one thread per element of x.
@compute @workgroup_size(256)
fn transpose(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    let r = i / p.cols;
    let c = i % p.cols;
    store(c * p.rows + r, x[i]);
}
