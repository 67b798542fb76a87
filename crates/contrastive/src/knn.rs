//! Weighted k-nearest-neighbour classification on cosine similarity
//! (Wu et al. 2018; the k-NN monitor of lightly and solo-learn): each test
//! feature votes `Σ exp(s/T)` per class over its `k` most similar training
//! features, `s` the cosine similarity.

use crate::loss::normalize_rows;
use crate::probe::{Labelled, fraction_correct};
use crate::{Error, Result};
use candle::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// The classifier's settings: lightly's and solo-learn's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnnConfig {
    /// Neighbours that vote. Default 200.
    pub k: usize,
    /// Temperature of the votes' weights `exp(s/T)`. Default 0.1.
    pub temperature: f64,
    /// Test features per similarity block. Default 256.
    pub chunk: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            k: 200,
            temperature: 0.1,
            chunk: 256,
        }
    }
}

/// The weighted k-NN classes of `test` `[m, F]` among `train`: `[m]`
/// predictions. Similarities are taken on `device` in blocks, the
/// neighbours chosen on the host.
///
/// # Errors
/// Shapes; `k = 0`; `T ≤ 0`; Candle errors.
pub fn knn_predict(train: Labelled<'_>, test: &Tensor, config: &KnnConfig, device: &Device) -> Result<Vec<u32>> {
    if config.k == 0 || config.chunk == 0 || !(config.temperature > 0.0 && config.temperature.is_finite()) {
        return Err(Error::invalid(
            "k-NN",
            config,
            "k ≥ 1, a positive chunk and temperature",
        ));
    }
    let (n, f) = train.features.dims2()?;
    if test.rank() != 2 || test.dim(1)? != f || train.labels.dims() != [n] {
        return Err(Error::shape("k-NN test features", test.dims(), format!("[m, {f}]")));
    }
    let unit = |t: &Tensor| normalize_rows(&t.to_dtype(DType::F32)?.to_device(device)?);
    let bank = unit(train.features)?.t()?.contiguous()?;
    let labels = train
        .labels
        .to_dtype(DType::U32)?
        .to_device(&Device::Cpu)?
        .to_vec1::<u32>()?;
    let classes = labels.iter().max().map_or(1, |m| *m as usize + 1);
    let k = config.k.min(n);
    let mut predictions = Vec::with_capacity(test.dim(0)?);
    let queries = unit(test)?;
    for (start, len) in deepgen_core::batch_ranges(queries.dim(0)?, config.chunk) {
        let sims = queries.narrow(0, start, len)?.matmul(&bank)?.to_device(&Device::Cpu)?;
        for row in sims.to_vec2::<f32>()? {
            let mut order: Vec<u32> = (0..n as u32).collect();
            // Largest similarity first; ties broken by index, so the vote is deterministic.
            let by_similarity = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
            if k < n {
                order.select_nth_unstable_by(k - 1, by_similarity);
            }
            let mut votes = vec![0f64; classes];
            for &i in &order[..k] {
                votes[labels[i as usize] as usize] += (f64::from(row[i as usize]) / config.temperature).exp();
            }
            let best = (0..classes).fold(0, |best, c| if votes[c] > votes[best] { c } else { best });
            predictions.push(best as u32);
        }
    }
    Ok(predictions)
}

/// The accuracy of [`knn_predict`] on labelled test features.
///
/// # Errors
/// As [`knn_predict`].
pub fn knn_accuracy(train: Labelled<'_>, test: Labelled<'_>, config: &KnnConfig, device: &Device) -> Result<f64> {
    fraction_correct(&knn_predict(train, test.features, config, device)?, test.labels)
}
