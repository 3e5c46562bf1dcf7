//! The IDX file format used by MNIST, and a loader for an MNIST-style directory.
//!
//! An IDX file starts with a 4-byte magic number — two zero bytes, a type code and the number
//! of dimensions — followed by each dimension as a big-endian `u32` and then the values in
//! row-major order. Only the unsigned-byte type (`0x08`) is supported, which is what MNIST and
//! its drop-in replacements (Fashion-MNIST, KMNIST) use. Files may be gzip-compressed.
//!
//! Sizes are checked before anything is allocated: the size a header claims is computed with
//! checked arithmetic and compared with the file's length, and gzip data is decompressed with a
//! cap of one byte more than the header justifies, so a corrupt or hostile header cannot cause
//! a huge allocation.

use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::{read_capped, Dataset};
use crate::error::{Error, Result};

/// The type code of unsigned bytes, the only element type supported.
const TYPE_U8: u8 = 0x08;
/// The most dimensions accepted.
const MAX_DIMS: usize = 4;
/// MNIST-format labels are digits.
const MNIST_CLASSES: usize = 10;

/// An n-dimensional array of bytes read from an IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first (e.g. `[count, rows, cols]` for an images file).
    pub dims: Vec<usize>,
    /// The values in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes (type `0x08`), gzip-compressed or raw.
///
/// Compression is detected from the gzip magic bytes `1f 8b`, not from the file name. Errors
/// (all naming the file): a bad magic number, an unsupported or unknown type code, zero or more
/// than 4 dimensions, a header that claims more data than is present (truncated) or less
/// (trailing bytes), corrupt gzip data, and I/O failures.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(shown.clone(), e))?;
    parse_idx(&bytes, &shown)
}

/// Parses the bytes of an IDX file (gzip-compressed or raw); `name` is used in error messages.
///
/// See [`read_idx`] for what is accepted and which errors are reported.
pub fn parse_idx(bytes: &[u8], name: &str) -> Result<IdxArray> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        parse_gzip(bytes, name)
    } else {
        parse_raw(bytes, name)
    }
}

/// Writes an uncompressed IDX file of unsigned bytes (type `0x08`).
///
/// `dims` must have 1 to 4 entries, each at most `u32::MAX`, whose product equals
/// `data.len()`. The file is written to a temporary sibling and renamed into place.
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8]) -> Result<()> {
    const OP: &str = "write_idx";
    if dims.is_empty() || dims.len() > MAX_DIMS {
        return Err(Error::invalid_shape(
            OP,
            dims,
            format!("an IDX file has 1 to {MAX_DIMS} dimensions"),
        ));
    }
    let mut header = vec![0, 0, TYPE_U8, dims.len() as u8];
    for &d in dims {
        let d32 = u32::try_from(d)
            .map_err(|_| Error::invalid_shape(OP, dims, format!("dimension {d} does not fit in 32 bits")))?;
        header.extend_from_slice(&d32.to_be_bytes());
    }
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count != Some(data.len()) {
        return Err(Error::invalid_shape(
            OP,
            dims,
            format!("the shape does not hold the {} data bytes given", data.len()),
        ));
    }
    let mut bytes = header;
    bytes.extend_from_slice(data);
    crate::io::write_atomic(path, &bytes)
}

/// Reads an MNIST-format directory and returns `(train, test)`.
///
/// The directory must hold `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`; each may instead be spelled with a
/// dot (`train-images.idx3-ubyte`) and may carry a `.gz` suffix. Images must be 3-dimensional
/// `[count, rows, cols]` and labels 1-dimensional `[count]`, with matching counts; every label
/// must be below 10. Features are pixel / 255 (so in `[0, 1]`), `n_features` is
/// `rows * cols` and `n_classes` is 10. Errors name the offending file(s).
pub fn load_mnist_dir(dir: &Path) -> Result<(Dataset, Dataset)> {
    let train_images = find_file(dir, "train-images", "idx3-ubyte")?;
    let train_labels = find_file(dir, "train-labels", "idx1-ubyte")?;
    let test_images = find_file(dir, "t10k-images", "idx3-ubyte")?;
    let test_labels = find_file(dir, "t10k-labels", "idx1-ubyte")?;
    let train = load_pair(&train_images, &train_labels)?;
    let test = load_pair(&test_images, &test_labels)?;
    if train.n_features != test.n_features {
        return Err(Error::format(
            test_images.display().to_string(),
            format!(
                "images have {} pixels each but those in {} have {}",
                test.n_features,
                train_images.display(),
                train.n_features
            ),
        ));
    }
    Ok((train, test))
}

/// The first existing spelling of an MNIST file in `dir`.
fn find_file(dir: &Path, stem: &str, kind: &str) -> Result<PathBuf> {
    let names = [
        format!("{stem}-{kind}"),
        format!("{stem}-{kind}.gz"),
        format!("{stem}.{kind}"),
        format!("{stem}.{kind}.gz"),
    ];
    for name in &names {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::format(
        dir.display().to_string(),
        format!(
            "MNIST file not found: looked for {} in this directory",
            names.join(", ")
        ),
    ))
}

/// Reads one images file and its labels file into a data set.
fn load_pair(images_path: &Path, labels_path: &Path) -> Result<Dataset> {
    let images_name = images_path.display().to_string();
    let labels_name = labels_path.display().to_string();
    let images = read_idx(images_path)?;
    let &[count, rows, cols] = images.dims.as_slice() else {
        return Err(Error::format(
            images_name,
            format!(
                "an images file must have 3 dimensions [count, rows, cols], found {:?}",
                images.dims
            ),
        ));
    };
    let labels = read_idx(labels_path)?;
    let &[n_labels] = labels.dims.as_slice() else {
        return Err(Error::format(
            labels_name,
            format!("a labels file must have 1 dimension [count], found {:?}", labels.dims),
        ));
    };
    if n_labels != count {
        return Err(Error::format(
            images_name,
            format!("holds {count} images but {labels_name} holds {n_labels} labels"),
        ));
    }
    if let Some((i, &l)) = labels
        .data
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= MNIST_CLASSES)
    {
        return Err(Error::format(
            labels_name,
            format!(
                "label {l} at index {i} is outside 0..={} (MNIST-format labels are digits)",
                MNIST_CLASSES - 1
            ),
        ));
    }
    // rows * cols cannot overflow: the file held count * rows * cols bytes.
    let n_features = rows * cols;
    Ok(Dataset {
        features: images.data.iter().map(|&b| f32::from(b) / 255.0).collect(),
        labels: labels.data.iter().map(|&l| u32::from(l)).collect(),
        n_features,
        n_classes: MNIST_CLASSES,
    })
}

/// Checks the 4-byte magic number and returns the number of dimensions.
fn check_magic(magic: &[u8], name: &str) -> Result<usize> {
    let &[z0, z1, ty, ndim] = magic else {
        return Err(Error::format(
            name,
            format!("truncated IDX header: {} bytes, expected at least 4", magic.len()),
        ));
    };
    if z0 != 0 || z1 != 0 {
        return Err(Error::format(
            name,
            format!("bad magic number {z0:02x} {z1:02x} {ty:02x} {ndim:02x}: an IDX file starts with two zero bytes"),
        ));
    }
    let type_name = match ty {
        TYPE_U8 => None,
        0x09 => Some("signed byte"),
        0x0B => Some("16-bit integer"),
        0x0C => Some("32-bit integer"),
        0x0D => Some("32-bit float"),
        0x0E => Some("64-bit float"),
        other => {
            return Err(Error::format(
                name,
                format!("bad magic number: unknown IDX type code 0x{other:02x}"),
            ))
        }
    };
    if let Some(t) = type_name {
        return Err(Error::format(
            name,
            format!("unsupported IDX data type 0x{ty:02x} ({t}): only unsigned bytes (0x08) are supported"),
        ));
    }
    let ndim = usize::from(ndim);
    if ndim == 0 || ndim > MAX_DIMS {
        return Err(Error::format(
            name,
            format!("IDX header gives {ndim} dimensions; 1 to {MAX_DIMS} are supported"),
        ));
    }
    Ok(ndim)
}

/// Decodes the big-endian dimensions and returns them with the number of data bytes they imply.
fn parse_dims(raw: &[u8], ndim: usize, name: &str) -> Result<(Vec<usize>, usize)> {
    if raw.len() < 4 * ndim {
        return Err(Error::format(
            name,
            format!(
                "truncated IDX header: {ndim} dimensions need {} bytes after the magic number, found {}",
                4 * ndim,
                raw.len()
            ),
        ));
    }
    let mut dims = Vec::with_capacity(ndim);
    for c in raw[..4 * ndim].chunks_exact(4) {
        let d = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        let d = usize::try_from(d)
            .map_err(|_| Error::format(name, format!("dimension {d} is too large for this platform")))?;
        dims.push(d);
    }
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| {
        Error::format(
            name,
            format!("IDX dimensions {dims:?} describe more data than can be addressed"),
        )
    })?;
    Ok((dims, count))
}

fn truncated(name: &str, dims: &[usize], expected: usize, found: usize) -> Error {
    Error::format(
        name,
        format!("truncated: dimensions {dims:?} need {expected} data bytes but only {found} are present"),
    )
}

fn trailing(name: &str, dims: &[usize], expected: usize) -> Error {
    Error::format(
        name,
        format!("unexpected bytes after the {expected} data bytes of dimensions {dims:?}"),
    )
}

fn parse_raw(bytes: &[u8], name: &str) -> Result<IdxArray> {
    let ndim = check_magic(bytes.get(..4).unwrap_or(bytes), name)?;
    let (dims, expected) = parse_dims(&bytes[4..], ndim, name)?;
    let data = &bytes[4 + 4 * ndim..];
    if data.len() < expected {
        return Err(truncated(name, &dims, expected, data.len()));
    }
    if data.len() > expected {
        return Err(trailing(name, &dims, expected));
    }
    Ok(IdxArray {
        dims,
        data: data.to_vec(),
    })
}

fn parse_gzip(bytes: &[u8], name: &str) -> Result<IdxArray> {
    let gz_err = |e: std::io::Error| Error::format(name, format!("corrupt gzip data: {e}"));
    let mut dec = MultiGzDecoder::new(bytes);
    let magic = read_capped(&mut dec, 4).map_err(gz_err)?;
    let ndim = check_magic(&magic, name)?;
    let raw_dims = read_capped(&mut dec, 4 * ndim as u64).map_err(gz_err)?;
    let (dims, expected) = parse_dims(&raw_dims, ndim, name)?;
    // Read at most one byte more than the header justifies, to detect trailing data.
    let cap = (expected as u64).saturating_add(1);
    let data = read_capped(&mut dec, cap).map_err(gz_err)?;
    if data.len() < expected {
        return Err(truncated(name, &dims, expected, data.len()));
    }
    if data.len() > expected {
        return Err(trailing(name, &dims, expected));
    }
    Ok(IdxArray { dims, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A fresh, empty directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("wgrad-idx-test-{}-{tag}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn idx_bytes(ty: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, ty, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn err(bytes: &[u8]) -> String {
        parse_idx(bytes, "f.idx").unwrap_err().to_string()
    }

    #[test]
    fn round_trip_raw_and_gzip() {
        let dir = TempDir::new("rt");
        let data: Vec<u8> = (0..24u8).collect();
        let p = dir.0.join("a.idx");
        write_idx(&p, &[2, 3, 4], &data).unwrap();
        let a = read_idx(&p).unwrap();
        assert_eq!(a.dims, [2, 3, 4]);
        assert_eq!(a.data, data);
        let gz = dir.0.join("a.idx.gz");
        std::fs::write(&gz, gzip(&std::fs::read(&p).unwrap())).unwrap();
        assert_eq!(read_idx(&gz).unwrap(), a);
        // A zero-sized dimension is valid.
        write_idx(&p, &[0, 28, 28], &[]).unwrap();
        assert_eq!(read_idx(&p).unwrap().dims, [0, 28, 28]);
        // Concatenated gzip members are read as one stream.
        let bytes = idx_bytes(8, &[4], &[1, 2, 3, 4]);
        let mut two = gzip(&bytes[..6]);
        two.extend(gzip(&bytes[6..]));
        assert_eq!(parse_idx(&two, "x").unwrap().data, [1, 2, 3, 4]);
    }

    #[test]
    fn write_idx_validates() {
        let dir = TempDir::new("w");
        let p = dir.0.join("w.idx");
        assert!(write_idx(&p, &[], &[]).is_err());
        assert!(write_idx(&p, &[1, 1, 1, 1, 1], &[0]).is_err());
        assert!(write_idx(&p, &[2, 2], &[0; 3]).is_err());
        assert!(write_idx(&p, &[usize::MAX, 2], &[]).is_err());
        assert!(!p.exists());
    }

    #[test]
    fn bad_magic_and_types() {
        let e = err(&idx_bytes(8, &[1], &[0])
            .iter()
            .enumerate()
            .map(|(i, &b)| if i == 0 { 1 } else { b })
            .collect::<Vec<_>>());
        assert!(e.contains("bad magic"), "{e}");
        let e = err(b"P5\n28 28\n255\n");
        assert!(e.starts_with("f.idx:") && e.contains("bad magic"), "{e}");
        let e = err(&idx_bytes(0x0D, &[1], &[0; 4]));
        assert!(e.contains("unsupported") && e.contains("0x0d"), "{e}");
        let e = err(&idx_bytes(0x42, &[1], &[0]));
        assert!(e.contains("unknown IDX type code 0x42"), "{e}");
        let e = err(&[0, 0, 8]);
        assert!(e.contains("truncated IDX header"), "{e}");
        let e = err(&[]);
        assert!(e.contains("truncated IDX header"), "{e}");
    }

    #[test]
    fn wrong_ndim() {
        let e = err(&idx_bytes(8, &[], &[]));
        assert!(e.contains("0 dimensions"), "{e}");
        let e = err(&idx_bytes(8, &[1, 1, 1, 1, 1], &[0]));
        assert!(e.contains("5 dimensions"), "{e}");
        let e = err(&gzip(&idx_bytes(8, &[1, 1, 1, 1, 1], &[0])));
        assert!(e.contains("5 dimensions"), "{e}");
    }

    #[test]
    fn truncated_and_trailing() {
        let good = idx_bytes(8, &[3, 2], &[1, 2, 3, 4, 5, 6]);
        let e = err(&good[..good.len() - 1]);
        assert!(
            e.contains("truncated") && e.contains("need 6") && e.contains("only 5"),
            "{e}"
        );
        let e = err(&good[..9]);
        assert!(e.contains("truncated IDX header"), "{e}");
        let e = err(&gzip(&good[..good.len() - 2]));
        assert!(e.contains("truncated") && e.contains("only 4"), "{e}");
        let e = err(&gzip(&good[..6]));
        assert!(e.contains("truncated IDX header"), "{e}");
        let mut long = good.clone();
        long.push(7);
        let e = err(&long);
        assert!(e.contains("unexpected bytes after"), "{e}");
        let e = err(&gzip(&long));
        assert!(e.contains("unexpected bytes after"), "{e}");
        // A damaged gzip stream is reported as such.
        let gz = gzip(&good);
        let e = err(&gz[..gz.len() - 10]);
        assert!(e.contains("gzip") || e.contains("truncated"), "{e}");
    }

    #[test]
    fn huge_claims_fail_without_allocating() {
        let dir = TempDir::new("huge");
        // 2^31 items claimed by a 20-byte file.
        let bytes = idx_bytes(8, &[1 << 31], &[0; 12]);
        assert_eq!(bytes.len(), 20);
        let p = dir.0.join("huge.idx");
        std::fs::write(&p, &bytes).unwrap();
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(e.contains("2147483648") && e.contains("truncated"), "{e}");
        // The same inside gzip: decompression stops at the real end of the stream.
        let gz = dir.0.join("huge.idx.gz");
        std::fs::write(&gz, gzip(&bytes)).unwrap();
        let e = read_idx(&gz).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        // Dimensions whose product overflows.
        let e = err(&idx_bytes(8, &[u32::MAX; 4], &[]));
        assert!(
            e.contains("more data than can be addressed") || e.contains("truncated"),
            "{e}"
        );
        let e = err(&gzip(&idx_bytes(8, &[u32::MAX, 3], &[1, 2, 3])));
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = crate::data::Rng::new(99);
        let good = idx_bytes(8, &[2, 3], &[1, 2, 3, 4, 5, 6]);
        let good_gz = gzip(&good);
        for i in 0..500 {
            let mut bytes = if i % 2 == 0 { good.clone() } else { good_gz.clone() };
            match i % 3 {
                0 => bytes.truncate(rng.below(bytes.len() + 1)),
                1 => {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.next_u64() as u8;
                }
                _ => bytes = (0..rng.below(40)).map(|_| (rng.next_u64() % 5) as u8).collect(),
            }
            let _ = parse_idx(&bytes, "fuzz");
        }
    }

    fn write_mnist(dir: &Path, names: [&str; 4], gz: bool, train: (usize, &[u8]), test: (usize, &[u8])) {
        let write = |name: &str, dims: &[u32], data: &[u8]| {
            let bytes = idx_bytes(8, dims, data);
            let bytes = if gz { gzip(&bytes) } else { bytes };
            std::fs::write(dir.join(name), bytes).unwrap();
        };
        let img = |n: usize| -> Vec<u8> { (0..n * 4).map(|v| (v * 17 % 256) as u8).collect() };
        write(names[0], &[train.0 as u32, 2, 2], &img(train.0));
        write(names[1], &[train.1.len() as u32], train.1);
        write(names[2], &[test.0 as u32, 2, 2], &img(test.0));
        write(names[3], &[test.1.len() as u32], test.1);
    }

    const DASH: [&str; 4] = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];

    #[test]
    fn mnist_dir_loads_all_spellings() {
        let dir = TempDir::new("mnist");
        write_mnist(&dir.0, DASH, false, (3, &[0, 9, 4]), (2, &[1, 2]));
        let (train, test) = load_mnist_dir(&dir.0).unwrap();
        assert_eq!(train.len(), 3);
        assert_eq!(test.len(), 2);
        assert_eq!(train.n_features, 4);
        assert_eq!(train.n_classes, 10);
        assert_eq!(train.labels, [0, 9, 4]);
        assert_eq!(train.features[1], 17.0 / 255.0);
        assert!(train.features.iter().all(|&v| (0.0..=1.0).contains(&v)));
        train.validate().unwrap();
        test.validate().unwrap();

        let dir2 = TempDir::new("mnist-dot-gz");
        let dot = [
            "train-images.idx3-ubyte.gz",
            "train-labels.idx1-ubyte.gz",
            "t10k-images.idx3-ubyte.gz",
            "t10k-labels.idx1-ubyte.gz",
        ];
        write_mnist(&dir2.0, dot, true, (3, &[0, 9, 4]), (2, &[1, 2]));
        let (train2, test2) = load_mnist_dir(&dir2.0).unwrap();
        assert_eq!(train2.features, train.features);
        assert_eq!(test2.labels, test.labels);

        let dir3 = TempDir::new("mnist-dash-gz");
        let gz = DASH.map(|n| format!("{n}.gz"));
        write_mnist(&dir3.0, [&gz[0], &gz[1], &gz[2], &gz[3]], true, (1, &[5]), (1, &[6]));
        assert_eq!(load_mnist_dir(&dir3.0).unwrap().1.labels, [6]);
    }

    #[test]
    fn mnist_dir_errors() {
        // Counts disagree: the error names both files and both counts.
        let dir = TempDir::new("count");
        write_mnist(&dir.0, DASH, false, (3, &[0, 1]), (1, &[1]));
        let e = load_mnist_dir(&dir.0).unwrap_err().to_string();
        assert!(
            e.contains("train-images-idx3-ubyte")
                && e.contains("train-labels-idx1-ubyte")
                && e.contains("3 images")
                && e.contains("2 labels"),
            "{e}"
        );
        // Label out of range names the labels file.
        let dir = TempDir::new("label");
        write_mnist(&dir.0, DASH, false, (2, &[0, 1]), (2, &[3, 10]));
        let e = load_mnist_dir(&dir.0).unwrap_err().to_string();
        assert!(
            e.contains("t10k-labels-idx1-ubyte") && e.contains("label 10 at index 1"),
            "{e}"
        );
        // Wrong number of dimensions.
        let dir = TempDir::new("ndim");
        write_mnist(&dir.0, DASH, false, (2, &[0, 1]), (1, &[3]));
        std::fs::write(dir.0.join(DASH[1]), idx_bytes(8, &[2, 1], &[0, 1])).unwrap();
        let e = load_mnist_dir(&dir.0).unwrap_err().to_string();
        assert!(
            e.contains("train-labels-idx1-ubyte") && e.contains("1 dimension"),
            "{e}"
        );
        std::fs::write(dir.0.join(DASH[1]), idx_bytes(8, &[2], &[0, 1])).unwrap();
        std::fs::write(dir.0.join(DASH[0]), idx_bytes(8, &[2, 4], &[0; 8])).unwrap();
        let e = load_mnist_dir(&dir.0).unwrap_err().to_string();
        assert!(
            e.contains("train-images-idx3-ubyte") && e.contains("3 dimensions"),
            "{e}"
        );
        // Train and test image sizes differ.
        std::fs::write(dir.0.join(DASH[0]), idx_bytes(8, &[2, 1, 3], &[0; 6])).unwrap();
        let e = load_mnist_dir(&dir.0).unwrap_err().to_string();
        assert!(e.contains("pixels"), "{e}");
        // A missing file names the directory and what was looked for.
        std::fs::remove_file(dir.0.join(DASH[3])).unwrap();
        let e = load_mnist_dir(&dir.0).unwrap_err().to_string();
        assert!(e.contains("t10k-labels-idx1-ubyte") && e.contains("not found"), "{e}");
        let e = load_mnist_dir(&dir.0.join("nope")).unwrap_err().to_string();
        assert!(e.contains("not found"), "{e}");
    }
}
