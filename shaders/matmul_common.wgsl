// Shared by matmul.wgsl and matmul_sg.wgsl, which the crate embeds with this file in front
// (WGSL has no include): the orientation constants, the parameter block, the output and vec4
// operand bindings, the 4-deep k step of the register-blocked kernels (op(B) loads and the
// multiply-adds of one row), and the stores, plain and with the layer epilogue.
//
// Bindings (group 0):
//   0  p    uniform Params
//   3  c    storage, read_write — C
//   4  av4  storage, read — A as array<vec4<f32>>
//   5  bv4  storage, read — B as array<vec4<f32>>
//   6  bias storage, read — b (epilogue entry points only)
//   7  zo   storage, read_write — Z = C + b (epilogue entry points only)
//   8  yo   storage, read_write — H = f(Z) (epilogue entry points only)

// op(A) = Aᵀ when TA = 1 (A stored k×m), op(B) = Bᵀ when TB = 1 (B stored n×k).
override TA: u32 = 0u;
override TB: u32 = 0u;
// The activation of the layer epilogue, codes as in unary.wgsl and fused.wgsl.
override ACT: u32 = 0u;
// 1: a batch of products (workgroup z, offsets and strides in Params); 0: one product at the
// start of each buffer, compiled exactly as without batches.
override BATCHED: u32 = 0u;
// 1: add the product into C (a k slice after the first, or a gradient accumulated); 0: store
// it. A constant rather than a parameter: the pipelines that only store compile without the
// reads of C (on llvmpipe those reads were most of a register kernel's compile time).
override ACC: u32 = 0u;

// k0 .. k1: the slice of the inner dimension this dispatch sums (the host splits a long k into
// slices, each dispatch after the first adding into C, so that no invocation runs a loop for
// more than a bounded number of iterations: some drivers cut longer loops short). k0 is a
// multiple of the kernel's k step (4, or BK for the tile kernel); k1 is k0 + slice or k.
// `struct Params` is generated from `MatmulParams` in src/kernels/matmul.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> av4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> bv4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> zo: array<f32>;
@group(0) @binding(8) var<storage, read_write> yo: array<f32>;

// Eight consecutive outputs of one row of C, as two vec4 column groups.
struct Row8 {
    v0: vec4<f32>,
    v1: vec4<f32>,
}

// This invocation's matrix of a batch: the element offsets of A, B and C, set by `set_batch`
// at the start of every entry point from the batch index (workgroup z). The vec4 paths index
// them divided by 4: the host runs those only where each matrix starts on a multiple of 4.
var<private> a_base: u32;
var<private> b_base: u32;
var<private> c_base: u32;

fn set_batch(z: u32) {
    if (BATCHED != 0u) {
        a_base = p.a_off + z * p.sa;
        b_base = p.b_off + z * p.sb;
        c_base = p.c_off + z * p.sc;
    } else {
        a_base = 0u;
        b_base = 0u;
        c_base = 0u;
    }
}

// op(B)[4t + K, 8 columns] for K = 0..3 (x, y, z, w), as two vec4 column groups each.
struct B8 {
    x0: vec4<f32>, x1: vec4<f32>,
    y0: vec4<f32>, y1: vec4<f32>,
    z0: vec4<f32>, z1: vec4<f32>,
    w0: vec4<f32>, w1: vec4<f32>,
}

// Loads op(B)[4t .. 4t+4, 8 columns] with k % 4 == 0: when TB = 0 (n % 4 == 0) from the vec4
// column groups whose first rows are at vec4 indices g0, g1; when TB = 1 from the columns whose
// first vec4s are at q[0..8] (clamped columns), one vec4 of four k each, transposed in
// registers. The callers add the product's offset into g0, g1 and q once, before their k loop:
// an offset added in every load's index (a batched product's) cost llvmpipe half the speed of
// the transposed-A loads (benches/NOTES.md).
fn load_b8(t: u32, n4: u32, g0: u32, g1: u32, q: array<u32, 8>) -> B8 {
    if (TB != 0u) {
        let y0 = bv4[q[0] + t]; let y1 = bv4[q[1] + t];
        let y2 = bv4[q[2] + t]; let y3 = bv4[q[3] + t];
        let y4 = bv4[q[4] + t]; let y5 = bv4[q[5] + t];
        let y6 = bv4[q[6] + t]; let y7 = bv4[q[7] + t];
        return B8(
            vec4<f32>(y0.x, y1.x, y2.x, y3.x), vec4<f32>(y4.x, y5.x, y6.x, y7.x),
            vec4<f32>(y0.y, y1.y, y2.y, y3.y), vec4<f32>(y4.y, y5.y, y6.y, y7.y),
            vec4<f32>(y0.z, y1.z, y2.z, y3.z), vec4<f32>(y4.z, y5.z, y6.z, y7.z),
            vec4<f32>(y0.w, y1.w, y2.w, y3.w), vec4<f32>(y4.w, y5.w, y6.w, y7.w));
    }
    let r = (4u * t) * n4;
    return B8(
        bv4[g0 + r], bv4[g1 + r],
        bv4[g0 + r + n4], bv4[g1 + r + n4],
        bv4[g0 + r + 2u * n4], bv4[g1 + r + 2u * n4],
        bv4[g0 + r + 3u * n4], bv4[g1 + r + 3u * n4]);
}

// c + Σ_K a[K] · b[K]: one row's four multiply-adds per column group, written together so that
// a CPU-like adapter keeps the accumulators in registers for the step.
fn fma_row(c: Row8, a: vec4<f32>, b: B8) -> Row8 {
    var v0 = fma(vec4<f32>(a.x), b.x0, c.v0);
    v0 = fma(vec4<f32>(a.y), b.y0, v0);
    v0 = fma(vec4<f32>(a.z), b.z0, v0);
    v0 = fma(vec4<f32>(a.w), b.w0, v0);
    var v1 = fma(vec4<f32>(a.x), b.x1, c.v1);
    v1 = fma(vec4<f32>(a.y), b.y1, v1);
    v1 = fma(vec4<f32>(a.z), b.z1, v1);
    v1 = fma(vec4<f32>(a.w), b.w1, v1);
    return Row8(v0, v1);
}

// Stores (or adds) four consecutive outputs of row `row` from column `col`, masked to C.
fn put4(row: u32, col: u32, x: vec4<f32>) {
    if (row >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        if (col + j < p.n) {
            let idx = c_base + row * p.n + col + j;
            if (ACC != 0u) { c[idx] = c[idx] + x[j]; } else { c[idx] = x[j]; }
        }
    }
}

// The bias of four consecutive columns from `col` (indices clamped to b; columns past n are
// never stored). Loaded once per invocation and column group, not once per output.
fn bias4(col: u32) -> vec4<f32> {
    let last = p.n - 1u;
    return vec4<f32>(bias[min(col, last)], bias[min(col + 1u, last)], bias[min(col + 2u, last)], bias[min(col + 3u, last)]);
}

// The layer epilogue: C = x (the matmul, kept readable), Z = C + b, H = f(Z); four consecutive
// outputs of row `row` from column `col` with their bias `b` (`bias4(col)`), masked to C. The
// activation is computed for the four before the masked stores: on llvmpipe, every operation
// inside the masked loop is repeated per lane and column, which made this epilogue the larger
// part of the subgroup kernel's compile time.
fn put4_bias_act(row: u32, col: u32, x: vec4<f32>, b: vec4<f32>) {
    if (row >= p.m) { return; }
    let z = x + b;
    let h = vec4<f32>(unary_f(ACT, z.x, 0.0), unary_f(ACT, z.y, 0.0), unary_f(ACT, z.z, 0.0), unary_f(ACT, z.w, 0.0));
    let base = row * p.n + col;
    for (var j = 0u; j < 4u; j++) {
        if (col + j < p.n) {
            c[base + j] = x[j];
            zo[base + j] = z[j];
            yo[base + j] = h[j];
        }
    }
}

// Eight outputs of row `row` from column `col`, plain or with the layer epilogue. Each kernel has
// one entry point per store: an entry point that can reach the epilogue stores binds bias, zo
// and yo, so the plain one must not share a function that calls them.
fn put8(row: u32, col: u32, r: Row8) {
    put4(row, col, r.v0);
    put4(row, col + 4u, r.v1);
}

// `b`: the bias of the eight columns (`bias4(col)`, `bias4(col + 4u)`).
fn put8_bias_act(row: u32, col: u32, r: Row8, b: Row8) {
    put4_bias_act(row, col, r.v0, b.v0);
    put4_bias_act(row, col + 4u, r.v1, b.v1);
}
