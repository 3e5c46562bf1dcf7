//! The two-layer network of the training example, drawn as a computational graph: every node
//! is a variable — inputs, parameters, weighted sums φ = XW + b, activations σ(φ), the loss —
//! and every arrow means "is computed from", not a weight. It is the picture a textbook draws
//! beside the neuron diagram. Runs one forward and backward pass so the drawing also marks
//! which nodes received gradients, and checks that every parameter did.
//!
//! Run: `cargo run --example mlp_graph [-- --device cpu|gpu|auto] [--out DIR]`

use wgrad::nn::{Activation, Mlp};
use wgrad::Graph;

mod common;

const USAGE: &str = "\
usage: mlp_graph [--device auto|gpu|cpu] [--out DIR]
    --device NAME   where to run                     [default: auto]
    --out DIR       folder for the DOT/SVG graph      [default: target/graphs]
    -h, --help      print this help
exit status: 0 the check passed, 1 it failed or an error, 2 bad command line";

fn main() {
    common::run_checked(run, "gradient flow check");
}

fn run() -> wgrad::Result<bool> {
    let cli = common::Cli::new("mlp_graph", USAGE, &["--out"]);
    let device = cli.device()?;
    let out = cli.out_dir();

    let (batch, sizes) = (16, [64, 128, 10]);
    let mut g = Graph::new(&device);
    let x = g.input("X (batch×64 pixels)", &[batch, sizes[0]])?;
    let labels = g.input("labels", &[batch])?;
    let mlp = Mlp::new(&mut g, &sizes, Activation::Sigmoid, 0)?;
    let logits = mlp.forward(&mut g, x)?;
    let loss = g.softmax_cross_entropy(logits, labels)?;
    // Name the variables as a textbook does.
    let names = ["XW₁", "φ₁ = XW₁ + b₁", "σ(φ₁)", "σ(φ₁)W₂", "φ₂ = σ(φ₁)W₂ + b₂ (logits)"];
    let first = g.find("layers.1.bias").expect("the MLP names its parameters").index() + 1;
    let results: Vec<_> = g.ids().skip(first).collect();
    for (&id, name) in results.iter().zip(names) {
        g.set_name(id, name)?;
    }
    g.set_name(loss, "L = softmax cross-entropy")?;

    let digits = wgrad::data::digits()?;
    let idx: Vec<usize> = (0..batch).collect();
    let (mut feats, mut labs) = (Vec::new(), Vec::new());
    digits.gather(&idx, &mut feats, &mut labs)?;
    g.write(x, &feats)?;
    g.write_labels(labels, &labs)?;
    g.backward(loss)?;
    println!(
        "loss on {batch} digits with the initial weights: {:.4}",
        g.scalar(loss)?
    );
    let all: Vec<_> = g.ids().collect();
    for id in all {
        let got = g.grad(id).is_ok();
        println!(
            "  {:<32} {:<22} {:?}{}",
            g.name(id)?,
            g.op_name(id)?,
            g.shape(id)?,
            if got { "  ∇" } else { "" }
        );
    }
    let path = out.join("mlp_graph.dot");
    common::save_graph(&g, &path, loss)?;
    let mut ok = true;
    for p in mlp.layers.iter().flat_map(|l| [l.weight, l.bias]) {
        if g.grad(p).is_err() {
            eprintln!("parameter {} received no gradient", g.name(p)?);
            ok = false;
        }
    }
    Ok(ok)
}
