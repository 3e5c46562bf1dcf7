//! Property test of the public API: random graphs built from every op, with random shapes
//! (including mismatched ones), random writes, backward from random nodes and random reads,
//! applied to the CPU backend and the GPU in lockstep.
//!
//! Properties: no call panics; both backends accept or reject exactly the same requests; every
//! accepted graph gives GPU values and gradients equal to the CPU reference within tolerance.
//! `WGRAD_FUZZ_CASES` sets the number of cases (default 1000; the seed is fixed).

mod common;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use wgrad::{BinaryOp, Device, Graph, NodeId, ReduceOp, UnaryOp};

#[derive(Clone, Debug)]
enum Action {
    Input {
        shape: Vec<usize>,
        grad: bool,
    },
    Param {
        shape: Vec<usize>,
    },
    Unary(u8, usize),
    Binary(u8, usize, usize),
    MatMul(usize, usize),
    BiasAdd(usize, usize),
    Reduce(u8, usize, Option<usize>, bool),
    Softmax(usize),
    Mse(usize, usize),
    Transpose(usize),
    Reshape(usize, Vec<usize>),
    Detach(usize),
    Permute(usize, Vec<usize>),
    Narrow(usize, usize, usize, usize),
    Concat(Vec<usize>, usize),
    /// x, w, stride, padding, and whether as an implicit GEMM.
    Conv(usize, usize, usize, usize, bool),
    Pool(bool, usize, usize, usize),
    Dropout(usize, u8),
    Write(usize, usize, u64),
    Backward(usize),
    Read(usize),
    ReadGrad(usize),
}

fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), Just(2), Just(3), 1usize..6, Just(0)]
}

fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(dim(), 0..4)
}

fn action() -> impl Strategy<Value = Action> {
    let n = 0usize..12;
    // Op ranges come from the op enums, so a new op is fuzzed without editing this test.
    let unary = 0..UnaryOp::all(0.5).len() as u8;
    let binary = 0..BinaryOp::ALL.len() as u8;
    let reduce = 0..ReduceOp::ALL.len() as u8;
    prop_oneof![
        (shape(), any::<bool>()).prop_map(|(shape, grad)| Action::Input { shape, grad }),
        shape().prop_map(|shape| Action::Param { shape }),
        (unary, n.clone()).prop_map(|(o, a)| Action::Unary(o, a)),
        (binary, n.clone(), n.clone()).prop_map(|(o, a, b)| Action::Binary(o, a, b)),
        (n.clone(), n.clone()).prop_map(|(a, b)| Action::MatMul(a, b)),
        (n.clone(), n.clone()).prop_map(|(a, b)| Action::BiasAdd(a, b)),
        (reduce, n.clone(), prop::option::of(0usize..4), any::<bool>())
            .prop_map(|(o, a, ax, k)| Action::Reduce(o, a, ax, k)),
        n.clone().prop_map(Action::Softmax),
        (n.clone(), n.clone()).prop_map(|(a, b)| Action::Mse(a, b)),
        n.clone().prop_map(Action::Transpose),
        (n.clone(), shape()).prop_map(|(a, s)| Action::Reshape(a, s)),
        n.clone().prop_map(Action::Detach),
        (n.clone(), prop::collection::vec(0usize..5, 0..5)).prop_map(|(a, p)| Action::Permute(a, p)),
        (n.clone(), 0usize..5, 0usize..4, 0usize..4).prop_map(|(a, ax, s, l)| Action::Narrow(a, ax, s, l)),
        (prop::collection::vec(n.clone(), 0..4), 0usize..5).prop_map(|(xs, ax)| Action::Concat(xs, ax)),
        (n.clone(), n.clone(), 0usize..3, 0usize..3, any::<bool>())
            .prop_map(|(x, w, s, p, i)| Action::Conv(x, w, s, p, i)),
        (any::<bool>(), n.clone(), 0usize..4, 0usize..3).prop_map(|(m, x, k, p)| Action::Pool(m, x, k, p)),
        (n.clone(), 0u8..3).prop_map(|(x, p)| Action::Dropout(x, p)),
        (n.clone(), 0usize..40, any::<u64>()).prop_map(|(a, l, s)| Action::Write(a, l, s)),
        n.clone().prop_map(Action::Backward),
        n.clone().prop_map(Action::Read),
        n.prop_map(Action::ReadGrad),
    ]
}

/// The outcome of one action on one backend: Ok(data read, if any) or the error's kind.
type Outcome = Result<Option<Vec<f32>>, String>;

fn kind(e: &wgrad::Error) -> String {
    format!("{e:?}")
        .split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

fn apply(g: &mut Graph, ids: &mut Vec<NodeId>, a: &Action) -> Outcome {
    // Indices wrap onto existing nodes; with none yet, node-consuming actions are skipped.
    let pick = |i: usize| ids.get(i % ids.len().max(1)).copied();
    let add = |r: wgrad::Result<NodeId>, ids: &mut Vec<NodeId>| match r {
        Ok(id) => {
            ids.push(id);
            Ok(None)
        }
        Err(e) => Err(kind(&e)),
    };
    let need = |i: usize| pick(i).ok_or_else(|| "no node".to_string());
    match a {
        Action::Input { shape, grad } => {
            let r = if *grad {
                g.input_with_grad("x", shape)
            } else {
                g.input("x", shape)
            };
            add(r, ids)
        }
        Action::Param { shape } => {
            let n: usize = shape.iter().product();
            let init: Vec<f32> = (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0).collect();
            add(g.parameter("p", shape, &init), ids)
        }
        Action::Unary(o, x) => add(g.unary(UnaryOp::all(0.5)[*o as usize], need(*x)?), ids),
        Action::Binary(o, x, y) => add(g.binary(BinaryOp::ALL[*o as usize], need(*x)?, need(*y)?), ids),
        Action::MatMul(x, y) => add(g.matmul(need(*x)?, need(*y)?), ids),
        Action::BiasAdd(x, y) => add(g.bias_add(need(*x)?, need(*y)?), ids),
        Action::Reduce(o, x, ax, k) => add(g.reduce(ReduceOp::ALL[*o as usize], need(*x)?, *ax, *k), ids),
        Action::Softmax(x) => add(g.softmax(need(*x)?), ids),
        Action::Mse(x, y) => add(g.mse(need(*x)?, need(*y)?), ids),
        Action::Transpose(x) => add(g.transpose(need(*x)?), ids),
        Action::Reshape(x, s) => add(g.reshape(need(*x)?, s), ids),
        Action::Detach(x) => add(g.detach(need(*x)?), ids),
        Action::Permute(x, p) => add(g.permute(need(*x)?, p), ids),
        Action::Narrow(x, ax, s, l) => add(g.narrow(need(*x)?, *ax, *s, *l), ids),
        Action::Concat(xs, ax) => {
            let xs = xs.iter().map(|&x| need(x)).collect::<Result<Vec<_>, _>>()?;
            add(g.concat(&xs, *ax), ids)
        }
        Action::Conv(x, w, stride, pad, implicit) => {
            // Rank ≤ 3 tensors are read as images and kernels [1, …] (the fuzzed ranks stop at 3).
            let (x, w) = (as_image(g, need(*x)?)?, as_image(g, need(*w)?)?);
            g.set_implicit_conv(Some(*implicit));
            let o = wgrad::Conv2dOptions::default().stride(*stride).padding(*pad);
            add(g.conv2d(x, w, None, o), ids)
        }
        Action::Pool(max, x, k, pad) => {
            let x = as_image(g, need(*x)?)?;
            let o = wgrad::Pool2dOptions::new(*k).padding(*pad);
            add(if *max { g.max_pool2d(x, o) } else { g.avg_pool2d(x, o) }, ids)
        }
        // p = 0, 0.5 or 2 (refused); both backends draw the same masks in lockstep.
        Action::Dropout(x, p) => add(g.dropout(need(*x)?, *p as f32 * 0.5 + (*p / 2) as f32), ids),
        Action::Write(x, len, seed) => {
            let mut rng = wgrad::data::Rng::new(*seed);
            let data = random(&mut rng, *len, -1.0, 1.0);
            g.write(need(*x)?, &data).map(|_| None).map_err(|e| kind(&e))
        }
        Action::Backward(x) => g.backward(need(*x)?).map(|_| None).map_err(|e| kind(&e)),
        Action::Read(x) => g.value(need(*x)?).map(Some).map_err(|e| kind(&e)),
        Action::ReadGrad(x) => g.grad(need(*x)?).map(Some).map_err(|e| kind(&e)),
    }
}

/// x with leading extents of 1 up to rank 4 (or the reshape's error).
fn as_image(g: &mut Graph, x: NodeId) -> Result<NodeId, String> {
    let mut s = g.shape(x).map_err(|e| kind(&e))?;
    while s.len() < 4 {
        s.insert(0, 1);
    }
    g.reshape(x, &s).map_err(|e| kind(&e))
}

fn agree(cpu: &[f32], gpu: &[f32]) -> bool {
    cpu.len() == gpu.len()
        && cpu.iter().zip(gpu).all(|(&c, &g)| {
            // Same class of value (NaN, ±inf) or close: exp/div chains can amplify differences
            // in the last bit, so the bound is relative with a floor.
            (c.is_nan() && g.is_nan()) || c == g || (c - g).abs() <= 1e-3 + 1e-3 * c.abs().max(g.abs())
        })
}

#[test]
fn random_graphs_never_panic_and_match_the_cpu() {
    let gpu = gpu();
    let cases: u32 = std::env::var("WGRAD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]));
    let stats = std::cell::RefCell::new((0u64, 0u64, 0u64));
    runner
        .run(&prop::collection::vec(action(), 1..24), |actions| {
            let mut devs = vec![Device::cpu()];
            devs.extend(gpu.clone());
            let mut graphs: Vec<(Graph, Vec<NodeId>)> = devs.iter().map(|d| (Graph::new(d), Vec::new())).collect();
            // A few well-formed leaves first, so random ops often find compatible operands.
            let prefix = [
                Action::Input {
                    shape: vec![3, 4],
                    grad: true,
                },
                Action::Input {
                    shape: vec![4, 3],
                    grad: true,
                },
                Action::Param { shape: vec![4] },
                Action::Param { shape: vec![3, 1] },
                Action::Write(0, 12, 1),
                Action::Write(1, 12, 2),
            ];
            for a in prefix.iter().chain(&actions) {
                let outs: Vec<Outcome> = graphs.iter_mut().map(|(g, ids)| apply(g, ids, a)).collect();
                let mut s = stats.borrow_mut();
                match &outs[0] {
                    Ok(_) => s.0 += 1,
                    Err(_) => s.1 += 1,
                }
                if let [cpu, gpu] = &outs[..] {
                    match (cpu, gpu) {
                        (Ok(Some(c)), Ok(Some(g))) => {
                            prop_assert!(agree(c, g), "{a:?}: CPU {c:?} vs GPU {g:?}");
                            s.2 += 1;
                        }
                        (Ok(None), Ok(None)) => {}
                        (Err(c), Err(g)) => prop_assert_eq!(c, g, "{:?}", a),
                        _ => prop_assert!(false, "{a:?}: backends disagree: CPU {cpu:?} vs GPU {gpu:?}"),
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let (oks, errs, compared) = stats.into_inner();
    eprintln!("{cases} random graphs: {oks} calls accepted, {errs} rejected with Err, {compared} reads compared GPU vs CPU, 0 panics");
}
