//! Batched matmul against the definition (loops over the batch) on every device, its
//! broadcast gradients, and the shapes PyTorch's `matmul` refuses.

mod common;

use common::{devices, random};
use wgrad::data::Rng;
use wgrad::Graph;

#[test]
fn broadcast_batches_match_loops_and_their_gradients_sum() {
    let (m, k, n) = (3, 5, 4);
    let mut rng = Rng::new(7);
    let a = random(&mut rng, 2 * m * k, -1.0, 1.0); // [2, 1, m, k]
    let b = random(&mut rng, 3 * k * n, -1.0, 1.0); // [1, 3, k, n]
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let an = g.input_with_grad("a", &[2, 1, m, k]).unwrap();
        let bn = g.input_with_grad("b", &[1, 3, k, n]).unwrap();
        let c = g.matmul(an, bn).unwrap();
        assert_eq!(g.shape(c).unwrap(), vec![2, 3, m, n]);
        let loss = g.sum(c).unwrap();
        g.write(an, &a).unwrap();
        g.write(bn, &b).unwrap();
        g.forward().unwrap();
        g.backward(loss).unwrap();
        let (cv, da, db) = (g.value(c).unwrap(), g.grad(an).unwrap(), g.grad(bn).unwrap());
        for i in 0..2 {
            for j in 0..3 {
                for r in 0..m {
                    for col in 0..n {
                        let want: f32 = (0..k)
                            .map(|t| a[i * m * k + r * k + t] * b[j * k * n + t * n + col])
                            .sum();
                        let got = cv[((i * 3 + j) * m + r) * n + col];
                        assert!(
                            (got - want).abs() < 1e-5,
                            "{}: C[{i},{j},{r},{col}] {got} vs {want}",
                            dev.info()
                        );
                    }
                }
            }
        }
        // d(sum C)/dA[i, r, t] = Σ_j Σ_col B[j, t, col]; d/dB[j, t, col] = Σ_i Σ_r A[i, r, t].
        for i in 0..2 {
            for r in 0..m {
                for t in 0..k {
                    let want: f32 = (0..3)
                        .flat_map(|j| (0..n).map(move |col| (j, col)))
                        .map(|(j, col)| b[j * k * n + t * n + col])
                        .sum();
                    let got = da[i * m * k + r * k + t];
                    assert!((got - want).abs() < 1e-4, "{}: dA {got} vs {want}", dev.info());
                }
            }
        }
        for j in 0..3 {
            for t in 0..k {
                for col in 0..n {
                    let want: f32 = (0..2)
                        .flat_map(|i| (0..m).map(move |r| (i, r)))
                        .map(|(i, r)| a[i * m * k + r * k + t])
                        .sum();
                    let got = db[j * k * n + t * n + col];
                    assert!((got - want).abs() < 1e-4, "{}: dB {got} vs {want}", dev.info());
                }
            }
        }
    }
}

#[test]
fn batched_shapes_follow_pytorch_and_mismatches_are_errors() {
    let dev = wgrad::Device::cpu();
    let mut g = Graph::new(&dev);
    let mut shape = |a: &[usize], b: &[usize]| {
        let (x, y) = (g.input("a", a).unwrap(), g.input("b", b).unwrap());
        g.matmul(x, y).map(|c| g.shape(c).unwrap()).map_err(|e| e.to_string())
    };
    assert_eq!(shape(&[4], &[4]), Ok(vec![]));
    assert_eq!(shape(&[4], &[2, 4, 5]), Ok(vec![2, 5]));
    assert_eq!(shape(&[3, 4], &[4]), Ok(vec![3]));
    assert_eq!(shape(&[2, 1, 3, 4], &[5, 4, 6]), Ok(vec![2, 5, 3, 6]));
    for (a, b) in [(&[2, 3, 4][..], &[3, 4, 5][..]), (&[3, 4], &[5, 6]), (&[4], &[5])] {
        let e = shape(a, b).unwrap_err();
        assert!(
            e.contains("matmul") && e.contains(&format!("{a:?}")) && e.contains(&format!("{b:?}")),
            "{e}"
        );
    }
}

#[test]
fn batches_past_the_dispatch_limit_are_split_not_cut() {
    // 70,000 products: more than the 65,535 workgroups one dispatch may have along z; as one
    // batch dimension, and as two (280 × 250, flattened into one workgroup z).
    for dims in [&[70_000][..], &[280, 250]] {
        split_not_cut(dims);
    }
}

fn split_not_cut(dims: &[usize]) {
    let (batch, m, k, n) = (dims.iter().product::<usize>(), 2, 3, 2);
    let shape = |r: usize, c: usize| [dims, &[r, c]].concat();
    let mut rng = Rng::new(9);
    let a = random(&mut rng, batch * m * k, -1.0, 1.0);
    let b = random(&mut rng, batch * k * n, -1.0, 1.0);
    let w = random(&mut rng, k * n, -1.0, 1.0);
    let run = |dev: &wgrad::Device| {
        let mut g = Graph::new(dev);
        let an = g.input_with_grad("a", &shape(m, k)).unwrap();
        let bn = g.input_with_grad("b", &shape(k, n)).unwrap();
        let wn = g.input_with_grad("w", &[k, n]).unwrap();
        let c = g.matmul(an, bn).unwrap();
        // A shared weight: its gradient sums over all 70,000 products.
        let d = g.matmul(an, wn).unwrap();
        let s = g.add(c, d).unwrap();
        let loss = g.sum(s).unwrap();
        g.write(an, &a).unwrap();
        g.write(bn, &b).unwrap();
        g.write(wn, &w).unwrap();
        g.backward(loss).unwrap();
        (
            g.value(s).unwrap(),
            g.grad(an).unwrap(),
            g.grad(bn).unwrap(),
            g.grad(wn).unwrap(),
        )
    };
    let want = run(&wgrad::Device::cpu());
    // The last product is the one a cut dispatch would miss.
    let last = (batch - 1) * m * n;
    let direct: f32 = (0..k)
        .map(|t| a[(batch - 1) * m * k + t] * b[(batch - 1) * k * n + t * n])
        .sum();
    let shared: f32 = (0..k).map(|t| a[(batch - 1) * m * k + t] * w[t * n]).sum();
    assert!((want.0[last] - direct - shared).abs() < 1e-5);
    for dev in devices().into_iter().filter(|d| d.is_gpu()) {
        let got = run(&dev);
        common::assert_close(&got.0, &want.0, 1e-5, 1e-5, &format!("{dims:?} value"));
        common::assert_close(&got.1, &want.1, 1e-5, 1e-5, &format!("{dims:?} d_a"));
        common::assert_close(&got.2, &want.2, 1e-5, 1e-5, &format!("{dims:?} d_b"));
        common::assert_close(
            &got.3,
            &want.3,
            1e-3,
            1e-4,
            &format!("{dims:?} d_w (a sum over 70,000 products)"),
        );
    }
}
