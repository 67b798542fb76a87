//! DPM-Solver++ (2M) (Lu et al. 2022): a second-order multistep solver of
//! the diffusion ODE in data prediction, on `λ = log(α/σ)` with
//! `α = √ᾱ`, `σ = √(1 − ᾱ)`. From `s` to `t`, `h = λ_t − λ_s`, with
//! `D₀ = x̂₀(s)` and the previous prediction `x̂₀(s₋)` at `λ_{s₋}`:
//!
//! ```text
//! first order   x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) D₀                  (= DDIM)
//! second order  r = (λ_s − λ_{s₋})/h,  D₁ = (D₀ − x̂₀(s₋))/r,
//!               x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) (D₀ + D₁/2)          (midpoint)
//! ```
//!
//! The first step is first order (no history), and so is the last, into
//! `σ = 0` where `λ = ∞` (diffusers' `final_sigmas_type = "zero"`): it
//! returns `D₀`.

use crate::Result;
use crate::scheduler::{Scheduler, SchedulerState, StepOutput};
use crate::spacing::TimestepSpacing;
use candle::Tensor;

/// DPM-Solver++ (2M).
#[derive(Debug, Clone)]
pub struct DpmSolverPlusPlus {
    state: SchedulerState,
    /// The last step's `(x̂₀, λ)`.
    previous: Option<(Tensor, f64)>,
}

impl DpmSolverPlusPlus {
    /// The solver on `state`.
    pub fn new(state: SchedulerState) -> Self {
        Self { state, previous: None }
    }
}

/// `λ = log √ᾱ − log √(1 − ᾱ)`.
fn lambda(alpha_bar: f64) -> f64 {
    0.5 * (alpha_bar.ln() - (1.0 - alpha_bar).ln())
}

impl Scheduler for DpmSolverPlusPlus {
    fn set_timesteps(&mut self, steps: usize, spacing: TimestepSpacing) -> Result<()> {
        self.previous = None;
        self.state.set_timesteps(steps, spacing)
    }

    fn timesteps(&self) -> &[usize] {
        self.state.timesteps()
    }

    fn needs_noise(&self) -> bool {
        false
    }

    fn step(&mut self, output: &Tensor, t: usize, sample: &Tensor, _noise: Option<&Tensor>) -> Result<StepOutput> {
        let (i, next) = self.state.position(t)?;
        if i == 0 {
            self.previous = None;
        }
        let (a_s, a_t) = self.state.alpha_bars(t)?;
        let (x0, _) = self.state.predict(output, sample, a_s)?;
        let lambda_s = lambda(a_s);
        let prev_sample = match next {
            None => x0.clone(),
            Some(_) => {
                let (alpha_t, sigma_t, sigma_s) = (a_t.sqrt(), (1.0 - a_t).sqrt(), (1.0 - a_s).sqrt());
                let h = lambda(a_t) - lambda_s;
                let phi = alpha_t * (-h).exp_m1();
                let d = match &self.previous {
                    Some((x0_before, lambda_before)) => {
                        let r = (lambda_s - lambda_before) / h;
                        let d1 = ((&x0 - x0_before)? / r)?;
                        (&x0 + (d1 * 0.5)?)?
                    }
                    None => x0.clone(),
                };
                ((sample * (sigma_t / sigma_s))? - (d * phi)?)?
            }
        };
        self.previous = Some((x0.clone(), lambda_s));
        Ok(StepOutput {
            prev_sample,
            pred_original_sample: x0,
        })
    }
}
