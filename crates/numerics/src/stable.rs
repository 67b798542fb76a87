//! Stable elementwise and softmax-family functions on tensors.
//!
//! Every function here is written with Candle tensor ops (so it runs on any
//! device and is differentiable) in a form that stays finite where the naive
//! formula overflows or cancels:
//!
//! | function | naive | stable form |
//! |---|---|---|
//! | [`log1p`] | `log(1 + t)` | `log(u) · t / (u − 1)`, `u = 1 + t` (Goldberg 1991) |
//! | [`expm1`] | `e^x − 1` | `(u − 1) · x / log u`, `u = e^x` (Kahan) |
//! | [`softplus`] | `log(1 + e^x)` | `max(x, 0) + log1p(e^{−|x|})` |
//! | [`log_sigmoid`] | `log(1 / (1 + e^{−x}))` | `−softplus(−x)` |
//! | [`log1m_exp`] | `log(1 − e^x)` | `log(−expm1 x)` if `x > −ln 2`, else `log1p(−e^x)` (Mächler 2012) |
//! | [`log_softmax`] | `x − log Σ e^x` | `(x − a) − logsumexp(x − a)`, `a = max x` |
//! | [`bce_with_logits`] | `−t log σ(l) − (1 − t) log(1 − σ(l))` | `max(l, 0) − l t + log1p(e^{−|l|})` |
//!
//! Candle has no `log1p`/`expm1`, and candle-nn's
//! `binary_cross_entropy_with_logit` computes `log σ(l)` directly, which gives
//! NaN once `σ(l)` rounds to 0 or 1 (issue 2561). The masks use `where_cond`
//! with finite placeholder inputs in the unused branch, so no NaN leaks into
//! gradients.

use candle::Tensor;
use candle::shape::Dim;

use crate::error::{Error, Result};
use crate::logsumexp::logsumexp_keepdim;

/// `log(1 + t)`, accurate for tiny `|t|` (where `1 + t` rounds to 1).
///
/// Goldberg's trick: with `u = fl(1 + t)`, `log1p(t) = log(u) · t / (u − 1)`,
/// and `t` itself when `u = 1`. `log1p(−1) = −∞`, `log1p(+∞) = +∞`, NaN for
/// `t < −1`.
///
/// # Errors
/// Candle errors only (e.g. an integer dtype).
pub fn log1p(t: &Tensor) -> Result<Tensor> {
    let huge = t.eq(f64::INFINITY)?;
    let t_finite = huge.where_cond(&t.zeros_like()?, t)?;
    let u = (&t_finite + 1.0)?;
    let d = (&u - 1.0)?;
    let tiny = d.eq(0.0)?;
    let d_safe = tiny.where_cond(&d.ones_like()?, &d)?;
    let regular = u.log()?.mul(&(&t_finite / &d_safe)?)?;
    let value = tiny.where_cond(&t_finite, &regular)?;
    Ok(huge.where_cond(t, &value)?)
}

/// `e^x − 1`, accurate for tiny `|x|` (where `e^x` rounds to 1).
///
/// Kahan's trick: with `u = fl(e^x)`, `expm1(x) = (u − 1) · x / log u`;
/// `x` when `u = 1`, `u − 1` when `u − 1 = −1` or `u = +∞`.
///
/// # Errors
/// Candle errors only.
pub fn expm1(x: &Tensor) -> Result<Tensor> {
    let u = x.exp()?;
    let u_minus_one = (&u - 1.0)?;
    let is_one = u_minus_one.eq(0.0)?;
    // u − 1 = −1 (e^x below half an ulp of 1) or u = +inf: u − 1 is exact.
    let saturated = u_minus_one.eq(-1.0)?.maximum(&u.eq(f64::INFINITY)?)?;
    let special = is_one.maximum(&saturated)?;
    // Placeholders (u, x) = (2, 1) keep the unused branch finite.
    let u_safe = special.where_cond(&(u.ones_like()? * 2.0)?, &u)?;
    let x_safe = special.where_cond(&x.ones_like()?, x)?;
    let regular = (&u_safe - 1.0)?.mul(&(&x_safe / u_safe.log()?)?)?;
    let value = saturated.where_cond(&u_minus_one, &regular)?;
    Ok(is_one.where_cond(x, &value)?)
}

/// `softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^{−|x|})`, elementwise.
///
/// Finite for every finite `x` (the naive form overflows for `x > 88` in
/// `f32`), and exact to rounding for very negative `x`, where it equals
/// `e^x`. The derivative is `σ(x)`, `½` at 0.
///
/// # Errors
/// Candle errors only.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = log1p(&x.abs()?.neg()?.exp()?)?;
    Ok((x.relu()? + tail)?)
}

/// `log(1 + e^x)`: the same function as [`softplus`], under its numerical name.
///
/// # Errors
/// Candle errors only.
pub fn log1p_exp(x: &Tensor) -> Result<Tensor> {
    softplus(x)
}

/// `log σ(x) = −softplus(−x)`, elementwise; `≈ x` for very negative `x`.
///
/// # Errors
/// Candle errors only.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(softplus(&x.neg()?)?.neg()?)
}

/// `σ(x) = 1 / (1 + e^{−x}) = exp(log σ(x))`, elementwise, without overflow.
///
/// # Errors
/// Candle errors only.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(log_sigmoid(x)?.exp()?)
}

/// `log(1 − e^x)` for `x ≤ 0`, elementwise (Mächler 2012).
///
/// `log(−expm1(x))` for `x > −ln 2`, where `1 − e^x` cancels, and
/// `log1p(−e^x)` below, where `e^x` is small. `log1m_exp(0) = −∞`,
/// `log1m_exp(−∞) = 0`; `x > 0` is outside the domain and gives NaN.
///
/// # Errors
/// Candle errors only.
pub fn log1m_exp(x: &Tensor) -> Result<Tensor> {
    let minus_ln2 = -std::f64::consts::LN_2;
    let near_zero = x.gt(minus_ln2)?;
    // Each branch sees x where it is used and −1 (finite in both) elsewhere.
    let placeholder = (x.ones_like()? * -1.0)?;
    let x_near = near_zero.where_cond(x, &placeholder)?;
    let x_far = near_zero.where_cond(&placeholder, x)?;
    let near = expm1(&x_near)?.neg()?.log()?;
    let far = log1p(&x_far.exp()?.neg()?)?;
    Ok(near_zero.where_cond(&near, &far)?)
}

/// `log softmax(x)` along `dim`: `(x − a) − logsumexp(x − a)`, `a = max x`.
///
/// Subtracting the max first keeps the result accurate to rounding of
/// `x − a` even when `|x|` is large (`x − logsumexp(x)` would lose the digits
/// of `x`). Rows of all `−∞` have no softmax and give NaN, as in PyTorch.
///
/// # Errors
/// `dim` out of range, integer dtype.
pub fn log_softmax<D: Dim>(x: &Tensor, dim: D) -> Result<Tensor> {
    let dim = dim.to_index(x.shape(), "log_softmax")?;
    if x.dim(dim)? == 0 {
        return Ok(x.clone());
    }
    let max = x.max_keepdim(dim)?.detach();
    let finite = max.abs()?.lt(f64::INFINITY)?;
    let shift = finite.where_cond(&max, &max.zeros_like()?)?;
    let shifted = x.broadcast_sub(&shift)?;
    let log_norm = logsumexp_keepdim(&shifted, dim)?;
    Ok(shifted.broadcast_sub(&log_norm)?)
}

/// `softmax(x)` along `dim`, as `exp(log_softmax(x))`; rows sum to 1.
///
/// # Errors
/// As [`log_softmax`].
pub fn softmax<D: Dim>(x: &Tensor, dim: D) -> Result<Tensor> {
    Ok(log_softmax(x, dim)?.exp()?)
}

/// Binary cross-entropy with logits, per element (no reduction).
///
/// `ℓ(l, t) = −t log σ(l) − (1 − t) log(1 − σ(l)) = max(l, 0) − l·t + log1p(e^{−|l|})`,
/// in nats. `targets` are probabilities in `[0, 1]` with the shape of
/// `logits`; they are cast to the logits' dtype. Finite for every finite
/// logit; the gradient with respect to `l` is `σ(l) − t`.
///
/// # Errors
/// [`Error::ShapeMismatch`] when the shapes differ.
pub fn bce_with_logits_elementwise(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.dims() != targets.dims() {
        return Err(Error::ShapeMismatch {
            op: "bce_with_logits",
            left: logits.dims().to_vec(),
            right: targets.dims().to_vec(),
        });
    }
    let targets = targets.to_dtype(logits.dtype())?;
    let tail = log1p(&logits.abs()?.neg()?.exp()?)?;
    Ok(((logits.relu()? - logits.mul(&targets)?)? + tail)?)
}

/// Binary cross-entropy with logits, averaged over all elements: a scalar.
///
/// The mean of [`bce_with_logits_elementwise`], like PyTorch's
/// `binary_cross_entropy_with_logits(reduction="mean")`.
///
/// # Errors
/// [`Error::ShapeMismatch`] when the shapes differ.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(bce_with_logits_elementwise(logits, targets)?.mean_all()?)
}

/// Binary cross-entropy with logits, summed over all elements: a scalar.
///
/// PyTorch's `reduction="sum"`, as used by the pytorch/examples VAE.
///
/// # Errors
/// [`Error::ShapeMismatch`] when the shapes differ.
pub fn bce_with_logits_sum(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(bce_with_logits_elementwise(logits, targets)?.sum_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device, Var};

    /// Relative tolerance for f32 results against f64 references.
    const F32_REL_TOL: f64 = 2e-6;
    /// Absolute floor for results near 0 (subnormal f32 outputs).
    const F32_ABS_TOL: f64 = 1e-37;
    const F64_REL_TOL: f64 = 1e-13;

    /// Inputs covering the extremes: ±1e30, ±1e4, ±88, moderate and tiny values.
    const INPUTS: [f64; 21] = [
        -1e30, -1e4, -100.0, -88.0, -30.0, -20.0, -5.0, -1.0, -0.5, -1e-5, -1e-30, 0.0, 1e-30, 1e-5, 0.5, 1.0, 5.0,
        20.0, 88.0, 1e4, 1e30,
    ];

    fn reference_softplus(x: f64) -> f64 {
        if x > 0.0 {
            x + (-x).exp().ln_1p()
        } else {
            x.exp().ln_1p()
        }
    }

    fn reference_log1m_exp(x: f64) -> f64 {
        if x > -std::f64::consts::LN_2 {
            (-x.exp_m1()).ln()
        } else {
            (-x.exp()).ln_1p()
        }
    }

    fn close(got: f64, expected: f64, rel: f64, abs: f64) -> bool {
        if expected.is_infinite() || expected.is_nan() {
            return got == expected || (got.is_nan() && expected.is_nan());
        }
        (got - expected).abs() <= rel * expected.abs() + abs
    }

    /// Applies `f` to `INPUTS` (as `dtype`) and compares to `reference` in f64.
    fn check_against_reference(
        f: impl Fn(&Tensor) -> Result<Tensor>,
        reference: impl Fn(f64) -> f64,
        inputs: &[f64],
        dtype: DType,
    ) -> Result<()> {
        let x = Tensor::new(inputs, &Device::Cpu)?.to_dtype(dtype)?;
        let x_values = x.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let got = f(&x)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let (rel, abs) = match dtype {
            DType::F32 => (F32_REL_TOL, F32_ABS_TOL),
            _ => (F64_REL_TOL, 1e-300),
        };
        for (&xi, &gi) in x_values.iter().zip(&got) {
            let expected = reference(xi);
            assert!(
                close(gi, expected, rel, abs),
                "{dtype:?} x = {xi:e}: got {gi:e}, expected {expected:e}"
            );
        }
        Ok(())
    }

    #[test]
    fn softplus_matches_reference_at_extremes() -> Result<()> {
        for dtype in [DType::F32, DType::F64] {
            check_against_reference(softplus, reference_softplus, &INPUTS, dtype)?;
            check_against_reference(log1p_exp, reference_softplus, &INPUTS, dtype)?;
        }
        Ok(())
    }

    #[test]
    fn softplus_of_infinities() -> Result<()> {
        let x = Tensor::new(&[f32::NEG_INFINITY, f32::INFINITY], &Device::Cpu)?;
        assert_eq!(softplus(&x)?.to_vec1::<f32>()?, vec![0.0, f32::INFINITY]);
        Ok(())
    }

    #[test]
    fn log_sigmoid_and_sigmoid_match_reference() -> Result<()> {
        for dtype in [DType::F32, DType::F64] {
            check_against_reference(log_sigmoid, |x| -reference_softplus(-x), &INPUTS, dtype)?;
            check_against_reference(sigmoid, |x| (-reference_softplus(-x)).exp(), &INPUTS, dtype)?;
        }
        Ok(())
    }

    #[test]
    fn log1p_and_expm1_match_std() -> Result<()> {
        let log1p_inputs = [
            -1.0,
            -0.999,
            -0.5,
            -1e-8,
            -1e-30,
            0.0,
            1e-30,
            1e-8,
            1e-3,
            0.5,
            1.0,
            1e10,
            1e30,
            f64::INFINITY,
        ];
        let expm1_inputs = [
            -1e30, -800.0, -40.0, -20.0, -1.0, -1e-8, -1e-30, 0.0, 1e-30, 1e-8, 0.5, 1.0, 20.0, 80.0, 1e30,
        ];
        for dtype in [DType::F32, DType::F64] {
            check_against_reference(log1p, f64::ln_1p, &log1p_inputs, dtype)?;
            check_against_reference(expm1, f64::exp_m1, &expm1_inputs, dtype)?;
        }
        Ok(())
    }

    #[test]
    fn log1m_exp_matches_reference() -> Result<()> {
        let inputs = [
            -1e30,
            -1e4,
            -88.0,
            -20.0,
            -2.0,
            -0.7,
            -0.693,
            -0.69,
            -0.5,
            -1e-3,
            -1e-8,
            -1e-30,
            0.0,
            f64::NEG_INFINITY,
        ];
        for dtype in [DType::F32, DType::F64] {
            check_against_reference(log1m_exp, reference_log1m_exp, &inputs, dtype)?;
        }
        let positive = log1m_exp(&Tensor::new(&[0.5f64], &Device::Cpu)?)?.to_vec1::<f64>()?;
        assert!(positive[0].is_nan(), "log(1 - e^0.5) is undefined");
        Ok(())
    }

    #[test]
    fn gradients_match_closed_forms() -> Result<()> {
        // d softplus/dx = σ(x); d log σ(x)/dx = σ(−x); d log1m_exp/dx = −1/expm1(−x).
        let values = [-30.0f64, -3.0, -0.5, 0.0, 0.5, 3.0, 30.0];
        let x = Var::new(&values, &Device::Cpu)?;
        let sigma = |v: f64| 1.0 / (1.0 + (-v).exp());
        let g = softplus(x.as_tensor())?.sum_all()?.backward()?;
        let grad = g.get(x.as_tensor()).expect("grad").to_vec1::<f64>()?;
        for (&v, &gv) in values.iter().zip(&grad) {
            assert!((gv - sigma(v)).abs() < 1e-12, "softplus'({v}) = {gv}");
        }
        let g = log_sigmoid(x.as_tensor())?.sum_all()?.backward()?;
        let grad = g.get(x.as_tensor()).expect("grad").to_vec1::<f64>()?;
        for (&v, &gv) in values.iter().zip(&grad) {
            assert!((gv - sigma(-v)).abs() < 1e-12, "log_sigmoid'({v}) = {gv}");
        }
        let negatives = [-30.0f64, -3.0, -0.7, -0.5, -1e-3];
        let x = Var::new(&negatives, &Device::Cpu)?;
        let g = log1m_exp(x.as_tensor())?.sum_all()?.backward()?;
        let grad = g.get(x.as_tensor()).expect("grad").to_vec1::<f64>()?;
        for (&v, &gv) in negatives.iter().zip(&grad) {
            let expected = -1.0 / (-v).exp_m1();
            assert!(
                (gv - expected).abs() < 1e-9 * expected.abs(),
                "log1m_exp'({v}) = {gv} vs {expected}"
            );
        }
        Ok(())
    }

    #[test]
    fn no_nan_gradients_at_extremes() -> Result<()> {
        let x = Var::new(&[-1e30f32, -1e4, -88.0, 0.0, 88.0, 1e4, 1e30], &Device::Cpu)?;
        for f in [softplus, log_sigmoid, sigmoid, log1p_exp] {
            let g = f(x.as_tensor())?.sum_all()?.backward()?;
            let grad = g.get(x.as_tensor()).expect("grad").to_vec1::<f32>()?;
            assert!(grad.iter().all(|v| v.is_finite()), "{grad:?}");
        }
        Ok(())
    }

    #[test]
    fn bce_with_logits_matches_reference_at_extremes() -> Result<()> {
        // ℓ(l, t) = softplus(l) − l t, evaluated in f64.
        let targets_values = [0.0, 1.0, 0.3];
        for dtype in [DType::F32, DType::F64] {
            for &t in &targets_values {
                let logits = Tensor::new(&INPUTS, &Device::Cpu)?.to_dtype(dtype)?;
                let targets = (logits.ones_like()? * t)?;
                let got = bce_with_logits_elementwise(&logits, &targets)?
                    .to_dtype(DType::F64)?
                    .to_vec1::<f64>()?;
                let l_values = logits.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                let t32 = targets.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                for ((&l, &gi), &tt) in l_values.iter().zip(&got).zip(&t32) {
                    let expected = l.max(0.0) - l * tt + (-l.abs()).exp().ln_1p();
                    let rel = if dtype == DType::F32 { 1e-6 } else { 1e-13 };
                    assert!(gi.is_finite(), "l = {l:e}, t = {tt}: {gi}");
                    assert!(
                        close(gi, expected, rel, 1e-37),
                        "l = {l:e}, t = {tt}: {gi:e} vs {expected:e}"
                    );
                }
            }
        }
        Ok(())
    }

    /// candle-nn issue 2561: the naive `−t log σ(l) − (1 − t) log(1 − σ(l))`
    /// is NaN or infinite for large logits; ours is finite and exact.
    #[test]
    fn bce_with_logits_large_logits_are_finite() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[100f32, -100.0, 1e30, -1e30], &dev)?;
        let targets = Tensor::new(&[1f32, 0.0, 0.0, 1.0], &dev)?;
        let naive_sigmoid = (logits.neg()?.exp()? + 1.0)?.recip()?;
        let naive = ((targets.mul(&naive_sigmoid.log()?)?
            + (targets.affine(-1.0, 1.0)?.mul(&naive_sigmoid.affine(-1.0, 1.0)?.log()?))?)?
        .neg())?;
        let naive = naive.to_vec1::<f32>()?;
        assert!(
            naive.iter().any(|v| !v.is_finite()),
            "the naive form should break: {naive:?}"
        );
        let ours = bce_with_logits_elementwise(&logits, &targets)?.to_vec1::<f32>()?;
        // l = 100, t = 1: log1p(e^-100) ≈ 3.7e-44; l = 1e30, t = 0: 1e30.
        assert!(ours[0] >= 0.0 && ours[0] < 1e-40);
        assert!(ours[1] >= 0.0 && ours[1] < 1e-40);
        assert_eq!(ours[2], 1e30);
        assert_eq!(ours[3], 1e30);
        Ok(())
    }

    #[test]
    fn bce_reductions_and_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Var::new(&[[0.0f64, 2.0], [-1.0, 3.0]], &dev)?;
        let targets = Tensor::new(&[[1.0f64, 0.0], [0.5, 1.0]], &dev)?;
        let per = bce_with_logits_elementwise(logits.as_tensor(), &targets)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let sum = bce_with_logits_sum(logits.as_tensor(), &targets)?.to_scalar::<f64>()?;
        let mean = bce_with_logits(logits.as_tensor(), &targets)?;
        assert!((sum - per.iter().sum::<f64>()).abs() < 1e-12);
        assert!((mean.to_scalar::<f64>()? - sum / 4.0).abs() < 1e-12);
        // ℓ(0, 1) = log 2.
        assert!((per[0] - std::f64::consts::LN_2).abs() < 1e-15);
        // ∂ mean / ∂l = (σ(l) − t) / 4, including at l = 0 where the kinks of
        // max(l, 0) and |l| must cancel.
        let grads = mean.backward()?;
        let grad = grads
            .get(logits.as_tensor())
            .expect("grad")
            .flatten_all()?
            .to_vec1::<f64>()?;
        let sigma = |v: f64| 1.0 / (1.0 + (-v).exp());
        for ((&l, &t), &g) in [0.0, 2.0, -1.0, 3.0].iter().zip(&[1.0, 0.0, 0.5, 1.0]).zip(&grad) {
            assert!((g - (sigma(l) - t) / 4.0).abs() < 1e-12, "l = {l}: {g}");
        }
        let wrong = Tensor::zeros((2, 3), DType::F64, &dev)?;
        assert!(matches!(
            bce_with_logits(logits.as_tensor(), &wrong),
            Err(Error::ShapeMismatch { .. })
        ));
        Ok(())
    }

    #[test]
    fn log_softmax_matches_reference() -> Result<()> {
        let rows = [
            [1e4f64, 1e4 + 1.0, 1e4 - 3.0],
            [-88.0, 0.0, 88.0],
            [1e30, 0.0, -1e30],
            [0.1, 0.2, 0.3],
        ];
        for dtype in [DType::F32, DType::F64] {
            let x = Tensor::new(&rows, &Device::Cpu)?.to_dtype(dtype)?;
            let x64 = x.to_dtype(DType::F64)?.to_vec2::<f64>()?;
            let got = log_softmax(&x, 1)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
            let soft = softmax(&x, 1)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
            for ((row, got_row), soft_row) in x64.iter().zip(&got).zip(&soft) {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                for ((&v, &g), &s) in row.iter().zip(got_row).zip(soft_row) {
                    let expected = v - lse;
                    let rel = if dtype == DType::F32 { 1e-6 } else { 1e-13 };
                    assert!(close(g, expected, rel, 1e-6), "{dtype:?} {v}: {g} vs {expected}");
                    assert!(
                        close(s, expected.exp(), rel, 1e-12),
                        "{dtype:?} {v}: {s} vs {}",
                        expected.exp()
                    );
                }
                assert!((soft_row.iter().sum::<f64>() - 1.0).abs() < 1e-6);
            }
        }
        Ok(())
    }

    #[test]
    fn log_softmax_gradient_is_identity_minus_softmax() -> Result<()> {
        // ∂/∂x_j Σ_i w_i log softmax(x)_i = w_j − s_j Σ_i w_i.
        let x = Var::new(&[0.5f64, -1.0, 2.0], &Device::Cpu)?;
        let w = Tensor::new(&[1.0f64, 2.0, 3.0], &Device::Cpu)?;
        let loss = log_softmax(x.as_tensor(), 0)?.mul(&w)?.sum_all()?;
        let grads = loss.backward()?;
        let grad = grads.get(x.as_tensor()).expect("grad").to_vec1::<f64>()?;
        let s = softmax(x.as_tensor(), 0)?.to_vec1::<f64>()?;
        for j in 0..3 {
            let expected = [1.0, 2.0, 3.0][j] - s[j] * 6.0;
            assert!((grad[j] - expected).abs() < 1e-12);
        }
        Ok(())
    }
}
