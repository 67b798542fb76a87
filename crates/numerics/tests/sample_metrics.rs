//! Tests of the sample distances (`deepgen_numerics::sample_metrics`) against
//! independent computations: closed forms for commuting covariances, and
//! brute-force sums and loops written directly from the definitions, with
//! differences `a − b` (never the matmul expansion the crate uses).

use deepgen_numerics::{
    GaussianStats, PrecisionRecall, frechet_distance, knn_precision_recall, median_bandwidth, mmd2_unbiased,
};
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// Seed of the case generator unless `PROPTEST_RNG_SEED` sets one, so runs
/// are reproducible (STYLE §7).
const PROPTEST_SEED: u64 = 0x5eed_0000_d157_a9ce;

/// Relative tolerance of the Fréchet identities, against the scale
/// `‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂`.
const FD_REL_TOL: f64 = 1e-8;

/// proptest's defaults (and `PROPTEST_*` variables) with a fixed seed.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(PROPTEST_SEED);
    }
    config
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// An orthogonal matrix (row-major) from a random one by Gram–Schmidt,
/// re-orthogonalised twice; a nearly dependent column is replaced by a unit
/// vector before it is orthogonalised.
fn orthogonal(raw: &[f64], d: usize) -> Vec<f64> {
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(d);
    for j in 0..d {
        let mut v: Vec<f64> = (0..d).map(|i| raw[i * d + j]).collect();
        for attempt in 0..=d {
            for _ in 0..2 {
                for q in &cols {
                    let dot: f64 = v.iter().zip(q).map(|(a, b)| a * b).sum();
                    v.iter_mut().zip(q).for_each(|(a, b)| *a -= dot * b);
                }
            }
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm > 1e-3 {
                v.iter_mut().for_each(|a| *a /= norm);
                break;
            }
            v = (0..d).map(|i| f64::from(u8::from(i == attempt % d))).collect();
        }
        cols.push(v);
    }
    (0..d * d).map(|k| cols[k % d][k / d]).collect()
}

/// `Q diag(λ) Qᵀ`, row-major.
fn congruence(q: &[f64], lambda: &[f64]) -> Vec<f64> {
    let d = lambda.len();
    (0..d * d)
        .map(|k| {
            let (i, j) = (k / d, k % d);
            (0..d).map(|l| q[i * d + l] * lambda[l] * q[j * d + l]).sum()
        })
        .collect()
}

fn stats(mean: Vec<f64>, cov: Vec<f64>) -> GaussianStats {
    let dim = mean.len();
    GaussianStats { mean, cov, dim, n: 2 }
}

fn scale(a: &GaussianStats, b: &GaussianStats) -> f64 {
    let d = a.dim;
    let tr = |s: &GaussianStats| (0..d).map(|i| s.cov[i * d + i]).sum::<f64>();
    sq_dist(&a.mean, &b.mean) + tr(a) + tr(b)
}

/// Eigenvalues of a PSD matrix, exactly 0 one time in three (rank-deficient).
fn eigenvalue() -> impl Strategy<Value = f64> {
    prop_oneof![1 => Just(0.0), 2 => 1e-3f64..10.0]
}

/// Means μ₁, μ₂, eigenvalues of Σ₁ and of Σ₂, and a raw matrix for the common eigenvectors.
type CommutingCase = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

fn commuting_case() -> impl Strategy<Value = CommutingCase> {
    (1usize..=6).prop_flat_map(|d| {
        (
            prop::collection::vec(-3.0f64..3.0, d),
            prop::collection::vec(-3.0f64..3.0, d),
            prop::collection::vec(eigenvalue(), d),
            prop::collection::vec(eigenvalue(), d),
            prop::collection::vec(-1.0f64..1.0, d * d),
        )
    })
}

fn check_commuting(mu1: Vec<f64>, mu2: Vec<f64>, l1: &[f64], l2: &[f64], q: &[f64]) -> Result<(), TestCaseError> {
    let expected = sq_dist(&mu1, &mu2)
        + l1.iter()
            .zip(l2)
            .map(|(a, b)| (a.sqrt() - b.sqrt()).powi(2))
            .sum::<f64>();
    let a = stats(mu1, congruence(q, l1));
    let b = stats(mu2, congruence(q, l2));
    let got = frechet_distance(&a, &b).map_err(fail)?;
    let tol = FD_REL_TOL * scale(&a, &b) + 1e-12;
    prop_assert!(
        (got - expected).abs() <= tol,
        "FD {got} vs closed form {expected} (tol {tol})"
    );
    Ok(())
}

/// Random rows: `n` in 2..=10, `dim` in 1..=6, so often `n ≤ dim` (rank-deficient covariance).
fn rows_case() -> impl Strategy<Value = (Vec<f64>, usize)> {
    (1usize..=6, 2usize..=10).prop_flat_map(|(d, n)| (prop::collection::vec(-5.0f64..5.0, n * d), Just(d)))
}

/// Two samples of `dim` columns, `n`, `m` rows in `min_rows..=max_rows`.
fn two_samples(min_rows: usize, max_rows: usize) -> impl Strategy<Value = (Vec<f64>, Vec<f64>, usize)> {
    (1usize..=4, min_rows..=max_rows, min_rows..=max_rows).prop_flat_map(|(d, n, m)| {
        (
            prop::collection::vec(-3.0f64..3.0, n * d),
            prop::collection::vec(-3.0f64..3.0, m * d),
            Just(d),
        )
    })
}

/// MMD²_u written from its definition, with `exp` of direct differences.
fn brute_mmd2(x: &[f64], y: &[f64], d: usize, h: f64) -> f64 {
    let k = |a: &[f64], b: &[f64]| (-sq_dist(a, b) / (2.0 * h * h)).exp();
    let xs: Vec<&[f64]> = x.chunks(d).collect();
    let ys: Vec<&[f64]> = y.chunks(d).collect();
    let (n, m) = (xs.len() as f64, ys.len() as f64);
    let mut xx = 0.0;
    for (i, a) in xs.iter().enumerate() {
        for (j, b) in xs.iter().enumerate() {
            if i != j {
                xx += k(a, b);
            }
        }
    }
    let mut yy = 0.0;
    for (i, a) in ys.iter().enumerate() {
        for (j, b) in ys.iter().enumerate() {
            if i != j {
                yy += k(a, b);
            }
        }
    }
    let mut xy = 0.0;
    for a in &xs {
        for b in &ys {
            xy += k(a, b);
        }
    }
    xx / (n * (n - 1.0)) + yy / (m * (m - 1.0)) - 2.0 * xy / (n * m)
}

/// The median of all pairwise distances `i < j` of the pooled rows, by sorting.
fn brute_median(x: &[f64], y: &[f64], d: usize) -> f64 {
    let pooled: Vec<&[f64]> = x.chunks(d).chain(y.chunks(d)).collect();
    let mut dists = Vec::new();
    for i in 0..pooled.len() {
        for j in i + 1..pooled.len() {
            dists.push(sq_dist(pooled[i], pooled[j]).sqrt());
        }
    }
    dists.sort_by(f64::total_cmp);
    let p = dists.len();
    0.5 * (dists[(p - 1) / 2] + dists[p / 2])
}

/// Improved precision and recall by brute force: radii by sorting each
/// point's distances to the other points of its set.
fn brute_pr(real: &[f64], fake: &[f64], d: usize, k: usize) -> PrecisionRecall {
    let radii = |set: &[&[f64]]| -> Vec<f64> {
        (0..set.len())
            .map(|i| {
                let mut ds: Vec<f64> = (0..set.len())
                    .filter(|&j| j != i)
                    .map(|j| sq_dist(set[i], set[j]).sqrt())
                    .collect();
                ds.sort_by(f64::total_cmp);
                ds[k - 1]
            })
            .collect()
    };
    let inside = |points: &[&[f64]], centres: &[&[f64]], r: &[f64]| {
        points
            .iter()
            .filter(|p| centres.iter().zip(r).any(|(c, r)| sq_dist(p, c).sqrt() <= *r))
            .count() as f64
            / points.len() as f64
    };
    let real: Vec<&[f64]> = real.chunks(d).collect();
    let fake: Vec<&[f64]> = fake.chunks(d).collect();
    PrecisionRecall {
        precision: inside(&fake, &real, &radii(&real)),
        recall: inside(&real, &fake, &radii(&fake)),
    }
}

proptest! {
    #![proptest_config(config())]

    /// Diagonal covariances: FD = ‖μ₁ − μ₂‖² + Σ (√λ₁ᵢ − √λ₂ᵢ)², zeros included.
    #[test]
    fn prop_frechet_diagonal_closed_form((mu1, mu2, l1, l2, _raw) in commuting_case()) {
        let d = l1.len();
        let identity: Vec<f64> = (0..d * d).map(|k| f64::from(u8::from(k / d == k % d))).collect();
        check_commuting(mu1, mu2, &l1, &l2, &identity)?;
    }

    /// Covariances co-diagonalised by a random orthogonal matrix (rank-deficient included).
    #[test]
    fn prop_frechet_commuting_closed_form((mu1, mu2, l1, l2, raw) in commuting_case()) {
        let q = orthogonal(&raw, l1.len());
        check_commuting(mu1, mu2, &l1, &l2, &q)?;
    }

    /// FD(P, P) = 0 for covariances of random rows (rank-deficient when n ≤ dim).
    #[test]
    fn prop_frechet_self_is_zero((rows, dim) in rows_case()) {
        let p = GaussianStats::from_rows(&rows, dim).map_err(fail)?;
        let fd = frechet_distance(&p, &p).map_err(fail)?;
        prop_assert!(fd.abs() <= FD_REL_TOL * scale(&p, &p) + 1e-12, "FD(P, P) = {fd}");
    }

    /// FD(P, Q) = FD(Q, P).
    #[test]
    fn prop_frechet_symmetric((rows, dim) in rows_case(), split in 0.0f64..1.0) {
        let n = rows.len() / dim;
        prop_assume!(n >= 4);
        let cut = (2 + (split * (n - 3) as f64) as usize).min(n - 2);
        let p = GaussianStats::from_rows(&rows[..cut * dim], dim).map_err(fail)?;
        let q = GaussianStats::from_rows(&rows[cut * dim..], dim).map_err(fail)?;
        let pq = frechet_distance(&p, &q).map_err(fail)?;
        let qp = frechet_distance(&q, &p).map_err(fail)?;
        prop_assert!((pq - qp).abs() <= FD_REL_TOL * scale(&p, &q) + 1e-12, "{pq} vs {qp}");
    }

    /// The covariance equals the textbook double sum with n − 1.
    #[test]
    fn prop_covariance_matches_definition((rows, dim) in rows_case()) {
        let s = GaussianStats::from_rows(&rows, dim).map_err(fail)?;
        let n = rows.len() / dim;
        for i in 0..dim {
            let mean_i = (0..n).map(|r| rows[r * dim + i]).sum::<f64>() / n as f64;
            prop_assert!((s.mean[i] - mean_i).abs() <= 1e-12);
            for j in 0..dim {
                let mean_j = (0..n).map(|r| rows[r * dim + j]).sum::<f64>() / n as f64;
                let c = (0..n).map(|r| (rows[r * dim + i] - mean_i) * (rows[r * dim + j] - mean_j)).sum::<f64>()
                    / (n - 1) as f64;
                prop_assert!((s.cov[i * dim + j] - c).abs() <= 1e-11, "cov[{i},{j}] {} vs {c}", s.cov[i * dim + j]);
            }
        }
    }

    /// MMD²_u equals the brute-force double sums of its definition.
    #[test]
    fn prop_mmd2_matches_brute_force((x, y, d) in two_samples(2, 8), h in 0.1f64..5.0) {
        let got = mmd2_unbiased(&x, &y, d, h).map_err(fail)?;
        let expected = brute_mmd2(&x, &y, d, h);
        prop_assert!((got - expected).abs() <= 1e-10, "{got} vs {expected}");
    }

    /// The median heuristic equals sorting all pooled pairwise distances.
    #[test]
    fn prop_median_bandwidth_matches_sorting((x, y, d) in two_samples(1, 10)) {
        let got = median_bandwidth(&x, &y, d).map_err(fail)?;
        let expected = brute_median(&x, &y, d);
        prop_assert!((got - expected).abs() <= 1e-9 * expected, "{got} vs {expected}");
    }

    /// Precision and recall equal a brute-force O(n²) implementation.
    #[test]
    fn prop_knn_precision_recall_matches_brute_force((x, y, d) in two_samples(5, 14), k in 1usize..=4) {
        let got = knn_precision_recall(&x, &y, d, k).map_err(fail)?;
        prop_assert_eq!(got, brute_pr(&x, &y, d, k));
    }

    /// Identical sets have precision and recall 1; far-apart ones 0.
    #[test]
    fn prop_knn_identical_and_far_apart((x, _y, d) in two_samples(5, 14), k in 1usize..=4) {
        let same = knn_precision_recall(&x, &x, d, k).map_err(fail)?;
        prop_assert_eq!(same, PrecisionRecall { precision: 1.0, recall: 1.0 });
        let far: Vec<f64> = x.iter().map(|v| v + 1e3).collect();
        let apart = knn_precision_recall(&x, &far, d, k).map_err(fail)?;
        prop_assert_eq!(apart, PrecisionRecall { precision: 0.0, recall: 0.0 });
    }
}

/// Over many independent draws from one distribution the unbiased MMD² is
/// centred on 0: the mean of 400 estimates is within 4 standard errors.
#[test]
fn mmd2_unbiased_has_mean_zero_under_the_null() {
    let mut rng = StdRng::seed_from_u64(7);
    let (n, d, h) = (20, 3, 1.5);
    let draw = |rng: &mut StdRng| {
        (0..n * d)
            .map(|_| rng.sample::<f64, _>(StandardNormal))
            .collect::<Vec<_>>()
    };
    let estimates: Vec<f64> = (0..400)
        .map(|_| {
            let x = draw(&mut rng);
            let y = draw(&mut rng);
            mmd2_unbiased(&x, &y, d, h).unwrap()
        })
        .collect();
    let count = estimates.len() as f64;
    let mean = estimates.iter().sum::<f64>() / count;
    let var = estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (count - 1.0);
    let se = (var / count).sqrt();
    assert!(mean.abs() < 4.0 * se, "mean {mean}, standard error {se}");
    // The biased V-statistic would sit well above 0: the estimator must not.
    assert!(se > 0.0);
}

/// More than 2²³ pairs: the histogram passes narrow the candidates before the
/// selection; three clusters of equal points make a bin of equal values.
#[test]
fn median_bandwidth_large_samples_match_sorting() {
    let mut rng = StdRng::seed_from_u64(11);
    let d = 3;
    let x: Vec<f64> = (0..2200 * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let y: Vec<f64> = (0..2000 * d).map(|_| rng.random_range(0.0..3.0)).collect();
    let got = median_bandwidth(&x, &y, d).unwrap();
    let expected = brute_median(&x, &y, d);
    assert!((got - expected).abs() <= 1e-9 * expected, "{got} vs {expected}");

    let centres = [[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 10.0]];
    let clusters: Vec<f64> = (0..4200).flat_map(|i| centres[i % 3]).collect();
    let got = median_bandwidth(&clusters[..2100 * d], &clusters[2100 * d..], d).unwrap();
    let expected = brute_median(&clusters[..2100 * d], &clusters[2100 * d..], d);
    assert_eq!(expected, 5.0);
    assert!((got - expected).abs() <= 1e-9 * expected, "{got} vs {expected}");
}

/// Time of the two heavy metrics on 10,000 × 512 features against 10,000 × 512
/// (the classifier's penultimate layer): run with
/// `cargo test --release -p deepgen-numerics --test sample_metrics -- --ignored --nocapture`.
#[test]
#[ignore = "timing on 2 × 10,000 × 512 features, seconds in release mode"]
fn timing_10k_by_512() {
    let (n, d) = (10_000, 512);
    let mut rng = StdRng::seed_from_u64(3);
    let real: Vec<f64> = (0..n * d).map(|_| rng.sample(StandardNormal)).collect();
    let fake: Vec<f64> = (0..n * d).map(|_| 0.1 + rng.sample::<f64, _>(StandardNormal)).collect();
    let start = std::time::Instant::now();
    let a = GaussianStats::from_rows(&real, d).unwrap();
    let b = GaussianStats::from_rows(&fake, d).unwrap();
    let stats_time = start.elapsed();
    let start = std::time::Instant::now();
    let fd = frechet_distance(&a, &b).unwrap();
    let fd_time = start.elapsed();
    let start = std::time::Instant::now();
    let pr = knn_precision_recall(&real, &fake, d, 3).unwrap();
    let pr_time = start.elapsed();
    let start = std::time::Instant::now();
    let mmd = mmd2_unbiased(&real, &fake, d, 32.0).unwrap();
    let mmd_time = start.elapsed();
    println!(
        "threads {}: GaussianStats::from_rows ×2 {stats_time:?}; frechet_distance {fd_time:?} (FD {fd:.4}); \
         knn_precision_recall k=3 {pr_time:?} ({pr:?}); mmd2_unbiased {mmd_time:?} ({mmd:.3e})",
        rayon::current_num_threads()
    );
}
