//! The vector chain rule: y = g(x) with x, y ∈ R², z = f(y); ∇x z = (∂y/∂x)ᵀ ∇y z.
//!
//! g(x) = tanh(A·x) + x ⊙ x (A a fixed 2×2 matrix), f(y) = y1² + 3·y2².
//! The Jacobian ∂y/∂x is built from backward passes — `backward_from(y, e_i)` returns row i
//! of it, (∂y_i/∂x) — and compared with the formula; then (∂y/∂x)ᵀ ∇y z is compared with
//! wgrad's ∇x z from one backward pass of z. Exits non-zero on disagreement.
//!
//! Run: `cargo run --example vector_chain [-- --device cpu|gpu|auto]`

use wgrad::Graph;

mod common;

const USAGE: &str = "\
usage: vector_chain [--device auto|gpu|cpu]
    --device NAME   where to run                     [default: auto]
    -h, --help      print this help
exit status: 0 the check passed, 1 it failed or an error, 2 bad command line";

fn main() {
    common::run_checked(run, "vector chain rule check");
}

fn run() -> wgrad::Result<bool> {
    let cli = common::Cli::new("vector_chain", USAGE, &[]);
    let device = cli.device()?;

    let a = [0.8f32, -0.4, 0.3, 1.1];
    let xv = [0.6f32, -0.9];
    let c = [1.0f32, 3.0];
    let mut g = Graph::new(&device);
    let am = g.input("A", &[2, 2])?;
    let x = g.input_with_grad("x", &[2, 1])?;
    let ax = g.matmul(am, x)?;
    let t = g.tanh(ax)?;
    let xx = g.square(x)?;
    let y = g.add(t, xx)?;
    g.set_name(y, "y = tanh(Ax) + x⊙x")?;
    let cy = g.input("c", &[2, 1])?;
    let y2 = g.square(y)?;
    let cy2 = g.mul(cy, y2)?;
    let z = g.sum(cy2)?;
    g.set_name(z, "z = y1² + 3·y2²")?;
    g.write(am, &a)?;
    g.write(x, &xv)?;
    g.write(cy, &c)?;

    // Rows of the Jacobian from VJPs with unit seeds.
    let mut jac = [[0.0f32; 2]; 2];
    for (i, row) in jac.iter_mut().enumerate() {
        let mut e = [0.0f32; 2];
        e[i] = 1.0;
        g.zero_grad()?;
        g.backward_from(y, &e)?;
        let r = g.grad(x)?;
        *row = [r[0], r[1]];
    }
    let yv = g.value(y)?;
    // By hand: ∂y_i/∂x_j = (1 − tanh²((Ax)_i))·A_ij + 2·x_i·[i = j]
    let mut jac_hand = [[0.0f32; 2]; 2];
    for i in 0..2 {
        let s = (a[i * 2] * xv[0] + a[i * 2 + 1] * xv[1]).tanh();
        for j in 0..2 {
            jac_hand[i][j] = (1.0 - s * s) * a[i * 2 + j] + if i == j { 2.0 * xv[i] } else { 0.0 };
        }
    }
    let grad_y = [2.0 * c[0] * yv[0], 2.0 * c[1] * yv[1]];
    let jt_grad: Vec<f32> = (0..2).map(|j| (0..2).map(|i| jac[i][j] * grad_y[i]).sum()).collect();
    g.zero_grad()?;
    g.backward(z)?;
    let grad_x = g.grad(x)?;

    println!("x = {xv:?}, y = {yv:?}");
    println!("∂y/∂x (rows from backward_from): {jac:?}");
    println!("∂y/∂x (formula):                 {jac_hand:?}");
    println!("∇y z = {grad_y:?}");
    println!("(∂y/∂x)ᵀ ∇y z = {jt_grad:?}");
    println!("wgrad ∇x z     = {grad_x:?}");
    let mut err = 0.0f32;
    for i in 0..2 {
        for j in 0..2 {
            err = err.max((jac[i][j] - jac_hand[i][j]).abs());
        }
        err = err.max((jt_grad[i] - grad_x[i]).abs());
    }
    println!("max disagreement {err:.2e}");
    Ok(err <= 1e-5)
}
