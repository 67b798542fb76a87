//! DDPM's ancestral sampler (Ho et al. 2020), for any subset of the
//! training timesteps: with `ᾱ = ᾱ_t`, `ᾱ' = ᾱ_prev` and the step's own
//! `β = 1 − ᾱ/ᾱ'`,
//!
//! ```text
//! x_prev = √ᾱ' β/(1 − ᾱ) x̂₀ + √(1 − β) (1 − ᾱ')/(1 − ᾱ) x_t + σ z
//! σ² = (1 − ᾱ')/(1 − ᾱ) β   (fixed small: the posterior variance)   or   β   (fixed large)
//! ```
//!
//! and no noise on the last step, whose result is x̂₀ itself.

use crate::scheduler::{Scheduler, SchedulerState, StepOutput, required_noise};
use crate::spacing::TimestepSpacing;
use crate::{Error, Result};
use candle::Tensor;
use serde::{Deserialize, Serialize};

/// DDPM's choice of the reverse variance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DdpmVariance {
    /// `β̃ = (1 − ᾱ')/(1 − ᾱ) β`, the posterior's (best for deterministic x₀).
    FixedSmall,
    /// `β` (best for x₀ ~ N(0, I)).
    FixedLarge,
}

deepgen_core::named_choices!(DdpmVariance, "variance" {
    FixedSmall => "fixed-small",
    FixedLarge => "fixed-large",
});

/// DDPM's ancestral sampler.
#[derive(Debug, Clone)]
pub struct Ddpm {
    state: SchedulerState,
    variance: DdpmVariance,
}

impl Ddpm {
    /// The sampler on `state` (all T timesteps until `set_timesteps`).
    pub fn new(state: SchedulerState, variance: DdpmVariance) -> Self {
        Self { state, variance }
    }

    /// `(coefficient of x̂₀, coefficient of x_t, σ)` of the step from `t`.
    ///
    /// # Errors
    /// A `t` not among the timesteps.
    pub fn coefficients(&self, t: usize) -> Result<(f64, f64, f64)> {
        let (a, a_prev) = self.state.alpha_bars(t)?;
        let beta = 1.0 - a / a_prev;
        let x0 = a_prev.sqrt() * beta / (1.0 - a);
        let xt = (1.0 - beta).sqrt() * (1.0 - a_prev) / (1.0 - a);
        let last = self.state.position(t)?.1.is_none();
        let variance = match (last, self.variance) {
            (true, _) => 0.0,
            (false, DdpmVariance::FixedSmall) => (1.0 - a_prev) / (1.0 - a) * beta,
            (false, DdpmVariance::FixedLarge) => beta,
        };
        Ok((x0, xt, variance.max(0.0).sqrt()))
    }
}

impl Scheduler for Ddpm {
    fn set_timesteps(&mut self, steps: usize, spacing: TimestepSpacing) -> Result<()> {
        self.state.set_timesteps(steps, spacing)
    }

    fn timesteps(&self) -> &[usize] {
        self.state.timesteps()
    }

    fn needs_noise(&self) -> bool {
        true
    }

    fn step(&mut self, output: &Tensor, t: usize, sample: &Tensor, noise: Option<&Tensor>) -> Result<StepOutput> {
        let (a, _) = self.state.alpha_bars(t)?;
        let (x0, _) = self.state.predict(output, sample, a)?;
        let (c0, ct, sigma) = self.coefficients(t)?;
        let mean = ((&x0 * c0)? + (sample * ct)?)?;
        let prev_sample = if sigma > 0.0 {
            let z = required_noise(noise, sample, "DDPM")?;
            (mean + (z * sigma)?)?
        } else {
            mean
        };
        Ok(StepOutput {
            prev_sample,
            pred_original_sample: x0,
        })
    }
}
