// Sliding windows over NCHW images: im2col and its vector-Jacobian product col2im; max and
// average pooling and their VJPs.
//
// Bindings (group 0):
//   0  p    uniform Params
//   1  x    storage, read        the image (im2col, pooling) or a gradient (the VJPs)
//   2  arg  storage, read_write  the window index of each max (max pooling and its VJP only)
//   3  out  storage, read_write  the window matrix (im2col), the pooled image, or the image's
//                                gradient (the VJPs)
// The window matrix is [groups, n·oh·ow, cg·kh·kw]: row (n·oh + y)·ow + x of group g holds the
// window at output position (y, x) over channels g·cg .. (g + 1)·cg, its elements in (channel,
// row, column) order. A window element outside the image reads `pad_value`.
// im2col writes one matrix element per invocation. col2im gathers, per image pixel, the
// gradients of the window elements that read it (at most kh·kw of them, a loop bounded by the
// window size, which the graph limits), in a fixed order: no atomics, the same bits every run.
// Dispatch: 1-D over `len`, workgroups of 256, folded into 2-D past the per-dimension limit.

// `struct Params` is generated from `ConvParams` in src/kernels/conv.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    let kw = p.kernel.y;
    let ohw = p.kernel.z * p.kernel.w;
    let k = p.dil.w * p.kk;
    let col = i % k;
    let row = i / k;
    let g = row / (p.nchw.x * ohw);
    let r = row % (p.nchw.x * ohw);
    let n = r / ohw;
    let y = (r % ohw) / p.kernel.w;
    let xo = r % p.kernel.w;
    let c = g * p.dil.w + col / p.kk;
    let ky = (col % p.kk) / kw;
    let kx = col % kw;
    // Coordinates in the padded image; the graph keeps them below 2^31.
    let sy = i32(y * p.sp.x + ky * p.dil.x) - i32(p.sp.z);
    let sx = i32(xo * p.sp.y + kx * p.dil.y) - i32(p.sp.w);
    var v = p.pad_value;
    if (sy >= 0 && sy < i32(p.nchw.z) && sx >= 0 && sx < i32(p.nchw.w)) {
        v = x[((n * p.nchw.y + c) * p.nchw.z + u32(sy)) * p.nchw.w + u32(sx)];
    }
    out[i] = v;
}

@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    let w = i % p.nchw.w;
    let h = (i / p.nchw.w) % p.nchw.z;
    let c = (i / (p.nchw.w * p.nchw.z)) % p.nchw.y;
    let n = i / (p.nchw.w * p.nchw.z * p.nchw.y);
    let g = c / p.dil.w;
    let ci = c % p.dil.w;
    let k = p.dil.w * p.kk;
    let rows = p.nchw.x * p.kernel.z * p.kernel.w;
    var s = 0.0;
    for (var ky = 0u; ky < p.kernel.x; ky++) {
        // Output row y reads this pixel with window row ky when y·sh + ky·dh − ph = h.
        let ty = i32(h + p.sp.z) - i32(ky * p.dil.x);
        if (ty < 0 || ty % i32(p.sp.x) != 0) { continue; }
        let y = u32(ty) / p.sp.x;
        if (y >= p.kernel.z) { continue; }
        for (var kx = 0u; kx < p.kernel.y; kx++) {
            let tx = i32(w + p.sp.w) - i32(kx * p.dil.y);
            if (tx < 0 || tx % i32(p.sp.y) != 0) { continue; }
            let xo = u32(tx) / p.sp.y;
            if (xo >= p.kernel.w) { continue; }
            let row = g * rows + (n * p.kernel.z + y) * p.kernel.w + xo;
            s += x[row * k + (ci * p.kernel.x + ky) * p.kernel.y + kx];
        }
    }
    if (p.acc != 0u) {
        out[i] = out[i] + s;
    } else {
        out[i] = s;
    }
}

// Pooling straight from the image, no window matrix: `pool_max` writes, per output element of
// [n, c, oh, ow], the largest element of its window (the padding reads `pad_value`, −∞; the
// first largest wins and a NaN wins over numbers, as in the max reduction) and saves its window
// index in `arg`; `pool_avg` the mean of its window's elements (the padding counts as zeros).
// Their VJPs gather, per image pixel, the gradients of the outputs whose window reads it (the one
// whose max it was, or each window's share of the mean), in a fixed order: the same bits every
// run. In these entry points `x` is the image (forward) or the output's gradient (backward) and
// `out` the output (forward) or the image's gradient (backward); `arg` (binding 2) is bound by
// the max pooling's two only.

@group(0) @binding(2) var<storage, read_write> arg: array<f32>;

// Output element i's window element (ky, kx): the pixel, or the padding value.
fn pool_read(i: u32, ky: u32, kx: u32) -> f32 {
    let ohw = p.kernel.z * p.kernel.w;
    let plane = i / ohw;  // image · channels + channel
    let y = (i % ohw) / p.kernel.w;
    let xo = i % p.kernel.w;
    let sy = i32(y * p.sp.x + ky * p.dil.x) - i32(p.sp.z);
    let sx = i32(xo * p.sp.y + kx * p.dil.y) - i32(p.sp.w);
    if (sy >= 0 && sy < i32(p.nchw.z) && sx >= 0 && sx < i32(p.nchw.w)) {
        return x[(plane * p.nchw.z + u32(sy)) * p.nchw.w + u32(sx)];
    }
    return p.pad_value;
}

// The output element whose window reads image pixel i with window element (ky, kx), or -1.
fn pool_reader(i: u32, ky: u32, kx: u32) -> i32 {
    let w = i % p.nchw.w;
    let h = (i / p.nchw.w) % p.nchw.z;
    let plane = i / (p.nchw.w * p.nchw.z);
    // Output row y reads this pixel with window row ky when y·sh + ky·dh − ph = h.
    let ty = i32(h + p.sp.z) - i32(ky * p.dil.x);
    let tx = i32(w + p.sp.w) - i32(kx * p.dil.y);
    if (ty < 0 || ty % i32(p.sp.x) != 0 || tx < 0 || tx % i32(p.sp.y) != 0) { return -1; }
    let y = u32(ty) / p.sp.x;
    let xo = u32(tx) / p.sp.y;
    if (y >= p.kernel.z || xo >= p.kernel.w) { return -1; }
    return i32((plane * p.kernel.z + y) * p.kernel.w + xo);
}

// NaN test on the bits (`v != v` may be folded away by drivers that compile with fast-math).
fn pool_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn pool_store(i: u32, s: f32) {
    if (p.acc != 0u) {
        out[i] = out[i] + s;
    } else {
        out[i] = s;
    }
}

@compute @workgroup_size(256)
fn pool_max(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    var best = pool_read(i, 0u, 0u);
    var besti = 0u;
    for (var a = 1u; a < p.kk; a++) {
        let v = pool_read(i, a / p.kernel.y, a % p.kernel.y);
        if (v > best || (pool_nan(v) && !pool_nan(best))) {
            best = v;
            besti = a;
        }
    }
    out[i] = best;
    arg[i] = f32(besti);
}

@compute @workgroup_size(256)
fn pool_avg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    var s = 0.0;
    for (var a = 0u; a < p.kk; a++) {
        s += pool_read(i, a / p.kernel.y, a % p.kernel.y);
    }
    out[i] = s / f32(p.kk);
}

@compute @workgroup_size(256)
fn pool_max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    var s = 0.0;
    for (var a = 0u; a < p.kk; a++) {
        let o = pool_reader(i, a / p.kernel.y, a % p.kernel.y);
        if (o >= 0 && u32(arg[o]) == a) { s += x[o]; }
    }
    pool_store(i, s);
}

@compute @workgroup_size(256)
fn pool_avg_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    var s = 0.0;
    for (var a = 0u; a < p.kk; a++) {
        let o = pool_reader(i, a / p.kernel.y, a % p.kernel.y);
        if (o >= 0) { s += x[o]; }
    }
    pool_store(i, s / f32(p.kk));
}
