//! deepgen-score: score-based generative modelling (seed 003 question 4;
//! SPEC §6).
//!
//! - [`ScoreNet`]: an MLP score `s_θ(x)` or a noise-conditional `s_θ(x, σ)`,
//!   with Jacobian-vector products carried forward ([`network`]).
//! - [`loss`]: explicit (exact-trace), sliced and variance-reduced sliced,
//!   denoising and multi-level denoising score matching; the Fisher
//!   divergence to a known score.
//! - [`sampler`]: Langevin dynamics and annealed Langevin dynamics on any
//!   [`ScoreField`] — a trained [`ScoreModel`] or the exact score of a
//!   [`GaussianMixture`] ([`mixture`]).
//! - [`ScoreModel`] from a [`ScoreConfig`] is a
//!   [`deepgen_core::TrainableModel`].
//!
//! # The math
//!
//! The score of a density is `∇ₓ log q(x)`; it needs no normaliser. A
//! network fitted to it by the Fisher divergence
//! `l_F = E_q ½‖s − ∇log q‖²` — which needs the unknown true score — can be
//! fitted as well by objectives that differ from `l_F` by a constant:
//!
//! ```text
//! l_F     = l_ESM + E_q ½‖∇log q‖²                    (integration by parts; q s → 0 at infinity)
//! l_ESM   = E_q [½‖s‖² + Tr ∇ₓs]
//! l_SSM   = E_q E_v [vᵀ(∇ₓs)v + ½(vᵀs)²]              (E vvᵀ = I:  E_v l_SSM = l_ESM)
//! l_F,σ   = l_DSM + E_{q_σ} ½‖∇log q_σ‖² − d/(2σ²)     (q_σ = q ∗ N(0, σ²I))
//! l_DSM   = E ½‖s(x + σε) + ε/σ‖²
//! ```
//!
//! Sampling follows the score: Langevin dynamics
//! `x ← x + (α/2) s(x) + √α z` tends to q as α → 0 and the number of steps
//! grows, but mixes between separated modes only through low-density
//! regions where the score is poorly known, and so loses the modes'
//! weights. Annealed Langevin (NCSN) runs it at noise levels
//! `σ₁ > … > σ_L`, with `α_i = ε σ_i²/σ_L²` and T steps per level, where
//! large σ connects the modes and small σ sharpens them.
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod generative;
pub mod loss;
pub mod mixture;
pub mod model;
pub mod network;
pub mod noise;
pub mod sampler;
pub mod train;

pub use config::{ChainStart, SamplerConfig, SamplerKind, ScoreConfig, ScoreLoss};
pub use error::{Error, Result};
pub use loss::Projection;
pub use mixture::GaussianMixture;
pub use model::ScoreModel;
pub use network::ScoreNet;
pub use noise::NoiseLevels;
pub use sampler::{AnnealedLangevin, Langevin, ScoreField};
