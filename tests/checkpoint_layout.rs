//! Checkpoint layouts: `Graph::save_parameters` (the graph's in×out weights) and
//! `nn::Mlp::save` (PyTorch's out×in) record their layout in the file, and each loader reads
//! the other's files exactly, square layers included; unknown layouts and ambiguous files
//! without a recorded layout are refused without touching the weights.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use wgrad::io::{load_checkpoint, save_checkpoint, save_safetensors, Layout, NamedTensor, LAYOUT_KEY};
use wgrad::nn::{Activation, Mlp};
use wgrad::{Device, Error, Graph};

fn temp(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("wgrad-layout-{}-{tag}-{n}.safetensors", std::process::id()))
}

/// Every parameter of `g` by name, as bit patterns (exact comparison, NaN-safe).
fn params(g: &mut Graph) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    g.parameter_tensors()
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.shape, t.data.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

/// An MLP on `dev` with distinct, non-symmetric weights (biases too) from `seed`.
fn model(dev: &Device, sizes: &[usize], seed: u64) -> (Graph, Mlp) {
    let mut g = Graph::new(dev);
    let mlp = Mlp::new(&mut g, sizes, Activation::Tanh, seed).unwrap();
    let mut rng = wgrad::data::Rng::new(seed ^ 0x9e37);
    for l in &mlp.layers {
        let b = random(&mut rng, l.fan_out, -1.0, 1.0);
        g.write(l.bias, &b).unwrap();
    }
    (g, mlp)
}

/// Square layers (4→4→4) and non-square ones (4→3, 5→4).
const SIZES: [&[usize]; 3] = [&[4, 4, 4], &[5, 4, 4, 3], &[6, 6]];

#[test]
fn graph_save_loads_into_mlp_exactly() {
    for dev in devices() {
        for sizes in SIZES {
            let (mut a, _) = model(&dev, sizes, 1);
            let path = temp("graph-to-mlp");
            a.save_parameters(&path).unwrap();
            let ckpt = load_checkpoint(&path).unwrap();
            assert_eq!(ckpt.metadata.get(LAYOUT_KEY).map(String::as_str), Some("graph"));
            let (mut b, mlp_b) = model(&dev, sizes, 2);
            mlp_b.load(&mut b, &path).unwrap();
            std::fs::remove_file(&path).unwrap();
            assert_eq!(params(&mut b), params(&mut a), "{} {sizes:?}", dev.info());
        }
    }
}

#[test]
fn mlp_save_loads_into_graph_exactly() {
    for dev in devices() {
        for sizes in SIZES {
            let (mut a, mlp_a) = model(&dev, sizes, 3);
            let path = temp("mlp-to-graph");
            mlp_a.save(&mut a, &path).unwrap();
            let ckpt = load_checkpoint(&path).unwrap();
            assert_eq!(ckpt.metadata.get(LAYOUT_KEY).map(String::as_str), Some("torch"));
            // The file holds PyTorch's out×in weights.
            let w0 = ckpt.tensors.iter().find(|t| t.name == "layers.0.weight").unwrap();
            assert_eq!(w0.shape, [sizes[1], sizes[0]]);
            let (mut b, _) = model(&dev, sizes, 4);
            b.load_parameters(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            assert_eq!(params(&mut b), params(&mut a), "{} {sizes:?}", dev.info());
        }
    }
}

#[test]
fn each_api_round_trips_its_own_files() {
    for dev in devices() {
        for sizes in SIZES {
            let (mut a, mlp_a) = model(&dev, sizes, 5);
            let (p1, p2) = (temp("graph-graph"), temp("mlp-mlp"));
            a.save_parameters(&p1).unwrap();
            mlp_a.save(&mut a, &p2).unwrap();
            let (mut b, mlp_b) = model(&dev, sizes, 6);
            b.load_parameters(&p1).unwrap();
            assert_eq!(params(&mut b), params(&mut a), "{} graph→graph {sizes:?}", dev.info());
            let (mut c, mlp_c) = model(&dev, sizes, 7);
            mlp_c.load(&mut c, &p2).unwrap();
            assert_eq!(params(&mut c), params(&mut a), "{} mlp→mlp {sizes:?}", dev.info());
            // The in-memory pairs agree with the files.
            let (mut d, mlp_d) = model(&dev, sizes, 8);
            let state = mlp_a.state(&mut a).unwrap();
            mlp_d.load_state(&mut d, &state).unwrap();
            assert_eq!(params(&mut d), params(&mut a));
            let (mut e, mlp_e) = model(&dev, sizes, 9);
            let tensors = a.parameter_tensors().unwrap();
            mlp_e.load_state_as(&mut e, &tensors, Layout::Graph).unwrap();
            assert_eq!(params(&mut e), params(&mut a));
            let _ = (mlp_b, std::fs::remove_file(&p1), std::fs::remove_file(&p2));
        }
    }
}

/// Asserts `r` is a format error naming `path` and containing every needle.
fn refused(r: wgrad::Result<()>, path: &std::path::Path, needles: &[&str]) {
    match r {
        Err(e @ Error::Format { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            for n in needles {
                assert!(msg.contains(n), "missing {n:?} in: {msg}");
            }
        }
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn unknown_or_contradicted_layouts_are_refused_and_change_nothing() {
    for dev in devices() {
        let (mut a, mlp_a) = model(&dev, &[4, 4, 3], 10);
        let (mut b, mlp_b) = model(&dev, &[4, 4, 3], 11);
        let before = params(&mut b);
        // Shapes that fit either loader; only the recorded layout is foreign.
        let tensors = a.parameter_tensors().unwrap();
        let path = temp("foreign");
        let meta = BTreeMap::from([(LAYOUT_KEY.to_string(), "tensorflow".to_string())]);
        save_checkpoint(&path, &tensors, &meta).unwrap();
        refused(
            b.load_parameters(&path),
            &path,
            &["'tensorflow'", LAYOUT_KEY, "nothing was loaded"],
        );
        refused(mlp_b.load(&mut b, &path), &path, &["'tensorflow'", LAYOUT_KEY]);
        refused(b.load_parameters_as(&path, Layout::Graph), &path, &["'tensorflow'"]);
        assert_eq!(params(&mut b), before, "{}: weights unchanged", dev.info());
        // A caller's statement never overrides what the file records.
        a.save_parameters(&path).unwrap();
        refused(
            b.load_parameters_as(&path, Layout::Torch),
            &path,
            &["records layout 'graph'", "'torch' was requested"],
        );
        mlp_a.save(&mut a, &path).unwrap();
        refused(
            mlp_b.load_as(&mut b, &path, Layout::Graph),
            &path,
            &["records layout 'torch'"],
        );
        assert_eq!(params(&mut b), before, "{}: weights unchanged", dev.info());
        std::fs::remove_file(&path).unwrap();
    }
}

/// The tensors of `a` as an older wgrad wrote them: no metadata, in `layout`.
fn legacy_file(a: &mut Graph, layout: Layout, extra_meta: bool) -> PathBuf {
    let tensors: Vec<NamedTensor> = a
        .parameter_tensors()
        .unwrap()
        .into_iter()
        .map(|t| {
            NamedTensor::new(
                t.name,
                layout.file_shape(&t.shape),
                layout.from_graph(&t.shape, &t.data),
            )
        })
        .collect();
    let path = temp("legacy");
    if extra_meta {
        // What PyTorch's safetensors helpers write: metadata, but no wgrad layout.
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        save_checkpoint(&path, &tensors, &meta).unwrap();
    } else {
        save_safetensors(&path, &tensors).unwrap();
    }
    path
}

#[test]
fn files_without_a_layout_load_only_when_unambiguous() {
    for dev in devices() {
        for extra_meta in [false, true] {
            // Square layers only: the layout cannot be told from the shapes.
            let (mut a, _) = model(&dev, &[4, 4, 4], 12);
            let (mut b, mlp_b) = model(&dev, &[4, 4, 4], 13);
            let before = params(&mut b);
            for layout in [Layout::Graph, Layout::Torch] {
                let path = legacy_file(&mut a, layout, extra_meta);
                refused(
                    b.load_parameters(&path),
                    &path,
                    &["records no layout", "square", "layers.0.weight"],
                );
                refused(mlp_b.load(&mut b, &path), &path, &["records no layout", "square"]);
                assert_eq!(params(&mut b), before, "{}: weights unchanged", dev.info());
                // Stated by the caller, it loads exactly, through either API.
                b.load_parameters_as(&path, layout).unwrap();
                assert_eq!(params(&mut b), params(&mut a), "{} {layout}", dev.info());
                let (mut c, mlp_c) = model(&dev, &[4, 4, 4], 14);
                mlp_c.load_as(&mut c, &path, layout).unwrap();
                assert_eq!(params(&mut c), params(&mut a), "{} {layout}", dev.info());
                b.load_parameter_tensors(&before_tensors(&before)).unwrap();
                std::fs::remove_file(&path).unwrap();
            }
            // A non-square layer confirms the loader's own layout, as older versions wrote it;
            // the square layers beside it then load in that layout.
            let (mut a, _) = model(&dev, &[5, 4, 4, 3], 15);
            let (mut b, mlp_b) = model(&dev, &[5, 4, 4, 3], 16);
            let graph_file = legacy_file(&mut a, Layout::Graph, extra_meta);
            b.load_parameters(&graph_file).unwrap();
            assert_eq!(params(&mut b), params(&mut a));
            let torch_file = legacy_file(&mut a, Layout::Torch, extra_meta);
            let (mut c, mlp_c) = model(&dev, &[5, 4, 4, 3], 17);
            mlp_c.load(&mut c, &torch_file).unwrap();
            assert_eq!(params(&mut c), params(&mut a));
            // Shapes that fit only the other layout are refused, naming it.
            let (mut d, mlp_d) = model(&dev, &[5, 4, 4, 3], 18);
            let before = params(&mut d);
            refused(
                d.load_parameters(&torch_file),
                &torch_file,
                &["fits the 'torch' layout"],
            );
            refused(
                mlp_d.load(&mut d, &graph_file),
                &graph_file,
                &["fits the 'graph' layout"],
            );
            assert_eq!(params(&mut d), before);
            let _ = mlp_b;
            std::fs::remove_file(&graph_file).unwrap();
            std::fs::remove_file(&torch_file).unwrap();
        }
    }
}

fn before_tensors(p: &[(String, Vec<usize>, Vec<u32>)]) -> Vec<NamedTensor> {
    p.iter()
        .map(|(n, s, d)| NamedTensor::new(n.clone(), s.clone(), d.iter().map(|&b| f32::from_bits(b)).collect()))
        .collect()
}

#[test]
fn classifier_checkpoints_record_the_torch_layout() {
    use wgrad::train::{Classifier, ClassifierConfig};
    let cfg = ClassifierConfig {
        hidden: vec![6, 6],
        batch: 4,
        ..ClassifierConfig::default()
    };
    for dev in devices() {
        let mut a = Classifier::new(&dev, 6, 6, &cfg).unwrap();
        let path = temp("classifier");
        a.save(&path).unwrap();
        let ckpt = load_checkpoint(&path).unwrap();
        assert_eq!(ckpt.layout(&path.display().to_string()).unwrap(), Some(Layout::Torch));
        let mut b = Classifier::new(&dev, 6, 6, &ClassifierConfig { seed: 1, ..cfg.clone() }).unwrap();
        b.load(&path).unwrap();
        assert_eq!(params(&mut b.graph), params(&mut a.graph));
        // And a graph-layout file of the same (all square) model loads into it exactly.
        let mut c = Classifier::new(&dev, 6, 6, &ClassifierConfig { seed: 2, ..cfg.clone() }).unwrap();
        c.graph.save_parameters(&path).unwrap();
        b.load(&path).unwrap();
        assert_eq!(params(&mut b.graph), params(&mut c.graph));
        std::fs::remove_file(&path).unwrap();
    }
}
