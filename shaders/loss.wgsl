// Mean squared error loss and its VJP.
//
// Bindings (group 0):
//   0  p    uniform Params
//   1  a    storage, read        prediction
//   2  b    storage, read        target
//   3  g    storage, read        upstream gradient of the scalar loss (backward)
//   4  out  storage, read_write  the loss (1 element) / d_pred or d_target
// mse_forward runs as a single workgroup: 256 threads fold strided slices, then a fixed-order
// tree sums them (deterministic). mse_backward is one thread per element.

struct Params {
    len: u32,
    acc: u32,
    which: u32,   // backward: 0 -> d_pred, 1 -> d_target
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn mse_forward(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = lid; i < p.len; i += 256u) {
        let d = a[i] - b[i];
        s += d * d;
    }
    part[lid] = s;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w >> 1u) {
        if (lid < w) {
            part[lid] = part[lid] + part[lid + w];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[0] = part[0] / f32(p.len);
    }
}

@compute @workgroup_size(256)
fn mse_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.len) { return; }
    let sign = select(2.0, -2.0, p.which == 1u);
    let v = g[0] * sign / f32(p.len) * (a[i] - b[i]);
    if (p.acc != 0u) {
        out[i] = out[i] + v;
    } else {
        out[i] = v;
    }
}
