//! [`ScoreConfig`]: plain serde data (a TOML table in a run's
//! `config.toml`, JSON in checkpoints; missing keys keep their defaults,
//! unknown keys are errors), with its validation.

use crate::loss::Projection;
use crate::noise::NoiseLevels;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The training objective ([`crate::loss`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreLoss {
    /// Explicit score matching with the exact trace (`d` tangents per example).
    Esm,
    /// Sliced score matching.
    Ssm,
    /// Sliced score matching, variance-reduced (`½‖s‖²` in closed form).
    SsmVr,
    /// Denoising score matching; multi-level (NCSN) when noise-conditional.
    #[default]
    Dsm,
}

deepgen_core::named_choices!(ScoreLoss, "loss" {
    Esm => "esm",
    Ssm => "ssm",
    SsmVr => "ssm-vr",
    Dsm => "dsm",
});

/// A score model: its network, its loss and its noise levels.
///
/// `Default` is Song & Ermon's (2019) 2-D setting: a noise-conditional
/// network (two softplus layers of 128) trained by multi-level denoising
/// score matching on 10 geometric levels from 20 to 1.
///
/// ```
/// use deepgen_score::{SamplerConfig, SamplerKind, ScoreConfig, ScoreLoss};
/// assert!(ScoreConfig::default().validate().is_ok());
/// let langevin = SamplerConfig { kind: SamplerKind::Langevin, ..SamplerConfig::default() };
/// let sliced = ScoreConfig { loss: ScoreLoss::SsmVr, noise_conditional: false, sampler: langevin, ..ScoreConfig::default() };
/// assert!(sliced.validate().is_ok());
/// // A noise-conditional network is trained by denoising only.
/// assert!(ScoreConfig { loss: ScoreLoss::Esm, ..ScoreConfig::default() }.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreConfig {
    /// Dimension `d` of the data.
    pub data_dim: usize,
    /// Hidden widths of the MLP (softplus units).
    pub hidden: Vec<usize>,
    /// The objective.
    pub loss: ScoreLoss,
    /// Distribution of the sliced losses' projections.
    pub projection: Projection,
    /// Projections per example for the sliced losses.
    pub projections: usize,
    /// Noise levels, largest first: all of them for a noise-conditional
    /// network (and its annealed sampler), exactly one for single-level DSM.
    pub sigmas: NoiseLevels,
    /// Whether the network reads `σ` (`s_θ(x, σ)`, NCSN).
    pub noise_conditional: bool,
    /// The sampler that draws from the model by default (stored with it, as
    /// diffusers stores a pipeline's scheduler config).
    pub sampler: SamplerConfig,
}

/// Which Langevin sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// Plain Langevin dynamics at one level (`σ_L` for a noise-conditional
    /// network).
    Langevin,
    /// Annealed Langevin dynamics over the noise levels (noise-conditional
    /// networks only).
    #[default]
    Annealed,
}

deepgen_core::named_choices!(SamplerKind, "sampler" {
    Langevin => "langevin",
    Annealed => "annealed",
});

/// Where chains start: both are functions of standard-normal noise `e`, so
/// that a draw is a function of its noise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChainStart {
    /// `x₀ = std · e`: `N(0, std² I)` (for annealing, `std = σ₁` matches
    /// `q_σ₁` of centred data).
    Gaussian {
        /// Standard deviation of the start.
        std: f64,
    },
    /// `x₀ = h (2Φ(e) − 1)`: uniform on `[−h, h]ᵈ` (Song & Ermon's
    /// `[−8, 8]²`), through the normal CDF `Φ`.
    Uniform {
        /// Half the side `h` of the box.
        half_width: f64,
    },
}

/// A sampler's settings ([`crate::sampler`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// Plain or annealed Langevin.
    pub kind: SamplerKind,
    /// Steps: per level `T` (annealed) or in all (plain).
    pub steps: usize,
    /// Annealed: `ε`, the step at the last level (`α_i = ε σ_i²/σ_L²`);
    /// plain: the step `α`.
    pub epsilon: f64,
    /// Tweedie's final denoising step `x + σ_L² s(x, σ_L)` (noise-conditional
    /// networks).
    pub denoise: bool,
    /// Where chains start.
    pub start: ChainStart,
}

impl Default for SamplerConfig {
    /// Song & Ermon's annealed sampler for `σ_L = 1`: T = 100, ε = 0.1, from
    /// `U[−8, 8]ᵈ`.
    fn default() -> Self {
        Self {
            kind: SamplerKind::Annealed,
            steps: 100,
            epsilon: 0.1,
            denoise: false,
            start: ChainStart::Uniform { half_width: 8.0 },
        }
    }
}

impl SamplerConfig {
    /// Checks the steps, the step size and the start.
    ///
    /// # Errors
    /// Zero steps; a step size or start scale that is not positive and finite.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::invalid("steps", 0, "at least one step"));
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(Error::invalid("epsilon", self.epsilon, "a positive, finite step size"));
        }
        let scale = match self.start {
            ChainStart::Gaussian { std } => std,
            ChainStart::Uniform { half_width } => half_width,
        };
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::invalid("start", self.start_name(), "a positive, finite scale"));
        }
        Ok(())
    }

    fn start_name(&self) -> String {
        format!("{:?}", self.start)
    }
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self {
            data_dim: 2,
            hidden: vec![128, 128],
            loss: ScoreLoss::Dsm,
            projection: Projection::Rademacher,
            projections: 1,
            sigmas: NoiseLevels::geometric(20.0, 1.0, 10).expect("valid default levels"),
            noise_conditional: true,
            sampler: SamplerConfig::default(),
        }
    }
}

impl ScoreConfig {
    /// Checks what serde cannot.
    ///
    /// # Errors
    /// A zero dimension, width or projection count; a noise-conditional
    /// network with a loss other than DSM; single-level DSM with more than
    /// one level.
    pub fn validate(&self) -> Result<()> {
        if self.data_dim == 0 {
            return Err(Error::invalid("data_dim", 0, "at least 1"));
        }
        if self.hidden.contains(&0) {
            return Err(Error::invalid(
                "hidden",
                &self.hidden,
                "every layer needs at least 1 unit",
            ));
        }
        if self.projections == 0 {
            return Err(Error::invalid("projections", 0, "at least 1 projection per example"));
        }
        if self.noise_conditional && self.loss != ScoreLoss::Dsm {
            return Err(Error::invalid(
                "loss",
                self.loss.name(),
                "a noise-conditional network is trained by denoising score matching (dsm)",
            ));
        }
        if !self.noise_conditional && self.loss == ScoreLoss::Dsm && self.sigmas.len() != 1 {
            return Err(Error::invalid(
                "sigmas",
                self.sigmas.as_slice(),
                "single-level denoising score matching takes exactly one σ (or make the network noise-conditional)",
            ));
        }
        if self.sampler.kind == SamplerKind::Annealed && !self.noise_conditional {
            return Err(Error::invalid(
                "sampler",
                "annealed",
                "annealed Langevin needs a noise-conditional network (use langevin)",
            ));
        }
        if self.sampler.denoise && !self.noise_conditional {
            return Err(Error::invalid(
                "denoise",
                true,
                "the denoising step reads s(x, σ_L) of a noise-conditional network",
            ));
        }
        self.sampler.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_refuses_unknown_keys_and_bad_levels() {
        let c = ScoreConfig {
            loss: ScoreLoss::SsmVr,
            noise_conditional: false,
            sampler: SamplerConfig {
                kind: SamplerKind::Langevin,
                start: ChainStart::Gaussian { std: 2.0 },
                ..SamplerConfig::default()
            },
            ..ScoreConfig::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ScoreConfig>(&json).unwrap(), c);
        assert!(serde_json::from_str::<ScoreConfig>(r#"{"sigma": [1.0]}"#).is_err());
        let err = serde_json::from_str::<ScoreConfig>(r#"{"sigmas": [1.0, 2.0]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("strictly decrease"), "{err}");
        assert_eq!("ssm-vr".parse::<ScoreLoss>().unwrap(), ScoreLoss::SsmVr);
        assert!("sm".parse::<ScoreLoss>().is_err());
    }

    #[test]
    fn single_level_dsm_needs_one_level() {
        let c = ScoreConfig {
            noise_conditional: false,
            sampler: SamplerConfig {
                kind: SamplerKind::Langevin,
                ..SamplerConfig::default()
            },
            ..ScoreConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("exactly one σ"));
        let one = ScoreConfig {
            sigmas: NoiseLevels::new(vec![0.1]).unwrap(),
            ..c
        };
        assert!(one.validate().is_ok());
        assert!(
            ScoreConfig {
                projections: 0,
                ..ScoreConfig::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            ScoreConfig {
                hidden: vec![4, 0],
                ..ScoreConfig::default()
            }
            .validate()
            .is_err()
        );
    }
}
