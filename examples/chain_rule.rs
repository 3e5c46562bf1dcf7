//! The scalar chain rule on the device: x = f1(w) = e^w, y = f2(x) = σ(x), z = f3(y) = y².
//!
//! Prints dz/dw from wgrad's backward pass, the product f3'(y)·f2'(x)·f1'(w) computed by hand,
//! and a central finite difference, side by side; writes the graph as DOT (and SVG when
//! Graphviz is installed). Exits non-zero if they disagree.
//!
//! Run: `cargo run --example chain_rule [-- --device cpu|gpu|auto] [--out DIR]`

use wgrad::Graph;

mod common;

const USAGE: &str = "\
usage: chain_rule [--device auto|gpu|cpu] [--out DIR]
    --device NAME   where to run                     [default: auto]
    --out DIR       folder for the DOT/SVG graph      [default: target/graphs]
    -h, --help      print this help
exit status: 0 the check passed, 1 it failed or an error, 2 bad command line";

fn main() {
    common::run_checked(run, "chain rule check");
}

fn run() -> wgrad::Result<bool> {
    let cli = common::Cli::new("chain_rule", USAGE, &["--out"]);
    let device = cli.device()?;
    let out = cli.out_dir();

    let mut g = Graph::new(&device);
    let w = g.parameter("w", &[1], &[0.5])?;
    let x = g.exp(w)?;
    g.set_name(x, "x = exp(w)")?;
    let y = g.sigmoid(x)?;
    g.set_name(y, "y = σ(x)")?;
    let z = g.square(y)?;
    g.set_name(z, "z = y²")?;
    let mut ok = true;
    println!(
        "{:>6} {:>14} {:>14} {:>14} {:>10}",
        "w", "backward", "f3'·f2'·f1'", "finite diff", "|Δ|"
    );
    for w0 in [-2.0f64, -0.5, 0.0, 0.5, 1.5] {
        g.write(w, &[w0 as f32])?;
        g.zero_grad()?;
        g.backward(z)?;
        let device_grad = g.grad(w)?[0] as f64;
        let w32 = w0 as f32 as f64;
        let xv = w32.exp();
        let yv = 1.0 / (1.0 + (-xv).exp());
        let by_hand = (2.0 * yv) * (yv * (1.0 - yv)) * xv; // f3'(y) · f2'(x) · f1'(w)
        let f = |w: f64| {
            let y = 1.0 / (1.0 + (-w.exp()).exp());
            y * y
        };
        let h = 1e-5;
        let fd = (f(w32 + h) - f(w32 - h)) / (2.0 * h);
        let diff = (device_grad - by_hand).abs().max((device_grad - fd).abs());
        ok &= diff <= 1e-5 + 1e-4 * by_hand.abs();
        println!("{w0:>6.2} {device_grad:>14.8} {by_hand:>14.8} {fd:>14.8} {diff:>10.2e}");
    }
    let path = out.join("chain_rule.dot");
    common::save_graph(&g, &path, z)?;
    if ok {
        println!("backward = product of local derivatives = finite difference");
    }
    Ok(ok)
}
