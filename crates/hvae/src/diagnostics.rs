//! Diagnostics of posterior collapse, per layer: KL in nats (from
//! [`Hvae::mean_loss`]), active units, and the importance-sampled `log p(x)`.
//!
//! **Active units** (Burda et al. 2016, section 5.2): unit `u` is active
//! when `A_u = Cov_x(E_q[z_u|x]) > 0.01`, the variance over the data of its
//! posterior mean. For `z1` that mean is `μ1(x)`. For `z2`, whose posterior
//! `q(z2|x) = ∫ q(z1|x) q(z2|z1) dz1` has no closed-form mean, we use
//! `μ2(μ1(x))`: `q(z2|z1)`'s mean with `z1` at its posterior mean. It is
//! deterministic, so the statistic carries no sampling noise, and it equals
//! the true `E_q[z2|x]` wherever `μ2` is linear over `q(z1|x)`'s spread. The
//! variance is the unbiased one (divisor `N − 1`); use at least 1,000
//! examples, as Burda et al. do.
//!
//! **Importance-sampled `log p(x)`** with `K` draws `(z1, z2) ~ q(z1|x)
//! q(z2|z1)`:
//!
//! ```text
//! log p̂(x) = log (1/K) Σ_k p(x, z1_k, z2_k) / q(z1_k, z2_k|x)
//!          = logsumexp_k log w_k − log K,
//! log w = log p(x|z1) + log p(z1|z2) + log p(z2) − log q(z1|x) − log q(z2|z1)
//! ```
//!
//! through deepgen-numerics' [`chunked_log_mean_exp`]. Its
//! expectation is the IWAE bound `L_K`: `L_1` is the ELBO, and `L_K`
//! increases to `log p(x)` as `K` grows.

use crate::loss::{LossValues, scalar};
use crate::model::Hvae;
use crate::{Error, Result};
use candle::{D, DType, Tensor};
use deepgen_core::nonempty_batch_ranges;
use deepgen_numerics::chunked_log_mean_exp;
use rand::Rng;

/// Burda et al.'s threshold on `Cov_x(E_q[z_u|x])` for an active unit.
pub const ACTIVE_UNIT_THRESHOLD: f64 = 0.01;

/// `½ ln 2π`.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// The active units of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveUnits {
    /// How many units have `A_u > threshold`.
    pub count: usize,
    /// `A_u`, the variance over the data of each unit's posterior mean.
    pub variances: Vec<f64>,
}

/// Counts the units of posterior means `means` `[N, Z]` (one row per
/// example) whose variance over the rows exceeds `threshold`
/// ([`ACTIVE_UNIT_THRESHOLD`] in the literature).
///
/// # Errors
/// [`Error::BadShape`] for fewer than two rows or another rank.
pub fn active_units(means: &Tensor, threshold: f64) -> Result<ActiveUnits> {
    let (n, _z) = match *means.dims() {
        [n, z] if n >= 2 => (n, z),
        _ => {
            return Err(Error::BadShape {
                what: "posterior means",
                got: means.dims().to_vec(),
                expected: "[examples ≥ 2, units]".into(),
            });
        }
    };
    let means = means.to_dtype(DType::F64)?;
    let centred = means.broadcast_sub(&means.mean_keepdim(0)?)?;
    let variances = (centred.sqr()?.sum(0)? / (n - 1) as f64)?.to_vec1::<f64>()?;
    Ok(ActiveUnits {
        count: variances.iter().filter(|&&v| v > threshold).count(),
        variances,
    })
}

/// Per-layer diagnostics over a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostics {
    /// `−ELBO`, `recon`, `kl1`, `kl2` per example (one draw each).
    pub loss: LossValues,
    /// Active units of `z1`.
    pub active1: ActiveUnits,
    /// Active units of `z2` (at `z1 = μ1(x)`, see the module doc).
    pub active2: ActiveUnits,
}

impl Hvae {
    /// The posterior means used for active units: `μ1(x)` `[N, Z1]` and
    /// `μ2(μ1(x))` `[N, Z2]` for `xs` `[N, D]`, in batches of `batch_size`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `batch_size = 0` or no rows;
    /// [`Error::BadShape`].
    pub fn posterior_means(&self, xs: &Tensor, batch_size: usize) -> Result<(Tensor, Tensor)> {
        let n = self.check_input(xs)?;
        let (mut m1, mut m2) = (Vec::new(), Vec::new());
        for (start, len) in nonempty_batch_ranges(n, batch_size, Error::invalid)? {
            let mu1 = self.posterior_z1(&xs.narrow(0, start, len)?)?.mean().detach();
            m2.push(self.posterior_z2(&mu1)?.mean().detach());
            m1.push(mu1);
        }
        Ok((Tensor::cat(&m1, 0)?, Tensor::cat(&m2, 0)?))
    }

    /// Active units of both layers over `xs` `[N, D]` (`N ≥ 2`; use ≥ 1,000)
    /// with Burda et al.'s threshold 0.01.
    ///
    /// # Errors
    /// As [`Hvae::posterior_means`] and [`active_units`].
    pub fn active_units(&self, xs: &Tensor, batch_size: usize) -> Result<(ActiveUnits, ActiveUnits)> {
        let (m1, m2) = self.posterior_means(xs, batch_size)?;
        Ok((
            active_units(&m1, ACTIVE_UNIT_THRESHOLD)?,
            active_units(&m2, ACTIVE_UNIT_THRESHOLD)?,
        ))
    }

    /// Negative ELBO, per-layer KL and active units over `xs` `[N, D]`.
    ///
    /// # Errors
    /// As [`Hvae::mean_loss`] and [`Hvae::active_units`].
    pub fn diagnostics(&self, xs: &Tensor, batch_size: usize, rng: &mut impl Rng) -> Result<Diagnostics> {
        let loss = self.mean_loss(xs, batch_size, rng)?;
        let (active1, active2) = self.active_units(xs, batch_size)?;
        Ok(Diagnostics { loss, active1, active2 })
    }

    /// Importance log weights `log p(x, z1, z2) − log q(z1, z2|x)` for the
    /// draws given by `eps1` `[K, batch, Z1]` and `eps2` `[K, batch, Z2]`:
    /// `[K, batch]`, nats. A pure function of parameters, data and noise.
    ///
    /// # Errors
    /// [`Error::BadShape`] for shapes that do not fit.
    pub fn log_importance_weights(&self, xs: &Tensor, eps1: &Tensor, eps2: &Tensor) -> Result<Tensor> {
        let draw = self.ancestral_draw(xs, eps1, eps2)?;
        let log_lik = self.log_likelihood(xs, &draw.z1)?;
        let kl1 = draw.kl1_units()?.sum(D::Minus1)?;
        let z2_dim = self.config().latent2 as f64;
        let log_p_z2 = draw.z2.sqr()?.sum(D::Minus1)?.affine(-0.5, -z2_dim * HALF_LN_2PI)?;
        let log_q_z2 = draw.q2.log_prob(&draw.z2)?;
        Ok((((log_lik - kl1)? + log_p_z2)? - log_q_z2)?)
    }

    /// The importance-sampling estimate of `log p(x)` per row of `xs`
    /// `[batch, D]` with `k` draws from `q(z1|x) q(z2|z1)` (noise from
    /// `rng`): `[batch]`, nats. The draws run in chunks of at most
    /// [`deepgen_numerics::CHUNK_ELEMENTS`] decoder outputs.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `k = 0`; [`Error::BadShape`].
    pub fn importance_log_likelihood(&self, xs: &Tensor, k: usize, rng: &mut impl Rng) -> Result<Tensor> {
        let batch = self.check_input(xs)?;
        if k == 0 {
            return Err(Error::invalid_display(
                "k",
                0,
                "at least one importance sample is needed",
            ));
        }
        chunked_log_mean_exp(k, batch * self.config().input_dim, |n| {
            let (eps1, eps2) = self.draw_noise(n, batch, xs, rng)?;
            Ok(self.log_importance_weights(xs, &eps1, &eps2)?.detach())
        })
    }

    /// The mean of [`Hvae::importance_log_likelihood`] over all rows of `xs`
    /// `[n, D]`, in batches of `batch_size`: nats per example.
    ///
    /// # Errors
    /// As [`Hvae::importance_log_likelihood`]; `batch_size = 0` or no rows.
    pub fn mean_log_likelihood(&self, xs: &Tensor, k: usize, batch_size: usize, rng: &mut impl Rng) -> Result<f64> {
        let n = self.check_input(xs)?;
        let mut total = 0f64;
        for (start, len) in nonempty_batch_ranges(n, batch_size, Error::invalid)? {
            let ll = self.importance_log_likelihood(&xs.narrow(0, start, len)?, k, rng)?;
            total += scalar(&ll.sum_all()?)?;
        }
        Ok(total / n as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    /// Three units over four examples: means (0, 1, 0, 1) vary with
    /// variance 1/3, (5, 5, 5, 5) are constant, and (0, 0.1, 0, 0.1) have
    /// variance 1/300 < 0.01.
    #[test]
    fn active_units_by_hand() -> Result<()> {
        let means = Tensor::new(
            &[[0f32, 5.0, 0.0], [1.0, 5.0, 0.1], [0.0, 5.0, 0.0], [1.0, 5.0, 0.1]],
            &Device::Cpu,
        )?;
        let a = active_units(&means, ACTIVE_UNIT_THRESHOLD)?;
        assert_eq!(a.count, 1);
        assert!((a.variances[0] - 1.0 / 3.0).abs() < 1e-7);
        assert!(a.variances[1].abs() < 1e-12);
        assert!((a.variances[2] - 1.0 / 300.0).abs() < 1e-7);
        assert!(active_units(&means.narrow(0, 0, 1)?, 0.01).is_err());
        Ok(())
    }
}
