// Rows of a table by integer ids (embedding lookup) and its VJP, a deterministic scatter-add.
//
// Bindings (group 0):
//   0  p    uniform Params
//   1  x    storage, read        the table (forward) or the upstream gradient (backward)
//   2  ids  storage, read        row ids, as floats (exact below 2^24), clamped to 0 .. vocab
//   3  out  storage, read_write  the gathered rows (forward) or the table's gradient (backward)
// gather_forward: one invocation per output element, out[r, c] = x[ids[r], c].
// gather_backward: one invocation per table element (v, c), summing g[r, c] over the rows
// r0 .. r1 with ids[r] = v in row order with Kahan compensation — the same bits every run, no
// atomics, accurate for ids repeated many times. The host splits
// the rows into dispatches of a bounded length, each after the first adding into the gradient.
// Dispatch: 1-D, workgroups of 256, folded into 2-D past the per-dimension limit.

// `struct Params` is generated from `GatherParams` in src/kernels/gather.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// v, through a bit operation with a uniform the host sets to 0, so that compilers cannot
// simplify Kahan's compensation away (as in loss.wgsl and reduce.wgsl).
fn opaque(v: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(v) ^ p.zero);
}

fn row_id(r: u32) -> u32 {
    return min(u32(max(ids[r], 0.0)), p.vocab - 1u);
}

@compute @workgroup_size(256)
fn gather_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.rows * p.cols) { return; }
    let r = i / p.cols;
    out[i] = x[row_id(r) * p.cols + i % p.cols];
}

@compute @workgroup_size(256)
fn gather_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.vocab * p.cols) { return; }
    let v = i / p.cols;
    let c = i % p.cols;
    var s = 0.0;
    var comp = 0.0;
    for (var r = p.r0; r < p.r1; r++) {
        if (row_id(r) == v) {
            let y = x[r * p.cols + c] - comp;
            let t = s + y;
            comp = (t - opaque(s)) - y;
            s = t;
        }
    }
    if (p.acc != 0u) {
        out[i] = out[i] + s;
    } else {
        out[i] = s;
    }
}
