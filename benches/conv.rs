//! criterion bench: a LeNet-sized convolution stack, forward and backward — batch 64 of
//! 1×28×28 → conv 6@5×5 → ReLU → max-pool 2 → conv 16@5×5 → ReLU → max-pool 2 — on the GPU
//! (when an adapter exists) and on the CPU backend, each with the convolutions as implicit GEMMs
//! (`/implicit`) and through an explicit im2col (`/im2col`). `benches/torch_ref.py conv` times
//! the same stack in PyTorch.
//!
//! `cargo bench --bench conv`; figures and adapters are recorded in benches/NOTES.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wgrad::data::Rng;
use wgrad::{Conv2dOptions, Graph, Pool2dOptions};

mod common;
use common::devices;

fn lenet(c: &mut Criterion) {
    let mut group = c.benchmark_group("lenet_conv_b64");
    group.sample_size(10);
    let batch = 64;
    // Multiply-adds of the two convolutions, forward; backward is twice that.
    let macs = batch * (6 * 24 * 24 * 25 + 16 * 8 * 8 * 6 * 25);
    for ((name, dev), implicit) in devices().into_iter().flat_map(|d| [(d.clone(), false), (d, true)]) {
        let name = format!("{name}/{}", if implicit { "implicit" } else { "im2col" });
        let mut rng = Rng::new(0);
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_f32() - 0.5).collect() };
        let mut g = Graph::new(&dev);
        g.set_implicit_conv(Some(implicit));
        let x = g.input("x", &[batch, 1, 28, 28]).unwrap();
        let w1 = g.parameter("w1", &[6, 1, 5, 5], &draw(150)).unwrap();
        let b1 = g.parameter("b1", &[6], &draw(6)).unwrap();
        let w2 = g.parameter("w2", &[16, 6, 5, 5], &draw(2400)).unwrap();
        let b2 = g.parameter("b2", &[16], &draw(16)).unwrap();
        let d = Conv2dOptions::default();
        let h = g.conv2d(x, w1, Some(b1), d).unwrap();
        let h = g.relu(h).unwrap();
        let h = g.max_pool2d(h, Pool2dOptions::new(2)).unwrap();
        let h = g.conv2d(h, w2, Some(b2), d).unwrap();
        let h = g.relu(h).unwrap();
        let h = g.max_pool2d(h, Pool2dOptions::new(2)).unwrap();
        let loss = g.mean(h).unwrap();
        g.write(x, &draw(batch * 28 * 28)).unwrap();
        g.backward(loss).unwrap();
        group.throughput(Throughput::Elements(macs as u64));
        group.bench_function(format!("forward/{name}"), |b| {
            b.iter(|| {
                g.forward().unwrap();
                g.synchronize().unwrap();
            })
        });
        group.throughput(Throughput::Elements(3 * macs as u64));
        group.bench_function(format!("forward+backward/{name}"), |b| {
            b.iter(|| {
                g.zero_grad().unwrap();
                g.forward().unwrap();
                g.backward(loss).unwrap();
                g.synchronize().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lenet);
criterion_main!(benches);
