// Matrix multiply C (+)= op(A)·op(B) and, through the same kernel, its two VJPs:
//   forward  C  = A·B        (TA = 0, TB = 0)
//   d_A      dA = G·Bᵀ       (TA = 0, TB = 1)  — B is read transposed in place, never copied
//   d_B      dB = Aᵀ·G       (TA = 1, TB = 0)
// Logical shapes after the optional transposes: op(A) is m×k, op(B) is k×n, C is m×n, all
// row-major in memory. A transposed operand is stored k×m (resp. n×k).
//
// Bindings (group 0):
//   0  p    uniform Params
//   1  a    storage, read (`matmul_naive` only)
//   2  b    storage, read (`matmul_naive` only)
//   3  c    storage, read_write
//   4  av4  storage, read — A as array<vec4<f32>> (the other kernels)
//   5  bv4  storage, read — B as array<vec4<f32>> (the other kernels)
//   6  bias storage, read — b (`matmul_bias_act` only)
//   7  zo   storage, read_write — Z = C + b (`matmul_bias_act` only)
//   8  yo   storage, read_write — H = f(Z) (`matmul_bias_act` only)
// All but 1 and 2 are declared in matmul_common.wgsl, which the crate embeds in front of this
// file, with the stores `put4` and `put4_bias_act`.
//
// `matmul` (real GPUs): a BM×BN tile of C per workgroup of (BN/TN)×(BM/TM) threads; each
// thread keeps a TM×TN block of C (TM, TN = 4 or 8) in registers. Every BK-deep step stages a
// BK×BM slice of op(A) and a BK×BN slice of op(B) in workgroup memory (both k-major, so the
// inner loop reads vec4s: TM/4 + TN/4 workgroup-memory loads per TM·TN multiply-adds), with
// vec4 loads from the buffers where the operand's contiguous dimension is a multiple of 4 (AV,
// BV) and scalar loads otherwise; either way consecutive threads read consecutive addresses.
// Tile sizes are override constants chosen per adapter class by the host (`MatmulTiles`).
// Edges are zero-padded on load and masked on store, so any m, k, n is correct.
// `matmul_bias_act`: `matmul` with the epilogue of the layer pattern H = f(XW + b): it writes
// C = XW and also Z = C + b and H = f(Z), replacing a bias-activation kernel.
// `matmul_reg` (CPU-like adapters such as llvmpipe, which run the invocations of a workgroup as
// SIMD lanes, pay per lane for every buffer or workgroup-memory load and a coroutine switch per
// barrier): no workgroup memory and no barriers. Each invocation computes an 8×8 block of C in
// 16 vec4 accumulators, reading op(A) and op(B) straight from the storage buffers through vec4
// views (bindings 4 and 5, the same buffers as 1 and 2) — 16 vec4 loads per 256 multiply-adds,
// each a 4-deep step in k. Each operand is read as vec4s along its contiguous dimension: A along k
// (TA = 0) or m (TA = 1), B along n (TB = 0) or k (TB = 1). Requires k % 4 == 0, and m % 4 == 0
// when TA = 1, n % 4 == 0 when TB = 0 (the host runs `matmul_reg_any` otherwise); rows and
// columns past the edge are clamped on load and masked on store. Workgroup shape RWX×RWY is
// set per adapter by the host; a workgroup covers (RWY·8) rows × (RWX·8) columns.
// `matmul_reg_any`: `matmul_reg` for any m, k, n (unaligned vec4s cut from aligned pairs; see
// its comment). Bindings 4, 5 and 3, like `matmul_reg`.
// `matmul_naive`: one output per thread, the simple baseline the benchmark compares against.

// TA, TB (the orientation) are declared in matmul_common.wgsl.

// `matmul` tile shape, set per adapter class by the host (see `MatmulTiles`): a BM×BN tile of C
// per workgroup of (BN/TN)×(BM/TM) threads, BK-deep stages; TM, TN ∈ {4, 8}; BM, BN multiples
// of 8 when TM, TN = 8. AV / BV: op(A) / op(B) may be loaded as vec4s along its contiguous
// dimension (the host checks alignment: k % 4 for A, n % 4 for B, m % 4 for a transposed A...).
override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override TM: u32 = 4u;
override TN: u32 = 4u;
override AV: u32 = 0u;
override BV: u32 = 0u;
override RWX: u32 = 16u;  // `matmul_reg` workgroup shape (invocations along n, along m)
override RWY: u32 = 4u;
// IM2COL = 1 (`matmul_naive` and `matmul` with AV = 0): A is the window matrix of an image, an
// implicit GEMM. A's binding holds the NCHW image, and each element of the window matrix
// [groups, n·oh·ow, cg·kh·kw] (stored row r, column c, from a_base on, as an im2col would have
// written it) is read from the image pixel it stands for, or is the padding value: the window
// matrix is never materialised. The geometry is in Params (the `w_` fields).
override IM2COL: u32 = 0u;
// (Every override is declared before the override-sized workgroup arrays below, ACT in
// matmul_common.wgsl included: naga 30 fails to process overrides declared after them.)

@group(0) @binding(1) var<storage, read> a: array<f32>;

// The implicit window matrix (IM2COL) is read through two halves of each element's address: a
// row entry (x: the image index of the window's top-left corner, which may lie in the padding;
// y, z: that corner's row and column in the image) and a column entry (x: the offset of the
// window element from the corner; y, z: its row and column offsets). Element (r, c) reads pixel
// (y_r + y_c, x_r + x_c) at index x_r + x_c, or the padding value outside the image.

// The row entry of row `r` of A's stored window matrix (from a_base on).
fn win_row(r: u32) -> vec4<i32> {
    // The row of the whole [groups·n·oh·ow, K] matrix (a_base is a multiple of K), its group,
    // image and output position.
    let rw = a_base / p.w_k + r;
    let g = rw / p.w_rows;
    let rg = rw - g * p.w_rows;
    let ohw = p.w_oh * p.w_ow;
    let ni = rg / ohw;
    let pos = rg - ni * ohw;
    let y = pos / p.w_ow;
    let xo = pos - y * p.w_ow;
    // Coordinates in the padded image; the graph keeps them below 2^31.
    let y0 = i32(y * p.w_sh) - i32(p.w_ph);
    let x0 = i32(xo * p.w_sw) - i32(p.w_pw);
    let plane = i32((ni * p.w_c + g * p.w_cg) * p.w_h * p.w_w);
    return vec4<i32>(plane + y0 * i32(p.w_w) + x0, y0, x0, 0);
}

// The column entry of column `c` of the window matrix: channel ci, window element (ky, kx).
fn win_col(c: u32) -> vec4<i32> {
    let ci = c / p.w_kk;
    let kr = c - ci * p.w_kk;
    let ky = kr / p.w_kw;
    let kx = kr - ky * p.w_kw;
    let dy = i32(ky * p.w_dh);
    let dx = i32(kx * p.w_dw);
    return vec4<i32>(i32(ci * p.w_h * p.w_w) + dy * i32(p.w_w) + dx, dy, dx, 0);
}

// The image index of the element with row entry `re` and column entry `ce`, or -1 in the padding.
fn win_offset(re: vec4<i32>, ce: vec4<i32>) -> i32 {
    let y = re.y + ce.y;
    let x = re.z + ce.z;
    if (y < 0 || y >= i32(p.w_h) || x < 0 || x >= i32(p.w_w)) { return -1; }
    return re.x + ce.x;
}

// Where element (r, c) of A's stored window matrix reads the image (the naive kernel's path).
fn win_index(r: u32, c: u32) -> i32 {
    return win_offset(win_row(r), win_col(c));
}
@group(0) @binding(2) var<storage, read> b: array<f32>;

var<workgroup> As: array<vec4<f32>, BK * BM / 4u>;  // [BK][BM / 4]: four rows of op(A) at one k
var<workgroup> Bs: array<vec4<f32>, BK * BN / 4u>;  // [BK][BN / 4]: four columns of op(B) at one k
// IM2COL: the window entries (see `win_row`) of op(A)'s BM rows in this workgroup's tile (TA =
// 0: row entries; TA = 1: column entries) and of the BK values of k in the current stage (the
// other kind), computed once each instead of once per element. One element otherwise.
var<workgroup> Wm: array<vec4<i32>, IM2COL * BM + 1u>;
var<workgroup> Wk: array<vec4<i32>, IM2COL * BK + 1u>;

fn a_at(row: u32, col: u32) -> f32 {
    if (row >= p.m || col >= p.k) { return 0.0; }
    if (IM2COL != 0u) {
        let i = win_index(select(row, col, TA != 0u), select(col, row, TA != 0u));
        if (i < 0) { return p.w_pad; }
        return a[u32(i)];
    }
    if (TA != 0u) { return a[a_base + col * p.m + row]; }
    return a[a_base + row * p.k + col];
}

fn b_at(row: u32, col: u32) -> f32 {
    if (row >= p.k || col >= p.n) { return 0.0; }
    if (TB != 0u) { return b[b_base + col * p.k + row]; }
    return b[b_base + row * p.n + col];
}

// Element e of A / B, read through the vec4 views (the tile kernel binds only those).
fn a_el(e: u32) -> f32 {
    let f = a_base + e;
    return av4[f / 4u][f % 4u];
}

// The window matrix's element with row entry `re` and column entry `ce`, read from the image
// through the vec4 view (IM2COL, tile kernel).
fn win_el(re: vec4<i32>, ce: vec4<i32>) -> f32 {
    let i = win_offset(re, ce);
    if (i < 0) { return p.w_pad; }
    return av4[u32(i) / 4u][u32(i) % 4u];
}

fn b_el(e: u32) -> f32 {
    let f = b_base + e;
    return bv4[f / 4u][f % 4u];
}

// A thread's TM×TN block of C: rows r0..r3 of row group tr and (TM = 8) r4..r7 of row group
// tr + BM/8; in each row, v0 holds column group tc and (TN = 8) v1 column group tc + BN/8. Named
// fields, not an indexed array, so that every accumulator is a register on every compiler (an
// array indexed in loops measured no faster than the naive kernel on an NVIDIA H200).
struct Tile8 {
    r0: Row8, r1: Row8, r2: Row8, r3: Row8,
    r4: Row8, r5: Row8, r6: Row8, r7: Row8,
}

// One row of the block after one k: r += s · [b0 | b1].
fn rank1(r: Row8, s: f32, b0: vec4<f32>, b1: vec4<f32>) -> Row8 {
    var o = r;
    o.v0 = fma(vec4<f32>(s), b0, r.v0);
    if (TN == 8u) { o.v1 = fma(vec4<f32>(s), b1, r.v1); }
    return o;
}

// This thread's TM×TN block of op(A)·op(B) (see Tile8).
fn tile_block(wid: vec3<u32>, lid3: vec3<u32>, lid: u32) -> Tile8 {
    let m = p.m;
    let k = p.k;
    let n = p.n;
    let nt = (BN / TN) * (BM / TM);  // threads per workgroup
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let bm4 = BM / 4u;
    let bn4 = BN / 4u;
    // This thread's outputs: row groups tr and tr + BM/8 (TM = 8) of four rows each, column
    // groups tc and tc + BN/8 (TN = 8) of four columns each, so that neighbouring threads read
    // neighbouring vec4s of Bs.
    let tr = lid3.y;
    let tc = lid3.x;
    var acc = Tile8();

    if (IM2COL != 0u) {
        // Entries past m are never read; computing them is harmless.
        for (var i = lid; i < BM; i += nt) {
            if (TA != 0u) { Wm[i] = win_col(row0 + i); } else { Wm[i] = win_row(row0 + i); }
        }
    }
    for (var t = p.k0; t < p.k1; t += BK) {
        if (IM2COL != 0u) {
            for (var i = lid; i < BK; i += nt) {
                if (TA != 0u) { Wk[i] = win_row(t + i); } else { Wk[i] = win_col(t + i); }
            }
            workgroupBarrier();
        }
        // Stage op(A)[row0 .. row0+BM, t .. t+BK] into As[kk][r / 4][r % 4], zero past the edges.
        if (AV != 0u && TA == 0u) {
            // A stored m×k, k % 4 == 0: vec4 loads along k, consecutive threads along k.
            for (var s = lid; s < BM * BK / 4u; s += nt) {
                let kq = s % (BK / 4u);
                let r = s / (BK / 4u);
                let row = row0 + r;
                let kk = t + 4u * kq;
                var v = vec4<f32>();
                if (row < m && kk < k) { v = av4[(a_base + row * k + kk) / 4u]; }
                let base = 4u * kq * bm4 + r / 4u;
                let comp = r % 4u;
                As[base][comp] = v.x;
                As[base + bm4][comp] = v.y;
                As[base + 2u * bm4][comp] = v.z;
                As[base + 3u * bm4][comp] = v.w;
            }
        } else if (AV != 0u) {
            // A stored k×m, m % 4 == 0: one vec4 of four rows per load, straight into As.
            for (var s = lid; s < BM * BK / 4u; s += nt) {
                let r4 = s % bm4;
                let kk = s / bm4;
                var v = vec4<f32>();
                if (row0 + 4u * r4 < m && t + kk < k) { v = av4[(a_base + (t + kk) * m + row0 + 4u * r4) / 4u]; }
                As[kk * bm4 + r4] = v;
            }
        } else {
            // Unaligned: scalar loads, consecutive threads along the contiguous dimension.
            for (var s = lid; s < BM * BK; s += nt) {
                var r: u32;
                var kk: u32;
                if (TA != 0u) { r = s % BM; kk = s / BM; } else { kk = s % BK; r = s / BK; }
                let row = row0 + r;
                let kr = t + kk;
                var x = 0.0;
                if (row < m && kr < k) {
                    if (IM2COL != 0u) {
                        if (TA != 0u) { x = win_el(Wk[kk], Wm[r]); } else { x = win_el(Wm[r], Wk[kk]); }
                    } else {
                        x = a_el(select(row * k + kr, kr * m + row, TA != 0u));
                    }
                }
                As[kk * bm4 + r / 4u][r % 4u] = x;
            }
        }
        // Stage op(B)[t .. t+BK, col0 .. col0+BN] into Bs[kk][c / 4][c % 4].
        if (BV != 0u && TB == 0u) {
            // B stored k×n, n % 4 == 0: one vec4 of four columns per load.
            for (var s = lid; s < BN * BK / 4u; s += nt) {
                let c4 = s % bn4;
                let kk = s / bn4;
                var v = vec4<f32>();
                if (col0 + 4u * c4 < n && t + kk < k) { v = bv4[(b_base + (t + kk) * n + col0 + 4u * c4) / 4u]; }
                Bs[kk * bn4 + c4] = v;
            }
        } else if (BV != 0u) {
            // B stored n×k, k % 4 == 0: vec4 loads along k.
            for (var s = lid; s < BN * BK / 4u; s += nt) {
                let kq = s % (BK / 4u);
                let cc = s / (BK / 4u);
                let col = col0 + cc;
                let kk = t + 4u * kq;
                var v = vec4<f32>();
                if (col < n && kk < k) { v = bv4[(b_base + col * k + kk) / 4u]; }
                let base = 4u * kq * bn4 + cc / 4u;
                let comp = cc % 4u;
                Bs[base][comp] = v.x;
                Bs[base + bn4][comp] = v.y;
                Bs[base + 2u * bn4][comp] = v.z;
                Bs[base + 3u * bn4][comp] = v.w;
            }
        } else {
            for (var s = lid; s < BN * BK; s += nt) {
                var cc: u32;
                var kk: u32;
                if (TB != 0u) { kk = s % BK; cc = s / BK; } else { cc = s % BN; kk = s / BN; }
                let col = col0 + cc;
                let kr = t + kk;
                var x = 0.0;
                if (col < n && kr < k) { x = b_el(select(kr * n + col, col * k + kr, TB != 0u)); }
                Bs[kk * bn4 + cc / 4u][cc % 4u] = x;
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            // Row groups tr (and tr + BM/8 when TM = 8) × column groups tc (and tc + BN/8 when
            // TN = 8); constant trip counts, unrolled by GPU compilers.
            let a0 = As[kk * bm4 + tr];
            let b0 = Bs[kk * bn4 + tc];
            var a1 = vec4<f32>();
            var b1 = vec4<f32>();
            if (TM == 8u) { a1 = As[kk * bm4 + tr + BM / 8u]; }
            if (TN == 8u) { b1 = Bs[kk * bn4 + tc + BN / 8u]; }
            acc.r0 = rank1(acc.r0, a0.x, b0, b1);
            acc.r1 = rank1(acc.r1, a0.y, b0, b1);
            acc.r2 = rank1(acc.r2, a0.z, b0, b1);
            acc.r3 = rank1(acc.r3, a0.w, b0, b1);
            if (TM == 8u) {
                acc.r4 = rank1(acc.r4, a1.x, b0, b1);
                acc.r5 = rank1(acc.r5, a1.y, b0, b1);
                acc.r6 = rank1(acc.r6, a1.z, b0, b1);
                acc.r7 = rank1(acc.r7, a1.w, b0, b1);
            }
        }
        workgroupBarrier();
    }
    return acc;
}

// A thread's block to C, rows as laid out in Tile8. Written out twice, plain and with the
// layer epilogue: an entry point binds the epilogue's buffers only if it can reach its stores.
fn tile_store(wid: vec3<u32>, lid3: vec3<u32>, acc: Tile8) {
    let ra = wid.y * BM + 4u * lid3.y;
    let rb = ra + 4u * (BM / 8u);
    let ca = wid.x * BN + 4u * lid3.x;
    let cb = ca + 4u * (BN / 8u);
    put4(ra, ca, acc.r0.v0); put4(ra + 1u, ca, acc.r1.v0); put4(ra + 2u, ca, acc.r2.v0); put4(ra + 3u, ca, acc.r3.v0);
    if (TN == 8u) {
        put4(ra, cb, acc.r0.v1); put4(ra + 1u, cb, acc.r1.v1); put4(ra + 2u, cb, acc.r2.v1); put4(ra + 3u, cb, acc.r3.v1);
    }
    if (TM == 8u) {
        put4(rb, ca, acc.r4.v0); put4(rb + 1u, ca, acc.r5.v0); put4(rb + 2u, ca, acc.r6.v0); put4(rb + 3u, ca, acc.r7.v0);
        if (TN == 8u) {
            put4(rb, cb, acc.r4.v1); put4(rb + 1u, cb, acc.r5.v1); put4(rb + 2u, cb, acc.r6.v1); put4(rb + 3u, cb, acc.r7.v1);
        }
    }
}

fn tile_store_bias_act(wid: vec3<u32>, lid3: vec3<u32>, acc: Tile8) {
    let ra = wid.y * BM + 4u * lid3.y;
    let rb = ra + 4u * (BM / 8u);
    let ca = wid.x * BN + 4u * lid3.x;
    let cb = ca + 4u * (BN / 8u);
    let ba = bias4(ca);
    let bb = bias4(cb);
    put4_bias_act(ra, ca, acc.r0.v0, ba); put4_bias_act(ra + 1u, ca, acc.r1.v0, ba);
    put4_bias_act(ra + 2u, ca, acc.r2.v0, ba); put4_bias_act(ra + 3u, ca, acc.r3.v0, ba);
    if (TN == 8u) {
        put4_bias_act(ra, cb, acc.r0.v1, bb); put4_bias_act(ra + 1u, cb, acc.r1.v1, bb);
        put4_bias_act(ra + 2u, cb, acc.r2.v1, bb); put4_bias_act(ra + 3u, cb, acc.r3.v1, bb);
    }
    if (TM == 8u) {
        put4_bias_act(rb, ca, acc.r4.v0, ba); put4_bias_act(rb + 1u, ca, acc.r5.v0, ba);
        put4_bias_act(rb + 2u, ca, acc.r6.v0, ba); put4_bias_act(rb + 3u, ca, acc.r7.v0, ba);
        if (TN == 8u) {
            put4_bias_act(rb, cb, acc.r4.v1, bb); put4_bias_act(rb + 1u, cb, acc.r5.v1, bb);
            put4_bias_act(rb + 2u, cb, acc.r6.v1, bb); put4_bias_act(rb + 3u, cb, acc.r7.v1, bb);
        }
    }
}

// C (+)= op(A)·op(B).
@compute @workgroup_size(BN / TN, BM / TM)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    set_batch(wid.z);
    tile_store(wid, lid3, tile_block(wid, lid3, lid));
}

// The fused layer forward (TA = TB = 0): C = A·B, Z = C + b, H = f(Z) in one pass.
@compute @workgroup_size(BN / TN, BM / TM)
fn matmul_bias_act(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    set_batch(wid.z);
    tile_store_bias_act(wid, lid3, tile_block(wid, lid3, lid));
}

@compute @workgroup_size(16, 16)
fn matmul_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    set_batch(gid.z);
    let row = gid.y;
    let col = gid.x;
    if (row >= p.m || col >= p.n) { return; }
    var s = 0.0;
    for (var kk = p.k0; kk < p.k1; kk++) {
        s += a_at(row, kk) * b_at(kk, col);
    }
    let idx = c_base + row * p.n + col;
    if (ACC != 0u) {
        c[idx] = c[idx] + s;
    } else {
        c[idx] = s;
    }
}

// Rows and stores are written out by hand: on llvmpipe, loops over small register arrays are
// not unrolled and turn into indexed stack accesses, several times slower. The 4-deep k step
// (`load_b8`, `fma_row`) is shared with `matmul_reg_any` and `matmul_sg` (matmul_common.wgsl).
@compute @workgroup_size(RWX, RWY)
fn matmul_reg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    set_batch(wid.z);
    let o = a_base / 4u;
    let bo = b_base / 4u;
    let m = p.m;
    let n = p.n;
    let k4 = p.k / 4u;
    let m4 = (m + 3u) / 4u;
    let n4 = (n + 3u) / 4u;
    let row0 = (wid.y * RWY + lid.y) * 8u;  // rows row0 .. row0+8
    let cg0 = (wid.x * RWX + lid.x) * 2u;   // vec4 column groups cg0, cg0+1 (columns 4·cg0 .. +8)
    // Clamped indices: every load stays inside the operands; outputs past the edge are not stored.
    let r0 = min(row0, m - 1u);      let r1 = min(row0 + 1u, m - 1u);
    let r2 = min(row0 + 2u, m - 1u); let r3 = min(row0 + 3u, m - 1u);
    let r4 = min(row0 + 4u, m - 1u); let r5 = min(row0 + 5u, m - 1u);
    let r6 = min(row0 + 6u, m - 1u); let r7 = min(row0 + 7u, m - 1u);
    let rg0 = min(row0 / 4u, m4 - 1u);
    let rg1 = min(row0 / 4u + 1u, m4 - 1u);
    let g0 = min(cg0, n4 - 1u);
    let g1 = min(cg0 + 1u, n4 - 1u);
    let j0 = cg0 * 4u;
    let q = array<u32, 8>(
        min(j0, n - 1u), min(j0 + 1u, n - 1u), min(j0 + 2u, n - 1u), min(j0 + 3u, n - 1u),
        min(j0 + 4u, n - 1u), min(j0 + 5u, n - 1u), min(j0 + 6u, n - 1u), min(j0 + 7u, n - 1u));
    // A's vec4 indices (TA = 1: row groups rg0, rg1 at k = 0; TA = 0: rows r0..r7) and
    // `load_b8`'s, with the product's offsets in them (see `load_b8`).
    let ag0 = o + rg0;
    let ag1 = o + rg1;
    let ar = array<u32, 8>(o + r0 * k4, o + r1 * k4, o + r2 * k4, o + r3 * k4, o + r4 * k4, o + r5 * k4, o + r6 * k4, o + r7 * k4);
    let bg0 = bo + g0;
    let bg1 = bo + g1;
    let qb = array<u32, 8>(
        bo + q[0] * k4, bo + q[1] * k4, bo + q[2] * k4, bo + q[3] * k4,
        bo + q[4] * k4, bo + q[5] * k4, bo + q[6] * k4, bo + q[7] * k4);
    // cI: row I's eight outputs.
    var c0 = Row8(); var c1 = Row8(); var c2 = Row8(); var c3 = Row8();
    var c4 = Row8(); var c5 = Row8(); var c6 = Row8(); var c7 = Row8();
    for (var t = p.k0 / 4u; t < p.k1 / 4u; t++) {
        // aI = op(A)[row I, 4t .. 4t+4].
        var a0: vec4<f32>; var a1: vec4<f32>; var a2: vec4<f32>; var a3: vec4<f32>;
        var a4: vec4<f32>; var a5: vec4<f32>; var a6: vec4<f32>; var a7: vec4<f32>;
        if (TA != 0u) {
            // A stored k×m: one vec4 holds four rows at one k.
            let r = (4u * t) * m4;
            let x00 = av4[ag0 + r];           let x01 = av4[ag1 + r];
            let x10 = av4[ag0 + r + m4];      let x11 = av4[ag1 + r + m4];
            let x20 = av4[ag0 + r + 2u * m4]; let x21 = av4[ag1 + r + 2u * m4];
            let x30 = av4[ag0 + r + 3u * m4]; let x31 = av4[ag1 + r + 3u * m4];
            a0 = vec4<f32>(x00.x, x10.x, x20.x, x30.x); a1 = vec4<f32>(x00.y, x10.y, x20.y, x30.y);
            a2 = vec4<f32>(x00.z, x10.z, x20.z, x30.z); a3 = vec4<f32>(x00.w, x10.w, x20.w, x30.w);
            a4 = vec4<f32>(x01.x, x11.x, x21.x, x31.x); a5 = vec4<f32>(x01.y, x11.y, x21.y, x31.y);
            a6 = vec4<f32>(x01.z, x11.z, x21.z, x31.z); a7 = vec4<f32>(x01.w, x11.w, x21.w, x31.w);
        } else {
            // A stored m×k: one vec4 holds four k of one row.
            a0 = av4[ar[0] + t]; a1 = av4[ar[1] + t]; a2 = av4[ar[2] + t]; a3 = av4[ar[3] + t];
            a4 = av4[ar[4] + t]; a5 = av4[ar[5] + t]; a6 = av4[ar[6] + t]; a7 = av4[ar[7] + t];
        }
        let b = load_b8(t, n4, bg0, bg1, qb);
        // Each row's four steps together (k = 4t .. 4t+4).
        c0 = fma_row(c0, a0, b); c1 = fma_row(c1, a1, b); c2 = fma_row(c2, a2, b); c3 = fma_row(c3, a3, b);
        c4 = fma_row(c4, a4, b); c5 = fma_row(c5, a5, b); c6 = fma_row(c6, a6, b); c7 = fma_row(c7, a7, b);
    }

    put8(row0, j0, c0); put8(row0 + 1u, j0, c1); put8(row0 + 2u, j0, c2); put8(row0 + 3u, j0, c3);
    put8(row0 + 4u, j0, c4); put8(row0 + 5u, j0, c5); put8(row0 + 6u, j0, c6); put8(row0 + 7u, j0, c7);
}

// Four consecutive floats of a row-major operand starting `s` (0..3) floats into `lo`: the
// unaligned window of the aligned vec4 pair (lo, hi).
fn window(lo: vec4<f32>, hi: vec4<f32>, s: u32) -> vec4<f32> {
    let x1 = vec4<f32>(lo.yzw, hi.x);
    let x2 = vec4<f32>(lo.zw, hi.xy);
    let x3 = vec4<f32>(lo.w, hi.xyz);
    return select(select(select(lo, x1, s == 1u), x2, s == 2u), x3, s == 3u);
}

// `matmul_reg` for any m, k, n: the same 8×8 block per invocation and the same vec4 views, but
// every vec4 is cut out of two aligned loads at the operand's real offset (`window`), so rows of
// any stride are read in place. Along the contiguous dimension of a row-major operand the
// offset is fixed per row, and the aligned vec4 loaded for step t is the low half of step t + 1:
// it is carried, one new load per row per step (as in `matmul_reg`). Across rows (A with TA = 1,
// B with TB = 0) the eight values of one k sit at an offset shared by the whole workgroup: three
// loads instead of two. Values past k are zeroed with `select` (never multiplied: the padding of a
// pooled buffer is arbitrary), indices are clamped to the operand, and rows or columns past the
// edge are masked on store.
@compute @workgroup_size(RWX, RWY)
fn matmul_reg_any(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    set_batch(wid.z);
    let m = p.m;
    let n = p.n;
    let k = p.k;
    let t0 = p.k0 / 4u;                           // this dispatch's steps of 4 in k: t0 .. t1,
    let t1 = (p.k1 + 3u) / 4u;                    // the last one of k possibly partial
    let alast = (a_base + m * k + 3u) / 4u - 1u;  // last vec4 holding an element of A
    let blast = (b_base + k * n + 3u) / 4u - 1u;
    let row0 = (wid.y * RWY + lid.y) * 8u;
    let j0 = (wid.x * RWX + lid.x) * 8u;

    let r0 = min(row0 + 0u, m - 1u);
    let r1 = min(row0 + 1u, m - 1u);
    let r2 = min(row0 + 2u, m - 1u);
    let r3 = min(row0 + 3u, m - 1u);
    let r4 = min(row0 + 4u, m - 1u);
    let r5 = min(row0 + 5u, m - 1u);
    let r6 = min(row0 + 6u, m - 1u);
    let r7 = min(row0 + 7u, m - 1u);
    let q0 = min(j0 + 0u, n - 1u);
    let q1 = min(j0 + 1u, n - 1u);
    let q2 = min(j0 + 2u, n - 1u);
    let q3 = min(j0 + 3u, n - 1u);
    let q4 = min(j0 + 4u, n - 1u);
    let q5 = min(j0 + 5u, n - 1u);
    let q6 = min(j0 + 6u, n - 1u);
    let q7 = min(j0 + 7u, n - 1u);
    var c0 = Row8(); var c1 = Row8(); var c2 = Row8(); var c3 = Row8();
    var c4 = Row8(); var c5 = Row8(); var c6 = Row8(); var c7 = Row8();
    // TA = 0: row I starts at float rI·k, aligned vec4 ia_I + t holds the low half of step t.
    let ia0 = (a_base + r0 * k) / 4u; let sa0 = (a_base + r0 * k) % 4u; var pa0 = vec4<f32>();
    let ia1 = (a_base + r1 * k) / 4u; let sa1 = (a_base + r1 * k) % 4u; var pa1 = vec4<f32>();
    let ia2 = (a_base + r2 * k) / 4u; let sa2 = (a_base + r2 * k) % 4u; var pa2 = vec4<f32>();
    let ia3 = (a_base + r3 * k) / 4u; let sa3 = (a_base + r3 * k) % 4u; var pa3 = vec4<f32>();
    let ia4 = (a_base + r4 * k) / 4u; let sa4 = (a_base + r4 * k) % 4u; var pa4 = vec4<f32>();
    let ia5 = (a_base + r5 * k) / 4u; let sa5 = (a_base + r5 * k) % 4u; var pa5 = vec4<f32>();
    let ia6 = (a_base + r6 * k) / 4u; let sa6 = (a_base + r6 * k) % 4u; var pa6 = vec4<f32>();
    let ia7 = (a_base + r7 * k) / 4u; let sa7 = (a_base + r7 * k) % 4u; var pa7 = vec4<f32>();
    // TB = 1: column J starts at float qJ·k.
    let ib0 = (b_base + q0 * k) / 4u; let sb0 = (b_base + q0 * k) % 4u; var pb0 = vec4<f32>();
    let ib1 = (b_base + q1 * k) / 4u; let sb1 = (b_base + q1 * k) % 4u; var pb1 = vec4<f32>();
    let ib2 = (b_base + q2 * k) / 4u; let sb2 = (b_base + q2 * k) % 4u; var pb2 = vec4<f32>();
    let ib3 = (b_base + q3 * k) / 4u; let sb3 = (b_base + q3 * k) % 4u; var pb3 = vec4<f32>();
    let ib4 = (b_base + q4 * k) / 4u; let sb4 = (b_base + q4 * k) % 4u; var pb4 = vec4<f32>();
    let ib5 = (b_base + q5 * k) / 4u; let sb5 = (b_base + q5 * k) % 4u; var pb5 = vec4<f32>();
    let ib6 = (b_base + q6 * k) / 4u; let sb6 = (b_base + q6 * k) % 4u; var pb6 = vec4<f32>();
    let ib7 = (b_base + q7 * k) / 4u; let sb7 = (b_base + q7 * k) % 4u; var pb7 = vec4<f32>();
    if (TA == 0u) {
        pa0 = av4[min(ia0 + t0, alast)];
        pa1 = av4[min(ia1 + t0, alast)];
        pa2 = av4[min(ia2 + t0, alast)];
        pa3 = av4[min(ia3 + t0, alast)];
        pa4 = av4[min(ia4 + t0, alast)];
        pa5 = av4[min(ia5 + t0, alast)];
        pa6 = av4[min(ia6 + t0, alast)];
        pa7 = av4[min(ia7 + t0, alast)];
    }
    if (TB != 0u) {
        pb0 = bv4[min(ib0 + t0, blast)];
        pb1 = bv4[min(ib1 + t0, blast)];
        pb2 = bv4[min(ib2 + t0, blast)];
        pb3 = bv4[min(ib3 + t0, blast)];
        pb4 = bv4[min(ib4 + t0, blast)];
        pb5 = bv4[min(ib5 + t0, blast)];
        pb6 = bv4[min(ib6 + t0, blast)];
        pb7 = bv4[min(ib7 + t0, blast)];
    }
    for (var t = t0; t < t1; t++) {
        let kb = 4u * t;
        let kv = vec4<u32>(kb, kb + 1u, kb + 2u, kb + 3u) < vec4<u32>(k);  // which of the 4 k are real
        let z = vec4<f32>();
        var a0: vec4<f32>; var a1: vec4<f32>; var a2: vec4<f32>; var a3: vec4<f32>;
        var a4: vec4<f32>; var a5: vec4<f32>; var a6: vec4<f32>; var a7: vec4<f32>;
        if (TA != 0u) {
            // A stored k×m: the 8 rows at k = kb+K start at float (kb+K)·m + row0, 3 aligned loads.
            let f0 = a_base + min(kb + 0u, k - 1u) * m + row0;
            let e0 = f0 / 4u; let s0 = f0 % 4u;
            let v00 = av4[min(e0, alast)]; let v01 = av4[min(e0 + 1u, alast)]; let v02 = av4[min(e0 + 2u, alast)];
            let x00 = select(z, window(v00, v01, s0), kv[0]); let x01 = select(z, window(v01, v02, s0), kv[0]);
            let f1 = a_base + min(kb + 1u, k - 1u) * m + row0;
            let e1 = f1 / 4u; let s1 = f1 % 4u;
            let v10 = av4[min(e1, alast)]; let v11 = av4[min(e1 + 1u, alast)]; let v12 = av4[min(e1 + 2u, alast)];
            let x10 = select(z, window(v10, v11, s1), kv[1]); let x11 = select(z, window(v11, v12, s1), kv[1]);
            let f2 = a_base + min(kb + 2u, k - 1u) * m + row0;
            let e2 = f2 / 4u; let s2 = f2 % 4u;
            let v20 = av4[min(e2, alast)]; let v21 = av4[min(e2 + 1u, alast)]; let v22 = av4[min(e2 + 2u, alast)];
            let x20 = select(z, window(v20, v21, s2), kv[2]); let x21 = select(z, window(v21, v22, s2), kv[2]);
            let f3 = a_base + min(kb + 3u, k - 1u) * m + row0;
            let e3 = f3 / 4u; let s3 = f3 % 4u;
            let v30 = av4[min(e3, alast)]; let v31 = av4[min(e3 + 1u, alast)]; let v32 = av4[min(e3 + 2u, alast)];
            let x30 = select(z, window(v30, v31, s3), kv[3]); let x31 = select(z, window(v31, v32, s3), kv[3]);
            a0 = vec4<f32>(x00.x, x10.x, x20.x, x30.x);
            a1 = vec4<f32>(x00.y, x10.y, x20.y, x30.y);
            a2 = vec4<f32>(x00.z, x10.z, x20.z, x30.z);
            a3 = vec4<f32>(x00.w, x10.w, x20.w, x30.w);
            a4 = vec4<f32>(x01.x, x11.x, x21.x, x31.x);
            a5 = vec4<f32>(x01.y, x11.y, x21.y, x31.y);
            a6 = vec4<f32>(x01.z, x11.z, x21.z, x31.z);
            a7 = vec4<f32>(x01.w, x11.w, x21.w, x31.w);
        } else {
            let na0 = av4[min(ia0 + t + 1u, alast)]; a0 = select(z, window(pa0, na0, sa0), kv); pa0 = na0;
            let na1 = av4[min(ia1 + t + 1u, alast)]; a1 = select(z, window(pa1, na1, sa1), kv); pa1 = na1;
            let na2 = av4[min(ia2 + t + 1u, alast)]; a2 = select(z, window(pa2, na2, sa2), kv); pa2 = na2;
            let na3 = av4[min(ia3 + t + 1u, alast)]; a3 = select(z, window(pa3, na3, sa3), kv); pa3 = na3;
            let na4 = av4[min(ia4 + t + 1u, alast)]; a4 = select(z, window(pa4, na4, sa4), kv); pa4 = na4;
            let na5 = av4[min(ia5 + t + 1u, alast)]; a5 = select(z, window(pa5, na5, sa5), kv); pa5 = na5;
            let na6 = av4[min(ia6 + t + 1u, alast)]; a6 = select(z, window(pa6, na6, sa6), kv); pa6 = na6;
            let na7 = av4[min(ia7 + t + 1u, alast)]; a7 = select(z, window(pa7, na7, sa7), kv); pa7 = na7;
        }
        var b0_0: vec4<f32>; var b0_1: vec4<f32>; var b1_0: vec4<f32>; var b1_1: vec4<f32>;
        var b2_0: vec4<f32>; var b2_1: vec4<f32>; var b3_0: vec4<f32>; var b3_1: vec4<f32>;
        if (TB != 0u) {
            let nb0 = bv4[min(ib0 + t + 1u, blast)]; let y0 = select(z, window(pb0, nb0, sb0), kv); pb0 = nb0;
            let nb1 = bv4[min(ib1 + t + 1u, blast)]; let y1 = select(z, window(pb1, nb1, sb1), kv); pb1 = nb1;
            let nb2 = bv4[min(ib2 + t + 1u, blast)]; let y2 = select(z, window(pb2, nb2, sb2), kv); pb2 = nb2;
            let nb3 = bv4[min(ib3 + t + 1u, blast)]; let y3 = select(z, window(pb3, nb3, sb3), kv); pb3 = nb3;
            let nb4 = bv4[min(ib4 + t + 1u, blast)]; let y4 = select(z, window(pb4, nb4, sb4), kv); pb4 = nb4;
            let nb5 = bv4[min(ib5 + t + 1u, blast)]; let y5 = select(z, window(pb5, nb5, sb5), kv); pb5 = nb5;
            let nb6 = bv4[min(ib6 + t + 1u, blast)]; let y6 = select(z, window(pb6, nb6, sb6), kv); pb6 = nb6;
            let nb7 = bv4[min(ib7 + t + 1u, blast)]; let y7 = select(z, window(pb7, nb7, sb7), kv); pb7 = nb7;
            b0_0 = vec4<f32>(y0.x, y1.x, y2.x, y3.x); b0_1 = vec4<f32>(y4.x, y5.x, y6.x, y7.x);
            b1_0 = vec4<f32>(y0.y, y1.y, y2.y, y3.y); b1_1 = vec4<f32>(y4.y, y5.y, y6.y, y7.y);
            b2_0 = vec4<f32>(y0.z, y1.z, y2.z, y3.z); b2_1 = vec4<f32>(y4.z, y5.z, y6.z, y7.z);
            b3_0 = vec4<f32>(y0.w, y1.w, y2.w, y3.w); b3_1 = vec4<f32>(y4.w, y5.w, y6.w, y7.w);
        } else {
            // B stored k×n: the 8 columns at k = kb+K start at float (kb+K)·n + j0, 3 aligned loads.
            let f0 = b_base + min(kb + 0u, k - 1u) * n + j0;
            let e0 = f0 / 4u; let s0 = f0 % 4u;
            let v00 = bv4[min(e0, blast)]; let v01 = bv4[min(e0 + 1u, blast)]; let v02 = bv4[min(e0 + 2u, blast)];
            b0_0 = select(z, window(v00, v01, s0), kv[0]); b0_1 = select(z, window(v01, v02, s0), kv[0]);
            let f1 = b_base + min(kb + 1u, k - 1u) * n + j0;
            let e1 = f1 / 4u; let s1 = f1 % 4u;
            let v10 = bv4[min(e1, blast)]; let v11 = bv4[min(e1 + 1u, blast)]; let v12 = bv4[min(e1 + 2u, blast)];
            b1_0 = select(z, window(v10, v11, s1), kv[1]); b1_1 = select(z, window(v11, v12, s1), kv[1]);
            let f2 = b_base + min(kb + 2u, k - 1u) * n + j0;
            let e2 = f2 / 4u; let s2 = f2 % 4u;
            let v20 = bv4[min(e2, blast)]; let v21 = bv4[min(e2 + 1u, blast)]; let v22 = bv4[min(e2 + 2u, blast)];
            b2_0 = select(z, window(v20, v21, s2), kv[2]); b2_1 = select(z, window(v21, v22, s2), kv[2]);
            let f3 = b_base + min(kb + 3u, k - 1u) * n + j0;
            let e3 = f3 / 4u; let s3 = f3 % 4u;
            let v30 = bv4[min(e3, blast)]; let v31 = bv4[min(e3 + 1u, blast)]; let v32 = bv4[min(e3 + 2u, blast)];
            b3_0 = select(z, window(v30, v31, s3), kv[3]); b3_1 = select(z, window(v31, v32, s3), kv[3]);
        }
        let b = B8(b0_0, b0_1, b1_0, b1_1, b2_0, b2_1, b3_0, b3_1);
        // Each row's four steps together (k = 4t .. 4t+4).
        c0 = fma_row(c0, a0, b); c1 = fma_row(c1, a1, b); c2 = fma_row(c2, a2, b); c3 = fma_row(c3, a3, b);
        c4 = fma_row(c4, a4, b); c5 = fma_row(c5, a5, b); c6 = fma_row(c6, a6, b); c7 = fma_row(c7, a7, b);
    }

    put8(row0, j0, c0); put8(row0 + 1u, j0, c1); put8(row0 + 2u, j0, c2); put8(row0 + 3u, j0, c3);
    put8(row0 + 4u, j0, c4); put8(row0 + 5u, j0, c5); put8(row0 + 6u, j0, c6); put8(row0 + 7u, j0, c7);
}
