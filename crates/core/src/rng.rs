//! Seeded randomness.
//!
//! Candle's CPU generator cannot be seeded (candle issues 2651, 3297), so every
//! random draw in deepgen comes from a seeded [`StdRng`] on the host and is
//! copied to the device. The same seed therefore gives the same numbers on
//! every device and every run.

use candle::{Device, Shape, Tensor};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_distr::{Distribution, StandardNormal};

pub use rand::rngs::StdRng;

/// A generator seeded from `seed`.
pub fn rng_from_seed(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A generator for one part of a run (an epoch, an evaluation), derived from
/// the run's seed so that a resumed run draws exactly what an uninterrupted
/// run would have drawn.
///
/// The stream index is mixed with SplitMix64's finaliser so that neighbouring
/// streams are unrelated.
pub fn derived_rng(seed: u64, stream: u64) -> StdRng {
    let mut z = seed ^ stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// Standard-normal `f32` noise of the given shape on `device`.
pub fn randn<S: Into<Shape>>(rng: &mut impl Rng, shape: S, device: &Device) -> candle::Result<Tensor> {
    let shape = shape.into();
    let data: Vec<f32> = (0..shape.elem_count()).map(|_| StandardNormal.sample(rng)).collect();
    Tensor::from_vec(data, shape, device)
}

/// Uniform `f32` noise on `[low, high)` of the given shape on `device`.
pub fn rand_uniform<S: Into<Shape>>(
    rng: &mut impl Rng,
    shape: S,
    low: f32,
    high: f32,
    device: &Device,
) -> candle::Result<Tensor> {
    let shape = shape.into();
    let data: Vec<f32> = (0..shape.elem_count())
        .map(|_| low + (high - low) * rng.random::<f32>())
        .collect();
    Tensor::from_vec(data, shape, device)
}

/// A uniformly random permutation of `0..n` (Fisher–Yates).
pub fn permutation(rng: &mut impl Rng, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_noise() -> candle::Result<()> {
        let a = randn(&mut rng_from_seed(7), (3, 4), &Device::Cpu)?.to_vec2::<f32>()?;
        let b = randn(&mut rng_from_seed(7), (3, 4), &Device::Cpu)?.to_vec2::<f32>()?;
        let c = randn(&mut rng_from_seed(8), (3, 4), &Device::Cpu)?.to_vec2::<f32>()?;
        assert_eq!(a, b);
        assert_ne!(a, c);
        Ok(())
    }

    #[test]
    fn derived_streams_differ_and_repeat() {
        let draw = |s| derived_rng(42, s).random::<u64>();
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
        assert_ne!(derived_rng(1, 0).random::<u64>(), derived_rng(2, 0).random::<u64>());
    }

    #[test]
    fn randn_moments() -> candle::Result<()> {
        // Mean 0 and variance 1 within 5 standard errors for 40,000 draws.
        let n = 40_000;
        let xs = randn(&mut rng_from_seed(1), n, &Device::Cpu)?.to_vec1::<f32>()?;
        let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 5.0 / (n as f64).sqrt(), "mean {mean}");
        assert!((var - 1.0).abs() < 5.0 * (2.0 / n as f64).sqrt(), "var {var}");
        Ok(())
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = permutation(&mut rng_from_seed(3), 100);
        p.sort_unstable();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn uniform_in_range() -> candle::Result<()> {
        let xs = rand_uniform(&mut rng_from_seed(5), 1000, -2.0, 3.0, &Device::Cpu)?.to_vec1::<f32>()?;
        assert!(xs.iter().all(|&x| (-2.0..3.0).contains(&x)));
        Ok(())
    }
}
