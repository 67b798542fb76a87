//! Seeded noise tensors for the unit tests: this crate never draws random
//! numbers itself, so its tests make their noise from a `rand` generator.

use crate::error::{Error, Result};
use candle::{Device, Tensor};
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal, Uniform};

/// `[n, d]` standard-normal `f32` values.
pub(crate) fn gaussian_noise(rng: &mut StdRng, n: usize, d: usize, dev: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..n * d).map(|_| StandardNormal.sample(rng)).collect();
    Ok(Tensor::from_vec(values, (n, d), dev)?)
}

/// `[n, d]` `f32` values uniform in `[−1, 1)`.
pub(crate) fn uniform_noise(rng: &mut StdRng, n: usize, d: usize, dev: &Device) -> Result<Tensor> {
    let dist = Uniform::new(-1.0f32, 1.0).map_err(|e| Error::InvalidArgument {
        op: "test",
        reason: e.to_string(),
    })?;
    let values: Vec<f32> = (0..n * d).map(|_| dist.sample(rng)).collect();
    Ok(Tensor::from_vec(values, (n, d), dev)?)
}
