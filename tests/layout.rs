//! Permute, transpose_axes, narrow and concat: values against index arithmetic on every
//! device, and bad arguments as errors that name the op and the shapes. (Gradients: the
//! layout cases of `common::op_cases`, run by `gradcheck` and `gpu_vs_cpu`.)

mod common;

use common::devices;
use wgrad::Graph;

fn iota(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

#[test]
fn layout_ops_move_the_right_elements() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input("x", &[2, 3, 4]).unwrap();
        let p = g.permute(x, &[2, 0, 1]).unwrap();
        let t = g.transpose_axes(x, 0, 1).unwrap();
        let n = g.narrow(x, 2, 1, 2).unwrap();
        let y = g.input("y", &[2, 1, 4]).unwrap();
        let c = g.concat(&[x, y, x], 1).unwrap();
        g.write(x, &iota(24)).unwrap();
        g.write(y, &iota(8).iter().map(|v| 100.0 + v).collect::<Vec<_>>())
            .unwrap();
        g.forward().unwrap();
        let xv = |a: usize, b: usize, c: usize| (a * 12 + b * 4 + c) as f32;

        assert_eq!(g.shape(p).unwrap(), vec![4, 2, 3]);
        let pv = g.value(p).unwrap();
        for (i, v) in pv.iter().enumerate() {
            let (c, a, b) = (i / 6, (i / 3) % 2, i % 3);
            assert_eq!(*v, xv(a, b, c), "{}: permute at {i}", dev.info());
        }
        assert_eq!(g.shape(t).unwrap(), vec![3, 2, 4]);
        let tv = g.value(t).unwrap();
        for (i, v) in tv.iter().enumerate() {
            let (b, a, c) = (i / 8, (i / 4) % 2, i % 4);
            assert_eq!(*v, xv(a, b, c), "{}: transpose_axes at {i}", dev.info());
        }
        assert_eq!(g.shape(n).unwrap(), vec![2, 3, 2]);
        let nv = g.value(n).unwrap();
        for (i, v) in nv.iter().enumerate() {
            let (a, b, c) = (i / 6, (i / 2) % 3, i % 2);
            assert_eq!(*v, xv(a, b, c + 1), "{}: narrow at {i}", dev.info());
        }
        assert_eq!(g.shape(c).unwrap(), vec![2, 7, 4]);
        let cv = g.value(c).unwrap();
        for (i, v) in cv.iter().enumerate() {
            let (a, b, k) = (i / 28, (i / 4) % 7, i % 4);
            let want = match b {
                0..=2 => xv(a, b, k),
                3 => 100.0 + (a * 4 + k) as f32,
                _ => xv(a, b - 4, k),
            };
            assert_eq!(*v, want, "{}: concat at {i}", dev.info());
        }
    }
}

#[test]
fn narrow_gradient_is_zero_outside_the_slice() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input_with_grad("x", &[3, 5]).unwrap();
        let n = g.narrow(x, 1, 1, 3).unwrap();
        let loss = g.sum(n).unwrap();
        g.write(x, &iota(15)).unwrap();
        g.forward().unwrap();
        g.backward(loss).unwrap();
        let dx = g.grad(x).unwrap();
        for (i, d) in dx.iter().enumerate() {
            let want = if (1..4).contains(&(i % 5)) { 1.0 } else { 0.0 };
            assert_eq!(*d, want, "{}: d_x at {i}", dev.info());
        }
    }
}

#[test]
fn bad_layout_arguments_are_errors_naming_op_and_shapes() {
    let dev = wgrad::Device::cpu();
    let mut g = Graph::new(&dev);
    let x = g.input("x", &[2, 3, 4]).unwrap();
    let y = g.input("y", &[2, 5, 3]).unwrap();
    let nodes = g.len();
    let cases: Vec<(wgrad::Result<wgrad::NodeId>, &[&str])> = vec![
        (g.permute(x, &[0, 1]), &["permute", "[2, 3, 4]", "[0, 1]"]),
        (g.permute(x, &[0, 1, 1]), &["permute", "[0, 1, 1]"]),
        (g.permute(x, &[0, 1, 3]), &["permute", "[0, 1, 3]"]),
        (g.transpose_axes(x, 0, 3), &["transpose_axes", "[2, 3, 4]", "rank 3"]),
        (g.narrow(x, 3, 0, 1), &["narrow", "axis 3"]),
        (g.narrow(x, 1, 2, 2), &["narrow", "[2, 3, 4]", "2..4"]),
        (g.narrow(x, 1, 0, 0), &["narrow", "0..0"]),
        (g.narrow(x, 1, usize::MAX, 2), &["narrow"]),
        (g.concat(&[x, y], 1), &["concat", "[2, 3, 4]", "[2, 5, 3]"]),
        (g.concat(&[x], 3), &["concat", "axis 3"]),
        (g.concat(&[], 0), &["concat", "no tensors"]),
    ];
    for (r, want) in cases {
        let msg = r.expect_err("must be refused").to_string();
        for w in want {
            assert!(msg.contains(w), "'{msg}' does not mention {w}");
        }
    }
    assert_eq!(g.len(), nodes, "refused ops add no node");
}

#[test]
fn composites_match_their_definitions() {
    let (m, d) = (3, 5);
    let data: Vec<f32> = (0..m * d).map(|i| ((i * 7 % 11) as f32 - 4.0) * 0.6).collect();
    let w: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 * 0.25).collect();
    let b: Vec<f32> = (0..d).map(|i| i as f32 * 0.1 - 0.2).collect();
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input("x", &[m, d]).unwrap();
        let wn = g.input("w", &[d]).unwrap();
        let bn = g.input("b", &[d]).unwrap();
        let ln = g.layer_norm(x, Some(wn), Some(bn), 1e-5).unwrap();
        let ls = g.log_softmax(x, 1).unwrap();
        let s0 = g.softmax_axis(x, 0).unwrap();
        g.write(x, &data).unwrap();
        g.write(wn, &w).unwrap();
        g.write(bn, &b).unwrap();
        g.forward().unwrap();
        let (lnv, lsv, s0v) = (g.value(ln).unwrap(), g.value(ls).unwrap(), g.value(s0).unwrap());
        let at = |r: usize, c: usize| data[r * d + c] as f64;
        for r in 0..m {
            let mean = (0..d).map(|c| at(r, c)).sum::<f64>() / d as f64;
            let var = (0..d).map(|c| (at(r, c) - mean).powi(2)).sum::<f64>() / d as f64;
            let lse = (0..d).map(|c| at(r, c).exp()).sum::<f64>().ln();
            for c in 0..d {
                let want = (at(r, c) - mean) / (var + 1e-5).sqrt() * w[c] as f64 + b[c] as f64;
                let got = lnv[r * d + c] as f64;
                assert!(
                    (got - want).abs() < 1e-5,
                    "{}: layer_norm[{r},{c}] {got} vs {want}",
                    dev.info()
                );
                let want = at(r, c) - lse;
                let got = lsv[r * d + c] as f64;
                assert!(
                    (got - want).abs() < 1e-5,
                    "{}: log_softmax[{r},{c}] {got} vs {want}",
                    dev.info()
                );
            }
        }
        for c in 0..d {
            let z = (0..m).map(|r| at(r, c).exp()).sum::<f64>();
            for r in 0..m {
                let (got, want) = (s0v[r * d + c] as f64, at(r, c).exp() / z);
                assert!(
                    (got - want).abs() < 1e-6,
                    "{}: softmax_axis 0 [{r},{c}] {got} vs {want}",
                    dev.info()
                );
            }
        }
    }
}

#[test]
fn expand_repeats_and_its_gradient_sums() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input_with_grad("x", &[3, 1]).unwrap();
        let e = g.expand(x, &[2, 3, 4]).unwrap();
        let loss = g.sum(e).unwrap();
        g.write(x, &[1.0, 2.0, 3.0]).unwrap();
        g.forward().unwrap();
        g.backward(loss).unwrap();
        let v = g.value(e).unwrap();
        for (i, got) in v.iter().enumerate() {
            assert_eq!(*got, ((i / 4) % 3 + 1) as f32, "{}: expand at {i}", dev.info());
        }
        assert_eq!(
            g.grad(x).unwrap(),
            vec![8.0; 3],
            "{}: 2·4 copies of each element",
            dev.info()
        );
        let bad = g.expand(x, &[2, 4]).unwrap_err().to_string();
        assert!(
            bad.contains("expand") && bad.contains("[3, 1]") && bad.contains("[2, 4]"),
            "{bad}"
        );
    }
}

#[test]
fn a_reshape_shares_its_input_buffer_except_a_parameters() {
    for dev in common::devices() {
        let mut g = Graph::new(&dev);
        let x = g.input_with_grad("x", &[2, 6]).unwrap();
        let h = g.scale(x, 2.0).unwrap();
        let before = g.counters().buffers_created;
        let r = g.reshape(h, &[3, 4]).unwrap();
        let d = g.detach(r).unwrap();
        assert_eq!(
            g.counters().buffers_created,
            before,
            "{}: a reshape of a result allocated",
            dev.info()
        );
        let data: Vec<f32> = (0..12).map(|i| i as f32).collect();
        g.write(x, &data).unwrap();
        let twice: Vec<f32> = data.iter().map(|v| 2.0 * v).collect();
        assert_eq!(g.value(r).unwrap(), twice, "{}", dev.info());
        assert_eq!(g.value(d).unwrap(), twice, "{}", dev.info());
        // Gradients still flow through it.
        let s = g.sum(r).unwrap();
        g.backward(s).unwrap();
        assert_eq!(g.grad(x).unwrap(), vec![2.0; 12], "{}", dev.info());
        // A parameter's reshape is a copy: after a training step it still holds the value the
        // step's forward pass saw, not the updated parameter.
        let w = g.parameter("w", &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let wr = g.reshape(w, &[2, 2]).unwrap();
        let sq = g.square(wr).unwrap();
        let l = g.sum(sq).unwrap();
        g.set_optimizer(wgrad::Sgd::new(0.1)).unwrap();
        g.train_step(l).unwrap();
        assert_eq!(g.value(wr).unwrap(), vec![1.0, 2.0, 3.0, 4.0], "{}", dev.info());
        assert_eq!(g.value(w).unwrap(), vec![0.8, 1.6, 2.4, 3.2], "{}", dev.info());
    }
}
