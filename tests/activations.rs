//! The activations against values computed from their definitions (independently of the
//! engine: Φ(1) = 0.841344746…, σ(1) = 0.731058578…), on every device, forward and gradient.

mod common;

use common::devices;
use wgrad::{Graph, UnaryOp};

/// (op, x, f(x), f'(x)) from the mathematical definitions.
const CASES: &[(UnaryOp, f32, f64, f64)] = &[
    // x·Φ(x): Φ(1) = 0.8413447460685429, φ(1) = 0.24197072451914337.
    (
        UnaryOp::GeluErf,
        1.0,
        0.841_344_746_068_542_9,
        0.841_344_746_068_542_9 + 0.241_970_724_519_143_37,
    ),
    (
        UnaryOp::GeluErf,
        -2.0,
        -2.0 * 0.022_750_131_948_179_2,
        0.022_750_131_948_179_2 - 2.0 * 0.053_990_966_513_188_06,
    ),
    (UnaryOp::Gelu, 0.0, 0.0, 0.5),
    // x·σ(x): σ(1) = 0.7310585786300049; d = σ + x·σ(1 − σ).
    (
        UnaryOp::Silu,
        1.0,
        0.731_058_578_630_004_9,
        0.731_058_578_630_004_9 * (1.0 + 1.0 - 0.731_058_578_630_004_9),
    ),
    (UnaryOp::Silu, 0.0, 0.0, 0.5),
];

fn gelu_tanh(x: f64) -> (f64, f64) {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let u = c * (x + 0.044715 * x * x * x);
    let t = u.tanh();
    (
        0.5 * x * (1.0 + t),
        0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * x * x),
    )
}

#[test]
fn activations_match_their_definitions_forward_and_backward() {
    let mut cases: Vec<(UnaryOp, f32, f64, f64)> = CASES.to_vec();
    for x in [1.0f32, -1.5, 3.0] {
        let (f, d) = gelu_tanh(x as f64);
        cases.push((UnaryOp::Gelu, x, f, d));
    }
    for dev in devices() {
        for &(op, x, want, dwant) in &cases {
            let mut g = Graph::new(&dev);
            let xi = g.input_with_grad("x", &[1]).unwrap();
            let y = g.unary(op, xi).unwrap();
            let loss = g.sum(y).unwrap();
            g.write(xi, &[x]).unwrap();
            g.forward().unwrap();
            g.backward(loss).unwrap();
            let got = g.value(y).unwrap()[0] as f64;
            let dgot = g.grad(xi).unwrap()[0] as f64;
            let tol = |w: f64| 2e-6 + 2e-6 * w.abs();
            assert!(
                (got - want).abs() <= tol(want),
                "{}: {}({x}) = {got}, want {want}",
                dev.info(),
                op.name()
            );
            assert!(
                (dgot - dwant).abs() <= tol(dwant),
                "{}: {}'({x}) = {dgot}, want {dwant}",
                dev.info(),
                op.name()
            );
        }
    }
}

#[test]
fn activations_are_parsed_by_name_and_others_refused() {
    for name in ["relu", "gelu", "gelu_erf", "silu", "sigmoid", "tanh"] {
        let op = wgrad::nn::Activation::parse(name).unwrap();
        assert_eq!(op.name(), name);
        assert!(op.fusable());
    }
    let e = wgrad::nn::Activation::parse("exp").unwrap_err().to_string();
    assert!(e.contains("'exp'") && e.contains("gelu"), "{e}");
}
