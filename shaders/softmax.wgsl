// Row-wise softmax, the fused softmax cross-entropy loss, and the normalisation of layer norm,
// with their VJPs.
//
// Bindings (group 0):
//   0  p       uniform Params
//   1  x       storage, read        logits / softmax output y (backward)
//   2  labels  storage, read        class index per row, stored as f32 (cross-entropy)
//   3  g       storage, read        upstream gradient (softmax_backward: rows×cols; xent: 1 scalar)
//   4  out     storage, read_write  softmax / probabilities / d_x
//   5  loss    storage, read_write  per-row loss (softmax_xent_forward); per-row 1/√(var + ε)
//                                   (normalize: written forward, read backward)
// Row kernels use one workgroup of 256 threads per row with fixed-order tree reductions in
// workgroup memory (deterministic). Rows of at most 64 columns use the `*_rows` variants
// instead: one thread per row, a serial loop, no workgroup memory and no barriers (a workgroup
// per 10-class row would leave 246 of 256 threads idle and pay every barrier). Elementwise
// backward kernels use one thread per element.

// `struct Params` is generated from `SoftmaxParams` in src/kernels/softmax.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;

var<workgroup> part: array<f32, 256>;

fn row_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

fn store(i: u32, v: f32) {
    if (p.acc != 0u) {
        out[i] = out[i] + v;
    } else {
        out[i] = v;
    }
}

fn wg_max(lid: u32, v: f32) -> f32 {
    part[lid] = v;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w >> 1u) {
        if (lid < w) {
            part[lid] = max(part[lid], part[lid + w]);
        }
        workgroupBarrier();
    }
    let r = part[0];
    workgroupBarrier();
    return r;
}

fn wg_sum(lid: u32, v: f32) -> f32 {
    part[lid] = v;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w >> 1u) {
        if (lid < w) {
            part[lid] = part[lid] + part[lid + w];
        }
        workgroupBarrier();
    }
    let r = part[0];
    workgroupBarrier();
    return r;
}

// Returns (row max, Σ exp(x − max)) for row r; every thread gets the same values.
fn row_stats(r: u32, lid: u32, valid: bool) -> vec2<f32> {
    var m = -3.402823e38;
    if (valid) {
        for (var c = lid; c < p.cols; c += 256u) {
            m = max(m, x[r * p.cols + c]);
        }
    }
    m = wg_max(lid, m);
    var s = 0.0;
    if (valid) {
        for (var c = lid; c < p.cols; c += 256u) {
            s += exp(x[r * p.cols + c] - m);
        }
    }
    s = wg_sum(lid, s);
    return vec2<f32>(m, s);
}

@compute @workgroup_size(256)
fn softmax_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = row_id(wid, nwg);
    let valid = r < p.rows;
    let st = row_stats(r, lid, valid);
    if (!valid) { return; }
    for (var c = lid; c < p.cols; c += 256u) {
        out[r * p.cols + c] = exp(x[r * p.cols + c] - st.x) / st.y;
    }
}

// d_x = y ⊙ (g − Σ_row g ⊙ y), x holds y here.
@compute @workgroup_size(256)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = row_id(wid, nwg);
    let valid = r < p.rows;
    var s = 0.0;
    if (valid) {
        for (var c = lid; c < p.cols; c += 256u) {
            s += g[r * p.cols + c] * x[r * p.cols + c];
        }
    }
    s = wg_sum(lid, s);
    if (!valid) { return; }
    for (var c = lid; c < p.cols; c += 256u) {
        let i = r * p.cols + c;
        store(i, x[i] * (g[i] - s));
    }
}

// probs = softmax(x); loss[r] = max + log Σ exp(x − max) − x[r, label[r]]  (logsumexp form)
@compute @workgroup_size(256)
fn softmax_xent_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = row_id(wid, nwg);
    let valid = r < p.rows;
    let st = row_stats(r, lid, valid);
    if (!valid) { return; }
    for (var c = lid; c < p.cols; c += 256u) {
        out[r * p.cols + c] = exp(x[r * p.cols + c] - st.x) / st.y;
    }
    if (lid == 0u) {
        let label = min(u32(labels[r]), p.cols - 1u);
        loss[r] = st.x + log(st.y) - x[r * p.cols + label];
    }
}

// d_logits (+)= g[0] · (probs − onehot(label)) / rows, x holds probs here.
@compute @workgroup_size(256)
fn softmax_xent_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.rows * p.cols) { return; }
    let r = i / p.cols;
    let c = i % p.cols;
    // Clamped as in the forward kernels: forward and backward agree on one meaning.
    let onehot = select(0.0, 1.0, min(u32(labels[r]), p.cols - 1u) == c);
    store(i, g[0] / f32(p.rows) * (x[i] - onehot));
}

// ---- Short rows: one thread per row. ----

fn row_stats_serial(r: u32) -> vec2<f32> {
    var m = -3.402823e38;
    for (var c = 0u; c < p.cols; c++) {
        m = max(m, x[r * p.cols + c]);
    }
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += exp(x[r * p.cols + c] - m);
    }
    return vec2<f32>(m, s);
}

@compute @workgroup_size(256)
fn softmax_forward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = flat(wid, nwg, lid);
    if (r >= p.rows) { return; }
    let st = row_stats_serial(r);
    for (var c = 0u; c < p.cols; c++) {
        out[r * p.cols + c] = exp(x[r * p.cols + c] - st.x) / st.y;
    }
}

@compute @workgroup_size(256)
fn softmax_backward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = flat(wid, nwg, lid);
    if (r >= p.rows) { return; }
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += g[r * p.cols + c] * x[r * p.cols + c];
    }
    for (var c = 0u; c < p.cols; c++) {
        let i = r * p.cols + c;
        store(i, x[i] * (g[i] - s));
    }
}

@compute @workgroup_size(256)
fn softmax_xent_forward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = flat(wid, nwg, lid);
    if (r >= p.rows) { return; }
    let st = row_stats_serial(r);
    for (var c = 0u; c < p.cols; c++) {
        out[r * p.cols + c] = exp(x[r * p.cols + c] - st.x) / st.y;
    }
    let label = min(u32(labels[r]), p.cols - 1u);
    loss[r] = st.x + log(st.y) - x[r * p.cols + label];
}

// ---- Normalisation (layer norm without its affine part): x̂ = (x − mean)·rstd per row,
// rstd = 1/√(var + ε) with the biased variance, computed from the centred values (two passes).
// Backward: d_x = rstd ⊙ (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)), x holding x̂. ----

fn norm_stats(r: u32, lid: u32, valid: bool) -> vec2<f32> {
    var s = 0.0;
    if (valid) {
        for (var c = lid; c < p.cols; c += 256u) {
            s += x[r * p.cols + c];
        }
    }
    let mean = wg_sum(lid, s) / f32(p.cols);
    var q = 0.0;
    if (valid) {
        for (var c = lid; c < p.cols; c += 256u) {
            let d = x[r * p.cols + c] - mean;
            q += d * d;
        }
    }
    return vec2<f32>(mean, inverseSqrt(wg_sum(lid, q) / f32(p.cols) + p.eps));
}

@compute @workgroup_size(256)
fn normalize_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = row_id(wid, nwg);
    let valid = r < p.rows;
    let st = norm_stats(r, lid, valid);
    if (!valid) { return; }
    for (var c = lid; c < p.cols; c += 256u) {
        out[r * p.cols + c] = (x[r * p.cols + c] - st.x) * st.y;
    }
    if (lid == 0u) {
        loss[r] = st.y;
    }
}

@compute @workgroup_size(256)
fn normalize_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = row_id(wid, nwg);
    let valid = r < p.rows;
    var sg = 0.0;
    var sgx = 0.0;
    if (valid) {
        for (var c = lid; c < p.cols; c += 256u) {
            let i = r * p.cols + c;
            sg += g[i];
            sgx += g[i] * x[i];
        }
    }
    let mg = wg_sum(lid, sg) / f32(p.cols);
    let mgx = wg_sum(lid, sgx) / f32(p.cols);
    if (!valid) { return; }
    let rs = loss[r];
    for (var c = lid; c < p.cols; c += 256u) {
        let i = r * p.cols + c;
        store(i, rs * (g[i] - mg - x[i] * mgx));
    }
}

@compute @workgroup_size(256)
fn normalize_forward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = flat(wid, nwg, lid);
    if (r >= p.rows) { return; }
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += x[r * p.cols + c];
    }
    let mean = s / f32(p.cols);
    var q = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let d = x[r * p.cols + c] - mean;
        q += d * d;
    }
    let rs = inverseSqrt(q / f32(p.cols) + p.eps);
    for (var c = 0u; c < p.cols; c++) {
        out[r * p.cols + c] = (x[r * p.cols + c] - mean) * rs;
    }
    loss[r] = rs;
}

@compute @workgroup_size(256)
fn normalize_backward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = flat(wid, nwg, lid);
    if (r >= p.rows) { return; }
    var sg = 0.0;
    var sgx = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let i = r * p.cols + c;
        sg += g[i];
        sgx += g[i] * x[i];
    }
    let mg = sg / f32(p.cols);
    let mgx = sgx / f32(p.cols);
    let rs = loss[r];
    for (var c = 0u; c < p.cols; c++) {
        let i = r * p.cols + c;
        store(i, rs * (g[i] - mg - x[i] * mgx));
    }
}
