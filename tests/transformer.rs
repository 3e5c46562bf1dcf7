//! A pre-norm transformer block: its gradients against finite differences (f64, CPU), the GPU
//! against the CPU, causality, and PyTorch's parameter names.

mod common;

use common::{devices, random};
use wgrad::data::Rng;
use wgrad::nn::{Embedding, TransformerBlock};
use wgrad::{Device, Graph, NodeId};

const VOCAB: usize = 7;

/// Embedding → block → sum(out ⊙ r): (graph, ids, x (embedded), out, loss).
fn model(dev: &Device, b: usize, t: usize, d: usize, heads: usize) -> (Graph, NodeId, NodeId, NodeId, NodeId) {
    let mut g = Graph::new(dev);
    let mut rng = Rng::new(11);
    let emb = Embedding::new(&mut g, "tok", VOCAB, d, &mut rng).unwrap();
    let block = TransformerBlock::new(&mut g, "blocks.0", d, heads, &mut rng).unwrap();
    let ids = g.input("ids", &[b, t]).unwrap();
    let x = emb.forward(&mut g, ids).unwrap();
    let mask = g.causal_mask(t).unwrap();
    let out = block.forward(&mut g, x, mask).unwrap();
    let r = g.input("r", &[b, t, d]).unwrap();
    g.write(r, &random(&mut Rng::new(3), b * t * d, -1.0, 1.0)).unwrap();
    let p = g.mul(out, r).unwrap();
    let loss = g.sum(p).unwrap();
    let id_values: Vec<u32> = (0..b * t).map(|i| ((i * 5 + 1) % VOCAB) as u32).collect();
    g.write_labels(ids, &id_values).unwrap();
    (g, ids, x, out, loss)
}

#[test]
fn block_gradients_match_finite_differences() {
    let (mut g, _, _, _, loss) = model(&Device::cpu_f64(), 2, 3, 4, 2);
    g.backward(loss).unwrap();
    let h = 1e-6;
    let mut checked = 0;
    for p in g.parameters() {
        let analytic = g.grad_f64(p).unwrap();
        let mut x = g.value_f64(p).unwrap();
        for e in 0..x.len() {
            let orig = x[e];
            x[e] = orig + h;
            g.write_f64(p, &x).unwrap();
            let up = g.value_f64(loss).unwrap()[0];
            x[e] = orig - h;
            g.write_f64(p, &x).unwrap();
            let down = g.value_f64(loss).unwrap()[0];
            x[e] = orig;
            g.write_f64(p, &x).unwrap();
            let fd = (up - down) / (2.0 * h);
            let name = g.name(p).unwrap().to_string();
            assert!(
                (analytic[e] - fd).abs() <= 1e-6 + 1e-5 * fd.abs(),
                "{name}[{e}]: {} vs {fd}",
                analytic[e]
            );
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked} elements checked");
}

#[test]
fn block_on_the_gpu_matches_the_cpu() {
    let (mut cpu, _, _, cpu_out, cpu_loss) = model(&Device::cpu(), 2, 9, 16, 4);
    cpu.backward(cpu_loss).unwrap();
    for dev in devices().into_iter().filter(|d| d.is_gpu()) {
        let (mut g, _, _, out, loss) = model(&dev, 2, 9, 16, 4);
        g.backward(loss).unwrap();
        common::assert_close(
            &g.value(out).unwrap(),
            &cpu.value(cpu_out).unwrap(),
            1e-5,
            1e-4,
            "block output",
        );
        for (p, q) in g.parameters().into_iter().zip(cpu.parameters()) {
            let what = format!("d {}", g.name(p).unwrap());
            common::assert_close(&g.grad(p).unwrap(), &cpu.grad(q).unwrap(), 1e-5, 1e-3, &what);
        }
    }
}

#[test]
fn attention_is_causal_and_names_follow_pytorch() {
    for dev in devices() {
        let (mut g, ids, _, out, _) = model(&dev, 1, 5, 8, 2);
        let before = g.value(out).unwrap();
        // A different token at the last position changes nothing before it.
        g.write_labels(ids, &[1, 6, 4, 2, 3]).unwrap();
        let mut first = vec![1u32, 6, 4, 2];
        let after_a = g.value(out).unwrap();
        first.push(0);
        g.write_labels(ids, &first).unwrap();
        let after_b = g.value(out).unwrap();
        assert_eq!(after_a[..4 * 8], after_b[..4 * 8], "{}: the future leaked", dev.info());
        assert_ne!(
            after_a[4 * 8..],
            after_b[4 * 8..],
            "{}: the last position ignores its token",
            dev.info()
        );
        assert_eq!(before.len(), after_a.len());
    }
    let (g, ..) = model(&Device::cpu(), 1, 2, 8, 2);
    let names: Vec<String> = g.parameters().iter().map(|&p| g.name(p).unwrap().to_string()).collect();
    for want in [
        "tok.weight",
        "blocks.0.norm1.weight",
        "blocks.0.self_attn.in_proj_weight",
        "blocks.0.self_attn.in_proj_bias",
        "blocks.0.self_attn.out_proj.weight",
        "blocks.0.norm2.bias",
        "blocks.0.linear1.weight",
        "blocks.0.linear2.bias",
    ] {
        assert!(names.iter().any(|n| n == want), "no parameter {want} in {names:?}");
    }
}

#[test]
fn training_steps_on_the_gpu_match_the_cpu() {
    // SGD with momentum and clipping: parameters compared. (Adam's update divides by the
    // gradient's running norm, so elements whose gradient is rounding noise — the key bias,
    // to which softmax is invariant — move by ±lr on either device: for AdamW only the loss is
    // compared.)
    let steps = |dev: &Device, adamw: bool| {
        let (mut g, _, _, _, loss) = model(dev, 2, 8, 16, 4);
        if adamw {
            g.set_optimizer(wgrad::AdamW::new(3e-3)).unwrap();
        } else {
            g.set_optimizer(wgrad::Sgd {
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 0.0,
            })
            .unwrap();
        }
        g.set_grad_clip(Some(1.0)).unwrap();
        for _ in 0..3 {
            g.train_step(loss).unwrap();
        }
        let l = g.scalar(loss).unwrap();
        let params: Vec<Vec<f32>> = g.parameters().into_iter().map(|p| g.value(p).unwrap()).collect();
        (l, params)
    };
    let (cpu_sgd, cpu_params) = steps(&Device::cpu(), false);
    let (cpu_adamw, _) = steps(&Device::cpu(), true);
    for dev in devices().into_iter().filter(|d| d.is_gpu()) {
        let (sgd, params) = steps(&dev, false);
        assert!(
            (sgd - cpu_sgd).abs() <= 1e-4 * cpu_sgd.abs().max(1.0),
            "{}: SGD loss {sgd} vs {cpu_sgd}",
            dev.info()
        );
        for (i, (p, q)) in params.iter().zip(&cpu_params).enumerate() {
            common::assert_close(p, q, 1e-5, 1e-4, &format!("parameter {i} after 3 SGD steps"));
        }
        let (adamw, _) = steps(&dev, true);
        assert!(
            (adamw - cpu_adamw).abs() <= 1e-3 * cpu_adamw.abs().max(1.0),
            "{}: AdamW loss {adamw} vs {cpu_adamw}",
            dev.info()
        );
    }
}

#[test]
fn cpu_training_gives_the_same_bits_for_any_thread_count() {
    // Large enough that every row-parallel CPU kernel splits its rows (attention scores of
    // 16·4·32 rows, layers of 512 rows, products of millions of multiply-adds): two AdamW steps
    // with clipping in thread pools of 1, 2 and 3 threads must agree bit for bit.
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let (mut g, _, _, _, loss) = model(&Device::cpu(), 16, 32, 64, 4);
            g.set_optimizer(wgrad::AdamW::new(3e-3)).unwrap();
            g.set_grad_clip(Some(1.0)).unwrap();
            for _ in 0..2 {
                g.train_step(loss).unwrap();
            }
            let mut bits = vec![g.scalar(loss).unwrap().to_bits()];
            for p in g.parameters() {
                bits.extend(g.value(p).unwrap().iter().map(|v| v.to_bits()));
            }
            bits
        })
    };
    let one = run(1);
    for threads in [2, 3] {
        let other = run(threads);
        let first = one.iter().zip(&other).position(|(a, b)| a != b);
        assert_eq!(first, None, "{threads} threads differ from one at value {first:?}");
    }
}
