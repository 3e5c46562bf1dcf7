//! Saving and loading a graph's parameters: the checkpoint methods of [`Graph`].

use std::path::Path;

use super::{layout_metadata, load_checkpoint, read_tensor, resolve_layout, save_checkpoint, Layout, NamedTensor};
use crate::error::Result;
use crate::graph::Graph;

impl Graph {
    /// Every parameter as a named tensor, in the graph's own shapes (by node name).
    pub fn parameter_tensors(&mut self) -> Result<Vec<NamedTensor>> {
        self.parameters()
            .into_iter()
            .map(|id| {
                let (name, shape) = (self.name(id)?.to_string(), self.shape(id)?);
                Ok(NamedTensor::new(name, shape, self.value(id)?))
            })
            .collect()
    }

    /// Writes parameters from named tensors in the graph's own shapes (as from
    /// [`Graph::parameter_tensors`]). Every parameter must be present with its shape and finite
    /// values; all are checked before any is written, so a bad set changes nothing. Extra
    /// tensors are ignored.
    pub fn load_parameter_tensors(&mut self, tensors: &[NamedTensor]) -> Result<()> {
        self.load_parameter_tensors_as(tensors, Layout::Graph)
    }

    /// [`Graph::load_parameter_tensors`] for tensors stored in `layout`: with
    /// [`Layout::Torch`], every matrix parameter (rank 2) is read from the transposed tensor.
    pub fn load_parameter_tensors_as(&mut self, tensors: &[NamedTensor], layout: Layout) -> Result<()> {
        let staged = self
            .parameters()
            .into_iter()
            .map(|id| read_tensor(tensors, self.name(id)?, &self.shape(id)?, layout).map(|data| (id, data)))
            .collect::<Result<Vec<_>>>()?;
        for (id, data) in staged {
            self.write(id, &data)?;
        }
        Ok(())
    }

    /// Saves every parameter to a safetensors file (names are node names; they must be unique),
    /// in the graph's own shapes, and records that layout (`"wgrad.layout": "graph"` in the
    /// file's metadata, see [`crate::io::Layout`]).
    pub fn save_parameters(&mut self, path: &Path) -> Result<()> {
        let tensors = self.parameter_tensors()?;
        save_checkpoint(path, &tensors, &layout_metadata(Layout::Graph))
    }

    /// Loads every parameter from a safetensors file, all or nothing.
    ///
    /// The file's recorded layout decides how it is read: a `"graph"` file as saved by
    /// [`Graph::save_parameters`], a `"torch"` file (as `nn::Mlp::save` writes) with every matrix
    /// transposed back; any other recorded layout is refused. A file that records none is read
    /// by the rule of [`crate::io::resolve_layout`]: in the graph's layout when a non-square
    /// matrix confirms it, else refused (square matrices are ambiguous); state the layout with
    /// [`Graph::load_parameters_as`] for such files. On any error no parameter is changed.
    pub fn load_parameters(&mut self, path: &Path) -> Result<()> {
        self.load_parameters_with(path, None)
    }

    /// [`Graph::load_parameters`] with the file's layout stated by the caller, for files that
    /// record none (older versions, other tools). A file that records a different layout is
    /// refused.
    pub fn load_parameters_as(&mut self, path: &Path, layout: Layout) -> Result<()> {
        self.load_parameters_with(path, Some(layout))
    }

    fn load_parameters_with(&mut self, path: &Path, stated: Option<Layout>) -> Result<()> {
        let ckpt = load_checkpoint(path)?;
        let wanted = self
            .parameters()
            .into_iter()
            .map(|id| Ok((self.name(id)?.to_string(), self.shape(id)?)))
            .collect::<Result<Vec<(String, Vec<usize>)>>>()?;
        let file = path.display().to_string();
        let layout = resolve_layout(&file, &ckpt, stated, Layout::Graph, &wanted)?;
        self.load_parameter_tensors_as(&ckpt.tensors, layout)
    }
}
