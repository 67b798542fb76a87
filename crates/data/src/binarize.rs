//! Binarisation of grey-level images for Bernoulli likelihoods.
//!
//! Three variants appear in the VAE literature:
//!
//! - **static, thresholded**: `x ↦ 1[x > t]` with `t = 0.5`, done once
//!   ([`binarize`]);
//! - **static, stochastic**: `x ↦ b ~ Bernoulli(x)` drawn once from a seeded
//!   generator and kept fixed (Salakhutdinov & Murray 2008;
//!   [`binarize_stochastic`]);
//! - **dynamic**: a fresh `Bernoulli(x)` draw every time an image is used
//!   (Burda et al. 2016), done per batch by [`crate::Batcher`] with
//!   [`binarize_stochastic`] and a generator derived from the epoch's seed.
//!
//! A Bernoulli draw is `1[u < p]` with `u ~ U[0, 1)` drawn on the host from the
//! seeded generator, so `P(1) = p` exactly and `p = 0` never gives 1.

use crate::Result;
use candle::Tensor;
use deepgen_core::rng::rand_uniform;
use rand::Rng;

/// Thresholds images: `1` where `x > threshold`, else `0`, in `xs`'s dtype and
/// shape. The usual threshold is 0.5.
///
/// # Errors
///
/// A Candle error if the comparison or the cast fails (e.g. an integer dtype
/// that cannot hold the threshold).
pub fn binarize(xs: &Tensor, threshold: f64) -> Result<Tensor> {
    Ok(xs.gt(threshold)?.to_dtype(xs.dtype())?)
}

/// One Bernoulli draw per pixel with probability equal to the pixel value:
/// `b = 1[u < x]`, `u ~ U[0, 1)` from `rng`. Same shape, dtype and device as
/// `xs`; values of `x` below 0 act as 0 and above 1 as 1.
///
/// # Errors
///
/// A Candle error if `xs` is not a float tensor or the noise cannot be copied
/// to its device.
pub fn binarize_stochastic(xs: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
    let u = rand_uniform(rng, xs.shape(), 0.0, 1.0, xs.device())?.to_dtype(xs.dtype())?;
    Ok(u.lt(xs)?.to_dtype(xs.dtype())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;
    use deepgen_core::rng::rng_from_seed;

    #[test]
    fn threshold_at_half() {
        let xs = Tensor::new(&[0.0f32, 0.49, 0.5, 0.51, 1.0], &Device::Cpu).unwrap();
        let b = binarize(&xs, 0.5).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(b, vec![0.0, 0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn stochastic_frequencies_match_probabilities() {
        // Each column has probability p; over n rows the frequency of ones has
        // standard error sqrt(p(1-p)/n); allow 5 of them.
        let n = 20_000;
        let ps = [0.0f32, 0.1, 0.5, 0.9, 1.0];
        let xs = Tensor::new(&ps, &Device::Cpu)
            .unwrap()
            .broadcast_as((n, ps.len()))
            .unwrap()
            .contiguous()
            .unwrap();
        let b = binarize_stochastic(&xs, &mut rng_from_seed(0)).unwrap();
        let freq = b.mean(0).unwrap().to_vec1::<f32>().unwrap();
        for (&p, &f) in ps.iter().zip(&freq) {
            let se = (p as f64 * (1.0 - p as f64) / n as f64).sqrt();
            assert!((f as f64 - p as f64).abs() <= 5.0 * se + 1e-12, "p {p}: {f}");
        }
        // Binary values only.
        let all = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(all.iter().all(|&v| v == 0.0 || v == 1.0));
    }

    #[test]
    fn stochastic_is_seeded() {
        let xs = Tensor::full(0.5f32, (8, 8), &Device::Cpu).unwrap();
        let draw = |seed| {
            binarize_stochastic(&xs, &mut rng_from_seed(seed))
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }
}
