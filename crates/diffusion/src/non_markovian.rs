//! The non-Markovian forward process `q_σ` of seed 003 (DDIM's family of
//! inference processes), SPEC §7. In diffusers' indices (`t ∈ 0..T`, the
//! paper's `t + 1`; `ᾱ_{−1} = 1`), for `0 ≤ σ_t² ≤ 1 − ᾱ_{t−1}`:
//!
//! ```text
//! q_σ(x_{T−1} | x₀)     = N(√ᾱ_{T−1} x₀, (1 − ᾱ_{T−1}) I)
//! q_σ(x_{t−1} | x_t, x₀) = N(√ᾱ_{t−1} x₀ + k_t (x_t − √ᾱ_t x₀), σ_t² I),
//! k_t = √(1 − ᾱ_{t−1} − σ_t²)/√(1 − ᾱ_t)
//! ```
//!
//! whose marginals are `N(√ᾱ_t x₀, (1 − ᾱ_t) I)` whatever σ is. Replacing x₀
//! by `f_θ(x_t) = (x_t − √(1 − ᾱ_t) ε_θ)/√ᾱ_t` gives the generative step,
//! and the step's KL is `γ_t ‖ε − ε_θ‖²` with
//! `γ_t = c_t² (1 − ᾱ_t)/(2 σ_t² ᾱ_t)`,
//! `c_t = √ᾱ_{t−1} − √((1 − ᾱ_{t−1} − σ_t²) ᾱ_t/(1 − ᾱ_t))` (for t ≥ 1 and
//! σ_t > 0; seed 003 drops the factor `1 − ᾱ_t`).

use crate::ddim::ddim_sigma;
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};
use candle::Tensor;

/// `q_σ` on a schedule, with one σ per timestep.
#[derive(Debug, Clone)]
pub struct NonMarkovianProcess {
    schedule: NoiseSchedule,
    sigmas: Vec<f64>,
}

impl NonMarkovianProcess {
    /// `q_σ` with `sigmas[t] = σ_t`.
    ///
    /// # Errors
    /// A σ count other than T, or `σ_t² ∉ [0, 1 − ᾱ_{t−1}]`.
    pub fn new(schedule: NoiseSchedule, sigmas: Vec<f64>) -> Result<Self> {
        if sigmas.len() != schedule.len() {
            return Err(Error::invalid(
                "sigmas",
                sigmas.len(),
                format!("one σ per timestep: {}", schedule.len()),
            ));
        }
        for (t, &s) in sigmas.iter().enumerate() {
            let limit = 1.0 - schedule.alpha_bar_prev(t)?;
            if !(s >= 0.0 && s * s <= limit * (1.0 + 1e-12)) {
                return Err(Error::invalid(
                    "sigma",
                    s,
                    format!("σ_{t}² must be in [0, 1 − ᾱ_{{t−1}}] = [0, {limit}]"),
                ));
            }
        }
        Ok(Self { schedule, sigmas })
    }

    /// DDIM's process at `eta` (η = 1: DDPM's posterior).
    ///
    /// # Errors
    /// `eta ∉ [0, 1]` (beyond 1 the variance would exceed its bound).
    pub fn ddim(schedule: NoiseSchedule, eta: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&eta) {
            return Err(Error::invalid("eta", eta, "q_σ's DDIM family has η in [0, 1]"));
        }
        let sigmas = (0..schedule.len())
            .map(|t| Ok(ddim_sigma(schedule.alpha_bar(t)?, schedule.alpha_bar_prev(t)?, eta)))
            .collect::<Result<_>>()?;
        Self::new(schedule, sigmas)
    }

    /// The schedule.
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// `σ_t`.
    pub fn sigma(&self, t: usize) -> Result<f64> {
        self.schedule.alpha_bar(t)?;
        Ok(self.sigmas[t])
    }

    /// `k_t = √(1 − ᾱ_{t−1} − σ_t²)/√(1 − ᾱ_t)`.
    ///
    /// # Errors
    /// `t ≥ T`.
    pub fn k(&self, t: usize) -> Result<f64> {
        let (a, a_prev, s) = (
            self.schedule.alpha_bar(t)?,
            self.schedule.alpha_bar_prev(t)?,
            self.sigmas[t],
        );
        Ok((1.0 - a_prev - s * s).max(0.0).sqrt() / (1.0 - a).sqrt())
    }

    /// The mean of `q_σ(x_{t−1} | x_t, x₀)`.
    ///
    /// # Errors
    /// `t ≥ T`; Candle errors.
    pub fn posterior_mean(&self, t: usize, x_t: &Tensor, x0: &Tensor) -> Result<Tensor> {
        let (a, a_prev, k) = (
            self.schedule.alpha_bar(t)?,
            self.schedule.alpha_bar_prev(t)?,
            self.k(t)?,
        );
        Ok(((x0 * (a_prev.sqrt() - k * a.sqrt()))? + (x_t * k)?)?)
    }

    /// A draw of `x_{T−1}, …, x_0, x_{−1}` (the last is `x₀` itself) from
    /// `q_σ(· | x₀)`; `noises[0]` draws `x_{T−1}`, `noises[i]` the step from
    /// `x_{T−i}`. Returns them indexed by timestep: `out[t] = x_t` and
    /// `out[T] = x₀`.
    ///
    /// # Errors
    /// Not T noises; Candle errors.
    pub fn sample_trajectory(&self, x0: &Tensor, noises: &[Tensor]) -> Result<Vec<Tensor>> {
        let n = self.schedule.len();
        if noises.len() != n {
            return Err(Error::invalid("noises", noises.len(), format!("one per timestep: {n}")));
        }
        let a = self.schedule.alpha_bar(n - 1)?;
        let mut x = ((x0 * a.sqrt())? + (&noises[0] * (1.0 - a).sqrt())?)?;
        let mut out = vec![x.clone(); n + 1];
        for t in (1..n).rev() {
            x = (self.posterior_mean(t, &x, x0)? + (&noises[n - t] * self.sigmas[t])?)?;
            out[t - 1] = x.clone();
        }
        out[n] = x0.clone();
        Ok(out)
    }

    /// SPEC §7's `c_t`.
    ///
    /// # Errors
    /// `t ≥ T`.
    pub fn c(&self, t: usize) -> Result<f64> {
        let (a, a_prev, s) = (
            self.schedule.alpha_bar(t)?,
            self.schedule.alpha_bar_prev(t)?,
            self.sigmas[t],
        );
        Ok(a_prev.sqrt() - ((1.0 - a_prev - s * s).max(0.0) * a / (1.0 - a)).sqrt())
    }

    /// The weight `γ_t = c_t² (1 − ᾱ_t)/(2 σ_t² ᾱ_t)` of `‖ε − ε_θ‖²` in the
    /// step's KL, for `t ≥ 1` (the paper's t ≥ 2).
    ///
    /// # Errors
    /// `t = 0` (its term is a likelihood, not a KL) or `σ_t = 0` (η = 0 only
    /// as a limit).
    pub fn kl_weight(&self, t: usize) -> Result<f64> {
        let (a, s) = (self.schedule.alpha_bar(t)?, self.sigmas[t]);
        if t == 0 || s == 0.0 {
            return Err(Error::invalid(
                "timestep",
                t,
                "the KL weight is defined for t ≥ 1 with σ_t > 0",
            ));
        }
        let c = self.c(t)?;
        Ok(c * c * (1.0 - a) / (2.0 * s * s * a))
    }

    /// `KL(q_σ(x_{t−1}|x_t, x₀) ‖ p_θ(x_{t−1}|x_t))` per example (rows of
    /// `[n, d]`), where `p_θ` is the same Gaussian with `f_θ` for x₀ — the
    /// KL of two Gaussians with one covariance σ_t² I,
    /// `‖μ_q − μ_θ‖²/(2σ_t²)`.
    ///
    /// # Errors
    /// `t = 0` or `σ_t = 0`; Candle errors.
    pub fn step_kl(&self, t: usize, x_t: &Tensor, x0: &Tensor, eps_theta: &Tensor) -> Result<Tensor> {
        self.kl_weight(t)?;
        let a = self.schedule.alpha_bar(t)?;
        let f_theta = ((x_t - (eps_theta * (1.0 - a).sqrt())?)? / a.sqrt())?;
        let gap = (self.posterior_mean(t, x_t, x0)? - self.posterior_mean(t, x_t, &f_theta)?)?;
        let s = self.sigmas[t];
        Ok((gap.sqr()?.sum(1)? / (2.0 * s * s))?)
    }
}
