//! deepgen-gan: generative adversarial networks (seed 003 question 3, seed
//! 004 question 3; SPEC §5).
//!
//! - [`Gan`] from a [`GanConfig`]: the MLP pair of PacGAN's 2-D experiments
//!   ([`mlp`]) or the DCGAN pair of `anchors/torch_dcgan_mnist.py`
//!   ([`dcgan`], batch norm with running statistics); [`Gan`] is a
//!   [`deepgen_core::TrainableModel`] with two optimizer groups.
//! - [`loss`]: minimax, non-saturating, least-squares, hinge and
//!   Wasserstein losses ([`GanLoss`]); [`penalty`]: WGAN-GP and R1 with
//!   exact second derivatives; [`pack`]: PacGAN packing, read by the MLP
//!   discriminator jointly (PacGAN's) or per sample ([`PackInput`]).
//! - [`divergence`]: the classification view — the divergence each margin
//!   loss's optimal discriminator measures.
//!
//! # The math
//!
//! Labels `y = +1` (real, `P_d`) and `−1` (generated, `P_g`). For a margin
//! loss `l`, the discriminator's risk
//!
//! ```text
//! R_l(D) = ½ ∫ [l(D(x)) p_d(x) + l(−D(x)) p_g(x)] dx
//! ```
//!
//! is minimised pointwise, and its minimum is an f-divergence:
//!
//! ```text
//! min_D R_l(D) = −½ I_f(P_d‖P_g),   I_f = ∫ p_g f(p_d/p_g),   f(t) = −inf_α [l(α) t + l(−α)]
//! ```
//!
//! logistic `l(α) = log(1 + e^{−α})`: `D* = log(p_d/p_g)`, `R = log 2 − JS`
//! (the minimax game's value `−log 4 + 2 JS`); square `(1 − α)²`:
//! `D* = (t−1)/(t+1)`, `R = 1 − ½Δ` (triangular discrimination); 0-1:
//! `D* = sign(p_d − p_g)`, `R = ½(1 − TV)`. The generator then minimises
//! the divergence its discriminator estimates.
#![deny(missing_docs)]

pub mod config;
pub mod dcgan;
pub mod divergence;
pub mod error;
pub mod generative;
pub mod loss;
pub mod mlp;
pub mod model;
pub mod pack;
pub mod penalty;
pub mod train;

pub use config::{GanConfig, IMAGE_DIM, MlpInit, Network, PackInput};
pub use divergence::{
    MarginLoss, f_divergence_of, margin_risk, minimax_value, optimal_margins, optimal_minimax_discriminator,
    optimal_risk,
};
pub use error::{Error, Result};
pub use loss::GanLoss;
pub use model::Gan;
pub use penalty::{InputGradient, gradient_penalty, r1_penalty};
