//! Numerically stable building blocks for deepgen's generative models.
//!
//! This crate knows nothing about models; it provides the math they share:
//!
//! - [`logsumexp()`] (and [`logsumexp_keepdim`], [`logsumexp_dims`],
//!   [`logsumexp_all`], [`logsumexp_weighted`]) on Candle tensors, and
//!   [`logsumexp_f64`], [`logsumexp_f32`], [`logsumexp_weighted_f64`],
//!   [`logsumexp_signed_f64`] on slices; [`log_mean_exp`], the log of a
//!   Monte Carlo mean (importance-sampled `log p(x)`, IWAE), with
//!   [`items_per_chunk`] to bound the memory of its samples;
//! - stable companions in [`stable`]: [`log_softmax`], [`softmax`],
//!   [`softplus`] (= [`log1p_exp`]), [`log_sigmoid`], [`log1m_exp`] and
//!   [`bce_with_logits`]; [`bce_with_logits_rows`] ([`bce`]), the Bernoulli
//!   log-likelihood per row as one fused pass, what every Bernoulli decoder
//!   is scored with;
//! - distributions on tensors in [`distributions`]: [`DiagGaussian`],
//!   [`Bernoulli`], [`Laplace`], with reparameterized samples whose noise is
//!   an argument, log-densities, entropies and closed-form KL divergences;
//! - [`line_between`], the straight line between two codes of a latent
//!   interpolation;
//! - discrete divergences in [`divergence`]: [`kl_divergence`] and the
//!   f-divergences of [`FDivergence`] by their generators;
//! - sample distances in [`sample_metrics`], the evaluator of every model on
//!   feature rows: [`GaussianStats`] and the [`frechet_distance`],
//!   [`mmd2_unbiased`] with the [`median_bandwidth`] heuristic, and
//!   [`knn_precision_recall`] (improved precision and recall).
//!
//! # The math
//!
//! **logsumexp** (seed 000, question 1). For any finite `a`,
//! `log Σ_i e^{x_i} = a + log Σ_i e^{x_i − a}`. With `a = max_i x_i` every
//! exponent is `≤ 0` and the largest term is `e^0 = 1`, so the sum lies in
//! `[1, n]`: no overflow, no `log 0`, and the result is exact up to rounding.
//! The seed misses one case (SPEC §10): when all `x_i = −∞` there is no finite
//! max; the answer is `−∞`, returned without NaN in the value or the
//! gradient. Candle's `Tensor::log_sum_exp` returns NaN there (SPEC §11),
//! which is why this crate has its own.
//!
//! **Stable forms.** `softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^{−|x|})`;
//! `log σ(x) = −softplus(−x)`; `log(1 − e^x)` switches between
//! `log(−expm1(x))` and `log1p(−e^x)` at `x = −ln 2` (Mächler 2012);
//! binary cross-entropy with logits is `softplus(l) − l·t`, finite for every
//! finite logit (Candle-nn's version gives NaN for large ones, issue 2561).
//!
//! **Gaussians** (seed 002). For `q = N(μ, diag σ²)` with `log σ²` stored,
//! `z = μ + σ ⊙ ε` with `ε ~ N(0, I)` passed in by the caller, and
//! `KL(q ‖ N(0, I)) = −½ Σ (1 + log σ² − μ² − σ²)`.
//!
//! **Divergences** (seed 001, seed 003 question 3).
//! `KL(P‖Q) = Σ P log(P/Q)` with `0 log 0 = 0` and `+∞` where `P > 0 = Q`;
//! `D_f(P‖Q) = Σ Q f(P/Q)` for convex `f` with `f(1) = 0`. Seed 003 shows a
//! GAN discriminator trained with margin loss `l` reaches
//! `R_l = −½ I_f(P_d‖P_g)` with `f(t) = −inf_α [l(α) t + l(−α)]`; the
//! generators for the 0-1, square and logistic losses are affine
//! transformations of total variation, triangular discrimination and
//! Jensen–Shannon (see [`divergence`]).
//!
//! # Design
//!
//! On CPU the tensor logsumexp is a fused Candle `CustomOp1`: one pass over
//! memory, `f32` summed in `f64`, threads for large inputs; its backward pass
//! is written with tensor ops (so it can be differentiated again). On other
//! devices the same math runs as tensor ops. Random noise is always an
//! argument: this crate never draws random numbers (Candle's CPU generator
//! cannot be seeded, SPEC §11).
#![deny(missing_docs)]

pub mod bce;
pub mod distributions;
pub mod divergence;
pub mod error;
mod fast_exp;
pub mod interpolate;
pub mod logsumexp;
pub mod sample_metrics;
pub mod stable;
#[cfg(test)]
mod testing;

pub use bce::bce_with_logits_rows;
pub use distributions::{Bernoulli, DiagGaussian, Laplace};
pub use divergence::{FDivergence, entropy, f_divergence, kl_divergence};
pub use error::{Error, Result};
pub use interpolate::line_between;
pub use logsumexp::{
    CHUNK_ELEMENTS, chunked_log_mean_exp, items_per_chunk, log_mean_exp, logsumexp, logsumexp_all, logsumexp_dims,
    logsumexp_f32, logsumexp_f64, logsumexp_keepdim, logsumexp_signed_f64, logsumexp_weighted, logsumexp_weighted_f64,
};
pub use sample_metrics::{
    GaussianStats, PrecisionRecall, frechet_distance, knn_precision_recall, median_bandwidth, mmd2_unbiased,
};
pub use stable::{
    bce_with_logits, bce_with_logits_elementwise, bce_with_logits_sum, expm1, log_sigmoid, log_softmax, log1m_exp,
    log1p, log1p_exp, sigmoid, softmax, softplus,
};
