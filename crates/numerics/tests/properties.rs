//! Property tests (proptest) of the identities the crate promises.
//!
//! One `check_*` helper per identity, returning `Result<(), TestCaseError>`;
//! the `prop_*` tests feed them small random inputs (lengths ≤ 64, ≤ 8 rows).
//! References are plain two-pass `f64` computations with `std`'s `exp`/`ln`,
//! independent of the crate's kernel.

use candle::{DType, Device, Tensor, Var};
use deepgen_numerics::{
    FDivergence, kl_divergence, log_sigmoid, logsumexp, logsumexp_dims, logsumexp_f32, logsumexp_f64,
    logsumexp_signed_f64, logsumexp_weighted_f64, softplus,
};
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};

/// Relative tolerance for `f64` identities.
const F64_REL_TOL: f64 = 1e-12;
/// Absolute tolerance for `f64` identities (results near 0).
const F64_ABS_TOL: f64 = 1e-12;
/// Relative tolerance of an `f32` logsumexp against the `f64` reference (SPEC §1).
const F32_REL_TOL: f64 = 1e-6;
/// Absolute tolerance of the `f32` comparison, for references near 0.
const F32_ABS_TOL: f64 = 1e-7;

/// Seed of the case generator unless `PROPTEST_RNG_SEED` sets one, so runs
/// are reproducible (STYLE §7).
const PROPTEST_SEED: u64 = 0x5eed_0000_d33b_9e11;

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

fn close(got: f64, expected: f64, rel: f64, abs: f64) -> bool {
    (got - expected).abs() <= rel * expected.abs() + abs
}

/// Two-pass logsumexp in f64 with `std` functions.
fn reference_lse(x: &[f64]) -> f64 {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + x.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

fn finite_vec(max_len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-100.0f64..100.0, 1..=max_len)
}

/// f32 values over a wide range, with occasional `-inf`.
fn f32_value() -> impl Strategy<Value = f32> + Clone {
    prop_oneof![
        4 => -50.0f32..50.0,
        2 => -1e4f32..1e4,
        1 => -1e30f32..1e30,
        1 => Just(f32::NEG_INFINITY),
    ]
}

/// A `rows × cols` matrix (rows ≤ 8, cols ≤ 64) of `values`, row-major.
fn matrix_of<S: Strategy<Value = f32> + Clone>(values: S) -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
    (1usize..=8, 1usize..=64).prop_flat_map(move |(rows, cols)| {
        prop::collection::vec(values.clone(), rows * cols).prop_map(move |v| (rows, cols, v))
    })
}

fn f32_matrix() -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
    matrix_of(f32_value())
}

/// Rows whose terms all matter and whose logsumexp is near 0 (about −4 to 4),
/// where a relative tolerance is tightest.
fn narrow_f32_matrix() -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
    matrix_of(-6.0f32..2.0)
}

/// A probability vector of length `n`, possibly with zeros.
fn distribution(n: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(prop_oneof![1 => Just(0.0), 4 => 0.0f64..1.0], n).prop_filter_map("all-zero weights", |w| {
        let total: f64 = w.iter().sum();
        (total > 1e-6).then(|| w.iter().map(|v| v / total).collect())
    })
}

fn distribution_pair() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    (1usize..=16).prop_flat_map(|n| (distribution(n), distribution(n)))
}

// ---- checks ----

/// `lse(x + c) = lse(x) + c`, on slices and on f64 tensors.
fn check_shift_invariance(x: &[f64], c: f64) -> Result<(), TestCaseError> {
    let shifted: Vec<f64> = x.iter().map(|v| v + c).collect();
    let lhs = logsumexp_f64(&shifted);
    let rhs = logsumexp_f64(x) + c;
    // x_i + c is rounded: allow a few ulps of |x| + |c|.
    let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs())) + c.abs();
    prop_assert!(
        close(lhs, rhs, F64_REL_TOL, F64_REL_TOL * scale + F64_ABS_TOL),
        "slice: {lhs} vs {rhs}"
    );
    let t = Tensor::new(x, &Device::Cpu).map_err(fail)?;
    let t_lhs = logsumexp(&(&t + c).map_err(fail)?, 0)
        .and_then(|v| Ok(v.to_scalar::<f64>()?))
        .map_err(fail)?;
    prop_assert!(
        close(t_lhs, rhs, F64_REL_TOL, F64_REL_TOL * scale + F64_ABS_TOL),
        "tensor: {t_lhs} vs {rhs}"
    );
    Ok(())
}

/// `max x ≤ lse(x) ≤ max x + ln n`.
fn check_bounds(x: &[f64]) -> Result<(), TestCaseError> {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = logsumexp_f64(x);
    let slack = F64_REL_TOL * max.abs() + F64_ABS_TOL;
    prop_assert!(lse >= max - slack, "{lse} < max {max}");
    prop_assert!(lse <= max + (x.len() as f64).ln() + slack, "{lse} > max + ln n");
    Ok(())
}

/// The f32 tensor result (and the f32 slice result) is within
/// `F32_REL_TOL` of the f64 reference wherever that reference is finite.
fn check_f32_matches_f64_reference(rows: usize, cols: usize, values: &[f32]) -> Result<(), TestCaseError> {
    let t = Tensor::from_vec(values.to_vec(), (rows, cols), &Device::Cpu).map_err(fail)?;
    let got = logsumexp(&t, 1).and_then(|v| Ok(v.to_vec1::<f32>()?)).map_err(fail)?;
    for (r, (row, &g)) in values.chunks(cols).zip(&got).enumerate() {
        let row64: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        let reference = reference_lse(&row64);
        let slice_value = logsumexp_f32(row);
        if reference.is_finite() {
            prop_assert!(
                close(f64::from(g), reference, F32_REL_TOL, F32_ABS_TOL),
                "row {r}: {g} vs {reference}"
            );
            prop_assert!(close(f64::from(slice_value), reference, F32_REL_TOL, F32_ABS_TOL));
        } else {
            prop_assert_eq!(f64::from(g), reference, "row {}", r);
            prop_assert_eq!(f64::from(slice_value), reference);
        }
    }
    Ok(())
}

/// `∂ lse(x_r) / ∂ x_r = softmax(x_r)`, summing to 1 per row (0 for all `-inf` rows).
fn check_gradient_is_softmax(rows: usize, cols: usize, values: &[f64], dtype: DType) -> Result<(), TestCaseError> {
    let t = Tensor::from_vec(values.to_vec(), (rows, cols), &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .map_err(fail)?;
    let x = Var::from_tensor(&t).map_err(fail)?;
    let y = logsumexp(x.as_tensor(), 1).map_err(fail)?;
    let grads = y.sum_all().and_then(|s| s.backward()).map_err(fail)?;
    let grad = grads
        .get(x.as_tensor())
        .ok_or_else(|| fail("no gradient"))?
        .to_dtype(DType::F64)
        .and_then(|g| g.to_vec2::<f64>())
        .map_err(fail)?;
    let x_values = t.to_dtype(DType::F64).and_then(|t| t.to_vec2::<f64>()).map_err(fail)?;
    let tol = if dtype == DType::F32 { 1e-6 } else { 1e-13 };
    for (row, g_row) in x_values.iter().zip(&grad) {
        let lse = reference_lse(row);
        prop_assert!(g_row.iter().all(|g| g.is_finite()), "NaN/inf gradient {g_row:?}");
        if lse == f64::NEG_INFINITY {
            prop_assert!(g_row.iter().all(|&g| g == 0.0));
            continue;
        }
        // softmax = e^{x − max} / Σ e^{x − max}: exact to rounding even when
        // |x| is large (e^{x − lse} would inherit the rounding of lse).
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = row.iter().map(|v| (v - max).exp()).sum();
        for (&v, &g) in row.iter().zip(g_row) {
            let softmax = (v - max).exp() / total;
            prop_assert!(close(g, softmax, tol, tol * 1e-3), "grad {g} vs softmax {softmax}");
        }
        let total: f64 = g_row.iter().sum();
        prop_assert!((total - 1.0).abs() < tol * cols as f64, "row sums to {total}");
    }
    Ok(())
}

/// Reducing two dims at once equals reducing them one after the other.
fn check_multi_dim_is_iterated(values: &[f64], a: usize, b: usize, c: usize) -> Result<(), TestCaseError> {
    let t = Tensor::from_vec(values.to_vec(), (a, b, c), &Device::Cpu).map_err(fail)?;
    let at_once = logsumexp_dims(&t, &[0, 2], false)
        .and_then(|v| Ok(v.to_vec1::<f64>()?))
        .map_err(fail)?;
    let iterated = logsumexp(&t, 2)
        .and_then(|v| logsumexp(&v, 0))
        .and_then(|v| Ok(v.to_vec1::<f64>()?))
        .map_err(fail)?;
    for (x, y) in at_once.iter().zip(&iterated) {
        prop_assert!(close(*x, *y, F64_REL_TOL, F64_ABS_TOL), "{x} vs {y}");
    }
    Ok(())
}

/// For positive weights, `log Σ b e^x = lse(x + ln b)`; the signed form
/// agrees with a direct sum.
fn check_weighted_and_signed(x: &[f64], b: &[f64]) -> Result<(), TestCaseError> {
    let positive: Vec<f64> = b.iter().map(|v| v.abs() + 1e-3).collect();
    let weighted = logsumexp_weighted_f64(x, &positive).map_err(fail)?;
    let shifted: Vec<f64> = x.iter().zip(&positive).map(|(xi, bi)| xi + bi.ln()).collect();
    let expected = reference_lse(&shifted);
    prop_assert!(
        close(weighted, expected, F64_REL_TOL, F64_ABS_TOL),
        "{weighted} vs {expected}"
    );
    // Signed: compare sign·e^value with the direct sum (x ∈ [-100, 100] keeps it finite).
    let (value, sign) = logsumexp_signed_f64(x, b).map_err(fail)?;
    let direct: f64 = x.iter().zip(b).map(|(xi, bi)| bi * xi.exp()).sum();
    let magnitude: f64 = x.iter().zip(b).map(|(xi, bi)| (bi * xi.exp()).abs()).sum();
    let reconstructed = sign * value.exp();
    prop_assert!(
        (reconstructed - direct).abs() <= 1e-12 * magnitude + f64::MIN_POSITIVE,
        "{reconstructed} vs {direct}"
    );
    Ok(())
}

/// `KL(P‖Q) ≥ 0`, `KL(P‖P) = 0`.
fn check_kl_non_negative(p: &[f64], q: &[f64]) -> Result<(), TestCaseError> {
    let kl = kl_divergence(p, q).map_err(fail)?;
    prop_assert!(kl >= -F64_ABS_TOL, "KL = {kl}");
    prop_assert_eq!(kl_divergence(p, p).map_err(fail)?, 0.0);
    Ok(())
}

/// Every f-divergence is `≥ 0`, `0` on equal inputs, and equals its generator sum.
fn check_f_divergences(p: &[f64], q: &[f64]) -> Result<(), TestCaseError> {
    for kind in FDivergence::ALL {
        let d = kind.divergence(p, q).map_err(fail)?;
        prop_assert!(d >= -F64_ABS_TOL, "{kind:?} = {d}");
        let same = kind.divergence(p, p).map_err(fail)?;
        prop_assert!(same.abs() <= F64_ABS_TOL, "{kind:?}(p, p) = {same}");
        let generic = deepgen_numerics::f_divergence(p, q, |t| kind.generator(t), kind.limit_slope()).map_err(fail)?;
        prop_assert!(
            d == generic || close(d, generic, 1e-9, 1e-12),
            "{kind:?}: {d} vs {generic}"
        );
    }
    Ok(())
}

/// `softplus(x) − softplus(−x) = x` and `log σ(x) − log σ(−x) = x`.
fn check_softplus_identities(x: &[f64]) -> Result<(), TestCaseError> {
    let t = Tensor::new(x, &Device::Cpu).map_err(fail)?;
    let neg = t.neg().map_err(fail)?;
    let to_vec = |r: deepgen_numerics::Result<Tensor>| r.and_then(|v| Ok(v.to_vec1::<f64>()?)).map_err(fail);
    let (sp, sp_neg) = (to_vec(softplus(&t))?, to_vec(softplus(&neg))?);
    let (ls, ls_neg) = (to_vec(log_sigmoid(&t))?, to_vec(log_sigmoid(&neg))?);
    for i in 0..x.len() {
        let scale = x[i].abs().max(1.0);
        prop_assert!(close(sp[i] - sp_neg[i], x[i], F64_REL_TOL, F64_ABS_TOL * scale));
        prop_assert!(close(ls[i] - ls_neg[i], x[i], F64_REL_TOL, F64_ABS_TOL * scale));
        prop_assert!(sp[i] >= 0.0 && ls[i] <= 0.0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_shift_invariance(x in finite_vec(64), c in -1e3f64..1e3) {
        check_shift_invariance(&x, c)?;
    }

    #[test]
    fn prop_bounded_by_max_and_max_plus_ln_n(x in finite_vec(64)) {
        check_bounds(&x)?;
    }

    #[test]
    fn prop_bounded_at_large_magnitudes(x in prop::collection::vec(-1e300f64..1e300, 1..=64)) {
        check_bounds(&x)?;
    }

    #[test]
    fn prop_f32_within_1e6_of_f64_reference((rows, cols, values) in f32_matrix()) {
        check_f32_matches_f64_reference(rows, cols, &values)?;
    }

    #[test]
    fn prop_f32_within_1e6_of_f64_reference_near_zero((rows, cols, values) in narrow_f32_matrix()) {
        check_f32_matches_f64_reference(rows, cols, &values)?;
    }

    #[test]
    fn prop_gradient_is_softmax_f64((rows, cols, values) in f32_matrix()) {
        let values: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
        check_gradient_is_softmax(rows, cols, &values, DType::F64)?;
    }

    #[test]
    fn prop_gradient_is_softmax_f32((rows, cols, values) in f32_matrix()) {
        let values: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
        check_gradient_is_softmax(rows, cols, &values, DType::F32)?;
    }

    #[test]
    fn prop_multi_dim_equals_iterated(
        (a, b, c, values) in (1usize..=4, 1usize..=4, 1usize..=8).prop_flat_map(|(a, b, c)| {
            prop::collection::vec(-50.0f64..50.0, a * b * c).prop_map(move |v| (a, b, c, v))
        })
    ) {
        check_multi_dim_is_iterated(&values, a, b, c)?;
    }

    #[test]
    fn prop_weighted_and_signed_match_direct_sums(
        (x, b) in (1usize..=32).prop_flat_map(|n| (
            prop::collection::vec(-100.0f64..100.0, n),
            prop::collection::vec(-3.0f64..3.0, n),
        ))
    ) {
        check_weighted_and_signed(&x, &b)?;
    }

    #[test]
    fn prop_kl_non_negative((p, q) in distribution_pair()) {
        check_kl_non_negative(&p, &q)?;
    }

    #[test]
    fn prop_f_divergences_non_negative((p, q) in distribution_pair()) {
        check_f_divergences(&p, &q)?;
    }

    #[test]
    fn prop_softplus_identities(x in prop::collection::vec(-1e4f64..1e4, 1..=64)) {
        check_softplus_identities(&x)?;
    }
}
