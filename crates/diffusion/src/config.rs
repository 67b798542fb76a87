//! [`DiffusionConfig`]: the network, the schedule, what is predicted and
//! how timesteps are weighted, the weight average, and the sampler stored
//! with the model (as diffusers stores a scheduler config beside a UNet).

use crate::prediction::{PredictionType, SampleProcessing};
use crate::schedule::{NoiseSchedule, ScheduleConfig};
use crate::scheduler::SamplerConfig;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Pixels of a 28×28 image, the UNet's data size.
pub const IMAGE_DIM: usize = 28 * 28;

/// The denoising network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// [`crate::TimeMlp`], for 2-D points.
    Mlp,
    /// [`crate::UNet`], for 28×28 images.
    Unet,
}

deepgen_core::named_choices!(Network, "network" {
    Mlp => "mlp",
    Unet => "unet",
});

/// The per-timestep weights `γ_t` of the loss `Σ_t γ_t E‖output − target‖²`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum LossWeighting {
    /// `γ_t = 1` on the prediction's own error (DDPM's "simple" loss).
    #[default]
    Uniform,
    /// Min-SNR-γ (Hang et al. 2023): `min(SNR_t, γ)/SNR_t` on the ε error.
    MinSnr {
        /// The clamp γ (5 in the paper).
        gamma: f64,
    },
    /// The ELBO's weights: `γ_t` of q_σ at η = 1 (DDPM's
    /// `β_t²/(2σ_t² α_t (1 − ᾱ_t))`, `t = 0` given `t = 1`'s), scaled to mean 1.
    Elbo,
}

impl LossWeighting {
    /// The weight of every timestep on the error of `prediction`'s output:
    /// an ε-error weight `w` becomes `w · SNR` on the x₀ error and `w · ᾱ`
    /// on the v error (`‖δε‖² = SNR ‖δx₀‖² = ᾱ ‖δv‖²` at fixed x_t).
    ///
    /// # Errors
    /// A γ ≤ 0; a schedule whose ELBO weights are undefined (T = 1).
    pub fn weights(&self, schedule: &NoiseSchedule, prediction: PredictionType) -> Result<Vec<f64>> {
        let n = schedule.len();
        let snr: Vec<f64> = (0..n).map(|t| schedule.snr(t)).collect::<Result<_>>()?;
        let eps_weights: Vec<f64> = match *self {
            LossWeighting::Uniform => return Ok(vec![1.0; n]),
            LossWeighting::MinSnr { gamma } => {
                if !(gamma > 0.0 && gamma.is_finite()) {
                    return Err(Error::invalid("min-snr gamma", gamma, "must be positive"));
                }
                snr.iter()
                    .map(|&s| if s > 0.0 { s.min(gamma) / s } else { 1.0 })
                    .collect()
            }
            LossWeighting::Elbo => {
                if n < 2 {
                    return Err(Error::invalid("weighting", "elbo", "the ELBO weights need T ≥ 2"));
                }
                let process = crate::non_markovian::NonMarkovianProcess::ddim(schedule.clone(), 1.0)?;
                let mut w: Vec<f64> = (1..n).map(|t| process.kl_weight(t)).collect::<Result<_>>()?;
                w.insert(0, w[0]);
                let mean = w.iter().sum::<f64>() / n as f64;
                w.iter().map(|x| x / mean).collect()
            }
        };
        Ok(eps_weights
            .iter()
            .enumerate()
            .map(|(t, w)| match prediction {
                PredictionType::Epsilon => *w,
                PredictionType::Sample => w * snr[t],
                PredictionType::V => w * snr[t] / (1.0 + snr[t]),
            })
            .collect())
    }
}

/// The configuration of a diffusion model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiffusionConfig {
    /// The network (default: unet).
    pub network: Network,
    /// Size of one data point (default: 784).
    pub data_dim: usize,
    /// The MLP's hidden widths (default: 256, 256, 256).
    pub hidden: Vec<usize>,
    /// The noise schedule (default: linear 1e-4 → 0.02, T = 1000).
    pub schedule: ScheduleConfig,
    /// What the network predicts (default: epsilon).
    pub prediction: PredictionType,
    /// The timesteps' weights (default: uniform).
    pub weighting: LossWeighting,
    /// The weight average's decay, with diffusers' warm-up
    /// `(1 + k)/(10 + k)` below it (default: 0.999).
    pub ema_decay: f64,
    /// Whether samples come from the weight average (default: true).
    pub sample_with_ema: bool,
    /// The default sampler (default: DDIM, 50 linspace steps, η = 0, x̂₀
    /// clipped to ±1 for images).
    pub sampler: SamplerConfig,
}

impl Default for DiffusionConfig {
    /// The PyTorch twin's MNIST model.
    fn default() -> Self {
        Self {
            network: Network::Unet,
            data_dim: IMAGE_DIM,
            hidden: vec![256; 3],
            schedule: ScheduleConfig::default(),
            prediction: PredictionType::Epsilon,
            weighting: LossWeighting::Uniform,
            ema_decay: 0.999,
            sample_with_ema: true,
            sampler: SamplerConfig {
                processing: SampleProcessing::Clip { range: 1.0 },
                ..SamplerConfig::default()
            },
        }
    }
}

impl DiffusionConfig {
    /// The MLP model of `data_dim`-dimensional points (no clipping: points
    /// are not bounded).
    pub fn points(data_dim: usize) -> Self {
        Self {
            network: Network::Mlp,
            data_dim,
            sampler: SamplerConfig::default(),
            ..Self::default()
        }
    }

    /// Whether the model generates 28×28 images.
    pub fn is_images(&self) -> bool {
        self.network == Network::Unet
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad value.
    pub fn validate(&self) -> Result<()> {
        self.schedule.validate()?;
        match self.network {
            Network::Unet if self.data_dim != IMAGE_DIM => {
                return Err(Error::invalid(
                    "data_dim",
                    self.data_dim,
                    format!("the UNet models 28×28 images ({IMAGE_DIM} values)"),
                ));
            }
            Network::Mlp if self.data_dim == 0 || self.hidden.is_empty() || self.hidden.contains(&0) => {
                return Err(Error::invalid(
                    "hidden",
                    &self.hidden,
                    "the MLP needs data_dim ≥ 1 and at least one non-empty hidden layer",
                ));
            }
            _ => {}
        }
        if self.schedule.rescale_betas_zero_snr && self.prediction == PredictionType::Epsilon {
            return Err(Error::invalid(
                "prediction",
                self.prediction.name(),
                "zero terminal SNR leaves no signal at t = T − 1, where ε says nothing about x₀: use v or sample",
            ));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(Error::invalid("ema_decay", self.ema_decay, "must be in [0, 1)"));
        }
        self.sampler.validate()?;
        if self.sampler.steps > self.schedule.num_train_timesteps {
            return Err(Error::invalid(
                "sampler.steps",
                self.sampler.steps,
                format!(
                    "a sampler takes at most T = {} steps",
                    self.schedule.num_train_timesteps
                ),
            ));
        }
        if let LossWeighting::MinSnr { gamma } = self.weighting
            && !(gamma > 0.0 && gamma.is_finite())
        {
            return Err(Error::invalid("min-snr gamma", gamma, "must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weights against their formulas at a few timesteps.
    #[test]
    fn loss_weights_follow_their_formulas() {
        let schedule = NoiseSchedule::new(&ScheduleConfig::default()).unwrap();
        let snr = |t: usize| schedule.snr(t).unwrap();
        let min_snr = LossWeighting::MinSnr { gamma: 5.0 };
        let eps = min_snr.weights(&schedule, PredictionType::Epsilon).unwrap();
        let v = min_snr.weights(&schedule, PredictionType::V).unwrap();
        let x0 = min_snr.weights(&schedule, PredictionType::Sample).unwrap();
        for t in [0, 100, 500, 999] {
            assert!((eps[t] - snr(t).min(5.0) / snr(t)).abs() < 1e-12);
            // diffusers' train scripts: min(SNR, γ)/(SNR + 1) for v.
            assert!((v[t] - snr(t).min(5.0) / (snr(t) + 1.0)).abs() < 1e-12);
            assert!((x0[t] - snr(t).min(5.0)).abs() < 1e-9);
        }
        let elbo = LossWeighting::Elbo.weights(&schedule, PredictionType::Epsilon).unwrap();
        assert!((elbo.iter().sum::<f64>() / 1000.0 - 1.0).abs() < 1e-12);
        let b = schedule.betas();
        let a = schedule.alphas_cumprod();
        // γ_t ∝ β_t/(2 α_t (1 − ᾱ_{t−1})) at η = 1.
        let ratio = |t: usize| b[t] / (2.0 * (1.0 - b[t]) * (1.0 - a[t - 1]));
        assert!((elbo[10] / elbo[500] - ratio(10) / ratio(500)).abs() < 1e-9 * elbo[10] / elbo[500]);
        assert_eq!(elbo[0], elbo[1]);
        assert!(
            LossWeighting::Uniform
                .weights(&schedule, PredictionType::V)
                .unwrap()
                .iter()
                .all(|w| *w == 1.0)
        );
        assert!(
            LossWeighting::MinSnr { gamma: 0.0 }
                .weights(&schedule, PredictionType::V)
                .is_err()
        );
    }
}
