// Elementwise functions of two arguments with NumPy broadcasting, and their VJPs.
//
// Bindings (group 0):
//   0  p    uniform Params
//   1  a    storage, read
//   2  b    storage, read
//   3  g    storage, read        upstream gradient (backward only)
//   4  out  storage, read_write  a∘b (forward) or d_a / d_b (backward)
// Shapes are padded to rank 4. a_str / b_str are element strides into a and b for an index
// of the output, 0 along axes where that operand has extent 1 (it is broadcast).
// Override OP (BinaryOp's order): 0 add, 1 sub, 2 mul, 3 div, 4 gt, 5 lt, 6 eq (comparisons give
// 1 or 0 and no gradient).
// The backward runs one thread per element of the target operand (shape t_shape) and sums
// the gradient over the axes that operand was broadcast along: no atomics, deterministic.

override OP: u32 = 0u;

// `struct Params` is generated from `BinaryParams` in src/kernels/binary.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn unravel(i: u32, s: vec4<u32>) -> vec4<u32> {
    var r = i;
    var idx: vec4<u32>;
    idx.w = r % s.w; r = r / s.w;
    idx.z = r % s.z; r = r / s.z;
    idx.y = r % s.y; r = r / s.y;
    idx.x = r;
    return idx;
}

fn dot4u(i: vec4<u32>, s: vec4<u32>) -> u32 {
    return i.x * s.x + i.y * s.y + i.z * s.z + i.w * s.w;
}

fn h(av: f32, bv: f32) -> f32 {
    if (OP == 0u) { return av + bv; }
    if (OP == 1u) { return av - bv; }
    if (OP == 2u) { return av * bv; }
    if (OP == 3u) { return av / bv; }
    if (OP == 4u) { return select(0.0, 1.0, av > bv); }
    if (OP == 5u) { return select(0.0, 1.0, av < bv); }
    if (OP == 6u) { return select(0.0, 1.0, av == bv); }
    // An op code without a formula here gives NaN (check_finite reports it), never another op.
    return nan();
}

fn partial(av: f32, bv: f32, which: u32) -> f32 {
    if (OP == 0u) { return 1.0; }
    if (OP == 1u) { return select(1.0, -1.0, which == 1u); }
    if (OP == 2u) { return select(bv, av, which == 1u); }
    if (OP == 3u) { return select(1.0 / bv, -av / (bv * bv), which == 1u); }
    // Comparisons are piecewise constant: no gradient.
    if (OP >= 4u && OP <= 6u) { return 0.0; }
    // An op code without a formula here gives NaN (check_finite reports it), never another op.
    return nan();
}

@compute @workgroup_size(256)
fn binary_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    let idx = unravel(i, p.out_shape);
    out[i] = h(a[dot4u(idx, p.a_str)], b[dot4u(idx, p.b_str)]);
}

@compute @workgroup_size(256)
fn binary_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    let t = unravel(i, p.t_shape);
    let os = p.out_shape;
    let o_str = vec4<u32>(os.y * os.z * os.w, os.z * os.w, os.w, 1u);
    // Extent to sum over on each axis: the output's where the target was broadcast, else 1.
    let ext = select(vec4<u32>(1u), os, p.t_shape != os);
    var s = 0.0;
    let lo = min(p.lo, ext);
    let hi = min(p.hi, ext);
    for (var i0 = lo.x; i0 < hi.x; i0++) {
        for (var i1 = lo.y; i1 < hi.y; i1++) {
            for (var i2 = lo.z; i2 < hi.z; i2++) {
                for (var i3 = lo.w; i3 < hi.w; i3++) {
                    let idx = select(t, vec4<u32>(i0, i1, i2, i3), p.t_shape != os);
                    let gi = g[dot4u(idx, o_str)];
                    s += gi * partial(a[dot4u(idx, p.a_str)], b[dot4u(idx, p.b_str)], p.which);
                }
            }
        }
    }
    if (p.acc != 0u) {
        out[i] = out[i] + s;
    } else {
        out[i] = s;
    }
}
