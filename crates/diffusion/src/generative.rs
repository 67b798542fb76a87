//! The diffusion model's side of deepgen-core's [`Generative`]: `x_T = ε`,
//! then the stored sampler's steps, for the pictures, `deepgen sample` and
//! the evaluators.

use crate::model::DiffusionModel;
use candle::Tensor;
use deepgen_core::rng::derived_rng;
use deepgen_core::{Generative, Result};

/// Stream of seed 0 that the stored sampler's noise (DDPM, DDIM η > 0) comes from.
const SAMPLER_STREAM: u64 = 1;

impl Generative for DiffusionModel {
    /// The sampler starts at a point of the data space.
    fn noise_dim(&self) -> usize {
        self.config().data_dim
    }
    /// `x_T = eps`, then the stored sampler's steps (their noise, if any,
    /// from seed 0).
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>> {
        let mut rng = derived_rng(0, SAMPLER_STREAM);
        Ok(Some(self.generate_with(
            &self.config().sampler,
            eps,
            &mut rng,
            |_, _, _| Ok(()),
        )?))
    }
    fn generates_points(&self) -> bool {
        !self.config().is_images()
    }
}
