// Dropout: out = x ⊙ mask, the mask drawn from a counter-based hash and saved for the VJP.
//
// Bindings (group 0):
//   0  p      uniform Params
//   1  x      storage, read        the input
//   2  state  storage, read        the draw counter and the seed as four 16-bit halves stored
//                                  as floats: counter low, counter high, seed low, seed high
//   3  out    storage, read_write  x ⊙ mask
//   4  mask   storage, read_write  1 / (1 − p) where the element is kept, 0 where dropped
// Element i is kept when the top 24 bits of keep_hash(seed, stream, counter, i) are at least
// `threshold` = round(p·2^24). Integer arithmetic only: the CPU reference
// (src/kernels/dropout.rs) draws the same mask bit for bit.
// Dispatch: 1-D over `len`, workgroups of 256, folded into 2-D past the per-dimension limit.

// `struct Params` is generated from `DropoutParams` in src/kernels/dropout.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> state: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> mask: array<f32>;

// lowbias32 (Wellons): a bijective 32-bit mixer with low bias.
fn mix(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    return x ^ (x >> 16u);
}

fn keep_hash(seed: u32, stream: u32, counter: u32, i: u32) -> u32 {
    let k1 = mix(seed ^ mix(stream + 0x632be5abu));
    let k2 = mix(counter ^ k1);
    return mix(mix(i ^ k1) + k2);
}

@compute @workgroup_size(256)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    let counter = u32(state[0]) | (u32(state[1]) << 16u);
    let seed = u32(state[2]) | (u32(state[3]) << 16u);
    let kept = (keep_hash(seed, p.stream, counter, i) >> 8u) >= p.threshold;
    let m = select(0.0, p.scale, kept);
    mask[i] = m;
    out[i] = x[i] * m;
}
