//! The score model's side of deepgen-core's [`Generative`]: its configured
//! Langevin sampler started at the noise, for the pictures, `deepgen sample`
//! and the evaluators.

use crate::model::ScoreModel;
use candle::{DType, Tensor};
use deepgen_core::rng::derived_rng;
use deepgen_core::{Generative, Result};

impl Generative for ScoreModel {
    /// The sampler starts at a point of the data space.
    fn noise_dim(&self) -> usize {
        self.config().data_dim
    }
    /// The configured sampler from the start `eps` gives; its Langevin noise
    /// is drawn from a generator seeded by the bits of `eps`, so that a draw
    /// is a function of `eps`, as for the other families.
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>> {
        let bits = eps.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let seed = bits.iter().fold(0u64, |h, v| h.rotate_left(5) ^ u64::from(v.to_bits()));
        Ok(Some(self.draw(
            &self.config().sampler,
            eps,
            &mut derived_rng(seed, 0),
        )?))
    }
    fn generates_points(&self) -> bool {
        true
    }
}
