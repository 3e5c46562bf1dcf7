// Shared by matmul.wgsl and matmul_sg.wgsl, which the crate embeds with this file in front
// (WGSL has no include): the parameter block, the output and vec4 operand bindings, and the
// stores, plain and with the layer epilogue.
//
// Bindings (group 0):
//   0  p    uniform Params
//   3  c    storage, read_write — C
//   4  av4  storage, read — A as array<vec4<f32>>
//   5  bv4  storage, read — B as array<vec4<f32>>
//   6  bias storage, read — b (epilogue entry points only)
//   7  zo   storage, read_write — Z = C + b (epilogue entry points only)
//   8  yo   storage, read_write — H = f(Z) (epilogue entry points only)

// The activation of the layer epilogue, codes as in unary.wgsl and fused.wgsl.
override ACT: u32 = 0u;

struct Params {
    m: u32,
    k: u32,
    n: u32,
    acc: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> av4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> bv4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> zo: array<f32>;
@group(0) @binding(8) var<storage, read_write> yo: array<f32>;

fn act(v: f32) -> f32 {
    if (ACT == 0u) { return 1.0 / (1.0 + exp(-v)); }
    if (ACT == 1u) { return max(v, 0.0); }
    return tanh(clamp(v, -15.0, 15.0));
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

// The layer epilogue: C = x (the matmul, kept readable), Z = C + b, H = f(Z); four consecutive
// outputs of row `row` from column `col`, masked to C.
fn put4_bias_act(row: u32, col: u32, x: vec4<f32>) {
    if (row >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        if (col + j < p.n) {
            let idx = row * p.n + col + j;
            let v = x[j] + bias[col + j];
            c[idx] = x[j];
            zo[idx] = v;
            yo[idx] = act(v);
        }
    }
}
