//! wgrad in the browser: the functions `web/index.html` calls, compiled to wasm32 and bound to
//! JavaScript by wasm-bindgen. Everything that waits for the device awaits (the browser allows
//! no blocking): the device opens through a promise, values and gradients are read with
//! `value_async` / `grad_async`, and a training epoch resolves once its loss and accuracy are
//! read back.
//!
//! - [`open_device`]: WebGPU when the browser has it, else wgrad's CPU backend (compiled to
//!   wasm too), and why.
//! - [`layer_graph`]: H = σ(XW + B), L = mean(H) — every node's value and, after backward, its
//!   gradient computed on the device, beside the hand-derived formula.
//! - [`train_start`] / [`train_epoch`]: the digits MLP (64 → 128 → 10, ReLU, Adam) trained one
//!   epoch per call; the page plots each epoch's loss and accuracy.

use js_sys::{Array, Object, Reflect};
use std::cell::RefCell;
use wasm_bindgen::prelude::*;
use wgrad::data::{self, Dataset, Rng};
use wgrad::train::{Classifier, ClassifierConfig};
use wgrad::{Device, GpuOptions, Graph, NodeId};

thread_local! {
    static DEVICE: RefCell<Option<Device>> = const { RefCell::new(None) };
    static TRAINING: RefCell<Option<Training>> = const { RefCell::new(None) };
}

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

/// A plain JavaScript object from (key, value) pairs.
fn object(fields: &[(&str, JsValue)]) -> Result<Object, JsValue> {
    let o = Object::new();
    for (k, v) in fields {
        Reflect::set(&o, &JsValue::from_str(k), v)?;
    }
    Ok(o)
}

fn floats(v: &[f32]) -> JsValue {
    v.iter().map(|&x| JsValue::from_f64(x as f64)).collect::<Array>().into()
}

fn device() -> Result<Device, JsValue> {
    DEVICE
        .with(|d| d.borrow().clone())
        .ok_or_else(|| js_err("call open_device first"))
}

/// Opens the device: the browser's WebGPU adapter when it has one, else the CPU backend.
/// Resolves to `{ name, backend, webgpu, why }` (`why`: what opened, or why WebGPU did not).
#[wasm_bindgen]
pub async fn open_device() -> Result<JsValue, JsValue> {
    let (dev, why) = match Device::gpu_async(&GpuOptions::default()).await {
        Ok(d) => (d, "WebGPU".to_string()),
        Err(e) => (Device::cpu(), e.to_string()),
    };
    let info = dev.info();
    // Browsers may keep the adapter's name to themselves.
    let name = if info.name.is_empty() {
        "WebGPU adapter (the browser gives no name)".to_string()
    } else {
        info.name.clone()
    };
    let out = object(&[
        ("name", name.into()),
        ("backend", info.backend.clone().into()),
        ("webgpu", dev.is_gpu().into()),
        ("why", why.into()),
    ])?;
    DEVICE.with(|d| *d.borrow_mut() = Some(dev));
    Ok(out.into())
}

/// The layer H = σ(XW + B) with L = mean(H) for X `[4, 3]`, W `[3, 2]`, B `[2]` (row-major):
/// forward and backward on the device. Resolves to `{ nodes: [{ name, shape, value, grad }],
/// formula: { dW, dB, dX }, maxDiff }`, where `formula` holds the hand-derived gradients
/// (dL/dZ = H ⊙ (1 − H) / 8, dL/dW = Xᵀ·dZ, dL/dB = column sums of dZ, dL/dX = dZ·Wᵀ) computed
/// here in f64 from the device's H, and `maxDiff` the largest difference between the two.
#[wasm_bindgen]
pub async fn layer_graph(x: Vec<f32>, w: Vec<f32>, b: Vec<f32>) -> Result<JsValue, JsValue> {
    let (n, d, h) = (4, 3, 2);
    if x.len() != n * d || w.len() != d * h || b.len() != h {
        return Err(js_err(format!(
            "X needs {} values, W {}, B {}; got {}, {}, {}",
            n * d,
            d * h,
            h,
            x.len(),
            w.len(),
            b.len()
        )));
    }
    let mut g = Graph::new(&device()?);
    let (xn, wn, bn, xw, z, hn, l) = (|| -> wgrad::Result<_> {
        let xn = g.input_with_grad("X", &[n, d])?;
        let wn = g.parameter("W", &[d, h], &w)?;
        let bn = g.parameter("B", &[h], &b)?;
        let xw = g.matmul(xn, wn)?;
        let z = g.bias_add(xw, bn)?;
        let hn = g.sigmoid(z)?;
        let l = g.mean(hn)?;
        g.write(xn, &x)?;
        g.backward(l)?;
        Ok((xn, wn, bn, xw, z, hn, l))
    })()
    .map_err(js_err)?;
    let names: [(&str, NodeId); 7] = [
        ("X", xn),
        ("W", wn),
        ("B", bn),
        ("XW", xw),
        ("Z = XW + B", z),
        ("H = σ(Z)", hn),
        ("L = mean(H)", l),
    ];
    let nodes = Array::new();
    let (mut hv, mut grads) = (Vec::new(), Vec::new());
    for (name, id) in names {
        let value = g.value_async(id).map_err(js_err)?.await.map_err(js_err)?;
        let grad = g.grad_async(id).map_err(js_err)?.await.map_err(js_err)?;
        if id == hn {
            hv = value.clone();
        }
        let shape: Array = g
            .shape(id)
            .map_err(js_err)?
            .iter()
            .map(|&s| JsValue::from(s as u32))
            .collect();
        let node = object(&[
            ("name", name.into()),
            ("shape", shape.into()),
            ("value", floats(&value)),
            ("grad", floats(&grad)),
        ])?;
        nodes.push(&node.into());
        grads.push(grad);
    }
    // By hand, in f64, from the device's H.
    let dz: Vec<f64> = hv
        .iter()
        .map(|&y| y as f64 * (1.0 - y as f64) / (n * h) as f64)
        .collect();
    let dw: Vec<f64> = (0..d * h)
        .map(|k| (0..n).map(|r| x[r * d + k / h] as f64 * dz[r * h + k % h]).sum())
        .collect();
    let db: Vec<f64> = (0..h).map(|j| (0..n).map(|r| dz[r * h + j]).sum()).collect();
    let dx: Vec<f64> = (0..n * d)
        .map(|k| (0..h).map(|j| dz[(k / d) * h + j] * w[(k % d) * h + j] as f64).sum())
        .collect();
    let diff = |got: &[f32], want: &[f64]| {
        got.iter()
            .zip(want)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max)
    };
    let max_diff = diff(&grads[1], &dw).max(diff(&grads[2], &db)).max(diff(&grads[0], &dx));
    let f64s = |v: &[f64]| -> JsValue { v.iter().map(|&x| JsValue::from_f64(x)).collect::<Array>().into() };
    let formula = object(&[("dW", f64s(&dw)), ("dB", f64s(&db)), ("dX", f64s(&dx))])?;
    Ok(object(&[
        ("nodes", nodes.into()),
        ("formula", formula.into()),
        ("maxDiff", max_diff.into()),
    ])?
    .into())
}

/// A training run in progress.
struct Training {
    clf: Classifier,
    train: Dataset,
    test: Dataset,
    order: Vec<usize>,
    rng: Rng,
    epoch: usize,
    feats: Vec<f32>,
    labels: Vec<u32>,
}

/// Starts training the digits MLP (64 → 128 → 10, ReLU, Adam with learning rate `lr`,
/// minibatches of `batch`, 80/20 split and initialisation from `seed`) on the open device.
/// Resolves to `{ train, test, parameters }` (sample counts and parameter count).
#[wasm_bindgen]
pub fn train_start(batch: usize, lr: f32, seed: u32) -> Result<JsValue, JsValue> {
    let dev = device()?;
    let (train, test) = data::digits().and_then(|d| d.split(0.2, seed as u64)).map_err(js_err)?;
    let cfg = ClassifierConfig {
        batch,
        seed: seed as u64,
        optimizer: wgrad::Adam::new(lr).into(),
        ..ClassifierConfig::default()
    };
    let clf = Classifier::new(&dev, train.n_features, train.n_classes, &cfg).map_err(js_err)?;
    let params: usize = clf
        .graph
        .parameters()
        .iter()
        .map(|&p| clf.graph.shape(p).map_or(0, |s| s.iter().product::<usize>()))
        .sum();
    let out = object(&[
        ("train", (train.len() as u32).into()),
        ("test", (test.len() as u32).into()),
        ("parameters", (params as u32).into()),
    ])?;
    let order = (0..train.len()).collect();
    TRAINING.with(|t| {
        *t.borrow_mut() = Some(Training {
            clf,
            train,
            test,
            order,
            rng: Rng::new(seed as u64 ^ 0x5eed),
            epoch: 0,
            feats: Vec::new(),
            labels: Vec::new(),
        })
    });
    Ok(out.into())
}

/// One epoch over the shuffled training set (every step one submission, nothing read back),
/// then the last step's loss and the test accuracy, awaited. Resolves to `{ epoch, loss,
/// accuracy, steps, seconds }`.
#[wasm_bindgen]
pub async fn train_epoch() -> Result<JsValue, JsValue> {
    // Taken out while the epoch runs, so no borrow is held across an await.
    let mut t = TRAINING
        .with(|t| t.borrow_mut().take())
        .ok_or_else(|| js_err("call train_start first"))?;
    let result = run_epoch(&mut t).await;
    TRAINING.with(|slot| *slot.borrow_mut() = Some(t));
    let (loss, acc, steps, seconds, epoch) = result.map_err(js_err)?;
    Ok(object(&[
        ("epoch", (epoch as u32).into()),
        ("loss", loss.into()),
        ("accuracy", acc.into()),
        ("steps", (steps as u32).into()),
        ("seconds", seconds.into()),
    ])?
    .into())
}

async fn run_epoch(t: &mut Training) -> wgrad::Result<(f32, f32, usize, f64, usize)> {
    let started = web_time();
    let batch = t.clf.batch;
    t.rng.shuffle(&mut t.order);
    let steps = t.train.len() / batch;
    for s in 0..steps {
        t.train
            .gather(&t.order[s * batch..(s + 1) * batch], &mut t.feats, &mut t.labels)?;
        t.clf.train_batch(&t.feats, &t.labels)?;
    }
    let loss = t.clf.loss_async().await?;
    let acc = t.clf.accuracy_async(&t.test).await?;
    t.epoch += 1;
    Ok((loss, acc, steps, (web_time() - started) / 1e3, t.epoch))
}

/// Milliseconds from the page's clock (`performance.now()`), or 0 where there is none.
fn web_time() -> f64 {
    let perf = Reflect::get(&js_sys::global(), &JsValue::from_str("performance")).ok();
    perf.and_then(|p| {
        let now = Reflect::get(&p, &JsValue::from_str("now")).ok()?;
        let f: js_sys::Function = now.dyn_into().ok()?;
        f.call0(&p).ok()?.as_f64()
    })
    .unwrap_or(0.0)
}
