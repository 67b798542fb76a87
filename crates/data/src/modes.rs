//! Mode coverage of 2-D samples: the mode-collapse benchmark of SPEC §5, as
//! VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al., 2018) score it.
//!
//! Against a [`GaussianMixture2d`] (in the benchmark [`GaussianMixture2d::ring8`]
//! or [`GaussianMixture2d::grid25`], 2,500 samples):
//!
//! - each sample is assigned to its **nearest mode** (Euclidean, as
//!   [`GaussianMixture2d::nearest_mode`]);
//! - it is **high-quality** when it lies within `std_multiple` standard
//!   deviations of that mode ([`HIGH_QUALITY_STDS`] = 3 in the protocol). With
//!   diagonal standard deviations `s = (s₀, s₁)` "within `c` sd" means the
//!   Mahalanobis distance `√((x₀ − μ₀)²/s₀² + (x₁ − μ₁)²/s₁²) ≤ c`, which for
//!   the isotropic benchmark mixtures is the Euclidean distance `≤ c · s`;
//! - a mode is **captured** when it is the nearest mode of at least one
//!   high-quality sample;
//! - the **reverse KL** is `KL(p̂ ‖ u) = Σ_k p̂_k ln(K p̂_k) = ln K − H(p̂)`,
//!   where `p̂` is the histogram of high-quality samples over the `K` modes,
//!   normalised, and `u` the uniform distribution over the modes.
//!
//! The reference is uniform over the modes whatever the mixture's weights:
//! the protocol asks whether a generator covers every mode equally, and both
//! benchmark mixtures are equally weighted, so for them the uniform *is* the
//! data's own mode distribution. For a mixture with unequal weights the value
//! is still the divergence from the uniform, not from the weights.
//!
//! ```
//! use deepgen_data::{GaussianMixture2d, HIGH_QUALITY_STDS};
//!
//! let ring = GaussianMixture2d::ring8();
//! // Every sample on mode 0: total collapse.
//! let collapsed = vec![ring.modes()[0]; 100];
//! let report = ring.mode_report(&collapsed, HIGH_QUALITY_STDS)?;
//! assert_eq!(report.modes_captured, 1);
//! assert_eq!(report.reverse_kl, 8f64.ln());
//! # Ok::<(), deepgen_data::Error>(())
//! ```

use crate::{Error, GaussianMixture2d, Result};

/// The protocol's high-quality radius in standard deviations (SPEC §5,
/// VEEGAN / PacGAN): a sample within 3 sd of its nearest mode.
pub const HIGH_QUALITY_STDS: f64 = 3.0;

/// What a set of 2-D samples says about a mixture's modes.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeReport {
    /// High-quality samples per mode, indexed like
    /// [`GaussianMixture2d::modes`] (a sample is high-quality when it lies
    /// within `std_multiple` standard deviations of its nearest mode; SPEC §5
    /// uses [`HIGH_QUALITY_STDS`] = 3).
    pub histogram: Vec<usize>,
    /// Modes with at least one high-quality sample.
    pub modes_captured: usize,
    /// Fraction of all samples that are high-quality, in `[0, 1]`.
    pub high_quality_fraction: f64,
    /// Reverse KL, `KL(p̂ ‖ w) = Σ_k p̂_k ln(p̂_k / w_k)` of the normalised
    /// high-quality mode histogram `p̂` to the mixture's weights `w`, in nats,
    /// in `[0, −ln min_k w_k]`. For the protocol's equally weighted mixtures
    /// (ring, grid) this is its `KL(p̂ ‖ uniform) = ln K − H(p̂)`: 0 when every
    /// mode holds the same share and `ln K` when all high-quality samples sit
    /// at one mode. Against the weights, a sampler that puts half of its
    /// samples in each mode of a 0.8 / 0.2 mixture is penalised, as it must be.
    ///
    /// **No high-quality samples:** `p̂` is undefined, and the value is
    /// `−ln min_k w_k` (`ln K` for equal weights), the metric's worst value
    /// on any non-empty histogram. A generator
    /// that hits no mode at all has collapsed at least as badly as one that
    /// hits a single mode, so it must not score better; `+∞` would say that
    /// too but poisons averages over runs and cannot be written as JSON, and
    /// NaN would compare as neither better nor worse. Read it together with
    /// [`Self::modes_captured`] (0) and [`Self::high_quality_fraction`] (0).
    pub reverse_kl: f64,
    /// Number of samples scored.
    pub n_samples: usize,
}

impl GaussianMixture2d {
    /// The report of `samples` against this mixture's modes, high quality
    /// within `std_multiple` standard deviations.
    ///
    /// Each sample goes to its nearest mode `k` (Euclidean, as
    /// [`Self::nearest_mode`]) and is high-quality when its Mahalanobis
    /// distance to `μ_k` with the diagonal sds `s_k`,
    /// `√(Σ_d (x_d − μ_kd)² / s_kd²)`, is at most `std_multiple`. For an
    /// isotropic component this is `‖x − μ_k‖ ≤ std_multiple · s_k`. See
    /// [`ModeReport`] for the fields and the [module docs](crate::modes) for
    /// the protocol.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `samples` is empty, a sample has a
    /// non-finite coordinate (the message gives its index), or `std_multiple`
    /// is not positive and finite.
    pub fn mode_report(&self, samples: &[[f64; 2]], std_multiple: f64) -> Result<ModeReport> {
        if !(std_multiple > 0.0 && std_multiple.is_finite()) {
            return Err(Error::invalid("std_multiple", std_multiple, "positive and finite"));
        }
        if samples.is_empty() {
            return Err(Error::invalid("samples", "[]", "at least one sample"));
        }
        if let Some((i, x)) = samples
            .iter()
            .enumerate()
            .find(|(_, x)| !x.iter().all(|v| v.is_finite()))
        {
            return Err(Error::invalid(
                "sample",
                format!("{x:?} at index {i}"),
                "finite coordinates",
            ));
        }
        let (modes, stds) = (self.modes(), self.stds());
        let mut histogram = vec![0usize; modes.len()];
        for &x in samples {
            let (k, _) = self.nearest_mode(x);
            let (mu, s) = (modes[k], stds[k]);
            let z0 = (x[0] - mu[0]) / s[0];
            let z1 = (x[1] - mu[1]) / s[1];
            if z0.hypot(z1) <= std_multiple {
                histogram[k] += 1;
            }
        }
        let n_high_quality: usize = histogram.iter().sum();
        Ok(ModeReport {
            modes_captured: histogram.iter().filter(|&&c| c > 0).count(),
            high_quality_fraction: n_high_quality as f64 / samples.len() as f64,
            reverse_kl: reverse_kl_to_weights(&histogram, self.weights()),
            histogram,
            n_samples: samples.len(),
        })
    }
}

/// `KL(p̂ ‖ w) = Σ_k p̂_k ln(p̂_k / w_k)` of the normalised `counts` against
/// the normalised `weights`, clamped to `[0, −ln min w]` against rounding;
/// `−ln min w` when every count is zero (see [`ModeReport::reverse_kl`]).
/// `counts` is non-empty and as long as `weights`: a mixture has at least
/// one mode.
fn reverse_kl_to_weights(counts: &[usize], weights: &[f64]) -> f64 {
    let worst = -weights.iter().copied().fold(f64::INFINITY, f64::min).ln();
    let total: usize = counts.iter().sum();
    if total == 0 {
        return worst;
    }
    let total = total as f64;
    let kl: f64 = counts
        .iter()
        .zip(weights)
        .filter(|&(&c, _)| c > 0)
        .map(|(&c, &w)| {
            let p = c as f64 / total;
            p * (p / w).ln()
        })
        .sum();
    kl.clamp(0.0, worst)
}

/// MMD² between samples and a fresh draw of the true distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmdToTruth {
    /// The unbiased MMD² estimate (near 0, possibly slightly negative, when
    /// the samples come from the data set itself).
    pub mmd2: f64,
    /// The Gaussian kernel's bandwidth: the median heuristic on the pooled
    /// points.
    pub bandwidth: f64,
}

impl crate::Synthetic2d {
    /// The unbiased kernel MMD² (Gaussian kernel, bandwidth by the median
    /// heuristic over the pooled points) between `samples` and as many
    /// points drawn from this data set with `rng`: the distance to the true
    /// distribution for any synthetic set, mixture or not.
    ///
    /// # Errors
    /// Fewer than 2 samples, non-finite points, all points equal.
    pub fn mmd2_to_truth(&self, samples: &[[f64; 2]], rng: &mut impl rand::Rng) -> Result<MmdToTruth> {
        let truth = self.sample_points(samples.len(), rng)?;
        let flat = |points: &[[f64; 2]]| points.iter().flatten().copied().collect::<Vec<f64>>();
        let (x, y) = (flat(samples), flat(&truth));
        let bandwidth = deepgen_numerics::median_bandwidth(&x, &y, 2)?;
        let mmd2 = deepgen_numerics::mmd2_unbiased(&x, &y, 2, bandwidth)?;
        Ok(MmdToTruth { mmd2, bandwidth })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_core::rng::rng_from_seed;
    use proptest::prelude::*;

    /// `ln K − H(p)` with `H(p) = −Σ p ln p` of the normalised `counts`,
    /// written differently from the implementation's `Σ p ln(K p)`.
    fn ln_k_minus_entropy(counts: &[usize]) -> f64 {
        let n: usize = counts.iter().sum();
        let entropy: f64 = counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / n as f64;
                -p * p.ln()
            })
            .sum();
        (counts.len() as f64).ln() - entropy
    }

    /// `counts[k]` copies of mode `k`, each moved by `offset` (in units of
    /// that mode's sds), followed by `n_far` points far from every mode.
    fn at_modes(mix: &GaussianMixture2d, counts: &[usize], offset: [f64; 2], n_far: usize) -> Vec<[f64; 2]> {
        let mut xs = Vec::new();
        for ((&c, mu), s) in counts.iter().zip(mix.modes()).zip(mix.stds()) {
            xs.extend(std::iter::repeat_n(
                [mu[0] + offset[0] * s[0], mu[1] + offset[1] * s[1]],
                c,
            ));
        }
        xs.extend(std::iter::repeat_n([100.0, -100.0], n_far));
        xs
    }

    /// Against unequal weights the reverse KL is `KL(p̂ ‖ w)`: 0 when the
    /// samples split as the weights do, `0.5 ln(0.5/0.8) + 0.5 ln(0.5/0.2)`
    /// for an even split of a 0.8 / 0.2 mixture.
    #[test]
    fn reverse_kl_is_measured_against_the_weights() {
        let m = GaussianMixture2d::song_ermon();
        let at = |k: usize, n: usize| vec![m.modes()[k]; n];
        let weighted = [at(0, 80), at(1, 20)].concat();
        assert!(m.mode_report(&weighted, HIGH_QUALITY_STDS).unwrap().reverse_kl.abs() < 1e-12);
        let even = [at(0, 50), at(1, 50)].concat();
        let expected = 0.5 * (0.5f64 / 0.8).ln() + 0.5 * (0.5f64 / 0.2).ln();
        let kl = m.mode_report(&even, HIGH_QUALITY_STDS).unwrap().reverse_kl;
        assert!((kl - expected).abs() < 1e-12, "{kl} vs {expected}");
        let nowhere = m.mode_report(&[[100.0, -100.0]; 10], HIGH_QUALITY_STDS).unwrap();
        assert!((nowhere.reverse_kl + 0.2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn benchmark_mixtures_are_equally_weighted() {
        // The reverse KL against their weights is then the protocol's
        // KL to the uniform over modes.
        for (mix, k) in [(GaussianMixture2d::ring8(), 8), (GaussianMixture2d::grid25(), 25)] {
            assert_eq!(mix.modes().len(), k);
            assert!(mix.weights().iter().all(|&w| (w - 1.0 / k as f64).abs() < 1e-15));
        }
    }

    #[test]
    fn all_samples_at_one_mode_is_total_collapse() {
        let ring = GaussianMixture2d::ring8();
        let xs = at_modes(&ring, &[0, 0, 0, 250, 0, 0, 0, 0], [0.5, -1.0], 0);
        let r = ring.mode_report(&xs, HIGH_QUALITY_STDS).unwrap();
        assert_eq!(r.histogram, vec![0, 0, 0, 250, 0, 0, 0, 0]);
        assert_eq!(r.modes_captured, 1);
        assert_eq!(r.high_quality_fraction, 1.0);
        assert!((r.reverse_kl - 8f64.ln()).abs() < 1e-15, "{}", r.reverse_kl);
        assert_eq!(r.n_samples, 250);
    }

    #[test]
    fn equal_counts_at_every_mode_have_zero_reverse_kl() {
        let ring = GaussianMixture2d::ring8();
        let xs = at_modes(&ring, &[7; 8], [2.0, 2.0], 0); // 2√2 ≈ 2.83 sd away
        let r = ring.mode_report(&xs, HIGH_QUALITY_STDS).unwrap();
        assert_eq!(r.histogram, vec![7; 8]);
        assert_eq!(r.modes_captured, 8);
        assert_eq!(r.high_quality_fraction, 1.0);
        assert!(r.reverse_kl.abs() < 1e-15, "{}", r.reverse_kl);
    }

    #[test]
    fn points_far_from_every_mode_capture_nothing() {
        // ln K when nothing is high-quality: the worst value, as documented.
        for mix in [GaussianMixture2d::ring8(), GaussianMixture2d::grid25()] {
            let k = mix.modes().len();
            let xs = at_modes(&mix, &vec![0; k], [0.0, 0.0], 40);
            let r = mix.mode_report(&xs, HIGH_QUALITY_STDS).unwrap();
            assert_eq!(r.histogram, vec![0; k]);
            assert_eq!(r.modes_captured, 0);
            assert_eq!(r.high_quality_fraction, 0.0);
            assert_eq!(r.reverse_kl, (k as f64).ln());
            assert_eq!(r.n_samples, 40);
        }
        // Between the ring's modes, far in sd though close in absolute terms.
        let ring = GaussianMixture2d::ring8();
        let between: Vec<[f64; 2]> = (0..8)
            .map(|k| {
                let a = std::f64::consts::TAU * (k as f64 + 0.5) / 8.0;
                [a.cos(), a.sin()]
            })
            .chain([[0.0, 0.0], [1.5, 0.0]])
            .collect();
        let r = ring.mode_report(&between, HIGH_QUALITY_STDS).unwrap();
        assert_eq!((r.modes_captured, r.high_quality_fraction), (0, 0.0));
    }

    #[test]
    fn high_quality_radius_is_std_multiple_sds() {
        let ring = GaussianMixture2d::ring8();
        // Radially outwards from mode 0 = (1, 0), sd 0.01.
        let inside = [1.0 + 2.9 * 0.01, 0.0];
        let outside = [1.0 + 3.1 * 0.01, 0.0];
        let r = ring.mode_report(&[inside, outside], HIGH_QUALITY_STDS).unwrap();
        assert_eq!(r.histogram[0], 1);
        assert_eq!(r.high_quality_fraction, 0.5);
        // A larger multiple admits both.
        let r = ring.mode_report(&[inside, outside], 3.2).unwrap();
        assert_eq!(r.histogram[0], 2);
    }

    #[test]
    fn anisotropic_quality_uses_mahalanobis_distance() {
        // One mode at the origin with sds (0.1, 1.0).
        let mix = GaussianMixture2d::new(vec![1.0], vec![[0.0, 0.0]], vec![[0.1, 1.0]]).unwrap();
        // Euclidean 2.5 > 3 · 0.1, Mahalanobis 2.5: high-quality.
        // Euclidean 0.35 < 3 · 1.0, Mahalanobis 3.5: not.
        // (0.2, 2.0): Mahalanobis √(4 + 4) ≈ 2.83: high-quality; (0.25, 2.0): √(6.25 + 4) ≈ 3.2: not.
        let r = mix
            .mode_report(&[[0.0, 2.5], [0.35, 0.0], [0.2, 2.0], [0.25, 2.0]], 3.0)
            .unwrap();
        assert_eq!(r.histogram, vec![2]);
        assert_eq!(r.high_quality_fraction, 0.5);
        // One mode: ln 1 = 0 whatever the counts.
        assert_eq!(r.reverse_kl, 0.0);
    }

    /// Samples of the mixture itself: every mode captured, the high-quality
    /// fraction at the isotropic 2-D Gaussian mass within 3 sd,
    /// `P(χ²₂ ≤ 9) = 1 − e^{−9/2}` (the modes are ≥ 40 sd apart, so the
    /// nearest mode is the one drawn from), and the reverse KL at the level
    /// of multinomial noise: `2 n KL` is the G statistic of the histogram
    /// against the uniform, asymptotically `χ²_{K−1}`.
    fn check_mixture_samples(mix: &GaussianMixture2d, n: usize, seed: u64, g_bound: f64) {
        let k = mix.modes().len();
        let xs = mix.sample_points(n, &mut rng_from_seed(seed));
        let r = mix.mode_report(&xs, HIGH_QUALITY_STDS).unwrap();
        assert_eq!(r.n_samples, n);
        assert_eq!(r.modes_captured, k, "{:?}", r.histogram);
        let p = 1.0 - (-4.5f64).exp();
        let se = (p * (1.0 - p) / n as f64).sqrt();
        assert!(
            (r.high_quality_fraction - p).abs() <= 4.0 * se,
            "fraction {} vs {p} ± {se}",
            r.high_quality_fraction
        );
        let n_hq: usize = r.histogram.iter().sum();
        let g = 2.0 * n_hq as f64 * r.reverse_kl;
        assert!(g <= g_bound, "G = {g} (KL {}), bound {g_bound}", r.reverse_kl);
    }

    #[test]
    fn samples_of_the_ring_cover_it() {
        // χ²₇ upper 10⁻⁴ quantile ≈ 29.9.
        check_mixture_samples(&GaussianMixture2d::ring8(), 2_500, 11, 29.9);
    }

    #[test]
    fn samples_of_the_grid_cover_it() {
        // χ²₂₄ upper 10⁻⁴ quantile ≈ 57; 100 samples a mode on average.
        check_mixture_samples(&GaussianMixture2d::grid25(), 2_500, 12, 57.0);
        check_mixture_samples(&GaussianMixture2d::grid25(), 20_000, 13, 57.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        let ring = GaussianMixture2d::ring8();
        let ok = [[1.0, 0.0]];
        assert!(matches!(
            ring.mode_report(&[], HIGH_QUALITY_STDS),
            Err(Error::InvalidArgument { name: "samples", .. })
        ));
        for bad in [[f64::NAN, 0.0], [0.0, f64::INFINITY], [f64::NEG_INFINITY, 1.0]] {
            let e = ring.mode_report(&[ok[0], bad], HIGH_QUALITY_STDS).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument { name: "sample", .. }));
            assert!(e.to_string().contains("at index 1"), "{e}");
        }
        for m in [0.0, -3.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                ring.mode_report(&ok, m),
                Err(Error::InvalidArgument {
                    name: "std_multiple",
                    ..
                })
            ));
        }
    }

    fn mixture_and_counts() -> impl Strategy<Value = (GaussianMixture2d, Vec<usize>)> {
        prop_oneof![
            Just(GaussianMixture2d::ring8()),
            Just(GaussianMixture2d::grid25()),
            (1usize..12).prop_map(|n| GaussianMixture2d::ring(n, 3.0, 0.05).unwrap()),
        ]
        .prop_flat_map(|mix| {
            let k = mix.modes().len();
            (Just(mix), proptest::collection::vec(0usize..30, k))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn prop_reverse_kl_is_ln_k_minus_entropy(
            (mix, counts) in mixture_and_counts(),
            n_far in 0usize..20,
            offset in [-2.0f64..2.0, -2.0f64..2.0],
        ) {
            let xs = at_modes(&mix, &counts, offset, n_far);
            prop_assume!(!xs.is_empty());
            let r = mix.mode_report(&xs, HIGH_QUALITY_STDS).unwrap();
            let k = counts.len();
            let ln_k = (k as f64).ln();
            let n_hq: usize = counts.iter().sum();
            // |offset| ≤ 2√2 < 3 sd: every sample at a mode is high-quality.
            prop_assert_eq!(&r.histogram, &counts);
            prop_assert_eq!(r.modes_captured, counts.iter().filter(|&&c| c > 0).count());
            prop_assert_eq!(r.n_samples, xs.len());
            prop_assert!((r.high_quality_fraction - n_hq as f64 / xs.len() as f64).abs() < 1e-15);
            let expected = if n_hq == 0 { ln_k } else { ln_k_minus_entropy(&counts) };
            prop_assert!((r.reverse_kl - expected).abs() < 1e-12, "{} vs {}", r.reverse_kl, expected);
            prop_assert!((0.0..=ln_k).contains(&r.reverse_kl));
        }
    }

    /// MMD² to the truth: about 0 for the data set's own samples (within a
    /// few of its null spread), clearly positive for a collapsed generator.
    #[test]
    fn mmd_to_truth_separates_own_samples_from_collapse() -> Result<()> {
        let ring = crate::Synthetic2d::Ring;
        let mixture = GaussianMixture2d::ring8();
        let own = mixture.sample_points(500, &mut rng_from_seed(21));
        let near = ring.mmd2_to_truth(&own, &mut rng_from_seed(22))?;
        let collapsed = vec![mixture.modes()[0]; 500];
        let far = ring.mmd2_to_truth(&collapsed, &mut rng_from_seed(22))?;
        assert!(near.mmd2.abs() < 0.01, "{near:?}");
        assert!(far.mmd2 > 0.1, "{far:?}");
        let moons = crate::Synthetic2d::TwoMoons { noise: 0.05 };
        let own = moons.sample_points(400, &mut rng_from_seed(23))?;
        assert!(moons.mmd2_to_truth(&own, &mut rng_from_seed(24))?.mmd2.abs() < 0.01);
        assert!(ring.mmd2_to_truth(&own[..1], &mut rng_from_seed(24)).is_err());
        Ok(())
    }
}
