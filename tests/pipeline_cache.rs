//! Compiled pipelines kept across runs: the cache file is written after compiling, read by the
//! next device on the adapter, and a damaged or foreign file is ignored without harm.

mod common;
use common::gpu;
use wgrad::{Device, GpuOptions, Graph, PipelineCacheDir, PipelineCacheState};

fn open(dir: &std::path::Path) -> Device {
    Device::gpu_with(&GpuOptions {
        pipeline_cache: PipelineCacheDir::At(dir.to_path_buf()),
        ..Default::default()
    })
    .expect("the adapter opened once opens again")
}

fn state(d: &Device) -> PipelineCacheState {
    match d {
        Device::Gpu(g) => g.pipeline_cache().clone(),
        _ => unreachable!("a GPU device"),
    }
}

/// A small layer and its gradient on `d`: compiles a handful of pipelines.
fn work(d: &Device) -> (Vec<f32>, Vec<f32>) {
    let mut g = Graph::new(d);
    let x = g.input("x", &[5, 3]).unwrap();
    let w = g
        .parameter(
            "w",
            &[3, 4],
            &[0.5, -1.0, 2.0, 0.25, 1.5, -0.5, 0.0, 1.0, -2.0, 0.75, 1.25, -1.5],
        )
        .unwrap();
    let h = g.matmul(x, w).unwrap();
    let y = g.sigmoid(h).unwrap();
    let l = g.mean(y).unwrap();
    g.write(x, &(0..15).map(|i| i as f32 * 0.1 - 0.7).collect::<Vec<_>>())
        .unwrap();
    g.backward(l).unwrap();
    (g.value(y).unwrap(), g.grad(w).unwrap())
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wgrad-pc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn only_file(dir: &std::path::Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one cache file, no temporary left: {files:?}");
    files[0].clone()
}

/// Something done to the cache file.
type Damage = Box<dyn Fn(&std::path::Path)>;

#[test]
fn the_cache_is_written_read_and_damage_is_ignored() {
    let Some(_) = gpu() else { return };
    let dir = temp_dir("cycle");
    let first = open(&dir);
    let s = state(&first);
    let PipelineCacheState::Kept {
        loaded: 0,
        ignored: None,
        ..
    } = s
    else {
        // Only Vulkan keeps one (wgpu has none for GL, Metal or DX12): then nothing is written.
        let PipelineCacheState::Unavailable(why) = &s else {
            panic!("{s:?}")
        };
        eprintln!("{}: {s}", first.info());
        assert!(why.contains("keeps none") || why.contains("has none"), "{why}");
        work(&first);
        assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none());
        return;
    };
    let want = work(&first);
    let file = only_file(&dir);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 24, "{} bytes", bytes.len());

    // The next device reads it, and computes the same.
    let second = open(&dir);
    match state(&second) {
        PipelineCacheState::Kept {
            path,
            loaded,
            ignored: None,
        } => {
            assert_eq!(path, file);
            assert_eq!(loaded, bytes.len() - 24);
        }
        s => panic!("{s:?}"),
    }
    assert_eq!(work(&second), want);

    // Damaged files: one byte changed, cut short, empty, a directory in its place. Each is
    // ignored, the work is right, and the file is written anew and valid.
    let damage: [(&str, Damage); 4] = [
        (
            "flipped",
            Box::new(|p| {
                let mut b = std::fs::read(p).unwrap();
                let i = b.len() - 1;
                b[i] ^= 0x40;
                std::fs::write(p, b).unwrap();
            }),
        ),
        (
            "truncated",
            Box::new(|p| {
                let b = std::fs::read(p).unwrap();
                std::fs::write(p, &b[..b.len() / 2]).unwrap();
            }),
        ),
        ("empty", Box::new(|p| std::fs::write(p, b"").unwrap())),
        (
            "directory",
            Box::new(|p| {
                std::fs::remove_file(p).unwrap();
                std::fs::create_dir(p).unwrap();
            }),
        ),
    ];
    for (what, damage) in damage {
        damage(&file);
        let d = open(&dir);
        match state(&d) {
            PipelineCacheState::Kept {
                loaded: 0,
                ignored: Some(why),
                ..
            } => {
                eprintln!("{what}: ignored ({why})")
            }
            s => panic!("{what}: {s:?}"),
        }
        if what == "directory" {
            // It cannot be replaced by a file: the work goes on, and saving says why.
            assert_eq!(work(&d), want, "{what}");
            let Device::Gpu(g) = &d else { unreachable!() };
            assert!(g.save_pipeline_cache().is_err(), "{what}: saving over a directory");
            std::fs::remove_dir(&file).unwrap();
            continue;
        }
        assert_eq!(work(&d), want, "{what}");
        let again = std::fs::read(only_file(&dir)).unwrap();
        assert!(again.len() > 24, "{what}: rewritten, {} bytes", again.len());
    }

    // A well-formed file whose data is not wgpu's (another program's, or another adapter's):
    // handed to wgpu, which refuses it and starts empty.
    let junk: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let mut file_bytes = b"WGRADPC1".to_vec();
    file_bytes.extend_from_slice(&(junk.len() as u64).to_le_bytes());
    let sum = junk.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    file_bytes.extend_from_slice(&sum.to_le_bytes());
    file_bytes.extend_from_slice(&junk);
    std::fs::write(&file, &file_bytes).unwrap();
    let d = open(&dir);
    assert!(matches!(
        state(&d),
        PipelineCacheState::Kept {
            loaded: 4096,
            ignored: None,
            ..
        }
    ));
    assert_eq!(work(&d), want, "foreign data");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn off_writes_nothing() {
    let Some(_) = gpu() else { return };
    let dir = temp_dir("off");
    let d = Device::gpu_with(&GpuOptions {
        pipeline_cache: PipelineCacheDir::Off,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(state(&d), PipelineCacheState::Unavailable("off".into()));
    work(&d);
    assert!(!dir.exists());
}
