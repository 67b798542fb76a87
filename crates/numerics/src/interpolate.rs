//! Straight lines between two points, the latent interpolations every
//! autoencoder draws (seed 001): encode two inputs, walk the line between
//! their codes, decode each step.

use crate::error::{Error, Result};
use candle::Tensor;

/// `(1 − t) a + t b` for `t = 0 … 1` in `n_steps ≥ 2` evenly spaced steps,
/// between the two rows `a` and `b` of `ends` `[2, Z]` → `[n_steps, Z]`; the
/// first row is `a` and the last `b`.
///
/// ```
/// use candle::{Device, Tensor};
/// let ends = Tensor::new(&[[0f32, 10.0], [2.0, 20.0]], &Device::Cpu)?;
/// let line = deepgen_numerics::line_between(&ends, 3)?.to_vec2::<f32>()?;
/// assert_eq!(line, [[0.0, 10.0], [1.0, 15.0], [2.0, 20.0]]);
/// # Ok::<(), deepgen_numerics::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] for `n_steps < 2` (no line) or `ends` not
/// of shape `[2, Z]`.
pub fn line_between(ends: &Tensor, n_steps: usize) -> Result<Tensor> {
    let invalid = |reason: String| Error::InvalidArgument {
        op: "line_between",
        reason,
    };
    if n_steps < 2 {
        return Err(invalid(format!("{n_steps} steps: a line needs at least 2")));
    }
    if !matches!(ends.dims(), [2, _]) {
        return Err(invalid(format!("ends of shape {:?}, expected [2, Z]", ends.dims())));
    }
    let ts: Vec<f32> = (0..n_steps).map(|i| i as f32 / (n_steps - 1) as f32).collect();
    let ts = Tensor::from_vec(ts, (n_steps, 1), ends.device())?.to_dtype(ends.dtype())?;
    let (a, b) = (ends.narrow(0, 0, 1)?, ends.narrow(0, 1, 1)?);
    Ok((a.broadcast_mul(&(1.0 - &ts)?)? + b.broadcast_mul(&ts)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn ends_are_exact_and_steps_even() -> Result<()> {
        let ends = Tensor::new(&[[1f64, -4.0, 0.5], [3.0, 4.0, 0.5]], &Device::Cpu)?;
        let line = line_between(&ends, 5)?.to_vec2::<f64>()?;
        assert_eq!(line.first(), Some(&vec![1.0, -4.0, 0.5]));
        assert_eq!(line.last(), Some(&vec![3.0, 4.0, 0.5]));
        assert_eq!(line[2], vec![2.0, 0.0, 0.5]);
        Ok(())
    }

    #[test]
    fn too_few_steps_and_other_shapes_are_errors() -> Result<()> {
        let ends = Tensor::zeros((2, 3), candle::DType::F32, &Device::Cpu)?;
        for n in [0, 1] {
            assert!(matches!(line_between(&ends, n), Err(Error::InvalidArgument { .. })));
        }
        let three = Tensor::zeros((3, 3), candle::DType::F32, &Device::Cpu)?;
        assert!(matches!(line_between(&three, 4), Err(Error::InvalidArgument { .. })));
        Ok(())
    }
}
