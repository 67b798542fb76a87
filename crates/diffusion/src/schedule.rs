//! Noise schedules: `β_t` for the `T` training timesteps, and
//! `ᾱ_t = Π_{s ≤ t} (1 − β_s)`, all in f64 (the cosine schedule's last
//! `ᾱ` is ~1e-9 of its first, and a float32 product loses it: diffusers
//! issue 14213).
//!
//! Timesteps are diffusers' indices `t ∈ 0..T`; the papers' `t` is `t + 1`,
//! and their `ᾱ_0 = 1` is [`NoiseSchedule::alpha_bar_prev`] of `t = 0`.
//!
//! ```text
//! linear          β_t = β₀ + (β₁ − β₀) t/(T − 1)                       (DDPM: 1e-4 → 0.02)
//! scaled-linear   β_t = (√β₀ + (√β₁ − √β₀) t/(T − 1))²                  (Stable Diffusion)
//! cosine          β_t = min(1 − f((t+1)/T)/f(t/T), 0.999),
//!                 f(u) = cos²((u + 0.008)/1.008 · π/2)                 (Nichol & Dhariwal)
//! zero-terminal   √ᾱ'_t = (√ᾱ_t − √ᾱ_{T−1}) √ᾱ_0/(√ᾱ_0 − √ᾱ_{T−1})  (Lin et al. 2024: ᾱ'_{T−1} = 0)
//! ```

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::FRAC_PI_2;

/// Largest β of the cosine schedule (its `f` reaches 0 at `u = 1`).
pub const MAX_COSINE_BETA: f64 = 0.999;
/// The cosine schedule's offset `s`, which keeps `β_0` from being too small.
const COSINE_OFFSET: f64 = 0.008;

/// How the β's grow with t.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BetaSchedule {
    /// β linear in t from `beta_start` to `beta_end` (DDPM).
    Linear,
    /// √β linear in t (Stable Diffusion's `scaled_linear`).
    ScaledLinear,
    /// `ᾱ` follows a squared cosine (diffusers' `squaredcos_cap_v2`).
    Cosine,
}

deepgen_core::named_choices!(BetaSchedule, "beta schedule" {
    Linear => "linear",
    ScaledLinear => "scaled-linear",
    Cosine => "cosine",
});

/// A schedule's configuration, diffusers' scheduler fields of the same names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Training timesteps `T` (default: 1000).
    pub num_train_timesteps: usize,
    /// The shape of β (default: linear).
    pub beta_schedule: BetaSchedule,
    /// First β of the linear schedules (default: 1e-4).
    pub beta_start: f64,
    /// Last β of the linear schedules (default: 0.02).
    pub beta_end: f64,
    /// Rescale to zero terminal SNR, `ᾱ_{T−1} = 0` [false] (needs v- or
    /// x₀-prediction: ε says nothing about x₀ at pure noise).
    pub rescale_betas_zero_snr: bool,
}

impl Default for ScheduleConfig {
    /// DDPM's: linear 1e-4 → 0.02 over 1000 steps.
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_schedule: BetaSchedule::Linear,
            beta_start: 1e-4,
            beta_end: 0.02,
            rescale_betas_zero_snr: false,
        }
    }
}

impl ScheduleConfig {
    /// Checks `T ≥ 1` and `0 < β_start ≤ β_end < 1` (the linear schedules).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the value.
    pub fn validate(&self) -> Result<()> {
        if self.num_train_timesteps == 0 {
            return Err(Error::invalid(
                "num_train_timesteps",
                0,
                "a diffusion needs at least one timestep (DDPM: 1000)",
            ));
        }
        if self.beta_schedule != BetaSchedule::Cosine {
            for (name, b) in [("beta_start", self.beta_start), ("beta_end", self.beta_end)] {
                if !(b > 0.0 && b < 1.0) {
                    return Err(Error::invalid(name, b, "a β is a variance fraction in (0, 1)"));
                }
            }
            if self.beta_start > self.beta_end {
                return Err(Error::invalid(
                    "beta_start",
                    self.beta_start,
                    format!("must not exceed beta_end = {}", self.beta_end),
                ));
            }
        }
        Ok(())
    }
}

/// The β's and ᾱ's of one schedule, in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    /// The schedule of `config`.
    ///
    /// # Errors
    /// An invalid configuration.
    pub fn new(config: &ScheduleConfig) -> Result<Self> {
        config.validate()?;
        let n = config.num_train_timesteps;
        let fraction = |t: usize| if n == 1 { 0.0 } else { t as f64 / (n - 1) as f64 };
        let betas: Vec<f64> = match config.beta_schedule {
            BetaSchedule::Linear => (0..n)
                .map(|t| config.beta_start + (config.beta_end - config.beta_start) * fraction(t))
                .collect(),
            BetaSchedule::ScaledLinear => {
                let (a, b) = (config.beta_start.sqrt(), config.beta_end.sqrt());
                (0..n).map(|t| (a + (b - a) * fraction(t)).powi(2)).collect()
            }
            BetaSchedule::Cosine => {
                let f = |u: f64| ((u + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * FRAC_PI_2).cos().powi(2);
                (0..n)
                    .map(|t| (1.0 - f((t + 1) as f64 / n as f64) / f(t as f64 / n as f64)).min(MAX_COSINE_BETA))
                    .collect()
            }
        };
        let schedule = Self::from_betas(betas)?;
        Ok(if config.rescale_betas_zero_snr {
            schedule.rescaled_to_zero_terminal_snr()
        } else {
            schedule
        })
    }

    /// A schedule from its β's, each in (0, 1).
    ///
    /// # Errors
    /// No β, or a β outside (0, 1).
    pub fn from_betas(betas: Vec<f64>) -> Result<Self> {
        if betas.is_empty() {
            return Err(Error::invalid("betas", "[]", "a diffusion needs at least one timestep"));
        }
        if let Some((t, b)) = betas.iter().enumerate().find(|(_, b)| !(**b > 0.0 && **b < 1.0)) {
            return Err(Error::invalid("beta", b, format!("β_{t} must be in (0, 1)")));
        }
        let alphas_cumprod = betas
            .iter()
            .scan(1.0, |product, b| {
                *product *= 1.0 - b;
                Some(*product)
            })
            .collect();
        Ok(Self { betas, alphas_cumprod })
    }

    /// The same schedule shifted and scaled so that `√ᾱ` keeps its first
    /// value and reaches 0 at the last step (Lin et al., Algorithm 1); the
    /// last β becomes 1.
    pub fn rescaled_to_zero_terminal_snr(&self) -> Self {
        let root: Vec<f64> = self.alphas_cumprod.iter().map(|a| a.sqrt()).collect();
        let (first, last) = (root[0], root[root.len() - 1]);
        let alphas_cumprod: Vec<f64> = root
            .iter()
            .map(|r| ((r - last) * first / (first - last)).powi(2))
            .collect();
        let betas = (0..alphas_cumprod.len())
            .map(|t| match t {
                0 => 1.0 - alphas_cumprod[0],
                _ => 1.0 - alphas_cumprod[t] / alphas_cumprod[t - 1],
            })
            .collect();
        Self { betas, alphas_cumprod }
    }

    /// `T`.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    /// Never: a schedule has at least one step.
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// `β_t` for every t.
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// `ᾱ_t` for every t.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// `ᾱ_t`.
    ///
    /// # Errors
    /// `t ≥ T`.
    pub fn alpha_bar(&self, t: usize) -> Result<f64> {
        self.alphas_cumprod
            .get(t)
            .copied()
            .ok_or_else(|| Error::invalid("timestep", t, format!("the schedule has timesteps 0..{}", self.len())))
    }

    /// `ᾱ_{t−1}`, with `ᾱ_{−1} = 1` (the clean data before the first step).
    ///
    /// # Errors
    /// `t ≥ T`.
    pub fn alpha_bar_prev(&self, t: usize) -> Result<f64> {
        self.alpha_bar(t)?;
        Ok(if t == 0 { 1.0 } else { self.alphas_cumprod[t - 1] })
    }

    /// `β_t`.
    ///
    /// # Errors
    /// `t ≥ T`.
    pub fn beta(&self, t: usize) -> Result<f64> {
        self.alpha_bar(t)?;
        Ok(self.betas[t])
    }

    /// The signal-to-noise ratio `ᾱ_t/(1 − ᾱ_t)`.
    ///
    /// # Errors
    /// `t ≥ T`.
    pub fn snr(&self, t: usize) -> Result<f64> {
        let a = self.alpha_bar(t)?;
        Ok(a / (1.0 - a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: BetaSchedule) -> NoiseSchedule {
        NoiseSchedule::new(&ScheduleConfig {
            beta_schedule: kind,
            beta_start: if kind == BetaSchedule::ScaledLinear {
                0.00085
            } else {
                1e-4
            },
            beta_end: if kind == BetaSchedule::ScaledLinear {
                0.012
            } else {
                0.02
            },
            ..ScheduleConfig::default()
        })
        .unwrap()
    }

    /// Each schedule against its formula at a few points, and ᾱ as the
    /// product of the (1 − β)'s, summed in logs for an independent check.
    #[test]
    fn schedules_follow_their_formulas() {
        let linear = schedule(BetaSchedule::Linear);
        assert_eq!(linear.len(), 1000);
        assert!((linear.betas()[0] - 1e-4).abs() < 1e-18);
        assert!((linear.betas()[999] - 0.02).abs() < 1e-15);
        assert!((linear.betas()[500] - (1e-4 + 0.0199 * 500.0 / 999.0)).abs() < 1e-15);
        // DDPM's ᾱ_T for the linear schedule is about 4.0e-5.
        let log_sum: f64 = linear.betas().iter().map(|b| (1.0 - b).ln()).sum();
        assert!((linear.alphas_cumprod()[999].ln() - log_sum).abs() < 1e-9);
        assert!((linear.alphas_cumprod()[999] - 4.036e-5).abs() < 1e-7);

        let scaled = schedule(BetaSchedule::ScaledLinear);
        let root = 0.00085f64.sqrt() + (0.012f64.sqrt() - 0.00085f64.sqrt()) * 300.0 / 999.0;
        assert!((scaled.betas()[300] - root * root).abs() < 1e-15);

        let cosine = schedule(BetaSchedule::Cosine);
        let f = |u: f64| ((u + 0.008) / 1.008 * FRAC_PI_2).cos().powi(2);
        for t in [0, 1, 500, 998] {
            let expect = (1.0 - f((t + 1) as f64 / 1000.0) / f(t as f64 / 1000.0)).min(0.999);
            assert!((cosine.betas()[t] - expect).abs() < 1e-15, "β_{t}");
            // ᾱ_t = f((t+1)/T)/f(0) while no β is capped.
            assert!((cosine.alphas_cumprod()[t] - f((t + 1) as f64 / 1000.0) / f(0.0)).abs() < 1e-12);
        }
        assert_eq!(cosine.betas()[999], MAX_COSINE_BETA);
    }

    /// The cosine schedule in f32 (what a network on the GPU reads): no β
    /// is 0 or NaN, every ᾱ is positive and decreasing, and √(1 − ᾱ) is
    /// below 1.
    #[test]
    fn the_cosine_schedule_survives_f32() {
        let cosine = schedule(BetaSchedule::Cosine);
        let betas: Vec<f32> = cosine.betas().iter().map(|&b| b as f32).collect();
        let bars: Vec<f32> = cosine.alphas_cumprod().iter().map(|&a| a as f32).collect();
        assert!(betas.iter().all(|b| b.is_finite() && *b > 0.0 && *b < 1.0), "{betas:?}");
        assert!(bars.iter().all(|a| a.is_finite() && *a > 0.0));
        assert!(bars.windows(2).all(|w| w[1] < w[0]));
        // Its first β is ~4e-5, not the 0 a naive f32 ratio of cosines can give.
        assert!(betas[0] > 1e-5, "{}", betas[0]);
        let f32_product: f32 = betas.iter().map(|b| 1.0 - b).product();
        assert!(f32_product.is_finite());
    }

    #[test]
    fn zero_terminal_snr_rescaling() {
        let linear = schedule(BetaSchedule::Linear);
        let rescaled = linear.rescaled_to_zero_terminal_snr();
        assert_eq!(rescaled.alphas_cumprod()[999], 0.0);
        assert!((rescaled.alphas_cumprod()[0] - linear.alphas_cumprod()[0]).abs() < 1e-15);
        assert!((rescaled.betas()[999] - 1.0).abs() < 1e-15);
        // √ᾱ' is an affine map of √ᾱ.
        let (r, s) = (linear.alphas_cumprod(), rescaled.alphas_cumprod());
        let slope = (s[10].sqrt() - s[500].sqrt()) / (r[10].sqrt() - r[500].sqrt());
        let slope2 = (s[100].sqrt() - s[900].sqrt()) / (r[100].sqrt() - r[900].sqrt());
        assert!((slope - slope2).abs() < 1e-12);
        assert!(rescaled.betas()[..999].iter().all(|b| *b > 0.0 && *b < 1.0));
    }

    #[test]
    fn bad_schedules_are_refused() {
        let bad = |c: ScheduleConfig| NoiseSchedule::new(&c).err().map(|e| e.to_string()).unwrap_or_default();
        let base = ScheduleConfig::default();
        assert!(
            bad(ScheduleConfig {
                num_train_timesteps: 0,
                ..base.clone()
            })
            .contains("num_train_timesteps")
        );
        assert!(
            bad(ScheduleConfig {
                beta_end: 1.5,
                ..base.clone()
            })
            .contains("(0, 1)")
        );
        assert!(
            bad(ScheduleConfig {
                beta_start: 0.0,
                ..base.clone()
            })
            .contains("beta_start")
        );
        assert!(
            bad(ScheduleConfig {
                beta_start: 0.03,
                ..base.clone()
            })
            .contains("must not exceed")
        );
        assert!(NoiseSchedule::from_betas(vec![0.1, 1.0]).is_err());
        assert!("squaredcos".parse::<BetaSchedule>().is_err());
    }
}
