//! The GAN's side of deepgen-core's [`Generative`]: its samples `G(z)`,
//! images or 2-D points, for the pictures, `deepgen sample` and the
//! evaluators.

use crate::model::Gan;
use candle::Tensor;
use deepgen_core::{Generative, Result};

impl Generative for Gan {
    fn noise_dim(&self) -> usize {
        self.config().latent_dim
    }
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(Gan::generate(self, eps)?))
    }
    fn generates_points(&self) -> bool {
        !self.config().is_images()
    }
}
