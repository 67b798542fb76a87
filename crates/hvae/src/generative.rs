//! The hierarchical VAE's side of deepgen-core's [`Generative`] and
//! [`LikelihoodModel`]: what the pictures, `deepgen sample` and the
//! evaluators ask of a trained model.

use crate::model::Hvae;
use candle::Tensor;
use deepgen_core::{Generative, LikelihoodModel, Metrics, Result, StdRng};

impl Generative for Hvae {
    /// Both layers' latents: `[eps2 | eps1]`.
    fn noise_dim(&self) -> usize {
        self.config().latent1 + self.config().latent2
    }
    /// The noise is `[eps2 | eps1]`: `z2` first, as the prior draws it.
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>> {
        let config = self.config();
        let eps2 = eps.narrow(1, 0, config.latent2)?.contiguous()?;
        let eps1 = eps.narrow(1, config.latent2, config.latent1)?.contiguous()?;
        Ok(Some(Hvae::generate(self, &eps1, &eps2)?))
    }
    fn reconstruct(&self, xs: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(Hvae::reconstruct(self, xs)?))
    }
    fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Option<Tensor>> {
        Ok(Some(Hvae::interpolate(self, x_a, x_b, n_steps)?))
    }
}

impl LikelihoodModel for Hvae {
    const NAME: &'static str = "hierarchical VAE";

    fn importance_log_likelihood(&self, xs: &Tensor, k: usize, rng: &mut StdRng) -> Result<Tensor> {
        Ok(Hvae::importance_log_likelihood(self, xs, k, rng)?)
    }

    /// Parts `recon`, `KL1` and `KL2`.
    fn elbo(&self, images: &Tensor, batch_size: usize, rng: &mut StdRng) -> Result<(f64, Metrics)> {
        let l = self.mean_loss(images, batch_size, rng)?;
        let parts = Metrics::new()
            .with("recon", l.recon)
            .with("KL1", l.kl1)
            .with("KL2", l.kl2);
        Ok((-l.negative_elbo, parts))
    }
}
