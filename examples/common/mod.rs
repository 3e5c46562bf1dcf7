//! What the small self-checking examples share: `--flag value` parsing, the device choice,
//! the output folder, and turning an error or a failed check into a non-zero exit.
#![allow(dead_code)]

use std::path::PathBuf;
use wgrad::{Device, Graph, NodeId};

/// The command line of an example.
pub struct Cli {
    args: Vec<String>,
}

impl Cli {
    pub fn new() -> Cli {
        Cli {
            args: std::env::args().collect(),
        }
    }

    /// The value after `name`, if given.
    pub fn flag(&self, name: &str) -> Option<String> {
        self.args
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.args.get(i + 1))
            .cloned()
    }

    /// `--device auto|gpu|cpu` (default auto), opened and announced.
    pub fn device(&self) -> wgrad::Result<Device> {
        let device = Device::from_name(&self.flag("--device").unwrap_or_else(|| "auto".into()))?;
        println!("device: {}", device.info());
        Ok(device)
    }

    /// `--out DIR`, default `target/graphs`.
    pub fn out_dir(&self) -> PathBuf {
        PathBuf::from(self.flag("--out").unwrap_or_else(|| "target/graphs".into()))
    }
}

/// Writes the graph as DOT (and SVG when Graphviz is installed) and says where.
pub fn save_graph(g: &Graph, path: &std::path::Path, loss: NodeId) -> wgrad::Result<()> {
    let svg = g.save_dot(path, Some(loss))?;
    println!(
        "graph: {}{}",
        path.display(),
        svg.map(|p| format!(", {}", p.display())).unwrap_or_default()
    );
    Ok(())
}

/// Runs an example body: an error or a failed check (`Ok(false)`) exits with status 1.
pub fn run_checked(body: impl FnOnce() -> wgrad::Result<bool>, what: &str) {
    match body() {
        Ok(true) => println!("{what} passed"),
        Ok(false) => {
            eprintln!("{what} FAILED");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
