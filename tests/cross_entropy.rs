//! Cross-entropy with an ignore index against the definition (mean over the rows kept) on
//! every device, its gradient against finite differences, and bad labels refused.

mod common;

use common::{devices, random};
use wgrad::data::Rng;
use wgrad::{Device, Graph};

const IGNORE: u32 = 99;

fn reference(logits: &[f32], labels: &[u32], classes: usize) -> f64 {
    let (mut total, mut count) = (0.0, 0);
    for (r, &l) in labels.iter().enumerate() {
        if l == IGNORE {
            continue;
        }
        let row: Vec<f64> = logits[r * classes..(r + 1) * classes]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        total += lse - row[l as usize];
        count += 1;
    }
    total / count as f64
}

#[test]
fn ignored_rows_are_left_out_of_the_mean_and_the_gradient() {
    let (rows, classes) = (6, 5);
    let logits = random(&mut Rng::new(4), rows * classes, -3.0, 3.0);
    let labels = [2u32, IGNORE, 0, 4, IGNORE, 1];
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input_with_grad("logits", &[rows, classes]).unwrap();
        let y = g.input("labels", &[rows]).unwrap();
        g.write(x, &logits).unwrap();
        g.write_labels(y, &labels).unwrap();
        let loss = g.cross_entropy_ignore(x, y, IGNORE).unwrap();
        g.backward(loss).unwrap();
        let got = g.scalar(loss).unwrap() as f64;
        let want = reference(&logits, &labels, classes);
        assert!((got - want).abs() < 1e-5, "{}: {got} vs {want}", dev.info());
        let d = g.grad(x).unwrap();
        for r in [1, 4] {
            assert!(
                d[r * classes..(r + 1) * classes].iter().all(|&v| v == 0.0),
                "{}: ignored row {r} got a gradient",
                dev.info()
            );
        }
        // Every row ignored: NaN, as in PyTorch.
        g.write_labels(y, &[IGNORE; 6]).unwrap();
        assert!(g.scalar(loss).unwrap().is_nan(), "{}", dev.info());
    }
}

#[test]
fn gradient_matches_finite_differences() {
    let dev = Device::cpu_f64();
    let (rows, classes) = (4, 3);
    let mut x0: Vec<f64> = random(&mut Rng::new(8), rows * classes, -2.0, 2.0)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let mut g = Graph::new(&dev);
    let x = g.input_with_grad("logits", &[rows, classes]).unwrap();
    let y = g.input("labels", &[rows]).unwrap();
    g.write_labels(y, &[1, IGNORE, 2, 0]).unwrap();
    let loss = g.cross_entropy_ignore(x, y, IGNORE).unwrap();
    g.write_f64(x, &x0).unwrap();
    g.backward(loss).unwrap();
    let analytic = g.grad_f64(x).unwrap();
    for e in 0..x0.len() {
        let orig = x0[e];
        x0[e] = orig + 1e-6;
        g.write_f64(x, &x0).unwrap();
        let up = g.value_f64(loss).unwrap()[0];
        x0[e] = orig - 1e-6;
        g.write_f64(x, &x0).unwrap();
        let down = g.value_f64(loss).unwrap()[0];
        x0[e] = orig;
        let fd = (up - down) / 2e-6;
        assert!(
            (analytic[e] - fd).abs() <= 1e-6 + 1e-5 * fd.abs(),
            "[{e}] {} vs {fd}",
            analytic[e]
        );
    }
}

#[test]
fn bad_labels_are_refused() {
    let dev = Device::cpu();
    let mut g = Graph::new(&dev);
    let x = g.input("logits", &[3, 4]).unwrap();
    let y = g.input("labels", &[3]).unwrap();
    g.write_labels(y, &[0, 7, IGNORE]).unwrap();
    let e = g.cross_entropy_ignore(x, y, IGNORE).unwrap_err().to_string();
    assert!(
        e.contains("cross_entropy_ignore") && e.contains("7") && e.contains("ignore index 99"),
        "{e}"
    );
    g.write_labels(y, &[0, 3, IGNORE]).unwrap();
    g.cross_entropy_ignore(x, y, IGNORE).unwrap();
    let e = g.write_labels(y, &[4, 0, 0]).unwrap_err().to_string();
    assert!(e.contains("0..4"), "{e}");
    let e = g.softmax_cross_entropy(x, y).unwrap_err().to_string();
    assert!(e.contains("ignore index"), "{e}");
    let z = g.input("z", &[2]).unwrap();
    let e = g.cross_entropy_ignore(x, z, IGNORE).unwrap_err().to_string();
    assert!(e.contains("[3, 4]") && e.contains("[2]"), "{e}");
}
