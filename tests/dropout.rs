//! Dropout: the same mask bit for bit on every device, the expected fraction kept and scale, a new
//! mask every forward pass and the same sequence for the same seed, a gradient through the mask
//! the values were computed with (finite differences with the mask held), bad probabilities
//! refused.

mod common;

use common::{devices, gpu, random};
use wgrad::data::Rng;
use wgrad::{Device, Graph, NodeId};

/// (y, d_x) of sum(dropout(x, p) ⊙ r) after `draws` forward passes with `seed`.
fn run(dev: &Device, x: &[f32], r: &[f32], p: f32, seed: u64, draws: usize) -> (Vec<f32>, Vec<f32>) {
    let n = x.len();
    let mut g = Graph::new(dev);
    let xn = g.input_with_grad("x", &[n]).unwrap();
    let y = g.dropout(xn, p).unwrap();
    let rn = g.input("r", &[n]).unwrap();
    let prod = g.mul(y, rn).unwrap();
    let loss = g.sum(prod).unwrap();
    g.set_seed(seed).unwrap();
    g.write(xn, x).unwrap();
    g.write(rn, r).unwrap();
    for _ in 1..draws {
        g.forward().unwrap();
    }
    g.backward(loss).unwrap();
    (g.value(y).unwrap(), g.grad(xn).unwrap())
}

#[test]
fn the_gpu_draws_the_cpu_mask_bit_for_bit() {
    let Some(gpu) = gpu() else { return };
    // Up to 2^24 + 5 elements: past 65,535 workgroups of 256 (a two-dimensional grid).
    for (i, &n) in [1usize, 3, 17, 33, 257, 100_003, (1 << 24) + 5].iter().enumerate() {
        let mut rng = Rng::new(i as u64);
        let x = random(&mut rng, n, -1.0, 1.0);
        let r = random(&mut rng, n, -1.0, 1.0);
        for p in [0.1, 0.5] {
            let cpu = run(&Device::cpu(), &x, &r, p, 42, 2);
            let gpu = run(&gpu, &x, &r, p, 42, 2);
            let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(u, v)| u.to_bits() == v.to_bits());
            assert!(same(&cpu.0, &gpu.0), "values differ at n = {n}, p = {p}");
            assert!(same(&cpu.1, &gpu.1), "gradients differ at n = {n}, p = {p}");
        }
    }
}

#[test]
fn the_kept_fraction_and_the_scale_are_right() {
    for dev in devices() {
        let n = 200_000;
        let x = vec![1.0f32; n];
        let r = vec![1.0f32; n];
        for p in [0.0f32, 0.1, 0.5, 0.9, 1.0] {
            let (y, dx) = run(&dev, &x, &r, p, 7, 1);
            let kept = y.iter().filter(|&&v| v != 0.0).count();
            let frac = kept as f64 / n as f64;
            // Binomial: 6 standard deviations.
            let sd = ((p as f64) * (1.0 - p as f64) / n as f64).sqrt();
            assert!(
                (frac - (1.0 - p as f64)).abs() <= 6.0 * sd + 1e-12,
                "{}: p = {p}: kept {frac}",
                dev.info()
            );
            if p < 1.0 {
                let scale = 1.0 / (1.0 - p);
                assert!(y.iter().all(|&v| v == 0.0 || v == scale), "{}: p = {p}", dev.info());
            }
            // d_x = r ⊙ mask: equal to y here (x = r = 1).
            assert_eq!(dx, y, "{}: p = {p}", dev.info());
        }
    }
}

#[test]
fn each_forward_draws_anew_and_a_seed_repeats_the_sequence() {
    for dev in devices() {
        let n = 1000;
        let mut g = Graph::new(&dev);
        let x = g.input("x", &[n]).unwrap();
        let a = g.dropout(x, 0.5).unwrap();
        let b = g.dropout(x, 0.5).unwrap();
        g.write(x, &vec![1.0; n]).unwrap();
        let draws = |g: &mut Graph, k: usize| -> Vec<(Vec<f32>, Vec<f32>)> {
            (0..k)
                .map(|_| {
                    g.forward().unwrap();
                    (g.value(a).unwrap(), g.value(b).unwrap())
                })
                .collect()
        };
        g.set_seed(11).unwrap();
        let first = draws(&mut g, 3);
        g.set_seed(11).unwrap();
        assert_eq!(draws(&mut g, 3), first, "{}: a seed must repeat its masks", dev.info());
        g.set_seed(12).unwrap();
        assert_ne!(
            draws(&mut g, 1)[0],
            first[0],
            "{}: another seed, the same mask",
            dev.info()
        );
        assert_ne!(first[0], first[1], "{}: a second pass reused the mask", dev.info());
        assert_ne!(
            first[0].0,
            first[0].1,
            "{}: two dropout nodes drew the same mask",
            dev.info()
        );
        // Reading a current value draws nothing new.
        let again = g.value(a).unwrap();
        assert_eq!(again, g.value(a).unwrap());
    }
}

#[test]
fn the_gradient_matches_finite_differences_with_the_mask_held() {
    let dev = Device::CpuF64;
    let (m, n) = (3, 17);
    let mut rng = Rng::new(3);
    let x0: Vec<f64> = random(&mut rng, m * n, -1.0, 1.0).into_iter().map(f64::from).collect();
    let w0: Vec<f32> = random(&mut rng, n * 2, -1.0, 1.0);
    let mut g = Graph::new(&dev);
    let x = g.input_with_grad("x", &[m, n]).unwrap();
    let w = g.parameter("w", &[n, 2], &w0).unwrap();
    let d = g.dropout(x, 0.3).unwrap();
    let h = g.matmul(d, w).unwrap();
    let h = g.tanh(h).unwrap();
    let loss = g.sum(h).unwrap();
    // Every evaluation starts from the same seed: one draw, the same mask.
    let eval = |g: &mut Graph, xv: &[f64]| -> f64 {
        g.set_seed(5).unwrap();
        g.write_f64(x, xv).unwrap();
        g.value_f64(loss).unwrap()[0]
    };
    eval(&mut g, &x0);
    g.backward(loss).unwrap();
    let (dx, dw) = (g.grad_f64(x).unwrap(), g.grad_f64(w).unwrap());
    let eps = 1e-6;
    let mut worst: f64 = 0.0;
    for i in 0..m * n {
        let mut xp = x0.clone();
        xp[i] += eps;
        let up = eval(&mut g, &xp);
        xp[i] -= 2.0 * eps;
        let down = eval(&mut g, &xp);
        worst = worst.max(((up - down) / (2.0 * eps) - dx[i]).abs());
    }
    assert!(worst < 1e-7, "d_x: largest |analytic − FD| = {worst:e}");
    // Dropped inputs get no gradient; the weights' gradient is finite and not all zero.
    let y = {
        eval(&mut g, &x0);
        g.value_f64(d).unwrap()
    };
    for (i, v) in y.iter().enumerate() {
        if *v == 0.0 {
            assert_eq!(dx[i], 0.0);
        }
    }
    assert!(dw.iter().all(|v| v.is_finite()) && dw.iter().any(|&v| v != 0.0));
}

#[test]
fn a_training_step_differentiates_the_mask_it_drew() {
    for dev in devices() {
        let n = 64;
        let mut g = Graph::new(&dev);
        let x = g.input("x", &[4, n]).unwrap();
        let w = g.parameter("w", &[n, 1], &vec![0.5; n]).unwrap();
        let d: NodeId = g.dropout(x, 0.5).unwrap();
        let y = g.matmul(d, w).unwrap();
        let loss = g.sum(y).unwrap();
        g.set_optimizer(wgrad::Optimizer::Sgd(wgrad::Sgd::new(0.0))).unwrap();
        g.write(x, &vec![1.0; 4 * n]).unwrap();
        for _ in 0..3 {
            g.train_step(loss).unwrap();
            // d_w[j] = Σ over rows of the dropped-out x: the values of this step's forward.
            let dv = g.value(d).unwrap();
            let dw = g.grad(w).unwrap();
            for j in 0..n {
                let want: f32 = (0..4).map(|r| dv[r * n + j]).sum();
                assert_eq!(dw[j], want, "{}: column {j}", dev.info());
            }
        }
    }
}

#[test]
fn bad_probabilities_are_refused() {
    let mut g = Graph::new(&Device::cpu());
    let x = g.input("x", &[3]).unwrap();
    for p in [-0.1, 1.5, f32::NAN] {
        let e = g.dropout(x, p).unwrap_err().to_string();
        assert!(e.contains("dropout") && e.contains("[0, 1]"), "{e}");
    }
    let y = g.dropout(x, 0.5).unwrap();
    assert_eq!(g.shape(y).unwrap(), [3]);
}
