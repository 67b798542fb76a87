//! The training objective: draw `t` uniformly and `ε ~ N(0, I)`, noise
//! `x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε` (q(x_t | x₀), the marginal of every
//! `q_σ`), and regress the network's output on its target:
//!
//! ```text
//! L = E_{t, x₀, ε} γ_t ‖output(x_t, t) − target‖²/D
//! ```
//!
//! (the mean over the D coordinates, as PyTorch's `mse_loss`).

use crate::{Error, Result};
use candle::Tensor;

/// `√ᾱ x₀ + √(1 − ᾱ) ε` with one `ᾱ` per example (`alpha_bar [n]`).
///
/// # Errors
/// Shape errors.
pub fn add_noise(x0: &Tensor, eps: &Tensor, alpha_bar: &Tensor) -> Result<Tensor> {
    let a = per_example(alpha_bar, x0)?;
    Ok((x0.broadcast_mul(&a.sqrt()?)? + eps.broadcast_mul(&(1.0 - &a)?.sqrt()?)?)?)
}

/// `values [n]` shaped `[n, 1, …]` to broadcast against `like [n, …]`.
///
/// # Errors
/// A length other than `like`'s first dimension.
pub fn per_example(values: &Tensor, like: &Tensor) -> Result<Tensor> {
    let n = like.dim(0)?;
    if values.dims() != [n] {
        return Err(Error::shape("per-example values", values.dims(), format!("[{n}]")));
    }
    let mut shape = vec![1; like.rank()];
    shape[0] = n;
    Ok(values.reshape(shape)?.to_dtype(like.dtype())?)
}

/// `mean_i γ_i ‖output_i − target_i‖²/D` for rows of a batch.
///
/// # Errors
/// Shapes that differ.
pub fn weighted_mse(output: &Tensor, target: &Tensor, weights: &Tensor) -> Result<Tensor> {
    if output.dims() != target.dims() {
        return Err(Error::shape(
            "output",
            output.dims(),
            format!("the target's {:?}", target.dims()),
        ));
    }
    let n = output.dim(0)?;
    let per_row = (output - target)?.sqr()?.reshape((n, ()))?.mean(1)?;
    Ok((per_row * weights.to_dtype(output.dtype())?)?.mean_all()?)
}
