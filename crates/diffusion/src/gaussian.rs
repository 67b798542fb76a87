//! A Gaussian data distribution `x₀ ~ N(μ, s² I)`, for which the best
//! noise predictor is known in closed form: `x_t ~ N(√ᾱ μ, (ᾱ s² + 1 − ᾱ) I)`
//! and
//!
//! ```text
//! E[ε | x_t] = √(1 − ᾱ) (x_t − √ᾱ μ)/(ᾱ s² + 1 − ᾱ).
//! ```
//!
//! It stands in for a trained network when samplers and inversion are
//! tested: their errors are then the samplers' own.

use crate::prediction::PredictionType;
use crate::sampling::Denoiser;
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};
use candle::{DType, Tensor};

/// The exact ε-predictor of Gaussian data on a schedule.
#[derive(Debug, Clone)]
pub struct GaussianDenoiser {
    mean: Vec<f64>,
    std: f64,
    schedule: NoiseSchedule,
    prediction: PredictionType,
}

impl GaussianDenoiser {
    /// Data `N(mean, std² I)` on `schedule`, answering as a network trained
    /// for `prediction` would.
    ///
    /// # Errors
    /// `std ≤ 0`.
    pub fn new(mean: Vec<f64>, std: f64, schedule: NoiseSchedule, prediction: PredictionType) -> Result<Self> {
        if !(std > 0.0 && std.is_finite()) {
            return Err(Error::invalid("std", std, "must be positive"));
        }
        Ok(Self {
            mean,
            std,
            schedule,
            prediction,
        })
    }

    /// The data's mean.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The data's standard deviation.
    pub fn std(&self) -> f64 {
        self.std
    }
}

impl Denoiser for GaussianDenoiser {
    fn predict(&self, x_t: &Tensor, t: usize) -> Result<Tensor> {
        let a = self.schedule.alpha_bar(t)?;
        let d = self.mean.len();
        if x_t.rank() != 2 || x_t.dim(1)? != d {
            return Err(Error::shape("x_t", x_t.dims(), format!("[n, {d}]")));
        }
        let mu = Tensor::from_slice(&self.mean, (1, d), x_t.device())?.to_dtype(x_t.dtype())?;
        let centred = x_t.broadcast_sub(&(mu * a.sqrt())?)?;
        let eps = (centred * ((1.0 - a).sqrt() / (a * self.std * self.std + 1.0 - a)))?;
        let target = match self.prediction {
            PredictionType::Epsilon => eps,
            other => {
                // x̂₀ = (x_t − √(1 − ᾱ) ε̂)/√ᾱ, then the other targets from (x̂₀, ε̂).
                let x0 = ((x_t - (&eps * (1.0 - a).sqrt())?)? / a.sqrt())?;
                let bar = Tensor::new(&[a], x_t.device())?.to_dtype(x_t.dtype())?;
                other.target(&x0, &eps, &bar)?
            }
        };
        Ok(target.to_dtype(x_t.dtype())?)
    }
}

/// The mean and standard deviation of every column of `xs [n, d]`, in f64.
///
/// # Errors
/// Candle errors.
pub fn column_moments(xs: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    let rows = xs.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let n = rows.len() as f64;
    let d = rows.first().map_or(0, Vec::len);
    let means: Vec<f64> = (0..d).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n).collect();
    let stds = (0..d)
        .map(|j| (rows.iter().map(|r| (r[j] - means[j]).powi(2)).sum::<f64>() / (n - 1.0)).sqrt())
        .collect();
    Ok((means, stds))
}
