//! The textbook cases: the scalar chain rule, the vector chain rule (∂y/∂x)ᵀ∇y z, the layer
//! H = σ(XW + B) against hand-derived gradients, and accumulation on fan-out — on every device.

mod common;
use common::*;
use wgrad::{Device, Graph, Sgd};

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn scalar_chain_is_the_product_of_local_derivatives() {
    for dev in devices() {
        for w0 in [-1.3f64, 0.2, 0.9] {
            let mut g = Graph::new(&dev);
            let w = g.parameter("w", &[1], &[w0 as f32]).unwrap();
            let x = g.exp(w).unwrap(); // f1
            let y = g.sigmoid(x).unwrap(); // f2
            let z = g.square(y).unwrap(); // f3
            g.backward(z).unwrap();
            let x_ = ((w0 as f32) as f64).exp();
            let y_ = sig(x_);
            // dz/dw = f3'(y) · f2'(x) · f1'(w)
            let want = (2.0 * y_) * (y_ * (1.0 - y_)) * x_;
            let got = g.grad(w).unwrap()[0] as f64;
            approx::assert_relative_eq!(got, want, epsilon = 1e-6, max_relative = 1e-5);
        }
    }
}

#[test]
fn vector_chain_is_jacobian_transpose_times_gradient() {
    // y = g(x): y1 = x1·x2, y2 = e^x1 + x2;  z = f(y) = y1² + 3·y2.
    for dev in devices() {
        let (x1v, x2v) = (0.7f32, -1.2f32);
        let mut g = Graph::new(&dev);
        let x1 = g.input_with_grad("x1", &[1]).unwrap();
        let x2 = g.input_with_grad("x2", &[1]).unwrap();
        g.write(x1, &[x1v]).unwrap();
        g.write(x2, &[x2v]).unwrap();
        let y1 = g.mul(x1, x2).unwrap();
        let e = g.exp(x1).unwrap();
        let y2 = g.add(e, x2).unwrap();
        let y1s = g.square(y1).unwrap();
        let y2s = g.scale(y2, 3.0).unwrap();
        let z = g.add(y1s, y2s).unwrap();
        g.backward(z).unwrap();
        let (a, b) = (x1v as f64, x2v as f64);
        let y1_ = a * b;
        let grad_y = [2.0 * y1_, 3.0];
        let jac = [[b, a], [a.exp(), 1.0]]; // jac[i][j] = ∂y_i/∂x_j
        let want: Vec<f64> = (0..2).map(|j| (0..2).map(|i| jac[i][j] * grad_y[i]).sum()).collect();
        let got = [g.grad(x1).unwrap()[0] as f64, g.grad(x2).unwrap()[0] as f64];
        for j in 0..2 {
            assert!(
                (got[j] - want[j]).abs() <= 1e-5 + 1e-5 * want[j].abs(),
                "{}: ∇x z[{j}] {} vs {}",
                dev.info(),
                got[j],
                want[j]
            );
        }
    }
}

/// Gradients of L = mse(σ(XW + B), T) derived by hand, in f64.
fn layer_by_hand(x: &[f32], w: &[f32], b: &[f32], t: &[f32], n: usize, d: usize, h: usize) -> [Vec<f64>; 3] {
    let mut hv = vec![0.0f64; n * h];
    for r in 0..n {
        for c in 0..h {
            let z: f64 = (0..d).map(|k| x[r * d + k] as f64 * w[k * h + c] as f64).sum::<f64>() + b[c] as f64;
            hv[r * h + c] = sig(z);
        }
    }
    // dL/dH = 2(H − T)/(n·h); dZ = dH ⊙ H(1 − H); dW = Xᵀ dZ; dB = Σ_rows dZ; dX = dZ Wᵀ
    let dz: Vec<f64> = (0..n * h)
        .map(|i| 2.0 * (hv[i] - t[i] as f64) / (n * h) as f64 * hv[i] * (1.0 - hv[i]))
        .collect();
    let dw = (0..d * h)
        .map(|i| (0..n).map(|r| x[r * d + i / h] as f64 * dz[r * h + i % h]).sum())
        .collect();
    let db = (0..h).map(|c| (0..n).map(|r| dz[r * h + c]).sum()).collect();
    let dx = (0..n * d)
        .map(|i| (0..h).map(|c| dz[(i / d) * h + c] * w[(i % d) * h + c] as f64).sum())
        .collect();
    [dw, db, dx]
}

#[test]
fn layer_gradients_match_hand_derivation() {
    let (n, d, h) = (5, 4, 3);
    let mut rng = wgrad::data::Rng::new(5);
    let x = random(&mut rng, n * d, -1.0, 1.0);
    let w = random(&mut rng, d * h, -1.0, 1.0);
    let b = random(&mut rng, h, -0.5, 0.5);
    let t = random(&mut rng, n * h, 0.0, 1.0);
    let [dw, db, dx] = layer_by_hand(&x, &w, &b, &t, n, d, h);
    let f = |v: &Vec<f64>| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let xi = g.input_with_grad("X", &[n, d]).unwrap();
        let wi = g.parameter("W", &[d, h], &w).unwrap();
        let bi = g.parameter("B", &[h], &b).unwrap();
        let ti = g.input("T", &[n, h]).unwrap();
        let xw = g.matmul(xi, wi).unwrap();
        let z = g.bias_add(xw, bi).unwrap();
        let hh = g.sigmoid(z).unwrap();
        let loss = g.mse(hh, ti).unwrap();
        g.write(xi, &x).unwrap();
        g.write(ti, &t).unwrap();
        g.backward(loss).unwrap();
        let what = dev.info().to_string();
        assert_close(&g.grad(wi).unwrap(), &f(&dw), 1e-6, 1e-4, &format!("{what} dW"));
        assert_close(&g.grad(bi).unwrap(), &f(&db), 1e-6, 1e-4, &format!("{what} dB"));
        assert_close(&g.grad(xi).unwrap(), &f(&dx), 1e-6, 1e-4, &format!("{what} dX"));
        assert!(
            g.grad(ti).is_err(),
            "T does not require a gradient, so none is computed"
        );
    }
}

#[test]
fn fan_out_accumulates_every_path() {
    for dev in devices() {
        let xs = [-1.5f32, 0.0, 0.4, 2.0];
        let mut g = Graph::new(&dev);
        let x = g.input_with_grad("x", &[4]).unwrap();
        g.write(x, &xs).unwrap();
        let f = g.sigmoid(x).unwrap();
        let q = g.square(x).unwrap();
        let xx = g.mul(x, x).unwrap(); // the same node twice in one op
        let s1 = g.add(f, q).unwrap();
        let s = g.add(s1, xx).unwrap();
        let z = g.sum(s).unwrap();
        g.backward(z).unwrap();
        let got = g.grad(x).unwrap();
        for (i, &v) in xs.iter().enumerate() {
            let sv = 1.0 / (1.0 + (-v).exp());
            let want = sv * (1.0 - sv) + 2.0 * v + 2.0 * v;
            assert!(
                (got[i] - want).abs() < 1e-5,
                "{}: x={v}: {} vs {want}",
                dev.info(),
                got[i]
            );
        }
    }
}

#[test]
fn parameter_gradients_accumulate_until_zero_grad() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let w = g.parameter("w", &[2], &[1.0, -2.0]).unwrap();
        let sq = g.square(w).unwrap();
        let z = g.sum(sq).unwrap();
        g.backward(z).unwrap();
        assert_eq!(g.grad(w).unwrap(), vec![2.0, -4.0]);
        g.backward(z).unwrap();
        assert_eq!(g.grad(w).unwrap(), vec![4.0, -8.0], "second backward adds");
        g.zero_grad().unwrap();
        assert_eq!(g.grad(w).unwrap(), vec![0.0, 0.0]);
        g.backward(z).unwrap();
        assert_eq!(g.grad(w).unwrap(), vec![2.0, -4.0]);
    }
}

#[test]
fn rerun_with_new_inputs_gives_new_answers_without_allocating() {
    let (n, d, h) = (6, 5, 4);
    for dev in devices() {
        let mut rng = wgrad::data::Rng::new(9);
        let w = random(&mut rng, d * h, -1.0, 1.0);
        let b = random(&mut rng, h, -0.5, 0.5);
        let mut g = Graph::new(&dev);
        let xi = g.input("X", &[n, d]).unwrap();
        let ti = g.input("T", &[n, h]).unwrap();
        let wi = g.parameter("W", &[d, h], &w).unwrap();
        let bi = g.parameter("B", &[h], &b).unwrap();
        let xw = g.matmul(xi, wi).unwrap();
        let z = g.bias_add(xw, bi).unwrap();
        let hh = g.sigmoid(z).unwrap();
        let loss = g.mse(hh, ti).unwrap();
        let mut before = None;
        for step in 0..5 {
            let x = random(&mut rng, n * d, -1.0, 1.0);
            let t = random(&mut rng, n * h, 0.0, 1.0);
            g.write(xi, &x).unwrap();
            g.write(ti, &t).unwrap();
            g.zero_grad().unwrap();
            let c0 = g.counters();
            g.backward(loss).unwrap();
            let c1 = g.counters();
            assert_eq!(
                c1.submissions,
                c0.submissions + 1,
                "{}: forward + backward is one submission",
                dev.info()
            );
            let [dw, db, _] = layer_by_hand(&x, &w, &b, &t, n, d, h);
            let f = |v: &Vec<f64>| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            assert_close(
                &g.grad(wi).unwrap(),
                &f(&dw),
                1e-6,
                1e-4,
                &format!("{} step {step} dW", dev.info()),
            );
            assert_close(
                &g.grad(bi).unwrap(),
                &f(&db),
                1e-6,
                1e-4,
                &format!("{} step {step} dB", dev.info()),
            );
            let c = g.counters();
            if step == 0 {
                before = Some(c);
            } else {
                let b0 = before.unwrap();
                assert_eq!(
                    c.buffers_created,
                    b0.buffers_created,
                    "{}: no buffer after the first run",
                    dev.info()
                );
                assert_eq!(
                    c.bind_groups_created,
                    b0.bind_groups_created,
                    "{}: bind groups are reused",
                    dev.info()
                );
                assert_eq!(c.live_bytes, b0.live_bytes);
            }
        }
    }
}

#[test]
fn hundred_training_steps_are_one_submission_each_and_allocate_nothing() {
    for dev in devices() {
        let mut rng = wgrad::data::Rng::new(3);
        let mut g = Graph::new(&dev);
        let x = g.input("x", &[32, 16]).unwrap();
        let y = g.input("y", &[32]).unwrap();
        let mlp = wgrad::nn::Mlp::new(&mut g, &[16, 24, 24, 4], wgrad::nn::Activation::Sigmoid, 1).unwrap();
        let logits = mlp.forward(&mut g, x).unwrap();
        let loss = g.softmax_cross_entropy(logits, y).unwrap();
        g.set_optimizer(Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
        })
        .unwrap();
        let xs = random(&mut rng, 32 * 16, -1.0, 1.0);
        let ys: Vec<u32> = (0..32).map(|i| (i % 4) as u32).collect();
        g.write(x, &xs).unwrap();
        g.write_labels(y, &ys).unwrap();
        g.train_step(loss).unwrap();
        let first = g.scalar(loss).unwrap();
        let c0 = g.counters();
        for _ in 0..100 {
            g.write(x, &xs).unwrap();
            g.train_step(loss).unwrap();
        }
        let c1 = g.counters();
        assert_eq!(
            c1.submissions - c0.submissions,
            100,
            "{}: one submission per step",
            dev.info()
        );
        assert_eq!(
            c1.buffers_created,
            c0.buffers_created,
            "{}: no buffer created after step 1",
            dev.info()
        );
        assert_eq!(
            c1.bind_groups_created,
            c0.bind_groups_created,
            "{}: no bind group after step 1",
            dev.info()
        );
        assert_eq!(
            c1.pipelines_compiled,
            c0.pipelines_compiled,
            "{}: no pipeline after step 1",
            dev.info()
        );
        assert_eq!(c1.live_bytes, c0.live_bytes);
        let last = g.scalar(loss).unwrap();
        assert!(
            last < first * 0.8,
            "{}: loss should fall on a fixed batch: {first} -> {last}",
            dev.info()
        );
        eprintln!(
            "{}: 100 steps, loss {first:.4} -> {last:.4}, {} buffers / {} bytes live",
            dev.info(),
            c1.live_buffers,
            c1.live_bytes
        );
    }
}

#[test]
fn fused_layer_backward_matches_the_unfused_kernels() {
    for dev in devices() {
        for act in wgrad::UnaryOp::all(1.0).into_iter().filter(|op| op.fusable()) {
            // Odd shapes (bias-activation fusion) and vec4-aligned ones (the matmul epilogue on
            // the subgroup kernel).
            for (n, d, h) in [(1, 1, 1), (33, 17, 65), (130, 20, 257), (36, 20, 68)] {
                let mut results = Vec::new();
                for fusion in [true, false] {
                    let mut rng = wgrad::data::Rng::new(21);
                    let mut g = Graph::new(&dev);
                    g.set_fusion(fusion);
                    let x = g.input_with_grad("X", &[n, d]).unwrap();
                    let w = g.parameter("W", &[d, h], &random(&mut rng, d * h, -1.0, 1.0)).unwrap();
                    let b = g.parameter("B", &[h], &random(&mut rng, h, -1.0, 1.0)).unwrap();
                    let xw = g.matmul(x, w).unwrap();
                    let z = g.bias_add(xw, b).unwrap();
                    let y = act.apply(&mut g, z).unwrap();
                    let r = g.input("R", &[n, h]).unwrap();
                    let yr = g.mul(y, r).unwrap();
                    let loss = g.sum(yr).unwrap();
                    g.write(x, &random(&mut rng, n * d, -1.0, 1.0)).unwrap();
                    g.write(r, &random(&mut rng, n * h, -1.0, 1.0)).unwrap();
                    g.backward(loss).unwrap();
                    let dispatches = g.counters().dispatches;
                    results.push((
                        [
                            g.grad(x).unwrap(),
                            g.grad(w).unwrap(),
                            g.grad(b).unwrap(),
                            g.grad(z).unwrap(),
                            g.grad(xw).unwrap(),
                            g.value(z).unwrap(),
                            g.value(y).unwrap(),
                            g.value(xw).unwrap(),
                        ],
                        dispatches,
                    ));
                }
                let what = format!("{} {act:?} {n}x{d}x{h}", dev.info());
                for (i, name) in ["dX", "dW", "dB", "dZ", "dXW", "Z", "H", "XW"].iter().enumerate() {
                    assert_close(
                        &results[0].0[i],
                        &results[1].0[i],
                        1e-6,
                        1e-5,
                        &format!("{what} {name}"),
                    );
                }
                // Forward fusion always applies; the backward kernel (six storage buffers) only where
                // the limits allow, so fused graphs dispatch fewer kernels either way.
                assert!(
                    results[0].1 < results[1].1,
                    "{what}: fusion should dispatch fewer kernels"
                );
            }
        }
    }
}

/// The layer H = f(XW + b) as one kernel (the matmul's epilogue writes XW, Z and H) where the
/// backend's matmul kernel for the shape has the epilogue: always on the CPU backend and with the
/// GPU tile kernel, for vec4-aligned shapes with the subgroup kernel. Values match the unfused
/// kernels and, on the GPU, the CPU's; the forward runs two dispatches fewer (bias-add and
/// activation folded in).
#[test]
fn matmul_epilogue_computes_the_whole_layer() {
    let mut devs: Vec<(Device, &str)> = vec![(Device::cpu(), "cpu")];
    if let Some(d) = gpu() {
        devs.push((d, "gpu"));
        let tiled = Device::gpu_with(&wgrad::GpuOptions {
            matmul: wgrad::MatmulKernel::Tiled,
            ..Default::default()
        });
        devs.push((tiled.unwrap(), "gpu-tiled"));
    }
    // The CPU's fused results, case by case, as the reference for the GPU devices.
    let mut reference: Vec<[Vec<f32>; 3]> = Vec::new();
    for (dev, label) in &devs {
        let mut case = 0;
        // The epilogue binds six storage buffers; under smaller limits the layer is not fused.
        let (kernels, six) = match dev {
            Device::Gpu(g) => (g.matmul_kernels(), g.limits().max_storage_buffers_per_shader_stage >= 6),
            _ => ("cpu".into(), true),
        };
        for act in wgrad::UnaryOp::all(1.0).into_iter().filter(|op| op.fusable()) {
            for (n, d, h) in [(1, 1, 1), (36, 20, 68), (33, 17, 65), (130, 132, 260)] {
                // The device says which layer shapes its matmul kernel computes with the epilogue.
                let has = match dev {
                    Device::Gpu(g) => g.has_layer_epilogue(n, d, h),
                    _ => true,
                };
                if *label == "gpu-tiled" && six {
                    assert!(has, "{label}: the tile kernel always has the epilogue");
                }
                let epilogue = six && has;
                let mut out = Vec::new();
                for fusion in [true, false] {
                    let mut rng = wgrad::data::Rng::new(5);
                    let mut g = Graph::new(dev);
                    g.set_fusion(fusion);
                    let x = g.input("X", &[n, d]).unwrap();
                    let w = g.parameter("W", &[d, h], &random(&mut rng, d * h, -1.0, 1.0)).unwrap();
                    let b = g.parameter("B", &[h], &random(&mut rng, h, -1.0, 1.0)).unwrap();
                    let xw = g.matmul(x, w).unwrap();
                    let z = g.bias_add(xw, b).unwrap();
                    let y = act.apply(&mut g, z).unwrap();
                    g.write(x, &random(&mut rng, n * d, -1.0, 1.0)).unwrap();
                    g.forward().unwrap();
                    let values = [g.value(xw).unwrap(), g.value(z).unwrap(), g.value(y).unwrap()];
                    out.push((values, g.counters().dispatches));
                }
                let what = format!("{label} {act:?} {n}x{d}x{h}");
                for (i, name) in ["XW", "Z", "H"].iter().enumerate() {
                    assert_close(&out[0].0[i], &out[1].0[i], 1e-6, 1e-5, &format!("{what} {name}"));
                }
                if *label == "cpu" {
                    reference.push(out[0].0.clone());
                } else {
                    for (i, name) in ["XW", "Z", "H"].iter().enumerate() {
                        let want = &reference[case][i];
                        assert_close(&out[0].0[i], want, 1e-4, 1e-3, &format!("{what} {name} vs CPU"));
                    }
                }
                case += 1;
                let saved = out[1].1 - out[0].1;
                assert_eq!(
                    saved,
                    if epilogue { 2 } else { 1 },
                    "{what}: dispatches saved by fusion ({kernels})"
                );
            }
        }
    }
}

#[test]
fn train_step_starts_from_zero_gradients() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let w = g.parameter("w", &[2], &[1.0, 2.0]).unwrap();
        let v = g.parameter("v", &[2], &[3.0, 4.0]).unwrap();
        let wv = g.square(w).unwrap();
        let lw = g.sum(wv).unwrap();
        let vv = g.square(v).unwrap();
        let lv = g.sum(vv).unwrap();
        g.backward(lv).unwrap(); // leaves d(lv)/dv = 2v in v's gradient
        g.backward(lw).unwrap(); // and d(lw)/dw = 2w in w's
        g.set_optimizer(Sgd::new(0.5)).unwrap();
        // A training step on lw alone: w's gradient is exactly 2w (not 2w + 2w from before), and
        // v, which lw does not reach, gets a zero gradient and does not move.
        g.train_step(lw).unwrap();
        assert_eq!(g.grad(w).unwrap(), vec![2.0, 4.0], "{}", dev.info());
        assert_eq!(g.value(w).unwrap(), vec![0.0, 0.0], "{}", dev.info());
        assert_eq!(g.grad(v).unwrap(), vec![0.0, 0.0], "{}", dev.info());
        assert_eq!(g.value(v).unwrap(), vec![3.0, 4.0], "{}", dev.info());
    }
}
