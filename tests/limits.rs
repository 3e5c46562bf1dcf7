//! Large tensors, non-finite values and flat memory over long runs.

mod common;
use common::*;
use wgrad::{Adam, Error, Graph};

#[test]
fn long_vectors_use_two_dimensional_dispatch() {
    let Some(gpu) = gpu() else { return };
    // 65,535 workgroups × 256 + 1000 elements: more workgroups than one grid dimension allows.
    let n = 65_535 * 256 + 1000;
    let mut g = Graph::new(&gpu);
    let x = g.input_with_grad("x", &[n]).unwrap();
    let data: Vec<f32> = (0..n).map(|i| ((i % 1000) as f32) / 500.0 - 1.0).collect();
    g.write(x, &data).unwrap();
    let y = g.sigmoid(x).unwrap();
    let s = g.sum(y).unwrap();
    g.backward(s).unwrap();
    let yv = g.value(y).unwrap();
    let dx = g.grad(x).unwrap();
    for i in [0, 1, 65_535 * 256 - 1, 65_535 * 256, n - 1] {
        let want = 1.0 / (1.0 + (-data[i]).exp());
        assert!((yv[i] - want).abs() < 1e-6, "y[{i}] = {} vs {want}", yv[i]);
        assert!((dx[i] - want * (1.0 - want)).abs() < 1e-6, "dx[{i}]");
    }
    eprintln!("largest tensor handled: {n} elements ({} MB)", n * 4 / 1_000_000);
}

#[test]
fn non_finite_values_propagate_and_are_reported() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input_with_grad("x", &[4]).unwrap();
        g.write(x, &[1.0, f32::NAN, f32::INFINITY, -1.0]).unwrap();
        let s = g.sigmoid(x).unwrap();
        g.set_name(s, "s").unwrap();
        let l = g.log(s).unwrap();
        g.set_name(l, "log_s").unwrap();
        let m = g.max_axis(l, 0, false).unwrap();
        let loss = g.sum(m).unwrap();
        g.backward(loss).unwrap();
        let sv = g.value(s).unwrap();
        assert!(sv[1].is_nan() && sv[2] == 1.0, "{}: IEEE semantics: {sv:?}", dev.info());
        assert!(
            g.scalar(loss).unwrap().is_nan(),
            "{}: NaN propagates through max and sum",
            dev.info()
        );
        let e = g.check_finite().unwrap_err();
        match e {
            Error::NonFinite { node, what, index, .. } => {
                assert_eq!(
                    (node, what, index),
                    (0, "value", 1),
                    "{}: the input itself is reported first",
                    dev.info()
                )
            }
            other => panic!("{other:?}"),
        }
        g.write(x, &[1.0, 2.0, 3.0, -1.0]).unwrap();
        g.zero_grad().unwrap();
        g.backward(loss).unwrap();
        g.check_finite().unwrap();
    }
}

#[test]
fn memory_stays_flat_over_thousands_of_steps() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input("x", &[16, 8]).unwrap();
        let y = g.input("y", &[16]).unwrap();
        let mlp = wgrad::nn::Mlp::new(&mut g, &[8, 16, 4], wgrad::nn::Activation::Tanh, 2).unwrap();
        let logits = mlp.forward(&mut g, x).unwrap();
        let loss = g.softmax_cross_entropy(logits, y).unwrap();
        g.set_optimizer(Adam::new(1e-2)).unwrap();
        let mut rng = wgrad::data::Rng::new(4);
        let labels: Vec<u32> = (0..16).map(|i| i % 4).collect();
        g.write_labels(y, &labels).unwrap();
        let steps = 2000;
        let mut at10 = None;
        for step in 1..=steps {
            g.write(x, &random(&mut rng, 128, -1.0, 1.0)).unwrap();
            g.train_step(loss).unwrap();
            if step % 100 == 0 || step == 10 {
                assert!(g.scalar(loss).unwrap().is_finite());
            }
            if step == 10 {
                at10 = Some(g.counters());
            }
        }
        let (a, b) = (at10.unwrap(), g.counters());
        assert_eq!(a.live_buffers, b.live_buffers, "{}: live buffers", dev.info());
        assert_eq!(a.live_bytes, b.live_bytes, "{}: live bytes", dev.info());
        assert_eq!(a.buffers_created, b.buffers_created, "{}: buffers created", dev.info());
        eprintln!(
            "{}: {steps} steps, {} buffers / {} bytes at step 10 and at the end",
            dev.info(),
            b.live_buffers,
            b.live_bytes
        );
    }
}

#[test]
fn dropping_a_graph_returns_its_buffers_to_the_pool() {
    let Some(gpu) = gpu() else { return };
    let build = || {
        let mut g = Graph::new(&gpu);
        let a = g.input("a", &[300, 300]).unwrap();
        let b = g.input("b", &[300, 300]).unwrap();
        let c = g.matmul(a, b).unwrap();
        let _s = g.sum(c).unwrap();
        g.forward().unwrap();
        g
    };
    let first = build();
    let created = first.counters().buffers_created;
    assert!(created >= 4);
    drop(first);
    let second = build();
    // Tensor buffers come back from the pool; only the per-graph parameter block is new.
    assert!(
        second.counters().buffers_created < created,
        "{} < {created}",
        second.counters().buffers_created
    );
}
