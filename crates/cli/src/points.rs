//! How samples of a 2-D point set are scored, for every family that models
//! points: the mode metrics of a mixture (modes captured, % high quality,
//! reverse KL of the mode histogram) and the MMD² to the true distribution.

use crate::sample::draw_samples;
use anyhow::{Context, Result};
use deepgen_core::Generative;
use deepgen_core::Metrics;
use deepgen_core::candle::{Device, Tensor};
use deepgen_core::rng::derived_rng;
use deepgen_data::{HIGH_QUALITY_STDS, Synthetic2d, tensor_to_points};

/// The metrics of `samples` `[n, 2]` against `set`: `modes`,
/// `high_quality`, `reverse_kl` (mixtures) and `mmd2`, its kernel
/// estimate drawn with `seed`.
///
/// # Errors
/// Samples that are not finite 2-D points.
pub fn sample_scores(samples: &Tensor, set: &Synthetic2d, seed: u64) -> Result<Metrics> {
    let points = tensor_to_points(samples)?;
    let mut metrics = Metrics::new();
    if let Some(mixture) = set.mixture() {
        let report = mixture.mode_report(&points, HIGH_QUALITY_STDS)?;
        metrics.push("modes", report.modes_captured as f64);
        metrics.push("high_quality", report.high_quality_fraction);
        metrics.push("reverse_kl", report.reverse_kl);
    }
    let mmd = set.mmd2_to_truth(&points, &mut derived_rng(seed, 1))?;
    metrics.push("mmd2", mmd.mmd2);
    Ok(metrics)
}

/// [`sample_scores`] of `n` samples of `model` drawn with `seed`.
///
/// # Errors
/// The model's errors; diverged (non-finite) samples.
pub fn point_scores(
    model: &impl Generative,
    set: &Synthetic2d,
    n: usize,
    seed: u64,
    device: &Device,
) -> Result<Metrics> {
    let samples = draw_samples(model, n, seed, device)?.context("a model of points always samples")?;
    sample_scores(&samples, set, seed)
}
