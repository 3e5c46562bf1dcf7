//! Every error case returns the right `Err` with a clear message, and the graph keeps working.

mod common;
use common::*;
use wgrad::{Device, Error, GpuOptions, Graph, Sgd};

/// A small graph that works; used to prove the graph is still usable after an error.
fn still_works(g: &mut Graph) {
    let a = g.input_with_grad("ok_a", &[2, 2]).unwrap();
    g.write(a, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let s = g.square(a).unwrap();
    let l = g.sum(s).unwrap();
    g.backward(l).unwrap();
    assert_eq!(g.scalar(l).unwrap(), 30.0);
    assert_eq!(g.grad(a).unwrap(), vec![2.0, 4.0, 6.0, 8.0]);
}

#[test]
fn shape_mismatch_names_op_and_shapes() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let a = g.input("a", &[2, 3]).unwrap();
        let b = g.input("b", &[4, 5]).unwrap();
        let n = g.len();
        let e = g.matmul(a, b).unwrap_err();
        assert!(
            matches!(&e, Error::ShapeMismatch { op: "matmul", lhs, rhs } if lhs.0 == [2, 3] && rhs.0 == [4, 5]),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "matmul: shape mismatch between [2, 3] and [4, 5]");
        assert_eq!(g.len(), n, "a rejected op adds no node");
        let bias = g.input("bias", &[4]).unwrap();
        assert!(matches!(
            g.bias_add(a, bias),
            Err(Error::ShapeMismatch { op: "bias_add", .. })
        ));
        let c = g.input("c", &[3, 2]).unwrap();
        assert!(matches!(g.add(a, c), Err(Error::ShapeMismatch { op: "add", .. })));
        assert!(matches!(g.mse(a, c), Err(Error::ShapeMismatch { op: "mse", .. })));
        assert!(matches!(
            g.reshape(a, &[4]),
            Err(Error::ShapeMismatch { op: "reshape", .. })
        ));
        assert!(matches!(
            g.sum_axis(a, 2, false),
            Err(Error::InvalidShape { op: "sum", .. })
        ));
        let v = g.input("v", &[6]).unwrap();
        assert!(matches!(
            g.transpose(v),
            Err(Error::InvalidShape { op: "transpose", .. })
        ));
        assert!(matches!(g.input("z", &[3, 0]), Err(Error::InvalidShape { .. })));
        assert!(matches!(
            g.input("r5", &[1, 1, 1, 1, 2]),
            Err(Error::InvalidShape { .. })
        ));
        assert!(matches!(g.scale(a, f32::NAN), Err(Error::InvalidArgument { .. })));
        let labels = g.input("labels", &[3]).unwrap();
        assert!(matches!(
            g.softmax_cross_entropy(a, labels),
            Err(Error::ShapeMismatch {
                op: "softmax_cross_entropy",
                ..
            })
        ));
        still_works(&mut g);
    }
}

#[test]
fn backward_needs_a_scalar_that_depends_on_a_gradient() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let w = g.parameter("w", &[2, 2], &[1.0; 4]).unwrap();
        let y = g.sigmoid(w).unwrap();
        let e = g.backward(y).unwrap_err();
        assert!(
            matches!(&e, Error::NonScalarLoss { shape, .. } if shape.0 == [2, 2]),
            "{e:?}"
        );
        let x = g.input("x", &[2]).unwrap();
        let s = g.sum(x).unwrap();
        assert!(matches!(
            g.backward(s),
            Err(Error::InvalidArgument { op: "backward", .. })
        ));
        still_works(&mut g);
    }
}

#[test]
fn node_from_another_graph_is_rejected() {
    for dev in devices() {
        let mut g1 = Graph::new(&dev);
        let mut g2 = Graph::new(&dev);
        let a = g1.input("a", &[2]).unwrap();
        let _b = g2.input("b", &[2]).unwrap();
        let e = g2.sigmoid(a).unwrap_err();
        assert!(matches!(e, Error::ForeignNode { node: 0, .. }), "{e:?}");
        assert!(matches!(g2.value(a), Err(Error::ForeignNode { .. })));
        assert!(matches!(g2.write(a, &[1.0, 2.0]), Err(Error::ForeignNode { .. })));
        still_works(&mut g2);
    }
}

#[test]
fn reading_a_gradient_never_computed_is_an_error() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let w = g.parameter("w", &[2], &[1.0, 2.0]).unwrap();
        let x = g.input("x", &[2]).unwrap();
        let e = g.grad(w).unwrap_err();
        assert!(
            matches!(&e, Error::GradientNotComputed { name, .. } if name == "w"),
            "{e:?}"
        );
        let p = g.mul(w, x).unwrap();
        let l = g.sum(p).unwrap();
        g.write(x, &[3.0, 4.0]).unwrap();
        g.backward(l).unwrap();
        assert_eq!(g.grad(w).unwrap(), vec![3.0, 4.0]);
        assert!(
            matches!(g.grad(x), Err(Error::GradientNotComputed { .. })),
            "inputs get no gradient unless asked"
        );
        // A second loss that does not reach `p`: p's gradient from the first pass is stale, so it is refused.
        let sq = g.square(w).unwrap();
        let l2 = g.sum(sq).unwrap();
        g.backward(l2).unwrap();
        assert!(matches!(g.grad(p), Err(Error::GradientNotComputed { .. })));
        still_works(&mut g);
    }
}

#[test]
fn bad_writes_are_rejected() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let x = g.input("x", &[2, 3]).unwrap();
        let e = g.write(x, &[1.0; 5]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::LengthMismatch {
                    expected: 6,
                    got: 5,
                    ..
                }
            ),
            "{e:?}"
        );
        let s = g.sigmoid(x).unwrap();
        assert!(matches!(
            g.write(s, &[0.0; 6]),
            Err(Error::NotWritable { op: "sigmoid", .. })
        ));
        assert!(matches!(
            g.parameter("p", &[2], &[1.0]),
            Err(Error::LengthMismatch { .. })
        ));
        let logits = g.input("logits", &[2, 3]).unwrap();
        let labels = g.input("labels", &[2]).unwrap();
        let _l = g.softmax_cross_entropy(logits, labels).unwrap();
        let e = g.write_labels(labels, &[0, 3]).unwrap_err();
        assert!(e.to_string().contains("not a class index in 0..3"), "{e}");
        assert!(g.write(labels, &[0.5, 1.0]).is_err(), "fractional labels are rejected");
        g.write_labels(labels, &[0, 2]).unwrap();
        assert!(matches!(g.step(), Err(Error::NoOptimizer)));
        assert!(matches!(
            g.set_optimizer(Sgd {
                lr: -1.0,
                momentum: 0.0,
                weight_decay: 0.0
            }),
            Err(Error::InvalidArgument { .. })
        ));
        still_works(&mut g);
    }
}

#[test]
fn oversized_tensor_is_refused_with_the_limit_named() {
    let Some(gpu) = gpu() else { return };
    let mut g = Graph::new(&gpu);
    // 2^30 floats = 4 GiB: beyond the storage-binding limit of every adapter we target.
    let e = g.input("huge", &[1 << 15, 1 << 15]).unwrap_err();
    assert!(matches!(&e, Error::LimitExceeded { .. }), "{e:?}");
    assert!(
        e.to_string().contains("max_storage_buffer_binding_size") || e.to_string().contains("max_buffer_size"),
        "{e}"
    );
    still_works(&mut g);
}

#[test]
fn small_device_limits_are_respected() {
    if gpu().is_none() {
        return;
    }
    let mut limits = wgrad::wgpu::Limits::downlevel_defaults();
    limits.max_storage_buffer_binding_size = 1 << 16;
    let dev = Device::gpu_with(&GpuOptions {
        limits: Some(limits),
        ..Default::default()
    })
    .unwrap();
    let mut g = Graph::new(&dev);
    let e = g.input("big", &[128, 129]).unwrap_err(); // 66,048 bytes > 65,536
    assert!(matches!(&e, Error::LimitExceeded { limit: 65536, .. }), "{e:?}");
    let ok = g.input("fits", &[128, 128]).unwrap();
    g.write(ok, &vec![1.0; 128 * 128]).unwrap();
    let s = g.sum(ok).unwrap();
    assert_eq!(g.scalar(s).unwrap(), 16384.0);
    still_works(&mut g);
}

#[test]
fn bad_matmul_tiles_are_refused_when_the_device_opens() {
    use wgrad::MatmulTiles;
    let limits = wgrad::wgpu::Limits::downlevel_defaults();
    let t = |bm, bn, bk, tm, tn| MatmulTiles { bm, bn, bk, tm, tn };
    for (tiles, why) in [
        (t(64, 64, 16, 5, 4), "tm and tn must be 4 or 8"),
        (t(60, 64, 16, 8, 4), "multiple of tm"),
        (t(64, 64, 6, 4, 4), "bk must be"),
        (t(256, 256, 8, 4, 4), "workgroup exceeds"),
        (t(128, 128, 32, 8, 8), "workgroup memory"),
        (t(u32::MAX - 7, u32::MAX - 7, 4, 8, 8), "workgroup exceeds"),
        (t(8, 8, u32::MAX - 3, 8, 8), "workgroup memory"),
    ] {
        let e = tiles.check(&limits).unwrap_err();
        assert!(e.to_string().contains(why), "{tiles:?}: {e}");
    }
    assert!(MatmulTiles::LARGE.check(&limits).is_ok());
    assert!(MatmulTiles::SMALL.check(&limits).is_ok());
    if gpu().is_none() {
        return;
    }
    let e = Device::gpu_with(&GpuOptions {
        tiles: Some(t(64, 64, 16, 3, 4)),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(&e, Error::InvalidArgument { .. }), "{e:?}");
}

#[test]
fn device_selection_errors_are_clear() {
    let e = Device::from_name("tpu").unwrap_err();
    assert!(e.to_string().contains("expected auto, gpu or cpu"), "{e}");
    let e = Device::gpu_with(&GpuOptions {
        adapter_name: Some("no-such-adapter-xyz".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(e, Error::NoAdapter(_)), "{e:?}");
    assert_eq!(Device::cpu().info().kind, "cpu");
}

#[test]
fn parameters_added_after_set_optimizer_are_not_silently_skipped() {
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let w = g.parameter("w", &[2], &[1.0, 2.0]).unwrap();
        g.set_optimizer(Sgd::new(0.1)).unwrap();
        let v = g.parameter("v", &[2], &[3.0, 4.0]).unwrap();
        let p = g.mul(w, v).unwrap();
        let l = g.sum(p).unwrap();
        let e = g.train_step(l).unwrap_err();
        assert!(e.to_string().contains("call set_optimizer again"), "{e}");
        g.set_optimizer(Sgd::new(0.1)).unwrap();
        g.train_step(l).unwrap();
        // w −= 0.1·v and v −= 0.1·w (both from the values before the step).
        assert_eq!(g.value(w).unwrap(), vec![0.7, 1.6]);
        assert_eq!(g.value(v).unwrap(), vec![2.9, 3.8]);
    }
}

#[test]
fn parameters_round_trip_through_safetensors_all_or_nothing() {
    let dir = std::env::temp_dir().join(format!("wgrad-params-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, dev) in devices().into_iter().enumerate() {
        let build = |dev: &wgrad::Device, w0: f32| {
            let mut g = Graph::new(dev);
            let w = g.parameter("w", &[2, 3], &[w0; 6]).unwrap();
            let b = g.parameter("b", &[3], &[w0; 3]).unwrap();
            (g, w, b)
        };
        let (mut g, w, _) = build(&dev, 0.0);
        g.write(w, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let path = dir.join(format!("p{i}.safetensors"));
        g.save_parameters(&path).unwrap();
        let (mut h, hw, hb) = build(&dev, 9.0);
        h.load_parameters(&path).unwrap();
        assert_eq!(h.value(hw).unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(h.value(hb).unwrap(), vec![0.0; 3]);
        // A set missing `b`, or with a wrong shape, is refused and changes nothing.
        let (mut k, kw, _) = build(&dev, 7.0);
        let only_w = vec![wgrad::io::NamedTensor::new("w", vec![2, 3], vec![0.5; 6])];
        let e = k.load_parameter_tensors(&only_w).unwrap_err();
        assert!(matches!(&e, Error::Tensor { name, .. } if name == "b"), "{e:?}");
        let wrong = vec![
            wgrad::io::NamedTensor::new("w", vec![3, 2], vec![0.5; 6]),
            wgrad::io::NamedTensor::new("b", vec![3], vec![0.5; 3]),
        ];
        assert!(k.load_parameter_tensors(&wrong).is_err());
        assert_eq!(k.value(kw).unwrap(), vec![7.0; 6], "nothing half-loaded");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
