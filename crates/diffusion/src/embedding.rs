//! The sinusoidal timestep embedding of DDPM and the PyTorch twin:
//! `e(t) = [sin(t ω_0), …, sin(t ω_{h−1}), cos(t ω_0), …, cos(t ω_{h−1})]`,
//! `ω_i = 10000^{−i/h}`, `h = dim/2`.

use crate::{Error, Result};
use candle::{DType, Tensor};

/// `e(t) [n, dim]` for timesteps `t [n]` (any float dtype; the result is
/// `t`'s dtype).
///
/// # Errors
/// An odd or zero `dim`; `t` not one-dimensional.
pub fn sinusoidal_embedding(t: &Tensor, dim: usize) -> Result<Tensor> {
    if dim == 0 || dim % 2 == 1 {
        return Err(Error::invalid("embedding dim", dim, "must be even and positive"));
    }
    if t.rank() != 1 {
        return Err(Error::shape("timesteps", t.dims(), "[n]"));
    }
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
    let angles = t.to_dtype(DType::F32)?.unsqueeze(1)?.broadcast_mul(&freqs)?;
    Ok(Tensor::cat(&[angles.sin()?, angles.cos()?], 1)?.to_dtype(t.dtype())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn embedding_against_its_formula() {
        let t = Tensor::new(&[0f32, 7.0, 999.0], &Device::Cpu).unwrap();
        let e = sinusoidal_embedding(&t, 8).unwrap().to_vec2::<f32>().unwrap();
        for (row, &tv) in e.iter().zip(&[0f64, 7.0, 999.0]) {
            for i in 0..4 {
                let w = 10000f64.powf(-(i as f64) / 4.0);
                assert!((row[i] as f64 - (tv * w).sin()).abs() < 2e-4, "sin t={tv} i={i}");
                assert!((row[4 + i] as f64 - (tv * w).cos()).abs() < 2e-4, "cos t={tv} i={i}");
            }
        }
        assert!(sinusoidal_embedding(&t, 7).is_err());
    }
}
