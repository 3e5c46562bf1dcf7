//! Every op's VJP against central finite differences, in f64 on the CPU reference backend.

mod common;
use common::*;
use wgrad::{Device, Graph, NodeId};

/// Analytic gradients (backward in f64) vs (f(x+h) − f(x−h)) / 2h for every input element.
fn check(c: &Case, seed: u64) -> f64 {
    let dev = Device::cpu_f64();
    let n_out = out_len(&c.shapes, &c.build);
    let (data, r) = case_data(seed, &c.shapes, n_out, c.lo, c.hi);
    let mut g = Graph::new(&dev);
    let ins: Vec<NodeId> = c
        .shapes
        .iter()
        .enumerate()
        .map(|(i, s)| g.input_with_grad(&format!("in{i}"), s).unwrap())
        .collect();
    let data64: Vec<Vec<f64>> = data.iter().map(|d| d.iter().map(|&v| v as f64).collect()).collect();
    for (id, d) in ins.iter().zip(&data64) {
        g.write_f64(*id, d).unwrap();
    }
    let out = (c.build)(&mut g, &ins).unwrap();
    let loss = weighted_sum(&mut g, out, &r).unwrap();
    g.backward(loss).unwrap();
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    for (k, id) in ins.iter().enumerate() {
        let analytic = g.grad_f64(*id).unwrap();
        let mut x = data64[k].clone();
        for e in 0..x.len() {
            let orig = x[e];
            x[e] = orig + h;
            g.write_f64(*id, &x).unwrap();
            let up = g.value_f64(loss).unwrap()[0];
            x[e] = orig - h;
            g.write_f64(*id, &x).unwrap();
            let down = g.value_f64(loss).unwrap()[0];
            x[e] = orig;
            let fd = (up - down) / (2.0 * h);
            let err = (analytic[e] - fd).abs() / (1e-6 + 1e-5 * fd.abs());
            assert!(
                err <= 1.0,
                "{}: input {k} element {e}: analytic {} vs finite difference {fd}",
                c.name,
                analytic[e]
            );
            worst = worst.max((analytic[e] - fd).abs());
        }
        g.write_f64(*id, &x).unwrap();
    }
    worst
}

#[test]
fn every_op_matches_finite_differences() {
    let mut worst: f64 = 0.0;
    let mut count = 0;
    // The largest error of each case over the three sizes (printed with --nocapture).
    let mut per_case = std::collections::BTreeMap::<String, f64>::new();
    for (m, k, n) in [(1, 1, 1), (3, 4, 5), (2, 7, 3)] {
        for (i, c) in op_cases(m, k, n).iter().enumerate() {
            // detach deliberately differs from the function finite differences see; tested below.
            if c.name.starts_with("detach") {
                continue;
            }
            let err = check(c, 1000 + i as u64);
            let case = c.name.split(" @ ").next().unwrap_or(&c.name);
            let e = per_case.entry(case.to_string()).or_default();
            *e = e.max(err);
            worst = worst.max(err);
            count += 1;
        }
    }
    for (name, err) in &per_case {
        eprintln!("  {name}: {err:.1e}");
    }
    eprintln!("{count} finite-difference checks, largest |analytic − FD| = {worst:.3e}");
}

#[test]
fn softmax_cross_entropy_matches_finite_differences() {
    let dev = Device::cpu_f64();
    let (m, n) = (4, 5);
    let (_, grad) = xent_case(&dev, m, n, 7, 3.0).unwrap();
    // Rebuild the same case and perturb each logit.
    let mut rng = wgrad::data::Rng::new(7);
    let logits: Vec<f64> = (0..m * n).map(|_| (rng.next_f64() * 2.0 - 1.0) * 3.0).collect();
    let labels: Vec<u32> = (0..m).map(|_| rng.below(n) as u32).collect();
    let mut g = Graph::new(&dev);
    let x = g.input("logits", &[m, n]).unwrap();
    let y = g.input("labels", &[m]).unwrap();
    let loss = g.softmax_cross_entropy(x, y).unwrap();
    g.write_labels(y, &labels).unwrap();
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    for e in 0..m * n {
        let mut l = logits.clone();
        l[e] += h;
        g.write_f64(x, &l).unwrap();
        let up = g.value_f64(loss).unwrap()[0];
        l[e] -= 2.0 * h;
        g.write_f64(x, &l).unwrap();
        let down = g.value_f64(loss).unwrap()[0];
        let fd = (up - down) / (2.0 * h);
        assert!(
            (grad[e] - fd).abs() <= 1e-6 + 1e-5 * fd.abs(),
            "d_logits[{e}]: {} vs {fd}",
            grad[e]
        );
        worst = worst.max((grad[e] - fd).abs());
    }
    eprintln!("softmax_cross_entropy: largest |analytic − FD| = {worst:.3e}");
}

#[test]
fn detach_blocks_the_gradient_path() {
    // f = detach(x)·x + x, so df/dx = x + 1 (the detached factor counts as a constant).
    let mut g = Graph::new(&Device::cpu_f64());
    let x = g.input_with_grad("x", &[3]).unwrap();
    g.write(x, &[0.5, -2.0, 3.0]).unwrap();
    let d = g.detach(x).unwrap();
    let p = g.mul(d, x).unwrap();
    let f = g.add(p, x).unwrap();
    let loss = g.sum(f).unwrap();
    assert!(!g.requires_grad(d).unwrap());
    g.backward(loss).unwrap();
    assert_eq!(g.grad_f64(x).unwrap(), vec![1.5, -1.0, 4.0]);
    assert!(g.grad(d).is_err(), "a detached node has no gradient");
}
