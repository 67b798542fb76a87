//! What a trained generative model offers beyond training, as every family
//! implements it in its own crate: [`Generative`] (samples `x = G(ε)` from
//! standard-normal noise ε, and for a model with an encoder its
//! reconstructions, latent interpolations and 2-D manifold) and
//! [`LikelihoodModel`] (a latent-variable model's importance-sampled
//! `log p(x)` and ELBO). A program's pictures, `deepgen sample` and the one
//! evaluator of generated samples are written once against them.

use crate::{Metrics, Result, StdRng, TrainableModel};
use candle::Tensor;

/// A model that draws samples from standard-normal noise; the optional
/// abilities (an encoder, a 2-D latent) answer `None` by default.
pub trait Generative {
    /// Standard-normal values one sample takes: the latent dims (all layers'
    /// for a hierarchical model), or the data dims for a model that starts
    /// its sampler at the noise (diffusion, Langevin).
    fn noise_dim(&self) -> usize;

    /// Samples in data space from noise `eps` `[n, noise_dim]`: the same
    /// `eps`, the same samples (`None`: the model has no prior to sample).
    ///
    /// # Errors
    /// The model's errors.
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>>;

    /// Whether its samples are 2-D points (scatter plots) rather than images
    /// (grids).
    fn generates_points(&self) -> bool {
        false
    }

    /// Reconstructions of `xs` in data space (`None`: no encoder).
    ///
    /// # Errors
    /// The model's errors.
    fn reconstruct(&self, _xs: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// Decoded points on the latent line from `x_a` to `x_b`, `n_steps` of
    /// them per pair (`None`: no encoder).
    ///
    /// # Errors
    /// The model's errors.
    fn interpolate(&self, _x_a: &Tensor, _x_b: &Tensor, _n_steps: usize) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// The decoded `side × side` grid of a 2-D latent (`None`: the latent is
    /// not 2-D).
    ///
    /// # Errors
    /// The model's errors.
    fn manifold(&self, _side: usize) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

/// A latent-variable model whose likelihood can be estimated:
/// `log p(x) ≈ log (1/K) Σₖ p(x, zₖ) / q(zₖ|x)`, `zₖ ~ q(z|x)`, and the
/// ELBO `E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))` it trains on.
pub trait LikelihoodModel: TrainableModel + Generative {
    /// Its name in a sentence (`VAE`, `hierarchical VAE`).
    const NAME: &'static str;

    /// The importance-sampled estimate of `log p(x)` with `k` samples, per
    /// row of `xs`.
    ///
    /// # Errors
    /// The model's errors.
    fn importance_log_likelihood(&self, xs: &Tensor, k: usize, rng: &mut StdRng) -> Result<Tensor>;

    /// The mean one-sample ELBO of `images`, walked in batches of
    /// `batch_size`, and its parts (`recon`, `KL`, …; each a mean of nats
    /// per image).
    ///
    /// # Errors
    /// The model's errors.
    fn elbo(&self, images: &Tensor, batch_size: usize, rng: &mut StdRng) -> Result<(f64, Metrics)>;
}
