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
