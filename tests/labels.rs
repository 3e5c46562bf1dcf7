//! Class labels are checked against the class count whenever both are known: when labels are
//! written after the loss exists, and when the loss is created after labels were written.
//! Before, labels written first skipped the check: forward treated 7 as the last of 3 classes
//! (loss ln 3) while backward treated it as no class (that row's gradient summed to 0.5).

mod common;

use common::devices;
use wgrad::Graph;

#[test]
fn labels_written_before_the_loss_are_checked_when_it_is_created() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let logits = g.input_with_grad("logits", &[2, 3]).unwrap();
        let y = g.input("y", &[2]).unwrap();
        g.write(logits, &[0.0; 6]).unwrap();
        g.write_labels(y, &[7, 1]).unwrap(); // no loss yet: the class count is unknown
        let err = g
            .softmax_cross_entropy(logits, y)
            .expect_err("label 7 of 3 classes must be refused when the loss is created");
        let msg = err.to_string();
        assert!(
            msg.contains("softmax_cross_entropy") && msg.contains('7') && msg.contains("0..3"),
            "{}: unhelpful error: {msg}",
            dev.info()
        );
        // Nothing was added; valid labels make the same call succeed.
        g.write_labels(y, &[2, 1]).unwrap();
        let loss = g.softmax_cross_entropy(logits, y).unwrap();
        // From now on writes are checked as they happen.
        assert!(
            g.write_labels(y, &[0, 3]).is_err(),
            "{}: label 3 of 3 classes accepted",
            dev.info()
        );
        assert!(g.write(y, &[0.5, 1.0]).is_err(), "{}: label 0.5 accepted", dev.info());
        g.backward(loss).unwrap();
        // ln 3 per row on equal logits; each row's gradient sums to 0 (probs − onehot).
        let l = g.scalar(loss).unwrap();
        assert!((l - 3f32.ln()).abs() < 1e-6, "{}: loss {l}, want ln 3", dev.info());
        let d = g.grad(logits).unwrap();
        for r in 0..2 {
            let s: f32 = d[3 * r..3 * r + 3].iter().sum();
            assert!(
                s.abs() < 1e-6,
                "{}: row {r} of the gradient sums to {s}, not 0",
                dev.info()
            );
        }
        let want = [1.0 / 6.0, 1.0 / 6.0, -1.0 / 3.0, 1.0 / 6.0, -1.0 / 3.0, 1.0 / 6.0];
        for (a, b) in d.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{}: gradient {d:?}, want {want:?}", dev.info());
        }
    }
}
