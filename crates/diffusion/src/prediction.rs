//! What the network predicts, and what a sampler makes of it.
//!
//! With `x_t = √ᾱ x₀ + √(1 − ᾱ) ε`:
//!
//! ```text
//! ε-prediction   x̂₀ = (x_t − √(1 − ᾱ) ε̂)/√ᾱ                 (SPEC §7's f_θ)
//! x₀-prediction  ε̂  = (x_t − √ᾱ x̂₀)/√(1 − ᾱ)
//! v-prediction   v = √ᾱ ε − √(1 − ᾱ) x₀:  x̂₀ = √ᾱ x_t − √(1 − ᾱ) v̂,  ε̂ = √ᾱ v̂ + √(1 − ᾱ) x_t
//! ```
//!
//! and the predicted `x̂₀` may be clipped to `[−r, r]`, or dynamically
//! thresholded (Imagen): with `s` the `p`-quantile of `|x̂₀|` per sample,
//! clamped to `[1, max]`, `x̂₀ ← clamp(x̂₀, −s, s)/s`.

use crate::{Error, Result};
use candle::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// The network's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PredictionType {
    /// The noise ε (DDPM).
    Epsilon,
    /// The clean sample x₀.
    Sample,
    /// The velocity `v = √ᾱ ε − √(1 − ᾱ) x₀` (Salimans & Ho).
    V,
}

deepgen_core::named_choices!(PredictionType, "prediction type" {
    Epsilon => "epsilon",
    Sample => "sample",
    V => "v",
});

impl PredictionType {
    /// The training target for `x₀`, `ε` and per-example `ᾱ` (a tensor
    /// broadcastable to them).
    ///
    /// # Errors
    /// Candle errors.
    pub fn target(self, x0: &Tensor, eps: &Tensor, alpha_bar: &Tensor) -> Result<Tensor> {
        Ok(match self {
            PredictionType::Epsilon => eps.clone(),
            PredictionType::Sample => x0.clone(),
            PredictionType::V => {
                let signal = alpha_bar.sqrt()?;
                let noise = (1.0 - alpha_bar)?.sqrt()?;
                (eps.broadcast_mul(&signal)? - x0.broadcast_mul(&noise)?)?
            }
        })
    }

    /// `(x̂₀, ε̂)` from the network's `output` at `x_t` with one `ᾱ`.
    ///
    /// # Errors
    /// ε-prediction at `ᾱ = 0` (zero terminal SNR), where x₀ is undefined;
    /// Candle errors.
    pub fn split(self, output: &Tensor, x_t: &Tensor, alpha_bar: f64) -> Result<(Tensor, Tensor)> {
        let (signal, noise) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
        Ok(match self {
            PredictionType::Epsilon => {
                if signal == 0.0 {
                    return Err(Error::invalid(
                        "prediction_type",
                        self.name(),
                        "ε-prediction cannot recover x₀ at ᾱ = 0 (zero terminal SNR needs v or sample)",
                    ));
                }
                (((x_t - (output * noise)?)? / signal)?, output.clone())
            }
            PredictionType::Sample => {
                let eps = if noise == 0.0 {
                    output.zeros_like()?
                } else {
                    ((x_t - (output * signal)?)? / noise)?
                };
                (output.clone(), eps)
            }
            PredictionType::V => (
                ((x_t * signal)? - (output * noise)?)?,
                ((output * signal)? + (x_t * noise)?)?,
            ),
        })
    }
}

/// What happens to a predicted `x̂₀` before a sampler uses it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum SampleProcessing {
    /// Used as predicted.
    #[default]
    None,
    /// Clamped to `[−range, range]` (diffusers' `clip_sample`).
    Clip {
        /// `clip_sample_range` (1 for data in `[−1, 1]`).
        range: f64,
    },
    /// Imagen's dynamic thresholding (diffusers' `thresholding`).
    Threshold {
        /// The quantile `p` of `|x̂₀|` (`dynamic_thresholding_ratio`, 0.995).
        ratio: f64,
        /// The largest threshold (`sample_max_value`, 1 for pixel data).
        max: f64,
    },
}

impl SampleProcessing {
    /// Checks `range > 0`, `0 < ratio ≤ 1`, `max ≥ 1`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`].
    pub fn validate(&self) -> Result<()> {
        match *self {
            SampleProcessing::None => Ok(()),
            SampleProcessing::Clip { range } if !(range > 0.0 && range.is_finite()) => {
                Err(Error::invalid("clip_sample_range", range, "must be positive"))
            }
            SampleProcessing::Threshold { ratio, .. } if !(ratio > 0.0 && ratio <= 1.0) => Err(Error::invalid(
                "dynamic_thresholding_ratio",
                ratio,
                "a quantile in (0, 1]",
            )),
            SampleProcessing::Threshold { max, .. } if !(max >= 1.0 && max.is_finite()) => {
                Err(Error::invalid("sample_max_value", max, "must be at least 1"))
            }
            _ => Ok(()),
        }
    }

    /// `x̂₀ [n, …]` processed, each sample on its own for thresholding.
    ///
    /// # Errors
    /// Candle errors.
    pub fn apply(&self, x0: &Tensor) -> Result<Tensor> {
        match *self {
            SampleProcessing::None => Ok(x0.clone()),
            SampleProcessing::Clip { range } => Ok(x0.clamp(-range, range)?),
            SampleProcessing::Threshold { ratio, max } => {
                let n = x0.dim(0)?;
                let rows = x0.reshape((n, ()))?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
                let limits: Vec<f64> = rows
                    .iter()
                    .map(|row| quantile_of_abs(row, ratio).clamp(1.0, max))
                    .collect();
                let s = crate::loss::per_example(&Tensor::from_vec(limits, n, x0.device())?, x0)?;
                let clamped = x0.broadcast_minimum(&s)?.broadcast_maximum(&s.neg()?)?;
                Ok(clamped.broadcast_div(&s)?)
            }
        }
    }
}

/// The `p`-quantile of `|row|` with linear interpolation (`torch.quantile`).
fn quantile_of_abs(row: &[f64], p: f64) -> f64 {
    let mut a: Vec<f64> = row.iter().map(|v| v.abs()).collect();
    a.sort_by(f64::total_cmp);
    if a.is_empty() {
        return 0.0;
    }
    let pos = p * (a.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    a[lo] + (a[hi] - a[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    fn t(v: &[f64]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    fn close(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// Every prediction type's target, split back at the same ᾱ, returns
    /// the x₀ and ε that made x_t.
    #[test]
    fn targets_split_back_into_x0_and_eps() {
        let (x0, eps) = (t(&[0.3, -0.7, 1.2]), t(&[1.1, 0.4, -2.0]));
        for a in [0.999f64, 0.5, 0.01] {
            let x_t = ((&x0 * a.sqrt()).unwrap() + (&eps * (1.0 - a).sqrt()).unwrap()).unwrap();
            let bar = t(&[a]);
            for p in PredictionType::ALL {
                let target = p.target(&x0, &eps, &bar).unwrap();
                let (x0_hat, eps_hat) = p.split(&target, &x_t, a).unwrap();
                assert!(close(&x0_hat, &x0) < 1e-12, "{p} at ᾱ = {a}");
                assert!(close(&eps_hat, &eps) < 1e-12, "{p} at ᾱ = {a}");
            }
        }
        assert!(PredictionType::Epsilon.split(&eps, &eps, 0.0).is_err());
        let (x0_hat, _) = PredictionType::V.split(&eps, &x0, 0.0).unwrap();
        assert!(close(&x0_hat, &eps.neg().unwrap()) < 1e-15, "at ᾱ = 0, x₀ = −v");
    }

    /// Thresholding against a hand computation: the 0.5-quantile of
    /// |[0.5, −3, 2, 1]| is 1.5, so values are clamped to ±1.5 and divided by it.
    #[test]
    fn dynamic_thresholding_by_hand() {
        let x = Tensor::new(&[[0.5f64, -3.0, 2.0, 1.0], [0.1, 0.2, -0.3, 0.4]], &Device::Cpu).unwrap();
        let out = SampleProcessing::Threshold { ratio: 0.5, max: 10.0 }.apply(&x).unwrap();
        let want = Tensor::new(
            &[[0.5 / 1.5, -1.0, 1.0, 1.0 / 1.5], [0.1, 0.2, -0.3, 0.4]],
            &Device::Cpu,
        )
        .unwrap();
        assert!(close(&out, &want) < 1e-12, "{out}");
        let clipped = SampleProcessing::Clip { range: 1.0 }.apply(&x).unwrap();
        assert_eq!(clipped.max_all().unwrap().to_scalar::<f64>().unwrap(), 1.0);
        assert!(SampleProcessing::Threshold { ratio: 1.5, max: 1.0 }.validate().is_err());
        assert!(SampleProcessing::Clip { range: 0.0 }.validate().is_err());
    }
}
