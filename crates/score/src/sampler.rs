//! Langevin samplers on a [`ScoreField`], seeded: every Gaussian draw comes
//! from the caller's generator.
//!
//! ```text
//! Langevin            x ← x + (α/2) s(x) + √α z,   z ~ N(0, I),  n_steps times
//! annealed Langevin   for σ_i in σ₁ > … > σ_L:  α_i = ε σ_i²/σ_L²,
//!                     T times  x ← x + (α_i/2) s(x, σ_i) + √α_i z
//! denoising (option)  x ← x + σ_L² s(x, σ_L)        (Tweedie: E[x₀ | x] under q_σ_L)
//! ```

use crate::config::{ChainStart, SamplerConfig, SamplerKind};
use crate::mixture::GaussianMixture;
use crate::model::ScoreModel;
use crate::noise::NoiseLevels;
use crate::{Error, Result};
use candle::Tensor;
use deepgen_core::rng::randn;
use rand::Rng;

/// A score `s(x, σ) ≈ ∇log q_σ(x)` for `x [n, d]`, where
/// `q_σ = q ∗ N(0, σ²I)` (`σ = 0`: the data's own score, for fields that
/// know it).
pub trait ScoreField {
    /// The score at every row of `x`, at noise level `sigma`.
    ///
    /// # Errors
    /// A level the field cannot evaluate; shape errors.
    fn score(&self, x: &Tensor, sigma: f64) -> Result<Tensor>;
}

impl ScoreField for GaussianMixture {
    /// The exact score of the noised mixture.
    fn score(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        self.noised(sigma)?.score(x)
    }
}

impl ScoreField for ScoreModel {
    /// `s_θ(x, σ)`; an unconditional network ignores `sigma`.
    fn score(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        self.score_at_level(x, sigma)
    }
}

/// One Langevin step `x + (α/2) s + √α z` with fresh `z` from `rng`. The
/// result is detached: a network's score carries its graph, and a chain
/// that kept it would hold every step's activations (gigabytes after a
/// thousand steps).
fn langevin_step(x: &Tensor, score: &Tensor, alpha: f64, rng: &mut impl Rng) -> Result<Tensor> {
    let z = randn(rng, x.dims(), x.device())?.to_dtype(x.dtype())?;
    Ok(((x + (score.detach() * (0.5 * alpha))?)? + (z * alpha.sqrt())?)?.detach())
}

fn positive(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(name, value, "a positive, finite step size"))
    }
}

fn at_least_one_step(name: &'static str, steps: usize) -> Result<()> {
    if steps == 0 {
        Err(Error::invalid(name, 0, "at least one step"))
    } else {
        Ok(())
    }
}

/// Plain Langevin dynamics with a fixed step, the score read at one level.
#[derive(Debug, Clone, PartialEq)]
pub struct Langevin {
    step_size: f64,
    n_steps: usize,
    sigma: f64,
}

impl Langevin {
    /// `n_steps` steps of size `step_size` (α) on the score at level
    /// `sigma` (0 for an exact data score, `σ_L` for a noise-conditional
    /// network).
    ///
    /// # Errors
    /// `step_size ≤ 0` or not finite; `n_steps = 0`; `sigma` negative.
    pub fn new(step_size: f64, n_steps: usize, sigma: f64) -> Result<Self> {
        positive("step_size", step_size)?;
        at_least_one_step("n_steps", n_steps)?;
        if !(sigma.is_finite() && sigma >= 0.0) {
            return Err(Error::invalid("sigma", sigma, "finite and non-negative"));
        }
        Ok(Self {
            step_size,
            n_steps,
            sigma,
        })
    }

    /// Runs the chain from `x0 [n, d]`.
    ///
    /// # Errors
    /// The field's errors.
    pub fn sample(&self, field: &impl ScoreField, x0: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
        let mut x = x0.clone();
        for _ in 0..self.n_steps {
            let s = field.score(&x, self.sigma)?;
            x = langevin_step(&x, &s, self.step_size, rng)?;
        }
        Ok(x)
    }
}

/// Annealed Langevin dynamics (NCSN, Song & Ermon 2019, Algorithm 1).
#[derive(Debug, Clone, PartialEq)]
pub struct AnnealedLangevin {
    levels: NoiseLevels,
    steps_per_level: usize,
    epsilon: f64,
    denoise: bool,
}

impl AnnealedLangevin {
    /// `steps_per_level` (T) steps at every level of `levels`, with step
    /// `α_i = epsilon · σ_i²/σ_L²`; `denoise` adds Tweedie's final step.
    ///
    /// # Errors
    /// `epsilon ≤ 0` or not finite; `steps_per_level = 0`.
    pub fn new(levels: NoiseLevels, steps_per_level: usize, epsilon: f64, denoise: bool) -> Result<Self> {
        positive("epsilon", epsilon)?;
        at_least_one_step("steps_per_level", steps_per_level)?;
        Ok(Self {
            levels,
            steps_per_level,
            epsilon,
            denoise,
        })
    }

    /// The step `α_i` at level `σ_i`.
    pub fn step_size(&self, sigma: f64) -> f64 {
        let last = self.levels.smallest();
        self.epsilon * sigma * sigma / (last * last)
    }

    /// Runs the annealed chain from `x0 [n, d]`.
    ///
    /// # Errors
    /// The field's errors.
    pub fn sample(&self, field: &impl ScoreField, x0: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
        let mut x = x0.clone();
        for &sigma in self.levels.as_slice() {
            let alpha = self.step_size(sigma);
            for _ in 0..self.steps_per_level {
                let s = field.score(&x, sigma)?;
                x = langevin_step(&x, &s, alpha, rng)?;
            }
        }
        if self.denoise {
            let last = self.levels.smallest();
            x = (&x + (field.score(&x, last)?.detach() * (last * last))?)?;
        }
        Ok(x)
    }
}

impl SamplerConfig {
    /// Runs this sampler on `field` from `x0`: annealed over `levels`, or
    /// plain Langevin reading the field at `plain_level` (then the optional
    /// denoising step at that level).
    ///
    /// # Errors
    /// Invalid settings; the field's errors.
    pub fn run(
        &self,
        field: &impl ScoreField,
        levels: &NoiseLevels,
        plain_level: f64,
        x0: &Tensor,
        rng: &mut impl Rng,
    ) -> Result<Tensor> {
        self.validate()?;
        match self.kind {
            SamplerKind::Annealed => {
                AnnealedLangevin::new(levels.clone(), self.steps, self.epsilon, self.denoise)?.sample(field, x0, rng)
            }
            SamplerKind::Langevin => {
                let x = Langevin::new(self.epsilon, self.steps, plain_level)?.sample(field, x0, rng)?;
                if self.denoise {
                    let s = field.score(&x, plain_level)?.detach();
                    Ok((&x + (s * (plain_level * plain_level))?)?)
                } else {
                    Ok(x)
                }
            }
        }
    }

    /// The chain start `x₀` from standard-normal noise `e [n, d]`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn start_from(&self, e: &Tensor) -> Result<Tensor> {
        Ok(match self.start {
            ChainStart::Gaussian { std } => (e * std)?,
            // 2Φ(e) − 1 = erf(e/√2) is uniform on (−1, 1).
            ChainStart::Uniform { half_width } => ((e / std::f64::consts::SQRT_2)?.erf()? * half_width)?,
        })
    }
}

impl ScoreModel {
    /// Samples by `sampler` from the start given by the noise `e [n, d]`,
    /// the Langevin noise drawn from `rng`: annealed over the model's
    /// levels, or plain at `σ_L` (noise-conditional) or on the
    /// unconditional score.
    ///
    /// # Errors
    /// Annealing (or denoising) with an unconditional network; invalid
    /// sampler settings; the network's errors.
    pub fn draw(&self, sampler: &SamplerConfig, e: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
        let config = self.config();
        if !config.noise_conditional && (sampler.kind == SamplerKind::Annealed || sampler.denoise) {
            return Err(Error::invalid(
                "sampler",
                sampler.kind.name(),
                "annealing and the denoising step need a noise-conditional network",
            ));
        }
        let plain_level = if config.noise_conditional {
            config.sigmas.smallest()
        } else {
            0.0
        };
        let x0 = self.start_on_device(sampler, e)?;
        sampler.run(self, &config.sigmas, plain_level, &x0, rng)
    }

    fn start_on_device(&self, sampler: &SamplerConfig, e: &Tensor) -> Result<Tensor> {
        match e.dims() {
            &[_, d] if d == self.config().data_dim => sampler.start_from(e),
            dims => Err(Error::shape(
                "start noise",
                dims,
                format!("[n, {}]", self.config().data_dim),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};
    use deepgen_core::rng::{rand_uniform, rng_from_seed};

    fn uniform_start(n: usize, seed: u64) -> Tensor {
        rand_uniform(&mut rng_from_seed(seed), (n, 2), -8.0, 8.0, &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
    }

    /// On one Gaussian the chain's stationary law is the Gaussian, up to the
    /// discretisation: for s(x) = −x, x ← (1 − α/2)x + √α z has variance
    /// α/(1 − (1 − α/2)²) = 1/(1 − α/4).
    #[test]
    fn langevin_on_a_standard_gaussian_reaches_its_discretised_variance() {
        let q = GaussianMixture::new(vec![1.0], vec![vec![0.0, 0.0]], vec![vec![1.0, 1.0]]).unwrap();
        let alpha = 0.2;
        let x = Langevin::new(alpha, 300, 0.0)
            .unwrap()
            .sample(&q, &uniform_start(20_000, 1), &mut rng_from_seed(2))
            .unwrap();
        let var = x.sqr().unwrap().mean_all().unwrap().to_scalar::<f64>().unwrap();
        let expected = 1.0 / (1.0 - alpha / 4.0);
        // Standard error of a variance estimate from 40,000 normals: √(2/40000)·σ² ≈ 0.0075.
        assert!((var - expected).abs() < 0.03, "{var} vs {expected}");
    }

    /// The same seed gives the same chain.
    #[test]
    fn samplers_are_deterministic_given_the_seed() {
        let q = GaussianMixture::song_ermon();
        let annealed = AnnealedLangevin::new(NoiseLevels::geometric(20.0, 1.0, 3).unwrap(), 5, 0.1, true).unwrap();
        let run = |seed| {
            annealed
                .sample(&q, &uniform_start(50, 0), &mut rng_from_seed(seed))
                .unwrap()
        };
        let (a, b, c) = (run(7), run(7), run(8));
        assert_eq!(a.to_vec2::<f64>().unwrap(), b.to_vec2::<f64>().unwrap());
        assert_ne!(a.to_vec2::<f64>().unwrap(), c.to_vec2::<f64>().unwrap());
    }

    /// Both starts have the asked law: the uniform one through `erf`.
    #[test]
    fn chain_starts_are_gaussian_or_uniform() {
        let e = randn(&mut rng_from_seed(1), (50_000, 2), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let uniform = SamplerConfig {
            start: ChainStart::Uniform { half_width: 8.0 },
            ..SamplerConfig::default()
        };
        let x = uniform
            .start_from(&e)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!(x.iter().all(|v| v.abs() <= 8.0));
        // Each quarter of [−8, 8] holds a quarter of the values (se ≈ 0.0014).
        for q in 0..4 {
            let lo = -8.0 + 4.0 * q as f64;
            let frac = x.iter().filter(|v| **v >= lo && **v < lo + 4.0).count() as f64 / x.len() as f64;
            assert!((frac - 0.25).abs() < 0.008, "quarter {q}: {frac}");
        }
        let gaussian = SamplerConfig {
            start: ChainStart::Gaussian { std: 3.0 },
            ..SamplerConfig::default()
        };
        let var = gaussian
            .start_from(&e)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((var - 9.0).abs() < 0.15, "{var}");
    }

    #[test]
    fn bad_sampler_settings_are_clear_errors() {
        let levels = NoiseLevels::geometric(20.0, 1.0, 3).unwrap();
        let err = Langevin::new(0.0, 10, 0.0).unwrap_err().to_string();
        assert!(err.contains("step_size") && err.contains("positive"), "{err}");
        assert!(Langevin::new(-0.1, 10, 0.0).is_err());
        assert!(Langevin::new(f64::NAN, 10, 0.0).is_err());
        assert!(
            Langevin::new(0.1, 0, 0.0)
                .unwrap_err()
                .to_string()
                .contains("at least one step")
        );
        assert!(Langevin::new(0.1, 10, -1.0).is_err());
        assert!(AnnealedLangevin::new(levels.clone(), 0, 0.1, false).is_err());
        assert!(AnnealedLangevin::new(levels, 10, 0.0, false).is_err());
    }

    /// Song & Ermon's experiment on the exact score (SPEC §6): plain
    /// Langevin keeps the uniform start's split between the modes, annealed
    /// Langevin recovers the weights 0.8 / 0.2.
    #[test]
    fn annealing_recovers_the_mixture_weights_that_plain_langevin_loses() {
        let q = GaussianMixture::song_ermon();
        let x0 = uniform_start(1280, 3);
        let plain = Langevin::new(0.1, 1000, 0.0)
            .unwrap()
            .sample(&q, &x0, &mut rng_from_seed(4))
            .unwrap();
        let f_plain = q.component_fractions(&plain).unwrap()[0];
        let annealed = AnnealedLangevin::new(NoiseLevels::geometric(20.0, 1.0, 10).unwrap(), 100, 0.1, false)
            .unwrap()
            .sample(&q, &x0, &mut rng_from_seed(4))
            .unwrap();
        let f_annealed = q.component_fractions(&annealed).unwrap()[0];
        assert!((f_plain - 0.5).abs() < 0.06, "plain Langevin: {f_plain}");
        assert!((f_annealed - 0.8).abs() < 0.04, "annealed Langevin: {f_annealed}");
    }
}
