//! deepgen-hvae: the two-stochastic-layer hierarchical VAE (seed 003,
//! question 2; SPEC §4).
//!
//! - [`Hvae`] ([`hvae`]) from an [`HvaeConfig`]: Gaussian MLPs for
//!   `q(z1|x)`, `q(z2|z1)` and `p(z1|z2)` ([`GaussianMlp`]), a Bernoulli MLP
//!   for `p(x|z1)` ([`BernoulliMlp`]); by default the IWAE paper's
//!   784-200-200-100 / 100-100-50 architecture.
//! - [`loss`]: [`Hvae::elbo_terms`] (the reparameterized single-draw ELBO
//!   pieces), [`Hvae::loss`] and [`hvae_loss`] (β-weighted, with free bits),
//!   the KL warm-up [`KlSchedule`] (linear or cyclical) and [`FreeBits`].
//! - [`diagnostics`]: per-layer KL, active units ([`active_units`],
//!   [`Hvae::active_units`]) and the importance-sampled `log p(x)`
//!   ([`Hvae::importance_log_likelihood`]).
//! - [`train`]: [`HvaeTrainer`], the model's side of deepgen-core's training
//!   loop, and [`load_hvae`].
//!
//! **Design.** Losses and estimators are pure functions of parameters, data
//! and noise, the noise drawn from a seeded `rand` generator (Candle's CPU
//! generator cannot be seeded). It shares deepgen-numerics' pieces with
//! deepgen-vae — the fused, stable Bernoulli log-likelihood
//! ([`deepgen_numerics::bce_with_logits_rows`]) and the log-mean-exp
//! ([`deepgen_numerics::log_mean_exp`]) — and does not depend on deepgen-vae:
//! its `LatentModel` estimators do not apply as they stand (their proposal
//! is one diagonal Gaussian, while `q(z1, z2|x)` draws `z2` after `z1`).
//!
//! # The math
//!
//! **Model.** `p(x, z1, z2) = p(x|z1) p(z1|z2) p(z2)` with `p(z2) = N(0, I)`,
//! `p(z1|z2) = N(μ(z2), diag σ²(z2))`, `p(x|z1) = Π_j Bern(x_j; σ(l_j(z1)))`;
//! inference `q(z1, z2|x) = q(z1|x) q(z2|z1)`, both diagonal Gaussians.
//!
//! **Objective** (seed 003). `log p(x) ≥ ELBO`, with
//!
//! ```text
//! ELBO = E_{q(z1|x) q(z2|z1)}[log p(x|z1) + log p(z1|z2) + log p(z2) − log q(z1|x) − log q(z2|z1)]
//!      = E[log p(x|z1)] − E[log q(z1|x) − log p(z1|z2)] − E_{q(z1|x)}[KL(q(z2|z1) ‖ N(0, I))]
//!                          └─ kl1: sampled ─┘            └─ kl2: closed form given z1 ─┘
//! ```
//!
//! estimated with `z1 = μ1(x) + σ1(x) ⊙ ε1`, `z2 = μ2(z1) + σ2(z1) ⊙ ε2`.
//! **Seed 003's solution is wrong** here: it writes the middle term as
//! `E_{q(z2|z1)}[KL(q(z1|x) ‖ p(z1|z2))]`, but `z2` is drawn *after* `z1`,
//! so there is no `z2` to condition on before `z1` is integrated out; the
//! term is `E_{q(z1|x) q(z2|z1)}[log q(z1|x) − log p(z1|z2)]`, estimated
//! by sampling (SPEC §10). The top KL's closed form is exact given `z1`.
//!
//! **Against posterior collapse** (seed 003's question on an unused `z2`):
//! training minimises `recon + β(t) (KL₁ + KL₂)`, with `β` warmed up from 0
//! to 1 ([`KlSchedule`]) and each layer's KL optionally replaced by the
//! free-bits form `Σ_g max(λ, KL̄_g)` ([`FreeBits`], Kingma et al. 2016).
//!
//! **Diagnostics.** A unit is active when `Cov_x(E_q[z_u|x]) > 0.01` (Burda
//! et al. 2016); `log p(x) ≈ logsumexp_k log w_k − log K` with
//! `w = p(x, z1, z2)/q(z1, z2|x)`, whose expectation increases with `K` from
//! the ELBO to `log p(x)`.
#![deny(missing_docs)]

pub mod config;
pub mod diagnostics;
pub mod error;
pub mod generative;
pub mod loss;
pub mod model;
pub mod train;

pub use config::{Activation, HvaeConfig};
pub use diagnostics::{ACTIVE_UNIT_THRESHOLD, ActiveUnits, Diagnostics, active_units};
pub use error::{Error, Result};
pub use loss::{ElboTerms, FreeBits, HvaeLoss, KlSchedule, LossValues, hvae_loss, kl_standard_normal_units};
pub use model::{BernoulliMlp, GaussianMlp, Hvae, Mlp, bernoulli_mlp, gaussian_mlp, hvae, mlp};
pub use train::{HvaeTrainer, load_hvae};
