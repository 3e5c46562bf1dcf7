// Optimizer updates, applied in place to a parameter from its gradient.
//
// Bindings (group 0):
//   0  p      uniform Params
//   1  grad   storage, read        gradient of the parameter
//   2  hyper  storage, read        hyper-parameters, rewritten by the host before each step:
//                                  SGD  [lr, momentum, weight_decay]
//                                  Adam, AdamW [lr, β1, β2, ε, weight_decay, 1−β1^t, 1−β2^t]
//                                  then [7] the gradient-norm limit (0: none) and [8] the
//                                  squared global gradient norm (written on the device by the
//                                  step's sum-of-squares kernels, before the updates)
//   3  param  storage, read_write
//   4  state  storage, read_write  SGD: velocity [len]; Adam: first moment [0, len) then
//                                  second moment [len, 2·len), packed so the kernels need
//                                  four storage bindings (the downlevel limit)
// One thread per element; workgroups of 256 folded into 2-D past the per-dimension limit.

// `struct Params` is generated from `OptimParams` in src/kernels/optim.rs and put in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read> hyper: array<f32>;
@group(0) @binding(3) var<storage, read_write> param: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;

// CLIP = 1: the step clips gradients (pipelines without clipping compile without the reads).
override CLIP: u32 = 0u;

// The factor every gradient is scaled by: min(1, limit / (‖g‖ + 1e-6)) with a limit, else 1.
fn clip_scale() -> f32 {
    if (CLIP == 0u || hyper[7] <= 0.0) { return 1.0; }
    return min(1.0, hyper[7] / (sqrt(hyper[8]) + 1e-6));
}

@compute @workgroup_size(256)
fn sgd_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    let d = clip_scale() * grad[i] + hyper[2] * param[i];
    let v = hyper[1] * state[i] + d;
    state[i] = v;
    param[i] = param[i] - hyper[0] * v;
}

@compute @workgroup_size(256)
fn adam_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    let d = clip_scale() * grad[i] + hyper[4] * param[i];
    let m = hyper[1] * state[i] + (1.0 - hyper[1]) * d;
    let v = hyper[2] * state[p.len + i] + (1.0 - hyper[2]) * d * d;
    state[i] = m;
    state[p.len + i] = v;
    param[i] = param[i] - hyper[0] * (m / hyper[5]) / (sqrt(v / hyper[6]) + hyper[3]);
}

// Adam with decoupled weight decay: p −= lr·λ·p, then Adam's update without λ in the gradient.
@compute @workgroup_size(256)
fn adamw_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.len) { return; }
    let d = clip_scale() * grad[i];
    let decayed = param[i] - hyper[0] * hyper[4] * param[i];
    let m = hyper[1] * state[i] + (1.0 - hyper[1]) * d;
    let v = hyper[2] * state[p.len + i] + (1.0 - hyper[2]) * d * d;
    state[i] = m;
    state[p.len + i] = v;
    param[i] = decayed - hyper[0] * (m / hyper[5]) / (sqrt(v / hyper[6]) + hyper[3]);
}
