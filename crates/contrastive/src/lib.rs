//! deepgen-contrastive: SimCLR (seed 004 question 4; SPEC §8) —
//! representations learned by telling two augmented views of an image
//! apart from the views of the other images.
//!
//! - [`augment`]: seeded augmentations of batched images, each image its
//!   own draw ([`Augmentations`]: resized crop, affine warp with bilinear
//!   sampling, Gaussian noise, blur, cutout, brightness/contrast), run
//!   where the tensors are;
//! - [`loss`]: NT-Xent over the 2N views ([`nt_xent`]) and lightly's
//!   memory-bank form ([`nt_xent_with_bank`]);
//! - [`SimClr`] from a [`SimClrConfig`]: encoder `f` from a deepgen-cnn
//!   spec, projection head `g`, a [`deepgen_core::TrainableModel`] whose
//!   batch is a pair of views;
//! - [`probe`] and [`knn`]: the frozen representation `h = f(x)` judged by
//!   a linear probe (multinomial logistic regression solved by L-BFGS,
//!   [`LinearProbe`]) and by weighted k-NN.
//!
//! # The math
//!
//! ```text
//! views      x̃_i = t(x), x̃_j = t'(x),  t, t' ~ T        (two draws per image)
//! embedding  h = f(x̃),  z = g(h)
//! loss       ℓ_{i,j} = −log [exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ)]
//!            L = (1/2N) Σ_k [ℓ_{2k−1,2k} + ℓ_{2k,2k−1}],  sim(u, v) = uᵀv/(‖u‖‖v‖)
//! gradient   ∂ℓ_{i,j}/∂s_ik = (p_ik − 1[k = j])/τ,  p_i· = softmax_{k≠i}(s_ik/τ)
//! ```
//!
//! After training `g` is dropped: downstream tasks use `h`.
#![deny(missing_docs)]

pub mod augment;
pub mod config;
pub mod error;
pub mod knn;
pub mod loss;
pub mod model;
pub mod probe;
pub mod train;

pub use augment::{Augmentation, Augmentations, as_images, warp};
pub use config::{DEFAULT_ENCODER, SimClrConfig};
pub use error::{Error, Result};
pub use knn::{KnnConfig, knn_accuracy, knn_predict};
pub use loss::{cosine_similarity_matrix, nt_xent, nt_xent_from_similarity, nt_xent_with_bank};
pub use model::SimClr;
pub use probe::{Labelled, LinearProbe, ProbeConfig, ProbeSolver, linear_probe};
