//! Synthetic 2-D data sets with seeded sampling, and Gaussian mixtures with
//! closed-form density and score.
//!
//! - [`GaussianMixture2d`]: `p(x) = Σ_k w_k N(x; μ_k, diag(s_k²))` with
//!   `log p`, the score `∇_x log p` and the noised mixture `p * N(0, σ²I)`
//!   in closed form. The mode-collapse benchmarks of SPEC §5 are mixtures:
//!   [`GaussianMixture2d::ring8`] (8 modes on the unit circle, sd 0.01) and
//!   [`GaussianMixture2d::grid25`] (means `{−4, −2, 0, 2, 4}²`, sd 0.05);
//!   [`GaussianMixture2d::modes`] gives their means for mode-coverage metrics.
//! - [`two_moons`] and [`swiss_roll`], as in scikit-learn's `make_moons` and
//!   the `(x, z)` projection of `make_swiss_roll`, but drawn i.i.d.
//! - [`Synthetic2d`]: one enum over all of them for the command line.
//!
//! All arithmetic is in `f64` on the host; tensors are `[n, 2]` `f32` on the
//! requested device. Every draw comes from the `rng` passed in.

use crate::{Error, Result};
use candle::{DType, Device, Tensor};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use std::f64::consts::{PI, TAU};
use std::str::FromStr;

/// `½ ln(2π)`.
const HALF_LN_TAU: f64 = 0.918_938_533_204_672_8;

/// A mixture of axis-aligned Gaussians in the plane:
/// `p(x) = Σ_k w_k N(x; μ_k, diag(s_k,0², s_k,1²))`.
///
/// ```
/// use deepgen_data::GaussianMixture2d;
///
/// // Two unit Gaussians at ±2 with weights 0.2 / 0.8.
/// let mix = GaussianMixture2d::isotropic(vec![0.2, 0.8], vec![[-2.0, 0.0], [2.0, 0.0]], vec![1.0, 1.0])?;
/// // At a mode's far side the score points back towards it.
/// let s = mix.score_at([4.0, 0.0]);
/// assert!(s[0] < 0.0 && s[1].abs() < 1e-12);
/// // Noising by σ = 1 doubles each component's variance.
/// let noisy = mix.noised(1.0)?;
/// assert!((noisy.stds()[0][0] - 2f64.sqrt()).abs() < 1e-12);
/// # Ok::<(), deepgen_data::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianMixture2d {
    weights: Vec<f64>,
    log_weights: Vec<f64>,
    means: Vec<[f64; 2]>,
    stds: Vec<[f64; 2]>,
}

impl GaussianMixture2d {
    /// A mixture with diagonal covariances `diag(stds[k]²)`. The weights are
    /// normalised to sum to one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the three lists are empty or differ in
    /// length, a weight is negative or not finite, all weights are zero, a
    /// mean is not finite, or a standard deviation is not positive and finite.
    pub fn new(weights: Vec<f64>, means: Vec<[f64; 2]>, stds: Vec<[f64; 2]>) -> Result<Self> {
        let k = weights.len();
        if k == 0 {
            return Err(Error::invalid("weights", "[]", "at least one component"));
        }
        if means.len() != k || stds.len() != k {
            return Err(Error::invalid(
                "means/stds",
                format!("{} means, {} stds", means.len(), stds.len()),
                format!("one per weight ({k})"),
            ));
        }
        if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
            return Err(Error::invalid("weight", w, "finite and non-negative"));
        }
        let total: f64 = weights.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            return Err(Error::invalid("weights", total, "a positive, finite sum"));
        }
        if let Some(m) = means.iter().find(|m| !m.iter().all(|v| v.is_finite())) {
            return Err(Error::invalid("mean", format!("{m:?}"), "finite"));
        }
        if let Some(s) = stds.iter().find(|s| !s.iter().all(|v| v.is_finite() && *v > 0.0)) {
            return Err(Error::invalid("std", format!("{s:?}"), "positive and finite"));
        }
        let weights: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let log_weights = weights.iter().map(|w| w.ln()).collect();
        Ok(GaussianMixture2d {
            weights,
            log_weights,
            means,
            stds,
        })
    }

    /// A mixture with isotropic components `N(μ_k, s_k² I)`.
    ///
    /// # Errors
    ///
    /// As [`Self::new`].
    pub fn isotropic(weights: Vec<f64>, means: Vec<[f64; 2]>, stds: Vec<f64>) -> Result<Self> {
        Self::new(weights, means, stds.into_iter().map(|s| [s, s]).collect())
    }

    /// `n_modes` equally weighted isotropic Gaussians with standard deviation
    /// `std` at `radius · (cos 2πk/n, sin 2πk/n)`, `k = 0, …, n − 1`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for `n_modes == 0`, a radius that is not
    /// finite, or a standard deviation that is not positive and finite.
    pub fn ring(n_modes: usize, radius: f64, std: f64) -> Result<Self> {
        if n_modes == 0 {
            return Err(Error::invalid("n_modes", 0, "at least 1"));
        }
        if !radius.is_finite() {
            return Err(Error::invalid("radius", radius, "finite"));
        }
        check_std(std)?;
        let means = (0..n_modes)
            .map(|k| {
                let angle = TAU * k as f64 / n_modes as f64;
                [radius * angle.cos(), radius * angle.sin()]
            })
            .collect();
        Ok(Self::equal_isotropic(means, std))
    }

    /// `side²` equally weighted isotropic Gaussians with standard deviation
    /// `std` on a square grid centred at the origin: means
    /// `((i − (side−1)/2) · spacing, (j − (side−1)/2) · spacing)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for `side == 0`, a spacing that is not
    /// finite, or a standard deviation that is not positive and finite.
    pub fn grid(side: usize, spacing: f64, std: f64) -> Result<Self> {
        if side == 0 {
            return Err(Error::invalid("side", 0, "at least 1"));
        }
        if !spacing.is_finite() {
            return Err(Error::invalid("spacing", spacing, "finite"));
        }
        check_std(std)?;
        Ok(Self::grid_unchecked(side, spacing, std))
    }

    fn grid_unchecked(side: usize, spacing: f64, std: f64) -> Self {
        let coord = |i: usize| (i as f64 - (side as f64 - 1.0) / 2.0) * spacing;
        let means = (0..side)
            .flat_map(|i| (0..side).map(move |j| [coord(i), coord(j)]))
            .collect();
        Self::equal_isotropic(means, std)
    }

    /// Equal weights and one isotropic standard deviation; the callers have
    /// checked that `means` is non-empty and finite and `std` positive.
    fn equal_isotropic(means: Vec<[f64; 2]>, std: f64) -> Self {
        let k = means.len();
        let w = 1.0 / k as f64;
        GaussianMixture2d {
            weights: vec![w; k],
            log_weights: vec![w.ln(); k],
            means,
            stds: vec![[std, std]; k],
        }
    }

    /// The ring of SPEC §5 (VEEGAN / PacGAN): 8 modes, radius 1, sd 0.01.
    pub fn ring8() -> Self {
        let means = (0..8)
            .map(|k| {
                let angle = TAU * f64::from(k) / 8.0;
                [angle.cos(), angle.sin()]
            })
            .collect();
        Self::equal_isotropic(means, 0.01)
    }

    /// Song & Ermon's (2019) mixture of SPEC §6: weights 0.8 at (5, 5) and
    /// 0.2 at (−5, −5), identity covariances — the case where Langevin
    /// dynamics loses the weights and annealing recovers them.
    pub fn song_ermon() -> Self {
        GaussianMixture2d {
            weights: vec![0.8, 0.2],
            log_weights: vec![0.8f64.ln(), 0.2f64.ln()],
            means: vec![[5.0, 5.0], [-5.0, -5.0]],
            stds: vec![[1.0, 1.0]; 2],
        }
    }

    /// The grid of SPEC §5 (VEEGAN / PacGAN): 25 modes at `{−4, −2, 0, 2, 4}²`,
    /// sd 0.05.
    pub fn grid25() -> Self {
        Self::grid_unchecked(5, 2.0, 0.05)
    }

    /// Number of components.
    pub fn n_components(&self) -> usize {
        self.weights.len()
    }

    /// The normalised weights `w_k`.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The component means `μ_k`.
    pub fn means(&self) -> &[[f64; 2]] {
        &self.means
    }

    /// The modes for mode-coverage metrics: the component means.
    pub fn modes(&self) -> &[[f64; 2]] {
        &self.means
    }

    /// The per-axis standard deviations `s_k`.
    pub fn stds(&self) -> &[[f64; 2]] {
        &self.stds
    }

    /// The mixture's mean `m = Σ_k w_k μ_k`.
    pub fn mean(&self) -> [f64; 2] {
        let mut m = [0.0; 2];
        for (w, mu) in self.weights.iter().zip(&self.means) {
            m[0] += w * mu[0];
            m[1] += w * mu[1];
        }
        m
    }

    /// The mixture's covariance `Σ_k w_k (diag(s_k²) + μ_k μ_kᵀ) − m mᵀ`.
    pub fn covariance(&self) -> [[f64; 2]; 2] {
        let m = self.mean();
        let mut c = [[0.0; 2]; 2];
        for ((w, mu), s) in self.weights.iter().zip(&self.means).zip(&self.stds) {
            for i in 0..2 {
                for j in 0..2 {
                    let var = if i == j { s[i] * s[i] } else { 0.0 };
                    c[i][j] += w * (var + mu[i] * mu[j]);
                }
            }
        }
        for i in 0..2 {
            for j in 0..2 {
                c[i][j] -= m[i] * m[j];
            }
        }
        c
    }

    /// The mixture convolved with `N(0, σ² I)`, i.e. the law of `x + σ ε`:
    /// each component's variance becomes `s_k² + σ²`. Its density and score are
    /// therefore closed-form too (the noisy score of denoising score matching).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] unless `sigma` is finite and non-negative.
    pub fn noised(&self, sigma: f64) -> Result<Self> {
        if !(sigma.is_finite() && sigma >= 0.0) {
            return Err(Error::invalid("sigma", sigma, "finite and non-negative"));
        }
        let var = sigma * sigma;
        let stds = self
            .stds
            .iter()
            .map(|s| [(s[0] * s[0] + var).sqrt(), (s[1] * s[1] + var).sqrt()])
            .collect();
        Ok(GaussianMixture2d { stds, ..self.clone() })
    }

    /// `l_k(x) = ln w_k + ln N(x; μ_k, diag(s_k²))` for every component.
    fn component_log_joint(&self, x: [f64; 2]) -> impl Iterator<Item = f64> + '_ {
        self.log_weights
            .iter()
            .zip(&self.means)
            .zip(&self.stds)
            .map(move |((lw, mu), s)| {
                let z0 = (x[0] - mu[0]) / s[0];
                let z1 = (x[1] - mu[1]) / s[1];
                lw - 0.5 * (z0 * z0 + z1 * z1) - s[0].ln() - s[1].ln() - 2.0 * HALF_LN_TAU
            })
    }

    /// `(l_k(x))_k` and their log-sum-exp `ln p(x)`, with the maximum
    /// subtracted before exponentiating.
    fn log_joint_and_lse(&self, x: [f64; 2]) -> (Vec<f64>, f64) {
        let l: Vec<f64> = self.component_log_joint(x).collect();
        let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if max == f64::NEG_INFINITY {
            return (l, max);
        }
        let sum: f64 = l.iter().map(|v| (v - max).exp()).sum();
        (l, max + sum.ln())
    }

    /// `ln p(x)` in nats, computed as a log-sum-exp over components so it stays
    /// finite far from every mode.
    pub fn log_density_at(&self, x: [f64; 2]) -> f64 {
        self.log_joint_and_lse(x).1
    }

    /// The posterior over components, `r_k(x) = w_k N_k(x) / p(x)`, computed as
    /// `exp(l_k − logsumexp(l))`.
    pub fn responsibilities_at(&self, x: [f64; 2]) -> Vec<f64> {
        let (l, lse) = self.log_joint_and_lse(x);
        l.iter().map(|v| (v - lse).exp()).collect()
    }

    /// The score `∇_x ln p(x) = Σ_k r_k(x) · (μ_k − x) / s_k²` (per axis), with
    /// stable responsibilities from [`Self::responsibilities_at`].
    pub fn score_at(&self, x: [f64; 2]) -> [f64; 2] {
        let r = self.responsibilities_at(x);
        let mut s = [0.0; 2];
        for ((r, mu), sd) in r.iter().zip(&self.means).zip(&self.stds) {
            s[0] += r * (mu[0] - x[0]) / (sd[0] * sd[0]);
            s[1] += r * (mu[1] - x[1]) / (sd[1] * sd[1]);
        }
        s
    }

    /// The index of the mode nearest to `x` (Euclidean) and its distance.
    pub fn nearest_mode(&self, x: [f64; 2]) -> (usize, f64) {
        self.means
            .iter()
            .map(|mu| (x[0] - mu[0]).hypot(x[1] - mu[1]))
            .enumerate()
            .fold(
                (0, f64::INFINITY),
                |best, (k, d)| {
                    if d < best.1 { (k, d) } else { best }
                },
            )
    }

    /// `ln p(x)` for each row of `points` (`[n, 2]`, any float dtype); returns
    /// `[n]` in the dtype of `points` (`f32` for integer input) on its device.
    ///
    /// # Errors
    ///
    /// [`Error::BadShape`] unless `points` is `[n, 2]`; a Candle error if a copy
    /// fails.
    pub fn log_density(&self, points: &Tensor) -> Result<Tensor> {
        let xs = tensor_to_points(points)?;
        let out: Vec<f64> = xs.iter().map(|&x| self.log_density_at(x)).collect();
        let n = out.len();
        let t = Tensor::from_vec(out, n, points.device())?;
        Ok(t.to_dtype(float_dtype(points))?)
    }

    /// The score `∇_x ln p(x)` for each row of `points` (`[n, 2]`); returns
    /// `[n, 2]` in the dtype of `points` (`f32` for integer input) on its
    /// device.
    ///
    /// # Errors
    ///
    /// As [`Self::log_density`].
    pub fn score(&self, points: &Tensor) -> Result<Tensor> {
        let xs = tensor_to_points(points)?;
        let out: Vec<[f64; 2]> = xs.iter().map(|&x| self.score_at(x)).collect();
        let t = points_to_tensor_dtype(&out, DType::F64, points.device())?;
        Ok(t.to_dtype(float_dtype(points))?)
    }

    /// Draws `n` points and the component each came from: `k ~ Categorical(w)`,
    /// then `x = μ_k + s_k ⊙ ε`, `ε ~ N(0, I)`.
    pub fn sample_with_components(&self, n: usize, rng: &mut impl Rng) -> (Vec<[f64; 2]>, Vec<usize>) {
        let cumulative: Vec<f64> = self
            .weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w;
                Some(*acc)
            })
            .collect();
        let last = self.weights.len() - 1;
        let mut points = Vec::with_capacity(n);
        let mut components = Vec::with_capacity(n);
        for _ in 0..n {
            let u: f64 = rng.random();
            let k = cumulative.partition_point(|&c| c <= u).min(last);
            let (mu, s) = (self.means[k], self.stds[k]);
            let e0: f64 = StandardNormal.sample(rng);
            let e1: f64 = StandardNormal.sample(rng);
            points.push([mu[0] + s[0] * e0, mu[1] + s[1] * e1]);
            components.push(k);
        }
        (points, components)
    }

    /// Draws `n` points (see [`Self::sample_with_components`]).
    pub fn sample_points(&self, n: usize, rng: &mut impl Rng) -> Vec<[f64; 2]> {
        self.sample_with_components(n, rng).0
    }

    /// Draws `n` points as an `[n, 2]` `f32` tensor on `device`.
    ///
    /// # Errors
    ///
    /// A Candle error if the copy to `device` fails.
    pub fn sample(&self, n: usize, rng: &mut impl Rng, device: &Device) -> Result<Tensor> {
        points_to_tensor(&self.sample_points(n, rng), device)
    }
}

/// The dtype outputs take: the input's if it is a float type, else `f32`.
fn float_dtype(t: &Tensor) -> DType {
    if t.dtype().is_float() { t.dtype() } else { DType::F32 }
}

fn check_std(std: f64) -> Result<()> {
    if std.is_finite() && std > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid("std", std, "positive and finite"))
    }
}

fn check_noise(noise: f64) -> Result<()> {
    if noise.is_finite() && noise >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid("noise", noise, "finite and non-negative"))
    }
}

/// Two interleaving half circles (scikit-learn's `make_moons`), drawn i.i.d.:
/// a moon `m ∈ {0, 1}` with probability ½ each, an angle `t ~ U[0, π]`, then
/// `(cos t, sin t)` for the outer moon or `(1 − cos t, ½ − sin t)` for the
/// inner one, plus `noise · N(0, I)`. The mean is `(½, ¼)`. Returns the points
/// and the moon of each.
///
/// # Errors
///
/// [`Error::InvalidArgument`] unless `noise` is finite and non-negative.
pub fn two_moons_with_labels(n: usize, noise: f64, rng: &mut impl Rng) -> Result<(Vec<[f64; 2]>, Vec<usize>)> {
    check_noise(noise)?;
    let mut points = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let moon = usize::from(rng.random::<bool>());
        let t = PI * rng.random::<f64>();
        let (x, y) = if moon == 0 {
            (t.cos(), t.sin())
        } else {
            (1.0 - t.cos(), 0.5 - t.sin())
        };
        let e0: f64 = StandardNormal.sample(rng);
        let e1: f64 = StandardNormal.sample(rng);
        points.push([x + noise * e0, y + noise * e1]);
        labels.push(moon);
    }
    Ok((points, labels))
}

/// Two moons without labels (see [`two_moons_with_labels`]).
///
/// # Errors
///
/// [`Error::InvalidArgument`] unless `noise` is finite and non-negative.
pub fn two_moons(n: usize, noise: f64, rng: &mut impl Rng) -> Result<Vec<[f64; 2]>> {
    Ok(two_moons_with_labels(n, noise, rng)?.0)
}

/// The 2-D swiss roll (the `(x, z)` coordinates of scikit-learn's
/// `make_swiss_roll`): `t = 1.5π (1 + 2u)`, `u ~ U[0, 1)`, point
/// `(t cos t, t sin t) + noise · N(0, I)`. The radius runs from 1.5π to 4.5π;
/// diffusion demos usually divide by about 10.
///
/// # Errors
///
/// [`Error::InvalidArgument`] unless `noise` is finite and non-negative.
pub fn swiss_roll(n: usize, noise: f64, rng: &mut impl Rng) -> Result<Vec<[f64; 2]>> {
    check_noise(noise)?;
    Ok((0..n)
        .map(|_| {
            let t = 1.5 * PI * (1.0 + 2.0 * rng.random::<f64>());
            let e0: f64 = StandardNormal.sample(rng);
            let e1: f64 = StandardNormal.sample(rng);
            [t * t.cos() + noise * e0, t * t.sin() + noise * e1]
        })
        .collect())
}

/// Points as an `[n, 2]` `f32` tensor on `device`.
///
/// # Errors
///
/// A Candle error if the copy to `device` fails.
pub fn points_to_tensor(points: &[[f64; 2]], device: &Device) -> Result<Tensor> {
    points_to_tensor_dtype(points, DType::F32, device)
}

fn points_to_tensor_dtype(points: &[[f64; 2]], dtype: DType, device: &Device) -> Result<Tensor> {
    let flat: Vec<f64> = points.iter().flatten().copied().collect();
    let t = Tensor::from_vec(flat, (points.len(), 2), &Device::Cpu)?.to_dtype(dtype)?;
    Ok(t.to_device(device)?)
}

/// The rows of an `[n, 2]` tensor of any dtype, as `f64` pairs.
///
/// # Errors
///
/// [`Error::BadShape`] unless `points` is `[n, 2]`; a Candle error if the
/// copy to the host fails.
pub fn tensor_to_points(points: &Tensor) -> Result<Vec<[f64; 2]>> {
    match points.dims() {
        [_, 2] => {}
        dims => {
            return Err(Error::BadShape {
                what: "points",
                got: dims.to_vec(),
                expected: "[n, 2]".into(),
            });
        }
    }
    let flat = points.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    Ok(flat.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
}

/// The 2-D data sets by name, for the command line.
#[derive(Clone, Debug, PartialEq)]
pub enum Synthetic2d {
    /// [`GaussianMixture2d::ring8`].
    Ring,
    /// [`GaussianMixture2d::grid25`].
    Grid,
    /// [`two_moons`] with this noise standard deviation.
    TwoMoons {
        /// Standard deviation of the added Gaussian noise (0.05 is common).
        noise: f64,
    },
    /// [`swiss_roll`] with this noise standard deviation.
    SwissRoll {
        /// Standard deviation of the added Gaussian noise.
        noise: f64,
    },
    /// Any Gaussian mixture.
    Mixture(GaussianMixture2d),
}

impl Synthetic2d {
    /// The mixture behind this data set, when it is one (ring, grid,
    /// mixture); two moons and swiss roll have no closed-form density.
    pub fn mixture(&self) -> Option<GaussianMixture2d> {
        match self {
            Synthetic2d::Ring => Some(GaussianMixture2d::ring8()),
            Synthetic2d::Grid => Some(GaussianMixture2d::grid25()),
            Synthetic2d::Mixture(m) => Some(m.clone()),
            Synthetic2d::TwoMoons { .. } | Synthetic2d::SwissRoll { .. } => None,
        }
    }

    /// Draws `n` points.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a negative or non-finite noise level.
    pub fn sample_points(&self, n: usize, rng: &mut impl Rng) -> Result<Vec<[f64; 2]>> {
        match self {
            Synthetic2d::TwoMoons { noise } => two_moons(n, *noise, rng),
            Synthetic2d::SwissRoll { noise } => swiss_roll(n, *noise, rng),
            Synthetic2d::Ring => Ok(GaussianMixture2d::ring8().sample_points(n, rng)),
            Synthetic2d::Grid => Ok(GaussianMixture2d::grid25().sample_points(n, rng)),
            Synthetic2d::Mixture(m) => Ok(m.sample_points(n, rng)),
        }
    }

    /// Draws `n` points as an `[n, 2]` `f32` tensor on `device`.
    ///
    /// # Errors
    ///
    /// As [`Self::sample_points`], or a Candle error if the copy fails.
    pub fn sample(&self, n: usize, rng: &mut impl Rng, device: &Device) -> Result<Tensor> {
        points_to_tensor(&self.sample_points(n, rng)?, device)
    }
}

impl FromStr for Synthetic2d {
    type Err = Error;

    /// `ring`, `grid`, `moons` (noise 0.05), `swiss-roll` (noise 0.5) or
    /// `mixture` ([`GaussianMixture2d::song_ermon`]).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mixture" => Ok(Synthetic2d::Mixture(GaussianMixture2d::song_ermon())),
            "ring" => Ok(Synthetic2d::Ring),
            "grid" => Ok(Synthetic2d::Grid),
            "moons" | "two-moons" => Ok(Synthetic2d::TwoMoons { noise: 0.05 }),
            "swiss-roll" | "swissroll" => Ok(Synthetic2d::SwissRoll { noise: 0.5 }),
            other => Err(Error::invalid(
                "2-D data set",
                other,
                "expected ring, grid, moons, swiss-roll or mixture",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_core::rng::rng_from_seed;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    /// Sample mean `m` and covariance `c` of some points, each with a standard
    /// error (`se_m`, `se_c`) estimated from the same sample.
    struct Moments {
        m: [f64; 2],
        c: [[f64; 2]; 2],
        se_m: [f64; 2],
        se_c: [[f64; 2]; 2],
    }

    fn moments(points: &[[f64; 2]]) -> Moments {
        let n = points.len() as f64;
        let mut m = [0.0; 2];
        for p in points {
            m[0] += p[0] / n;
            m[1] += p[1] / n;
        }
        let mut c = [[0.0; 2]; 2];
        let mut c2 = [[0.0; 2]; 2];
        for p in points {
            for i in 0..2 {
                for j in 0..2 {
                    let v = (p[i] - m[i]) * (p[j] - m[j]);
                    c[i][j] += v / n;
                    c2[i][j] += v * v / n;
                }
            }
        }
        let se_m = [(c[0][0] / n).sqrt(), (c[1][1] / n).sqrt()];
        let mut se_c = [[0.0; 2]; 2];
        for i in 0..2 {
            for j in 0..2 {
                se_c[i][j] = ((c2[i][j] - c[i][j] * c[i][j]) / n).sqrt();
            }
        }
        Moments { m, c, se_m, se_c }
    }

    fn check_moments(mix: &GaussianMixture2d, seed: u64) {
        let points = mix.sample_points(40_000, &mut rng_from_seed(seed));
        let Moments { m, c, se_m, se_c } = moments(&points);
        let (m0, c0) = (mix.mean(), mix.covariance());
        for i in 0..2 {
            assert!((m[i] - m0[i]).abs() <= 5.0 * se_m[i], "mean {m:?} vs {m0:?}");
            for j in 0..2 {
                assert!(
                    (c[i][j] - c0[i][j]).abs() <= 5.0 * se_c[i][j] + 1e-12,
                    "cov {c:?} vs {c0:?}"
                );
            }
        }
    }

    fn asymmetric() -> GaussianMixture2d {
        GaussianMixture2d::new(
            vec![0.2, 0.5, 0.3],
            vec![[-1.0, 2.0], [1.5, 0.0], [0.0, -2.0]],
            vec![[0.3, 0.6], [1.0, 0.2], [0.5, 0.5]],
        )
        .unwrap()
    }

    #[test]
    fn sample_moments_match_closed_form() {
        check_moments(&GaussianMixture2d::ring8(), 1);
        check_moments(&GaussianMixture2d::grid25(), 2);
        check_moments(&asymmetric(), 3);
    }

    #[test]
    fn closed_form_moments_by_hand() {
        // Ring of 8 on the unit circle: mean 0; cov = ½ I + sd² I, since
        // Σ cos² (2πk/8) / 8 = ½.
        let ring = GaussianMixture2d::ring8();
        let c = ring.covariance();
        assert!(ring.mean().iter().all(|v| v.abs() < 1e-12));
        assert!((c[0][0] - (0.5 + 1e-4)).abs() < 1e-12 && c[0][1].abs() < 1e-12);
        // Grid: per axis the means {−4, −2, 0, 2, 4} have variance 8.
        let c = GaussianMixture2d::grid25().covariance();
        assert!((c[1][1] - (8.0 + 0.0025)).abs() < 1e-12);
    }

    #[test]
    fn ring_and_grid_modes() {
        let ring = GaussianMixture2d::ring8();
        assert_eq!(ring, GaussianMixture2d::ring(8, 1.0, 0.01).unwrap());
        assert_eq!(
            GaussianMixture2d::grid25(),
            GaussianMixture2d::grid(5, 2.0, 0.05).unwrap()
        );
        assert_eq!(ring.n_components(), 8);
        for (k, m) in ring.modes().iter().enumerate() {
            let angle = TAU * k as f64 / 8.0;
            assert!((m[0] - angle.cos()).abs() < 1e-12 && (m[1] - angle.sin()).abs() < 1e-12);
            assert!((m[0].hypot(m[1]) - 1.0).abs() < 1e-12);
        }
        assert!(ring.stds().iter().all(|s| *s == [0.01, 0.01]));
        let grid = GaussianMixture2d::grid25();
        let mut modes: Vec<(i64, i64)> = grid
            .modes()
            .iter()
            .map(|m| (m[0].round() as i64, m[1].round() as i64))
            .collect();
        modes.sort_unstable();
        let coords = [-4, -2, 0, 2, 4];
        let expected: Vec<(i64, i64)> = coords
            .iter()
            .flat_map(|&a| coords.iter().map(move |&b| (a, b)))
            .collect();
        assert_eq!(modes, expected);
        assert!(grid.weights().iter().all(|w| (w - 0.04).abs() < 1e-15));
        // Samples from the ring sit within 5 sd of their component's mode.
        let (points, ks) = ring.sample_with_components(1000, &mut rng_from_seed(0));
        for (p, k) in points.iter().zip(ks) {
            let (nearest, d) = ring.nearest_mode(*p);
            assert_eq!(nearest, k);
            assert!(d < 0.05);
        }
    }

    #[test]
    fn sampling_is_seeded() {
        let mix = asymmetric();
        let a = mix.sample_points(10, &mut rng_from_seed(5));
        assert_eq!(a, mix.sample_points(10, &mut rng_from_seed(5)));
        assert_ne!(a, mix.sample_points(10, &mut rng_from_seed(6)));
        let t = mix.sample(7, &mut rng_from_seed(5), &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[7, 2]);
        assert_eq!(t.dtype(), DType::F32);
    }

    #[test]
    fn component_weights_are_respected() {
        // 0.2 / 0.8 two-component mixture (SPEC §6): the fraction from
        // component 0 is within 5 standard errors of 0.2.
        let mix = GaussianMixture2d::isotropic(vec![1.0, 4.0], vec![[-5.0, 0.0], [5.0, 0.0]], vec![1.0, 1.0]).unwrap();
        assert_eq!(mix.weights(), &[0.2, 0.8]);
        let n = 20_000;
        let (_, ks) = mix.sample_with_components(n, &mut rng_from_seed(4));
        let frac = ks.iter().filter(|&&k| k == 0).count() as f64 / n as f64;
        assert!((frac - 0.2).abs() < 5.0 * (0.16f64 / n as f64).sqrt(), "{frac}");
    }

    #[test]
    fn single_gaussian_closed_form() {
        // N(μ, diag(s²)) at x: −ln(2π s0 s1) − ½ Σ ((x−μ)/s)², score (μ − x)/s².
        let mix = GaussianMixture2d::new(vec![1.0], vec![[1.0, -1.0]], vec![[2.0, 0.5]]).unwrap();
        let x = [2.0, 0.0];
        let expected = -(TAU * 2.0 * 0.5).ln() - 0.5 * (0.25 + 4.0);
        assert!((mix.log_density_at(x) - expected).abs() < 1e-12);
        let s = mix.score_at(x);
        assert!((s[0] - (-0.25)).abs() < 1e-12 && (s[1] - (-4.0)).abs() < 1e-12);
    }

    #[test]
    fn stable_far_from_all_modes() {
        // At distance 1e4 with sd 0.01 each l_k is about −5e11: a naive
        // Σ w_k N_k underflows to 0 and gives −inf and NaN scores.
        let ring = GaussianMixture2d::ring8();
        let x = [1e4, 0.0];
        let lp = ring.log_density_at(x);
        assert!(lp.is_finite() && lp < -1e11, "{lp}");
        let s = ring.score_at(x);
        // The nearest mode (1, 0) dominates: score ≈ (1 − 1e4) / 1e-4.
        assert!((s[0] - (1.0 - 1e4) / 1e-4).abs() < 1e-3 * s[0].abs(), "{s:?}");
        assert!(s[1].abs() < 1e-6 * s[0].abs(), "{s:?}");
    }

    #[test]
    fn density_integrates_to_one() {
        // Midpoint rule on [−10, 10]² with h = 0.025; the components are broad
        // enough (sd ≥ 0.2) for the rule to be accurate to far below 1e-4.
        for mix in [
            asymmetric(),
            GaussianMixture2d::ring(8, 2.0, 0.2).unwrap(),
            asymmetric().noised(0.7).unwrap(),
        ] {
            let (lo, n) = (-10.0, 800);
            let h = 20.0 / n as f64;
            let mut total = 0.0;
            for i in 0..n {
                for j in 0..n {
                    let x = [lo + (i as f64 + 0.5) * h, lo + (j as f64 + 0.5) * h];
                    total += mix.log_density_at(x).exp() * h * h;
                }
            }
            assert!((total - 1.0).abs() < 1e-4, "{total}");
        }
    }

    #[test]
    fn noised_density_is_the_convolution() {
        // p_σ(x) = E_ε[p(x − σ ε)], ε ~ N(0, I): Monte Carlo with 100,000
        // draws, compared within 5 standard errors.
        let mix = asymmetric();
        let sigma = 0.5;
        let noisy = mix.noised(sigma).unwrap();
        let mut rng = rng_from_seed(11);
        let n = 100_000;
        for x in [[0.0, 0.0], [1.5, 0.3], [-1.0, 1.5], [0.5, -2.5]] {
            let vals: Vec<f64> = (0..n)
                .map(|_| {
                    let e0: f64 = StandardNormal.sample(&mut rng);
                    let e1: f64 = StandardNormal.sample(&mut rng);
                    mix.log_density_at([x[0] - sigma * e0, x[1] - sigma * e1]).exp()
                })
                .collect();
            let mean = vals.iter().sum::<f64>() / n as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            let se = (var / n as f64).sqrt();
            let exact = noisy.log_density_at(x).exp();
            assert!(
                (mean - exact).abs() <= 5.0 * se,
                "x {x:?}: MC {mean} ± {se}, exact {exact}"
            );
        }
        // σ = 0 changes nothing; noising twice adds variances.
        assert_eq!(mix.noised(0.0).unwrap(), mix);
        let twice = mix.noised(0.3).unwrap().noised(0.4).unwrap();
        let once = mix.noised(0.5).unwrap();
        for (a, b) in twice.stds().iter().zip(once.stds()) {
            assert!((a[0] - b[0]).abs() < 1e-12 && (a[1] - b[1]).abs() < 1e-12);
        }
        assert!(mix.noised(-1.0).is_err() && mix.noised(f64::NAN).is_err());
    }

    #[test]
    fn tensor_api() {
        let mix = asymmetric();
        let pts = [[0.0, 0.0], [1.0, -1.0], [3.0, 2.0]];
        for dtype in [DType::F32, DType::F64] {
            let t = points_to_tensor(&pts, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let lp = mix.log_density(&t).unwrap();
            assert_eq!((lp.dims(), lp.dtype()), (&[3][..], dtype));
            let s = mix.score(&t).unwrap();
            assert_eq!((s.dims(), s.dtype()), (&[3, 2][..], dtype));
            let lp = lp.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
            let s = s.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
            for (i, p) in pts.iter().enumerate() {
                assert!((lp[i] - mix.log_density_at(*p)).abs() < 1e-5 * (1.0 + lp[i].abs()));
                let e = mix.score_at(*p);
                assert!((s[i][0] - e[0]).abs() < 1e-5 * (1.0 + e[0].abs()));
                assert!((s[i][1] - e[1]).abs() < 1e-5 * (1.0 + e[1].abs()));
            }
        }
        let bad = Tensor::zeros((3, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(mix.log_density(&bad), Err(Error::BadShape { .. })));
        assert!(matches!(mix.score(&bad), Err(Error::BadShape { .. })));
        let empty = Tensor::zeros((0, 2), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(mix.log_density(&empty).unwrap().dims(), &[0]);
    }

    #[test]
    fn invalid_mixtures() {
        let m = |w: Vec<f64>, mu: Vec<[f64; 2]>, s: Vec<[f64; 2]>| GaussianMixture2d::new(w, mu, s);
        assert!(m(vec![], vec![], vec![]).is_err());
        assert!(m(vec![1.0], vec![[0.0, 0.0]; 2], vec![[1.0, 1.0]]).is_err());
        assert!(m(vec![-1.0], vec![[0.0, 0.0]], vec![[1.0, 1.0]]).is_err());
        assert!(m(vec![0.0, 0.0], vec![[0.0, 0.0]; 2], vec![[1.0, 1.0]; 2]).is_err());
        assert!(m(vec![1.0], vec![[f64::NAN, 0.0]], vec![[1.0, 1.0]]).is_err());
        assert!(m(vec![1.0], vec![[0.0, 0.0]], vec![[0.0, 1.0]]).is_err());
        assert!(m(vec![1.0], vec![[0.0, 0.0]], vec![[1.0, f64::INFINITY]]).is_err());
        assert!(GaussianMixture2d::ring(0, 1.0, 0.1).is_err());
        assert!(GaussianMixture2d::grid(0, 1.0, 0.1).is_err());
        assert!(GaussianMixture2d::ring(8, 1.0, 0.0).is_err());
        assert!(GaussianMixture2d::grid(5, 2.0, f64::NAN).is_err());
        assert!(GaussianMixture2d::ring(8, f64::INFINITY, 0.1).is_err());
        // A zero weight is allowed; that component never contributes.
        let mix = m(vec![0.0, 1.0], vec![[0.0, 0.0], [5.0, 5.0]], vec![[1.0, 1.0]; 2]).unwrap();
        assert_eq!(mix.responsibilities_at([0.0, 0.0]), vec![0.0, 1.0]);
        assert!(mix.log_density_at([0.0, 0.0]).is_finite());
    }

    #[test]
    fn two_moons_shape_and_mean() {
        // Noise-free points lie on their unit half circle; the mean is
        // ½ (0, 2/π) + ½ (1, ½ − 2/π) = (½, ¼).
        let (points, labels) = two_moons_with_labels(20_000, 0.0, &mut rng_from_seed(1)).unwrap();
        for (p, l) in points.iter().zip(&labels) {
            let centre = if *l == 0 { [0.0, 0.0] } else { [1.0, 0.5] };
            assert!(((p[0] - centre[0]).hypot(p[1] - centre[1]) - 1.0).abs() < 1e-12);
            if *l == 0 {
                assert!(p[1] >= 0.0);
            } else {
                assert!(p[1] <= 0.5);
            }
        }
        let Moments { m, se_m: se, .. } = moments(&points);
        assert!(
            (m[0] - 0.5).abs() < 5.0 * se[0] && (m[1] - 0.25).abs() < 5.0 * se[1],
            "{m:?}"
        );
        assert!(two_moons(3, -0.1, &mut rng_from_seed(1)).is_err());
    }

    #[test]
    fn swiss_roll_lies_on_the_spiral() {
        // Noise-free: radius r = t ∈ [1.5π, 4.5π] and the point is (r cos r, r sin r).
        let points = swiss_roll(2000, 0.0, &mut rng_from_seed(2)).unwrap();
        for p in &points {
            let r = p[0].hypot(p[1]);
            assert!((1.5 * PI..=4.5 * PI).contains(&r), "{r}");
            assert!((r * r.cos() - p[0]).abs() < 1e-9 && (r * r.sin() - p[1]).abs() < 1e-9);
        }
        let noisy = swiss_roll(2000, 0.5, &mut rng_from_seed(2)).unwrap();
        assert_ne!(noisy, points);
    }

    #[test]
    fn synthetic_enum() {
        let mut rng = rng_from_seed(0);
        for name in ["ring", "grid", "moons", "swiss-roll"] {
            let data: Synthetic2d = name.parse().unwrap();
            let t = data.sample(5, &mut rng, &Device::Cpu).unwrap();
            assert_eq!(t.dims(), &[5, 2]);
            let has_density = matches!(name, "ring" | "grid");
            assert_eq!(data.mixture().is_some(), has_density);
        }
        assert!("spiral".parse::<Synthetic2d>().is_err());
        assert_eq!(Synthetic2d::Grid.mixture().unwrap().modes().len(), 25);
    }

    /// Tolerance of the central-difference check, relative to `1 + |score|`:
    /// the step `h` = 1e-5 gives O(h²) truncation and O(ε |ln p| / h) rounding,
    /// both below 1e-7 for the mixtures generated here.
    const FD_TOL: f64 = 1e-5;

    fn check_score_matches_finite_differences(
        mix: &GaussianMixture2d,
        x: [f64; 2],
    ) -> std::result::Result<(), TestCaseError> {
        let h = 1e-5;
        let s = mix.score_at(x);
        for d in 0..2 {
            let mut plus = x;
            let mut minus = x;
            plus[d] += h;
            minus[d] -= h;
            let fd = (mix.log_density_at(plus) - mix.log_density_at(minus)) / (2.0 * h);
            prop_assert!(
                (fd - s[d]).abs() <= FD_TOL * (1.0 + s[d].abs()),
                "axis {}: finite difference {} vs score {} at {:?}",
                d,
                fd,
                s[d],
                x
            );
        }
        Ok(())
    }

    prop_compose! {
        fn mixture()(k in 1usize..=4)(
            weights in prop::collection::vec(0.05f64..1.0, k),
            means in prop::collection::vec([-3.0f64..3.0, -3.0f64..3.0], k),
            stds in prop::collection::vec([0.2f64..2.0, 0.2f64..2.0], k),
        ) -> GaussianMixture2d {
            GaussianMixture2d::new(weights, means, stds).unwrap()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn prop_score_matches_finite_differences(
            mix in mixture(),
            x in [-5.0f64..5.0, -5.0f64..5.0],
        ) {
            check_score_matches_finite_differences(&mix, x)?;
        }

        #[test]
        fn prop_noised_score_matches_finite_differences(
            mix in mixture(),
            sigma in 0.0f64..2.0,
            x in [-5.0f64..5.0, -5.0f64..5.0],
        ) {
            check_score_matches_finite_differences(&mix.noised(sigma).unwrap(), x)?;
        }

        #[test]
        fn prop_responsibilities_are_a_distribution(
            mix in mixture(),
            x in [-50.0f64..50.0, -50.0f64..50.0],
        ) {
            let r = mix.responsibilities_at(x);
            prop_assert!(r.iter().all(|v| (0.0..=1.0).contains(v)));
            prop_assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            prop_assert!(mix.log_density_at(x).is_finite());
            prop_assert!(mix.score_at(x).iter().all(|v| v.is_finite()));
        }

        #[test]
        fn prop_noising_composes(
            mix in mixture(),
            a in 0.0f64..2.0,
            b in 0.0f64..2.0,
            x in [-5.0f64..5.0, -5.0f64..5.0],
        ) {
            // N(0, a²) * N(0, b²) = N(0, a² + b²).
            let twice = mix.noised(a).unwrap().noised(b).unwrap();
            let once = mix.noised(a.hypot(b)).unwrap();
            let (l2, l1) = (twice.log_density_at(x), once.log_density_at(x));
            prop_assert!((l2 - l1).abs() < 1e-10 * (1.0 + l1.abs()), "{} vs {}", l2, l1);
        }
    }
}
