//! Embedding: rows of a table by ids, and the table's gradient (a deterministic scatter-add),
//! against loops on every device, at odd sizes and past the loop split; bad ids refused.

mod common;

use common::{devices, random};
use wgrad::data::Rng;
use wgrad::Graph;

/// (values, d_table) of sum(embedding(table, ids) ⊙ r), with r random.
fn run(dev: &wgrad::Device, vocab: usize, dim: usize, ids: &[u32], seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let table = random(&mut rng, vocab * dim, -1.0, 1.0);
    let r = random(&mut rng, ids.len() * dim, -1.0, 1.0);
    let mut g = Graph::new(dev);
    let t = g.parameter("table", &[vocab, dim], &table).unwrap();
    let y = g.input("ids", &[ids.len()]).unwrap();
    g.write_labels(y, ids).unwrap();
    let e = g.embedding(t, y).unwrap();
    let rn = g.input("r", &[ids.len(), dim]).unwrap();
    g.write(rn, &r).unwrap();
    let p = g.mul(e, rn).unwrap();
    let loss = g.sum(p).unwrap();
    g.backward(loss).unwrap();
    let (v, d) = (g.value(e).unwrap(), g.grad(t).unwrap());
    // The definition, by loops.
    for (i, &id) in ids.iter().enumerate() {
        for c in 0..dim {
            assert_eq!(v[i * dim + c], table[id as usize * dim + c], "{}: row {i}", dev.info());
        }
    }
    for w in 0..vocab {
        for c in 0..dim {
            let want: f64 = ids
                .iter()
                .enumerate()
                .filter(|(_, &id)| id as usize == w)
                .map(|(i, _)| r[i * dim + c] as f64)
                .sum();
            let got = d[w * dim + c] as f64;
            assert!(
                (got - want).abs() <= 1e-5 + 1e-5 * want.abs() * (ids.len() as f64).sqrt(),
                "{}: d_table[{w},{c}] {got} vs {want}",
                dev.info()
            );
        }
    }
    (v, d)
}

#[test]
fn embedding_picks_rows_and_its_gradient_adds_them_back() {
    for dev in devices() {
        for (vocab, dim, n) in [(1, 1, 1), (3, 17, 5), (33, 3, 257), (65, 8, 20_000)] {
            let mut rng = Rng::new(vocab as u64);
            let ids: Vec<u32> = (0..n).map(|_| rng.below(vocab) as u32).collect();
            let first = run(&dev, vocab, dim, &ids, 5);
            // Deterministic: the same bits on a second run.
            assert_eq!(
                first,
                run(&dev, vocab, dim, &ids, 5),
                "{}: not reproducible",
                dev.info()
            );
        }
    }
}

#[test]
fn ids_of_any_rank_give_rows_of_that_shape() {
    let dev = wgrad::Device::cpu();
    let mut g = Graph::new(&dev);
    let t = g
        .parameter("table", &[4, 3], &(0..12).map(|i| i as f32).collect::<Vec<_>>())
        .unwrap();
    let y = g.input("ids", &[2, 2]).unwrap();
    g.write_labels(y, &[3, 0, 1, 3]).unwrap();
    let e = g.embedding(t, y).unwrap();
    assert_eq!(g.shape(e).unwrap(), vec![2, 2, 3]);
    assert_eq!(
        g.value(e).unwrap(),
        vec![9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 10.0, 11.0]
    );
}

#[test]
fn bad_ids_and_tables_are_errors() {
    let dev = wgrad::Device::cpu();
    let mut g = Graph::new(&dev);
    let t = g.parameter("table", &[4, 3], &[0.0; 12]).unwrap();
    let y = g.input("ids", &[3]).unwrap();
    g.write_labels(y, &[0, 4, 1]).unwrap();
    let e = g.embedding(t, y).unwrap_err().to_string();
    assert!(
        e.contains("embedding") && e.contains("ids") && e.contains("0..4"),
        "{e}"
    );
    g.write_labels(y, &[0, 3, 1]).unwrap();
    g.embedding(t, y).unwrap();
    let e = g.write_labels(y, &[5, 0, 0]).unwrap_err().to_string();
    assert!(e.contains("5") && e.contains("0..4"), "{e}");
    let flat = g.parameter("flat", &[12], &[0.0; 12]).unwrap();
    let e = g.embedding(flat, y).unwrap_err().to_string();
    assert!(e.contains("embedding") && e.contains("[12]"), "{e}");
    let computed = g.neg(y).unwrap();
    let e = g.embedding(t, computed).unwrap_err().to_string();
    assert!(e.contains("must be an input"), "{e}");
}

#[test]
fn table_gradient_matches_finite_differences() {
    let dev = wgrad::Device::cpu_f64();
    let (vocab, dim) = (5, 3);
    let ids = [4u32, 0, 4, 2, 1, 4];
    let mut rng = Rng::new(9);
    let table: Vec<f64> = random(&mut rng, vocab * dim, -1.0, 1.0)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let r: Vec<f64> = random(&mut rng, ids.len() * dim, -1.0, 1.0)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let mut g = Graph::new(&dev);
    let t = g.input_with_grad("table", &[vocab, dim]).unwrap();
    let y = g.input("ids", &[ids.len()]).unwrap();
    g.write_labels(y, &ids).unwrap();
    let e = g.embedding(t, y).unwrap();
    let rn = g.input("r", &[ids.len(), dim]).unwrap();
    g.write_f64(rn, &r).unwrap();
    // A nonlinear loss, so the check sees more than the identity: sum(tanh(e) ⊙ r).
    let th = g.tanh(e).unwrap();
    let p = g.mul(th, rn).unwrap();
    let loss = g.sum(p).unwrap();
    g.write_f64(t, &table).unwrap();
    g.backward(loss).unwrap();
    let analytic = g.grad_f64(t).unwrap();
    let h = 1e-6;
    let mut x = table.clone();
    for i in 0..x.len() {
        let orig = x[i];
        x[i] = orig + h;
        g.write_f64(t, &x).unwrap();
        let up = g.value_f64(loss).unwrap()[0];
        x[i] = orig - h;
        g.write_f64(t, &x).unwrap();
        let down = g.value_f64(loss).unwrap()[0];
        x[i] = orig;
        let fd = (up - down) / (2.0 * h);
        assert!(
            (analytic[i] - fd).abs() <= 1e-6 + 1e-5 * fd.abs(),
            "d_table[{i}]: {} vs {fd}",
            analytic[i]
        );
    }
}

#[test]
fn index_select_picks_slices_along_any_axis_and_sums_their_gradients() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input_with_grad("x", &[2, 3, 4]).unwrap();
        let data: Vec<f32> = (0..24).map(|i| i as f32).collect();
        g.write(x, &data).unwrap();
        let ids = g.input("ids", &[3]).unwrap();
        g.write_labels(ids, &[2, 0, 2]).unwrap();
        let s = g.index_select(x, 1, ids).unwrap();
        assert_eq!(g.shape(s).unwrap(), vec![2, 3, 4]);
        let loss = g.sum(s).unwrap();
        g.backward(loss).unwrap();
        let v = g.value(s).unwrap();
        for a in 0..2 {
            for (j, &id) in [2usize, 0, 2].iter().enumerate() {
                for c in 0..4 {
                    assert_eq!(v[(a * 3 + j) * 4 + c], data[(a * 3 + id) * 4 + c], "{}", dev.info());
                }
            }
        }
        // Row 2 along axis 1 was picked twice, row 0 once, row 1 never.
        let d = g.grad(x).unwrap();
        for a in 0..2 {
            for (row, want) in [(0usize, 1.0f32), (1, 0.0), (2, 2.0)] {
                for c in 0..4 {
                    assert_eq!(d[(a * 3 + row) * 4 + c], want, "{}: d_x[{a},{row},{c}]", dev.info());
                }
            }
        }
        let e = g.index_select(x, 3, ids).unwrap_err().to_string();
        assert!(e.contains("index_select") && e.contains("axis 3"), "{e}");
        let ids2 = g.input("ids2", &[2]).unwrap();
        g.write_labels(ids2, &[0, 3]).unwrap();
        let e = g.index_select(x, 1, ids2).unwrap_err().to_string();
        assert!(e.contains("0..3"), "{e}");
    }
}

#[test]
fn gradient_of_an_id_repeated_fifty_thousand_times_is_accurate() {
    // One id in 50,000 positions: its gradient row sums 50,000 values (four loop slices).
    let (n, dim) = (50_000, 4);
    let r: Vec<f32> = (0..n * dim).map(|i| 0.1 + (i % 7) as f32 * 1e-3).collect();
    let want: Vec<f64> = (0..dim).map(|c| (0..n).map(|i| r[i * dim + c] as f64).sum()).collect();
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let t = g.parameter("table", &[2, dim], &[0.0; 8]).unwrap();
        let y = g.input("ids", &[n]).unwrap();
        g.write_labels(y, &vec![1; n]).unwrap();
        let e = g.embedding(t, y).unwrap();
        let rn = g.input("r", &[n, dim]).unwrap();
        g.write(rn, &r).unwrap();
        let p = g.mul(e, rn).unwrap();
        let loss = g.sum(p).unwrap();
        g.backward(loss).unwrap();
        let d = g.grad(t).unwrap();
        for c in 0..dim {
            let got = d[dim + c] as f64;
            assert!(
                (got - want[c]).abs() <= 1e-6 * want[c],
                "{}: d_table[1,{c}] {got} vs {}",
                dev.info(),
                want[c]
            );
        }
    }
}
