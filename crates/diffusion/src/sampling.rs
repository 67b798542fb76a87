//! The reverse process as a loop: a [`Denoiser`] (a trained network, or
//! the exact one of Gaussian data) and a [`Scheduler`], from `x_T` to a
//! sample, its noise drawn from a seeded generator.

use crate::Result;
use crate::scheduler::{Scheduler, StepOutput};
use candle::Tensor;
use deepgen_core::rng::randn;
use rand::Rng;

/// Something that answers for the network at `(x_t, t)`.
pub trait Denoiser {
    /// The prediction (ε, x₀ or v, as trained) at `x_t` for one timestep `t`
    /// shared by the batch.
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    fn predict(&self, x_t: &Tensor, t: usize) -> Result<Tensor>;
}

/// Runs `scheduler` from `x_t` (usually `N(0, I)`) through its timesteps;
/// `on_step(i, t, output)` sees every step (trajectories, progress).
///
/// # Errors
/// The denoiser's and scheduler's errors, and `on_step`'s.
pub fn sample(
    denoiser: &impl Denoiser,
    scheduler: &mut dyn Scheduler,
    x_t: &Tensor,
    rng: &mut impl Rng,
    mut on_step: impl FnMut(usize, usize, &StepOutput) -> Result<()>,
) -> Result<Tensor> {
    let timesteps = scheduler.timesteps().to_vec();
    let mut x = x_t.clone();
    for (i, &t) in timesteps.iter().enumerate() {
        let output = denoiser.predict(&x, t)?;
        let noise = if scheduler.needs_noise() {
            Some(randn(rng, x.dims(), x.device())?.to_dtype(x.dtype())?)
        } else {
            None
        };
        let step = scheduler.step(&output, t, &x, noise.as_ref())?;
        on_step(i, t, &step)?;
        x = step.prev_sample;
    }
    Ok(x)
}
