//! What the VAE and the autoencoders share about their inputs: the
//! `[batch, D]` shape check, and the ends of an interpolation between two
//! inputs (seed 001's latent interpolation; the line between their codes is
//! deepgen-numerics' [`deepgen_numerics::line_between`]).

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
        return Err(Error::invalid_display(
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
