// Reductions along one axis, and their VJPs.
//
// Axes of at most 1024 elements use the `*_serial` variants: one thread per output element
// walking the axis in order — no workgroup memory, no barriers, consecutive threads reading
// consecutive addresses when inner > 1 (bias gradients). Longer axes use the tree below.
//
// The input is viewed as [outer, axis, inner] and reduced along the middle axis to
// [outer, inner]. Forward: one workgroup of 256 threads per output element; each thread
// folds a strided slice of the axis, then a fixed-order tree in workgroup memory combines
// them, so results are deterministic (no atomics). Backward: one thread per input element.
//
// Bindings (group 0):
//   0  p        uniform Params
//   1  x        storage, read        input (forward) / upstream gradient g (backward)
//   2  arg_out  storage, read_write  argmax index per output, as f32 (reduce_max_forward)
//   3  out      storage, read_write  reduced values (forward) / d_x (backward)
//   4  arg_in   storage, read        argmax indices (reduce_max_backward)
// Override MEAN: 1 divides sums by the axis length (mean), 0 keeps them (sum).

override MEAN: u32 = 0u;

// a0 .. a1: the slice of the axis a tree-reduction dispatch folds. The host splits a long axis
// into slices so that no invocation loops more than a bounded number of times (some drivers cut
// longer loops short); each slice after the first adds into the output (sum, mean: every slice
// divides by the whole axis length) or, for max, merges with it (`merge`).
// `struct Params` is generated from `ReduceParams` in src/kernels/reduce.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> arg_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> arg_in: array<f32>;

var<workgroup> part: array<f32, 256>;

// v, through a bit operation with a uniform the host sets to 0: a compiler cannot prove that
// the result equals v, so it cannot simplify Kahan's compensation ((s + y) − s) − y to 0 (Mesa
// does, without this).
fn opaque(v: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(v) ^ p.zero);
}
var<workgroup> part_i: array<u32, 256>;

fn store(i: u32, v: f32) {
    if (p.acc != 0u) {
        out[i] = out[i] + v;
    } else {
        out[i] = v;
    }
}

// Index of x[o, 0, i] for output o = (o_outer, i).
fn base_of(o: u32) -> u32 {
    return (o / max(p.inner, 1u)) * p.axis * p.inner + o % max(p.inner, 1u);
}

@compute @workgroup_size(256)
fn reduce_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = wid.y * nwg.x + wid.x;   // output element (uniform across the workgroup)
    let total = p.outer * p.inner;
    let valid = o < total;
    let base = base_of(o);
    // Compensated (Kahan) sum of this thread's strided slice: the tree below adds only 8 levels,
    // so the result stays within a few ulps of the exact sum however long the axis.
    var s = 0.0;
    var comp = 0.0;
    if (valid) {
        for (var a = p.a0 + lid; a < p.a1; a += 256u) {
            let y = x[base + a * p.inner] - comp;
            let t = s + y;
            comp = (t - opaque(s)) - y;
            s = t;
        }
    }
    part[lid] = s;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w >> 1u) {
        if (lid < w) {
            part[lid] = part[lid] + part[lid + w];
        }
        workgroupBarrier();
    }
    if (lid == 0u && valid) {
        var v = part[0];
        if (MEAN != 0u) {
            v = v / f32(p.axis);
        }
        store(o, v);
    }
}

// NaN test on the bits: `v != v` may be folded away by drivers that compile with fast-math.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Max with the index of its first occurrence; a NaN anywhere wins, so NaN propagates.
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    let v_nan = is_nan(v);
    let b_nan = is_nan(bv);
    if (v_nan != b_nan) { return v_nan; }
    if (v_nan || v == bv) { return i < bi; }
    return v > bv;
}

@compute @workgroup_size(256)
fn reduce_max_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = wid.y * nwg.x + wid.x;
    let total = p.outer * p.inner;
    let valid = o < total;
    let base = base_of(o);
    var bv = -3.402823e38;
    var bi = 0xffffffffu;
    if (valid) {
        for (var a = p.a0 + lid; a < p.a1; a += 256u) {
            let v = x[base + a * p.inner];
            if (bi == 0xffffffffu || better(v, a, bv, bi)) {
                bv = v;
                bi = a;
            }
        }
    }
    part[lid] = bv;
    part_i[lid] = bi;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w >> 1u) {
        if (lid < w) {
            let oi = part_i[lid + w];
            if (oi != 0xffffffffu && (part_i[lid] == 0xffffffffu || better(part[lid + w], oi, part[lid], part_i[lid]))) {
                part[lid] = part[lid + w];
                part_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u && valid) {
        // A later slice replaces the earlier slices' result only if it is better (its indices
        // are larger, so a tie keeps the earlier, first occurrence).
        if (p.merge != 0u && !better(part[0], part_i[0], out[o], u32(arg_out[o]))) {
            return;
        }
        if (p.merge != 0u) {
            out[o] = part[0];
        } else {
            store(o, part[0]);
        }
        arg_out[o] = f32(part_i[0]);
    }
}

// d_x[o, a, i] (+)= g[o, i] (sum) or g[o, i] / axis (mean)
@compute @workgroup_size(256)
fn reduce_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = flat(wid, nwg, lid);
    if (e >= p.outer * p.axis * p.inner) { return; }
    let o = e / (p.axis * p.inner);
    let i = e % p.inner;
    var v = x[o * p.inner + i];
    if (MEAN != 0u) {
        v = v / f32(p.axis);
    }
    store(e, v);
}

// d_x[o, a, i] (+)= g[o, i] where a is the recorded argmax, else 0
@compute @workgroup_size(256)
fn reduce_max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = flat(wid, nwg, lid);
    if (e >= p.outer * p.axis * p.inner) { return; }
    let o = e / (p.axis * p.inner);
    let a = (e / p.inner) % p.axis;
    let i = e % p.inner;
    let hit = u32(arg_in[o * p.inner + i]) == a;
    store(e, select(0.0, x[o * p.inner + i], hit));
}

// ---- Short axes: one thread per output element, a serial loop in axis order. ----

@compute @workgroup_size(256)
fn reduce_serial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = flat(wid, nwg, lid);
    if (o >= p.outer * p.inner) { return; }
    let base = base_of(o);
    var s = 0.0;
    for (var a = 0u; a < p.axis; a++) {
        s += x[base + a * p.inner];
    }
    if (MEAN != 0u) {
        s = s / f32(p.axis);
    }
    store(o, s);
}

@compute @workgroup_size(256)
fn reduce_max_serial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = flat(wid, nwg, lid);
    if (o >= p.outer * p.inner) { return; }
    let base = base_of(o);
    var bv = x[base];
    var bi = 0u;
    for (var a = 1u; a < p.axis; a++) {
        let v = x[base + a * p.inner];
        if (better(v, a, bv, bi)) {
            bv = v;
            bi = a;
        }
    }
    store(o, bv);
    arg_out[o] = f32(bi);
}
