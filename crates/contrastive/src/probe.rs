//! The linear probe: logistic regression on frozen, standardised features
//! (the anchor's evaluation, and solo-learn's and lightly's), trained by
//! Adam on seeded shuffled batches, scored by test accuracy.

use crate::{Error, Result};
use candle::{D, DType, Device, Module, Tensor};
use candle_nn::VarMap;
use deepgen_core::nn::linear;
use deepgen_core::rng::{derived_rng, permutation};
use deepgen_core::{Adam, AdamConfig, batch_ranges, seeded_var_builder};
use serde::{Deserialize, Serialize};

/// How the probe is trained: the anchor's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    /// Passes over the training features. Default 20.
    pub epochs: usize,
    /// Adam's learning rate. Default 1e-2.
    pub lr: f64,
    /// Features per step. Default 512.
    pub batch_size: usize,
    /// Seed of the initialisation and the shuffles. Default 0.
    pub seed: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            epochs: 20,
            lr: 1e-2,
            batch_size: 512,
            seed: 0,
        }
    }
}

/// Labelled features `[n, F]` (any float type) with labels `[n]` `u32`.
#[derive(Clone, Copy, Debug)]
pub struct Labelled<'a> {
    /// The features.
    pub features: &'a Tensor,
    /// Their classes, `0..n_classes`.
    pub labels: &'a Tensor,
}

impl Labelled<'_> {
    fn check(&self, what: &'static str) -> Result<(usize, usize)> {
        let (n, f) = self
            .features
            .dims2()
            .map_err(|_| Error::shape(what, self.features.dims(), "[n, F]"))?;
        if n == 0 || self.labels.dims() != [n] {
            return Err(Error::shape(
                what,
                self.labels.dims(),
                format!("[{n}] labels for [n ≥ 1, F] features"),
            ));
        }
        Ok((n, f))
    }
}

/// The number of classes: the largest label plus one.
pub(crate) fn class_count(labels: &[&Tensor]) -> Result<usize> {
    let mut max = 0u32;
    for l in labels {
        max = max.max(l.to_dtype(DType::U32)?.max(0)?.to_scalar::<u32>()?);
    }
    Ok(max as usize + 1)
}

/// `(x − μ)/(σ + 1e-6)` with the training features' mean and unbiased
/// standard deviation (the anchor's standardisation).
fn standardise(train: &Tensor, test: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = train.dim(0)? as f64;
    let mean = train.mean_keepdim(0)?;
    let centred = train.broadcast_sub(&mean)?;
    let sd = (centred.sqr()?.sum_keepdim(0)? / (n - 1.0).max(1.0))?.sqrt()?;
    let scale = (sd + 1e-6)?;
    Ok((
        centred.broadcast_div(&scale)?,
        test.broadcast_sub(&mean)?.broadcast_div(&scale)?,
    ))
}

/// Test accuracy of a linear classifier trained on `train` and scored on
/// `test`, on `device`.
///
/// # Errors
/// Shapes; an invalid configuration; Candle errors.
pub fn linear_probe(train: Labelled<'_>, test: Labelled<'_>, config: &ProbeConfig, device: &Device) -> Result<f64> {
    let (n, f) = train.check("probe training features")?;
    let (_, f_test) = test.check("probe test features")?;
    if f_test != f {
        return Err(Error::shape(
            "probe test features",
            test.features.dims(),
            format!("[n, {f}]"),
        ));
    }
    if config.epochs == 0 || config.batch_size == 0 {
        return Err(Error::invalid(
            "probe",
            config,
            "at least one epoch and a positive batch size",
        ));
    }
    let classes = class_count(&[train.labels, test.labels])?;
    let to = |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(DType::F32)?.to_device(device)?) };
    let (xs, test_xs) = standardise(&to(train.features)?, &to(test.features)?)?;
    let ys = train.labels.to_dtype(DType::U32)?.to_device(device)?;
    let varmap = VarMap::new();
    let classifier = linear(f, classes, seeded_var_builder(&varmap, config.seed, DType::F32, device))?;
    let mut adam = Adam::new(
        &varmap,
        AdamConfig {
            lr: config.lr,
            ..Default::default()
        },
    )?;
    for epoch in 0..config.epochs {
        let order = permutation(&mut derived_rng(config.seed, epoch as u64), n);
        let order: Vec<u32> = order.into_iter().map(|i| i as u32).collect();
        let order = Tensor::from_vec(order, n, device)?;
        for (start, len) in batch_ranges(n, config.batch_size) {
            let rows = order.narrow(0, start, len)?;
            let logits = classifier.forward(&xs.index_select(&rows, 0)?)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &ys.index_select(&rows, 0)?)?;
            adam.backward_step(&loss)?;
        }
    }
    accuracy(&classifier.forward(&test_xs)?, test.labels)
}

/// The fraction of rows of `logits` `[n, K]` whose largest entry is at the label.
fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let predicted = logits.argmax(D::Minus1)?.to_device(&Device::Cpu)?.to_vec1::<u32>()?;
    fraction_correct(&predicted, labels)
}

/// The fraction of `predicted` classes equal to `labels` `[n]`.
///
/// # Errors
/// Labels of another length.
pub(crate) fn fraction_correct(predicted: &[u32], labels: &Tensor) -> Result<f64> {
    let labels = labels.to_dtype(DType::U32)?.to_device(&Device::Cpu)?.to_vec1::<u32>()?;
    if labels.len() != predicted.len() {
        return Err(Error::shape(
            "test labels",
            &[labels.len()],
            format!("[{}]", predicted.len()),
        ));
    }
    let right = predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
    Ok(right as f64 / labels.len().max(1) as f64)
}
