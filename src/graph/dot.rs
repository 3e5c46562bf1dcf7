//! Graphviz DOT export: one node per variable (op and shape), edges for dependence.

use super::{Graph, NodeKind};
use crate::ops::Op;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Graph {
    /// Writes a DOT description of the graph (see [`Graph::to_dot_with`] for options).
    pub fn to_dot(&self) -> String {
        self.to_dot_with(None)
    }

    /// DOT text of the graph. Inputs are grey boxes, parameters blue boxes, op results
    /// ellipses labelled with the op; `loss` (if given) is drawn red and doubled. Nodes that
    /// hold a gradient from the last backward pass say so.
    pub fn to_dot_with(&self, loss: Option<super::NodeId>) -> String {
        let mut s = String::from("digraph wgrad {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [color=\"#555555\"];\n");
        for (i, n) in self.nodes.iter().enumerate() {
            let shape = format!("{:?}", n.shape);
            let grad = if n.grad_ready { "\\n∇ computed" } else { "" };
            let (style, label) = match n.kind() {
                NodeKind::Input => (
                    "shape=box, style=filled, fillcolor=\"#e8e8e8\"",
                    format!("{}\\ninput {}{}", esc(&n.name), shape, grad),
                ),
                NodeKind::Parameter => (
                    "shape=box, style=filled, fillcolor=\"#cfe2ff\"",
                    format!("{}\\nparameter {}{}", esc(&n.name), shape, grad),
                ),
                NodeKind::Result => (
                    "shape=ellipse",
                    format!("{}\\n{} {}{}", esc(&n.name), n.op.name(), shape, grad),
                ),
            };
            let is_loss = loss.is_some_and(|l| l.graph == self.id && l.idx == i);
            let extra = if is_loss {
                ", color=\"#c00000\", penwidth=2, peripheries=2"
            } else {
                ""
            };
            let _ = writeln!(s, "  n{i} [label=\"{label}\", {style}{extra}];");
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for (pos, j) in n.op.inputs().into_iter().enumerate() {
                let dashed = if n.op.differentiable().contains(&pos) {
                    ""
                } else {
                    " [style=dashed]"
                };
                let _ = writeln!(s, "  n{j} -> n{i}{dashed};");
            }
            if let Op::Detach { .. } = n.op {
                let _ = writeln!(s, "  n{i} [style=dashed];");
            }
        }
        s.push_str("}\n");
        s
    }
}

impl Graph {
    /// Writes [`Graph::to_dot_with`] to `path`; when Graphviz's `dot` program is installed, also
    /// renders it to SVG beside it (same name, `.svg`) and returns that path.
    pub fn save_dot(
        &self,
        path: &std::path::Path,
        loss: Option<super::NodeId>,
    ) -> crate::Result<Option<std::path::PathBuf>> {
        let text = self.to_dot_with(loss);
        let io = |e| crate::Error::io(path.display().to_string(), e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(path, &text).map_err(io)?;
        let mut svg = path.with_extension("svg");
        if svg == path {
            svg = std::path::PathBuf::from(format!("{}.svg", path.display()));
        }
        let rendered = std::process::Command::new("dot")
            .arg("-Tsvg")
            .arg(path)
            .arg("-o")
            .arg(&svg)
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        Ok(rendered.then_some(svg))
    }
}
