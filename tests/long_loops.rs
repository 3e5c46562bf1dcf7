//! Sizes where loop limits bite. Mesa's llvmpipe 22.x stops any shader loop after 65,535
//! iterations without an error, so a kernel that loops over a whole inner dimension or axis in
//! one invocation returned 4 × 65,535 = 262,140 for an all-ones matmul with k = 300,000, and
//! 0.0078 for the mean squared error of ones against zeros over 4096 × 4096. The kernels now
//! split long loops into bounded dispatches; these tests check every such kernel just past the
//! sizes that broke it, against exact answers (all-ones data) and against the f64 CPU backend
//! (random data), on the GPU (every matmul kernel family) and on the f32 CPU backend.

mod common;

use common::{gpu, random};
use wgrad::data::Rng;
use wgrad::{Device, GpuOptions, Graph, MatmulKernel};

/// The f32 CPU backend and, where there is an adapter, the GPU with every matmul family.
fn matmul_devices() -> Vec<(String, Device)> {
    let mut v = vec![("cpu".to_string(), Device::cpu())];
    if gpu().is_some() {
        for k in [
            MatmulKernel::Auto,
            MatmulKernel::Register,
            MatmulKernel::Tiled,
            MatmulKernel::Naive,
        ] {
            let d = Device::gpu_with(&GpuOptions {
                matmul: k,
                ..Default::default()
            })
            .expect("the adapter opened once opens again");
            v.push((format!("gpu {k:?}"), d));
        }
    }
    v
}

/// The f32 CPU backend and the GPU (default options), as `common::devices` but named.
fn devices() -> Vec<(String, Device)> {
    let mut v = vec![("cpu".to_string(), Device::cpu())];
    if let Some(g) = gpu() {
        v.push(("gpu".to_string(), g));
    }
    v
}

/// C = A·B with all-ones operands: every entry is exactly k; dB = Aᵀ·1 (through the loss
/// sum(C)) is exactly m per entry and dA exactly n.
#[test]
fn matmul_with_a_long_inner_dimension_is_exact() {
    for (name, dev) in matmul_devices() {
        for &(m, k, n) in &[(8, 300_000, 8), (3, 300_000, 5), (8, 524_288, 8)] {
            let mut g = Graph::new(&dev);
            let a = g.input_with_grad("A", &[m, k]).unwrap();
            let b = g.input_with_grad("B", &[k, n]).unwrap();
            let c = g.matmul(a, b).unwrap();
            let loss = g.sum(c).unwrap();
            g.write(a, &vec![1.0; m * k]).unwrap();
            g.write(b, &vec![1.0; k * n]).unwrap();
            g.backward(loss).unwrap();
            let cv = g.value(c).unwrap();
            assert!(
                cv.iter().all(|&v| v == k as f32),
                "{name}: [{m},{k}]×[{k},{n}] of ones gave {:?}…, want {k}",
                &cv[..cv.len().min(4)]
            );
            let da = g.grad(a).unwrap();
            assert!(
                da.iter().all(|&v| v == n as f32),
                "{name}: dA of {m}×{k}×{n} is not {n}"
            );
            let db = g.grad(b).unwrap();
            assert!(
                db.iter().all(|&v| v == m as f32),
                "{name}: dB of {m}×{k}×{n} is not {m}"
            );
        }
    }
}

/// dB = Aᵀ·G sums over the batch: with 300,000 rows its inner dimension is the batch.
#[test]
fn weight_gradient_over_a_long_batch_is_exact() {
    let (rows, fin, fout) = (300_000, 8, 4);
    for (name, dev) in matmul_devices() {
        let mut g = Graph::new(&dev);
        let x = g.input("X", &[rows, fin]).unwrap();
        let w = g.input_with_grad("W", &[fin, fout]).unwrap();
        let y = g.matmul(x, w).unwrap();
        let loss = g.sum(y).unwrap();
        g.write(x, &vec![1.0; rows * fin]).unwrap();
        g.write(w, &vec![0.5; fin * fout]).unwrap();
        g.backward(loss).unwrap();
        let dw = g.grad(w).unwrap();
        assert!(
            dw.iter().all(|&v| v == rows as f32),
            "{name}: dW over a batch of {rows} gave {:?}…, want {rows}",
            &dw[..4]
        );
    }
}

/// Random operands with a long k against the f64 CPU backend.
#[test]
fn matmul_with_a_long_inner_dimension_matches_f64() {
    let (m, k, n) = (5, 200_003, 6);
    let mut rng = Rng::new(7);
    let av = random(&mut rng, m * k, -1.0, 1.0);
    let bv = random(&mut rng, k * n, -1.0, 1.0);
    let run = |dev: &Device| {
        let mut g = Graph::new(dev);
        let a = g.input("A", &[m, k]).unwrap();
        let b = g.input("B", &[k, n]).unwrap();
        let c = g.matmul(a, b).unwrap();
        g.write(a, &av).unwrap();
        g.write(b, &bv).unwrap();
        g.forward().unwrap();
        g.value_f64(c).unwrap()
    };
    let want = run(&Device::cpu_f64());
    let scale = want.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    for (name, dev) in matmul_devices() {
        let got = run(&dev);
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
        // f32 dot products of length k: error ~ √k·ε of the largest entry.
        assert!(
            err < 1e-4,
            "{name}: {m}×{k}×{n} max error {err:.2e} relative to the largest entry"
        );
    }
}

/// sum and mean of 2·ones over more than 2^24 elements (each of 256 threads of the old
/// reduction looped more than 65,535 times): exact, since every partial sum is an integer
/// below 2^24.
#[test]
fn sum_and_mean_over_long_axes_are_exact() {
    let n = (1 << 24) + 5;
    for (name, dev) in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input_with_grad("x", &[n]).unwrap();
        let s = g.sum(x).unwrap();
        let m = g.mean(x).unwrap();
        g.write(x, &vec![2.0; n]).unwrap();
        g.forward().unwrap();
        assert_eq!(g.scalar(s).unwrap(), 2.0 * n as f32, "{name}: sum of {n} twos");
        assert_eq!(g.scalar(m).unwrap(), 2.0, "{name}: mean of {n} twos");
        g.backward(m).unwrap();
        let dx = g.grad(x).unwrap();
        let want = 1.0 / n as f32;
        assert!(dx.iter().all(|&v| v == want), "{name}: d mean / dx is not 1/{n}");
    }
}

/// max over an axis longer than 256 × 65,535 (each thread of the old kernel looped more than
/// 65,535 times): slices merge, and the first occurrence of the maximum wins.
#[test]
fn max_over_a_long_axis_finds_the_first_maximum() {
    let n = (1 << 24) + (1 << 22) + 7;
    let mut xv = vec![0.5f32; n];
    xv[n - 3] = 4.0; // in the last slice
    xv[n / 2] = 4.0; // an earlier slice: this one is the argmax
    xv[17] = 3.0;
    for (name, dev) in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input_with_grad("x", &[1, n]).unwrap();
        let mx = g.max_axis(x, 1, false).unwrap();
        let loss = g.sum(mx).unwrap();
        g.write(x, &xv).unwrap();
        g.backward(loss).unwrap();
        assert_eq!(g.value(mx).unwrap(), vec![4.0], "{name}: max");
        let dx = g.grad(x).unwrap();
        let hits: Vec<usize> = dx
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0.0)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(hits, vec![n / 2], "{name}: the gradient goes to the first maximum");
    }
}

/// mse of ones against zeros over 4096 × 4096 is exactly 1; its gradient exactly 2/len.
#[test]
fn mse_over_sixteen_million_elements_is_exact() {
    let len = 4096 * 4096;
    for (name, dev) in devices() {
        let mut g = Graph::new(&dev);
        let p = g.input_with_grad("p", &[4096, 4096]).unwrap();
        let t = g.input("t", &[4096, 4096]).unwrap();
        let loss = g.mse(p, t).unwrap();
        g.write(p, &vec![1.0; len]).unwrap();
        g.write(t, &vec![0.0; len]).unwrap();
        g.backward(loss).unwrap();
        assert_eq!(g.scalar(loss).unwrap(), 1.0, "{name}: mse of ones against zeros");
        let dp = g.grad(p).unwrap();
        let want = 2.0 / len as f32;
        assert!(dp.iter().all(|&v| v == want), "{name}: d mse / dp is not 2/{len}");
    }
}

/// Sum, mean and mse of random data over the longest vector the device binds (2^26 elements on
/// the CPU, up to 2^25 on the software adapter, whose storage bindings stop at 128 MiB): within
/// 1e-6 relative of the exact (f64) result.
#[test]
fn long_reductions_are_accurate() {
    for (name, dev) in devices() {
        let max_len = match &dev {
            Device::Gpu(g) => (g.limits().max_storage_buffer_binding_size / 4) as usize,
            _ => usize::MAX,
        };
        let n = (1usize << 26).min(max_len);
        let mut rng = Rng::new(3);
        let xv = random(&mut rng, n, 0.0, 1.0);
        let tv = random(&mut rng, n, 0.0, 1.0);
        let sum: f64 = xv.iter().map(|&v| v as f64).sum();
        let mse: f64 = xv
            .iter()
            .zip(&tv)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum::<f64>()
            / n as f64;
        let mut g = Graph::new(&dev);
        let x = g.input("x", &[n]).unwrap();
        let t = g.input("t", &[n]).unwrap();
        let s = g.sum(x).unwrap();
        let m = g.mean(x).unwrap();
        let e = g.mse(x, t).unwrap();
        g.write(x, &xv).unwrap();
        g.write(t, &tv).unwrap();
        g.forward().unwrap();
        for (what, got, want) in [
            ("sum", g.scalar(s).unwrap() as f64, sum),
            ("mean", g.scalar(m).unwrap() as f64, sum / n as f64),
            ("mse", g.scalar(e).unwrap() as f64, mse),
        ] {
            let rel = (got - want).abs() / want.abs();
            assert!(
                rel <= 1e-6,
                "{name}: {what} over {n} elements: relative error {rel:.2e} (got {got}, exact {want})"
            );
        }
    }
}

/// The fused layer's bias gradient sums over the batch (rows / 4 iterations per invocation in
/// one dispatch before); the broadcast add's gradient likewise.
#[test]
fn column_sums_over_a_long_batch_match_f64() {
    let (rows, fin, fout) = (300_000, 4, 3);
    let mut rng = Rng::new(11);
    let xv = random(&mut rng, rows * fin, -1.0, 1.0);
    let wv = random(&mut rng, fin * fout, -1.0, 1.0);
    let bv = random(&mut rng, fout, -1.0, 1.0);
    let run = |dev: &Device| {
        let mut g = Graph::new(dev);
        let x = g.input("X", &[rows, fin]).unwrap();
        let w = g.parameter("W", &[fin, fout], &wv).unwrap();
        let b = g.parameter("b", &[fout], &bv).unwrap();
        let c = g.parameter("c", &[fout], &bv).unwrap();
        let xw = g.matmul(x, w).unwrap();
        let z = g.bias_add(xw, b).unwrap();
        let h = g.sigmoid(z).unwrap();
        let h2 = g.add(h, c).unwrap(); // broadcast [rows, fout] + [fout]
        let loss = g.sum(h2).unwrap();
        g.write(x, &xv).unwrap();
        g.backward(loss).unwrap();
        [g.grad_f64(b).unwrap(), g.grad_f64(c).unwrap(), g.grad_f64(w).unwrap()]
    };
    let want = run(&Device::cpu_f64());
    for (name, dev) in devices() {
        let got = run(&dev);
        for (i, what) in ["d bias (fused layer)", "d c (broadcast add)", "d W"]
            .iter()
            .enumerate()
        {
            for (a, b) in got[i].iter().zip(&want[i]) {
                let rel = (a - b).abs() / b.abs().max(1.0);
                assert!(rel < 1e-5, "{name}: {what}: got {a}, f64 {b} (relative {rel:.2e})");
            }
        }
    }
}

/// Softmax rows too long for the workgroup-per-row kernel are refused on the GPU with the
/// limit named, not computed wrong; the CPU backend computes them.
#[test]
fn overlong_softmax_rows_are_refused_on_the_gpu() {
    let cols = 1_500_000;
    let Some(dev) = gpu() else { return };
    let mut g = Graph::new(&dev);
    let x = g.input("x", &[1, cols]).unwrap();
    let y = g.softmax(x).unwrap();
    g.write(x, &vec![0.0; cols]).unwrap();
    let err = g.forward().expect_err("a softmax row of 1.5M columns must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains("softmax") && msg.contains("1500000"),
        "unhelpful error: {msg}"
    );
    // The graph stays usable: the CPU backend computes the same graph.
    let mut c = Graph::new(&Device::cpu());
    let xc = c.input("x", &[1, cols]).unwrap();
    let yc = c.softmax(xc).unwrap();
    c.write(xc, &vec![0.0; cols]).unwrap();
    c.forward().unwrap();
    let v = c.value(yc).unwrap();
    assert!((v[0] - 1.0 / cols as f32).abs() < 1e-12);
    let _ = y;
}

/// Layer norm over rows as long as the row-wise kernel takes (256·LOOP_BUDGET/3 columns: three
/// passes of cols/256 iterations per invocation) runs that kernel; one column more is composed
/// from reductions, whose kernels split long axes. Both agree with the CPU backend, value and
/// gradient.
#[test]
fn layer_norm_rows_at_the_row_kernel_limit_and_past_it() {
    let Some(dev) = gpu() else { return };
    let limit = 256 * 16384 / 3;
    for cols in [limit, limit + 1] {
        let x: Vec<f32> = (0..2 * cols).map(|i| (i as f32 * 0.001).sin() * 2.0 + 0.5).collect();
        let r: Vec<f32> = (0..2 * cols).map(|i| ((i * 7919) % 101) as f32 / 101.0 - 0.5).collect();
        let run = |d: &Device| {
            let mut g = Graph::new(d);
            let xn = g.parameter("x", &[2, cols], &x).unwrap();
            let y = g.layer_norm(xn, None, None, 1e-5).unwrap();
            let l = common::weighted_sum(&mut g, y, &r).unwrap();
            g.backward(l).unwrap();
            (g.value(y).unwrap(), g.grad(xn).unwrap())
        };
        let (yg, dg) = run(&dev);
        let (yc, dc) = run(&Device::cpu());
        let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
        let (ey, ed) = (worst(&yg, &yc), worst(&dg, &dc));
        assert!(ey < 1e-3, "{cols} columns: value differs by {ey}");
        let scale = dc.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            ed < 1e-3 * scale.max(1e-3),
            "{cols} columns: gradient differs by {ed} (largest {scale})"
        );
    }
}
