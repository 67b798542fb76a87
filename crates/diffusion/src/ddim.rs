//! DDIM (Song et al. 2021): the generative process of the non-Markovian
//! `q_σ` ([`crate::non_markovian`]) on a subsequence of timesteps,
//!
//! ```text
//! x_prev = √ᾱ' x̂₀ + √(1 − ᾱ' − σ²) ε̂ + σ z,
//! σ = η √((1 − ᾱ')/(1 − ᾱ)) √(1 − ᾱ/ᾱ')
//! ```
//!
//! deterministic at η = 0 (then [`invert`] runs it backwards), DDPM's
//! posterior variance at η = 1.

use crate::sampling::Denoiser;
use crate::scheduler::{Scheduler, SchedulerState, StepOutput, required_noise};
use crate::spacing::TimestepSpacing;
use crate::{Error, Result};
use candle::Tensor;

/// DDIM's σ for a step from `ᾱ` to `ᾱ'` at `eta`.
pub fn ddim_sigma(alpha_bar: f64, alpha_bar_prev: f64, eta: f64) -> f64 {
    eta * ((1.0 - alpha_bar_prev) / (1.0 - alpha_bar)).sqrt() * (1.0 - alpha_bar / alpha_bar_prev).sqrt()
}

/// The DDIM sampler.
#[derive(Debug, Clone)]
pub struct Ddim {
    state: SchedulerState,
    eta: f64,
}

impl Ddim {
    /// DDIM with `eta` on `state`.
    ///
    /// # Errors
    /// `eta < 0` or not finite.
    pub fn new(state: SchedulerState, eta: f64) -> Result<Self> {
        if !(eta >= 0.0 && eta.is_finite()) {
            return Err(Error::invalid(
                "eta",
                eta,
                "DDIM's η is ≥ 0 (0: deterministic, 1: DDPM)",
            ));
        }
        Ok(Self { state, eta })
    }
}

impl Scheduler for Ddim {
    fn set_timesteps(&mut self, steps: usize, spacing: TimestepSpacing) -> Result<()> {
        self.state.set_timesteps(steps, spacing)
    }

    fn timesteps(&self) -> &[usize] {
        self.state.timesteps()
    }

    fn needs_noise(&self) -> bool {
        self.eta > 0.0
    }

    fn step(&mut self, output: &Tensor, t: usize, sample: &Tensor, noise: Option<&Tensor>) -> Result<StepOutput> {
        let (a, a_prev) = self.state.alpha_bars(t)?;
        let (x0, eps) = self.state.predict(output, sample, a)?;
        let sigma = ddim_sigma(a, a_prev, self.eta);
        let direction = (1.0 - a_prev - sigma * sigma).max(0.0).sqrt();
        let mut prev_sample = ((&x0 * a_prev.sqrt())? + (&eps * direction)?)?;
        if sigma > 0.0 {
            let z = required_noise(noise, sample, "DDIM with η > 0")?;
            prev_sample = (prev_sample + (z * sigma)?)?;
        }
        Ok(StepOutput {
            prev_sample,
            pred_original_sample: x0,
        })
    }
}

/// DDIM inversion (η = 0 run from the data to the noise): with
/// `timesteps` increasing, each step evaluates the network at the current
/// point and timestep (at the first, where the point is clean, at the first
/// timestep) and moves along the same line as the sampler,
/// `x_next = √ᾱ_next x̂₀ + √(1 − ᾱ_next) ε̂`. Returns `x` at the last
/// timestep; sampling from it with the same timesteps returns `x₀` up to
/// the discretisation error.
///
/// # Errors
/// Timesteps that do not increase; the denoiser's errors.
pub fn invert(denoiser: &impl Denoiser, state: &SchedulerState, x0: &Tensor, timesteps: &[usize]) -> Result<Tensor> {
    if timesteps.is_empty() || timesteps.windows(2).any(|w| w[1] <= w[0]) {
        return Err(Error::invalid(
            "timesteps",
            timesteps,
            "inversion walks strictly increasing timesteps",
        ));
    }
    let mut x = x0.clone();
    let mut current: Option<usize> = None;
    for &next in timesteps {
        let t = current.unwrap_or(next);
        let a = current.map(|c| state.schedule.alpha_bar(c)).transpose()?.unwrap_or(1.0);
        let output = denoiser.predict(&x, t)?;
        let (x0_hat, eps) = if current.is_none() {
            // x is clean: x̂₀ = x, and ε̂ from the network's output at the first timestep.
            let a_t = state.schedule.alpha_bar(t)?;
            (x.clone(), state.predict(&output, &x, a_t)?.1)
        } else {
            state.predict(&output, &x, a)?
        };
        let a_next = state.schedule.alpha_bar(next)?;
        x = ((x0_hat * a_next.sqrt())? + (eps * (1.0 - a_next).sqrt())?)?;
        current = Some(next);
    }
    Ok(x)
}
