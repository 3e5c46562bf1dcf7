// Sliding windows over NCHW images: im2col and its vector-Jacobian product col2im.
//
// Bindings (group 0):
//   0  p    uniform Params
//   1  x    storage, read        the image (im2col) or the window matrix's gradient (col2im)
//   3  out  storage, read_write  the window matrix (im2col) or the image's gradient (col2im)
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
