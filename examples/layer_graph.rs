//! H = σ(XW + B) for a small batch: forward on the device, backward from a scalar loss, every
//! gradient printed next to the hand-derived formula, and the graph written as DOT.
//!
//! Run: `cargo run --release --example layer_graph [-- --device cpu|gpu|auto] [--dot PATH]`
//! (the DOT file defaults to target/graphs/layer_graph.dot; an SVG is rendered beside it when
//! Graphviz's `dot` is installed).
//! (the DOT file defaults to target/graphs/layer_graph.dot; an SVG is rendered beside it when
//! Graphviz's `dot` is installed).

use wgrad::Graph;

mod common;

const USAGE: &str = "\
usage: layer_graph [--device auto|gpu|cpu] [--dot PATH]
    --device NAME   where to run                     [default: auto]
    --dot PATH      the graph as DOT (SVG beside it with Graphviz) [default: target/graphs/layer_graph.dot]
    -h, --help      print this help
exit status: 0 the check passed, 1 it failed or an error, 2 bad command line";

fn main() {
    common::run_checked(run, "gradient check");
}

fn run() -> wgrad::Result<bool> {
    let cli = common::Cli::new("layer_graph", USAGE, &["--dot"]);
    let device = cli.device()?;

    let (n, d, h) = (4, 3, 2);
    let mut g = Graph::new(&device);
    let x = g.input("X", &[n, d])?;
    let w = g.parameter("W", &[d, h], &[0.5, -0.3, 0.2, 0.8, -0.6, 0.1])?;
    let b = g.parameter("B", &[h], &[0.1, -0.2])?;
    let xw = g.matmul(x, w)?;
    g.set_name(xw, "XW")?;
    let z = g.bias_add(xw, b)?;
    g.set_name(z, "Z = XW + B")?;
    let hh = g.sigmoid(z)?;
    g.set_name(hh, "H = σ(Z)")?;
    let loss = g.mean(hh)?;
    g.set_name(loss, "L = mean(H)")?;

    let xs: Vec<f32> = (0..n * d).map(|i| ((i as f32) * 0.37).sin()).collect();
    g.write(x, &xs)?;
    g.backward(loss)?;

    let hv = g.value(hh)?;
    let dw = g.grad(w)?;
    let db = g.grad(b)?;
    println!("X = {xs:?}");
    println!("H = {hv:?}");
    println!("L = {}", g.scalar(loss)?);

    // By hand: dL/dZ = (1/(n·h)) · H ⊙ (1 − H); dL/dW = Xᵀ dZ; dL/dB = column sums of dZ.
    let dz: Vec<f32> = hv.iter().map(|&y| y * (1.0 - y) / (n * h) as f32).collect();
    let mut dw_hand = vec![0.0f32; d * h];
    for i in 0..d {
        for j in 0..h {
            dw_hand[i * h + j] = (0..n).map(|r| xs[r * d + i] * dz[r * h + j]).sum();
        }
    }
    let db_hand: Vec<f32> = (0..h).map(|j| (0..n).map(|r| dz[r * h + j]).sum()).collect();
    println!("dL/dW (device) = {dw:?}");
    println!("dL/dW (hand)   = {dw_hand:?}");
    println!("dL/dB (device) = {db:?}");
    println!("dL/dB (hand)   = {db_hand:?}");
    let err = dw
        .iter()
        .zip(&dw_hand)
        .chain(db.iter().zip(&db_hand))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("max |device − hand| = {err:.3e}");
    let path = std::path::PathBuf::from(
        cli.flag("--dot")
            .unwrap_or_else(|| "target/graphs/layer_graph.dot".into()),
    );
    common::save_graph(&g, &path, loss)?;
    Ok(err <= 1e-5)
}
