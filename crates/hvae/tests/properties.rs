//! Property tests: the closed-form top-layer KL against Monte Carlo, the
//! free-bits floor, and the KL schedules.

use candle::{DType, Device, Tensor};
use deepgen_core::rng::rng_from_seed;
use deepgen_hvae::{ElboTerms, FreeBits, KlSchedule, hvae_loss, kl_standard_normal_units};
use deepgen_numerics::DiagGaussian;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError};
use rand_distr::{Distribution, StandardNormal};

/// Seed of the case generator unless `PROPTEST_RNG_SEED` sets one.
const PROPTEST_SEED: u64 = 0x5eed_0000_0000_00a5;
/// Absolute tolerance of identities that hold up to f64 rounding.
const F64_TOL: f64 = 1e-10;
/// Monte Carlo draws per unit in the KL check.
const KL_DRAWS: usize = 20_000;

fn config(cases: u32) -> Config {
    let rng_seed = match std::env::var("PROPTEST_RNG_SEED") {
        Ok(s) => RngSeed::Fixed(s.parse().unwrap_or(PROPTEST_SEED)),
        Err(_) => RngSeed::Fixed(PROPTEST_SEED),
    };
    Config {
        cases,
        rng_seed,
        failure_persistence: None,
        ..Config::default()
    }
}

fn tc<E: std::fmt::Display>(e: E) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn scalar(t: &Tensor) -> Result<f64, TestCaseError> {
    t.to_dtype(DType::F64).and_then(|t| t.to_scalar::<f64>()).map_err(tc)
}

/// Per unit, `KL(N(μ, σ²) ‖ N(0, 1))` in closed form lies within 5 standard
/// errors of the mean of `log N(z; μ, σ²) − log N(z; 0, 1)` over 20,000
/// draws `z = μ + σ ε` (densities written out here); the units sum to
/// deepgen-numerics' `kl_standard_normal`.
fn check_kl_matches_monte_carlo(mean: &[f64], log_var: &[f64], seed: u64) -> Result<(), TestCaseError> {
    let dev = Device::Cpu;
    let z = mean.len();
    let m = Tensor::from_slice(mean, (1, z), &dev).map_err(tc)?;
    let lv = Tensor::from_slice(log_var, (1, z), &dev).map_err(tc)?;
    let units = kl_standard_normal_units(&m, &lv)
        .map_err(tc)?
        .flatten_all()
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(tc)?;
    let total = DiagGaussian::new(m, lv)
        .and_then(|q| q.kl_standard_normal())
        .map_err(tc)?;
    let total = scalar(&total.sum_all().map_err(tc)?)?;
    prop_assert!((units.iter().sum::<f64>() - total).abs() < F64_TOL * (1.0 + total.abs()));
    let mut rng = rng_from_seed(seed);
    for ((&mu, &lv), &closed) in mean.iter().zip(log_var).zip(&units) {
        let sd = (0.5 * lv).exp();
        let ratios: Vec<f64> = (0..KL_DRAWS)
            .map(|_| {
                let eps: f64 = StandardNormal.sample(&mut rng);
                let z = mu + sd * eps;
                // log N(z; μ, σ²) − log N(z; 0, 1) = −½ (log σ² + ε²) + ½ z².
                -0.5 * (lv + eps * eps) + 0.5 * z * z
            })
            .collect();
        let n = KL_DRAWS as f64;
        let mc = ratios.iter().sum::<f64>() / n;
        let se = (ratios.iter().map(|r| (r - mc).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
        prop_assert!(closed >= -F64_TOL, "negative KL {closed}");
        prop_assert!(
            (mc - closed).abs() < 5.0 * se + F64_TOL,
            "μ = {mu}, log σ² = {lv}: closed form {closed}, Monte Carlo {mc} ± {se}"
        );
    }
    Ok(())
}

/// The free-bits KL term never falls below `λ` per group, never below the
/// plain KL, equals the plain KL when every group is above `λ`, and flows
/// into the loss as `recon + β (kl1_objective + kl2_objective)`.
fn check_free_bits(
    kl1: &[f64],
    kl2: &[f64],
    rows: usize,
    lambda: f64,
    group: usize,
    beta: f64,
) -> Result<(), TestCaseError> {
    let dev = Device::Cpu;
    let z1 = kl1.len() / rows;
    let z2 = kl2.len() / rows;
    let kl1_units = Tensor::from_slice(kl1, (1, rows, z1), &dev).map_err(tc)?;
    let kl2_units = Tensor::from_slice(kl2, (1, rows, z2), &dev).map_err(tc)?;
    let free_bits = FreeBits::new(lambda, group).map_err(tc)?;
    for (units, z) in [(&kl1_units, z1), (&kl2_units, z2)] {
        let floored = scalar(&free_bits.objective(units).map_err(tc)?)?;
        let plain = scalar(&FreeBits::OFF.objective(units).map_err(tc)?)?;
        let groups = free_bits.n_groups(z) as f64;
        prop_assert!(
            floored >= lambda * groups - F64_TOL,
            "{floored} < λ·groups = {}",
            lambda * groups
        );
        prop_assert!(floored >= plain - F64_TOL, "{floored} below the plain KL {plain}");
        // Shifting every unit up so each group's mean exceeds λ removes the floor.
        let lifted = (units + lambda).map_err(tc)?;
        let floored = scalar(&free_bits.objective(&lifted).map_err(tc)?)?;
        let plain_lifted = scalar(&FreeBits::OFF.objective(&lifted).map_err(tc)?)?;
        let all_above = {
            let means: Vec<f64> = (0..z)
                .map(|u| (0..rows).map(|r| units_value(units, r, u)).sum::<f64>() / rows as f64 + lambda)
                .collect();
            means.chunks(group.min(z)).all(|g| g.iter().sum::<f64>() >= lambda)
        };
        if all_above {
            prop_assert!((floored - plain_lifted).abs() < 1e-9 * (1.0 + plain_lifted.abs()));
        }
    }
    let terms = ElboTerms {
        log_likelihood: Tensor::from_slice(&vec![-3.0f64; rows], (1, rows), &dev).map_err(tc)?,
        kl1_units: kl1_units.clone(),
        kl2_units: kl2_units.clone(),
    };
    let loss = hvae_loss(&terms, beta, free_bits).map_err(tc)?;
    let (total, recon) = (scalar(&loss.total)?, scalar(&loss.recon)?);
    let (o1, o2) = (scalar(&loss.kl1_objective)?, scalar(&loss.kl2_objective)?);
    prop_assert!((recon - 3.0).abs() < F64_TOL);
    prop_assert!(o1 >= lambda * free_bits.n_groups(z1) as f64 - F64_TOL);
    prop_assert!(o2 >= lambda * free_bits.n_groups(z2) as f64 - F64_TOL);
    prop_assert!((total - (recon + beta * (o1 + o2))).abs() < 1e-9 * (1.0 + total.abs()));
    // The reported KLs are the plain ones, whatever the floor.
    let plain = hvae_loss(&terms, 1.0, FreeBits::OFF).map_err(tc)?;
    prop_assert!((scalar(&loss.kl1)? - scalar(&plain.kl1)?).abs() < F64_TOL);
    prop_assert!((scalar(&plain.total)? - scalar(&plain.negative_elbo().map_err(tc)?)?).abs() < 1e-9);
    Ok(())
}

fn units_value(units: &Tensor, row: usize, unit: usize) -> f64 {
    units
        .get(0)
        .and_then(|t| t.get(row))
        .and_then(|t| t.get(unit))
        .and_then(|t| t.to_scalar::<f64>())
        .unwrap_or(f64::NAN)
}

/// Linear warm-up: `β(0) = 0`, non-decreasing, in `[0, 1]`, exactly 1 from
/// `warmup` on and below 1 just before it.
fn check_linear_warmup(warmup: f64, mut times: Vec<f64>) -> Result<(), TestCaseError> {
    let s = KlSchedule::Linear { warmup };
    times.sort_by(f64::total_cmp);
    let betas: Vec<f64> = times.iter().map(|&t| s.beta(t)).collect();
    prop_assert!(betas.windows(2).all(|w| w[0] <= w[1]), "not monotone: {betas:?}");
    prop_assert!(betas.iter().all(|b| (0.0..=1.0).contains(b)));
    prop_assert_eq!(s.beta(0.0), 0.0);
    prop_assert_eq!(s.beta(warmup), 1.0);
    prop_assert_eq!(s.beta(warmup * 1.5 + 1.0), 1.0);
    prop_assert!(s.beta(warmup * (1.0 - 1e-6)) < 1.0);
    // The warning appears exactly when the run is shorter than the warm-up.
    let short = (warmup.ceil() as usize).saturating_sub(1);
    prop_assert_eq!(s.warning(short).is_some(), (short as f64) < warmup);
    prop_assert!(s.warning(warmup.ceil() as usize).is_none());
    Ok(())
}

/// Cyclical: in `[0, 1]`, periodic, rising within a cycle, 1 from
/// `ramp · period` to the end of the cycle.
fn check_cyclical(period: f64, ramp: f64, t: f64) -> Result<(), TestCaseError> {
    let s = KlSchedule::Cyclical { period, ramp };
    let b = s.beta(t);
    prop_assert!((0.0..=1.0).contains(&b));
    let cycle_start = (t / period).floor() * period;
    let within = t - cycle_start;
    let next = s.beta(cycle_start + period + within);
    prop_assert!((b - next).abs() < 1e-6, "β({t}) = {b}, a period later {next}");
    prop_assert!(s.beta(cycle_start + ramp * period) > 1.0 - 1e-9);
    let later = cycle_start + within + (period - within) * 0.5;
    prop_assert!(
        s.beta(later) >= b - 1e-9,
        "β fell within a cycle: {b} → {}",
        s.beta(later)
    );
    Ok(())
}

fn kl_case() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, u64)> {
    (1usize..=4).prop_flat_map(|z| {
        (
            prop::collection::vec(-3.0f64..3.0, z),
            prop::collection::vec(-3.0f64..2.0, z),
            any::<u64>(),
        )
    })
}

fn free_bits_case() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, usize, f64, usize, f64)> {
    (1usize..=5, 1usize..=6, 1usize..=4).prop_flat_map(|(rows, z1, z2)| {
        (
            prop::collection::vec(-1.0f64..3.0, rows * z1),
            prop::collection::vec(0.0f64..3.0, rows * z2),
            Just(rows),
            0.01f64..2.0,
            1usize..=7,
            0.0f64..=1.0,
        )
    })
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn prop_analytic_kl_equals_monte_carlo((mean, log_var, seed) in kl_case()) {
        check_kl_matches_monte_carlo(&mean, &log_var, seed)?;
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn prop_free_bits_floor_the_kl_term((kl1, kl2, rows, lambda, group, beta) in free_bits_case()) {
        check_free_bits(&kl1, &kl2, rows, lambda, group, beta)?;
    }

    #[test]
    fn prop_linear_warmup_is_monotone_and_hits_one(warmup in 0.05f64..50.0, times in prop::collection::vec(0.0f64..100.0, 1..20)) {
        check_linear_warmup(warmup, times)?;
    }

    #[test]
    fn prop_cyclical_schedule_is_periodic(period in 0.5f64..20.0, ramp in 0.05f64..=1.0, t in 0.0f64..100.0) {
        check_cyclical(period, ramp, t)?;
    }
}
