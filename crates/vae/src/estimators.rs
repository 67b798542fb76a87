//! Estimators of `log p_θ(x)` for any latent-variable model (seed 003,
//! steps 1–3) and the importance-weighted bound.
//!
//! With `K` samples the two Monte Carlo estimators of
//! `p(x) = ∫ p(x|z) p(z) dz` are
//!
//! ```text
//! naive (prior samples z_k ~ p(z)):        p̂(x) = (1/K) Σ_k p(x|z_k)
//! importance (z_k ~ q(z|x)):               p̂(x) = (1/K) Σ_k w_k,
//!                                          w_k = p(x|z_k) p(z_k) / q(z_k|x)
//! ```
//!
//! Both are unbiased for `p(x)`; their logarithms are computed as
//! `logsumexp_k(log w_k) − log K` with deepgen-numerics' [`log_mean_exp`], since the
//! weights themselves underflow (`log p(x|z)` of an MNIST digit is about
//! −100 nats). `log p̂` is biased low (Jensen) and the bias shrinks as `K`
//! grows: `E[log p̂_K]` is the IWAE bound `L_K`, with `L_1` the ELBO and
//! `L_K → log p(x)`. The naive estimator's variance is large because prior
//! samples rarely land where `p(x|z)` is large; the importance estimator with
//! `q = p(z|x)` has zero variance, since then every `w_k = p(x)`.
//!
//! Memory: the `K × batch` decoder passes run in chunks of at most
//! [`deepgen_numerics::CHUNK_ELEMENTS`] decoder outputs, and only the `[K, batch]` log weights
//! are kept.

use crate::Result;
use candle::Tensor;
use deepgen_numerics::{DiagGaussian, chunked_log_mean_exp, log_mean_exp};
use rand::Rng;

/// A model with a latent variable: a likelihood `p(x|z)` and a prior `p(z)`.
pub trait LatentModel {
    /// The number of latent dims `Z`.
    fn latent_dim(&self) -> usize;

    /// `log p(x|z)`: `xs` `[batch, D]` with `zs` `[k, batch, Z]` (sample `i`
    /// of row `b` at `zs[i, b]`) → `[k, batch]`, nats.
    ///
    /// # Errors
    /// Shapes that do not fit the model.
    fn log_likelihood(&self, xs: &Tensor, zs: &Tensor) -> Result<Tensor>;

    /// `log p(z)`: `[.., Z]` → `[..]`, nats.
    ///
    /// # Errors
    /// Shapes that do not fit the model.
    fn log_prior(&self, zs: &Tensor) -> Result<Tensor>;

    /// `z = prior sample` from standard-normal noise `[.., Z]`.
    ///
    /// # Errors
    /// Shapes that do not fit the model.
    fn sample_prior(&self, eps: &Tensor) -> Result<Tensor>;
}

/// Importance log weights `log w = log p(x|z) + log p(z) − log q(z|x)` at
/// `z = μ_q + σ_q ε`: `xs` `[batch, D]`, `proposal` `[batch, Z]`, `eps`
/// `[k, batch, Z]` → `[k, batch]`.
///
/// # Errors
/// Shapes that do not fit.
pub fn log_importance_weights<M: LatentModel + ?Sized>(
    model: &M,
    xs: &Tensor,
    proposal: &DiagGaussian,
    eps: &Tensor,
) -> Result<Tensor> {
    let zs = proposal.rsample(eps)?;
    let log_joint = (model.log_likelihood(xs, &zs)? + model.log_prior(&zs)?)?;
    Ok((log_joint - proposal.log_prob(&zs)?)?)
}

/// [`log_mean_exp`] of the `[k, batch]` log weights that `log_w` computes
/// from `k` standard-normal draws `[n, batch, Z]` for `xs` `[batch, D]`,
/// drawn and scored in chunks of `n` samples: the common part of both
/// estimators, which differ only in how a draw becomes a log weight.
fn sampled_log_mean_exp<M: LatentModel + ?Sized>(
    model: &M,
    xs: &Tensor,
    k: usize,
    rng: &mut impl Rng,
    mut log_w: impl FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (batch, dim) = xs.dims2()?;
    if k == 0 {
        return Err(crate::Error::invalid_display("k", 0, "at least one sample is needed"));
    }
    chunked_log_mean_exp(k, batch * dim, |n| {
        let eps = deepgen_core::rng::randn(rng, (n, batch, model.latent_dim()), xs.device())?.to_dtype(xs.dtype())?;
        log_w(&eps)
    })
}

/// The importance-sampling estimate of `log p(x)` per row with proposal `q`
/// and `k` samples: `logsumexp_k(log w_k) − log k`, `[batch]`, nats.
///
/// `xs` `[batch, D]`, `proposal` `[batch, Z]`; the noise comes from `rng`.
///
/// # Errors
/// [`crate::Error::InvalidConfig`] for `k = 0`; shapes that do not fit.
pub fn importance_log_likelihood<M: LatentModel + ?Sized>(
    model: &M,
    xs: &Tensor,
    proposal: &DiagGaussian,
    k: usize,
    rng: &mut impl Rng,
) -> Result<Tensor> {
    sampled_log_mean_exp(model, xs, k, rng, |eps| {
        log_importance_weights(model, xs, proposal, eps)
    })
}

/// The naive estimate of `log p(x)` per row from `k` prior samples:
/// `logsumexp_k log p(x|z_k) − log k`, `[batch]`, nats.
///
/// # Errors
/// [`crate::Error::InvalidConfig`] for `k = 0`; shapes that do not fit.
pub fn naive_log_likelihood<M: LatentModel + ?Sized>(
    model: &M,
    xs: &Tensor,
    k: usize,
    rng: &mut impl Rng,
) -> Result<Tensor> {
    sampled_log_mean_exp(model, xs, k, rng, |eps| {
        model.log_likelihood(xs, &model.sample_prior(eps)?)
    })
}

/// The negative IWAE bound `−(1/B) Σ_b log((1/K) Σ_k w_kb)` from log weights
/// `[K, batch]`: a scalar, nats per example.
///
/// # Errors
/// As [`log_mean_exp`].
pub fn iwae_loss_from_log_weights(log_w: &Tensor) -> Result<Tensor> {
    Ok(log_mean_exp(log_w)?.mean_all()?.neg()?)
}
