//! Masked fill, where and the causal mask: values on every device, −∞ through a softmax, and
//! branches not taken (even ±∞) kept out of values and gradients.

mod common;

use common::devices;
use wgrad::Graph;

#[test]
fn causal_attention_weights_ignore_the_future() {
    for dev in devices() {
        let t = 5;
        let mut g = Graph::new(&dev);
        let scores = g.input_with_grad("scores", &[2, t, t]).unwrap();
        let mask = g.causal_mask(t).unwrap();
        let filled = g.masked_fill(scores, mask, f32::NEG_INFINITY).unwrap();
        let w = g.softmax(filled).unwrap();
        let loss = g.sum(w).unwrap();
        let data: Vec<f32> = (0..2 * t * t).map(|i| (i % 7) as f32 * 0.3).collect();
        g.write(scores, &data).unwrap();
        g.backward(loss).unwrap();
        let wv = g.value(w).unwrap();
        for b in 0..2 {
            for i in 0..t {
                let row = &wv[(b * t + i) * t..(b * t + i + 1) * t];
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-6, "{}: row {i} sums to {sum}", dev.info());
                for (j, &p) in row.iter().enumerate() {
                    if j > i {
                        assert_eq!(p, 0.0, "{}: weight on the future at ({i}, {j})", dev.info());
                    }
                }
                // Row i attends to i + 1 positions with softmax over their scores.
                let z: f32 = (0..=i).map(|j| data[(b * t + i) * t + j].exp()).sum();
                for j in 0..=i {
                    let want = data[(b * t + i) * t + j].exp() / z;
                    assert!(
                        (row[j] - want).abs() < 1e-6,
                        "{}: ({i}, {j}) {} vs {want}",
                        dev.info(),
                        row[j]
                    );
                }
            }
        }
        let d = g.grad(scores).unwrap();
        assert!(d.iter().all(|v| v.is_finite()), "{}: gradient not finite", dev.info());
        for i in 0..t {
            for j in i + 1..t {
                assert_eq!(d[i * t + j], 0.0, "{}: gradient reaches a masked score", dev.info());
            }
        }
    }
}

#[test]
fn where_takes_one_branch_and_its_gradient() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let cond = g.input("cond", &[4]).unwrap();
        let a = g.input_with_grad("a", &[4]).unwrap();
        let b = g.input_with_grad("b", &[4]).unwrap();
        let w = g.where_mask(cond, a, b).unwrap();
        let loss = g.sum(w).unwrap();
        g.write(cond, &[1.0, 0.0, 2.0, 0.0]).unwrap();
        g.write(a, &[1.0, f32::INFINITY, 3.0, f32::NAN]).unwrap();
        g.write(b, &[f32::NEG_INFINITY, 20.0, f32::NAN, 40.0]).unwrap();
        g.backward(loss).unwrap();
        assert_eq!(g.value(w).unwrap(), vec![1.0, 20.0, 3.0, 40.0], "{}", dev.info());
        assert_eq!(g.grad(a).unwrap(), vec![1.0, 0.0, 1.0, 0.0], "{}", dev.info());
        assert_eq!(g.grad(b).unwrap(), vec![0.0, 1.0, 0.0, 1.0], "{}", dev.info());
        let x = g.input("x", &[4]).unwrap();
        let y = g.input("y", &[4]).unwrap();
        let (gt, lt, eq) = (g.gt(x, y).unwrap(), g.lt(x, y).unwrap(), g.eq(x, y).unwrap());
        g.write(x, &[1.0, 2.0, 3.0, -0.0]).unwrap();
        g.write(y, &[2.0, 2.0, 1.0, 0.0]).unwrap();
        g.forward().unwrap();
        assert_eq!(g.value(gt).unwrap(), vec![0.0, 0.0, 1.0, 0.0]);
        assert_eq!(g.value(lt).unwrap(), vec![1.0, 0.0, 0.0, 0.0]);
        assert_eq!(g.value(eq).unwrap(), vec![0.0, 1.0, 0.0, 1.0]);
    }
}

#[test]
fn bad_masks_are_errors() {
    let dev = wgrad::Device::cpu();
    let mut g = Graph::new(&dev);
    let x = g.input("x", &[2, 3]).unwrap();
    let m = g.input("m", &[3, 3]).unwrap();
    let e = g.masked_fill(x, m, 0.0).unwrap_err().to_string();
    assert!(
        e.contains("masked_fill") && e.contains("[2, 3]") && e.contains("[3, 3]"),
        "{e}"
    );
    let ok = g.input("ok", &[3]).unwrap();
    let e = g.masked_fill(x, ok, f32::NAN).unwrap_err().to_string();
    assert!(e.contains("NaN"), "{e}");
    let y = g.input("y", &[3, 2]).unwrap();
    let e = g.where_mask(ok, x, y).unwrap_err().to_string();
    assert!(
        e.contains("where_mask") && e.contains("[2, 3]") && e.contains("[3, 2]"),
        "{e}"
    );
}
