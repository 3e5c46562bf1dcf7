//! Saving and loading named `f32` tensors in the safetensors format.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON header that gives each
//! tensor's dtype, shape and byte range, and then the raw tensor bytes. wgrad writes and reads
//! only `F32` tensors (little-endian). Files are written atomically: the bytes go to a temporary
//! sibling file which is then renamed over the destination, so a failed save never leaves a
//! half-written file behind.
//!
//! # Checkpoint layouts
//!
//! A linear layer's weight is an in×out matrix in the graph (y = x·W + b) but out×in in
//! PyTorch's `nn.Linear`. The same tensor name can therefore hold either layout, and a square
//! matrix loaded in the wrong one would be silently transposed. wgrad records the layout of
//! every checkpoint it writes in the file's metadata, under the key [`LAYOUT_KEY`]
//! (`"wgrad.layout"`), as `"graph"` or `"torch"` (see [`Layout`]); the loaders convert between
//! the two and refuse any other value.
//!
//! Files without that key (written by older wgrad versions, PyTorch or other tools) are read
//! by [`resolve_layout`]'s rule: the caller may state the layout; otherwise the loader assumes
//! its own layout (the graph's for `Graph::load_parameters`, PyTorch's for `nn::Mlp::load`, as
//! older versions of each wrote) only when a non-square matrix in the file confirms it; a file
//! whose matrices are all square, or whose shapes fit only the other layout, is refused with
//! an error that says how to state the layout.

mod checkpoint;
mod safetensors;

pub use self::safetensors::{
    deserialize_checkpoint, deserialize_safetensors, serialize_checkpoint, serialize_safetensors,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// One named `f32` tensor: its name, its shape and its values in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// The tensor's name, unique within a file.
    pub name: String,
    /// The tensor's shape; an empty shape is a scalar.
    pub shape: Vec<usize>,
    /// The values in row-major order; `data.len()` must equal the product of `shape`.
    pub data: Vec<f32>,
}

impl NamedTensor {
    /// A tensor from its parts (not validated until it is saved or serialized).
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        NamedTensor {
            name: name.into(),
            shape,
            data,
        }
    }
}

/// The metadata key under which wgrad records a checkpoint's [`Layout`].
pub const LAYOUT_KEY: &str = "wgrad.layout";

/// How the matrices of a checkpoint are laid out relative to the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Every tensor in the graph's own shape: a linear layer's weight is in×out. Written by
    /// `Graph::save_parameters`; recorded as `"graph"`.
    Graph,
    /// PyTorch's `nn.Linear` layout: every matrix (rank-2 tensor) is the transpose of the
    /// graph's, so a linear layer's weight is out×in; tensors of other ranks are as in the
    /// graph. Written by `nn::Mlp::save`; recorded as `"torch"`.
    Torch,
}

impl Layout {
    /// The value recorded under [`LAYOUT_KEY`]: `"graph"` or `"torch"`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Graph => "graph",
            Layout::Torch => "torch",
        }
    }

    /// The layout recorded as `s`, if it is one wgrad knows.
    pub fn parse(s: &str) -> Option<Layout> {
        match s {
            "graph" => Some(Layout::Graph),
            "torch" => Some(Layout::Torch),
            _ => None,
        }
    }

    fn other(self) -> Layout {
        match self {
            Layout::Graph => Layout::Torch,
            Layout::Torch => Layout::Graph,
        }
    }

    /// The shape in a file of this layout of a tensor whose graph shape is `shape`.
    pub fn file_shape(self, shape: &[usize]) -> Vec<usize> {
        match (self, shape) {
            (Layout::Torch, &[r, c]) => vec![c, r],
            _ => shape.to_vec(),
        }
    }

    /// Values of a tensor of graph shape `shape` rearranged from the graph's order into this
    /// layout's (row-major in [`Layout::file_shape`]).
    pub fn from_graph(self, shape: &[usize], data: &[f32]) -> Vec<f32> {
        match (self, shape) {
            (Layout::Torch, &[r, c]) => transpose(data, r, c),
            _ => data.to_vec(),
        }
    }

    /// Values stored in this layout for a tensor of graph shape `shape`, rearranged into the
    /// graph's order.
    pub fn to_graph(self, shape: &[usize], data: &[f32]) -> Vec<f32> {
        match (self, shape) {
            (Layout::Torch, &[r, c]) => transpose(data, c, r),
            _ => data.to_vec(),
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The transpose of a rows×cols row-major matrix.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// The contents of a safetensors file: its tensors (sorted by name) and its free-form
/// metadata (the `__metadata__` header entry; empty when the file has none).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// The tensors, sorted by name.
    pub tensors: Vec<NamedTensor>,
    /// The string-to-string metadata of the file.
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// The layout recorded under [`LAYOUT_KEY`]: `Ok(None)` when the file records none, an
    /// [`Error::Format`] naming `file` and the value when it is not one wgrad knows.
    pub fn layout(&self, file: &str) -> Result<Option<Layout>> {
        match self.metadata.get(LAYOUT_KEY) {
            None => Ok(None),
            Some(v) => Layout::parse(v).map(Some).ok_or_else(|| {
                Error::format(
                    file,
                    format!(
                        "the file records layout '{v}' (metadata {LAYOUT_KEY}), which this version of \
                         wgrad does not know (it reads 'graph' and 'torch'); nothing was loaded"
                    ),
                )
            }),
        }
    }
}

/// The layout in which to read `tensors` from `file`, for a model whose tensors are `wanted`
/// (name, graph shape).
///
/// - A layout recorded in the file is used (and converted from); when the caller also
///   `stated` one and the two differ, the file is refused.
/// - Without a recorded layout, a `stated` layout is trusted.
/// - Without either, the loader's `native` layout is assumed (what older wgrad versions wrote
///   through the same API) only when at least one of the wanted matrices is non-square and its
///   shape in the file fits `native`, and none fits only the other layout. A file whose wanted
///   matrices are all square is refused: their layout cannot be told from their shapes. A
///   file with no wanted matrix at all is read in `native` (the layouts do not differ).
///
/// Every refusal is an [`Error::Format`] naming the file and the layouts involved.
pub fn resolve_layout(
    file: &str,
    checkpoint: &Checkpoint,
    stated: Option<Layout>,
    native: Layout,
    wanted: &[(String, Vec<usize>)],
) -> Result<Layout> {
    if let Some(recorded) = checkpoint.layout(file)? {
        return match stated {
            Some(s) if s != recorded => Err(Error::format(
                file,
                format!(
                    "the file records layout '{recorded}' (metadata {LAYOUT_KEY}) but layout '{s}' was \
                     requested; nothing was loaded"
                ),
            )),
            _ => Ok(recorded),
        };
    }
    if let Some(s) = stated {
        return Ok(s);
    }
    let mut confirmed = None;
    let mut square = None;
    for (name, shape) in wanted {
        let &[r, c] = shape.as_slice() else { continue };
        let Some(t) = checkpoint.tensors.iter().find(|t| &t.name == name) else {
            continue;
        };
        if r == c {
            square.get_or_insert(name.as_str());
            continue;
        }
        if t.shape == native.file_shape(shape) {
            confirmed.get_or_insert(name.as_str());
        } else if t.shape == native.other().file_shape(shape) {
            return Err(Error::format(
                file,
                format!(
                    "the file records no layout (metadata {LAYOUT_KEY}) and tensor '{name}' has shape \
                     {:?}, which fits the '{}' layout, not the '{native}' layout this loader assumes \
                     for such files; if the file is in the '{}' layout, state it \
                     (Graph::load_parameters_as or nn::Mlp::load_as with Layout::{:?}); nothing was \
                     loaded",
                    t.shape,
                    native.other(),
                    native.other(),
                    native.other()
                ),
            ));
        }
    }
    match (confirmed, square) {
        (None, Some(name)) => Err(Error::format(
            file,
            format!(
                "the file records no layout (metadata {LAYOUT_KEY}), and its matrices (e.g. '{name}') \
                 are square, so whether they are stored in the graph's in×out layout or PyTorch's \
                 out×in cannot be told; state the layout (Graph::load_parameters_as or \
                 nn::Mlp::load_as with Layout::Graph or Layout::Torch) or re-save the file with this \
                 version; nothing was loaded"
            ),
        )),
        _ => Ok(native),
    }
}

/// The tensor `name` of a model, read from `tensors` stored in `layout`: checked (present,
/// of the shape `layout` gives `shape`, finite) and returned in the graph's order.
pub fn read_tensor(tensors: &[NamedTensor], name: &str, shape: &[usize], layout: Layout) -> Result<Vec<f32>> {
    let file_shape = layout.file_shape(shape);
    let t = tensors
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| tensor_err(name, "missing from the file"))?;
    if t.shape != file_shape {
        let model = if file_shape == shape {
            format!("{shape:?}")
        } else {
            format!("{file_shape:?} (the model's {shape:?} in the '{layout}' layout)")
        };
        return Err(tensor_err(
            name,
            format!("shape {:?} in the file, the model needs {model}", t.shape),
        ));
    }
    let t = find_tensor(tensors, name, &file_shape)?;
    Ok(layout.to_graph(shape, &t.data))
}

/// Writes `tensors` to `path` as a safetensors file (dtype `F32`, little-endian).
///
/// The file is written to a temporary sibling and then renamed over `path`, so a failed save
/// leaves any previous file untouched. Validation errors are those of
/// [`serialize_safetensors`]; operating-system failures give [`Error::Io`].
pub fn save_safetensors(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    let bytes = serialize_safetensors(tensors)?;
    write_atomic(path, &bytes)
}

/// Reads the safetensors file at `path` and returns its tensors sorted by name.
///
/// Errors are those of [`deserialize_safetensors`], with the path as the file name, plus
/// [`Error::Io`] when the file cannot be read.
pub fn load_safetensors(path: &Path) -> Result<Vec<NamedTensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path.display().to_string(), e))?;
    deserialize_safetensors(&bytes, &path.display().to_string())
}

/// Writes `tensors` and `metadata` to `path` as a safetensors file, atomically (see
/// [`save_safetensors`]).
pub fn save_checkpoint(path: &Path, tensors: &[NamedTensor], metadata: &BTreeMap<String, String>) -> Result<()> {
    let bytes = serialize_checkpoint(tensors, metadata)?;
    write_atomic(path, &bytes)
}

/// Reads the safetensors file at `path`: its tensors sorted by name and its metadata.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path.display().to_string(), e))?;
    deserialize_checkpoint(&bytes, &path.display().to_string())
}

/// The metadata that records `layout`.
pub fn layout_metadata(layout: Layout) -> BTreeMap<String, String> {
    BTreeMap::from([(LAYOUT_KEY.to_string(), layout.name().to_string())])
}

/// Writes `bytes` to `path` through a temporary sibling file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let shown = path.display().to_string();
    let tmp = temp_sibling(path).ok_or_else(|| {
        Error::io(
            shown.clone(),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path does not name a file"),
        )
    })?;
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        // Name the file the caller asked for, not the hidden temporary beside it.
        return Err(Error::io(shown, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(shown, e));
    }
    Ok(())
}

/// The tensor called `name`, checked before a model uses it: present, of `shape`, finite.
pub fn find_tensor<'a>(tensors: &'a [NamedTensor], name: &str, shape: &[usize]) -> Result<&'a NamedTensor> {
    let t = tensors
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| tensor_err(name, "missing from the file"))?;
    if t.shape != shape {
        return Err(tensor_err(
            name,
            format!("shape {:?} in the file, the model needs {:?}", t.shape, shape),
        ));
    }
    if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
        return Err(tensor_err(name, format!("element {i} is {}", t.data[i])));
    }
    Ok(t)
}

/// A hidden, unique file name in the same directory as `path`.
fn temp_sibling(path: &Path) -> Option<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file_name = path.file_name()?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
    Some(path.with_file_name(tmp_name))
}

fn tensor_err(name: &str, reason: impl Into<String>) -> Error {
    Error::Tensor {
        name: name.to_string(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(tag: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("wgrad-io-test-{}-{tag}-{n}.safetensors", std::process::id()))
    }

    pub(super) fn sample() -> Vec<NamedTensor> {
        vec![
            NamedTensor::new("w1", vec![2, 3], vec![1.0, -2.5, 3.25, f32::MIN_POSITIVE, -0.0, 7e30]),
            NamedTensor::new("b1", vec![3], vec![0.1, 0.2, 0.3]),
            NamedTensor::new("scalar", vec![], vec![42.0]),
            NamedTensor::new("empty", vec![0, 4], vec![]),
        ]
    }

    #[test]
    fn round_trip_file_bit_identical() {
        let path = temp_path("roundtrip");
        let mut tensors = sample();
        tensors.push(NamedTensor::new(
            "nan",
            vec![2],
            vec![f32::from_bits(0x7fc0_1234), f32::INFINITY],
        ));
        save_safetensors(&path, &tensors).unwrap();
        let loaded = load_safetensors(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut expected = tensors.clone();
        expected.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(loaded.len(), expected.len());
        for (a, b) in loaded.iter().zip(&expected) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.shape, b.shape);
            let ab: Vec<u32> = a.data.iter().map(|v| v.to_bits()).collect();
            let bb: Vec<u32> = b.data.iter().map(|v| v.to_bits()).collect();
            assert_eq!(ab, bb, "tensor {}", a.name);
        }
    }

    #[test]
    fn no_temp_files_left_behind() {
        let dir = std::env::temp_dir().join(format!("wgrad-io-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.safetensors");
        save_safetensors(&path, &sample()).unwrap();
        save_safetensors(&path, &sample()[..1]).unwrap();
        // A failed save leaves the previous file intact.
        let bad = [NamedTensor::new("x", vec![2], vec![1.0])];
        assert!(save_safetensors(&path, &bad).is_err());
        let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(load_safetensors(&path).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_file_error_names_path() {
        let path = temp_path("corrupt");
        std::fs::write(&path, b"\x05\0\0\0\0\0\0\0{oops").unwrap();
        let err = load_safetensors(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        let missing = load_safetensors(&temp_path("missing")).unwrap_err();
        assert!(matches!(missing, Error::Io { .. }));
    }

    #[test]
    fn layouts_convert_matrices_only() {
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2×3
        assert_eq!(Layout::Torch.file_shape(&[2, 3]), [3, 2]);
        assert_eq!(Layout::Torch.from_graph(&[2, 3], &w), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(
            Layout::Torch.to_graph(&[2, 3], &Layout::Torch.from_graph(&[2, 3], &w)),
            w
        );
        for shape in [&[6][..], &[1, 2, 3]] {
            assert_eq!(Layout::Torch.file_shape(shape), shape);
            assert_eq!(Layout::Torch.from_graph(shape, &w), w);
        }
        assert_eq!(Layout::Graph.from_graph(&[2, 3], &w), w);
        for l in [Layout::Graph, Layout::Torch] {
            assert_eq!(Layout::parse(l.name()), Some(l));
        }
    }

    #[test]
    fn layout_resolution_rules() {
        let ckpt = |shapes: &[(&str, Vec<usize>)], layout: Option<Layout>| Checkpoint {
            tensors: shapes
                .iter()
                .map(|(n, s)| NamedTensor::new(*n, s.clone(), vec![0.0; s.iter().product()]))
                .collect(),
            metadata: layout.map(layout_metadata).unwrap_or_default(),
        };
        let wanted = |v: &[(&str, Vec<usize>)]| -> Vec<(String, Vec<usize>)> {
            v.iter().map(|(n, s)| (n.to_string(), s.clone())).collect()
        };
        let square = wanted(&[("a", vec![3, 3]), ("b", vec![3])]);
        let mixed = wanted(&[("a", vec![3, 3]), ("c", vec![3, 2])]);
        use Layout::{Graph as G, Torch as T};
        // Recorded layouts win; a contradicting statement is refused.
        let rec = ckpt(&[("a", vec![3, 3])], Some(T));
        assert_eq!(resolve_layout("f", &rec, None, G, &square).unwrap(), T);
        assert_eq!(resolve_layout("f", &rec, Some(T), G, &square).unwrap(), T);
        assert!(resolve_layout("f", &rec, Some(G), G, &square).is_err());
        // No record: square only is ambiguous unless stated.
        let bare = ckpt(&[("a", vec![3, 3]), ("b", vec![3])], None);
        let e = resolve_layout("f", &bare, None, G, &square).unwrap_err();
        assert!(e.to_string().contains("'a'"), "{e}");
        assert_eq!(resolve_layout("f", &bare, Some(T), G, &square).unwrap(), T);
        // A non-square matrix confirms the native layout, or contradicts it.
        let graph_file = ckpt(&[("a", vec![3, 3]), ("c", vec![3, 2])], None);
        assert_eq!(resolve_layout("f", &graph_file, None, G, &mixed).unwrap(), G);
        assert!(resolve_layout("f", &graph_file, None, T, &mixed).is_err());
        let torch_file = ckpt(&[("a", vec![3, 3]), ("c", vec![2, 3])], None);
        assert_eq!(resolve_layout("f", &torch_file, None, T, &mixed).unwrap(), T);
        // No matrices at all: nothing to convert.
        let vectors = wanted(&[("b", vec![3])]);
        assert_eq!(resolve_layout("f", &bare, None, T, &vectors).unwrap(), T);
    }
}
