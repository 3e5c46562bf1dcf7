//! One set of parameters, two batch sizes: a training branch and a batch-1 inference branch of
//! one graph read the same parameter buffers. Each runs only its own nodes; the inference branch
//! sees every update, with no copy of any weight.

mod common;

use common::{devices, random};
use wgrad::data::Rng;
use wgrad::{Adam, Device, Graph, NodeId, Optimizer};

struct Net {
    g: Graph,
    w: NodeId,
    b: NodeId,
    x: NodeId,
    y: NodeId,
    loss: NodeId,
    x1: NodeId,
    out1: NodeId,
}

fn build(dev: &Device, batch: usize) -> Net {
    let mut rng = Rng::new(3);
    let mut g = Graph::new(dev);
    let w = g.parameter("w", &[5, 3], &random(&mut rng, 15, -0.5, 0.5)).unwrap();
    let b = g.parameter("b", &[3], &[0.1, -0.2, 0.3]).unwrap();
    let layer = |g: &mut Graph, x: NodeId| {
        let z = g.matmul(x, w)?;
        let z = g.bias_add(z, b)?;
        g.tanh(z)
    };
    // Training branch: batch rows.
    let x = g.input("x", &[batch, 5]).unwrap();
    let h = layer(&mut g, x).unwrap();
    let y = g.input("y", &[batch, 3]).unwrap();
    let loss = g.mse(h, y).unwrap();
    // Inference branch: one row, the same parameters.
    let x1 = g.input("x1", &[1, 5]).unwrap();
    let out1 = layer(&mut g, x1).unwrap();
    g.set_optimizer(Optimizer::Adam(Adam::new(0.05))).unwrap();
    Net {
        g,
        w,
        b,
        x,
        y,
        loss,
        x1,
        out1,
    }
}

/// tanh(x·W + b) for one row, from parameter values read back.
fn by_hand(x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    (0..3)
        .map(|j| (b[j] + (0..5).map(|i| x[i] * w[i * 3 + j]).sum::<f32>()).tanh())
        .collect()
}

#[test]
fn an_inference_branch_reads_the_trained_parameters() {
    for dev in devices() {
        let batch = 64;
        let mut n = build(&dev, batch);
        let mut rng = Rng::new(4);
        let row = random(&mut rng, 5, -1.0, 1.0);
        n.g.write(n.x1, &row).unwrap();
        let before = n.g.value(n.out1).unwrap();
        for step in 0..5 {
            n.g.write(n.x, &random(&mut rng, batch * 5, -1.0, 1.0)).unwrap();
            n.g.write(n.y, &random(&mut rng, batch * 3, -0.5, 0.5)).unwrap();
            n.g.train_step(n.loss).unwrap();
            // The batch-1 branch, read after the update, is computed from the updated weights.
            let (w, b) = (n.g.value(n.w).unwrap(), n.g.value(n.b).unwrap());
            let got = n.g.value(n.out1).unwrap();
            let want = by_hand(&row, &w, &b);
            for (a, e) in got.iter().zip(&want) {
                assert!((a - e).abs() < 1e-5, "{} step {step}: {got:?} vs {want:?}", dev.info());
            }
        }
        let after = n.g.value(n.out1).unwrap();
        assert_ne!(
            before,
            after,
            "{}: training did not reach the inference branch",
            dev.info()
        );
    }
}

#[test]
fn each_branch_runs_only_its_own_nodes() {
    for dev in devices() {
        let batch = 8;
        let mut n = build(&dev, batch);
        let mut rng = Rng::new(5);
        n.g.write(n.x, &random(&mut rng, batch * 5, -1.0, 1.0)).unwrap();
        n.g.write(n.y, &random(&mut rng, batch * 3, -0.5, 0.5)).unwrap();
        n.g.write(n.x1, &random(&mut rng, 5, -1.0, 1.0)).unwrap();
        // Count the dispatches of a full forward, of the inference branch and of the loss branch.
        let dispatches = |g: &mut Graph, f: &dyn Fn(&mut Graph)| {
            let before = g.counters().dispatches;
            f(g);
            g.counters().dispatches - before
        };
        let all = dispatches(&mut n.g, &|g| g.forward().unwrap());
        let (out1, loss) = (n.out1, n.loss);
        n.g.write(n.x1, &random(&mut rng, 5, -1.0, 1.0)).unwrap();
        let infer = dispatches(&mut n.g, &|g| g.forward_to(out1).unwrap());
        let again = dispatches(&mut n.g, &|g| g.forward_to(out1).unwrap());
        let train = dispatches(&mut n.g, &|g| g.forward_to(loss).unwrap());
        assert!(infer > 0 && train > 0, "{}: {infer} / {train}", dev.info());
        assert!(
            infer + train <= all,
            "{}: branches {infer} + {train} dispatches, the whole graph {all}",
            dev.info()
        );
        assert_eq!(again, 0, "{}: a current branch ran again", dev.info());
        // A write to the inference input leaves the training branch to be computed again too
        // (writes are not tracked per branch), and reading a value computes only its branch.
        n.g.write(n.x1, &random(&mut rng, 5, -1.0, 1.0)).unwrap();
        let read = dispatches(&mut n.g, &|g| {
            g.value(out1).unwrap();
        });
        assert_eq!(read, infer, "{}", dev.info());
    }
}

#[test]
fn a_classifier_evaluates_any_number_of_rows_without_padding() {
    use wgrad::train::{Classifier, ClassifierConfig};
    for dev in devices() {
        let full = wgrad::data::digits().unwrap();
        let (train, test) = full.split(0.2, 7).unwrap();
        let cfg = ClassifierConfig {
            batch: 32,
            ..ClassifierConfig::default()
        };
        let mut clf = Classifier::new(&dev, train.n_features, train.n_classes, &cfg).unwrap();
        clf.train_epoch(&train, 0, 10, |_, _, _| {}).unwrap();
        let nf = train.n_features;
        let compiled = |d: &wgrad::Device| match d {
            wgrad::Device::Gpu(g) => g.pipelines_compiled(),
            _ => 0,
        };
        let before = compiled(&dev);
        let (whole, rest) = if dev.is_gpu() { (32, 28) } else { (1024, 476) };
        // 1,500 rows: on the CPU backend a chunk of 1,024 and one of 476, on a GPU 46 chunks of
        // the training batch (32) and one of 28; each size its own branch.
        let all = clf.logits(&full.features[..1500 * nf]).unwrap();
        // On a GPU, evaluation in chunks of the training batch runs the training forward's
        // pipelines: it compiles nothing.
        assert_eq!(compiled(&dev), before, "{}: evaluation compiled pipelines", dev.info());
        assert_eq!(all.len(), 1500 * 10);
        for rows in [1, 3, 33] {
            let part = clf.logits(&full.features[..rows * nf]).unwrap();
            assert_eq!(part.len(), rows * 10);
            for (a, b) in part.iter().zip(&all) {
                assert!((a - b).abs() < 1e-5, "{}: {rows} rows: {a} vs {b}", dev.info());
            }
            let first = rows.min(whole);
            assert!(clf.graph.find(&format!("x_eval{first}")).is_some(), "{}", dev.info());
        }
        assert!(clf.graph.find(&format!("x_eval{whole}")).is_some(), "{}", dev.info());
        assert!(clf.graph.find(&format!("x_eval{rest}")).is_some(), "{}", dev.info());
        // The test set's branch is built by the first evaluation; the next builds nothing.
        let acc = clf.accuracy(&test).unwrap();
        let buffers = clf.graph.counters().live_buffers;
        assert_eq!(clf.accuracy(&test).unwrap(), acc);
        assert_eq!(clf.graph.counters().live_buffers, buffers);
        assert!(acc > 0.8, "{}: accuracy {acc}", dev.info());
    }
}

#[test]
fn adding_a_branch_does_not_rebuild_the_training_step() {
    for dev in devices() {
        let batch = 16;
        let mut n = build(&dev, batch);
        let mut rng = Rng::new(6);
        n.g.write(n.x, &random(&mut rng, batch * 5, -1.0, 1.0)).unwrap();
        n.g.write(n.y, &random(&mut rng, batch * 3, -0.5, 0.5)).unwrap();
        n.g.train_step(n.loss).unwrap();
        let before = n.g.counters();
        // A third branch (3 rows) over the same parameters, built and read between steps.
        let x3 = n.g.input("x3", &[3, 5]).unwrap();
        let z = n.g.matmul(x3, n.w).unwrap();
        let out3 = n.g.bias_add(z, n.b).unwrap();
        n.g.write(x3, &random(&mut rng, 15, -1.0, 1.0)).unwrap();
        n.g.value(out3).unwrap();
        let with_branch = n.g.counters();
        n.g.train_step(n.loss).unwrap();
        let after = n.g.counters();
        // The step compiled nothing and created no buffer (its programs were kept); only the
        // new branch's own nodes and program were added.
        assert_eq!(after.buffers_created, with_branch.buffers_created, "{}", dev.info());
        assert_eq!(
            after.bind_groups_created,
            with_branch.bind_groups_created,
            "{}",
            dev.info()
        );
        assert_eq!(
            after.pipelines_compiled,
            with_branch.pipelines_compiled,
            "{}",
            dev.info()
        );
        assert!(with_branch.buffers_created > before.buffers_created);
    }
}
