// Fused kernels for the layer pattern H = f(Z), Z = XW + b, f ∈ {σ, ReLU, tanh}.
//
// `bias_act_forward`: Z = XW + b and H = f(Z) in one pass over XW (both are written: Z stays
// readable and ReLU's VJP needs it), replacing the bias-add and activation kernels.
//
// `bias_act_backward`: from d_H, in one pass over the rows×cols gradient,
//   d_Z  = d_H ⊙ f'(Z, H)          (written to dz; Z's only consumer is f)
//   d_XW (+)= d_Z                   (bias-add passes the gradient through unchanged)
//   d_b  (+)= Σ_rows d_Z            (the bias gradient: a column sum)
// replacing three kernels (activation VJP, copy, column-sum reduction) and two full passes
// over memory. One workgroup of 64 columns × 4 row-lanes; each thread walks its column in
// steps of 4 rows (consecutive threads touch consecutive columns), and the four partial sums
// of a column are combined in a fixed order, so results are deterministic.
//
// Bindings (group 0):
//   0  p    uniform Params
//   1  z    storage, read        Z = XW + b (the activation's input)
//   2  y    storage, read        H = f(Z) (the saved output)
//   3  g    storage, read        d_H
//   4  dz   storage, read_write  d_Z
//   5  dx   storage, read_write  d_XW
//   6  db   storage, read_write  d_b
//   7  xw   storage, read        XW (forward)
//   8  bias storage, read        b (forward)
//   9  zo   storage, read_write  Z (forward)
//  10  yo   storage, read_write  H (forward)
// Override OP: the activation, its code in the table of src/kernels/unary.rs (an op marked
// `activation` there; `unary_f` and `unary_df` come from the prelude).

override OP: u32 = 0u;

// r0 .. r1 (bias_act_backward): the rows one dispatch handles; the host splits tall inputs so
// that no invocation loops more than a bounded number of times, each slice after the first
// adding its column sums into db.
// `struct Params` is generated from `FusedParams` in src/kernels/fused.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> dz: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> db: array<f32>;

@group(0) @binding(7) var<storage, read> xw: array<f32>;
@group(0) @binding(8) var<storage, read> bias: array<f32>;
@group(0) @binding(9) var<storage, read_write> zo: array<f32>;
@group(0) @binding(10) var<storage, read_write> yo: array<f32>;

var<workgroup> part: array<f32, 256>;

// One thread per element of the rows×cols output; 1-D grid folded into 2-D past the limit.
@compute @workgroup_size(256)
fn bias_act_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.rows * p.cols) { return; }
    let zv = xw[i] + bias[i % p.cols];
    zo[i] = zv;
    yo[i] = unary_f(OP, zv, 0.0);
}

@compute @workgroup_size(64, 4)
fn bias_act_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = (wid.y * nwg.x + wid.x) * 64u + lid.x;
    var s = 0.0;
    if (c < p.cols) {
        for (var r = p.r0 + lid.y; r < p.r1; r += 4u) {
            let i = r * p.cols + c;
            let d = g[i] * unary_df(OP, z[i], y[i], 0.0);
            dz[i] = d;
            if (p.acc_dx != 0u) {
                dx[i] = dx[i] + d;
            } else {
                dx[i] = d;
            }
            s += d;
        }
    }
    part[lid.y * 64u + lid.x] = s;
    workgroupBarrier();
    if (lid.y == 0u && c < p.cols) {
        let total = ((part[lid.x] + part[64u + lid.x]) + part[128u + lid.x]) + part[192u + lid.x];
        if (p.acc_db != 0u) {
            db[c] = db[c] + total;
        } else {
            db[c] = total;
        }
    }
}
