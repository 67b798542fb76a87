//! The ELBO of the hierarchical VAE, its reparameterized estimate, the KL
//! warm-up schedule and free bits.
//!
//! For one example `x` and one draw `z1 = μ1(x) + σ1(x) ⊙ ε1`,
//! `z2 = μ2(z1) + σ2(z1) ⊙ ε2` the estimate is
//!
//! ```text
//! ELBÔ = log p(x|z1) − [log q(z1|x) − log p(z1|z2)] − KL(q(z2|z1) ‖ N(0, I))
//!         └ recon ┘     └────── kl1, sampled ──────┘   └─ kl2, closed form ─┘
//! ```
//!
//! Its expectation over `ε1, ε2` is the ELBO `E_q[log p(x, z1, z2) − log
//! q(z1, z2|x)]`: the top KL is exact given `z1`, so replacing
//! `E_{q(z2|z1)}[log q(z2|z1) − log p(z2)]` by its closed form only removes
//! variance. The middle term has no closed form, because `p(z1|z2)` depends
//! on `z2`, which is drawn *after* `z1`; seed 003 writes it as
//! `E_{q(z2|z1)}[KL(q(z1|x) ‖ p(z1|z2))]`, which is not even well defined
//! (the outer expectation needs the `z1` that the KL integrates out), so it
//! is sampled here (SPEC §10).
//!
//! **KL warm-up** ([`KlSchedule`]) multiplies both KL terms by `β ∈ [0, 1]`
//! that grows with training; **free bits** ([`FreeBits`], Kingma et al.
//! 2016) replace a layer's KL by `Σ_g max(λ, KL̄_g)`, `KL̄_g` the batch mean
//! of group `g`'s KL, so that the optimiser gains nothing by pushing a unit
//! below `λ` nats. For layer 1 the per-unit KL is the sampled
//! `log q(z1_u|x) − log p(z1_u|z2)` (both are diagonal, so the difference
//! splits over units); for layer 2 it is the closed-form per-unit KL.

use crate::model::Hvae;
use crate::{Error, Result};
use candle::{D, DType, Tensor};
use deepgen_core::nonempty_batch_ranges;
use deepgen_numerics::DiagGaussian;
use rand::Rng;
use std::fmt;
use std::str::FromStr;

/// The KL weight `β` as a function of training progress in epochs
/// (fractional: the trainer advances it every step).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KlSchedule {
    /// `β = 1` throughout: the ELBO.
    #[default]
    Constant,
    /// `β = min(1, t / warmup)`: linear warm-up from 0 to 1 over `warmup`
    /// epochs (Bowman et al. 2016, Sønderby et al. 2016), then 1;
    /// `warmup = 0` is [`KlSchedule::Constant`].
    Linear {
        /// Epochs until `β = 1` (finite, ≥ 0).
        warmup: f64,
    },
    /// Cyclical annealing (Fu et al. 2019): cycles of `period` epochs, each
    /// rising linearly from 0 to 1 over the first `ramp · period` epochs and
    /// holding 1 for the rest: `β = min(1, (t mod period) / (ramp · period))`.
    Cyclical {
        /// Epochs per cycle (finite, > 0).
        period: f64,
        /// Fraction of a cycle spent rising, in `(0, 1]` (Fu et al.: 0.5).
        ramp: f64,
    },
}

impl KlSchedule {
    /// `β` after `progress` epochs of training, in `[0, 1]`.
    pub fn beta(&self, progress: f64) -> f64 {
        let progress = progress.max(0.0);
        match *self {
            KlSchedule::Constant => 1.0,
            KlSchedule::Linear { warmup } if warmup <= 0.0 => 1.0,
            KlSchedule::Linear { warmup } => (progress / warmup).min(1.0),
            KlSchedule::Cyclical { period, ramp } => {
                let rising = ramp * period;
                if rising <= 0.0 {
                    1.0
                } else {
                    (progress.rem_euclid(period) / rising).min(1.0)
                }
            }
        }
    }

    /// Checks the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a warm-up negative or not finite, a
    /// period not positive and finite, or a ramp outside `(0, 1]`.
    pub fn validate(&self) -> Result<()> {
        match *self {
            KlSchedule::Constant => Ok(()),
            KlSchedule::Linear { warmup } if !(warmup >= 0.0 && warmup.is_finite()) => Err(Error::invalid_display(
                "warmup",
                warmup,
                "the KL warm-up must be a finite number of epochs ≥ 0",
            )),
            KlSchedule::Linear { .. } => Ok(()),
            KlSchedule::Cyclical { period, .. } if !(period > 0.0 && period.is_finite()) => {
                Err(Error::invalid_display(
                    "cycle_period",
                    period,
                    "a KL cycle must last a finite number of epochs > 0",
                ))
            }
            KlSchedule::Cyclical { ramp, .. } if !(ramp > 0.0 && ramp <= 1.0) => Err(Error::invalid_display(
                "cycle_ramp",
                ramp,
                "the rising part of a KL cycle is a fraction in (0, 1]",
            )),
            KlSchedule::Cyclical { .. } => Ok(()),
        }
    }

    /// A warning when a run of `epochs` epochs ends with `β < 1`, i.e. the
    /// objective at the end of training is not the ELBO; `None` otherwise.
    pub fn warning(&self, epochs: usize) -> Option<String> {
        let end = self.beta(epochs as f64);
        if end >= 1.0 {
            return None;
        }
        Some(match *self {
            KlSchedule::Linear { warmup } => format!(
                "the KL warm-up lasts {warmup} epochs but the run has {epochs}: β only reaches {end:.3}, \
                 so the model never trains on the full ELBO"
            ),
            KlSchedule::Cyclical { period, ramp } => format!(
                "the cyclical KL schedule (period {period} epochs, ramp {ramp}) ends the {epochs}-epoch run \
                 at β = {end:.3} < 1, so the final model was not trained on the full ELBO"
            ),
            KlSchedule::Constant => format!("β ends at {end:.3} < 1"),
        })
    }
}

impl fmt::Display for KlSchedule {
    /// `constant`, `linear:W` or `cyclical:P:R`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KlSchedule::Constant => f.write_str("constant"),
            KlSchedule::Linear { warmup } => write!(f, "linear:{warmup}"),
            KlSchedule::Cyclical { period, ramp } => write!(f, "cyclical:{period}:{ramp}"),
        }
    }
}

/// The schedule is `constant`, `linear:W` or `cyclical:P:R` in files, as in
/// its display form.
impl TryFrom<String> for KlSchedule {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<KlSchedule> for String {
    fn from(schedule: KlSchedule) -> String {
        schedule.to_string()
    }
}

impl FromStr for KlSchedule {
    type Err = Error;
    /// Parses [`KlSchedule`]'s display form and validates it.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid_display(
                "schedule",
                format!("`{s}`"),
                "expected constant, linear:WARMUP_EPOCHS or cyclical:PERIOD_EPOCHS:RAMP_FRACTION",
            )
        };
        let number = |t: &str| t.parse::<f64>().map_err(|_| bad());
        let parts: Vec<&str> = s.split(':').collect();
        let schedule = match parts.as_slice() {
            ["constant"] => KlSchedule::Constant,
            ["linear", w] => KlSchedule::Linear { warmup: number(w)? },
            ["cyclical", p, r] => KlSchedule::Cyclical {
                period: number(p)?,
                ramp: number(r)?,
            },
            _ => return Err(bad()),
        };
        schedule.validate()?;
        Ok(schedule)
    }
}

/// The free-bits floor: `λ` nats for every group of `group_size` latent units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FreeBits {
    /// `λ`, nats per group; 0 turns free bits off.
    pub lambda: f64,
    /// Units per group (contiguous; the last group may be smaller).
    pub group_size: usize,
}

impl FreeBits {
    /// No floor.
    pub const OFF: FreeBits = FreeBits {
        lambda: 0.0,
        group_size: 1,
    };

    /// A checked floor.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `λ` negative or not finite, or a group
    /// size of 0.
    pub fn new(lambda: f64, group_size: usize) -> Result<Self> {
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return Err(Error::invalid_display(
                "free_bits",
                lambda,
                "free bits must be a finite number of nats ≥ 0",
            ));
        }
        if group_size == 0 {
            return Err(Error::invalid_display("free_bits_group", 0, "must be at least 1"));
        }
        Ok(Self { lambda, group_size })
    }

    /// The number of groups of a layer of `units` units.
    pub fn n_groups(&self, units: usize) -> usize {
        units.div_ceil(self.group_size.max(1))
    }

    /// A layer's KL term in the objective, a scalar: from per-unit KL values
    /// `kl_units` `[L, batch, Z]` (or any `[.., Z]`),
    /// `Σ_g max(λ, mean_{L, batch} Σ_{u∈g} kl_u)` (Kingma et al. 2016, appendix C:
    /// the floor applies to the batch mean, as in the IAF code). With `λ = 0`
    /// it is the plain mean of `Σ_u kl_u`, with no clamp, so that the sampled
    /// layer-1 KL stays an unbiased estimate.
    ///
    /// # Errors
    /// Candle errors for a scalar input.
    pub fn objective(&self, kl_units: &Tensor) -> Result<Tensor> {
        let z = *kl_units.dims().last().ok_or_else(|| Error::BadShape {
            what: "per-unit KL",
            got: vec![],
            expected: "[.., units]".into(),
        })?;
        let rows = kl_units.elem_count() / z.max(1);
        let unit_means = (kl_units.reshape((rows, z))?.sum(0)? / rows.max(1) as f64)?;
        if self.lambda == 0.0 {
            return Ok(unit_means.sum_all()?);
        }
        let group_sums = group_sums(&unit_means, self.group_size)?;
        // max(λ, t) = relu(t − λ) + λ.
        Ok(((group_sums - self.lambda)?.relu()? + self.lambda)?.sum_all()?)
    }
}

/// `[Z]` → `[⌈Z/g⌉]`, the sums of contiguous groups of `g` entries.
fn group_sums(units: &Tensor, group_size: usize) -> Result<Tensor> {
    let z = units.dim(0)?;
    let g = group_size.clamp(1, z.max(1));
    if g == 1 {
        return Ok(units.clone());
    }
    let full = z / g;
    let mut parts = Vec::with_capacity(2);
    if full > 0 {
        parts.push(units.narrow(0, 0, full * g)?.reshape((full, g))?.sum(1)?);
    }
    if full * g < z {
        parts.push(units.narrow(0, full * g, z - full * g)?.sum_keepdim(0)?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// `KL(N(μ, σ²) ‖ N(0, 1))` per unit, `−½ (1 + log σ² − μ² − σ²)`, same shape
/// as the parameters (deepgen-numerics' [`deepgen_numerics::DiagGaussian::kl_standard_normal`]
/// is its sum over the last dim; free bits need the units).
///
/// # Errors
/// Candle errors when the shapes differ.
pub fn kl_standard_normal_units(mean: &Tensor, log_var: &Tensor) -> Result<Tensor> {
    let inner = ((log_var + 1.0)? - mean.sqr()?)?.sub(&log_var.exp()?)?;
    Ok((inner * -0.5)?)
}

/// The per-sample pieces of the ELBO estimate for `L` draws of `(z1, z2)` per
/// example, nats.
#[derive(Clone, Debug)]
pub struct ElboTerms {
    /// `log p(x|z1)`, `[L, batch]`.
    pub log_likelihood: Tensor,
    /// `log q(z1_u|x) − log p(z1_u|z2)` per unit, `[L, batch, Z1]`.
    pub kl1_units: Tensor,
    /// `KL(q(z2_u|z1) ‖ N(0, 1))` per unit in closed form, `[L, batch, Z2]`.
    pub kl2_units: Tensor,
}

impl ElboTerms {
    /// The single-sample ELBO estimates `log p(x|z1) − Σ kl1 − Σ kl2`,
    /// `[L, batch]`; their mean over `L` is the `L`-sample estimate.
    ///
    /// # Errors
    /// Candle errors only.
    pub fn elbo(&self) -> Result<Tensor> {
        let kl1 = self.kl1_units.sum(D::Minus1)?;
        let kl2 = self.kl2_units.sum(D::Minus1)?;
        Ok(((&self.log_likelihood - kl1)? - kl2)?)
    }
}

/// One draw through the inference network: `[L, batch, ·]` samples and the
/// distributions they came from (`q1` is `[batch, Z1]`, the rest
/// `[L, batch, ·]`).
#[derive(Debug)]
pub(crate) struct Draw {
    pub(crate) q1: DiagGaussian,
    pub(crate) z1: Tensor,
    pub(crate) q2: DiagGaussian,
    pub(crate) z2: Tensor,
    pub(crate) p1: DiagGaussian,
}

impl Draw {
    /// `log q(z1_u|x) − log p(z1_u|z2)` per unit, `[L, batch, Z1]`.
    pub(crate) fn kl1_units(&self) -> Result<Tensor> {
        Ok((self.q1.log_prob_elementwise(&self.z1)? - self.p1.log_prob_elementwise(&self.z1)?)?)
    }
}

/// The named parts of a hierarchical VAE loss, each a scalar averaged over
/// samples and batch (nats per example).
#[derive(Clone, Debug)]
pub struct HvaeLoss {
    /// What training minimises: `recon + β (kl1_objective + kl2_objective)`.
    pub total: Tensor,
    /// `E_q[−log p(x|z1)]`.
    pub recon: Tensor,
    /// `E_q[log q(z1|x) − log p(z1|z2)]`, sampled.
    pub kl1: Tensor,
    /// `E_{q(z1|x)}[KL(q(z2|z1) ‖ p(z2))]`, closed form given `z1`.
    pub kl2: Tensor,
    /// Layer 1's KL after free bits ([`FreeBits::objective`]); `kl1` when off.
    pub kl1_objective: Tensor,
    /// Layer 2's KL after free bits; `kl2` when off.
    pub kl2_objective: Tensor,
}

impl HvaeLoss {
    /// `−ELBO = recon + kl1 + kl2`, whatever `β` and free bits training uses.
    ///
    /// # Errors
    /// Candle errors only.
    pub fn negative_elbo(&self) -> Result<Tensor> {
        Ok(((&self.recon + &self.kl1)? + &self.kl2)?)
    }
}

/// The negative ELBO and its parts averaged over a data set (nats per
/// example).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossValues {
    /// `recon + kl1 + kl2`.
    pub negative_elbo: f64,
    /// `E_q[−log p(x|z1)]`.
    pub recon: f64,
    /// Layer 1's KL (sampled).
    pub kl1: f64,
    /// Layer 2's KL (closed form given `z1`).
    pub kl2: f64,
}

/// A loss from its per-sample terms: `β` weights both KL terms, after the
/// free-bits floor. With `β = 1` and free bits off, `total` is the negative
/// ELBO estimate.
///
/// # Errors
/// [`Error::InvalidConfig`] for `β` negative or not finite.
pub fn hvae_loss(terms: &ElboTerms, beta: f64, free_bits: FreeBits) -> Result<HvaeLoss> {
    if !(beta >= 0.0 && beta.is_finite()) {
        return Err(Error::invalid_display(
            "beta",
            beta,
            "the KL weight must be finite and ≥ 0",
        ));
    }
    let recon = terms.log_likelihood.mean_all()?.neg()?;
    let kl1 = terms.kl1_units.sum(D::Minus1)?.mean_all()?;
    let kl2 = terms.kl2_units.sum(D::Minus1)?.mean_all()?;
    let (kl1_objective, kl2_objective) = if free_bits.lambda == 0.0 {
        (kl1.clone(), kl2.clone())
    } else {
        (
            free_bits.objective(&terms.kl1_units)?,
            free_bits.objective(&terms.kl2_units)?,
        )
    };
    let kl = (&kl1_objective + &kl2_objective)?;
    let total = if beta == 1.0 {
        (&recon + kl)?
    } else {
        (&recon + (kl * beta)?)?
    };
    Ok(HvaeLoss {
        total,
        recon,
        kl1,
        kl2,
        kl1_objective,
        kl2_objective,
    })
}

impl Hvae {
    /// The per-sample ELBO terms for `xs` `[batch, D]` and standard-normal
    /// noise `eps1` (`[batch, Z1]` or `[L, batch, Z1]`) and `eps2` (same
    /// leading dims, `Z2`): `z1 = μ1(x) + σ1(x) ⊙ ε1`, `z2 = μ2(z1) + σ2(z1) ⊙
    /// ε2`, both reparameterized so gradients reach every network.
    ///
    /// A pure function of the parameters, data and noise.
    ///
    /// # Errors
    /// [`Error::BadShape`] for shapes that do not fit.
    pub fn elbo_terms(&self, xs: &Tensor, eps1: &Tensor, eps2: &Tensor) -> Result<ElboTerms> {
        let draw = self.ancestral_draw(xs, eps1, eps2)?;
        Ok(ElboTerms {
            log_likelihood: self.log_likelihood(xs, &draw.z1)?,
            kl1_units: draw.kl1_units()?,
            kl2_units: kl_standard_normal_units(draw.q2.mean(), draw.q2.log_var())?,
        })
    }

    /// `z1 ~ q(z1|x)`, `z2 ~ q(z2|z1)` from the noise, with the
    /// distributions along the way.
    pub(crate) fn ancestral_draw(&self, xs: &Tensor, eps1: &Tensor, eps2: &Tensor) -> Result<Draw> {
        let batch = self.check_input(xs)?;
        let eps1 = self.noise("z1 noise", eps1, batch, self.config().latent1)?;
        let eps2 = self.noise("z2 noise", eps2, batch, self.config().latent2)?;
        if eps1.dim(0)? != eps2.dim(0)? {
            return Err(Error::BadShape {
                what: "z2 noise",
                got: eps2.dims().to_vec(),
                expected: format!("as many samples as the z1 noise ({})", eps1.dim(0)?),
            });
        }
        let q1 = self.posterior_z1(xs)?;
        let z1 = q1.rsample(&eps1)?;
        let q2 = self.posterior_z2(&z1)?;
        let z2 = q2.rsample(&eps2)?;
        let p1 = self.prior_z1(&z2)?;
        Ok(Draw { q1, z1, q2, z2, p1 })
    }

    /// The loss with KL weight `beta` and the configured free bits, from
    /// given noise (see [`Hvae::elbo_terms`] and [`hvae_loss`]).
    ///
    /// # Errors
    /// As [`Hvae::elbo_terms`]; `β` negative or not finite.
    pub fn loss(&self, xs: &Tensor, eps1: &Tensor, eps2: &Tensor, beta: f64) -> Result<HvaeLoss> {
        hvae_loss(&self.elbo_terms(xs, eps1, eps2)?, beta, self.config().free_bits())
    }

    /// The training objective with KL weight `beta`: [`Hvae::loss`] with
    /// `n_samples` draws of the noise from `rng`.
    ///
    /// # Errors
    /// As [`Hvae::loss`].
    pub fn objective(&self, xs: &Tensor, beta: f64, rng: &mut impl Rng) -> Result<HvaeLoss> {
        let batch = self.check_input(xs)?;
        let (eps1, eps2) = self.draw_noise(self.config().n_samples, batch, xs, rng)?;
        self.loss(xs, &eps1, &eps2, beta)
    }

    /// `[L, batch, Z1]` and `[L, batch, Z2]` standard-normal noise in the
    /// dtype of `like`.
    pub(crate) fn draw_noise(
        &self,
        samples: usize,
        batch: usize,
        like: &Tensor,
        rng: &mut impl Rng,
    ) -> Result<(Tensor, Tensor)> {
        let draw = |rng: &mut _, dim: usize| -> Result<Tensor> {
            Ok(deepgen_core::rng::randn(rng, (samples, batch, dim), like.device())?.to_dtype(like.dtype())?)
        };
        let eps1 = draw(rng, self.config().latent1)?;
        let eps2 = draw(rng, self.config().latent2)?;
        Ok((eps1, eps2))
    }

    /// `−ELBO`, `recon`, `kl1` and `kl2` averaged over all rows of `xs`
    /// `[n, D]`, in batches of `batch_size`, one draw per example (β and free
    /// bits not applied).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `batch_size = 0` or no rows.
    pub fn mean_loss(&self, xs: &Tensor, batch_size: usize, rng: &mut impl Rng) -> Result<LossValues> {
        let n = self.check_input(xs)?;
        let (mut recon, mut kl1, mut kl2) = (0f64, 0f64, 0f64);
        for (start, len) in nonempty_batch_ranges(n, batch_size, Error::invalid)? {
            let batch = xs.narrow(0, start, len)?;
            let (eps1, eps2) = self.draw_noise(1, len, xs, rng)?;
            let loss = hvae_loss(&self.elbo_terms(&batch, &eps1, &eps2)?, 1.0, FreeBits::OFF)?;
            recon += scalar(&loss.recon)? * len as f64;
            kl1 += scalar(&loss.kl1)? * len as f64;
            kl2 += scalar(&loss.kl2)? * len as f64;
        }
        let n = n as f64;
        let (recon, kl1, kl2) = (recon / n, kl1 / n, kl2 / n);
        Ok(LossValues {
            negative_elbo: recon + kl1 + kl2,
            recon,
            kl1,
            kl2,
        })
    }
}

/// A scalar tensor's value as `f64`.
pub(crate) fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn linear_warmup_by_hand() {
        let s = KlSchedule::Linear { warmup: 4.0 };
        assert_eq!(s.beta(0.0), 0.0);
        assert_eq!(s.beta(1.0), 0.25);
        assert_eq!(s.beta(4.0), 1.0);
        assert_eq!(s.beta(100.0), 1.0);
        assert_eq!(KlSchedule::Linear { warmup: 0.0 }.beta(0.0), 1.0);
        // Cycles of 4 epochs rising over the first 2: 0, ½, 1, 1, then again.
        let c = KlSchedule::Cyclical { period: 4.0, ramp: 0.5 };
        let betas: Vec<f64> = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0].iter().map(|&t| c.beta(t)).collect();
        assert_eq!(betas, [0.0, 0.5, 1.0, 1.0, 0.0, 0.5]);
    }

    #[test]
    fn warnings_only_when_beta_ends_below_one() {
        let s = KlSchedule::Linear { warmup: 20.0 };
        let w = s.warning(10).unwrap_or_default();
        assert!(w.contains("20 epochs") && w.contains("0.500"), "{w}");
        assert!(s.warning(20).is_none() && KlSchedule::Constant.warning(0).is_none());
        let c = KlSchedule::Cyclical { period: 4.0, ramp: 0.5 };
        assert!(c.warning(3).is_none() && c.warning(5).is_some());
    }

    #[test]
    fn schedule_parse_and_errors() -> Result<()> {
        assert_eq!("linear:2.5".parse::<KlSchedule>()?, KlSchedule::Linear { warmup: 2.5 });
        assert_eq!(
            "cyclical:4:0.5".parse::<KlSchedule>()?,
            KlSchedule::Cyclical { period: 4.0, ramp: 0.5 }
        );
        for bad in [
            "linear:-1",
            "linear:inf",
            "linear:NaN",
            "cyclical:0:0.5",
            "cyclical:4:0",
            "cyclical:4:1.5",
            "cosine",
        ] {
            assert!(bad.parse::<KlSchedule>().is_err(), "{bad}");
        }
        Ok(())
    }

    /// Groups of 2 over 5 units: sums (1 + 2), (3 + 4), 5; with λ = 4 the
    /// floor lifts the first: 4 + 7 + 5 = 16.
    #[test]
    fn grouped_free_bits_by_hand() -> Result<()> {
        let dev = Device::Cpu;
        // Two rows whose mean is [1, 2, 3, 4, 5].
        let kl = Tensor::new(&[[0f64, 1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0, 6.0]], &dev)?;
        let fb = FreeBits::new(4.0, 2)?;
        assert_eq!(fb.n_groups(5), 3);
        assert_eq!(scalar(&fb.objective(&kl)?)?, 16.0);
        // Per unit with λ = 2.5: 2.5 + 2.5 + 3 + 4 + 5.
        assert_eq!(scalar(&FreeBits::new(2.5, 1)?.objective(&kl)?)?, 17.0);
        // One group larger than the layer: max(4, 15) = 15.
        assert_eq!(scalar(&FreeBits::new(4.0, 9)?.objective(&kl)?)?, 15.0);
        // Off: the plain mean, negative units included.
        let negative = Tensor::new(&[[-1f64, 0.5]], &dev)?;
        assert_eq!(scalar(&FreeBits::OFF.objective(&negative)?)?, -0.5);
        assert!(FreeBits::new(-0.1, 1).is_err() && FreeBits::new(f64::NAN, 1).is_err());
        assert!(FreeBits::new(0.25, 0).is_err() && FreeBits::new(f64::INFINITY, 1).is_err());
        Ok(())
    }
}
