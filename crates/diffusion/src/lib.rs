//! deepgen-diffusion: denoising diffusion models (seed 003 question 5;
//! SPEC §7).
//!
//! - [`schedule`]: linear, scaled-linear and cosine β's, zero-terminal-SNR
//!   rescaling, `ᾱ_t` in f64; [`spacing`]: leading, trailing, linspace and
//!   quadratic inference timesteps.
//! - [`scheduler`]: one API (`set_timesteps`, `step(output, t, x_t, noise)
//!   → (x_prev, x̂₀)`) for [`Ddpm`] (fixed small or large variance),
//!   [`Ddim`] (η; and [`ddim::invert`]) and [`DpmSolverPlusPlus`] (2M);
//!   ε-, x₀- and v-prediction, clipping and dynamic thresholding
//!   ([`prediction`]).
//! - [`non_markovian`]: the forward process `q_σ` of seed 003 and its
//!   per-step KL weight.
//! - [`TimeMlp`] for 2-D points and the PyTorch twin's [`UNet`] for 28×28
//!   images; [`DiffusionModel`] from a [`DiffusionConfig`] is a
//!   [`deepgen_core::TrainableModel`] whose trainer keeps a weight average.
//! - [`GaussianDenoiser`]: the exact noise predictor of Gaussian data, the
//!   reference the samplers are tested against.
//!
//! # The math
//!
//! ```text
//! forward   q(x_t | x₀) = N(√ᾱ_t x₀, (1 − ᾱ_t) I),  ᾱ_t = Π_{s≤t} (1 − β_s)
//! loss      L = Σ_t γ_t E‖ε_θ(√ᾱ_t x₀ + √(1 − ᾱ_t) ε, t) − ε‖²     (γ_t = 1: DDPM's simple loss)
//! x₀        f_θ(x_t) = (x_t − √(1 − ᾱ_t) ε_θ)/√ᾱ_t
//! reverse   x_{t−1} = √ᾱ_{t−1} f_θ + √(1 − ᾱ_{t−1} − σ_t²) ε_θ + σ_t z
//!           σ_t = η √((1 − ᾱ_{t−1})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t−1})     (η = 0: DDIM, η = 1: DDPM)
//! ```
//!
//! The reverse step is the generative side of `q_σ`, a family of forward
//! processes with the same marginals `q(x_t | x₀)` for every σ — so one
//! network trained on the loss above serves every σ, and any subsequence
//! of the timesteps.
#![deny(missing_docs)]

pub mod config;
pub mod ddim;
pub mod ddpm;
pub mod dpm_solver;
pub mod embedding;
pub mod error;
pub mod gaussian;
pub mod generative;
pub mod loss;
pub mod mlp;
pub mod model;
pub mod non_markovian;
pub mod prediction;
pub mod sampling;
pub mod schedule;
pub mod scheduler;
pub mod spacing;
pub mod train;
pub mod unet;

pub use config::{DiffusionConfig, IMAGE_DIM, LossWeighting, Network};
pub use ddim::Ddim;
pub use ddpm::{Ddpm, DdpmVariance};
pub use dpm_solver::DpmSolverPlusPlus;
pub use error::{Error, Result};
pub use gaussian::GaussianDenoiser;
pub use mlp::TimeMlp;
pub use model::DiffusionModel;
pub use non_markovian::NonMarkovianProcess;
pub use prediction::{PredictionType, SampleProcessing};
pub use sampling::{Denoiser, sample};
pub use schedule::{BetaSchedule, NoiseSchedule, ScheduleConfig};
pub use scheduler::{SamplerConfig, SamplerKind, Scheduler, SchedulerState, StepOutput};
pub use spacing::TimestepSpacing;
pub use unet::UNet;
