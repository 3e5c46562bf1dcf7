//! Absurd sizes are refused with an error before anything is allocated: no abort, no minutes
//! spent sampling weights that can never fit, and the graph is left as it was.

mod common;
use common::*;
use std::time::{Duration, Instant};
use wgrad::data::Rng;
use wgrad::nn::{Activation, Init, Linear, Mlp};
use wgrad::train::{Classifier, ClassifierConfig};
use wgrad::{Device, Error, Graph};

/// A graph that already holds something, so "left as it was" means something.
fn graph(dev: &Device) -> Graph {
    let mut g = Graph::new(dev);
    let x = g.input("x", &[4, 3]).unwrap();
    g.write(x, &[1.0; 12]).unwrap();
    let _ = Linear::new(&mut g, "ok", 3, 2, Init::Xavier, &mut Rng::new(1)).unwrap();
    g
}

/// The graph is unchanged and still works (checking that adds nodes: callers re-read the
/// length and counters afterwards).
fn unchanged(g: &mut Graph, len: usize, before: wgrad::Counters, what: &str) {
    assert_eq!(g.len(), len, "{what}: no node added");
    let c = g.counters();
    assert_eq!(
        (c.buffers_created, c.bytes_allocated, c.live_buffers, c.live_bytes),
        (
            before.buffers_created,
            before.bytes_allocated,
            before.live_buffers,
            before.live_bytes
        ),
        "{what}: nothing allocated"
    );
    let x = g.find("x").unwrap();
    let w = g.find("ok.weight").unwrap();
    let y = g.matmul(x, w).unwrap();
    let s = g.sum(y).unwrap();
    g.zero_grad().unwrap();
    g.backward(s).unwrap();
    assert_eq!(g.grad(w).unwrap(), vec![4.0; 6], "{what}: the graph still works");
}

fn quick(start: Instant, what: &str) {
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{what}: took {:?} to refuse",
        start.elapsed()
    );
}

#[test]
fn a_linear_layer_of_a_million_squared_is_refused() {
    for dev in devices() {
        let mut g = graph(&dev);
        let (len, before) = (g.len(), g.counters());
        let start = Instant::now();
        let e = Linear::new(&mut g, "l", 1 << 20, 1 << 20, Init::He, &mut Rng::new(0)).unwrap_err();
        quick(start, "Linear::new(2^20, 2^20)");
        let msg = e.to_string();
        assert!(msg.contains("Linear::new"), "{msg}");
        assert!(msg.contains("l.weight"), "{msg}");
        assert!(msg.contains("[1048576, 1048576]"), "{msg}");
        unchanged(&mut g, len, before, &format!("{}: Linear::new(2^20, 2^20)", dev.info()));
        let (len, before) = (g.len(), g.counters());
        // Sizes whose element count overflows usize, and zero sizes.
        for (fan_in, fan_out) in [(usize::MAX, 2), (1 << 40, 1 << 40), (0, 4), (4, 0)] {
            let r = Linear::new(&mut g, "l", fan_in, fan_out, Init::Xavier, &mut Rng::new(0));
            assert!(r.is_err(), "{fan_in}×{fan_out}");
        }
        unchanged(&mut g, len, before, &format!("{}: overflowing sizes", dev.info()));
    }
}

#[test]
fn huge_hidden_layers_are_refused_before_any_weight_is_sampled() {
    for dev in devices() {
        let mut g = graph(&dev);
        let (mut len, mut before) = (g.len(), g.counters());
        // `train_mlp --hidden 100000000` and `--hidden 65536,65536` on the 64-feature digits.
        for sizes in [&[64, 100_000_000, 10][..], &[64, 65_536, 65_536, 10]] {
            let start = Instant::now();
            let e = Mlp::new(&mut g, sizes, Activation::Relu, 0).unwrap_err();
            quick(start, &format!("Mlp::new({sizes:?})"));
            assert!(e.to_string().contains("Mlp::new"), "{e}");
            unchanged(&mut g, len, before, &format!("{}: Mlp::new({sizes:?})", dev.info()));
            (len, before) = (g.len(), g.counters());
            let cfg = ClassifierConfig {
                hidden: sizes[1..sizes.len() - 1].to_vec(),
                ..ClassifierConfig::default()
            };
            let start = Instant::now();
            assert!(Classifier::new(&dev, 64, 10, &cfg).is_err(), "{sizes:?}");
            quick(start, &format!("Classifier::new({sizes:?})"));
        }
    }
}

#[test]
fn init_sample_refuses_sizes_it_cannot_allocate() {
    let mut rng = Rng::new(0);
    for (fan_in, fan_out) in [(1 << 20, 1 << 20), (usize::MAX, 2), (0, 3)] {
        let e = Init::He.sample(fan_in, fan_out, &mut rng).unwrap_err();
        assert!(matches!(e, Error::InvalidShape { op: "Init::sample", .. }), "{e:?}");
    }
    assert_eq!(Init::Xavier.sample(3, 2, &mut rng).unwrap().len(), 6);
}

#[test]
fn the_host_memory_limit_is_checked_before_allocating() {
    for dev in devices() {
        let mut g = graph(&dev);
        let x = g.find("x").unwrap();
        g.set_host_memory_limit(Some(1 << 20));
        assert_eq!(g.host_memory_limit(), Some(1 << 20));
        let (len, before) = (g.len(), g.counters());
        // 512×1024 initial weights: 2 MiB of host memory to sample them.
        let e = Linear::new(&mut g, "big", 512, 1024, Init::He, &mut Rng::new(0)).unwrap_err();
        assert!(
            matches!(&e, Error::LimitExceeded { limit: 1_048_576, .. }),
            "{}: {e:?}",
            dev.info()
        );
        assert!(e.to_string().contains("Graph::set_host_memory_limit"), "{e}");
        unchanged(&mut g, len, before, &format!("{}: host limit", dev.info()));
        if !dev.is_gpu() {
            // On the CPU backend tensors themselves are host memory.
            let e = g.input("wide", &[1024, 1024]).unwrap_err();
            assert!(matches!(&e, Error::LimitExceeded { .. }), "{e:?}");
            assert!(e.to_string().contains("wide"), "{e}");
        }
        g.set_host_memory_limit(Some(16));
        let e = g.value(x).unwrap_err();
        assert!(e.to_string().contains("read of x"), "{e}");
        g.set_host_memory_limit(None);
        assert_eq!(g.value(x).unwrap(), vec![1.0; 12]);
        Linear::new(&mut g, "big", 512, 1024, Init::He, &mut Rng::new(0)).unwrap();
    }
}

#[test]
fn gpu_buffers_beyond_the_device_limits_are_refused_before_sampling() {
    let Some(gpu) = gpu() else { return };
    let mut g = graph(&gpu);
    let (len, before) = (g.len(), g.counters());
    // 2^30 weights = 4 GiB: within the 2^31-element bound, beyond every adapter's binding limit.
    let start = Instant::now();
    let e = Linear::new(&mut g, "l", 1 << 15, 1 << 15, Init::He, &mut Rng::new(0)).unwrap_err();
    quick(start, "Linear::new(2^15, 2^15)");
    assert!(matches!(&e, Error::LimitExceeded { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("max_storage_buffer_binding_size") || msg.contains("max_buffer_size"),
        "{msg}"
    );
    assert!(msg.contains("l.weight"), "{msg}");
    unchanged(&mut g, len, before, "GPU limits");
    // The same through the optimizer: Adam's state is twice a parameter, and is checked too.
    let mut limits = wgrad::wgpu::Limits::downlevel_defaults();
    limits.max_storage_buffer_binding_size = 1 << 16;
    let small = Device::gpu_with(&wgrad::GpuOptions {
        limits: Some(limits),
        ..Default::default()
    })
    .unwrap();
    let mut g = Graph::new(&small);
    let _ = Linear::new(&mut g, "l", 128, 100, Init::He, &mut Rng::new(0)).unwrap(); // 51,200 B
    let created = g.counters().buffers_created;
    let e = g.set_optimizer(wgrad::Adam::new(1e-3)).unwrap_err(); // 102,400 B of state
    assert!(e.to_string().contains("optimizer state of l.weight"), "{e}");
    assert_eq!(g.counters().buffers_created, created, "nothing allocated");
    g.set_optimizer(wgrad::Sgd {
        lr: 0.1,
        momentum: 0.0,
        weight_decay: 0.0,
    })
    .unwrap();
}
