// Matrix multiply C (+)= op(A)·op(B) and, through the same kernel, its two VJPs:
//   forward  C  = A·B        (TA = 0, TB = 0)
//   d_A      dA = G·Bᵀ       (TA = 0, TB = 1)  — B is read transposed in place, never copied
//   d_B      dB = Aᵀ·G       (TA = 1, TB = 0)
// Logical shapes after the optional transposes: op(A) is m×k, op(B) is k×n, C is m×n, all
// row-major in memory. A transposed operand is stored k×m (resp. n×k).
//
// Bindings (group 0):
//   0  p    uniform Params
//   1  a    storage, read
//   2  b    storage, read
//   3  c    storage, read_write
//
// `matmul`: a BM×BN tile of C per workgroup of (BN/TN)×(BM/TM) threads; each thread keeps a
// TM×TN block of C in registers. Every BK-deep step stages a BK×BM slice of op(A) and a
// BK×BN slice of op(B) in workgroup memory (both k-major, so the inner loop reads contiguous
// vec4s), then does TM·TN multiply-adds per k. Loads are arranged so consecutive threads read
// consecutive addresses for either orientation. Edges are zero-padded on load and masked on
// store, so any m, k, n is correct.
// `matmul_naive`: one output per thread, the simple baseline the benchmark compares against.

override TA: u32 = 0u;
override TB: u32 = 0u;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const TM: u32 = 4u;
const TN: u32 = 4u;
const WG: u32 = 256u;  // (BM / TM) * (BN / TN)

struct Params {
    m: u32,
    k: u32,
    n: u32,
    acc: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

var<workgroup> As: array<vec4<f32>, 256>;  // [BK][BM / 4]
var<workgroup> Bs: array<vec4<f32>, 256>;  // [BK][BN / 4]

fn a_at(row: u32, col: u32) -> f32 {
    if (row >= p.m || col >= p.k) { return 0.0; }
    if (TA != 0u) { return a[col * p.m + row]; }
    return a[row * p.k + col];
}

fn b_at(row: u32, col: u32) -> f32 {
    if (row >= p.k || col >= p.n) { return 0.0; }
    if (TB != 0u) { return b[col * p.k + row]; }
    return b[row * p.n + col];
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let tr = lid3.y;  // this thread's rows: row0 + tr*TM .. +TM
    let tc = lid3.x;  // this thread's cols: col0 + tc*TN .. +TN
    var acc: array<vec4<f32>, 4>;  // TM rows of TN columns

    for (var t = 0u; t < p.k; t += BK) {
        // Stage op(A)[row0.., t..] as As[kk][r]: 4 scalars per thread, one vec4 of rows.
        {
            var kk: u32;
            var r4: u32;
            if (TA != 0u) {
                // A stored k×m: consecutive threads take consecutive rows (contiguous).
                r4 = lid % (BM / 4u);
                kk = lid / (BM / 4u);
            } else {
                // A stored m×k: consecutive threads take consecutive k (contiguous).
                kk = lid % BK;
                r4 = lid / BK;
            }
            let r = r4 * 4u;
            As[kk * (BM / 4u) + r4] = vec4<f32>(
                a_at(row0 + r, t + kk), a_at(row0 + r + 1u, t + kk),
                a_at(row0 + r + 2u, t + kk), a_at(row0 + r + 3u, t + kk));
        }
        {
            var kk: u32;
            var c4: u32;
            if (TB != 0u) {
                kk = lid % BK;
                c4 = lid / BK;
            } else {
                c4 = lid % (BN / 4u);
                kk = lid / (BN / 4u);
            }
            let cc = c4 * 4u;
            Bs[kk * (BN / 4u) + c4] = vec4<f32>(
                b_at(t + kk, col0 + cc), b_at(t + kk, col0 + cc + 1u),
                b_at(t + kk, col0 + cc + 2u), b_at(t + kk, col0 + cc + 3u));
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let av = As[kk * (BM / 4u) + tr];
            let bv = Bs[kk * (BN / 4u) + tc];
            acc[0] += av.x * bv;
            acc[1] += av.y * bv;
            acc[2] += av.z * bv;
            acc[3] += av.w * bv;
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        let row = row0 + tr * TM + i;
        if (row >= p.m) { break; }
        let v = acc[i];
        for (var j = 0u; j < TN; j++) {
            let col = col0 + tc * TN + j;
            if (col < p.n) {
                let idx = row * p.n + col;
                if (p.acc != 0u) {
                    c[idx] = c[idx] + v[j];
                } else {
                    c[idx] = v[j];
                }
            }
        }
    }
}

@compute @workgroup_size(16, 16)
fn matmul_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y;
    let col = gid.x;
    if (row >= p.m || col >= p.n) { return; }
    var s = 0.0;
    for (var kk = 0u; kk < p.k; kk++) {
        s += a_at(row, kk) * b_at(kk, col);
    }
    let idx = row * p.n + col;
    if (p.acc != 0u) {
        c[idx] = c[idx] + s;
    } else {
        c[idx] = s;
    }
}

// Stores (or adds) four consecutive outputs of row `row` from column `col`, masked to C.
fn put4(row: u32, col: u32, x: vec4<f32>) {
    if (row >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        if (col + j < p.n) {
            let idx = row * p.n + col + j;
            if (p.acc != 0u) { c[idx] = c[idx] + x[j]; } else { c[idx] = x[j]; }
        }
    }
}

// ---- register-blocked kernel without workgroup memory (CPU-like adapters) ----
@group(0) @binding(4) var<storage, read> av4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> bv4: array<vec4<f32>>;

@compute @workgroup_size(16, 4)
fn matmul_reg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m = p.m;
    let k = p.k;
    let n = p.n;
    let row0 = (wid.y * 4u + lid.y) * 8u;
    let cg0 = (wid.x * 16u + lid.x) * 2u;
    let n4 = (n + 3u) / 4u;
    let m4 = (m + 3u) / 4u;
    let k4 = k / 4u;
    let r0 = min(row0 + 0u, m - 1u);
    let r1 = min(row0 + 1u, m - 1u);
    let r2 = min(row0 + 2u, m - 1u);
    let r3 = min(row0 + 3u, m - 1u);
    let r4 = min(row0 + 4u, m - 1u);
    let r5 = min(row0 + 5u, m - 1u);
    let r6 = min(row0 + 6u, m - 1u);
    let r7 = min(row0 + 7u, m - 1u);
    let g0 = min(cg0 + 0u, n4 - 1u);
    let g1 = min(cg0 + 1u, n4 - 1u);
    let rg0 = min(row0 / 4u + 0u, m4 - 1u);
    let rg1 = min(row0 / 4u + 1u, m4 - 1u);
    let cb0_0 = min(cg0 * 4u + 0u, n - 1u);
    let cb0_1 = min(cg0 * 4u + 1u, n - 1u);
    let cb0_2 = min(cg0 * 4u + 2u, n - 1u);
    let cb0_3 = min(cg0 * 4u + 3u, n - 1u);
    let cb1_0 = min(cg0 * 4u + 4u, n - 1u);
    let cb1_1 = min(cg0 * 4u + 5u, n - 1u);
    let cb1_2 = min(cg0 * 4u + 6u, n - 1u);
    let cb1_3 = min(cg0 * 4u + 7u, n - 1u);
    var c0_0 = vec4<f32>();
    var c0_1 = vec4<f32>();
    var c1_0 = vec4<f32>();
    var c1_1 = vec4<f32>();
    var c2_0 = vec4<f32>();
    var c2_1 = vec4<f32>();
    var c3_0 = vec4<f32>();
    var c3_1 = vec4<f32>();
    var c4_0 = vec4<f32>();
    var c4_1 = vec4<f32>();
    var c5_0 = vec4<f32>();
    var c5_1 = vec4<f32>();
    var c6_0 = vec4<f32>();
    var c6_1 = vec4<f32>();
    var c7_0 = vec4<f32>();
    var c7_1 = vec4<f32>();
    let kmain = k4 / 1u * 1u;
    for (var t = 0u; t < kmain; t += 1u) {
        {
                var a0: vec4<f32>;
                var a1: vec4<f32>;
                var a2: vec4<f32>;
                var a3: vec4<f32>;
                var a4: vec4<f32>;
                var a5: vec4<f32>;
                var a6: vec4<f32>;
                var a7: vec4<f32>;
                if (TA != 0u) {
                    let ab0 = (4u * (t + 0u) + 0u) * m4;
                    let x0_0 = av4[ab0 + rg0];
                    let x0_1 = av4[ab0 + rg1];
                    let ab1 = (4u * (t + 0u) + 1u) * m4;
                    let x1_0 = av4[ab1 + rg0];
                    let x1_1 = av4[ab1 + rg1];
                    let ab2 = (4u * (t + 0u) + 2u) * m4;
                    let x2_0 = av4[ab2 + rg0];
                    let x2_1 = av4[ab2 + rg1];
                    let ab3 = (4u * (t + 0u) + 3u) * m4;
                    let x3_0 = av4[ab3 + rg0];
                    let x3_1 = av4[ab3 + rg1];
                    a0 = vec4<f32>(x0_0.x, x1_0.x, x2_0.x, x3_0.x);
                    a1 = vec4<f32>(x0_0.y, x1_0.y, x2_0.y, x3_0.y);
                    a2 = vec4<f32>(x0_0.z, x1_0.z, x2_0.z, x3_0.z);
                    a3 = vec4<f32>(x0_0.w, x1_0.w, x2_0.w, x3_0.w);
                    a4 = vec4<f32>(x0_1.x, x1_1.x, x2_1.x, x3_1.x);
                    a5 = vec4<f32>(x0_1.y, x1_1.y, x2_1.y, x3_1.y);
                    a6 = vec4<f32>(x0_1.z, x1_1.z, x2_1.z, x3_1.z);
                    a7 = vec4<f32>(x0_1.w, x1_1.w, x2_1.w, x3_1.w);
                } else {
                    a0 = av4[r0 * k4 + t + 0u];
                    a1 = av4[r1 * k4 + t + 0u];
                    a2 = av4[r2 * k4 + t + 0u];
                    a3 = av4[r3 * k4 + t + 0u];
                    a4 = av4[r4 * k4 + t + 0u];
                    a5 = av4[r5 * k4 + t + 0u];
                    a6 = av4[r6 * k4 + t + 0u];
                    a7 = av4[r7 * k4 + t + 0u];
                }
                var b0_0: vec4<f32>;
                var b0_1: vec4<f32>;
                var b1_0: vec4<f32>;
                var b1_1: vec4<f32>;
                var b2_0: vec4<f32>;
                var b2_1: vec4<f32>;
                var b3_0: vec4<f32>;
                var b3_1: vec4<f32>;
                if (TB != 0u) {
                    let y0_0 = bv4[cb0_0 * k4 + t + 0u];
                    let y0_1 = bv4[cb0_1 * k4 + t + 0u];
                    let y0_2 = bv4[cb0_2 * k4 + t + 0u];
                    let y0_3 = bv4[cb0_3 * k4 + t + 0u];
                    let y1_0 = bv4[cb1_0 * k4 + t + 0u];
                    let y1_1 = bv4[cb1_1 * k4 + t + 0u];
                    let y1_2 = bv4[cb1_2 * k4 + t + 0u];
                    let y1_3 = bv4[cb1_3 * k4 + t + 0u];
                    b0_0 = vec4<f32>(y0_0.x, y0_1.x, y0_2.x, y0_3.x);
                    b0_1 = vec4<f32>(y1_0.x, y1_1.x, y1_2.x, y1_3.x);
                    b1_0 = vec4<f32>(y0_0.y, y0_1.y, y0_2.y, y0_3.y);
                    b1_1 = vec4<f32>(y1_0.y, y1_1.y, y1_2.y, y1_3.y);
                    b2_0 = vec4<f32>(y0_0.z, y0_1.z, y0_2.z, y0_3.z);
                    b2_1 = vec4<f32>(y1_0.z, y1_1.z, y1_2.z, y1_3.z);
                    b3_0 = vec4<f32>(y0_0.w, y0_1.w, y0_2.w, y0_3.w);
                    b3_1 = vec4<f32>(y1_0.w, y1_1.w, y1_2.w, y1_3.w);
                } else {
                    let bb0 = (4u * (t + 0u) + 0u) * n4;
                    b0_0 = bv4[bb0 + g0];
                    b0_1 = bv4[bb0 + g1];
                    let bb1 = (4u * (t + 0u) + 1u) * n4;
                    b1_0 = bv4[bb1 + g0];
                    b1_1 = bv4[bb1 + g1];
                    let bb2 = (4u * (t + 0u) + 2u) * n4;
                    b2_0 = bv4[bb2 + g0];
                    b2_1 = bv4[bb2 + g1];
                    let bb3 = (4u * (t + 0u) + 3u) * n4;
                    b3_0 = bv4[bb3 + g0];
                    b3_1 = bv4[bb3 + g1];
                }
                c0_0 = fma(vec4<f32>(a0.x), b0_0, c0_0);
                c0_1 = fma(vec4<f32>(a0.x), b0_1, c0_1);
                c1_0 = fma(vec4<f32>(a1.x), b0_0, c1_0);
                c1_1 = fma(vec4<f32>(a1.x), b0_1, c1_1);
                c2_0 = fma(vec4<f32>(a2.x), b0_0, c2_0);
                c2_1 = fma(vec4<f32>(a2.x), b0_1, c2_1);
                c3_0 = fma(vec4<f32>(a3.x), b0_0, c3_0);
                c3_1 = fma(vec4<f32>(a3.x), b0_1, c3_1);
                c4_0 = fma(vec4<f32>(a4.x), b0_0, c4_0);
                c4_1 = fma(vec4<f32>(a4.x), b0_1, c4_1);
                c5_0 = fma(vec4<f32>(a5.x), b0_0, c5_0);
                c5_1 = fma(vec4<f32>(a5.x), b0_1, c5_1);
                c6_0 = fma(vec4<f32>(a6.x), b0_0, c6_0);
                c6_1 = fma(vec4<f32>(a6.x), b0_1, c6_1);
                c7_0 = fma(vec4<f32>(a7.x), b0_0, c7_0);
                c7_1 = fma(vec4<f32>(a7.x), b0_1, c7_1);
                c0_0 = fma(vec4<f32>(a0.y), b1_0, c0_0);
                c0_1 = fma(vec4<f32>(a0.y), b1_1, c0_1);
                c1_0 = fma(vec4<f32>(a1.y), b1_0, c1_0);
                c1_1 = fma(vec4<f32>(a1.y), b1_1, c1_1);
                c2_0 = fma(vec4<f32>(a2.y), b1_0, c2_0);
                c2_1 = fma(vec4<f32>(a2.y), b1_1, c2_1);
                c3_0 = fma(vec4<f32>(a3.y), b1_0, c3_0);
                c3_1 = fma(vec4<f32>(a3.y), b1_1, c3_1);
                c4_0 = fma(vec4<f32>(a4.y), b1_0, c4_0);
                c4_1 = fma(vec4<f32>(a4.y), b1_1, c4_1);
                c5_0 = fma(vec4<f32>(a5.y), b1_0, c5_0);
                c5_1 = fma(vec4<f32>(a5.y), b1_1, c5_1);
                c6_0 = fma(vec4<f32>(a6.y), b1_0, c6_0);
                c6_1 = fma(vec4<f32>(a6.y), b1_1, c6_1);
                c7_0 = fma(vec4<f32>(a7.y), b1_0, c7_0);
                c7_1 = fma(vec4<f32>(a7.y), b1_1, c7_1);
                c0_0 = fma(vec4<f32>(a0.z), b2_0, c0_0);
                c0_1 = fma(vec4<f32>(a0.z), b2_1, c0_1);
                c1_0 = fma(vec4<f32>(a1.z), b2_0, c1_0);
                c1_1 = fma(vec4<f32>(a1.z), b2_1, c1_1);
                c2_0 = fma(vec4<f32>(a2.z), b2_0, c2_0);
                c2_1 = fma(vec4<f32>(a2.z), b2_1, c2_1);
                c3_0 = fma(vec4<f32>(a3.z), b2_0, c3_0);
                c3_1 = fma(vec4<f32>(a3.z), b2_1, c3_1);
                c4_0 = fma(vec4<f32>(a4.z), b2_0, c4_0);
                c4_1 = fma(vec4<f32>(a4.z), b2_1, c4_1);
                c5_0 = fma(vec4<f32>(a5.z), b2_0, c5_0);
                c5_1 = fma(vec4<f32>(a5.z), b2_1, c5_1);
                c6_0 = fma(vec4<f32>(a6.z), b2_0, c6_0);
                c6_1 = fma(vec4<f32>(a6.z), b2_1, c6_1);
                c7_0 = fma(vec4<f32>(a7.z), b2_0, c7_0);
                c7_1 = fma(vec4<f32>(a7.z), b2_1, c7_1);
                c0_0 = fma(vec4<f32>(a0.w), b3_0, c0_0);
                c0_1 = fma(vec4<f32>(a0.w), b3_1, c0_1);
                c1_0 = fma(vec4<f32>(a1.w), b3_0, c1_0);
                c1_1 = fma(vec4<f32>(a1.w), b3_1, c1_1);
                c2_0 = fma(vec4<f32>(a2.w), b3_0, c2_0);
                c2_1 = fma(vec4<f32>(a2.w), b3_1, c2_1);
                c3_0 = fma(vec4<f32>(a3.w), b3_0, c3_0);
                c3_1 = fma(vec4<f32>(a3.w), b3_1, c3_1);
                c4_0 = fma(vec4<f32>(a4.w), b3_0, c4_0);
                c4_1 = fma(vec4<f32>(a4.w), b3_1, c4_1);
                c5_0 = fma(vec4<f32>(a5.w), b3_0, c5_0);
                c5_1 = fma(vec4<f32>(a5.w), b3_1, c5_1);
                c6_0 = fma(vec4<f32>(a6.w), b3_0, c6_0);
                c6_1 = fma(vec4<f32>(a6.w), b3_1, c6_1);
                c7_0 = fma(vec4<f32>(a7.w), b3_0, c7_0);
                c7_1 = fma(vec4<f32>(a7.w), b3_1, c7_1);
        }
    }
    put4(row0 + 0u, (cg0 + 0u) * 4u, c0_0);
    put4(row0 + 0u, (cg0 + 1u) * 4u, c0_1);
    put4(row0 + 1u, (cg0 + 0u) * 4u, c1_0);
    put4(row0 + 1u, (cg0 + 1u) * 4u, c1_1);
    put4(row0 + 2u, (cg0 + 0u) * 4u, c2_0);
    put4(row0 + 2u, (cg0 + 1u) * 4u, c2_1);
    put4(row0 + 3u, (cg0 + 0u) * 4u, c3_0);
    put4(row0 + 3u, (cg0 + 1u) * 4u, c3_1);
    put4(row0 + 4u, (cg0 + 0u) * 4u, c4_0);
    put4(row0 + 4u, (cg0 + 1u) * 4u, c4_1);
    put4(row0 + 5u, (cg0 + 0u) * 4u, c5_0);
    put4(row0 + 5u, (cg0 + 1u) * 4u, c5_1);
    put4(row0 + 6u, (cg0 + 0u) * 4u, c6_0);
    put4(row0 + 6u, (cg0 + 1u) * 4u, c6_1);
    put4(row0 + 7u, (cg0 + 0u) * 4u, c7_0);
    put4(row0 + 7u, (cg0 + 1u) * 4u, c7_1);
}
