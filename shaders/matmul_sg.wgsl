// Matrix multiply for CPU-class adapters with 8-wide subgroups (llvmpipe): C (+)= op(A)·op(B),
// forward and both VJPs through TA / TB exactly as in matmul.wgsl (op(A) m×k, op(B) k×n, C m×n,
// row-major; a transposed operand is stored k×m resp. n×k and read in place).
//
// Embedded after matmul_common.wgsl (Params, bindings 0 and 3–8, the stores).
//
// Why a subgroup kernel: a software adapter runs the invocations of a subgroup as the lanes of
// one SIMD register and turns every storage load with a per-lane address into a loop over the
// lanes (one scalar load each). In `matmul_reg` the eight lanes of a subgroup work on the same
// eight rows of C, so they all load the same A values: half of its loads are redundant. Here the
// eight lanes of a subgroup share a 32-row block of C and each owns 8 columns of it (the subgroup
// covers 32×64). Per 4-deep step in k, lane l loads four vec4s of op(A) — rows l, l + 8, l + 16,
// l + 24 when TA = 0; k = 4t + h, rows 4l .. 4l+4 for h = 0..3 when TA = 1 — and
// `subgroupBroadcast` hands each lane's vec4s to the others (a register extract and splat, no
// memory access); op(B) is loaded per lane as before. That is 12 vec4 loads per 1024
// multiply-adds instead of 16 per 256. Each accumulator's four multiply-adds of a step are
// written together, so the compiler keeps it in a register for the step: together about 2.7×
// `matmul_reg`'s throughput on llvmpipe (benches/NOTES.md).
//
// Requires a subgroup size of exactly 8 (the host only picks this kernel when the adapter
// reports min = max = 8), k % 4 == 0, and m % 4 == 0 when TA = 1, n % 4 == 0 when TB = 0. A
// workgroup is SGN subgroups stacked along m: 32·SGN rows × 64 columns of C. Rows and columns
// past the edge are clamped on load and masked on store; every subgroup runs the same loop, so
// the broadcasts are never in divergent control flow.
// The inner step is written out by hand (loops over register arrays are not unrolled there).
// `matmul_sg_bias_act` is the same kernel with the epilogue of the layer pattern H = f(XW + b):
// it writes C = XW and also Z = C + b and H = f(Z), replacing a bias-activation kernel.

override TA: u32 = 0u;
override TB: u32 = 0u;
override SGN: u32 = 2u;  // subgroups per workgroup

// First row and first column of this invocation's 32×8 block of C.
fn sg_origin(wid: vec3<u32>, sg: u32, lane: u32) -> vec2<u32> {
    return vec2<u32>((wid.y * SGN + sg) * 32u, (wid.x * 8u + lane) * 8u);
}

// This invocation's 32×8 block of op(A)·op(B): element 2i + v holds row i, columns 4v .. 4v+4.
fn sg_block(wid: vec3<u32>, sg: u32, lane: u32) -> array<vec4<f32>, 64> {
    let m = p.m;
    let n = p.n;
    let k4 = p.k / 4u;
    let m4 = (m + 3u) / 4u;
    let n4 = (n + 3u) / 4u;
    let row0 = (wid.y * SGN + sg) * 32u;  // this subgroup's rows: row0 .. row0+32
    let cg0 = (wid.x * 8u + lane) * 2u;   // this lane's vec4 column groups cg0, cg0+1
    let j0 = cg0 * 4u;
    // A addresses: TA = 0: rows row0 + lane + 8h (vec4 along k); TA = 1: row group
    // row0 / 4 + lane (vec4 along m, one per k).
    let ar0 = min(row0 + lane, m - 1u) * k4;
    let ar1 = min(row0 + lane + 8u, m - 1u) * k4;
    let ar2 = min(row0 + lane + 16u, m - 1u) * k4;
    let ar3 = min(row0 + lane + 24u, m - 1u) * k4;
    let ag = min(row0 / 4u + lane, m4 - 1u);
    // B addresses: TB = 0: column groups g0, g1 (vec4 along n); TB = 1: columns q0..q7.
    let g0 = min(cg0, n4 - 1u);
    let g1 = min(cg0 + 1u, n4 - 1u);
    let q0 = min(j0 + 0u, n - 1u) * k4;
    let q1 = min(j0 + 1u, n - 1u) * k4;
    let q2 = min(j0 + 2u, n - 1u) * k4;
    let q3 = min(j0 + 3u, n - 1u) * k4;
    let q4 = min(j0 + 4u, n - 1u) * k4;
    let q5 = min(j0 + 5u, n - 1u) * k4;
    let q6 = min(j0 + 6u, n - 1u) * k4;
    let q7 = min(j0 + 7u, n - 1u) * k4;
    var c0_0 = vec4<f32>(); var c0_1 = vec4<f32>();
    var c1_0 = vec4<f32>(); var c1_1 = vec4<f32>();
    var c2_0 = vec4<f32>(); var c2_1 = vec4<f32>();
    var c3_0 = vec4<f32>(); var c3_1 = vec4<f32>();
    var c4_0 = vec4<f32>(); var c4_1 = vec4<f32>();
    var c5_0 = vec4<f32>(); var c5_1 = vec4<f32>();
    var c6_0 = vec4<f32>(); var c6_1 = vec4<f32>();
    var c7_0 = vec4<f32>(); var c7_1 = vec4<f32>();
    var c8_0 = vec4<f32>(); var c8_1 = vec4<f32>();
    var c9_0 = vec4<f32>(); var c9_1 = vec4<f32>();
    var c10_0 = vec4<f32>(); var c10_1 = vec4<f32>();
    var c11_0 = vec4<f32>(); var c11_1 = vec4<f32>();
    var c12_0 = vec4<f32>(); var c12_1 = vec4<f32>();
    var c13_0 = vec4<f32>(); var c13_1 = vec4<f32>();
    var c14_0 = vec4<f32>(); var c14_1 = vec4<f32>();
    var c15_0 = vec4<f32>(); var c15_1 = vec4<f32>();
    var c16_0 = vec4<f32>(); var c16_1 = vec4<f32>();
    var c17_0 = vec4<f32>(); var c17_1 = vec4<f32>();
    var c18_0 = vec4<f32>(); var c18_1 = vec4<f32>();
    var c19_0 = vec4<f32>(); var c19_1 = vec4<f32>();
    var c20_0 = vec4<f32>(); var c20_1 = vec4<f32>();
    var c21_0 = vec4<f32>(); var c21_1 = vec4<f32>();
    var c22_0 = vec4<f32>(); var c22_1 = vec4<f32>();
    var c23_0 = vec4<f32>(); var c23_1 = vec4<f32>();
    var c24_0 = vec4<f32>(); var c24_1 = vec4<f32>();
    var c25_0 = vec4<f32>(); var c25_1 = vec4<f32>();
    var c26_0 = vec4<f32>(); var c26_1 = vec4<f32>();
    var c27_0 = vec4<f32>(); var c27_1 = vec4<f32>();
    var c28_0 = vec4<f32>(); var c28_1 = vec4<f32>();
    var c29_0 = vec4<f32>(); var c29_1 = vec4<f32>();
    var c30_0 = vec4<f32>(); var c30_1 = vec4<f32>();
    var c31_0 = vec4<f32>(); var c31_1 = vec4<f32>();
    for (var t = 0u; t < k4; t++) {
        var x0: vec4<f32>; var x1: vec4<f32>; var x2: vec4<f32>; var x3: vec4<f32>;
        if (TA != 0u) {
            x0 = av4[(4u * t) * m4 + ag]; x1 = av4[(4u * t + 1u) * m4 + ag];
            x2 = av4[(4u * t + 2u) * m4 + ag]; x3 = av4[(4u * t + 3u) * m4 + ag];
        } else {
            x0 = av4[ar0 + t]; x1 = av4[ar1 + t]; x2 = av4[ar2 + t]; x3 = av4[ar3 + t];
        }
        // sH_L: lane L's x{H}.
        let s0_0 = subgroupBroadcast(x0, 0u); let s0_1 = subgroupBroadcast(x0, 1u); let s0_2 = subgroupBroadcast(x0, 2u); let s0_3 = subgroupBroadcast(x0, 3u);
        let s0_4 = subgroupBroadcast(x0, 4u); let s0_5 = subgroupBroadcast(x0, 5u); let s0_6 = subgroupBroadcast(x0, 6u); let s0_7 = subgroupBroadcast(x0, 7u);
        let s1_0 = subgroupBroadcast(x1, 0u); let s1_1 = subgroupBroadcast(x1, 1u); let s1_2 = subgroupBroadcast(x1, 2u); let s1_3 = subgroupBroadcast(x1, 3u);
        let s1_4 = subgroupBroadcast(x1, 4u); let s1_5 = subgroupBroadcast(x1, 5u); let s1_6 = subgroupBroadcast(x1, 6u); let s1_7 = subgroupBroadcast(x1, 7u);
        let s2_0 = subgroupBroadcast(x2, 0u); let s2_1 = subgroupBroadcast(x2, 1u); let s2_2 = subgroupBroadcast(x2, 2u); let s2_3 = subgroupBroadcast(x2, 3u);
        let s2_4 = subgroupBroadcast(x2, 4u); let s2_5 = subgroupBroadcast(x2, 5u); let s2_6 = subgroupBroadcast(x2, 6u); let s2_7 = subgroupBroadcast(x2, 7u);
        let s3_0 = subgroupBroadcast(x3, 0u); let s3_1 = subgroupBroadcast(x3, 1u); let s3_2 = subgroupBroadcast(x3, 2u); let s3_3 = subgroupBroadcast(x3, 3u);
        let s3_4 = subgroupBroadcast(x3, 4u); let s3_5 = subgroupBroadcast(x3, 5u); let s3_6 = subgroupBroadcast(x3, 6u); let s3_7 = subgroupBroadcast(x3, 7u);
        // aI = op(A)[row0 + I, 4t .. 4t+4].
        var a0: vec4<f32>; var a1: vec4<f32>; var a2: vec4<f32>; var a3: vec4<f32>; var a4: vec4<f32>; var a5: vec4<f32>; var a6: vec4<f32>; var a7: vec4<f32>;
        var a8: vec4<f32>; var a9: vec4<f32>; var a10: vec4<f32>; var a11: vec4<f32>; var a12: vec4<f32>; var a13: vec4<f32>; var a14: vec4<f32>; var a15: vec4<f32>;
        var a16: vec4<f32>; var a17: vec4<f32>; var a18: vec4<f32>; var a19: vec4<f32>; var a20: vec4<f32>; var a21: vec4<f32>; var a22: vec4<f32>; var a23: vec4<f32>;
        var a24: vec4<f32>; var a25: vec4<f32>; var a26: vec4<f32>; var a27: vec4<f32>; var a28: vec4<f32>; var a29: vec4<f32>; var a30: vec4<f32>; var a31: vec4<f32>;
        if (TA != 0u) {
            // sK_L holds k = 4t + K, rows 4L .. 4L+4.
            a0 = vec4<f32>(s0_0.x, s1_0.x, s2_0.x, s3_0.x);
            a1 = vec4<f32>(s0_0.y, s1_0.y, s2_0.y, s3_0.y);
            a2 = vec4<f32>(s0_0.z, s1_0.z, s2_0.z, s3_0.z);
            a3 = vec4<f32>(s0_0.w, s1_0.w, s2_0.w, s3_0.w);
            a4 = vec4<f32>(s0_1.x, s1_1.x, s2_1.x, s3_1.x);
            a5 = vec4<f32>(s0_1.y, s1_1.y, s2_1.y, s3_1.y);
            a6 = vec4<f32>(s0_1.z, s1_1.z, s2_1.z, s3_1.z);
            a7 = vec4<f32>(s0_1.w, s1_1.w, s2_1.w, s3_1.w);
            a8 = vec4<f32>(s0_2.x, s1_2.x, s2_2.x, s3_2.x);
            a9 = vec4<f32>(s0_2.y, s1_2.y, s2_2.y, s3_2.y);
            a10 = vec4<f32>(s0_2.z, s1_2.z, s2_2.z, s3_2.z);
            a11 = vec4<f32>(s0_2.w, s1_2.w, s2_2.w, s3_2.w);
            a12 = vec4<f32>(s0_3.x, s1_3.x, s2_3.x, s3_3.x);
            a13 = vec4<f32>(s0_3.y, s1_3.y, s2_3.y, s3_3.y);
            a14 = vec4<f32>(s0_3.z, s1_3.z, s2_3.z, s3_3.z);
            a15 = vec4<f32>(s0_3.w, s1_3.w, s2_3.w, s3_3.w);
            a16 = vec4<f32>(s0_4.x, s1_4.x, s2_4.x, s3_4.x);
            a17 = vec4<f32>(s0_4.y, s1_4.y, s2_4.y, s3_4.y);
            a18 = vec4<f32>(s0_4.z, s1_4.z, s2_4.z, s3_4.z);
            a19 = vec4<f32>(s0_4.w, s1_4.w, s2_4.w, s3_4.w);
            a20 = vec4<f32>(s0_5.x, s1_5.x, s2_5.x, s3_5.x);
            a21 = vec4<f32>(s0_5.y, s1_5.y, s2_5.y, s3_5.y);
            a22 = vec4<f32>(s0_5.z, s1_5.z, s2_5.z, s3_5.z);
            a23 = vec4<f32>(s0_5.w, s1_5.w, s2_5.w, s3_5.w);
            a24 = vec4<f32>(s0_6.x, s1_6.x, s2_6.x, s3_6.x);
            a25 = vec4<f32>(s0_6.y, s1_6.y, s2_6.y, s3_6.y);
            a26 = vec4<f32>(s0_6.z, s1_6.z, s2_6.z, s3_6.z);
            a27 = vec4<f32>(s0_6.w, s1_6.w, s2_6.w, s3_6.w);
            a28 = vec4<f32>(s0_7.x, s1_7.x, s2_7.x, s3_7.x);
            a29 = vec4<f32>(s0_7.y, s1_7.y, s2_7.y, s3_7.y);
            a30 = vec4<f32>(s0_7.z, s1_7.z, s2_7.z, s3_7.z);
            a31 = vec4<f32>(s0_7.w, s1_7.w, s2_7.w, s3_7.w);
        } else {
            a0 = s0_0; a1 = s0_1; a2 = s0_2; a3 = s0_3;
            a4 = s0_4; a5 = s0_5; a6 = s0_6; a7 = s0_7;
            a8 = s1_0; a9 = s1_1; a10 = s1_2; a11 = s1_3;
            a12 = s1_4; a13 = s1_5; a14 = s1_6; a15 = s1_7;
            a16 = s2_0; a17 = s2_1; a18 = s2_2; a19 = s2_3;
            a20 = s2_4; a21 = s2_5; a22 = s2_6; a23 = s2_7;
            a24 = s3_0; a25 = s3_1; a26 = s3_2; a27 = s3_3;
            a28 = s3_4; a29 = s3_5; a30 = s3_6; a31 = s3_7;
        }
        // bK_V = op(B)[4t+K, columns of group V].
        var b0_0: vec4<f32>; var b0_1: vec4<f32>; var b1_0: vec4<f32>; var b1_1: vec4<f32>;
        var b2_0: vec4<f32>; var b2_1: vec4<f32>; var b3_0: vec4<f32>; var b3_1: vec4<f32>;
        if (TB != 0u) {
            let y0 = bv4[q0 + t]; let y1 = bv4[q1 + t]; let y2 = bv4[q2 + t]; let y3 = bv4[q3 + t];
            let y4 = bv4[q4 + t]; let y5 = bv4[q5 + t]; let y6 = bv4[q6 + t]; let y7 = bv4[q7 + t];
            b0_0 = vec4<f32>(y0.x, y1.x, y2.x, y3.x); b0_1 = vec4<f32>(y4.x, y5.x, y6.x, y7.x);
            b1_0 = vec4<f32>(y0.y, y1.y, y2.y, y3.y); b1_1 = vec4<f32>(y4.y, y5.y, y6.y, y7.y);
            b2_0 = vec4<f32>(y0.z, y1.z, y2.z, y3.z); b2_1 = vec4<f32>(y4.z, y5.z, y6.z, y7.z);
            b3_0 = vec4<f32>(y0.w, y1.w, y2.w, y3.w); b3_1 = vec4<f32>(y4.w, y5.w, y6.w, y7.w);
        } else {
            b0_0 = bv4[(4u * t) * n4 + g0]; b0_1 = bv4[(4u * t) * n4 + g1];
            b1_0 = bv4[(4u * t + 1u) * n4 + g0]; b1_1 = bv4[(4u * t + 1u) * n4 + g1];
            b2_0 = bv4[(4u * t + 2u) * n4 + g0]; b2_1 = bv4[(4u * t + 2u) * n4 + g1];
            b3_0 = bv4[(4u * t + 3u) * n4 + g0]; b3_1 = bv4[(4u * t + 3u) * n4 + g1];
        }
        // Each accumulator's four steps together (k = 4t .. 4t+4).
        c0_0 = fma(vec4<f32>(a0.x), b0_0, c0_0); c0_0 = fma(vec4<f32>(a0.y), b1_0, c0_0); c0_0 = fma(vec4<f32>(a0.z), b2_0, c0_0); c0_0 = fma(vec4<f32>(a0.w), b3_0, c0_0);
        c0_1 = fma(vec4<f32>(a0.x), b0_1, c0_1); c0_1 = fma(vec4<f32>(a0.y), b1_1, c0_1); c0_1 = fma(vec4<f32>(a0.z), b2_1, c0_1); c0_1 = fma(vec4<f32>(a0.w), b3_1, c0_1);
        c1_0 = fma(vec4<f32>(a1.x), b0_0, c1_0); c1_0 = fma(vec4<f32>(a1.y), b1_0, c1_0); c1_0 = fma(vec4<f32>(a1.z), b2_0, c1_0); c1_0 = fma(vec4<f32>(a1.w), b3_0, c1_0);
        c1_1 = fma(vec4<f32>(a1.x), b0_1, c1_1); c1_1 = fma(vec4<f32>(a1.y), b1_1, c1_1); c1_1 = fma(vec4<f32>(a1.z), b2_1, c1_1); c1_1 = fma(vec4<f32>(a1.w), b3_1, c1_1);
        c2_0 = fma(vec4<f32>(a2.x), b0_0, c2_0); c2_0 = fma(vec4<f32>(a2.y), b1_0, c2_0); c2_0 = fma(vec4<f32>(a2.z), b2_0, c2_0); c2_0 = fma(vec4<f32>(a2.w), b3_0, c2_0);
        c2_1 = fma(vec4<f32>(a2.x), b0_1, c2_1); c2_1 = fma(vec4<f32>(a2.y), b1_1, c2_1); c2_1 = fma(vec4<f32>(a2.z), b2_1, c2_1); c2_1 = fma(vec4<f32>(a2.w), b3_1, c2_1);
        c3_0 = fma(vec4<f32>(a3.x), b0_0, c3_0); c3_0 = fma(vec4<f32>(a3.y), b1_0, c3_0); c3_0 = fma(vec4<f32>(a3.z), b2_0, c3_0); c3_0 = fma(vec4<f32>(a3.w), b3_0, c3_0);
        c3_1 = fma(vec4<f32>(a3.x), b0_1, c3_1); c3_1 = fma(vec4<f32>(a3.y), b1_1, c3_1); c3_1 = fma(vec4<f32>(a3.z), b2_1, c3_1); c3_1 = fma(vec4<f32>(a3.w), b3_1, c3_1);
        c4_0 = fma(vec4<f32>(a4.x), b0_0, c4_0); c4_0 = fma(vec4<f32>(a4.y), b1_0, c4_0); c4_0 = fma(vec4<f32>(a4.z), b2_0, c4_0); c4_0 = fma(vec4<f32>(a4.w), b3_0, c4_0);
        c4_1 = fma(vec4<f32>(a4.x), b0_1, c4_1); c4_1 = fma(vec4<f32>(a4.y), b1_1, c4_1); c4_1 = fma(vec4<f32>(a4.z), b2_1, c4_1); c4_1 = fma(vec4<f32>(a4.w), b3_1, c4_1);
        c5_0 = fma(vec4<f32>(a5.x), b0_0, c5_0); c5_0 = fma(vec4<f32>(a5.y), b1_0, c5_0); c5_0 = fma(vec4<f32>(a5.z), b2_0, c5_0); c5_0 = fma(vec4<f32>(a5.w), b3_0, c5_0);
        c5_1 = fma(vec4<f32>(a5.x), b0_1, c5_1); c5_1 = fma(vec4<f32>(a5.y), b1_1, c5_1); c5_1 = fma(vec4<f32>(a5.z), b2_1, c5_1); c5_1 = fma(vec4<f32>(a5.w), b3_1, c5_1);
        c6_0 = fma(vec4<f32>(a6.x), b0_0, c6_0); c6_0 = fma(vec4<f32>(a6.y), b1_0, c6_0); c6_0 = fma(vec4<f32>(a6.z), b2_0, c6_0); c6_0 = fma(vec4<f32>(a6.w), b3_0, c6_0);
        c6_1 = fma(vec4<f32>(a6.x), b0_1, c6_1); c6_1 = fma(vec4<f32>(a6.y), b1_1, c6_1); c6_1 = fma(vec4<f32>(a6.z), b2_1, c6_1); c6_1 = fma(vec4<f32>(a6.w), b3_1, c6_1);
        c7_0 = fma(vec4<f32>(a7.x), b0_0, c7_0); c7_0 = fma(vec4<f32>(a7.y), b1_0, c7_0); c7_0 = fma(vec4<f32>(a7.z), b2_0, c7_0); c7_0 = fma(vec4<f32>(a7.w), b3_0, c7_0);
        c7_1 = fma(vec4<f32>(a7.x), b0_1, c7_1); c7_1 = fma(vec4<f32>(a7.y), b1_1, c7_1); c7_1 = fma(vec4<f32>(a7.z), b2_1, c7_1); c7_1 = fma(vec4<f32>(a7.w), b3_1, c7_1);
        c8_0 = fma(vec4<f32>(a8.x), b0_0, c8_0); c8_0 = fma(vec4<f32>(a8.y), b1_0, c8_0); c8_0 = fma(vec4<f32>(a8.z), b2_0, c8_0); c8_0 = fma(vec4<f32>(a8.w), b3_0, c8_0);
        c8_1 = fma(vec4<f32>(a8.x), b0_1, c8_1); c8_1 = fma(vec4<f32>(a8.y), b1_1, c8_1); c8_1 = fma(vec4<f32>(a8.z), b2_1, c8_1); c8_1 = fma(vec4<f32>(a8.w), b3_1, c8_1);
        c9_0 = fma(vec4<f32>(a9.x), b0_0, c9_0); c9_0 = fma(vec4<f32>(a9.y), b1_0, c9_0); c9_0 = fma(vec4<f32>(a9.z), b2_0, c9_0); c9_0 = fma(vec4<f32>(a9.w), b3_0, c9_0);
        c9_1 = fma(vec4<f32>(a9.x), b0_1, c9_1); c9_1 = fma(vec4<f32>(a9.y), b1_1, c9_1); c9_1 = fma(vec4<f32>(a9.z), b2_1, c9_1); c9_1 = fma(vec4<f32>(a9.w), b3_1, c9_1);
        c10_0 = fma(vec4<f32>(a10.x), b0_0, c10_0); c10_0 = fma(vec4<f32>(a10.y), b1_0, c10_0); c10_0 = fma(vec4<f32>(a10.z), b2_0, c10_0); c10_0 = fma(vec4<f32>(a10.w), b3_0, c10_0);
        c10_1 = fma(vec4<f32>(a10.x), b0_1, c10_1); c10_1 = fma(vec4<f32>(a10.y), b1_1, c10_1); c10_1 = fma(vec4<f32>(a10.z), b2_1, c10_1); c10_1 = fma(vec4<f32>(a10.w), b3_1, c10_1);
        c11_0 = fma(vec4<f32>(a11.x), b0_0, c11_0); c11_0 = fma(vec4<f32>(a11.y), b1_0, c11_0); c11_0 = fma(vec4<f32>(a11.z), b2_0, c11_0); c11_0 = fma(vec4<f32>(a11.w), b3_0, c11_0);
        c11_1 = fma(vec4<f32>(a11.x), b0_1, c11_1); c11_1 = fma(vec4<f32>(a11.y), b1_1, c11_1); c11_1 = fma(vec4<f32>(a11.z), b2_1, c11_1); c11_1 = fma(vec4<f32>(a11.w), b3_1, c11_1);
        c12_0 = fma(vec4<f32>(a12.x), b0_0, c12_0); c12_0 = fma(vec4<f32>(a12.y), b1_0, c12_0); c12_0 = fma(vec4<f32>(a12.z), b2_0, c12_0); c12_0 = fma(vec4<f32>(a12.w), b3_0, c12_0);
        c12_1 = fma(vec4<f32>(a12.x), b0_1, c12_1); c12_1 = fma(vec4<f32>(a12.y), b1_1, c12_1); c12_1 = fma(vec4<f32>(a12.z), b2_1, c12_1); c12_1 = fma(vec4<f32>(a12.w), b3_1, c12_1);
        c13_0 = fma(vec4<f32>(a13.x), b0_0, c13_0); c13_0 = fma(vec4<f32>(a13.y), b1_0, c13_0); c13_0 = fma(vec4<f32>(a13.z), b2_0, c13_0); c13_0 = fma(vec4<f32>(a13.w), b3_0, c13_0);
        c13_1 = fma(vec4<f32>(a13.x), b0_1, c13_1); c13_1 = fma(vec4<f32>(a13.y), b1_1, c13_1); c13_1 = fma(vec4<f32>(a13.z), b2_1, c13_1); c13_1 = fma(vec4<f32>(a13.w), b3_1, c13_1);
        c14_0 = fma(vec4<f32>(a14.x), b0_0, c14_0); c14_0 = fma(vec4<f32>(a14.y), b1_0, c14_0); c14_0 = fma(vec4<f32>(a14.z), b2_0, c14_0); c14_0 = fma(vec4<f32>(a14.w), b3_0, c14_0);
        c14_1 = fma(vec4<f32>(a14.x), b0_1, c14_1); c14_1 = fma(vec4<f32>(a14.y), b1_1, c14_1); c14_1 = fma(vec4<f32>(a14.z), b2_1, c14_1); c14_1 = fma(vec4<f32>(a14.w), b3_1, c14_1);
        c15_0 = fma(vec4<f32>(a15.x), b0_0, c15_0); c15_0 = fma(vec4<f32>(a15.y), b1_0, c15_0); c15_0 = fma(vec4<f32>(a15.z), b2_0, c15_0); c15_0 = fma(vec4<f32>(a15.w), b3_0, c15_0);
        c15_1 = fma(vec4<f32>(a15.x), b0_1, c15_1); c15_1 = fma(vec4<f32>(a15.y), b1_1, c15_1); c15_1 = fma(vec4<f32>(a15.z), b2_1, c15_1); c15_1 = fma(vec4<f32>(a15.w), b3_1, c15_1);
        c16_0 = fma(vec4<f32>(a16.x), b0_0, c16_0); c16_0 = fma(vec4<f32>(a16.y), b1_0, c16_0); c16_0 = fma(vec4<f32>(a16.z), b2_0, c16_0); c16_0 = fma(vec4<f32>(a16.w), b3_0, c16_0);
        c16_1 = fma(vec4<f32>(a16.x), b0_1, c16_1); c16_1 = fma(vec4<f32>(a16.y), b1_1, c16_1); c16_1 = fma(vec4<f32>(a16.z), b2_1, c16_1); c16_1 = fma(vec4<f32>(a16.w), b3_1, c16_1);
        c17_0 = fma(vec4<f32>(a17.x), b0_0, c17_0); c17_0 = fma(vec4<f32>(a17.y), b1_0, c17_0); c17_0 = fma(vec4<f32>(a17.z), b2_0, c17_0); c17_0 = fma(vec4<f32>(a17.w), b3_0, c17_0);
        c17_1 = fma(vec4<f32>(a17.x), b0_1, c17_1); c17_1 = fma(vec4<f32>(a17.y), b1_1, c17_1); c17_1 = fma(vec4<f32>(a17.z), b2_1, c17_1); c17_1 = fma(vec4<f32>(a17.w), b3_1, c17_1);
        c18_0 = fma(vec4<f32>(a18.x), b0_0, c18_0); c18_0 = fma(vec4<f32>(a18.y), b1_0, c18_0); c18_0 = fma(vec4<f32>(a18.z), b2_0, c18_0); c18_0 = fma(vec4<f32>(a18.w), b3_0, c18_0);
        c18_1 = fma(vec4<f32>(a18.x), b0_1, c18_1); c18_1 = fma(vec4<f32>(a18.y), b1_1, c18_1); c18_1 = fma(vec4<f32>(a18.z), b2_1, c18_1); c18_1 = fma(vec4<f32>(a18.w), b3_1, c18_1);
        c19_0 = fma(vec4<f32>(a19.x), b0_0, c19_0); c19_0 = fma(vec4<f32>(a19.y), b1_0, c19_0); c19_0 = fma(vec4<f32>(a19.z), b2_0, c19_0); c19_0 = fma(vec4<f32>(a19.w), b3_0, c19_0);
        c19_1 = fma(vec4<f32>(a19.x), b0_1, c19_1); c19_1 = fma(vec4<f32>(a19.y), b1_1, c19_1); c19_1 = fma(vec4<f32>(a19.z), b2_1, c19_1); c19_1 = fma(vec4<f32>(a19.w), b3_1, c19_1);
        c20_0 = fma(vec4<f32>(a20.x), b0_0, c20_0); c20_0 = fma(vec4<f32>(a20.y), b1_0, c20_0); c20_0 = fma(vec4<f32>(a20.z), b2_0, c20_0); c20_0 = fma(vec4<f32>(a20.w), b3_0, c20_0);
        c20_1 = fma(vec4<f32>(a20.x), b0_1, c20_1); c20_1 = fma(vec4<f32>(a20.y), b1_1, c20_1); c20_1 = fma(vec4<f32>(a20.z), b2_1, c20_1); c20_1 = fma(vec4<f32>(a20.w), b3_1, c20_1);
        c21_0 = fma(vec4<f32>(a21.x), b0_0, c21_0); c21_0 = fma(vec4<f32>(a21.y), b1_0, c21_0); c21_0 = fma(vec4<f32>(a21.z), b2_0, c21_0); c21_0 = fma(vec4<f32>(a21.w), b3_0, c21_0);
        c21_1 = fma(vec4<f32>(a21.x), b0_1, c21_1); c21_1 = fma(vec4<f32>(a21.y), b1_1, c21_1); c21_1 = fma(vec4<f32>(a21.z), b2_1, c21_1); c21_1 = fma(vec4<f32>(a21.w), b3_1, c21_1);
        c22_0 = fma(vec4<f32>(a22.x), b0_0, c22_0); c22_0 = fma(vec4<f32>(a22.y), b1_0, c22_0); c22_0 = fma(vec4<f32>(a22.z), b2_0, c22_0); c22_0 = fma(vec4<f32>(a22.w), b3_0, c22_0);
        c22_1 = fma(vec4<f32>(a22.x), b0_1, c22_1); c22_1 = fma(vec4<f32>(a22.y), b1_1, c22_1); c22_1 = fma(vec4<f32>(a22.z), b2_1, c22_1); c22_1 = fma(vec4<f32>(a22.w), b3_1, c22_1);
        c23_0 = fma(vec4<f32>(a23.x), b0_0, c23_0); c23_0 = fma(vec4<f32>(a23.y), b1_0, c23_0); c23_0 = fma(vec4<f32>(a23.z), b2_0, c23_0); c23_0 = fma(vec4<f32>(a23.w), b3_0, c23_0);
        c23_1 = fma(vec4<f32>(a23.x), b0_1, c23_1); c23_1 = fma(vec4<f32>(a23.y), b1_1, c23_1); c23_1 = fma(vec4<f32>(a23.z), b2_1, c23_1); c23_1 = fma(vec4<f32>(a23.w), b3_1, c23_1);
        c24_0 = fma(vec4<f32>(a24.x), b0_0, c24_0); c24_0 = fma(vec4<f32>(a24.y), b1_0, c24_0); c24_0 = fma(vec4<f32>(a24.z), b2_0, c24_0); c24_0 = fma(vec4<f32>(a24.w), b3_0, c24_0);
        c24_1 = fma(vec4<f32>(a24.x), b0_1, c24_1); c24_1 = fma(vec4<f32>(a24.y), b1_1, c24_1); c24_1 = fma(vec4<f32>(a24.z), b2_1, c24_1); c24_1 = fma(vec4<f32>(a24.w), b3_1, c24_1);
        c25_0 = fma(vec4<f32>(a25.x), b0_0, c25_0); c25_0 = fma(vec4<f32>(a25.y), b1_0, c25_0); c25_0 = fma(vec4<f32>(a25.z), b2_0, c25_0); c25_0 = fma(vec4<f32>(a25.w), b3_0, c25_0);
        c25_1 = fma(vec4<f32>(a25.x), b0_1, c25_1); c25_1 = fma(vec4<f32>(a25.y), b1_1, c25_1); c25_1 = fma(vec4<f32>(a25.z), b2_1, c25_1); c25_1 = fma(vec4<f32>(a25.w), b3_1, c25_1);
        c26_0 = fma(vec4<f32>(a26.x), b0_0, c26_0); c26_0 = fma(vec4<f32>(a26.y), b1_0, c26_0); c26_0 = fma(vec4<f32>(a26.z), b2_0, c26_0); c26_0 = fma(vec4<f32>(a26.w), b3_0, c26_0);
        c26_1 = fma(vec4<f32>(a26.x), b0_1, c26_1); c26_1 = fma(vec4<f32>(a26.y), b1_1, c26_1); c26_1 = fma(vec4<f32>(a26.z), b2_1, c26_1); c26_1 = fma(vec4<f32>(a26.w), b3_1, c26_1);
        c27_0 = fma(vec4<f32>(a27.x), b0_0, c27_0); c27_0 = fma(vec4<f32>(a27.y), b1_0, c27_0); c27_0 = fma(vec4<f32>(a27.z), b2_0, c27_0); c27_0 = fma(vec4<f32>(a27.w), b3_0, c27_0);
        c27_1 = fma(vec4<f32>(a27.x), b0_1, c27_1); c27_1 = fma(vec4<f32>(a27.y), b1_1, c27_1); c27_1 = fma(vec4<f32>(a27.z), b2_1, c27_1); c27_1 = fma(vec4<f32>(a27.w), b3_1, c27_1);
        c28_0 = fma(vec4<f32>(a28.x), b0_0, c28_0); c28_0 = fma(vec4<f32>(a28.y), b1_0, c28_0); c28_0 = fma(vec4<f32>(a28.z), b2_0, c28_0); c28_0 = fma(vec4<f32>(a28.w), b3_0, c28_0);
        c28_1 = fma(vec4<f32>(a28.x), b0_1, c28_1); c28_1 = fma(vec4<f32>(a28.y), b1_1, c28_1); c28_1 = fma(vec4<f32>(a28.z), b2_1, c28_1); c28_1 = fma(vec4<f32>(a28.w), b3_1, c28_1);
        c29_0 = fma(vec4<f32>(a29.x), b0_0, c29_0); c29_0 = fma(vec4<f32>(a29.y), b1_0, c29_0); c29_0 = fma(vec4<f32>(a29.z), b2_0, c29_0); c29_0 = fma(vec4<f32>(a29.w), b3_0, c29_0);
        c29_1 = fma(vec4<f32>(a29.x), b0_1, c29_1); c29_1 = fma(vec4<f32>(a29.y), b1_1, c29_1); c29_1 = fma(vec4<f32>(a29.z), b2_1, c29_1); c29_1 = fma(vec4<f32>(a29.w), b3_1, c29_1);
        c30_0 = fma(vec4<f32>(a30.x), b0_0, c30_0); c30_0 = fma(vec4<f32>(a30.y), b1_0, c30_0); c30_0 = fma(vec4<f32>(a30.z), b2_0, c30_0); c30_0 = fma(vec4<f32>(a30.w), b3_0, c30_0);
        c30_1 = fma(vec4<f32>(a30.x), b0_1, c30_1); c30_1 = fma(vec4<f32>(a30.y), b1_1, c30_1); c30_1 = fma(vec4<f32>(a30.z), b2_1, c30_1); c30_1 = fma(vec4<f32>(a30.w), b3_1, c30_1);
        c31_0 = fma(vec4<f32>(a31.x), b0_0, c31_0); c31_0 = fma(vec4<f32>(a31.y), b1_0, c31_0); c31_0 = fma(vec4<f32>(a31.z), b2_0, c31_0); c31_0 = fma(vec4<f32>(a31.w), b3_0, c31_0);
        c31_1 = fma(vec4<f32>(a31.x), b0_1, c31_1); c31_1 = fma(vec4<f32>(a31.y), b1_1, c31_1); c31_1 = fma(vec4<f32>(a31.z), b2_1, c31_1); c31_1 = fma(vec4<f32>(a31.w), b3_1, c31_1);
    }

    return array<vec4<f32>, 64>(
        c0_0, c0_1, c1_0, c1_1, c2_0, c2_1, c3_0, c3_1,
        c4_0, c4_1, c5_0, c5_1, c6_0, c6_1, c7_0, c7_1,
        c8_0, c8_1, c9_0, c9_1, c10_0, c10_1, c11_0, c11_1,
        c12_0, c12_1, c13_0, c13_1, c14_0, c14_1, c15_0, c15_1,
        c16_0, c16_1, c17_0, c17_1, c18_0, c18_1, c19_0, c19_1,
        c20_0, c20_1, c21_0, c21_1, c22_0, c22_1, c23_0, c23_1,
        c24_0, c24_1, c25_0, c25_1, c26_0, c26_1, c27_0, c27_1,
        c28_0, c28_1, c29_0, c29_1, c30_0, c30_1, c31_0, c31_1,
    );
}

// C (+)= op(A)·op(B).
@compute @workgroup_size(8u * SGN)
fn matmul_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let t = sg_block(wid, sg, lane);
    let o = sg_origin(wid, sg, lane);
    put4(o.x + 0u, o.y, t[0]); put4(o.x + 0u, o.y + 4u, t[1]);
    put4(o.x + 1u, o.y, t[2]); put4(o.x + 1u, o.y + 4u, t[3]);
    put4(o.x + 2u, o.y, t[4]); put4(o.x + 2u, o.y + 4u, t[5]);
    put4(o.x + 3u, o.y, t[6]); put4(o.x + 3u, o.y + 4u, t[7]);
    put4(o.x + 4u, o.y, t[8]); put4(o.x + 4u, o.y + 4u, t[9]);
    put4(o.x + 5u, o.y, t[10]); put4(o.x + 5u, o.y + 4u, t[11]);
    put4(o.x + 6u, o.y, t[12]); put4(o.x + 6u, o.y + 4u, t[13]);
    put4(o.x + 7u, o.y, t[14]); put4(o.x + 7u, o.y + 4u, t[15]);
    put4(o.x + 8u, o.y, t[16]); put4(o.x + 8u, o.y + 4u, t[17]);
    put4(o.x + 9u, o.y, t[18]); put4(o.x + 9u, o.y + 4u, t[19]);
    put4(o.x + 10u, o.y, t[20]); put4(o.x + 10u, o.y + 4u, t[21]);
    put4(o.x + 11u, o.y, t[22]); put4(o.x + 11u, o.y + 4u, t[23]);
    put4(o.x + 12u, o.y, t[24]); put4(o.x + 12u, o.y + 4u, t[25]);
    put4(o.x + 13u, o.y, t[26]); put4(o.x + 13u, o.y + 4u, t[27]);
    put4(o.x + 14u, o.y, t[28]); put4(o.x + 14u, o.y + 4u, t[29]);
    put4(o.x + 15u, o.y, t[30]); put4(o.x + 15u, o.y + 4u, t[31]);
    put4(o.x + 16u, o.y, t[32]); put4(o.x + 16u, o.y + 4u, t[33]);
    put4(o.x + 17u, o.y, t[34]); put4(o.x + 17u, o.y + 4u, t[35]);
    put4(o.x + 18u, o.y, t[36]); put4(o.x + 18u, o.y + 4u, t[37]);
    put4(o.x + 19u, o.y, t[38]); put4(o.x + 19u, o.y + 4u, t[39]);
    put4(o.x + 20u, o.y, t[40]); put4(o.x + 20u, o.y + 4u, t[41]);
    put4(o.x + 21u, o.y, t[42]); put4(o.x + 21u, o.y + 4u, t[43]);
    put4(o.x + 22u, o.y, t[44]); put4(o.x + 22u, o.y + 4u, t[45]);
    put4(o.x + 23u, o.y, t[46]); put4(o.x + 23u, o.y + 4u, t[47]);
    put4(o.x + 24u, o.y, t[48]); put4(o.x + 24u, o.y + 4u, t[49]);
    put4(o.x + 25u, o.y, t[50]); put4(o.x + 25u, o.y + 4u, t[51]);
    put4(o.x + 26u, o.y, t[52]); put4(o.x + 26u, o.y + 4u, t[53]);
    put4(o.x + 27u, o.y, t[54]); put4(o.x + 27u, o.y + 4u, t[55]);
    put4(o.x + 28u, o.y, t[56]); put4(o.x + 28u, o.y + 4u, t[57]);
    put4(o.x + 29u, o.y, t[58]); put4(o.x + 29u, o.y + 4u, t[59]);
    put4(o.x + 30u, o.y, t[60]); put4(o.x + 30u, o.y + 4u, t[61]);
    put4(o.x + 31u, o.y, t[62]); put4(o.x + 31u, o.y + 4u, t[63]);
}

// The fused layer forward: C = A·B, Z = C + b, H = f(Z) in one pass (TA = TB = 0).
@compute @workgroup_size(8u * SGN)
fn matmul_sg_bias_act(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let t = sg_block(wid, sg, lane);
    let o = sg_origin(wid, sg, lane);
    put4_bias_act(o.x + 0u, o.y, t[0]); put4_bias_act(o.x + 0u, o.y + 4u, t[1]);
    put4_bias_act(o.x + 1u, o.y, t[2]); put4_bias_act(o.x + 1u, o.y + 4u, t[3]);
    put4_bias_act(o.x + 2u, o.y, t[4]); put4_bias_act(o.x + 2u, o.y + 4u, t[5]);
    put4_bias_act(o.x + 3u, o.y, t[6]); put4_bias_act(o.x + 3u, o.y + 4u, t[7]);
    put4_bias_act(o.x + 4u, o.y, t[8]); put4_bias_act(o.x + 4u, o.y + 4u, t[9]);
    put4_bias_act(o.x + 5u, o.y, t[10]); put4_bias_act(o.x + 5u, o.y + 4u, t[11]);
    put4_bias_act(o.x + 6u, o.y, t[12]); put4_bias_act(o.x + 6u, o.y + 4u, t[13]);
    put4_bias_act(o.x + 7u, o.y, t[14]); put4_bias_act(o.x + 7u, o.y + 4u, t[15]);
    put4_bias_act(o.x + 8u, o.y, t[16]); put4_bias_act(o.x + 8u, o.y + 4u, t[17]);
    put4_bias_act(o.x + 9u, o.y, t[18]); put4_bias_act(o.x + 9u, o.y + 4u, t[19]);
    put4_bias_act(o.x + 10u, o.y, t[20]); put4_bias_act(o.x + 10u, o.y + 4u, t[21]);
    put4_bias_act(o.x + 11u, o.y, t[22]); put4_bias_act(o.x + 11u, o.y + 4u, t[23]);
    put4_bias_act(o.x + 12u, o.y, t[24]); put4_bias_act(o.x + 12u, o.y + 4u, t[25]);
    put4_bias_act(o.x + 13u, o.y, t[26]); put4_bias_act(o.x + 13u, o.y + 4u, t[27]);
    put4_bias_act(o.x + 14u, o.y, t[28]); put4_bias_act(o.x + 14u, o.y + 4u, t[29]);
    put4_bias_act(o.x + 15u, o.y, t[30]); put4_bias_act(o.x + 15u, o.y + 4u, t[31]);
    put4_bias_act(o.x + 16u, o.y, t[32]); put4_bias_act(o.x + 16u, o.y + 4u, t[33]);
    put4_bias_act(o.x + 17u, o.y, t[34]); put4_bias_act(o.x + 17u, o.y + 4u, t[35]);
    put4_bias_act(o.x + 18u, o.y, t[36]); put4_bias_act(o.x + 18u, o.y + 4u, t[37]);
    put4_bias_act(o.x + 19u, o.y, t[38]); put4_bias_act(o.x + 19u, o.y + 4u, t[39]);
    put4_bias_act(o.x + 20u, o.y, t[40]); put4_bias_act(o.x + 20u, o.y + 4u, t[41]);
    put4_bias_act(o.x + 21u, o.y, t[42]); put4_bias_act(o.x + 21u, o.y + 4u, t[43]);
    put4_bias_act(o.x + 22u, o.y, t[44]); put4_bias_act(o.x + 22u, o.y + 4u, t[45]);
    put4_bias_act(o.x + 23u, o.y, t[46]); put4_bias_act(o.x + 23u, o.y + 4u, t[47]);
    put4_bias_act(o.x + 24u, o.y, t[48]); put4_bias_act(o.x + 24u, o.y + 4u, t[49]);
    put4_bias_act(o.x + 25u, o.y, t[50]); put4_bias_act(o.x + 25u, o.y + 4u, t[51]);
    put4_bias_act(o.x + 26u, o.y, t[52]); put4_bias_act(o.x + 26u, o.y + 4u, t[53]);
    put4_bias_act(o.x + 27u, o.y, t[54]); put4_bias_act(o.x + 27u, o.y + 4u, t[55]);
    put4_bias_act(o.x + 28u, o.y, t[56]); put4_bias_act(o.x + 28u, o.y + 4u, t[57]);
    put4_bias_act(o.x + 29u, o.y, t[58]); put4_bias_act(o.x + 29u, o.y + 4u, t[59]);
    put4_bias_act(o.x + 30u, o.y, t[60]); put4_bias_act(o.x + 30u, o.y + 4u, t[61]);
    put4_bias_act(o.x + 31u, o.y, t[62]); put4_bias_act(o.x + 31u, o.y + 4u, t[63]);
}
