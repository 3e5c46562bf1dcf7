//! In-memory classification data sets, loaders and a small deterministic random generator.
//!
//! - [`Dataset`]: row-major `f32` features with `u32` labels, with minibatch gathering,
//!   seeded train/test splits and feature standardisation.
//! - [`Rng`]: a SplitMix64 generator used for weight initialisation and shuffling.
//! - [`digits()`]: the embedded UCI optical handwritten digits set (1,797 8×8 images), parsed
//!   by [`parse_digits_csv`].
//! - [`read_idx`], [`write_idx`] and [`load_mnist_dir`]: the MNIST IDX file format.

pub mod digits;
pub mod idx;

pub use digits::{digits, parse_digits_csv};
pub use idx::{load_mnist_dir, parse_idx, read_idx, write_idx, IdxArray};

use std::io::Read;

use crate::error::{Error, Result};

/// A labelled classification data set held in memory, features row-major `f32`.
///
/// Row `i` is `features[i * n_features..(i + 1) * n_features]` with label `labels[i]`, and
/// every label is below `n_classes`. [`Dataset::new`] checks these invariants; the fields are
/// public, so every method re-checks what it relies on and returns an error instead of
/// panicking when they do not hold.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// All feature values, one row of `n_features` values per sample.
    pub features: Vec<f32>,
    /// One class label per sample, each below `n_classes`.
    pub labels: Vec<u32>,
    /// Number of features per sample.
    pub n_features: usize,
    /// Number of classes.
    pub n_classes: usize,
}

/// Per-feature mean and standard deviation, from [`Dataset::standardize_stats`].
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureStats {
    /// Mean of each feature.
    pub mean: Vec<f32>,
    /// Population standard deviation of each feature; a constant feature gets 1 so that
    /// standardising only centres it.
    pub std: Vec<f32>,
}

impl Dataset {
    /// A data set from its parts, checking that `features.len() == labels.len() * n_features`
    /// and that every label is below `n_classes`.
    pub fn new(features: Vec<f32>, labels: Vec<u32>, n_features: usize, n_classes: usize) -> Result<Dataset> {
        let ds = Dataset {
            features,
            labels,
            n_features,
            n_classes,
        };
        ds.check("Dataset::new")?;
        Ok(ds)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the data set has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Checks the invariants described on [`Dataset`]: `features.len() == len() * n_features`
    /// and every label below `n_classes`.
    pub fn validate(&self) -> Result<()> {
        self.check("Dataset::validate")
    }

    fn check(&self, op: &'static str) -> Result<()> {
        let expected = self.labels.len().checked_mul(self.n_features);
        if expected != Some(self.features.len()) {
            return Err(Error::arg(
                op,
                format!(
                    "the data set has {} labels of {} features each but {} feature values",
                    self.labels.len(),
                    self.n_features,
                    self.features.len()
                ),
            ));
        }
        if let Some((i, &l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| (l as usize) >= self.n_classes)
        {
            return Err(Error::arg(
                op,
                format!(
                    "sample {i} has label {l} but the data set has {} classes",
                    self.n_classes
                ),
            ));
        }
        Ok(())
    }

    /// Rows `idx` gathered into (features, labels) — used to build minibatches.
    ///
    /// Both vectors are cleared first, so they can be reused from batch to batch; afterwards
    /// `features` holds `idx.len() * n_features` values and `labels` holds `idx.len()` labels.
    /// An index out of range, or fields that break the [`Dataset`] invariants, give an error
    /// (and leave the vectors in an unspecified but valid state).
    pub fn gather(&self, idx: &[usize], features: &mut Vec<f32>, labels: &mut Vec<u32>) -> Result<()> {
        features.clear();
        labels.clear();
        let nf = self.n_features;
        features.reserve(idx.len().saturating_mul(nf));
        labels.reserve(idx.len());
        for &i in idx {
            let row = i
                .checked_mul(nf)
                .and_then(|start| Some(start..start.checked_add(nf)?))
                .and_then(|r| self.features.get(r));
            let (Some(row), Some(&label)) = (row, self.labels.get(i)) else {
                return Err(Error::arg(
                    "Dataset::gather",
                    format!(
                        "row index {i} is out of range for a data set of {} samples ({} feature values)",
                        self.len(),
                        self.features.len()
                    ),
                ));
            };
            features.extend_from_slice(row);
            labels.push(label);
        }
        Ok(())
    }

    /// A new data set holding rows `idx` in that order.
    pub fn subset(&self, idx: &[usize]) -> Result<Dataset> {
        let mut features = Vec::new();
        let mut labels = Vec::new();
        self.gather(idx, &mut features, &mut labels)?;
        Ok(Dataset {
            features,
            labels,
            n_features: self.n_features,
            n_classes: self.n_classes,
        })
    }

    /// Deterministic split into (train, test).
    ///
    /// The sample indices are shuffled with an [`Rng`] seeded with `seed`; the first
    /// `round(test_fraction * len)` shuffled samples form the test set and the rest the
    /// training set (both in shuffled order). The same seed always gives the same split.
    /// `test_fraction` must be in `[0, 1]`.
    pub fn split(&self, test_fraction: f32, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(0.0..=1.0).contains(&test_fraction) {
            return Err(Error::arg(
                "Dataset::split",
                format!("test_fraction must be between 0 and 1, got {test_fraction}"),
            ));
        }
        self.check("Dataset::split")?;
        let n = self.len();
        let n_test = ((test_fraction as f64) * (n as f64)).round() as usize;
        let n_test = n_test.min(n);
        let mut idx: Vec<usize> = (0..n).collect();
        Rng::new(seed).shuffle(&mut idx);
        let test = self.subset(&idx[..n_test])?;
        let train = self.subset(&idx[n_test..])?;
        Ok((train, test))
    }

    /// Per-feature mean and (population) standard deviation computed on this data set.
    ///
    /// A feature whose standard deviation is zero (or not a positive finite number) gets a
    /// standard deviation of 1. Errors if the data set is empty or its fields are inconsistent.
    /// Apply the result with [`apply_standardize`].
    pub fn standardize_stats(&self) -> Result<FeatureStats> {
        self.check("Dataset::standardize_stats")?;
        if self.is_empty() {
            return Err(Error::arg(
                "Dataset::standardize_stats",
                "cannot compute feature statistics of an empty data set",
            ));
        }
        let nf = self.n_features;
        let n = self.len() as f64;
        let mut sum = vec![0f64; nf];
        for row in self.features.chunks_exact(nf.max(1)) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let mut sq = vec![0f64; nf];
        for row in self.features.chunks_exact(nf.max(1)) {
            for ((s, &v), m) in sq.iter_mut().zip(row).zip(&mean) {
                let d = f64::from(v) - m;
                *s += d * d;
            }
        }
        let std = sq
            .iter()
            .map(|s| {
                let sd = (s / n).sqrt() as f32;
                if sd.is_finite() && sd > 0.0 {
                    sd
                } else {
                    1.0
                }
            })
            .collect();
        Ok(FeatureStats {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        })
    }
}

/// Standardises `data` in place with `stats`: each feature becomes `(x - mean) / std`.
///
/// A standard deviation of zero (or not finite) is treated as 1. Errors if `stats` does not
/// have one entry per feature of `data` or if `data`'s fields are inconsistent.
pub fn apply_standardize(data: &mut Dataset, stats: &FeatureStats) -> Result<()> {
    data.check("apply_standardize")?;
    let nf = data.n_features;
    if stats.mean.len() != nf || stats.std.len() != nf {
        return Err(Error::arg(
            "apply_standardize",
            format!(
                "statistics for {} means and {} standard deviations do not fit a data set of {nf} features",
                stats.mean.len(),
                stats.std.len()
            ),
        ));
    }
    let inv: Vec<f32> = stats
        .std
        .iter()
        .map(|&s| if s.is_finite() && s != 0.0 { 1.0 / s } else { 1.0 })
        .collect();
    for row in data.features.chunks_exact_mut(nf.max(1)) {
        for ((v, m), k) in row.iter_mut().zip(&stats.mean).zip(&inv) {
            *v = (*v - m) * k;
        }
    }
    Ok(())
}

/// Reads at most `cap` bytes from `reader` into a new vector, growing it only as data arrives
/// (so a stream that claims to be large but is not never causes a large allocation).
pub(crate) fn read_capped<R: Read>(reader: R, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut limited = reader.take(cap);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match limited.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A small, fast, deterministic pseudo-random generator (SplitMix64).
///
/// The same seed always gives the same sequence on every platform, which makes weight
/// initialisation, shuffling and data splits reproducible. Every seed, including 0, is fine.
/// It is not cryptographically secure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose sequence is determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 uniformly distributed random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform `f32` in `[0, 1)`, with 24 random bits (never exactly 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// A uniform `f64` in `[0, 1)`, with 53 random bits (never exactly 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal sample (mean 0, standard deviation 1) by the Box–Muller transform.
    ///
    /// Computed in `f64` and always finite; each call consumes two 64-bit draws.
    pub fn normal(&mut self) -> f32 {
        // u1 in (0, 1] so that ln(u1) is finite.
        let u1 = ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
        let u2 = self.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        (r * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// A uniform integer in `0..n`, without modulo bias. Returns 0 when `n` is 0 or 1.
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let n = n as u64;
        // Lemire's multiply-and-reject method.
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as usize;
            }
        }
    }

    /// Shuffles `items` in place (Fisher–Yates); every permutation is equally likely.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Dataset {
        let features = (0..n * 3).map(|v| v as f32).collect();
        let labels = (0..n as u32).map(|i| i % 4).collect();
        Dataset::new(features, labels, 3, 4).unwrap()
    }

    #[test]
    fn splitmix_reference_values() {
        // Reference outputs of SplitMix64 seeded with 1234567.
        let mut r = Rng::new(1234567);
        let expected: [u64; 5] = [
            6457827717110365317,
            3203168211198807973,
            9817491932198370423,
            4593380528125082431,
            16408922859458223821,
        ];
        for e in expected {
            assert_eq!(r.next_u64(), e);
        }
    }

    #[test]
    fn rng_is_deterministic_and_seed_dependent() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..10).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..10).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::new(8);
            (0..10).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn uniform_ranges_and_moments() {
        let mut r = Rng::new(42);
        let n = 100_000;
        let mut sum = 0f64;
        for _ in 0..n {
            let x = r.next_f32();
            assert!((0.0..1.0).contains(&x));
            let y = r.next_f64();
            assert!((0.0..1.0).contains(&y));
            sum += f64::from(x);
        }
        let mean = sum / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn normal_moments() {
        let mut r = Rng::new(3);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| f64::from(r.normal())).collect();
        assert!(xs.iter().all(|x| x.is_finite()));
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
        let within_1 = xs.iter().filter(|x| x.abs() < 1.0).count() as f64 / n as f64;
        assert!((within_1 - 0.6827).abs() < 0.01, "{within_1}");
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = Rng::new(11);
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            let k = r.below(7);
            counts[k] += 1;
        }
        for c in counts {
            assert!((9_300..10_700).contains(&c), "{counts:?}");
        }
        for _ in 0..1000 {
            assert!(r.below(usize::MAX) < usize::MAX);
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut r = Rng::new(5);
        let mut v: Vec<usize> = (0..100).collect();
        r.shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        let mut s = v.clone();
        s.sort_unstable();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        let mut empty: [u8; 0] = [];
        r.shuffle(&mut empty);
        let mut one = [1];
        r.shuffle(&mut one);
        assert_eq!(one, [1]);
    }

    #[test]
    fn new_validates() {
        assert!(Dataset::new(vec![0.0; 5], vec![0, 1], 3, 2).is_err());
        assert!(Dataset::new(vec![0.0; 6], vec![0, 2], 3, 2).is_err());
        let d = Dataset::new(vec![0.0; 6], vec![0, 1], 3, 2).unwrap();
        assert_eq!(d.len(), 2);
        assert!(!d.is_empty());
        assert!(Dataset::new(vec![], vec![], 3, 2).unwrap().is_empty());
    }

    #[test]
    fn gather_rows() {
        let d = toy(5);
        let mut f = vec![99.0];
        let mut l = vec![99];
        d.gather(&[4, 0, 4], &mut f, &mut l).unwrap();
        assert_eq!(f, [12.0, 13.0, 14.0, 0.0, 1.0, 2.0, 12.0, 13.0, 14.0]);
        assert_eq!(l, [0, 0, 0]);
        d.gather(&[], &mut f, &mut l).unwrap();
        assert!(f.is_empty() && l.is_empty());
        let err = d.gather(&[1, 5], &mut f, &mut l).unwrap_err();
        assert!(err.to_string().contains("row index 5"), "{err}");
        assert!(d.gather(&[usize::MAX], &mut f, &mut l).is_err());
        // Inconsistent public fields give an error, not a panic.
        let mut broken = toy(5);
        broken.features.truncate(7);
        assert!(broken.validate().is_err());
        assert!(broken.gather(&[3], &mut f, &mut l).is_err());
    }

    #[test]
    fn split_is_deterministic_and_partitions() {
        let d = toy(100);
        let (tr, te) = d.split(0.2, 9).unwrap();
        assert_eq!(te.len(), 20);
        assert_eq!(tr.len(), 80);
        assert_eq!(tr.features.len(), 80 * 3);
        let (tr2, te2) = d.split(0.2, 9).unwrap();
        assert_eq!(tr.features, tr2.features);
        assert_eq!(te.labels, te2.labels);
        let (_, te3) = d.split(0.2, 10).unwrap();
        assert_ne!(te.features, te3.features);
        // Every row appears exactly once across the two halves (first feature identifies it).
        let mut firsts: Vec<u32> = tr
            .features
            .chunks(3)
            .chain(te.features.chunks(3))
            .map(|r| r[0] as u32)
            .collect();
        firsts.sort_unstable();
        assert_eq!(firsts, (0..100).map(|i| i * 3).collect::<Vec<_>>());
        for (row, &l) in tr.features.chunks(3).zip(&tr.labels) {
            assert_eq!((row[0] as u32 / 3) % 4, l);
        }
        assert_eq!(d.split(0.0, 1).unwrap().1.len(), 0);
        assert_eq!(d.split(1.0, 1).unwrap().0.len(), 0);
        for bad in [-0.1, 1.5, f32::NAN, f32::INFINITY] {
            assert!(d.split(bad, 1).is_err());
        }
        assert_eq!(toy(0).split(0.5, 1).unwrap().0.len(), 0);
    }

    #[test]
    fn standardize() {
        let d = Dataset::new(vec![1.0, 5.0, 3.0, 5.0, 5.0, 5.0], vec![0, 1, 0], 2, 2).unwrap();
        let stats = d.standardize_stats().unwrap();
        assert_eq!(stats.mean, [3.0, 5.0]);
        assert!((stats.std[0] - (8.0f32 / 3.0).sqrt()).abs() < 1e-6);
        assert_eq!(stats.std[1], 1.0);
        let mut e = d.clone();
        apply_standardize(&mut e, &stats).unwrap();
        let col0: Vec<f32> = e.features.iter().step_by(2).copied().collect();
        assert!(col0[1].abs() < 1e-6);
        assert!((col0[0] + col0[2]).abs() < 1e-6);
        assert_eq!(e.features[1], 0.0);
        let s2 = e.standardize_stats().unwrap();
        assert!(s2.mean.iter().all(|m| m.abs() < 1e-6));
        assert!((s2.std[0] - 1.0).abs() < 1e-5);
        // Explicit zero std is treated as 1.
        let zero = FeatureStats {
            mean: vec![0.0, 0.0],
            std: vec![0.0, 2.0],
        };
        let mut f = d.clone();
        apply_standardize(&mut f, &zero).unwrap();
        assert_eq!(&f.features[..2], &[1.0, 2.5]);
        // Errors.
        let wrong = FeatureStats {
            mean: vec![0.0],
            std: vec![1.0],
        };
        assert!(apply_standardize(&mut f, &wrong).is_err());
        assert!(toy(0).standardize_stats().is_err());
    }

    #[test]
    fn zero_feature_dataset_is_harmless() {
        let d = Dataset::new(vec![], vec![0, 1, 1], 0, 2).unwrap();
        let mut f = vec![];
        let mut l = vec![];
        d.gather(&[2, 0], &mut f, &mut l).unwrap();
        assert_eq!(l, [1, 0]);
        let stats = d.standardize_stats().unwrap();
        assert!(stats.mean.is_empty());
        let (tr, te) = d.split(0.34, 0).unwrap();
        assert_eq!(tr.len() + te.len(), 3);
    }
}
