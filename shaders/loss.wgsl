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

// lo .. hi (forward): the slice of the elements one dispatch folds; the host splits long inputs
// so that no invocation loops more than a bounded number of times, each slice after the first
// adding its share (acc) into the loss.
// `struct Params` is generated from `LossParams` in src/kernels/loss.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> part: array<f32, 256>;

// v, through a bit operation with a uniform the host sets to 0: a compiler cannot prove that
// the result equals v, so it cannot simplify Kahan's compensation ((s + y) − s) − y to 0 (Mesa
// does, without this).
fn opaque(v: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(v) ^ p.zero);
}

// SQUARES = 1: Σ a² into out[p.out_index] (no mean; b is not read): a gradient's squared norm
// for clipping.
override SQUARES: u32 = 0u;

@compute @workgroup_size(256)
fn mse_forward(@builtin(local_invocation_index) lid: u32) {
    // Compensated (Kahan) sum of this thread's strided slice, then an 8-level tree.
    var s = 0.0;
    var comp = 0.0;
    for (var i = p.lo + lid; i < p.hi; i += 256u) {
        var d = a[i];
        if (SQUARES == 0u) { d = d - b[i]; }
        let y = d * d - comp;
        let t = s + y;
        comp = (t - opaque(s)) - y;
        s = t;
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
        var v = part[0] / f32(p.len);
        var o = 0u;
        if (SQUARES != 0u) {
            v = part[0];
            o = p.out_index;
        }
        if (p.acc != 0u) {
            out[o] = out[o] + v;
        } else {
            out[o] = v;
        }
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
