//! Shared test helpers: device selection, random data, tolerant comparison, and a harness
//! that builds one op on several devices and compares values and gradients.
#![allow(dead_code)]

use std::cell::RefCell;
use std::sync::{Mutex, MutexGuard, OnceLock};
use wgrad::data::Rng;
use wgrad::{Device, Graph, NodeId, Result};

/// The GPU device for tests, opened once. `None` (with a loud message) when there is no
/// adapter; under `WGRAD_REQUIRE_GPU=1` a missing adapter fails the test instead.
/// `WGRAD_TEST_LIMITS=downlevel` requests WebGPU's downlevel limits (256 invocations per
/// workgroup, 16 KiB of workgroup memory) instead of the adapter's own.
pub fn gpu() -> Option<Device> {
    static GPU: OnceLock<std::result::Result<Device, String>> = OnceLock::new();
    let open = || {
        let mut opts = wgrad::GpuOptions::default();
        if std::env::var("WGRAD_TEST_LIMITS").as_deref() == Ok("downlevel") {
            opts.limits = Some(wgrad::wgpu::Limits::downlevel_defaults());
        }
        Device::gpu_with(&opts).map_err(|e| e.to_string())
    };
    match GPU.get_or_init(open) {
        Ok(d) => {
            let limits = match d {
                Device::Gpu(g) => {
                    let l = g.limits();
                    format!(
                        " [limits: {} invocations/workgroup, {} B workgroup memory]",
                        l.max_compute_invocations_per_workgroup, l.max_compute_workgroup_storage_size
                    )
                }
                _ => String::new(),
            };
            eprintln!("GPU adapter: {}{limits}", d.info());
            one_test_at_a_time_on_gl(d);
            Some(d.clone())
        }
        Err(e) => {
            if std::env::var("WGRAD_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("WGRAD_REQUIRE_GPU=1 but no GPU adapter could be opened: {e}");
            }
            eprintln!("SKIPPED (no GPU adapter): {e}");
            None
        }
    }
}

/// On GL, wgpu guards each device with one context lock, and a call that waits for it longer
/// than 6 s panics inside wgpu ("Could not lock adapter context"). llvmpipe's GL runs a
/// submission's kernels inside the submit call, so a test whose graph runs for 20 s there would
/// fail whichever test touched the shared device next. So on GL, tests that use the shared device
/// run one at a time: the first `gpu()` call of a test's thread takes a process-wide lock that
/// the thread holds until it ends (libtest runs each test on its own thread). Threads a test
/// spawns do not call `gpu()`; they use the device their test hands them.
fn one_test_at_a_time_on_gl(dev: &Device) {
    static GATE: Mutex<()> = Mutex::new(());
    thread_local! {
        static HELD: RefCell<Option<MutexGuard<'static, ()>>> = const { RefCell::new(None) };
    }
    if !dev.info().backend.eq_ignore_ascii_case("gl") {
        return;
    }
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        if held.is_none() {
            // A test that failed while holding the gate poisons it; the next one may still run.
            *held = Some(GATE.lock().unwrap_or_else(|e| e.into_inner()));
        }
    });
}

pub fn random(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| lo + (hi - lo) * rng.next_f32()).collect()
}

/// max over i of |got − want| / (atol + rtol·|want|); ≤ 1 means within tolerance.
pub fn rel_err(got: &[f32], want: &[f32], atol: f32, rtol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    got.iter()
        .zip(want)
        .map(|(&a, &b)| {
            if a.is_nan() && b.is_nan() {
                0.0
            } else {
                (a - b).abs() / (atol + rtol * b.abs())
            }
        })
        .fold(0.0, f32::max)
}

pub fn assert_close(got: &[f32], want: &[f32], atol: f32, rtol: f32, what: &str) {
    let e = rel_err(got, want, atol, rtol);
    let max_abs = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(
        e <= 1.0,
        "{what}: max scaled error {e} (max abs diff {max_abs}, atol {atol}, rtol {rtol})"
    );
}

/// A test case: an op built on inputs of the given shapes.
pub type Build = dyn Fn(&mut Graph, &[NodeId]) -> Result<NodeId>;

/// Everything one device computed for a case: output value and the gradient of each input.
#[derive(Debug)]
pub struct Outcome {
    pub value: Vec<f32>,
    pub grads: Vec<Vec<f32>>,
}

/// Builds inputs (with gradients) of `shapes` filled from `data`, applies `build`, forms the
/// scalar loss Σ out ⊙ r with a fixed random r (so the upstream gradient is not all ones),
/// runs backward and reads everything back.
pub fn run_case(
    device: &Device,
    shapes: &[Vec<usize>],
    data: &[Vec<f32>],
    r: &[f32],
    build: &Build,
) -> Result<Outcome> {
    let mut g = Graph::new(device);
    let mut ins = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        let id = g.input_with_grad(&format!("in{i}"), s)?;
        g.write(id, &data[i])?;
        ins.push(id);
    }
    let out = build(&mut g, &ins)?;
    let loss = weighted_sum(&mut g, out, r)?;
    g.backward(loss)?;
    let value = g.value(out)?;
    let grads = ins.iter().map(|&i| g.grad(i)).collect::<Result<Vec<_>>>()?;
    Ok(Outcome { value, grads })
}

/// Σ out ⊙ r over all elements (r written into a fresh input of out's shape).
pub fn weighted_sum(g: &mut Graph, out: NodeId, r: &[f32]) -> Result<NodeId> {
    let shape = g.shape(out)?;
    let rn = g.input("r", &shape)?;
    g.write(rn, r)?;
    let prod = g.mul(out, rn)?;
    g.sum(prod)
}

/// Random data for each shape in [lo, hi), plus the weights r for the output.
pub fn case_data(seed: u64, shapes: &[Vec<usize>], out_len: usize, lo: f32, hi: f32) -> (Vec<Vec<f32>>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let data = shapes
        .iter()
        .map(|s| random(&mut rng, s.iter().product(), lo, hi))
        .collect();
    let r = random(&mut rng, out_len, -1.0, 1.0);
    (data, r)
}

/// Output length of `build` on `shapes`, found by building it on the CPU.
pub fn out_len(shapes: &[Vec<usize>], build: &Build) -> usize {
    let mut g = Graph::new(&Device::cpu());
    let ins: Vec<NodeId> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| g.input(&format!("in{i}"), s).unwrap())
        .collect();
    let out = build(&mut g, &ins).unwrap();
    g.shape(out).unwrap().iter().product()
}

/// One op under test: input shapes, how to build it, and the input range.
pub struct Case {
    pub name: String,
    pub shapes: Vec<Vec<usize>>,
    pub build: Box<Build>,
    pub lo: f32,
    pub hi: f32,
}

fn case(
    name: String,
    shapes: Vec<Vec<usize>>,
    lo: f32,
    hi: f32,
    build: impl Fn(&mut Graph, &[NodeId]) -> Result<NodeId> + 'static,
) -> Case {
    Case {
        name,
        shapes,
        build: Box::new(build),
        lo,
        hi,
    }
}

/// Every op of the engine at one size: matmul m×k·k×n; elementwise and reductions on m×n.
pub fn op_cases(m: usize, k: usize, n: usize) -> Vec<Case> {
    use wgrad::{BinaryOp, UnaryOp};
    let tag = |s: &str| format!("{s} @ {m}x{k}x{n}");
    let mut v = vec![
        case(tag("matmul"), vec![vec![m, k], vec![k, n]], -1.0, 1.0, |g, i| {
            g.matmul(i[0], i[1])
        }),
        case(tag("bias_add"), vec![vec![m, n], vec![n]], -1.0, 1.0, |g, i| {
            g.bias_add(i[0], i[1])
        }),
        case(
            tag("sigmoid(matmul+bias)"),
            vec![vec![m, k], vec![k, n], vec![n]],
            -1.0,
            1.0,
            |g, i| {
                let z = g.matmul(i[0], i[1])?;
                let z = g.bias_add(z, i[2])?;
                g.sigmoid(z)
            },
        ),
        case(tag("transpose"), vec![vec![m, n]], -1.0, 1.0, |g, i| g.transpose(i[0])),
        case(tag("reshape"), vec![vec![m, n]], -1.0, 1.0, move |g, i| {
            g.reshape(i[0], &[n, m])
        }),
        case(tag("softmax"), vec![vec![m, n]], -3.0, 3.0, |g, i| g.softmax(i[0])),
        case(tag("mse"), vec![vec![m, n], vec![m, n]], -1.0, 1.0, |g, i| {
            g.mse(i[0], i[1])
        }),
        case(tag("sum"), vec![vec![m, n]], -1.0, 1.0, |g, i| g.sum(i[0])),
        case(tag("mean"), vec![vec![m, n]], -1.0, 1.0, |g, i| g.mean(i[0])),
        case(tag("max of all"), vec![vec![m, n]], -1.0, 1.0, |g, i| {
            g.reduce(wgrad::ReduceOp::Max, i[0], None, false)
        }),
        case(tag("detach+x"), vec![vec![m, n]], -1.0, 1.0, |g, i| {
            let d = g.detach(i[0])?;
            let sq = g.mul(d, i[0])?;
            g.add(sq, i[0])
        }),
    ];
    for op in UnaryOp::all(-1.7) {
        // Ops undefined at -1 (log, sqrt, rsqrt) get positive inputs.
        let (lo, hi) = if op.value(-1.0f64).is_nan() {
            (0.1, 3.0)
        } else {
            (-2.0, 2.0)
        };
        v.push(case(tag(op.name()), vec![vec![m, n]], lo, hi, move |g, i| {
            g.unary(op, i[0])
        }));
    }
    for op in BinaryOp::ALL {
        // Divisors stay away from 0 so finite differences are meaningful.
        let (lo, hi) = if op == BinaryOp::Div { (0.5, 2.0) } else { (-1.0, 1.0) };
        v.push(case(
            tag(&format!("{} same", op.name())),
            vec![vec![m, n], vec![m, n]],
            lo,
            hi,
            move |g, i| g.binary(op, i[0], i[1]),
        ));
        v.push(case(
            tag(&format!("{} row-broadcast", op.name())),
            vec![vec![m, n], vec![n]],
            lo,
            hi,
            move |g, i| g.binary(op, i[0], i[1]),
        ));
        v.push(case(
            tag(&format!("{} outer-broadcast", op.name())),
            vec![vec![m, 1], vec![1, n]],
            lo,
            hi,
            move |g, i| g.binary(op, i[0], i[1]),
        ));
        v.push(case(
            tag(&format!("{} rank-3", op.name())),
            vec![vec![2, m, n], vec![m, 1]],
            lo,
            hi,
            move |g, i| g.binary(op, i[0], i[1]),
        ));
    }
    for axis in 0..2 {
        for keep in [false, true] {
            for op in wgrad::ReduceOp::ALL {
                let name = tag(&format!("{}_axis{axis} keep={keep}", op.name()));
                v.push(case(name, vec![vec![m, n]], -1.0, 1.0, move |g, i| {
                    g.reduce(op, i[0], Some(axis), keep)
                }));
            }
        }
    }
    // Layout ops: strided copies and their scatter VJPs.
    // (Rank-3 inputs use a middle extent of 3, not k: m·k·n is too large at the largest sizes.)
    v.push(case(tag("permute 2,0,1"), vec![vec![m, 3, n]], -1.0, 1.0, |g, i| {
        g.permute(i[0], &[2, 0, 1])
    }));
    v.push(case(
        tag("transpose_axes 0,3"),
        vec![vec![m, 2, 3, n]],
        -1.0,
        1.0,
        |g, i| g.transpose_axes(i[0], 0, 3),
    ));
    v.push(case(tag("narrow axis 1"), vec![vec![m, n]], -1.0, 1.0, move |g, i| {
        g.narrow(i[0], 1, n / 2, n - n / 2)
    }));
    v.push(case(
        tag("narrow axis 0 of rank 3"),
        vec![vec![m, 3, n]],
        -1.0,
        1.0,
        move |g, i| g.narrow(i[0], 0, m / 3, m - m / 3),
    ));
    v.push(case(
        tag("concat axis 1"),
        vec![vec![m, k], vec![m, n]],
        -1.0,
        1.0,
        |g, i| g.concat(&[i[0], i[1]], 1),
    ));
    v.push(case(
        tag("concat axis 0 of three"),
        vec![vec![m, n], vec![k, n], vec![1, n]],
        -1.0,
        1.0,
        |g, i| g.concat(&[i[0], i[1], i[2]], 0),
    ));
    v.push(case(
        tag("concat x with itself"),
        vec![vec![m, n]],
        -1.0,
        1.0,
        |g, i| g.concat(&[i[0], i[0]], 0),
    ));
    v.push(case(tag("expand rows"), vec![vec![1, n]], -1.0, 1.0, move |g, i| {
        g.expand(i[0], &[m, n])
    }));
    v.push(case(
        tag("expand to rank 3"),
        vec![vec![m, 1]],
        -1.0,
        1.0,
        move |g, i| g.expand(i[0], &[2, m, n]),
    ));
    // Batched matmul (PyTorch's rules): equal, broadcast and 4-D batches, vector operands.
    let batched: [(&str, Vec<usize>, Vec<usize>); 9] = [
        ("matmul batch 2", vec![2, m, k], vec![2, k, n]),
        // Two batch dimensions in one dispatch (attention's [batch, heads, ...] products).
        ("matmul batch 2x3", vec![2, 3, m, k], vec![2, 3, k, n]),
        ("matmul batch A shared by 2x3", vec![m, k], vec![2, 3, k, n]),
        ("matmul batch B shared", vec![2, m, k], vec![k, n]),
        ("matmul batch A shared", vec![m, k], vec![3, k, n]),
        ("matmul batch 2x1 by 1x3", vec![2, 1, m, k], vec![1, 3, k, n]),
        ("matmul vector by batch", vec![k], vec![2, k, n]),
        ("matmul matrix by vector", vec![m, k], vec![k]),
        ("matmul dot", vec![k], vec![k]),
    ];
    for (name, a, b) in batched {
        v.push(case(tag(name), vec![a, b], -1.0, 1.0, |g, i| g.matmul(i[0], i[1])));
    }
    // Masks from comparisons of two random inputs (about half set), broadcast over rows.
    v.push(case(
        tag("masked_fill"),
        vec![vec![m, n], vec![1, n], vec![1, n]],
        -1.0,
        1.0,
        |g, i| {
            let mask = g.gt(i[1], i[2])?;
            let f = g.masked_fill(i[0], mask, -3.0)?;
            // The mask's inputs also reach the result directly, so every input has a gradient.
            let f = g.add(f, i[1])?;
            g.add(f, i[2])
        },
    ));
    v.push(case(
        tag("where_mask"),
        vec![vec![m, 1], vec![m, 1], vec![m, n], vec![m, n]],
        -1.0,
        1.0,
        |g, i| {
            let cond = g.lt(i[0], i[1])?;
            let w = g.where_mask(cond, i[2], i[3])?;
            let w = g.add(w, i[0])?;
            g.add(w, i[1])
        },
    ));
    // Convolution and pooling (im2col, then a matmul or a reduction), images m × n up to
    // 131 × 131 (larger images make the weight gradient a sum of over 10^5 terms, past what an
    // f32 reference can be compared at these tolerances; tests/conv.rs goes larger in f64).
    let (m, n) = (m.min(131), n.min(131));
    v.push(case(
        tag("conv2d 3x3 pad 1 + bias"),
        vec![vec![1, 2, m, n], vec![3, 2, 3, 3], vec![3]],
        -1.0,
        1.0,
        |g, i| g.conv2d(i[0], i[1], Some(i[2]), wgrad::Conv2dOptions::default().padding(1)),
    ));
    v.push(case(
        tag("conv2d stride 2 dilation 2 groups 2"),
        vec![vec![2, 4, m, n], vec![4, 2, 3, 2]],
        -1.0,
        1.0,
        |g, i| {
            let o = wgrad::Conv2dOptions::default()
                .stride(2)
                .padding(2)
                .dilation(2)
                .groups(2);
            g.conv2d(i[0], i[1], None, o)
        },
    ));
    // The same convolutions as implicit GEMMs (the window matrix read from the image by the
    // matmul kernel; on the CPU, materialised inside the kernel).
    v.push(case(
        tag("conv2d implicit 3x3 pad 1 + bias"),
        vec![vec![1, 2, m, n], vec![3, 2, 3, 3], vec![3]],
        -1.0,
        1.0,
        |g, i| {
            g.set_implicit_conv(Some(true));
            g.conv2d(i[0], i[1], Some(i[2]), wgrad::Conv2dOptions::default().padding(1))
        },
    ));
    v.push(case(
        tag("conv2d implicit stride 2 dilation 2 groups 2"),
        vec![vec![2, 4, m, n], vec![4, 2, 3, 2]],
        -1.0,
        1.0,
        |g, i| {
            g.set_implicit_conv(Some(true));
            let o = wgrad::Conv2dOptions::default()
                .stride(2)
                .padding(2)
                .dilation(2)
                .groups(2);
            g.conv2d(i[0], i[1], None, o)
        },
    ));
    v.push(case(
        tag("max_pool2d 3 stride 2 pad 1"),
        vec![vec![2, 3, m, n]],
        -1.0,
        1.0,
        |g, i| g.max_pool2d(i[0], wgrad::Pool2dOptions::new(3).stride(2).padding(1)),
    ));
    v.push(case(
        tag("avg_pool2d 2 pad 1"),
        vec![vec![2, 3, m, n]],
        -1.0,
        1.0,
        |g, i| g.avg_pool2d(i[0], wgrad::Pool2dOptions::new(2).padding(1)),
    ));
    // Composite ops (built from the ones above).
    v.push(case(
        tag("layer_norm"),
        vec![vec![m, n], vec![n], vec![n]],
        -1.0,
        1.0,
        |g, i| g.layer_norm(i[0], Some(i[1]), Some(i[2]), 1e-5),
    ));
    for axis in 0..2 {
        v.push(case(
            tag(&format!("log_softmax axis {axis}")),
            vec![vec![m, n]],
            -3.0,
            3.0,
            move |g, i| g.log_softmax(i[0], axis),
        ));
    }
    v.push(case(tag("softmax_axis 0"), vec![vec![m, n]], -3.0, 3.0, |g, i| {
        g.softmax_axis(i[0], 0)
    }));
    v
}

/// Softmax cross-entropy on logits m×n with random labels; returns (loss, d_logits).
pub fn xent_case(device: &Device, m: usize, n: usize, seed: u64, scale: f32) -> Result<(f64, Vec<f64>)> {
    let mut rng = Rng::new(seed);
    let logits: Vec<f64> = (0..m * n)
        .map(|_| (rng.next_f64() * 2.0 - 1.0) * scale as f64)
        .collect();
    let labels: Vec<u32> = (0..m).map(|_| rng.below(n) as u32).collect();
    let mut g = Graph::new(device);
    let x = g.input_with_grad("logits", &[m, n])?;
    let y = g.input("labels", &[m])?;
    let loss = g.softmax_cross_entropy(x, y)?;
    g.write_f64(x, &logits)?;
    g.write_labels(y, &labels)?;
    g.backward(loss)?;
    Ok((g.value_f64(loss)?[0], g.grad_f64(x)?))
}

/// The CPU backend and, when an adapter exists, the GPU.
pub fn devices() -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(gpu());
    v
}
