//! What the examples share: one command-line parser (lexopt) with clear errors, the device
//! choice, checks of output paths and of memory sizes made before any work starts, and
//! turning an error or a failed check into a non-zero exit.
//!
//! Exit codes used by every example: 0 success, 1 an error or a failed check, 2 a bad
//! command line (the message says what was wrong, followed by the usage text).
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use wgrad::{Device, Graph, NodeId};

/// Exit status for a bad command line.
pub const EXIT_USAGE: i32 = 2;

/// Prints `name: msg` and the usage text to stderr and exits with status 2.
pub fn usage_error(name: &str, msg: &str, usage: &str) -> ! {
    eprintln!("{name}: {msg}\n\n{usage}");
    std::process::exit(EXIT_USAGE);
}

/// A lexopt error in the words of the examples' other messages.
pub fn lexopt_message(e: lexopt::Error) -> String {
    match e {
        lexopt::Error::MissingValue { option: Some(o) } => format!("{o} needs a value"),
        lexopt::Error::MissingValue { option: None } => "a flag needs a value".into(),
        lexopt::Error::UnexpectedOption(o) => format!("unknown flag '{o}'"),
        lexopt::Error::UnexpectedArgument(v) => format!("unexpected argument '{}'", v.to_string_lossy()),
        lexopt::Error::UnexpectedValue { option, value } => {
            format!("{option} takes no value (got '{}')", value.to_string_lossy())
        }
        other => other.to_string(),
    }
}

/// A flag's value as UTF-8 text.
pub fn text(flag: &str, v: OsString) -> Result<String, String> {
    v.into_string()
        .map_err(|v| format!("{flag}: '{}' is not valid UTF-8", v.to_string_lossy()))
}

/// A non-negative integer value (`--epochs 3`).
pub fn uint<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{flag}: '{v}' is not a non-negative integer"))
}

/// A positive integer value (`--steps 200`): zero is refused with a message saying so.
pub fn positive(flag: &str, v: &str) -> Result<usize, String> {
    match uint::<usize>(flag, v) {
        Ok(0) => Err(format!("{flag}: must be at least 1, got 0")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{flag}: '{v}' is not a positive integer")),
    }
}

/// An f32 value. Decimal text that f32 cannot hold is refused with the reason: a non-zero
/// value below the smallest positive f32 underflows to 0, one above f32::MAX overflows to
/// infinity (both would otherwise pass as a different number).
pub fn float(flag: &str, v: &str) -> Result<f32, String> {
    let x: f64 = v.trim().parse().map_err(|_| format!("{flag}: '{v}' is not a number"))?;
    if x.is_nan() {
        return Err(format!("{flag}: '{v}' is not a number"));
    }
    let f = x as f32;
    if x != 0.0 && f == 0.0 {
        return Err(format!(
            "{flag}: {v} underflows f32 (it rounds to 0; the smallest positive f32 is {:.1e})",
            f32::from_bits(1)
        ));
    }
    if x.is_finite() && f.is_infinite() {
        return Err(format!(
            "{flag}: {v} overflows f32 (the largest f32 is {:.2e})",
            f32::MAX
        ));
    }
    Ok(f)
}

/// Opens `auto`, `gpu` or `cpu`, and prints on stdout, in one line, which device runs and why
/// (under `auto`: a hardware GPU, or the CPU backend because there is none, the only adapter
/// is a software one, or `WGPU_BACKEND` / `WGPU_ADAPTER_NAME` selected none). Under `gpu` a
/// missing adapter is an error that names the cause and suggests `--device cpu`.
pub fn open_device(name: &str) -> wgrad::Result<Device> {
    let (device, why) = if name.eq_ignore_ascii_case("auto") {
        Device::auto_with_reason()
    } else {
        let d = Device::from_name(name)?;
        let why = format!("--device {} asked for it", name.to_ascii_lowercase());
        (d, why)
    };
    println!("device: {} — {why}", device.info().name);
    Ok(device)
}

/// What to do when an output file's folder does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingFolder {
    /// Refuse with a message (nothing is created).
    Refuse,
    /// Create it (and say so on stdout).
    Create,
}

/// Checks, before any work starts, that `path` (given with `flag`) can be written as a file:
/// it is not a folder, its folder exists (or is created, per `missing`) and is a folder, and
/// the file can be opened for writing. An existing file is opened without truncating it and
/// left as it is; a new file is created and removed again. `Err` says what is wrong.
pub fn check_output(flag: &str, path: &Path, missing: MissingFolder) -> Result<(), String> {
    let shown = path.display();
    if path.as_os_str().is_empty() {
        return Err(format!("{flag}: the path is empty"));
    }
    if path.is_dir() || path.as_os_str().to_string_lossy().ends_with(std::path::MAIN_SEPARATOR) {
        return Err(format!("{flag}: '{shown}' is a folder; give a file name"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        match missing {
            MissingFolder::Refuse => {
                return Err(format!(
                    "{flag}: the folder '{}' does not exist (create it first)",
                    dir.display()
                ))
            }
            MissingFolder::Create => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("{flag}: cannot create the folder '{}': {e}", dir.display()))?;
                println!("created the folder {} for {flag}", dir.display());
            }
        }
    } else if !dir.is_dir() {
        return Err(format!("{flag}: '{}' is not a folder", dir.display()));
    }
    if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("{flag}: cannot write '{shown}': {e}"))
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| format!("{flag}: cannot write '{shown}': {e}"))?;
        std::fs::remove_file(path).map_err(|e| format!("{flag}: cannot remove the probe file '{shown}': {e}"))
    }
}

/// Refuses two output flags naming the same file.
pub fn check_distinct(outputs: &[(&str, &Path)]) -> Result<(), String> {
    for (i, (fa, pa)) in outputs.iter().enumerate() {
        for (fb, pb) in &outputs[i + 1..] {
            if pa == pb {
                return Err(format!("{fa} and {fb} both write '{}'", pa.display()));
            }
        }
    }
    Ok(())
}

/// On a GPU, runs `prepare` (which compiles the kernels a graph will use) between "compiling
/// kernels for …" and how many were compiled, how long it took and what the pipeline cache held,
/// so a first run's pause is said, not silent. On the CPU backend it just runs it.
pub fn compiling(device: &Device, prepare: impl FnOnce() -> wgrad::Result<()>) -> wgrad::Result<()> {
    let Device::Gpu(g) = device else {
        return prepare();
    };
    use std::io::Write;
    print!("compiling kernels for {}… ", g.info().name);
    std::io::stdout().flush().ok();
    let (before, t) = (g.pipelines_compiled(), std::time::Instant::now());
    prepare()?;
    println!(
        "{} compiled in {:.2} s; {}",
        g.pipelines_compiled() - before,
        t.elapsed().as_secs_f64(),
        g.pipeline_cache()
    );
    Ok(())
}

/// Host memory that can be allocated now, in bytes: `MemAvailable` from /proc/meminfo on
/// Linux; `None` where it cannot be read.
pub fn host_available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The largest single buffer a GPU device accepts, and the limit that sets it (the smaller of
/// `max_buffer_size` and `max_storage_buffer_binding_size`); `None` for the CPU backend.
pub fn buffer_limit(device: &Device) -> Option<(u64, &'static str)> {
    match device {
        Device::Gpu(g) => {
            let l = g.limits();
            let binding = l.max_storage_buffer_binding_size;
            Some(if binding <= l.max_buffer_size {
                (binding, "max_storage_buffer_binding_size")
            } else {
                (l.max_buffer_size, "max_buffer_size")
            })
        }
        _ => None,
    }
}

/// `1.5 GiB`, `12 MiB`, `100 B`.
pub fn bytes(n: u128) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The command line of the small self-checking examples: `--device auto|gpu|cpu` plus the
/// value flags each one names (`--out DIR`, `--dot PATH`), and `-h`/`--help`.
#[derive(Debug)]
pub struct Cli {
    values: Vec<(String, String)>,
}

impl Cli {
    /// Parses the process's arguments; `flags` are the value flags the example takes besides
    /// `--device`. A bad command line exits with status 2 and the usage text.
    pub fn new(name: &str, usage: &str, flags: &[&str]) -> Cli {
        match Self::parse(std::env::args_os().skip(1), flags) {
            Ok(Some(cli)) => cli,
            Ok(None) => {
                println!("{usage}");
                std::process::exit(0);
            }
            Err(msg) => usage_error(name, &msg, usage),
        }
    }

    /// Parses `args`; `Ok(None)` for `--help`.
    pub fn parse(args: impl IntoIterator<Item = OsString>, flags: &[&str]) -> Result<Option<Cli>, String> {
        use lexopt::Arg::{Long, Short};
        let mut p = lexopt::Parser::from_args(args);
        let mut values = Vec::new();
        while let Some(arg) = p.next().map_err(lexopt_message)? {
            match arg {
                Short('h') | Long("help") => return Ok(None),
                Long(f) if f == "device" || flags.contains(&format!("--{f}").as_str()) => {
                    let flag = format!("--{f}");
                    let v = text(&flag, p.value().map_err(lexopt_message)?)?;
                    if flag == "--device" && !["auto", "gpu", "cpu"].contains(&v.to_ascii_lowercase().as_str()) {
                        return Err(format!("--device: '{v}' is not auto, gpu or cpu"));
                    }
                    values.retain(|(k, _)| *k != flag);
                    values.push((flag, v));
                }
                other => return Err(lexopt_message(other.unexpected())),
            }
        }
        Ok(Some(Cli { values }))
    }

    /// The value given with `name`, if any.
    pub fn flag(&self, name: &str) -> Option<String> {
        self.values.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    /// `--device auto|gpu|cpu` (default auto), opened and announced (by [`open_device`]).
    pub fn device(&self) -> wgrad::Result<Device> {
        open_device(&self.flag("--device").unwrap_or_else(|| "auto".into()))
    }

    /// `--out DIR`, default `target/graphs`.
    pub fn out_dir(&self) -> PathBuf {
        PathBuf::from(self.flag("--out").unwrap_or_else(|| "target/graphs".into()))
    }
}

/// Median milliseconds of one `pass` of each graph, over 10 rounds that time a block of
/// `reps / 10` passes (at least one) of every graph in turn, so that the machine's drift during
/// the run falls on all of them alike; after two untimed passes each (pipelines compiled,
/// buffers made). `pass` gets the graph's index. Each graph is synchronised after its block, so
/// a GPU's work is counted, not only its submission.
pub fn median_block_ms(
    gs: &mut [Graph],
    reps: usize,
    mut pass: impl FnMut(usize, &mut Graph) -> wgrad::Result<()>,
) -> wgrad::Result<Vec<f64>> {
    for (i, g) in gs.iter_mut().enumerate() {
        for _ in 0..2 {
            pass(i, g)?;
        }
        g.synchronize()?;
    }
    let per = reps.div_ceil(10);
    let mut ms = vec![Vec::new(); gs.len()];
    for _ in 0..10 {
        for (i, g) in gs.iter_mut().enumerate() {
            let t = std::time::Instant::now();
            for _ in 0..per {
                pass(i, g)?;
            }
            g.synchronize()?;
            ms[i].push(t.elapsed().as_secs_f64() * 1e3 / per as f64);
        }
    }
    Ok(ms
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect())
}

/// Writes the graph as DOT (and SVG when Graphviz is installed) and says where.
pub fn save_graph(g: &Graph, path: &Path, loss: NodeId) -> wgrad::Result<()> {
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

/// An error of a tool's own checks, as the library reports an invalid argument of `op`.
#[allow(dead_code)]
pub fn fail(op: &'static str, reason: impl Into<String>) -> wgrad::Error {
    wgrad::Error::InvalidArgument {
        op,
        reason: reason.into(),
    }
}

/// The training tools' `main`: parses the flags (`--help` prints `usage`; a bad flag exits 2),
/// checks the output paths the parsed flags name (a missing folder is created; an unwritable
/// path exits 2 before any work), runs the job and exits 1 when it fails its own check
/// (`Ok(false)`) or returns an error.
#[allow(dead_code)]
pub fn train_main<A>(
    name: &str,
    usage: &str,
    parse: impl FnOnce() -> Result<Option<A>, String>,
    outputs: impl Fn(&A) -> Vec<(&'static str, Option<PathBuf>)>,
    run: impl FnOnce(&A) -> wgrad::Result<bool>,
) {
    let args = match parse() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{usage}");
            return;
        }
        Err(msg) => usage_error(name, &msg, usage),
    };
    for (flag, path) in outputs(&args) {
        if let Some(p) = path {
            if let Err(msg) = check_output(flag, &p, MissingFolder::Create) {
                usage_error(name, &msg, usage);
            }
        }
    }
    match run(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
