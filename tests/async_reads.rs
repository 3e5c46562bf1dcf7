//! Asynchronous reads that are dropped before they resolve give their staging buffers back:
//! a thousand dropped reads leave the buffer count and bytes where they were.

mod common;
use common::*;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use wgrad::Graph;

#[test]
fn a_thousand_dropped_reads_allocate_nothing() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let w = g.parameter("w", &[256], &[0.5; 256]).unwrap();
        let s = g.square(w).unwrap();
        let l = g.sum(s).unwrap();
        g.backward(l).unwrap();
        // One resolved read of each kind first, so the staging buffer exists.
        assert_eq!(pollster::block_on(g.value_async(s).unwrap()).unwrap(), vec![0.25; 256]);
        assert_eq!(pollster::block_on(g.grad_async(w).unwrap()).unwrap(), vec![1.0; 256]);
        let before = g.counters();
        for i in 0..1000 {
            let f = if i % 2 == 0 {
                g.value_async(s).unwrap()
            } else {
                g.grad_async(w).unwrap()
            };
            drop(f);
        }
        let after = g.counters();
        assert_eq!(
            (after.buffers_created, after.bytes_allocated),
            (before.buffers_created, before.bytes_allocated),
            "{}: dropped reads created buffers",
            dev.info()
        );
        assert_eq!(
            (after.live_buffers, after.live_bytes),
            (before.live_buffers, before.live_bytes),
            "{}: dropped reads hold buffers",
            dev.info()
        );
        // Reads still work and still allocate nothing.
        assert_eq!(g.value(s).unwrap(), vec![0.25; 256]);
        assert_eq!(pollster::block_on(g.grad_async(w).unwrap()).unwrap(), vec![1.0; 256]);
        assert_eq!(g.counters().buffers_created, before.buffers_created, "{}", dev.info());
        eprintln!(
            "{}: 1000 dropped reads, {} buffers / {} bytes live before and after",
            dev.info(),
            after.live_buffers,
            after.live_bytes
        );
    }
}

#[test]
fn reads_dropped_after_a_poll_or_beside_live_ones_give_their_buffers_back() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input("x", &[1000]).unwrap();
        let data: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        g.write(x, &data).unwrap();
        assert_eq!(g.value(x).unwrap(), data);
        let mut cx = Context::from_waker(Waker::noop());
        // Two reads kept alive need two buffers; dropped ones beside them must not add more.
        let kept1 = g.value_async(x).unwrap();
        let kept2 = g.value_async(x).unwrap();
        let with_two = g.counters();
        for i in 0..300 {
            let mut f = pin!(g.value_async(x).unwrap());
            if i % 3 == 0 {
                // Polled (maybe resolved, maybe pending), then dropped.
                if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                    assert_eq!(v.unwrap(), data);
                }
            }
        }
        let c = g.counters();
        // At most one more buffer: the one the dropped reads share.
        assert!(
            c.buffers_created <= with_two.buffers_created + 1 && c.live_buffers <= with_two.live_buffers + 1,
            "{}: {with_two:?} -> {c:?}",
            dev.info()
        );
        assert_eq!(pollster::block_on(kept1).unwrap(), data, "{}", dev.info());
        assert_eq!(pollster::block_on(kept2).unwrap(), data, "{}", dev.info());
        let settled = g.counters();
        for _ in 0..100 {
            drop(g.value_async(x).unwrap());
            assert_eq!(g.value(x).unwrap(), data);
        }
        assert_eq!(g.counters().buffers_created, settled.buffers_created, "{}", dev.info());
        assert_eq!(g.counters().live_bytes, settled.live_bytes, "{}", dev.info());
    }
}

#[test]
fn a_read_dropped_after_its_graph_is_harmless() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input("x", &[64]).unwrap();
        g.write(x, &[3.0; 64]).unwrap();
        let pending = g.value_async(x).unwrap();
        let resolved_later = g.value_async(x).unwrap();
        drop(g);
        drop(pending);
        assert_eq!(pollster::block_on(resolved_later).unwrap(), vec![3.0; 64]);
    }
}

#[test]
fn the_classifier_async_reads_match_the_blocking_ones() {
    use wgrad::train::{Classifier, ClassifierConfig};
    for dev in common::devices() {
        let (train, test) = wgrad::data::digits().unwrap().split(0.2, 3).unwrap();
        let mut clf = Classifier::new(&dev, train.n_features, train.n_classes, &ClassifierConfig::default()).unwrap();
        clf.train_epoch(&train, 0, 5, |_, _, _| {}).unwrap();
        let loss = pollster::block_on(clf.loss_async()).unwrap();
        assert_eq!(loss, clf.loss().unwrap(), "{}", dev.info());
        let la = pollster::block_on(clf.logits_async(&test.features)).unwrap();
        assert_eq!(la, clf.logits(&test.features).unwrap(), "{}", dev.info());
        let acc = pollster::block_on(clf.accuracy_async(&test)).unwrap();
        assert_eq!(acc, clf.accuracy(&test).unwrap(), "{}", dev.info());
        assert!(pollster::block_on(clf.logits_async(&[0.0; 65])).is_err());
    }
}

#[test]
fn a_training_step_resolves_to_its_loss() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let w = g.parameter("w", &[4], &[1.0, -2.0, 0.5, 3.0]).unwrap();
        let s = g.square(w).unwrap();
        let l = g.sum(s).unwrap();
        g.set_optimizer(wgrad::Sgd::new(0.1)).unwrap();
        // Σ w² = 14.25 before the first update; each step scales w by 0.8 (w − 0.1·2w).
        let mut want = 14.25f32;
        for _ in 0..3 {
            let got = pollster::block_on(g.train_step_async(l).unwrap()).unwrap();
            assert!((got[0] - want).abs() < 1e-5, "{}: {} vs {want}", dev.info(), got[0]);
            want *= 0.64;
        }
    }
}
