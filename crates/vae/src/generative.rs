//! The VAE's and the autoencoders' side of deepgen-core's [`Generative`] and
//! [`LikelihoodModel`]: what the pictures, `deepgen sample` and the
//! evaluators ask of a trained model.

use crate::ae::Autoencoder;
use crate::vae::Vae;
use candle::Tensor;
use deepgen_core::{Generative, LikelihoodModel, Metrics, Result, StdRng};

impl Generative for Vae {
    fn noise_dim(&self) -> usize {
        self.config().latent_dim
    }
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(Vae::generate(self, eps)?))
    }
    fn reconstruct(&self, xs: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(Vae::reconstruct(self, xs)?))
    }
    fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Option<Tensor>> {
        Ok(Some(Vae::interpolate(self, x_a, x_b, n_steps)?))
    }
    /// Kingma and Welling's figure 4, for a 2-D latent.
    fn manifold(&self, side: usize) -> Result<Option<Tensor>> {
        Ok((self.config().latent_dim == 2)
            .then(|| Vae::manifold(self, side))
            .transpose()?)
    }
}

impl LikelihoodModel for Vae {
    const NAME: &'static str = "VAE";

    fn importance_log_likelihood(&self, xs: &Tensor, k: usize, rng: &mut StdRng) -> Result<Tensor> {
        Ok(Vae::importance_log_likelihood(self, xs, k, rng)?)
    }

    /// Parts `recon` and `KL`.
    fn elbo(&self, images: &Tensor, batch_size: usize, rng: &mut StdRng) -> Result<(f64, Metrics)> {
        let l = self.mean_loss(images, batch_size, rng)?;
        Ok((-l.negative_elbo, Metrics::new().with("recon", l.recon).with("KL", l.kl)))
    }
}

/// An autoencoder has no prior: it reconstructs and interpolates only.
impl Generative for Autoencoder {
    fn noise_dim(&self) -> usize {
        self.config().latent_dim
    }
    fn generate(&self, _eps: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
    fn reconstruct(&self, xs: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(Autoencoder::reconstruct(self, xs)?))
    }
    fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Option<Tensor>> {
        Ok(Some(Autoencoder::interpolate(self, x_a, x_b, n_steps)?))
    }
}
