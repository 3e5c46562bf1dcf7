//! AdamW and gradient clipping by global norm, against the formulas step by step (f64 on the
//! host) on every device; bad arguments are errors.

mod common;

use common::devices;
use wgrad::{AdamW, Graph, Sgd};

/// Two parameters and loss = Σ (p − t)² over both: gradient 2(p − t).
fn quadratic(g: &mut Graph, p0: &[f32], p1: &[f32], t: &[f32]) -> (wgrad::NodeId, wgrad::NodeId, wgrad::NodeId) {
    let a = g.parameter("a", &[p0.len()], p0).unwrap();
    let b = g.parameter("b", &[p1.len()], p1).unwrap();
    let ta = g.input("ta", &[p0.len()]).unwrap();
    let tb = g.input("tb", &[p1.len()]).unwrap();
    g.write(ta, &t[..p0.len()]).unwrap();
    g.write(tb, &t[p0.len()..]).unwrap();
    let da = g.sub(a, ta).unwrap();
    let db = g.sub(b, tb).unwrap();
    let sa = g.square(da).unwrap();
    let sb = g.square(db).unwrap();
    let la = g.sum(sa).unwrap();
    let lb = g.sum(sb).unwrap();
    let loss = g.add(la, lb).unwrap();
    (a, b, loss)
}

#[test]
fn adamw_follows_the_decoupled_update() {
    let (p0, p1, t) = ([0.5f32, -1.0, 2.0], [3.0f32], [0.1f32, 0.2, 0.3, -0.4]);
    let opt = AdamW {
        lr: 0.05,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let (a, b, loss) = quadratic(&mut g, &p0, &p1, &t);
        g.set_optimizer(opt).unwrap();
        // The reference, in f64.
        let mut p: Vec<f64> = p0.iter().chain(&p1).map(|&v| v as f64).collect();
        let (mut m, mut v) = (vec![0.0; 4], vec![0.0; 4]);
        for step in 1..=4 {
            g.train_step(loss).unwrap();
            let (lr, b1, b2, wd) = (
                opt.lr as f64,
                opt.beta1 as f64,
                opt.beta2 as f64,
                opt.weight_decay as f64,
            );
            for i in 0..4 {
                let grad = 2.0 * (p[i] - t[i] as f64);
                p[i] -= lr * wd * p[i];
                m[i] = b1 * m[i] + (1.0 - b1) * grad;
                v[i] = b2 * v[i] + (1.0 - b2) * grad * grad;
                let (mh, vh) = (m[i] / (1.0 - b1.powi(step)), v[i] / (1.0 - b2.powi(step)));
                p[i] -= lr * mh / (vh.sqrt() + opt.eps as f64);
            }
            let got: Vec<f32> = [g.value(a).unwrap(), g.value(b).unwrap()].concat();
            for i in 0..4 {
                assert!(
                    (got[i] as f64 - p[i]).abs() < 2e-6,
                    "{}: step {step} p[{i}] {} vs {}",
                    dev.info(),
                    got[i],
                    p[i]
                );
            }
        }
    }
}

#[test]
fn gradients_are_clipped_by_their_global_norm() {
    let (p0, p1, t) = ([3.0f32, -4.0, 0.0], [12.0f32], [0.0f32; 4]);
    for dev in devices() {
        for (max_norm, momentum) in [(1.0f32, 0.0f32), (100.0, 0.0), (2.5, 0.5)] {
            let mut g = Graph::new(&dev);
            let (a, b, loss) = quadratic(&mut g, &p0, &p1, &t);
            g.set_grad_clip(Some(max_norm)).unwrap_err(); // no optimizer yet
            g.set_optimizer(Sgd {
                lr: 0.1,
                momentum,
                weight_decay: 0.0,
            })
            .unwrap();
            g.set_grad_clip(Some(max_norm)).unwrap();
            let mut p: Vec<f64> = p0.iter().chain(&p1).map(|&v| v as f64).collect();
            let mut vel = [0.0f64; 4];
            for step in 0..3 {
                g.train_step(loss).unwrap();
                let grad: Vec<f64> = p.iter().map(|&x| 2.0 * x).collect();
                let norm = grad.iter().map(|x| x * x).sum::<f64>().sqrt();
                let c = (max_norm as f64 / (norm + 1e-6)).min(1.0);
                for i in 0..4 {
                    vel[i] = momentum as f64 * vel[i] + c * grad[i];
                    p[i] -= 0.1 * vel[i];
                }
                let got: Vec<f32> = [g.value(a).unwrap(), g.value(b).unwrap()].concat();
                for i in 0..4 {
                    let tol = 1e-5 * p[i].abs().max(1.0);
                    assert!(
                        (got[i] as f64 - p[i]).abs() < tol,
                        "{}: max_norm {max_norm} step {step} p[{i}] {} vs {}",
                        dev.info(),
                        got[i],
                        p[i]
                    );
                }
            }
            // Clipping stays on when the optimizer is replaced, and turns off with None.
            g.set_optimizer(Sgd::new(0.1)).unwrap();
            g.set_grad_clip(None).unwrap();
            g.train_step(loss).unwrap();
        }
    }
}

#[test]
fn bad_optimizer_arguments_are_errors() {
    let dev = wgrad::Device::cpu();
    let mut g = Graph::new(&dev);
    let (_, _, _) = quadratic(&mut g, &[1.0], &[1.0], &[0.0, 0.0]);
    let e = g.set_grad_clip(Some(1.0)).unwrap_err().to_string();
    assert!(e.contains("optimizer"), "{e}");
    g.set_optimizer(AdamW::new(1e-3)).unwrap();
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let e = g.set_grad_clip(Some(bad)).unwrap_err().to_string();
        assert!(e.contains("set_grad_clip") && e.contains("max_norm"), "{e}");
    }
    let e = g
        .set_optimizer(AdamW {
            beta1: 1.0,
            ..AdamW::new(1e-3)
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("beta1"), "{e}");
    g.set_learning_rate(0.5).unwrap();
}

#[test]
fn clipping_norm_covers_every_element_of_a_long_gradient() {
    // 2^22 + 5 elements: the norm kernel runs in two loop slices; only the last five elements
    // have a gradient, so a slice left out would leave the step unclipped.
    let n = (1 << 22) + 5;
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let p = g.parameter("p", &[n], &vec![1.0; n]).unwrap();
        let r = g.input("r", &[n]).unwrap();
        let mut rv = vec![0.0f32; n];
        rv[n - 5..].fill(1000.0);
        g.write(r, &rv).unwrap();
        let pr = g.mul(p, r).unwrap();
        let loss = g.sum(pr).unwrap();
        g.set_optimizer(Sgd::new(1.0)).unwrap();
        g.set_grad_clip(Some(1.0)).unwrap();
        g.train_step(loss).unwrap();
        let v = g.value(p).unwrap();
        let norm = 5f64.sqrt() * 1000.0;
        let want = 1.0 - 1000.0 / (norm + 1e-6);
        assert!(
            (v[n - 1] as f64 - want).abs() < 1e-5,
            "{}: {} vs {want}",
            dev.info(),
            v[n - 1]
        );
        assert_eq!(v[0], 1.0, "{}", dev.info());
    }
}
