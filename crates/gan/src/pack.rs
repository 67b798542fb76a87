//! PacGAN packing (Lin et al. 2018): the discriminator judges `K` samples
//! at once, all real or all generated, so that a generator that covers too
//! few modes shows in the joint distribution of a pack even when each of
//! its samples looks real. Packing concatenates `K` consecutive samples of a
//! shuffled batch: rows `[n, d] → [n/K, K·d]`, images
//! `[n, c, h, w] → [n/K, K·c, h, w]` (channels stacked).

use crate::{Error, Result};
use candle::Tensor;

/// The largest multiple of `pack` not above `n`: how many samples of a batch
/// of `n` go into whole packs.
pub fn packable(n: usize, pack: usize) -> usize {
    if pack == 0 { 0 } else { n - n % pack }
}

/// `xs` with every `pack` consecutive samples concatenated along the
/// feature (rows) or channel (images) dimension.
///
/// # Errors
/// `pack = 0`, a batch that is not a multiple of `pack`, a rank other than 2
/// or 4.
pub fn pack(xs: &Tensor, pack: usize) -> Result<Tensor> {
    let dims = xs.dims();
    let n = dims.first().copied().unwrap_or(0);
    if pack == 0 || n % pack != 0 || n == 0 {
        return Err(Error::invalid_display(
            "pack",
            pack,
            format!("a batch of {n} samples must be a positive multiple of the pack size"),
        ));
    }
    if pack == 1 {
        return Ok(xs.clone());
    }
    let packed = match *dims {
        [_, d] => xs.reshape((n / pack, pack * d))?,
        [_, c, h, w] => xs.reshape((n / pack, pack * c, h, w))?,
        _ => {
            return Err(Error::BadShape {
                what: "pack",
                got: dims.to_vec(),
                expected: "[n, d] or [n, c, h, w]".into(),
            });
        }
    };
    Ok(packed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn packs_consecutive_samples() -> Result<()> {
        let xs = Tensor::arange(0f32, 12., &Device::Cpu)?.reshape((6, 2))?;
        let packed = pack(&xs, 3)?;
        assert_eq!(
            packed.to_vec2::<f32>()?,
            vec![vec![0., 1., 2., 3., 4., 5.], vec![6., 7., 8., 9., 10., 11.]]
        );
        let images = Tensor::arange(0f32, 16., &Device::Cpu)?.reshape((4, 1, 2, 2))?;
        let packed = pack(&images, 2)?;
        assert_eq!(packed.dims(), &[2, 2, 2, 2]);
        // The second channel of the first pack is the second image.
        assert_eq!(
            packed.get(0)?.get(1)?.flatten_all()?.to_vec1::<f32>()?,
            vec![4., 5., 6., 7.]
        );
        assert_eq!(packable(100, 4), 100);
        assert_eq!(packable(30, 4), 28);
        Ok(())
    }

    #[test]
    fn bad_packs_are_errors() {
        let xs = Tensor::zeros((6, 2), candle::DType::F32, &Device::Cpu).unwrap();
        assert!(pack(&xs, 0).is_err());
        assert!(pack(&xs, 4).unwrap_err().to_string().contains("multiple"));
        let v = Tensor::zeros(6, candle::DType::F32, &Device::Cpu).unwrap();
        assert!(pack(&v, 2).is_err());
    }
}
