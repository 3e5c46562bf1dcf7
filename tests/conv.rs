//! Convolution and pooling against their definitions (direct loops over output pixels and
//! window elements, in f64) on every device, convolutions both as implicit GEMMs and through an
//! explicit im2col: values and the gradients of input, weight and bias, at odd sizes with
//! stride, padding, dilation and groups; a grid past 65,535 workgroups; bad shapes and options
//! refused with errors naming the op.

mod common;

use common::{devices, gpu, random};
use wgrad::data::Rng;
use wgrad::{Conv2dOptions, Device, Graph, Pool2dOptions};

/// A convolution problem: x [n, c, h, w], weight [oc, c / groups, kh, kw].
#[derive(Clone, Copy, Debug)]
struct Problem {
    x: [usize; 4],
    w: [usize; 4],
    o: Conv2dOptions,
}

impl Problem {
    fn out(&self) -> [usize; 4] {
        let o = |a: usize| {
            (self.x[2 + a] + 2 * self.o.padding[a] - self.o.dilation[a] * (self.w[2 + a] - 1) - 1) / self.o.stride[a]
                + 1
        };
        [self.x[0], self.w[0], o(0), o(1)]
    }

    /// The input coordinate output position `o` reads with kernel element `k` along axis `a`.
    fn src(&self, a: usize, o: usize, k: usize) -> Option<usize> {
        (o * self.o.stride[a] + k * self.o.dilation[a])
            .checked_sub(self.o.padding[a])
            .filter(|&s| s < self.x[2 + a])
    }

    /// y, and the gradients of Σ y ⊙ r with respect to x, weight and bias, by the definition.
    #[allow(clippy::type_complexity)]
    fn reference(&self, x: &[f32], w: &[f32], b: &[f32], r: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let [n, c, h, wd] = self.x;
        let [oc, cg, kh, kw] = self.w;
        let [_, _, oh, ow] = self.out();
        let ocg = oc / self.o.groups;
        let mut y = vec![0.0f64; n * oc * oh * ow];
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; oc]);
        for ni in 0..n {
            for o in 0..oc {
                let g = o / ocg;
                for yy in 0..oh {
                    for xx in 0..ow {
                        let yi = ((ni * oc + o) * oh + yy) * ow + xx;
                        let mut s = b[o] as f64;
                        let rv = r[yi] as f64;
                        db[o] += rv;
                        for ci in 0..cg {
                            let ch = g * cg + ci;
                            for ky in 0..kh {
                                let Some(sy) = self.src(0, yy, ky) else { continue };
                                for kx in 0..kw {
                                    let Some(sx) = self.src(1, xx, kx) else { continue };
                                    let xi = ((ni * c + ch) * h + sy) * wd + sx;
                                    let wi = ((o * cg + ci) * kh + ky) * kw + kx;
                                    s += x[xi] as f64 * w[wi] as f64;
                                    dx[xi] += rv * w[wi] as f64;
                                    dw[wi] += rv * x[xi] as f64;
                                }
                            }
                        }
                        y[yi] = s;
                    }
                }
            }
        }
        (y, dx, dw, db)
    }
}

fn close(got: &[f32], want: &[f64], scale: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-5 * scale + 2e-5 * w.abs();
        assert!((g as f64 - w).abs() <= tol, "{what}[{i}]: {g} vs {w}");
    }
}

fn check_conv(dev: &Device, p: Problem, implicit: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let nx: usize = p.x.iter().product();
    let nw: usize = p.w.iter().product();
    let out = p.out();
    let x = random(&mut rng, nx, -1.0, 1.0);
    let w = random(&mut rng, nw, -1.0, 1.0);
    let b = random(&mut rng, p.w[0], -1.0, 1.0);
    let r = random(&mut rng, out.iter().product(), -1.0, 1.0);
    let mut g = Graph::new(dev);
    g.set_implicit_conv(Some(implicit));
    let xn = g.input_with_grad("x", &p.x).unwrap();
    let wn = g.parameter("w", &p.w, &w).unwrap();
    let bn = g.parameter("b", &[p.w[0]], &b).unwrap();
    let nodes = g.len();
    let y = g.conv2d(xn, wn, Some(bn), p.o).unwrap();
    assert_eq!(g.shape(y).unwrap(), out, "{p:?}");
    // The implicit GEMM writes no window matrix: no im2col node (and no buffer for one).
    let ops: Vec<&str> = (nodes..g.len())
        .map(|i| g.op_name(g.ids().nth(i).unwrap()).unwrap())
        .collect();
    assert_eq!(ops.contains(&"im2col"), !implicit, "{ops:?}");
    assert_eq!(ops.contains(&"window_matmul"), implicit, "{ops:?}");
    let rn = g.input("r", &out).unwrap();
    let prod = g.mul(y, rn).unwrap();
    let loss = g.sum(prod).unwrap();
    g.write(xn, &x).unwrap();
    g.write(rn, &r).unwrap();
    g.backward(loss).unwrap();
    let (wy, wdx, wdw, wdb) = p.reference(&x, &w, &b, &r);
    // Terms per sum: a window (values, d_w) or the windows reading a pixel (d_x).
    let terms = ((p.w[1] * p.w[2] * p.w[3]) as f64).sqrt();
    let what = format!("{} implicit={implicit} {p:?}", dev.info());
    close(&g.value(y).unwrap(), &wy, terms, &format!("{what} y"));
    close(&g.grad(xn).unwrap(), &wdx, terms, &format!("{what} d_x"));
    let rows = ((out[0] * out[2] * out[3]) as f64).sqrt();
    close(&g.grad(wn).unwrap(), &wdw, rows, &format!("{what} d_w"));
    close(&g.grad(bn).unwrap(), &wdb, rows, &format!("{what} d_b"));
}

fn opts(stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], groups: usize) -> Conv2dOptions {
    Conv2dOptions {
        stride,
        padding,
        dilation,
        groups,
    }
}

#[test]
fn conv2d_matches_its_definition() {
    let problems = [
        // 1×1 everything, then odd sizes past any tile.
        Problem {
            x: [1, 1, 1, 1],
            w: [1, 1, 1, 1],
            o: Conv2dOptions::default(),
        },
        Problem {
            x: [2, 3, 17, 33],
            w: [5, 3, 3, 3],
            o: Conv2dOptions::default().padding(1),
        },
        Problem {
            x: [3, 1, 28, 28],
            w: [6, 1, 5, 5],
            o: Conv2dOptions::default(),
        },
        // Rectangular kernel, stride, asymmetric padding and dilation.
        Problem {
            x: [2, 2, 13, 9],
            w: [3, 2, 3, 2],
            o: opts([2, 3], [1, 2], [2, 1], 1),
        },
        // Groups (and depthwise: one channel per group).
        Problem {
            x: [2, 4, 7, 11],
            w: [6, 2, 3, 3],
            o: opts([1, 2], [1, 1], [1, 2], 2),
        },
        Problem {
            x: [1, 3, 5, 5],
            w: [6, 1, 3, 3],
            o: opts([1, 1], [1, 1], [1, 1], 3),
        },
        // Padding larger than the kernel (windows entirely in the padding).
        Problem {
            x: [1, 2, 3, 4],
            w: [2, 2, 2, 2],
            o: opts([1, 1], [3, 2], [1, 1], 1),
        },
        // 257 output columns: not a multiple of any tile.
        Problem {
            x: [1, 2, 3, 259],
            w: [33, 2, 3, 3],
            o: Conv2dOptions::default(),
        },
        // Window rows of 1 and of more than 8 pixels (the CPU copies up to 8 as fixed-size
        // blocks), padded and not.
        Problem {
            x: [2, 2, 6, 14],
            w: [3, 2, 2, 11],
            o: opts([1, 1], [1, 2], [1, 1], 1),
        },
        Problem {
            x: [1, 3, 5, 9],
            w: [2, 3, 3, 1],
            o: opts([2, 1], [0, 0], [1, 1], 1),
        },
    ];
    for dev in devices() {
        for (i, p) in problems.iter().enumerate() {
            for implicit in [false, true] {
                check_conv(&dev, *p, implicit, 10 + i as u64);
            }
        }
    }
}

/// max or mean of each window by loops, and the gradient of Σ y ⊙ r (max: to the first largest).
fn pool_reference(x: &[f32], s: [usize; 4], o: Pool2dOptions, max: bool, r: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let [n, c, h, w] = s;
    let out = |a: usize| (s[2 + a] + 2 * o.padding[a] - o.dilation[a] * (o.kernel[a] - 1) - 1) / o.stride[a] + 1;
    let (oh, ow) = (out(0), out(1));
    let src = |a: usize, p: usize, k: usize| {
        (p * o.stride[a] + k * o.dilation[a])
            .checked_sub(o.padding[a])
            .filter(|&v| v < s[2 + a])
    };
    let mut y = vec![0.0; n * c * oh * ow];
    let mut dx = vec![0.0; x.len()];
    let kk = (o.kernel[0] * o.kernel[1]) as f64;
    for plane in 0..n * c {
        for yy in 0..oh {
            for xx in 0..ow {
                let yi = (plane * oh + yy) * ow + xx;
                let mut best: Option<(f64, usize)> = None;
                let mut sum = 0.0;
                let mut read = vec![];
                for ky in 0..o.kernel[0] {
                    for kx in 0..o.kernel[1] {
                        if let (Some(sy), Some(sx)) = (src(0, yy, ky), src(1, xx, kx)) {
                            let xi = (plane * h + sy) * w + sx;
                            let v = x[xi] as f64;
                            sum += v;
                            read.push(xi);
                            if best.is_none_or(|(b, _)| v > b) {
                                best = Some((v, xi));
                            }
                        }
                    }
                }
                if max {
                    let (v, at) = best.expect("every window reads the image");
                    y[yi] = v;
                    dx[at] += r[yi] as f64;
                } else {
                    y[yi] = sum / kk;
                    for xi in read {
                        dx[xi] += r[yi] as f64 / kk;
                    }
                }
            }
        }
    }
    (y, dx)
}

#[test]
fn pooling_matches_its_definition() {
    let cases = [
        ([1, 1, 1, 1], Pool2dOptions::new(1)),
        ([2, 3, 8, 8], Pool2dOptions::new(2)),
        ([2, 3, 17, 33], Pool2dOptions::new(3).stride(2).padding(1)),
        (
            [1, 2, 9, 7],
            Pool2dOptions {
                kernel: [2, 3],
                stride: [1, 2],
                padding: [1, 1],
                dilation: [1, 1],
            },
        ),
        ([3, 1, 5, 257], Pool2dOptions::new(2).stride(1)),
    ];
    for dev in devices() {
        for (i, &(s, o)) in cases.iter().enumerate() {
            for max in [true, false] {
                let mut rng = Rng::new(100 + i as u64);
                let x = random(&mut rng, s.iter().product(), -1.0, 1.0);
                let mut g = Graph::new(&dev);
                let xn = g.input_with_grad("x", &s).unwrap();
                let y = if max { g.max_pool2d(xn, o) } else { g.avg_pool2d(xn, o) }.unwrap();
                let ys = g.shape(y).unwrap();
                let r = random(&mut rng, ys.iter().product(), -1.0, 1.0);
                let rn = g.input("r", &ys).unwrap();
                let prod = g.mul(y, rn).unwrap();
                let loss = g.sum(prod).unwrap();
                g.write(xn, &x).unwrap();
                g.write(rn, &r).unwrap();
                g.backward(loss).unwrap();
                let (wy, wdx) = pool_reference(&x, s, o, max, &r);
                let what = format!("{} {} {s:?} {o:?}", dev.info(), if max { "max" } else { "avg" });
                close(&g.value(y).unwrap(), &wy, 1.0, &format!("{what} y"));
                close(&g.grad(xn).unwrap(), &wdx, 2.0, &format!("{what} d_x"));
            }
        }
    }
}

#[test]
fn a_window_matrix_past_the_workgroup_limit_matches_the_cpu() {
    // 1 × 1 × 1450 × 1450 with a 3×3 window: 18.9 M window elements, more than 65,535
    // workgroups of 256, so the grid folds into two dimensions (im2col and col2im alike).
    let Some(gpu) = gpu() else { return };
    let p = Problem {
        x: [1, 1, 1450, 1450],
        w: [1, 1, 3, 3],
        o: Conv2dOptions::default().padding(1),
    };
    let mut rng = Rng::new(5);
    let x = random(&mut rng, 1450 * 1450, -1.0, 1.0);
    let w = random(&mut rng, 9, -1.0, 1.0);
    let run = |dev: &Device, implicit: bool| {
        let mut g = Graph::new(dev);
        g.set_implicit_conv(Some(implicit));
        let xn = g.input_with_grad("x", &p.x).unwrap();
        let wn = g.parameter("w", &p.w, &w).unwrap();
        let y = g.conv2d(xn, wn, None, p.o).unwrap();
        let loss = g.sum(y).unwrap();
        g.write(xn, &x).unwrap();
        g.backward(loss).unwrap();
        (g.value(y).unwrap(), g.grad(xn).unwrap(), g.grad(wn).unwrap())
    };
    let (cy, cdx, cdw) = run(&Device::cpu(), false);
    let to64 = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
    // Through an explicit window matrix, and as an implicit GEMM (its window indices reach
    // 18.9 M, and its row count 2.1 M).
    for implicit in [false, true] {
        let (gy, gdx, gdw) = run(&gpu, implicit);
        close(&gy, &to64(&cy), 3.0, &format!("implicit={implicit} y"));
        close(&gdx, &to64(&cdx), 3.0, &format!("implicit={implicit} d_x"));
        close(&gdw, &to64(&cdw), 1450.0, &format!("implicit={implicit} d_w"));
        // The last pixel is read by the windows of the last two output rows and columns, with
        // kernel rows and columns 1 and 2: its gradient is the sum of those four weights.
        let want: f32 = [4, 5, 7, 8].iter().map(|&i| w[i]).sum();
        assert!(
            (gdx[1450 * 1450 - 1] - want).abs() < 1e-5,
            "implicit={implicit}: {} vs {want}",
            gdx[1450 * 1450 - 1]
        );
    }
}

#[test]
fn col2im_gives_the_same_bits_every_run() {
    let Some(gpu) = gpu() else { return };
    let run = || {
        let mut g = Graph::new(&gpu);
        let x = g.input_with_grad("x", &[2, 3, 31, 29]).unwrap();
        let mut rng = Rng::new(9);
        let w = g
            .parameter("w", &[4, 3, 5, 5], &random(&mut rng, 300, -1.0, 1.0))
            .unwrap();
        let y = g.conv2d(x, w, None, Conv2dOptions::default().padding(2)).unwrap();
        let m = g.max_pool2d(y, Pool2dOptions::new(3).stride(2).padding(1)).unwrap();
        let loss = g.sum(m).unwrap();
        g.write(x, &random(&mut rng, 2 * 3 * 31 * 29, -1.0, 1.0)).unwrap();
        g.backward(loss).unwrap();
        g.grad(x).unwrap()
    };
    let first = run();
    for _ in 0..3 {
        assert!(run().iter().zip(&first).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

#[test]
fn bad_shapes_and_options_are_errors_naming_the_op() {
    for implicit in [false, true] {
        bad_shapes_are_errors(implicit);
    }
}

fn bad_shapes_are_errors(implicit: bool) {
    let mut g = Graph::new(&Device::cpu());
    g.set_implicit_conv(Some(implicit));
    let x = g.input("x", &[2, 4, 8, 8]).unwrap();
    let flat = g.input("flat", &[4, 8, 8]).unwrap();
    let w = g.parameter("w", &[6, 4, 3, 3], &[0.1; 216]).unwrap();
    let wg = g.parameter("wg", &[6, 3, 3, 3], &[0.1; 162]).unwrap();
    let b5 = g.parameter("b5", &[5], &[0.0; 5]).unwrap();
    let huge = g.parameter("huge", &[1, 4, 65, 65], &vec![0.0; 4 * 65 * 65]).unwrap();
    let expect = |r: wgrad::Result<wgrad::NodeId>, op: &str, has: &str| {
        let e = r.expect_err("must be refused").to_string();
        assert!(e.contains(op) && e.contains(has), "{e}");
    };
    let d = Conv2dOptions::default();
    expect(g.conv2d(flat, w, None, d), "conv2d", "[4, 8, 8]");
    expect(g.conv2d(x, wg, None, d), "conv2d", "[6, 3, 3, 3]");
    expect(g.conv2d(x, w, None, d.groups(4)), "conv2d", "groups");
    expect(g.conv2d(x, w, None, d.groups(0)), "conv2d", "groups");
    expect(g.conv2d(x, w, Some(b5), d), "conv2d", "[5]");
    expect(g.conv2d(x, w, None, d.stride(0)), "im2col", "positive");
    expect(g.conv2d(x, w, None, d.dilation(5)), "im2col", "does not fit");
    expect(g.conv2d(x, huge, None, d.padding(40)), "im2col", "4096");
    expect(g.max_pool2d(x, Pool2dOptions::new(2).padding(2)), "max_pool2d", "half");
    expect(g.max_pool2d(flat, Pool2dOptions::new(2)), "max_pool2d", "rank 4");
    expect(
        g.avg_pool2d(x, Pool2dOptions::new(2).dilation(2)),
        "avg_pool2d",
        "dilation",
    );
    expect(g.avg_pool2d(x, Pool2dOptions::new(9)), "avg_pool2d", "does not fit");
    expect(g.max_pool2d(x, Pool2dOptions::new(0)), "max_pool2d", "positive");
    // The graph is still usable after the refusals.
    let y = g.conv2d(x, w, None, d.padding(1)).unwrap();
    assert_eq!(g.shape(y).unwrap(), [2, 6, 8, 8]);
    g.forward().unwrap();
}

#[test]
fn the_conv2d_layer_has_pytorch_names_layout_and_initialisation() {
    use wgrad::nn::Conv2d;
    let mut g = Graph::new(&Device::cpu());
    let mut rng = Rng::new(1);
    let opts = Conv2dOptions::default().padding(1).groups(2);
    let c = Conv2d::new(&mut g, "features.0", 4, 6, [3, 3], opts, &mut rng).unwrap();
    assert_eq!(g.name(c.weight).unwrap(), "features.0.weight");
    assert_eq!(g.name(c.bias).unwrap(), "features.0.bias");
    assert_eq!(g.shape(c.weight).unwrap(), [6, 2, 3, 3]);
    // U(−1/√fan_in, 1/√fan_in), fan_in = 2·3·3: inside the bound and spread across it.
    let bound = 1.0 / 18f32.sqrt();
    let w = g.value(c.weight).unwrap();
    assert!(w.iter().all(|v| v.abs() <= bound));
    assert!(w.iter().any(|v| v.abs() > 0.8 * bound));
    let x = g.input("x", &[1, 4, 5, 5]).unwrap();
    let y = c.forward(&mut g, x).unwrap();
    assert_eq!(g.shape(y).unwrap(), [1, 6, 5, 5]);
    let len = g.len();
    let e = Conv2d::new(&mut g, "bad", 4, 6, [3, 3], opts.groups(4), &mut rng).unwrap_err();
    assert!(
        e.to_string().contains("Conv2d::new") && e.to_string().contains("groups"),
        "{e}"
    );
    assert_eq!(g.len(), len, "a refused layer adds no node");
}

#[test]
fn conv_layers_save_and_load_in_pytorch_layout() {
    use wgrad::io::{Layout, NamedTensor};
    use wgrad::nn::{Conv2d, Init, Linear};
    let build = |seed: u64| {
        let mut g = Graph::new(&Device::cpu());
        let mut rng = Rng::new(seed);
        let c = Conv2d::new(&mut g, "conv", 2, 4, [3, 3], Conv2dOptions::default(), &mut rng).unwrap();
        let l = Linear::new(&mut g, "fc", 4, 3, Init::Xavier, &mut rng).unwrap();
        (g, c, l)
    };
    let (mut a, ca, la) = build(1);
    let dir = std::env::temp_dir().join(format!("wgrad-conv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cnn.safetensors");
    a.save_parameters(&path).unwrap();
    let (mut b, cb, lb) = build(2);
    assert_ne!(a.value(ca.weight).unwrap(), b.value(cb.weight).unwrap());
    b.load_parameters(&path).unwrap();
    for (x, y) in [
        (ca.weight, cb.weight),
        (ca.bias, cb.bias),
        (la.weight, lb.weight),
        (la.bias, lb.bias),
    ] {
        assert_eq!(a.value(x).unwrap(), b.value(y).unwrap());
    }
    // A PyTorch state dict: the conv weight [out, in, kh, kw] as it is, the linear weight
    // transposed (out × in).
    let w = a.value(ca.weight).unwrap();
    let fc = a.value(la.weight).unwrap();
    let fc_t: Vec<f32> = (0..3 * 4).map(|i| fc[(i % 4) * 3 + i / 4]).collect();
    let torch = vec![
        NamedTensor {
            name: "conv.weight".into(),
            shape: vec![4, 2, 3, 3],
            data: w.clone(),
        },
        NamedTensor {
            name: "conv.bias".into(),
            shape: vec![4],
            data: a.value(ca.bias).unwrap(),
        },
        NamedTensor {
            name: "fc.weight".into(),
            shape: vec![3, 4],
            data: fc_t,
        },
        NamedTensor {
            name: "fc.bias".into(),
            shape: vec![3],
            data: a.value(la.bias).unwrap(),
        },
    ];
    let (mut c, cc, lc) = build(3);
    c.load_parameter_tensors_as(&torch, Layout::Torch).unwrap();
    assert_eq!(c.value(cc.weight).unwrap(), w);
    assert_eq!(c.value(lc.weight).unwrap(), fc);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn window_matrices_past_a_limit_are_refused_and_leave_the_graph_as_it_was() {
    // CPU: a host-memory bound of 64 MiB against a 9×9 window over 512×512 (85 MB of windows).
    let mut g = Graph::new(&Device::cpu());
    g.set_host_memory_limit(Some(64 << 20));
    let x = g.input("x", &[1, 1, 512, 512]).unwrap();
    let w = g.parameter("w", &[1, 1, 9, 9], &[0.01; 81]).unwrap();
    let (len, before) = (g.len(), g.counters());
    for implicit in [false, true] {
        g.set_implicit_conv(Some(implicit));
        let e = g.conv2d(x, w, None, Conv2dOptions::default().padding(4)).unwrap_err();
        assert!(
            matches!(e, wgrad::Error::LimitExceeded { .. }) && e.to_string().contains("im2col"),
            "implicit={implicit}: {e}"
        );
    }
    g.set_implicit_conv(None);
    assert_eq!(g.len(), len, "a refused convolution adds no node");
    assert_eq!(g.counters().live_bytes, before.live_bytes, "nor keeps any buffer");
    // Pooling reads its windows from the image: the same 9×9 windows need no window matrix.
    let m = g.max_pool2d(x, Pool2dOptions::new(9).stride(1).padding(4)).unwrap();
    assert_eq!(g.shape(m).unwrap(), [1, 1, 512, 512]);
    // A 3×3 window fits, and runs.
    let y = g.conv2d(x, w, None, Conv2dOptions::default().stride(3)).unwrap();
    g.write(x, &vec![1.0; 512 * 512]).unwrap();
    assert!((g.value(y).unwrap()[0] - 0.81).abs() < 1e-5);
    assert!(g.value(m).unwrap().iter().all(|&v| v == 1.0));

    // GPU under WebGPU's downlevel limits (128 MiB per storage binding): 2048 × 2048 with a
    // 3×3 window is 151 MB of windows.
    let Some(_) = gpu() else { return };
    let opts = wgrad::GpuOptions {
        limits: Some(wgrad::wgpu::Limits::downlevel_defaults()),
        ..Default::default()
    };
    let dev = Device::gpu_with(&opts).unwrap();
    let mut g = Graph::new(&dev);
    let x = g.input("x", &[1, 1, 2048, 2048]).unwrap();
    let w = g.parameter("w", &[1, 1, 3, 3], &[0.1; 9]).unwrap();
    let len = g.len();
    for implicit in [false, true] {
        g.set_implicit_conv(Some(implicit));
        let e = g.conv2d(x, w, None, Conv2dOptions::default().padding(1)).unwrap_err();
        assert!(
            matches!(e, wgrad::Error::LimitExceeded { .. }) && e.to_string().contains("im2col"),
            "implicit={implicit}: {e}"
        );
        assert_eq!(g.len(), len);
    }
    let y = g.conv2d(x, w, None, Conv2dOptions::default().stride(2)).unwrap();
    g.write(x, &vec![1.0; 2048 * 2048]).unwrap();
    assert!((g.value(y).unwrap()[0] - 0.9).abs() < 1e-5);
}

/// (y, d_x, d_w, d_b) of sum(conv2d(x) ⊙ r) on `g`.
fn conv_run(g: &mut Graph, p: Problem, x: &[f32], w: &[f32], b: &[f32], r: &[f32]) -> [Vec<f32>; 4] {
    let xn = g.input_with_grad("x", &p.x).unwrap();
    let wn = g.parameter("w", &p.w, w).unwrap();
    let bn = g.parameter("b", &[p.w[0]], b).unwrap();
    let y = g.conv2d(xn, wn, Some(bn), p.o).unwrap();
    let rn = g.input("r", &p.out()).unwrap();
    let prod = g.mul(y, rn).unwrap();
    let loss = g.sum(prod).unwrap();
    g.write(xn, x).unwrap();
    g.write(rn, r).unwrap();
    g.backward(loss).unwrap();
    [
        g.value(y).unwrap(),
        g.grad(xn).unwrap(),
        g.grad(wn).unwrap(),
        g.grad(bn).unwrap(),
    ]
}

#[test]
fn images_whose_window_matrix_does_not_fit_run_in_chunks() {
    // 4 images of 2 × 200 × 200 with a 9×9 window: 26 MB of windows each, 104 MB together.
    let p = Problem {
        x: [4, 2, 200, 200],
        w: [3, 2, 9, 9],
        o: Conv2dOptions::default().padding(4),
    };
    let mut rng = Rng::new(8);
    let x = random(&mut rng, 4 * 2 * 200 * 200, -1.0, 1.0);
    let w = random(&mut rng, 3 * 2 * 81, -0.2, 0.2);
    let b = random(&mut rng, 3, -1.0, 1.0);
    let r = random(&mut rng, p.out().iter().product(), -1.0, 1.0);
    let whole = conv_run(&mut Graph::new(&Device::cpu()), p, &x, &w, &b, &r);
    // Under a 64 MiB host bound the CPU backend takes two images per window matrix.
    let mut g = Graph::new(&Device::cpu());
    g.set_host_memory_limit(Some(64 << 20));
    let chunked = conv_run(&mut g, p, &x, &w, &b, &r);
    assert!(g.ids().filter(|&id| g.op_name(id).unwrap() == "im2col").count() == 2);
    for (i, (c, u)) in chunked.iter().zip(&whole).enumerate() {
        let u: Vec<f64> = u.iter().map(|&v| v as f64).collect();
        close(c, &u, 40.0, &format!("chunked CPU, output {i}"));
    }
    // On the GPU under downlevel limits (128 MiB per binding): 4 images of 1 × 1024 × 1024 with
    // a 3×3 window, 151 MB of windows, run as 3 + 1 images.
    let Some(_) = gpu() else { return };
    let opts = wgrad::GpuOptions {
        limits: Some(wgrad::wgpu::Limits::downlevel_defaults()),
        ..Default::default()
    };
    let dev = Device::gpu_with(&opts).unwrap();
    let p = Problem {
        x: [4, 1, 1024, 1024],
        w: [2, 1, 3, 3],
        o: Conv2dOptions::default().padding(1),
    };
    let x = random(&mut rng, 4 << 20, -1.0, 1.0);
    let w = random(&mut rng, 18, -1.0, 1.0);
    let b = random(&mut rng, 2, -1.0, 1.0);
    let r = random(&mut rng, p.out().iter().product(), -1.0, 1.0);
    let want = conv_run(&mut Graph::new(&Device::cpu()), p, &x, &w, &b, &r);
    // The same chunks for an implicit GEMM: its window matrix's gradient takes a buffer.
    for (implicit, op) in [(false, "im2col"), (true, "window_matmul")] {
        let mut g = Graph::new(&dev);
        g.set_implicit_conv(Some(implicit));
        let got = conv_run(&mut g, p, &x, &w, &b, &r);
        assert_eq!(g.ids().filter(|&id| g.op_name(id).unwrap() == op).count(), 2);
        for (i, (c, u)) in got.iter().zip(&want).enumerate() {
            let u: Vec<f64> = u.iter().map(|&v| v as f64).collect();
            close(c, &u, 2048.0, &format!("chunked GPU implicit={implicit}, output {i}"));
        }
    }
}

#[test]
fn an_implicit_convolution_holds_no_window_matrix() {
    // x [4, 8, 20, 20] with a 3×3 window, padding 1: a window matrix of 4·400 × 72 values.
    let cols_bytes = (4 * 400 * 72 * 4) as u64;
    for dev in devices() {
        for x_grad in [false, true] {
            let live = |implicit: bool| {
                let mut g = Graph::new(&dev);
                g.set_implicit_conv(Some(implicit));
                let x = if x_grad {
                    g.input_with_grad("x", &[4, 8, 20, 20])
                } else {
                    g.input("x", &[4, 8, 20, 20])
                }
                .unwrap();
                let w = g.parameter("w", &[16, 8, 3, 3], &[0.1; 16 * 72]).unwrap();
                let y = g.conv2d(x, w, None, Conv2dOptions::default().padding(1)).unwrap();
                let loss = g.sum(y).unwrap();
                g.write(x, &[0.5; 4 * 8 * 400]).unwrap();
                g.backward(loss).unwrap();
                (g.counters().live_bytes, g.grad(w).unwrap())
            };
            let (explicit, dw_e) = live(false);
            let (implicit, dw_i) = live(true);
            // Without x's gradient the implicit graph has no window matrix at all; with it, only
            // the window matrix's gradient (the explicit graph holds the matrix and its gradient).
            assert!(
                implicit + cols_bytes <= explicit,
                "{} x_grad={x_grad}: {implicit} B implicit vs {explicit} B explicit",
                dev.info()
            );
            let to64: Vec<f64> = dw_e.iter().map(|&v| v as f64).collect();
            close(&dw_i, &to64, 40.0, "d_w");
        }
    }
}

#[test]
fn convolutions_are_implicit_where_the_matmul_runs_on_the_tile_kernel() {
    let ops = |dev: &Device, set: Option<bool>| {
        let mut g = Graph::new(dev);
        g.set_implicit_conv(set);
        let x = g.input("x", &[1, 2, 6, 6]).unwrap();
        let w = g.parameter("w", &[3, 2, 3, 3], &[0.1; 54]).unwrap();
        let implicit = g.implicit_conv();
        g.conv2d(x, w, None, Conv2dOptions::default()).unwrap();
        let has = |op: &str| g.ids().any(|id| g.op_name(id).unwrap() == op);
        assert_eq!((has("window_matmul"), has("im2col")), (implicit, !implicit));
        implicit
    };
    // The CPU backend reuses its written window matrix; the choice can be forced either way.
    assert!(!ops(&Device::cpu(), None));
    assert!(ops(&Device::cpu(), Some(true)));
    let Some(gpu) = gpu() else { return };
    let tiled = Device::gpu_with(&wgrad::GpuOptions {
        matmul: wgrad::MatmulKernel::Tiled,
        ..Default::default()
    })
    .unwrap();
    assert!(ops(&tiled, None), "the tile kernel reads windows in place");
    assert!(!ops(&tiled, Some(false)));
    // A CPU-like adapter runs its register kernels on an explicit window matrix.
    if gpu.info().device_type == "Cpu" {
        assert!(!ops(&gpu, None));
    }
}

#[test]
fn pooling_past_the_workgroup_limit_matches_the_cpu() {
    // 4099² = 16.8 M outputs: more than 65,535 workgroups of 256 (a two-dimensional grid), for
    // the pooling and for its VJP over the 4100² pixels.
    let Some(gpu) = gpu() else { return };
    let s = [1, 1, 4100, 4100];
    let mut rng = Rng::new(12);
    let x = random(&mut rng, 4100 * 4100, -1.0, 1.0);
    for max in [true, false] {
        let run = |dev: &Device| {
            let mut g = Graph::new(dev);
            let xn = g.input_with_grad("x", &s).unwrap();
            let o = Pool2dOptions::new(2).stride(1);
            let y = if max { g.max_pool2d(xn, o) } else { g.avg_pool2d(xn, o) }.unwrap();
            let loss = g.sum(y).unwrap();
            g.write(xn, &x).unwrap();
            g.backward(loss).unwrap();
            (g.value(y).unwrap(), g.grad(xn).unwrap())
        };
        let (cy, cdx) = run(&Device::cpu());
        let (gy, gdx) = run(&gpu);
        assert_eq!(gy.len(), 4099 * 4099);
        common::assert_close(&gy, &cy, 1e-6, 1e-6, &format!("max={max} y"));
        common::assert_close(&gdx, &cdx, 1e-6, 1e-6, &format!("max={max} d_x"));
        // The last output and the last pixel, which a cut grid would miss: the last window is
        // the four pixels of the bottom-right corner, and only it reads the last pixel.
        let corner = [4099 * 4100 - 2, 4099 * 4100 - 1, 4100 * 4100 - 2, 4100 * 4100 - 1].map(|i| x[i]);
        let (want_y, want_dx) = if max {
            let m = corner.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            (m, if corner[3] == m { 1.0 } else { 0.0 })
        } else {
            (corner.iter().sum::<f32>() / 4.0, 0.25)
        };
        assert!(
            (gy[4099 * 4099 - 1] - want_y).abs() < 1e-6,
            "max={max}: {} vs {want_y}",
            gy[4099 * 4099 - 1]
        );
        assert_eq!(gdx[4100 * 4100 - 1], want_dx, "max={max}");
    }
}

#[test]
fn cpu_convolutions_give_the_same_bits_for_any_thread_count() {
    // A LeNet-sized stack, batch 64 (the sizes at which every CPU loop of the family splits its
    // rows over threads: im2col, the GEMMs, the thin weight gradient, col2im, both poolings and
    // their VJPs, the bias's gradient): values and gradients in pools of 1, 2 and 3 threads, bit
    // for bit.
    let mut rng = Rng::new(21);
    let x = random(&mut rng, 64 * 28 * 28, -1.0, 1.0);
    let w1 = random(&mut rng, 6 * 25, -0.3, 0.3);
    let w2 = random(&mut rng, 16 * 6 * 25, -0.1, 0.1);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut g = Graph::new(&Device::cpu());
            let xi = g.input_with_grad("x", &[64, 1, 28, 28]).unwrap();
            let k1 = g.parameter("w1", &[6, 1, 5, 5], &w1).unwrap();
            let k2 = g.parameter("w2", &[16, 6, 5, 5], &w2).unwrap();
            let b1 = g.parameter("b1", &[6], &[0.1, -0.2, 0.3, 0.0, 0.05, -0.1]).unwrap();
            let c1 = g.conv2d(xi, k1, Some(b1), opts([1, 1], [2, 2], [1, 1], 1)).unwrap();
            let r1 = g.unary(wgrad::UnaryOp::Relu, c1).unwrap();
            let p1 = g.max_pool2d(r1, Pool2dOptions::new(2)).unwrap();
            let c2 = g.conv2d(p1, k2, None, opts([1, 1], [0, 0], [1, 1], 1)).unwrap();
            let p2 = g.avg_pool2d(c2, Pool2dOptions::new(2)).unwrap();
            let sq = g.mul(p2, p2).unwrap();
            let loss = g.sum(sq).unwrap();
            g.write(xi, &x).unwrap();
            g.backward(loss).unwrap();
            let mut bits = Vec::new();
            for v in [
                g.value(p2).unwrap(),
                g.grad(xi).unwrap(),
                g.grad(k1).unwrap(),
                g.grad(b1).unwrap(),
                g.grad(k2).unwrap(),
            ] {
                bits.extend(v.iter().map(|v| v.to_bits()));
            }
            bits
        })
    };
    let one = run(1);
    for threads in [2, 3] {
        let first = one.iter().zip(&run(threads)).position(|(a, b)| a != b);
        assert_eq!(first, None, "{threads} threads differ from one at value {first:?}");
    }
}

#[test]
fn max_pooling_keeps_the_first_largest_and_lets_nan_win() {
    // 2×2 windows over a 4×8 image with ties and NaNs: each output and the pixel its gradient
    // goes to, by PyTorch's rule (the first largest in row-major window order; a NaN wins over
    // numbers, and the first NaN over later ones).
    let nan = f32::NAN;
    #[rustfmt::skip]
    let x = [
        1.0, 1.0, 5.0, 2.0, nan, 3.0, 0.0, 0.0,
        1.0, 0.0, 5.0, 1.0, 2.0, nan, 0.0, -1.0,
        2.0, nan, 7.0, 7.0, -1.0, -2.0, 4.0, 4.0,
        3.0, 1.0, 7.0, 8.0, -3.0, -1.0, 4.0, 4.0,
    ];
    let want = [1.0, 5.0, nan, 0.0, nan, 8.0, -1.0, 4.0];
    // (row, column) of each output's winner.
    let at = [(0, 0), (0, 2), (0, 4), (0, 6), (2, 1), (3, 3), (2, 4), (2, 6)];
    for dev in devices() {
        let mut g = Graph::new(&dev);
        let xn = g.input_with_grad("x", &[1, 1, 4, 8]).unwrap();
        let y = g.max_pool2d(xn, Pool2dOptions::new(2)).unwrap();
        let rn = g.input("r", &[1, 1, 2, 4]).unwrap();
        let prod = g.mul(y, rn).unwrap();
        let loss = g.sum(prod).unwrap();
        g.write(xn, &x).unwrap();
        g.write(rn, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
        g.backward(loss).unwrap();
        let got = g.value(y).unwrap();
        for (i, (&v, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                v == w || (v.is_nan() && w.is_nan()),
                "{}: output {i} is {v}, want {w}",
                dev.info()
            );
        }
        let mut dx = vec![0.0; 32];
        for (i, &(r, c)) in at.iter().enumerate() {
            dx[r * 8 + c] = (i + 1) as f32;
        }
        assert_eq!(g.grad(xn).unwrap(), dx, "{}: the gradient's pixels", dev.info());
    }
}
