//! The command-line tools (the examples): their flag parsing, the checks they make before any
//! work starts, and their exit codes.
//!
//! The parsing and checking functions are compiled in from the examples' own sources and
//! tested directly. The end-to-end cases run the example binaries that `cargo test` (or
//! `cargo build --examples`) built beside this test; they build nothing themselves and print
//! SKIPPED when a binary is missing or older than the sources.

#[path = "../examples/common/mod.rs"]
mod common;

#[path = "../examples/train_mlp/args.rs"]
#[allow(dead_code)]
mod args;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use args::Placement;
use common::MissingFolder;

fn parse(s: &[&str]) -> Result<Option<args::Args>, String> {
    args::parse_args(s.iter().map(OsString::from))
}

/// A fresh empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgrad-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// Parsing.

#[test]
fn train_mlp_flags_keep_their_meaning() {
    let a = parse(&[
        "--hidden",
        "256,128",
        "--lr=0.5",
        "--optimizer",
        "sgd",
        "--momentum",
        "0.5",
        "--batch",
        "32",
        "--epochs",
        "0",
        "--seed",
        "7",
        "--loss-every",
        "0",
        "--device",
        "CPU",
        "--activation",
        "tanh",
        "--json",
        "r.json",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(a.hidden, [256, 128]);
    assert_eq!(a.lr, Some(0.5));
    assert_eq!(a.momentum, Some(0.5));
    assert_eq!((a.batch, a.epochs, a.seed, a.loss_every), (32, 0, 7, 0));
    assert_eq!(a.device, "cpu");
    assert_eq!(a.json.as_deref(), Some(Path::new("r.json")));
    assert!(parse(&["--help"]).unwrap().is_none());
    assert!(parse(&["-h"]).unwrap().is_none());
    let d = parse(&[]).unwrap().unwrap();
    assert_eq!(
        (d.hidden.as_slice(), d.batch, d.epochs, d.device.as_str()),
        (&[128][..], 64, 20, "auto")
    );
}

#[test]
fn train_mlp_bad_flags_say_what_is_wrong() {
    for (bad, why) in [
        (&["--batch", "0"][..], "--batch: must be at least 1, got 0"),
        (&["--hidden", "12,,3"], "--hidden: '' is not a non-negative integer"),
        (&["--hidden", "0"], "layer widths must be at least 1"),
        (&["--lr", "-1"], "--lr: -1 must be a positive finite number"),
        (&["--lr", "abc"], "--lr: 'abc' is not a number"),
        (&["--lr", "nan"], "--lr: 'nan' is not a number"),
        (&["--lr", "inf"], "must be a positive finite number"),
        // Issue 11, part 7: 1e-50 is positive; it underflows f32.
        (&["--lr", "1e-50"], "--lr: 1e-50 underflows f32"),
        (&["--lr", "1e39"], "--lr: 1e39 overflows f32"),
        (&["--device", "tpu"], "--device: 'tpu' is not auto, gpu or cpu"),
        (&["--epochs"], "--epochs needs a value"),
        (&["--epochs", "-3"], "--epochs: '-3' is not a non-negative integer"),
        (&["--bogus", "1"], "unknown flag '--bogus'"),
        (&["-x"], "unknown flag '-x'"),
        (&["stray"], "unexpected argument 'stray'"),
        (&["--momentum", "0.9"], "--momentum applies to --optimizer sgd only"),
        (
            &["--optimizer", "sgd", "--momentum", "1"],
            "--momentum: 1 must be in [0, 1)",
        ),
        (
            &["--activation", "swish"],
            "--activation: 'swish' is not one of sigmoid, relu, tanh,",
        ),
        (&["--optimizer", "rmsprop"], "--optimizer: 'rmsprop' is not sgd or adam"),
    ] {
        let e = parse(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: got '{e}', want '{why}'");
    }
    // The smallest subnormal still parses: it is representable.
    assert_eq!(parse(&["--lr", "1e-45"]).unwrap().unwrap().lr, Some(f32::from_bits(1)));
}

#[test]
fn float_values_name_underflow_and_overflow() {
    assert_eq!(common::float("--x", "0.25"), Ok(0.25));
    assert_eq!(common::float("--x", "0"), Ok(0.0));
    let e = common::float("--lr", "1e-50").unwrap_err();
    assert!(e.contains("underflows f32") && e.contains("1.4e-45"), "{e}");
    let e = common::float("--lr", "-1e-50").unwrap_err();
    assert!(e.contains("underflows f32"), "{e}");
    let e = common::float("--lr", "1e39").unwrap_err();
    assert!(e.contains("overflows f32"), "{e}");
    assert!(common::float("--lr", "1.5x").unwrap_err().contains("not a number"));
}

#[test]
fn the_small_examples_refuse_unknown_flags() {
    let p = |s: &[&str], flags: &[&str]| common::Cli::parse(s.iter().map(OsString::from), flags);
    let cli = p(&["--device", "cpu", "--out", "d"], &["--out"]).unwrap().unwrap();
    assert_eq!(cli.flag("--device").as_deref(), Some("cpu"));
    assert_eq!(cli.out_dir(), PathBuf::from("d"));
    assert!(p(&["--help"], &[]).unwrap().is_none());
    for (bad, why) in [
        (&["--bogus"][..], "unknown flag '--bogus'"),
        (&["--out", "d"], "unknown flag '--out'"),
        (&["--device", "tpu"], "--device: 'tpu' is not auto, gpu or cpu"),
        (&["--device"], "--device needs a value"),
        (&["extra"], "unexpected argument 'extra'"),
    ] {
        let e = p(bad, &[]).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Output paths, checked before training.

#[test]
fn output_paths_are_checked_before_training() {
    let dir = scratch("outputs");
    let with = |flag: &str, path: &Path| {
        let mut a = args::Args::default();
        let p = Some(path.to_path_buf());
        match flag {
            "--save" => a.save = p,
            "--plot" => a.plot = p,
            "--graph" => a.graph = p,
            "--json" => a.json = p,
            _ => unreachable!(),
        }
        args::check_outputs(&a)
    };
    let file = dir.join("existing.txt");
    std::fs::write(&file, "keep").unwrap();
    for flag in ["--save", "--plot", "--graph", "--json"] {
        // A folder is refused.
        let e = with(flag, &dir).unwrap_err();
        assert!(e.contains("is a folder"), "{flag}: {e}");
        // A path under a file is refused.
        let e = with(flag, &file.join("x")).unwrap_err();
        assert!(e.contains("is not a folder"), "{flag}: {e}");
        // A writable new file passes and is not left behind; an existing one is kept as is.
        let new = dir.join(format!("new{flag}"));
        with(flag, &new).unwrap();
        assert!(!new.exists(), "{flag}: the probe file was left behind");
        with(flag, &file).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    }
    // --save refuses a missing folder and creates nothing.
    let missing = dir.join("no/such/folder");
    let e = with("--save", &missing.join("w.safetensors")).unwrap_err();
    assert!(e.contains("does not exist"), "{e}");
    assert!(!dir.join("no").exists(), "--save created a folder");
    // The other outputs create it (and say so).
    with("--plot", &missing.join("loss.svg")).unwrap();
    assert!(missing.is_dir());
    // Two flags naming one file.
    let a = args::Args {
        plot: Some(dir.join("same")),
        json: Some(dir.join("same")),
        ..Default::default()
    };
    assert!(args::check_outputs(&a)
        .unwrap_err()
        .contains("--plot and --json both write"));
    // --load must exist.
    let a = args::Args {
        load: Some(dir.join("absent.safetensors")),
        ..Default::default()
    };
    assert!(args::check_outputs(&a).unwrap_err().contains("--load"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn unwritable_output_paths_are_refused_even_as_root() {
    // /proc takes no new files or folders, whoever asks.
    let e = common::check_output("--plot", Path::new("/proc/wgrad-cli-test.svg"), MissingFolder::Create).unwrap_err();
    assert!(e.contains("cannot write"), "{e}");
    let e = common::check_output(
        "--plot",
        Path::new("/proc/wgrad-cli-test/loss.svg"),
        MissingFolder::Create,
    )
    .unwrap_err();
    assert!(e.contains("cannot create the folder"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Sizes, checked before anything is allocated.

#[test]
fn models_too_large_are_refused_with_their_size() {
    let gpu = Placement::Gpu {
        limit: 128 << 20,
        limit_name: "max_storage_buffer_binding_size",
    };
    let gib16 = Some(16u64 << 30);
    // The default model fits everywhere.
    args::check_model_size(&[64, 128, 10], 64, 2, gpu, gib16).unwrap();
    args::check_model_size(&[64, 128, 10], 64, 2, Placement::Cpu, gib16).unwrap();
    // --hidden 100000000: the first weight matrix alone is 23.8 GiB.
    for placement in [gpu, Placement::Cpu] {
        let e = args::check_model_size(&[64, 100_000_000, 10], 64, 2, placement, gib16).unwrap_err();
        assert!(e.contains("layer 0 (64 → 100000000)") && e.contains("23.8 GiB"), "{e}");
    }
    // --hidden 65536,65536: a 16 GiB weight matrix.
    let e = args::check_model_size(&[64, 65536, 65536, 10], 64, 2, gpu, gib16).unwrap_err();
    assert!(e.contains("65536 × 65536 = 4294967296 weights (16.0 GiB)"), "{e}");
    // A weight matrix above the device's buffer limit.
    let e = args::check_model_size(&[64, 1 << 20, 10], 64, 2, gpu, gib16).unwrap_err();
    assert!(
        e.contains("64 × 1048576 × 4 B = 256.0 MiB") && e.contains("max_storage_buffer_binding_size"),
        "{e}"
    );
    // Whatever the device and host, no graph tensor holds 2^31 elements.
    let huge = Placement::Gpu {
        limit: u64::MAX,
        limit_name: "max_buffer_size",
    };
    for placement in [huge, Placement::Cpu] {
        let e = args::check_model_size(&[64, 65536, 65536, 10], 64, 2, placement, Some(u64::MAX)).unwrap_err();
        assert!(e.contains("4294967296 weights (16.0 GiB)") && e.contains("2^31"), "{e}");
    }
    // Below that bound, the host must still hold the weights while they are initialised.
    let e = args::check_model_size(&[64, 32768, 32768, 10], 64, 2, huge, Some(4 << 30)).unwrap_err();
    assert!(e.contains("host memory") && e.contains("4.0 GiB"), "{e}");
    let e = args::check_model_size(&[64, 32768, 32768, 10], 64, 2, Placement::Cpu, gib16).unwrap_err();
    assert!(e.contains("host memory"), "{e}");
    args::check_model_size(&[64, 32768, 32768, 10], 64, 2, huge, gib16).unwrap();
    // An activation that cannot fit one buffer.
    let e = args::check_model_size(&[64, 1 << 16, 10], 1 << 10, 2, gpu, None).unwrap_err();
    assert!(e.contains("activation"), "{e}");
    // Absurd widths neither overflow nor pass, with or without a known host size.
    for placement in [gpu, huge, Placement::Cpu] {
        assert!(args::check_model_size(&[usize::MAX, usize::MAX, 10], usize::MAX, 2, placement, None).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// The divergence rule.

#[test]
fn the_divergence_rule() {
    // Arguments: loss before training, highest epoch-mean loss, loss after training, classes.
    // Issue 11, part 7: --lr 1e9 reached a loss of 6e8; that is divergence, not success.
    let why = args::divergence(2.64, 6e8, 6e8, 10).expect("6e8 diverged");
    assert!(why.contains("6.000e8") && why.contains("5.2800"), "{why}");
    assert!(args::divergence(2.64, f32::NAN, 0.1, 10).unwrap().contains("NaN"));
    assert!(args::divergence(2.64, f32::INFINITY, 0.1, 10).is_some());
    assert!(args::divergence(2.64, 0.5, f64::NAN, 10).is_some());
    // Blew up, then collapsed to about a uniform guess (--lr 1 with Adam on the digits:
    // epoch means 12.4, then 2.32; 12 % accuracy), also to exactly the class prior.
    let why = args::divergence(2.64, 12.39, 2.32, 10).expect("a collapse diverged");
    assert!(why.contains("did not recover"), "{why}");
    assert!(args::divergence(2.64, 12.0, 2.302, 10).is_some());
    // Training that works, starts slowly, or recovers from a spike is not divergence (a
    // 64-20000-20000-10 model's first epoch averages 6.4 and ends at 90 % accuracy).
    assert_eq!(args::divergence(2.64, 0.6, 0.01, 10), None);
    assert_eq!(args::divergence(2.64, 2.64, 2.5, 10), None);
    assert_eq!(args::divergence(2.61, 6.42, 0.35, 10), None);
    // A loaded, trained model: its loss may rise a little; the bound is ln(classes).
    assert_eq!(args::divergence(0.01, 0.05, 0.03, 10), None);
    assert!(args::divergence(0.01, 0.05, 2.4, 10).is_some());
    // No starting loss: the bound is ln(classes).
    assert!(args::divergence(f64::NAN, 1.0, 3.0, 10).is_some());
    assert_eq!(args::divergence(f64::NAN, 1.0, 0.5, 10), None);
}

#[test]
fn cross_entropy_on_the_host() {
    // Uniform logits: ln(classes) whatever the labels.
    let l = args::cross_entropy(&[0.0; 20], &[0, 3]);
    assert!((l - 10f64.ln()).abs() < 1e-12, "{l}");
    // A confident right answer costs almost nothing; large logits do not overflow.
    let l = args::cross_entropy(&[1000.0, 0.0], &[0]);
    assert!(l.abs() < 1e-12, "{l}");
    let l = args::cross_entropy(&[1000.0, 0.0], &[1]);
    assert!((l - 1000.0).abs() < 1e-9, "{l}");
}

// ---------------------------------------------------------------------------------------------
// End to end: the built example binaries.

/// The example binary `name` built for this profile, or `None` (with a SKIPPED line) when it
/// is missing or older than the sources.
fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("examples").join(name);
    let skip = |why: String| {
        eprintln!("SKIPPED ({why}; `cargo build --release --examples` builds it)");
        None
    };
    let Ok(built) = std::fs::metadata(&bin).and_then(|m| m.modified()) else {
        return skip(format!("{} is not built", bin.display()));
    };
    // Its sources: its own file or folder, the shared module and the library.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ex = root.join("examples");
    let newest = [
        ex.join(format!("{name}.rs")),
        ex.join(name),
        ex.join("common"),
        root.join("src"),
    ]
    .iter()
    .map(|p| newest_mtime(p))
    .max()
    .unwrap_or(SystemTime::UNIX_EPOCH);
    if newest > built {
        return skip(format!("{} is older than the sources", bin.display()));
    }
    Some(bin)
}

/// The newest modification time of `path` (a file, or every file under a folder);
/// UNIX_EPOCH when it does not exist.
fn newest_mtime(path: &Path) -> SystemTime {
    if path.is_file() {
        return std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
    }
    let dir = path;
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        let t = if p.is_dir() {
            newest_mtime(&p)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
}

/// Runs `bin args` with `env` set, in a scratch folder, and returns its output and wall time.
fn run(bin: &Path, args: &[&str], env: &[(&str, &str)], cwd: &Path) -> (Output, Duration) {
    let mut c = Command::new(bin);
    c.args(args).current_dir(cwd);
    c.env_remove("WGPU_BACKEND").env_remove("WGPU_ADAPTER_NAME");
    c.env(
        "XDG_RUNTIME_DIR",
        std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()),
    );
    for (k, v) in env {
        c.env(k, v);
    }
    let t = Instant::now();
    let out = c.output().expect("the example runs");
    (out, t.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn train_mlp_exits_1_when_training_diverges() {
    let Some(bin) = example("train_mlp") else { return };
    let dir = scratch("diverge");
    let (o, _) = run(&bin, &["--device", "cpu", "--lr", "1e9", "--epochs", "3"], &[], &dir);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("training diverged"), "{e}");
    // The default run still succeeds.
    let (o, _) = run(&bin, &["--device", "cpu", "--epochs", "3"], &[], &dir);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // --help states the exit codes, divergence included.
    let (o, _) = run(&bin, &["--help"], &[], &dir);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("EXIT CODES") && help.contains("diverged") && help.contains("ln(classes)"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_mlp_refuses_huge_models_quickly_and_cleanly() {
    let Some(bin) = example("train_mlp") else { return };
    let dir = scratch("huge");
    for device in ["cpu", "auto"] {
        for hidden in ["100000000", "65536,65536"] {
            let (o, t) = run(&bin, &["--device", device, "--hidden", hidden], &[], &dir);
            let e = stderr(&o);
            // Exit code 1, not a signal (the abort this replaces), and no minutes of weight
            // initialisation first.
            assert_eq!(o.status.code(), Some(1), "--device {device} --hidden {hidden}: {e}");
            assert!(e.contains("too large") && e.contains("GiB"), "{e}");
            assert!(t < Duration::from_secs(30), "--hidden {hidden} took {t:?}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_mlp_checks_output_paths_before_training() {
    let Some(bin) = example("train_mlp") else { return };
    let dir = scratch("paths");
    let d = dir.to_str().unwrap();
    for args in [
        vec!["--plot", d],
        vec!["--save", "missing/w.safetensors"],
        vec!["--json", d],
        vec!["--graph", d],
    ] {
        let mut all = vec!["--device", "cpu"];
        all.extend(&args);
        let (o, _) = run(&bin, &all, &[], &dir);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        // Refused before the device opened, so before any training.
        assert!(!String::from_utf8_lossy(&o.stdout).contains("epoch"), "{args:?}");
        assert!(e.contains(args[0]), "{args:?}: {e}");
    }
    assert!(!dir.join("missing").exists(), "--save created its folder");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_mlp_says_why_the_gpu_was_not_used() {
    let Some(bin) = example("train_mlp") else { return };
    let dir = scratch("env");
    let quick = ["--epochs", "0"];
    // --device gpu: an error naming the variable and suggesting --device cpu.
    let (o, _) = run(
        &bin,
        &["--device", "gpu", quick[0], quick[1]],
        &[("WGPU_BACKEND", "bogus")],
        &dir,
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("WGPU_BACKEND=\"bogus\"") && e.contains("--device cpu"),
        "{e}"
    );
    assert!(!e.contains("Backends(") && !e.contains("Device::cpu()"), "{e}");
    // --device auto: the CPU backend, and a note saying why.
    let (o, _) = run(
        &bin,
        &["--device", "auto", quick[0], quick[1]],
        &[("WGPU_BACKEND", "bogus")],
        &dir,
    );
    // The device line (stdout) says which device runs and why.
    let e = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(e.contains("CPU backend") && e.contains("WGPU_BACKEND=\"bogus\""), "{e}");
    // WGPU_ADAPTER_NAME matching nothing (when there are adapters to match).
    let have_adapters = !wgrad::enumerate_adapters(None).is_empty();
    let env = [("WGPU_ADAPTER_NAME", "nomatch-xyz")];
    let (o, _) = run(&bin, &["--device", "gpu", quick[0], quick[1]], &env, &dir);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("--device cpu"), "{e}");
    let (o, _) = run(&bin, &["--device", "auto", quick[0], quick[1]], &env, &dir);
    let auto = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{auto}");
    assert!(auto.contains("CPU backend"), "{auto}");
    if have_adapters {
        assert!(
            e.contains("WGPU_ADAPTER_NAME=\"nomatch-xyz\" matches no adapter"),
            "{e}"
        );
        assert!(auto.contains("WGPU_ADAPTER_NAME=\"nomatch-xyz\""), "{auto}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_step_refuses_bad_flags() {
    let Some(bin) = example("bench_step") else { return };
    let dir = scratch("bench_step");
    for (args, why) in [
        (&["--steps", "abc"][..], "--steps: 'abc' is not a positive integer"),
        (&["--steps", "0"], "--steps: must be at least 1"),
        (&["--device", "bogus"], "--device: 'bogus' is not gpu, cpu or both"),
        (&["--bogus"], "unknown flag '--bogus'"),
        (&["--steps", "abc", "--device", "bogus", "--bogus"], "--steps: 'abc'"),
    ] {
        let (o, _) = run(&bin, args, &[], &dir);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(why) && e.contains("usage: bench_step"), "{args:?}: {e}");
    }
    // --device gpu without a GPU is an error, not a silent success with nothing timed.
    let (o, _) = run(
        &bin,
        &["--device", "gpu", "--steps", "1"],
        &[("WGPU_BACKEND", "bogus")],
        &dir,
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("WGPU_BACKEND") && e.contains("--device cpu"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_matmul_refuses_bad_flags_and_huge_sizes() {
    let Some(bin) = example("bench_matmul") else { return };
    let dir = scratch("bench_matmul");
    for (args, why) in [
        (&["--sizes", "0"][..], "--sizes: '0': every number must be at least 1"),
        (&["--reps", "0"], "--reps: must be at least 1, got 0"),
        (&["--sizes", "8x8"], "neither N nor MxKxN"),
        (&["--kernel", "fast"], "--kernel: 'fast'"),
        (&["--json", "no/such/dir/r.json"], "does not exist"),
    ] {
        let (o, _) = run(&bin, args, &[], &dir);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(why) && e.contains("usage: bench_matmul"), "{args:?}: {e}");
    }
    // Issue 11, part 6: this aborted the process.
    for device in ["cpu", "both"] {
        let (o, t) = run(&bin, &["--sizes", "99999999", "--device", device], &[], &dir);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains("99999999x99999999x99999999"), "{e}");
        assert!(t < Duration::from_secs(30));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_conv_refuses_bad_flags_and_compares_its_two_paths() {
    let Some(bin) = example("bench_conv") else { return };
    let dir = scratch("bench_conv");
    for (args, why) in [
        (&["--reps", "0"][..], "--reps: must be at least 1"),
        (&["--kernel", "fast"], "--kernel: 'fast' is not auto or tiled"),
        (&["--device", "both"], "--device: 'both' is not auto, gpu or cpu"),
        (&["--bogus"], "unknown flag '--bogus'"),
    ] {
        let (o, _) = run(&bin, args, &[], &dir);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(why) && e.contains("usage: bench_conv"), "{args:?}: {e}");
    }
    // One timed pass of each problem on the CPU backend: both paths, and they agree.
    let (o, _) = run(&bin, &["--device", "cpu", "--reps", "1"], &[], &dir);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    for row in [
        "lenet    im2col",
        "lenet    implicit",
        "conv64   im2col",
        "conv64   implicit",
        "bench_conv passed",
    ] {
        assert!(out.contains(row), "{row}: {out}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_self_checking_examples_refuse_unknown_flags() {
    let dir = scratch("small");
    for name in ["chain_rule", "vector_chain", "layer_graph", "mlp_graph", "adapters"] {
        let Some(bin) = example(name) else { continue };
        let (o, _) = run(&bin, &["--bogus"], &[], &dir);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {e}");
        assert!(
            e.contains("unknown flag '--bogus'") && e.contains("usage:"),
            "{name}: {e}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// MNIST-format IDX files of `n` 28×28 images whose class (0–9) is where a bright 6×6 square
/// sits, over faint noise: easy to learn, so a short run must learn it.
fn write_blocks_idx(dir: &Path, prefix: &str, n: usize, seed: u64) {
    let mut rng = wgrad::data::Rng::new(seed);
    let mut images = vec![0u8; n * 28 * 28];
    let mut labels = vec![0u8; n];
    for i in 0..n {
        let c = rng.below(10);
        labels[i] = c as u8;
        let (r0, c0) = ((c / 5) * 12 + 4 + rng.below(3), (c % 5) * 5 + 1 + rng.below(2));
        for p in 0..28 * 28 {
            let (r, col) = (p / 28, p % 28);
            let inside = (r0..r0 + 6).contains(&r) && (c0..c0 + 6).contains(&col);
            images[i * 784 + p] = if inside {
                200 + rng.below(56) as u8
            } else {
                rng.below(40) as u8
            };
        }
    }
    wgrad::data::write_idx(&dir.join(format!("{prefix}-images-idx3-ubyte")), &[n, 28, 28], &images).unwrap();
    wgrad::data::write_idx(&dir.join(format!("{prefix}-labels-idx1-ubyte")), &[n], &labels).unwrap();
}

#[test]
fn train_cnn_trains_on_idx_files_and_checks_its_flags() {
    let Some(bin) = example("train_cnn") else { return };
    let dir = scratch("cnn");
    write_blocks_idx(&dir, "train", 400, 1);
    write_blocks_idx(&dir, "t10k", 150, 2);
    let data = dir.to_str().unwrap();
    let json = dir.join("cnn.json");
    let args = [
        "--device",
        "cpu",
        "--data",
        data,
        "--epochs",
        "8",
        "--channels",
        "8,16",
        "--json",
        json.to_str().unwrap(),
    ];
    let (o, _) = run(&bin, &args, &[], &dir);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("400 training and 150 test images of 28×28"), "{out}");
    let summary = std::fs::read_to_string(&json).unwrap();
    let acc: f64 = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"test_accuracy\": "))
        .and_then(|v| v.trim_end_matches(',').parse().ok())
        .expect("the summary holds the test accuracy");
    assert!(acc >= 0.9, "test accuracy {acc} on squares anyone could tell apart");
    // Bad flags are usage errors (exit 2), bad data a run error (exit 1), before any training.
    for bad in [
        &["--channels", "4,0"][..],
        &["--epochs", "0"],
        &["--lr", "x"],
        &["--bogus", "1"],
    ] {
        let (o, _) = run(&bin, bad, &[], &dir);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
    }
    let (o, _) = run(
        &bin,
        &["--device", "cpu", "--data", dir.join("missing").to_str().unwrap()],
        &[],
        &dir,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
