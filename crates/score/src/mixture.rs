//! [`GaussianMixture`]: a mixture of axis-aligned Gaussians in `d`
//! dimensions whose score is known exactly, before and after Gaussian
//! noising, so that samplers can run on a true score and trained networks
//! can be scored by their Fisher divergence to it.
//!
//! `q(x) = Σ_k w_k N(x; μ_k, diag s_k²)`, `∇log q(x) = Σ_k r_k(x) (μ_k − x)/s_k²`
//! with responsibilities `r_k = w_k N_k(x) / q(x)` (a softmax of the
//! components' log joints, stable far from every mode);
//! `q_σ = q ∗ N(0, σ²I)` is the same mixture with `s_k² + σ²`.

use crate::{Error, Result};
use candle::{DType, Device, Tensor};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// A Gaussian mixture with diagonal covariances.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixture {
    weights: Vec<f64>,
    means: Vec<Vec<f64>>,
    stds: Vec<Vec<f64>>,
}

impl GaussianMixture {
    /// Components `k` with weight `weights[k]` (normalised here), mean
    /// `means[k]` and per-axis standard deviations `stds[k]`.
    ///
    /// # Errors
    /// No component; lengths that disagree; a weight that is negative or
    /// not finite, or weights that sum to 0; a standard deviation that is
    /// not positive and finite.
    pub fn new(weights: Vec<f64>, means: Vec<Vec<f64>>, stds: Vec<Vec<f64>>) -> Result<Self> {
        let k = weights.len();
        if k == 0 || means.len() != k || stds.len() != k {
            return Err(Error::invalid(
                "mixture",
                (k, means.len(), stds.len()),
                "as many means and standard deviations as weights, at least one",
            ));
        }
        let d = means[0].len();
        if d == 0 || means.iter().chain(&stds).any(|v| v.len() != d) {
            return Err(Error::invalid(
                "mixture",
                d,
                "every mean and std of the same dimension d ≥ 1",
            ));
        }
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(Error::invalid("weights", &weights, "finite and non-negative"));
        }
        let total: f64 = weights.iter().sum();
        if !(total > 0.0) {
            return Err(Error::invalid("weights", &weights, "a positive sum"));
        }
        if stds.iter().flatten().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::invalid("stds", &stds, "positive and finite"));
        }
        Ok(Self {
            weights: weights.iter().map(|w| w / total).collect(),
            means,
            stds,
        })
    }

    /// Song & Ermon's (2019) experiment: `0.8 N((5, 5), I) + 0.2 N((−5, −5), I)`.
    pub fn song_ermon() -> Self {
        Self::two_modes(2)
    }

    /// The same two modes in `d` dimensions: `0.8 N(μ, I) + 0.2 N(−μ, I)`
    /// with `μ = (5√2/√d)·(1, …, 1)`, so the modes stay `10√2` apart (as in
    /// 2-D) whatever `d`.
    ///
    /// # Panics
    /// Never: `d = 0` is treated as 1.
    pub fn two_modes(d: usize) -> Self {
        let d = d.max(1);
        let c = 5.0 * (2.0 / d as f64).sqrt();
        Self {
            weights: vec![0.8, 0.2],
            means: vec![vec![c; d], vec![-c; d]],
            stds: vec![vec![1.0; d]; 2],
        }
    }

    /// Dimension `d`.
    pub fn dim(&self) -> usize {
        self.means[0].len()
    }

    /// The normalised weights `w_k`.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The means `μ_k`.
    pub fn means(&self) -> &[Vec<f64>] {
        &self.means
    }

    /// `q_σ = q ∗ N(0, σ²I)`: every variance grows by `σ²` (`σ = 0`: `q`).
    ///
    /// # Errors
    /// `sigma` negative or not finite.
    pub fn noised(&self, sigma: f64) -> Result<Self> {
        if !(sigma.is_finite() && sigma >= 0.0) {
            return Err(Error::invalid("sigma", sigma, "finite and non-negative"));
        }
        let var = sigma * sigma;
        let stds = self
            .stds
            .iter()
            .map(|s| s.iter().map(|s| (s * s + var).sqrt()).collect())
            .collect();
        Ok(Self { stds, ..self.clone() })
    }

    /// `ln w_k + ln N(x; μ_k, diag s_k²)` for every component.
    fn log_joints(&self, x: &[f64]) -> Vec<f64> {
        let half_ln_tau = 0.5 * std::f64::consts::TAU.ln();
        self.weights
            .iter()
            .zip(&self.means)
            .zip(&self.stds)
            .map(|((w, mu), s)| {
                let quad: f64 = x.iter().zip(mu).zip(s).map(|((x, m), s)| ((x - m) / s).powi(2)).sum();
                let log_det: f64 = s.iter().map(|s| s.ln() + half_ln_tau).sum();
                w.ln() - 0.5 * quad - log_det
            })
            .collect()
    }

    /// Responsibilities `r_k(x)` and `ln q(x)`, with the largest log joint
    /// subtracted before exponentiating.
    fn responsibilities(&self, x: &[f64]) -> (Vec<f64>, f64) {
        let l = self.log_joints(x);
        let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = l.iter().map(|v| (v - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        (e.iter().map(|v| v / sum).collect(), max + sum.ln())
    }

    /// `ln q(x)` at one point.
    pub fn log_density_at(&self, x: &[f64]) -> f64 {
        self.responsibilities(x).1
    }

    /// `∇log q(x)` at one point.
    pub fn score_at(&self, x: &[f64]) -> Vec<f64> {
        let (r, _) = self.responsibilities(x);
        let mut s = vec![0.0; x.len()];
        for ((r, mu), sd) in r.iter().zip(&self.means).zip(&self.stds) {
            for (j, out) in s.iter_mut().enumerate() {
                *out += r * (mu[j] - x[j]) / (sd[j] * sd[j]);
            }
        }
        s
    }

    /// `∇log q(x)` for every row of `points [n, d]`, in their dtype (computed
    /// in f64).
    ///
    /// # Errors
    /// `points` not `[n, d]`; Candle errors.
    pub fn score(&self, points: &Tensor) -> Result<Tensor> {
        let rows = self.rows(points)?;
        let out: Vec<f64> = rows.iter().flat_map(|x| self.score_at(x)).collect();
        Ok(Tensor::from_vec(out, points.dims(), points.device())?.to_dtype(points.dtype())?)
    }

    /// `ln q(x)` for every row of `points [n, d]` → `[n]`.
    ///
    /// # Errors
    /// As [`Self::score`].
    pub fn log_density(&self, points: &Tensor) -> Result<Tensor> {
        let rows = self.rows(points)?;
        let out: Vec<f64> = rows.iter().map(|x| self.log_density_at(x)).collect();
        Ok(Tensor::from_vec(out, rows.len(), points.device())?.to_dtype(points.dtype())?)
    }

    /// The index of the component whose mean is nearest (Euclidean) to each
    /// row of `points [n, d]`.
    ///
    /// # Errors
    /// As [`Self::score`].
    pub fn nearest_component(&self, points: &Tensor) -> Result<Vec<usize>> {
        let rows = self.rows(points)?;
        Ok(rows
            .iter()
            .map(|x| {
                let dist = |mu: &Vec<f64>| x.iter().zip(mu).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
                (0..self.means.len())
                    .min_by(|&a, &b| dist(&self.means[a]).total_cmp(&dist(&self.means[b])))
                    .unwrap_or(0)
            })
            .collect())
    }

    /// The fraction of `points` nearest to each component's mean — what a
    /// sampler recovers of the weights.
    ///
    /// # Errors
    /// As [`Self::score`].
    pub fn component_fractions(&self, points: &Tensor) -> Result<Vec<f64>> {
        let nearest = self.nearest_component(points)?;
        let mut counts = vec![0.0; self.means.len()];
        for k in &nearest {
            counts[*k] += 1.0;
        }
        let n = nearest.len().max(1) as f64;
        Ok(counts.into_iter().map(|c| c / n).collect())
    }

    /// `n` samples `[n, d]` (f32) on `device`: `k ~ Categorical(w)`, then
    /// `x = μ_k + s_k ⊙ ε`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn sample(&self, n: usize, rng: &mut impl Rng, device: &Device) -> Result<Tensor> {
        let d = self.dim();
        let mut out = Vec::with_capacity(n * d);
        for _ in 0..n {
            let u: f64 = rng.random();
            let mut acc = 0.0;
            let k = self
                .weights
                .iter()
                .position(|w| {
                    acc += w;
                    u < acc
                })
                .unwrap_or(self.weights.len() - 1);
            for j in 0..d {
                let e: f64 = StandardNormal.sample(rng);
                out.push((self.means[k][j] + self.stds[k][j] * e) as f32);
            }
        }
        Ok(Tensor::from_vec(out, (n, d), device)?)
    }

    fn rows(&self, points: &Tensor) -> Result<Vec<Vec<f64>>> {
        match points.dims() {
            &[_, d] if d == self.dim() => Ok(points.to_dtype(DType::F64)?.to_vec2::<f64>()?),
            dims => Err(Error::shape("points", dims, format!("[n, {}]", self.dim()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_core::rng::rng_from_seed;
    use proptest::prelude::*;

    fn mixture(d: usize, seed: u64) -> GaussianMixture {
        let mut rng = rng_from_seed(seed);
        let k = 3;
        let means = (0..k)
            .map(|_| (0..d).map(|_| rng.random_range(-3.0..3.0)).collect())
            .collect();
        let stds = (0..k)
            .map(|_| (0..d).map(|_| rng.random_range(0.3..2.0)).collect())
            .collect();
        GaussianMixture::new(vec![0.5, 0.3, 0.2], means, stds).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// The score is the gradient of the log density (central
        /// differences), before and after noising.
        #[test]
        fn prop_score_is_the_gradient_of_the_log_density(
            seed in 0u64..1000, d in 1usize..5, sigma in 0.0f64..2.0,
            x in prop::collection::vec(-6.0f64..6.0, 4),
        ) {
            let q = mixture(d, seed).noised(sigma).unwrap();
            let x = &x[..d];
            let s = q.score_at(x);
            let h = 1e-5;
            for j in 0..d {
                let (mut up, mut down) = (x.to_vec(), x.to_vec());
                up[j] += h;
                down[j] -= h;
                let fd = (q.log_density_at(&up) - q.log_density_at(&down)) / (2.0 * h);
                prop_assert!((fd - s[j]).abs() < 1e-5 * (1.0 + fd.abs()), "{fd} vs {}", s[j]);
            }
        }
    }

    /// Noising a Gaussian by σ adds σ² to its variance: one component's
    /// noised score is `(μ − x)/(s² + σ²)` per axis.
    #[test]
    fn noising_one_gaussian_adds_the_variance() {
        let q = GaussianMixture::new(vec![1.0], vec![vec![1.0, -2.0]], vec![vec![0.5, 2.0]]).unwrap();
        let x = [0.3, 0.7];
        let s = q.noised(1.5).unwrap().score_at(&x);
        assert!((s[0] - (1.0 - 0.3) / (0.25 + 2.25)).abs() < 1e-12);
        assert!((s[1] - (-2.0 - 0.7) / (4.0 + 2.25)).abs() < 1e-12);
    }

    #[test]
    fn samples_follow_the_weights_and_far_points_keep_a_finite_score() {
        let q = GaussianMixture::song_ermon();
        let x = q.sample(20_000, &mut rng_from_seed(3), &Device::Cpu).unwrap();
        let f = q.component_fractions(&x).unwrap();
        // Binomial standard error √(0.16/20000) ≈ 0.0028.
        assert!((f[0] - 0.8).abs() < 0.012, "{f:?}");
        let far = q.score_at(&[400.0, -300.0]);
        assert!(far.iter().all(|v| v.is_finite()), "{far:?}");
    }

    #[test]
    fn bad_mixtures_are_refused() {
        assert!(GaussianMixture::new(vec![], vec![], vec![]).is_err());
        assert!(GaussianMixture::new(vec![1.0], vec![vec![0.0]], vec![vec![0.0]]).is_err());
        assert!(GaussianMixture::new(vec![-1.0], vec![vec![0.0]], vec![vec![1.0]]).is_err());
        assert!(GaussianMixture::new(vec![1.0], vec![vec![0.0, 1.0]], vec![vec![1.0]]).is_err());
        assert!(GaussianMixture::song_ermon().noised(-1.0).is_err());
        let q = GaussianMixture::song_ermon();
        assert!(
            q.score(&Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap())
                .is_err()
        );
    }
}
