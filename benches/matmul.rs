//! criterion benches: matmul forward, matmul backward (dA and dB) and one MLP training step,
//! on the GPU (when an adapter exists) and on the CPU backend.
//!
//! `cargo bench --bench matmul`; figures and adapters are recorded in benches/NOTES.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wgrad::nn::{Activation, Mlp};
use wgrad::{Graph, Sgd};

mod common;
use common::devices;

fn matmul(c: &mut Criterion) {
    let devs = devices();
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10);
    for n in [256usize, 512] {
        for (name, dev) in &devs {
            let mut g = Graph::new(dev);
            let a = g.input_with_grad("a", &[n, n]).unwrap();
            let b = g.input_with_grad("b", &[n, n]).unwrap();
            let cc = g.matmul(a, b).unwrap();
            let mut rng = wgrad::data::Rng::new(0);
            let data: Vec<f32> = (0..n * n).map(|_| rng.next_f32() - 0.5).collect();
            g.write(a, &data).unwrap();
            g.write(b, &data).unwrap();
            g.forward().unwrap();
            group.throughput(Throughput::Elements((2 * n * n * n) as u64));
            group.bench_with_input(BenchmarkId::new(format!("forward/{name}"), n), &n, |bch, _| {
                bch.iter(|| {
                    g.forward().unwrap();
                    g.synchronize().unwrap();
                })
            });
            group.throughput(Throughput::Elements((4 * n * n * n) as u64));
            group.bench_with_input(BenchmarkId::new(format!("backward/{name}"), n), &n, |bch, _| {
                bch.iter(|| {
                    g.backward_from(cc, &data).unwrap();
                    g.synchronize().unwrap();
                })
            });
        }
    }
    group.finish();
}

fn train_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("mlp_step_784_256_256_10_b128");
    group.sample_size(10);
    for (name, dev) in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input("x", &[128, 784]).unwrap();
        let y = g.input("y", &[128]).unwrap();
        let mlp = Mlp::new(&mut g, &[784, 256, 256, 10], Activation::Sigmoid, 0).unwrap();
        let logits = mlp.forward(&mut g, x).unwrap();
        let loss = g.softmax_cross_entropy(logits, y).unwrap();
        g.set_optimizer(Sgd::new(0.05)).unwrap();
        let mut rng = wgrad::data::Rng::new(0);
        let xs: Vec<f32> = (0..128 * 784).map(|_| rng.next_f32()).collect();
        let ys: Vec<u32> = (0..128).map(|i| i % 10).collect();
        g.write_labels(y, &ys).unwrap();
        group.bench_function(name, |bch| {
            bch.iter(|| {
                g.write(x, &xs).unwrap();
                g.train_step(loss).unwrap();
                g.synchronize().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, matmul, train_step);
criterion_main!(benches);
