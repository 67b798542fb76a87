//! What the VAE and the autoencoders share about their inputs: the
//! `[batch, D]` shape check, and the straight latent line of an
//! interpolation between two inputs (seed 001's latent interpolation).

use crate::{Error, Result};
use candle::Tensor;

/// The batch size of `xs` `[batch, input_dim]`; [`Error::BadShape`] naming
/// `what` for another shape.
pub(crate) fn batch_size(xs: &Tensor, input_dim: usize, what: &'static str) -> Result<usize> {
    match *xs.dims() {
        [batch, d] if d == input_dim => Ok(batch),
        _ => Err(Error::BadShape {
            what,
            got: xs.dims().to_vec(),
            expected: format!("[batch, {input_dim}]"),
        }),
    }
}

/// The ends `x_a` and `x_b` (`[1, D]` each) of an interpolation in
/// `n_steps` steps as one `[2, D]` batch, so that one encoder pass maps both.
///
/// # Errors
/// [`Error::InvalidConfig`] for `n_steps < 2`; [`Error::BadShape`] (naming
/// `what` for a wrong `D`) when the ends are not two `[1, D]` rows.
pub(crate) fn interpolation_ends(
    x_a: &Tensor,
    x_b: &Tensor,
    n_steps: usize,
    input_dim: usize,
    what: &'static str,
) -> Result<Tensor> {
    if n_steps < 2 {
        return Err(Error::invalid(
            "n_steps",
            n_steps,
            "an interpolation needs at least 2 steps",
        ));
    }
    let pair = Tensor::cat(&[x_a, x_b], 0)?;
    if batch_size(&pair, input_dim, what)? != 2 {
        return Err(Error::BadShape {
            what: "interpolation ends",
            got: pair.dims().to_vec(),
            expected: format!("two [1, {input_dim}] inputs"),
        });
    }
    Ok(pair)
}

/// `(1 − t) a + t b` for `t = 0 … 1` in `n_steps ≥ 2` steps, between the two
/// rows `a` and `b` of `ends` `[2, Z]` → `[n_steps, Z]`.
pub(crate) fn line_between(ends: &Tensor, n_steps: usize) -> Result<Tensor> {
    let ts: Vec<f32> = (0..n_steps).map(|i| i as f32 / (n_steps - 1) as f32).collect();
    let ts = Tensor::from_vec(ts, (n_steps, 1), ends.device())?.to_dtype(ends.dtype())?;
    let (a, b) = (ends.narrow(0, 0, 1)?, ends.narrow(0, 1, 1)?);
    Ok((a.broadcast_mul(&(1.0 - &ts)?)? + b.broadcast_mul(&ts)?)?)
}
