//! Compiled pipelines kept across runs: wgpu's [`wgpu::PipelineCache`] (Vulkan), saved in a
//! file per adapter and driver in the user's cache directory.
//!
//! The file is wgpu's cache data behind a header of our own: a magic, the data's length and
//! an FNV-1a checksum of it. A file that is truncated, altered or not ours is ignored (the
//! device starts with an empty cache and overwrites it); wgpu then checks that the data was
//! made by the same adapter, driver and wgpu, and falls back to an empty cache when it was
//! not. Saving writes a temporary file and renames it, so a reader never sees half a file.

use std::path::{Path, PathBuf};

/// Where a device keeps its pipeline cache ([`GpuOptions::pipeline_cache`](super::GpuOptions)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PipelineCacheDir {
    /// `WGRAD_PIPELINE_CACHE` if set (a directory, or `off`), else the user's cache directory:
    /// `$XDG_CACHE_HOME/wgrad`, `~/.cache/wgrad`, or `%LOCALAPPDATA%\wgrad` on Windows.
    #[default]
    Default,
    /// No cache file: pipelines are compiled anew by every process.
    Off,
    /// This directory.
    At(PathBuf),
}

impl PipelineCacheDir {
    /// The directory this resolves to, `None` when off or when no cache directory is known.
    pub fn resolve(&self) -> Option<PathBuf> {
        match self {
            PipelineCacheDir::Off => None,
            PipelineCacheDir::At(p) => Some(p.clone()),
            PipelineCacheDir::Default => {
                let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
                if let Some(v) = env("WGRAD_PIPELINE_CACHE") {
                    let off = ["off", "0", "false", "none"];
                    return match v.to_str() {
                        Some(s) if off.contains(&s.to_ascii_lowercase().as_str()) => None,
                        _ => Some(PathBuf::from(v)),
                    };
                }
                if let Some(d) = env("XDG_CACHE_HOME") {
                    return Some(PathBuf::from(d).join("wgrad"));
                }
                if cfg!(windows) {
                    if let Some(d) = env("LOCALAPPDATA") {
                        return Some(PathBuf::from(d).join("wgrad"));
                    }
                }
                env("HOME").map(|h| PathBuf::from(h).join(".cache").join("wgrad"))
            }
        }
    }
}

/// What a device did with its pipeline cache, for tools to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PipelineCacheState {
    /// Not kept: turned off, no cache directory, a browser, or an adapter whose backend wgpu
    /// keeps no pipeline cache for (all but Vulkan). The reason, in words.
    Unavailable(String),
    /// Kept in `path`; `loaded` bytes of earlier compilations were read from it (0: no file
    /// yet, or one that was ignored: `ignored` says why). Data read is handed to wgpu, which
    /// uses it only if this adapter, driver and wgpu version made it.
    Kept {
        /// The cache file.
        path: PathBuf,
        /// Bytes of cache data read from it when the device was opened.
        loaded: usize,
        /// Why an existing file was not used, if one was not.
        ignored: Option<String>,
    },
}

impl std::fmt::Display for PipelineCacheState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipelineCacheState::Unavailable(why) => write!(f, "no pipeline cache ({why})"),
            PipelineCacheState::Kept { path, loaded, ignored } => {
                match (loaded, ignored) {
                    (0, Some(why)) => write!(f, "pipeline cache ignored ({why}), starting anew")?,
                    (0, None) => write!(f, "pipeline cache empty")?,
                    (n, _) => write!(f, "pipeline cache of {n} bytes read")?,
                }
                write!(f, ": {}", path.display())
            }
        }
    }
}

const MAGIC: &[u8; 8] = b"WGRADPC1";
const HEADER: usize = 24;

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The cache file's name for an adapter: wgpu's key (backend, vendor and device) and a hash of
/// the adapter's name and driver, so a driver update starts a new file. `None` where wgpu keeps
/// no pipeline cache for the backend.
pub(super) fn file_name(info: &wgpu::AdapterInfo) -> Option<String> {
    let key = wgpu::util::pipeline_cache_key(info)?;
    let driver = format!("{}\n{}\n{}", info.name, info.driver, info.driver_info);
    Some(format!("{key}_{:016x}.bin", fnv1a(driver.as_bytes())))
}

/// `data` with the header in front.
pub(super) fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&fnv1a(data).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// The data of a cache file, or why it is not usable.
pub(super) fn decode(file: &[u8]) -> Result<&[u8], String> {
    if file.len() < HEADER || &file[..8] != MAGIC {
        return Err("not a wgrad pipeline cache".into());
    }
    let word = |i: usize| u64::from_le_bytes(file[i..i + 8].try_into().expect("8 bytes"));
    let (len, sum) = (word(8), word(16));
    let data = &file[HEADER..];
    if data.len() as u64 != len {
        return Err(format!("{} bytes of data where the header says {len}", data.len()));
    }
    if fnv1a(data) != sum {
        return Err("checksum mismatch".into());
    }
    Ok(data)
}

/// Files larger than this are not read (no driver's cache of a library's pipelines comes near).
const MAX_FILE: u64 = 256 << 20;

/// The cache file's bytes; an error for a file past [`MAX_FILE`] as for one that cannot be read.
pub(super) fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_FILE {
        return Err(std::io::Error::other(format!(
            "{len} bytes, more than a pipeline cache holds"
        )));
    }
    std::fs::read(path)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A name of its own per write: devices of one process, or several processes, may save the
    // same file at once; the last rename wins, each complete.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_round_trips_and_damage_is_detected() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let file = encode(&data);
        assert_eq!(decode(&file).unwrap(), &data[..]);
        // Truncated, extended, one byte flipped, the wrong magic, empty.
        assert!(decode(&file[..file.len() - 1]).is_err());
        let mut longer = file.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        for i in [0, 9, 17, HEADER, file.len() - 1] {
            let mut bad = file.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "byte {i} flipped was accepted");
        }
        assert!(decode(b"").is_err());
        assert!(decode(&file[..HEADER - 1]).is_err());
    }

    #[test]
    fn the_directory_resolves_from_options() {
        assert_eq!(PipelineCacheDir::Off.resolve(), None);
        let p = PathBuf::from("/some/where");
        assert_eq!(PipelineCacheDir::At(p.clone()).resolve(), Some(p));
    }
}
