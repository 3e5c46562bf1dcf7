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
// Rows and stores are written out by hand: a loop over the block's rows indexes a register
// array, which llvmpipe keeps on the stack (a store loop measured ~40 % slower at 256³). The
// 4-deep k step (`load_b8`, `fma_row`) is shared with `matmul_reg` (matmul_common.wgsl).
// `matmul_sg_bias_act` is the same kernel with the epilogue of the layer pattern H = f(XW + b):
// it writes C = XW and also Z = C + b and H = f(Z), replacing a bias-activation kernel.

override SGN: u32 = 2u;  // subgroups per workgroup

// First row and first column of this invocation's 32×8 block of C.
fn sg_origin(wid: vec3<u32>, sg: u32, lane: u32) -> vec2<u32> {
    return vec2<u32>((wid.y * SGN + sg) * 32u, (wid.x * 8u + lane) * 8u);
}

// This invocation's 32×8 block of op(A)·op(B), a Row8 per row.
fn sg_block(wid: vec3<u32>, sg: u32, lane: u32) -> array<Row8, 32> {
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
    let o = a_base / 4u;
    let bo = b_base / 4u;
    let ar0 = o + min(row0 + lane, m - 1u) * k4;
    let ar1 = o + min(row0 + lane + 8u, m - 1u) * k4;
    let ar2 = o + min(row0 + lane + 16u, m - 1u) * k4;
    let ar3 = o + min(row0 + lane + 24u, m - 1u) * k4;
    let ag = min(row0 / 4u + lane, m4 - 1u);
    let ag_o = o + ag;
    // B addresses (`load_b8`): TB = 0: column groups g0, g1 (vec4 along n); TB = 1: columns q.
    let g0 = min(cg0, n4 - 1u);
    let g1 = min(cg0 + 1u, n4 - 1u);
    let q = array<u32, 8>(
        min(j0, n - 1u), min(j0 + 1u, n - 1u), min(j0 + 2u, n - 1u), min(j0 + 3u, n - 1u),
        min(j0 + 4u, n - 1u), min(j0 + 5u, n - 1u), min(j0 + 6u, n - 1u), min(j0 + 7u, n - 1u));
    // `load_b8`'s vec4 indices with the product's offset in them.
    let bg0 = bo + g0;
    let bg1 = bo + g1;
    let qb = array<u32, 8>(
        bo + q[0] * k4, bo + q[1] * k4, bo + q[2] * k4, bo + q[3] * k4,
        bo + q[4] * k4, bo + q[5] * k4, bo + q[6] * k4, bo + q[7] * k4);
    var c0 = Row8(); var c1 = Row8(); var c2 = Row8(); var c3 = Row8(); var c4 = Row8(); var c5 = Row8(); var c6 = Row8(); var c7 = Row8();
    var c8 = Row8(); var c9 = Row8(); var c10 = Row8(); var c11 = Row8(); var c12 = Row8(); var c13 = Row8(); var c14 = Row8(); var c15 = Row8();
    var c16 = Row8(); var c17 = Row8(); var c18 = Row8(); var c19 = Row8(); var c20 = Row8(); var c21 = Row8(); var c22 = Row8(); var c23 = Row8();
    var c24 = Row8(); var c25 = Row8(); var c26 = Row8(); var c27 = Row8(); var c28 = Row8(); var c29 = Row8(); var c30 = Row8(); var c31 = Row8();
    for (var t = p.k0 / 4u; t < p.k1 / 4u; t++) {
        var x0: vec4<f32>; var x1: vec4<f32>; var x2: vec4<f32>; var x3: vec4<f32>;
        if (TA != 0u) {
            let at = ag_o + (4u * t) * m4;
            x0 = av4[at]; x1 = av4[at + m4];
            x2 = av4[at + 2u * m4]; x3 = av4[at + 3u * m4];
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
        let b = load_b8(t, n4, bg0, bg1, qb);
        c0 = fma_row(c0, a0, b); c1 = fma_row(c1, a1, b); c2 = fma_row(c2, a2, b); c3 = fma_row(c3, a3, b);
        c4 = fma_row(c4, a4, b); c5 = fma_row(c5, a5, b); c6 = fma_row(c6, a6, b); c7 = fma_row(c7, a7, b);
        c8 = fma_row(c8, a8, b); c9 = fma_row(c9, a9, b); c10 = fma_row(c10, a10, b); c11 = fma_row(c11, a11, b);
        c12 = fma_row(c12, a12, b); c13 = fma_row(c13, a13, b); c14 = fma_row(c14, a14, b); c15 = fma_row(c15, a15, b);
        c16 = fma_row(c16, a16, b); c17 = fma_row(c17, a17, b); c18 = fma_row(c18, a18, b); c19 = fma_row(c19, a19, b);
        c20 = fma_row(c20, a20, b); c21 = fma_row(c21, a21, b); c22 = fma_row(c22, a22, b); c23 = fma_row(c23, a23, b);
        c24 = fma_row(c24, a24, b); c25 = fma_row(c25, a25, b); c26 = fma_row(c26, a26, b); c27 = fma_row(c27, a27, b);
        c28 = fma_row(c28, a28, b); c29 = fma_row(c29, a29, b); c30 = fma_row(c30, a30, b); c31 = fma_row(c31, a31, b);
    }

    return array<Row8, 32>(
        c0, c1, c2, c3, c4, c5, c6, c7,
        c8, c9, c10, c11, c12, c13, c14, c15,
        c16, c17, c18, c19, c20, c21, c22, c23,
        c24, c25, c26, c27, c28, c29, c30, c31,
    );
}

// C (+)= op(A)·op(B).
@compute @workgroup_size(8u * SGN)
fn matmul_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    set_batch(wid.z);
    let t = sg_block(wid, sg, lane);
    let o = sg_origin(wid, sg, lane);
    put8(o.x + 0u, o.y, t[0]); put8(o.x + 1u, o.y, t[1]); put8(o.x + 2u, o.y, t[2]); put8(o.x + 3u, o.y, t[3]);
    put8(o.x + 4u, o.y, t[4]); put8(o.x + 5u, o.y, t[5]); put8(o.x + 6u, o.y, t[6]); put8(o.x + 7u, o.y, t[7]);
    put8(o.x + 8u, o.y, t[8]); put8(o.x + 9u, o.y, t[9]); put8(o.x + 10u, o.y, t[10]); put8(o.x + 11u, o.y, t[11]);
    put8(o.x + 12u, o.y, t[12]); put8(o.x + 13u, o.y, t[13]); put8(o.x + 14u, o.y, t[14]); put8(o.x + 15u, o.y, t[15]);
    put8(o.x + 16u, o.y, t[16]); put8(o.x + 17u, o.y, t[17]); put8(o.x + 18u, o.y, t[18]); put8(o.x + 19u, o.y, t[19]);
    put8(o.x + 20u, o.y, t[20]); put8(o.x + 21u, o.y, t[21]); put8(o.x + 22u, o.y, t[22]); put8(o.x + 23u, o.y, t[23]);
    put8(o.x + 24u, o.y, t[24]); put8(o.x + 25u, o.y, t[25]); put8(o.x + 26u, o.y, t[26]); put8(o.x + 27u, o.y, t[27]);
    put8(o.x + 28u, o.y, t[28]); put8(o.x + 29u, o.y, t[29]); put8(o.x + 30u, o.y, t[30]); put8(o.x + 31u, o.y, t[31]);
}

// The fused layer forward: C = A·B, Z = C + b, H = f(Z) in one pass (TA = TB = 0).
@compute @workgroup_size(8u * SGN)
fn matmul_sg_bias_act(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    set_batch(wid.z);
    let t = sg_block(wid, sg, lane);
    let o = sg_origin(wid, sg, lane);
    let b = Row8(bias4(o.y), bias4(o.y + 4u));
    put8_bias_act(o.x + 0u, o.y, t[0], b); put8_bias_act(o.x + 1u, o.y, t[1], b); put8_bias_act(o.x + 2u, o.y, t[2], b); put8_bias_act(o.x + 3u, o.y, t[3], b);
    put8_bias_act(o.x + 4u, o.y, t[4], b); put8_bias_act(o.x + 5u, o.y, t[5], b); put8_bias_act(o.x + 6u, o.y, t[6], b); put8_bias_act(o.x + 7u, o.y, t[7], b);
    put8_bias_act(o.x + 8u, o.y, t[8], b); put8_bias_act(o.x + 9u, o.y, t[9], b); put8_bias_act(o.x + 10u, o.y, t[10], b); put8_bias_act(o.x + 11u, o.y, t[11], b);
    put8_bias_act(o.x + 12u, o.y, t[12], b); put8_bias_act(o.x + 13u, o.y, t[13], b); put8_bias_act(o.x + 14u, o.y, t[14], b); put8_bias_act(o.x + 15u, o.y, t[15], b);
    put8_bias_act(o.x + 16u, o.y, t[16], b); put8_bias_act(o.x + 17u, o.y, t[17], b); put8_bias_act(o.x + 18u, o.y, t[18], b); put8_bias_act(o.x + 19u, o.y, t[19], b);
    put8_bias_act(o.x + 20u, o.y, t[20], b); put8_bias_act(o.x + 21u, o.y, t[21], b); put8_bias_act(o.x + 22u, o.y, t[22], b); put8_bias_act(o.x + 23u, o.y, t[23], b);
    put8_bias_act(o.x + 24u, o.y, t[24], b); put8_bias_act(o.x + 25u, o.y, t[25], b); put8_bias_act(o.x + 26u, o.y, t[26], b); put8_bias_act(o.x + 27u, o.y, t[27], b);
    put8_bias_act(o.x + 28u, o.y, t[28], b); put8_bias_act(o.x + 29u, o.y, t[29], b); put8_bias_act(o.x + 30u, o.y, t[30], b); put8_bias_act(o.x + 31u, o.y, t[31], b);
}
