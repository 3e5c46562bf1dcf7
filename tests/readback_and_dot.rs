//! Asynchronous readback and the DOT export.

mod common;
use common::*;
use wgrad::Graph;

#[test]
fn async_reads_match_blocking_reads() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let w = g.parameter("w", &[3], &[1.0, -2.0, 0.5]).unwrap();
        let s = g.square(w).unwrap();
        let l = g.sum(s).unwrap();
        g.backward(l).unwrap();
        let v = pollster::block_on(g.value_async(s).unwrap()).unwrap();
        let d = pollster::block_on(g.grad_async(w).unwrap()).unwrap();
        assert_eq!(v, g.value(s).unwrap(), "{}", dev.info());
        assert_eq!(d, vec![2.0, -4.0, 1.0], "{}", dev.info());
        assert!(
            g.grad_async(s).is_ok(),
            "intermediate gradients are readable after backward"
        );
    }
}

#[test]
fn dot_export_names_ops_shapes_edges_parameters_and_loss() {
    let mut g = Graph::new(&wgrad::Device::cpu());
    let x = g.input("X", &[4, 3]).unwrap();
    let w = g.parameter("W", &[3, 2], &[0.0; 6]).unwrap();
    let b = g.parameter("B", &[2], &[0.0; 2]).unwrap();
    let xw = g.matmul(x, w).unwrap();
    let z = g.bias_add(xw, b).unwrap();
    let h = g.sigmoid(z).unwrap();
    let loss = g.mean(h).unwrap();
    let before = g.to_dot_with(Some(loss));
    assert!(before.starts_with("digraph wgrad {"));
    assert_eq!(
        before.matches(" -> ").count(),
        6,
        "one edge per input of every op:\n{before}"
    );
    for needle in [
        "matmul [4, 2]",
        "bias_add [4, 2]",
        "sigmoid [4, 2]",
        "mean []",
        "parameter [3, 2]",
        "input [4, 3]",
    ] {
        assert!(before.contains(needle), "missing {needle:?}:\n{before}");
    }
    assert_eq!(before.matches("peripheries=2").count(), 1, "the loss is marked once");
    assert_eq!(before.matches("fillcolor=\"#cfe2ff\"").count(), 2, "two parameters");
    assert!(!before.contains("∇ computed"));
    g.backward(loss).unwrap();
    let after = g.to_dot_with(Some(loss));
    // W, B, XW, Z, H and the loss hold gradients; the input X does not.
    assert_eq!(after.matches("∇ computed").count(), 6, "{after}");
}

#[test]
fn graphs_and_devices_move_between_threads() {
    fn is_send<T: Send>(_: &T) {}
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input_with_grad("x", &[2]).unwrap();
        g.write(x, &[1.0, 2.0]).unwrap();
        let s = g.square(x).unwrap();
        let l = g.sum(s).unwrap();
        is_send(&g);
        let grad = std::thread::spawn(move || {
            g.backward(l).unwrap();
            g.grad(x).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(grad, vec![2.0, 4.0]);
    }
}

#[test]
fn several_reads_may_be_in_flight_at_once() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input("x", &[3]).unwrap();
        let y = g.input("y", &[5]).unwrap();
        g.write(x, &[1.0, 2.0, 3.0]).unwrap();
        g.write(y, &[4.0; 5]).unwrap();
        let a = g.value_async(x).unwrap();
        let b = g.value_async(y).unwrap();
        let dropped = g.value_async(x).unwrap();
        drop(dropped);
        assert_eq!(g.value(y).unwrap(), vec![4.0; 5], "a blocking read beside pending ones");
        assert_eq!(pollster::block_on(b).unwrap(), vec![4.0; 5]);
        assert_eq!(pollster::block_on(a).unwrap(), vec![1.0, 2.0, 3.0]);
        let before = g.counters().buffers_created;
        for _ in 0..5 {
            assert_eq!(g.value(x).unwrap(), vec![1.0, 2.0, 3.0]);
        }
        assert_eq!(
            g.counters().buffers_created,
            before,
            "{}: free staging buffers are reused",
            dev.info()
        );
    }
}
