//! Exact, overflow-free `log Σ_i e^{x_i}` on tensors and slices.
//!
//! # The max shift is exact (seed 000, question 1)
//!
//! For any finite `a`,
//!
//! ```text
//! log Σ_i e^{x_i} = log(e^a · Σ_i e^{x_i − a}) = a + log Σ_i e^{x_i − a},
//! ```
//!
//! an identity, so shifting changes nothing mathematically. With
//! `a = max_i x_i` every exponent `x_i − a` is `≤ 0`, so no term exceeds 1 and
//! none overflows; the largest term is `e^0 = 1`, so the sum of `n` terms lies
//! in `[1, n]` and its logarithm in `[0, ln n]`: neither overflow nor `log 0`
//! can occur. A single small term may underflow to 0, which is harmless: it is
//! below the rounding error of a sum that is at least 1.
//!
//! Where the seed stops short (SPEC §10): when every `x_i = −∞` (or the sum
//! is empty) there is no finite `a`; the answer is `log 0 = −∞`, and we return
//! it without NaN in the value or the gradient (Candle's own
//! `Tensor::log_sum_exp` computes `−∞ − (−∞) = NaN` there). Any `+∞` gives
//! `+∞`, any NaN gives NaN.
//!
//! # Gradient
//!
//! `∂/∂x_j log Σ_i e^{x_i} = e^{x_j} / Σ_i e^{x_i} = softmax(x)_j`, which sums
//! to 1; on an all `−∞` row we define it as 0. The tensor functions are a
//! Candle `CustomOp1` on CPU (a fast fused kernel, `f32` summed in `f64`) whose
//! backward pass is built from tensor ops, so it can itself be differentiated;
//! other devices use an equivalent expression of tensor ops.
//!
//! ```
//! use candle::{Device, Tensor};
//! use deepgen_numerics::logsumexp;
//!
//! // e^1000 overflows f32, yet log(e^1000 + e^1000) = 1000 + ln 2.
//! let x = Tensor::new(&[1000f32, 1000.], &Device::Cpu)?;
//! let lse = logsumexp(&x, 0)?.to_scalar::<f32>()?;
//! assert!((lse - (1000.0 + std::f32::consts::LN_2)).abs() < 1e-4);
//! assert_eq!(deepgen_numerics::logsumexp_f64(&[1000.0, 1000.0]), 1000.0 + std::f64::consts::LN_2);
//! # Ok::<(), deepgen_numerics::Error>(())
//! ```

mod cpu;

use candle::shape::Dim;
use candle::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use crate::error::{Error, Result};

/// `log Σ e^{x}` over `dim`, which is removed from the shape.
///
/// `x`: any shape, `f32` or `f64` (`f16`/`bf16` are computed in `f32`);
/// `dim`: a `usize` or `candle::D::Minus1`. Differentiable: the gradient is
/// `softmax(x)` along `dim` (0 on all `−∞` slices). Edge cases: all `−∞` or an
/// empty `dim` → `−∞`; any `+∞` → `+∞`; any NaN → NaN.
///
/// # Errors
/// `dim` out of range, or an integer dtype.
pub fn logsumexp<D: Dim>(x: &Tensor, dim: D) -> Result<Tensor> {
    let dim = dim.to_index(x.shape(), "logsumexp")?;
    logsumexp_dims(x, &[dim], false)
}

/// [`logsumexp`] keeping `dim` with size 1, ready to broadcast against `x`.
///
/// # Errors
/// As [`logsumexp`].
pub fn logsumexp_keepdim<D: Dim>(x: &Tensor, dim: D) -> Result<Tensor> {
    let dim = dim.to_index(x.shape(), "logsumexp_keepdim")?;
    logsumexp_dims(x, &[dim], true)
}

/// `log Σ e^{x}` over every index in `dims` at once.
///
/// With `keepdim` the reduced dims stay with size 1, otherwise they are
/// removed. An empty `dims` returns `x` unchanged (a sum of one term). The
/// reduced dims are moved last and flattened, so the result is exact in the
/// same sense as a one-dim reduction.
///
/// # Errors
/// [`Error::InvalidDims`] for a repeated or out-of-range dim;
/// [`Error::UnsupportedDtype`] for integer tensors.
pub fn logsumexp_dims(x: &Tensor, dims: &[usize], keepdim: bool) -> Result<Tensor> {
    let rank = x.rank();
    let invalid = || Error::InvalidDims {
        op: "logsumexp_dims",
        dims: dims.to_vec(),
        rank,
    };
    let mut reduced = vec![false; rank];
    for &dim in dims {
        match reduced.get_mut(dim) {
            Some(seen) if !*seen => *seen = true,
            _ => return Err(invalid()),
        }
    }
    let compute_dtype = compute_dtype(x.dtype(), "logsumexp_dims")?;
    if dims.is_empty() {
        return Ok(x.clone());
    }
    let x_compute = x.to_dtype(compute_dtype)?;
    let shape = x.dims();
    let kept: Vec<usize> = (0..rank).filter(|&d| !reduced[d]).collect();
    let mut order = kept.clone();
    order.extend_from_slice(dims);
    let kept_shape: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
    let n_rows: usize = kept_shape.iter().product();
    let row_len: usize = dims.iter().map(|&d| shape[d]).product();
    let permuted = if order.iter().enumerate().all(|(i, &d)| i == d) {
        x_compute
    } else {
        x_compute.permute(order)?
    };
    let rows = permuted.contiguous()?.reshape((n_rows, row_len))?;
    let lse = logsumexp_last_dim(&rows)?;
    let out_shape: Vec<usize> = if keepdim {
        (0..rank).map(|d| if reduced[d] { 1 } else { shape[d] }).collect()
    } else {
        kept_shape
    };
    Ok(lse.reshape(out_shape)?.to_dtype(x.dtype())?)
}

/// `log Σ e^{x}` over all elements: a scalar tensor.
///
/// # Errors
/// [`Error::UnsupportedDtype`] for integer tensors.
pub fn logsumexp_all(x: &Tensor) -> Result<Tensor> {
    let dims: Vec<usize> = (0..x.rank()).collect();
    if dims.is_empty() {
        compute_dtype(x.dtype(), "logsumexp_all")?;
        return Ok(x.clone());
    }
    logsumexp_dims(x, &dims, false)
}

/// `log ((1/K) Σ_k e^{x_k})` over dim 0: `[K, batch]` → `[batch]`, the
/// logarithm of a Monte Carlo mean of `K` terms given by their logarithms,
/// `logsumexp_k x_k − log K`. Of importance weights it is the IWAE bound's
/// integrand and the importance-sampled `log p(x)`; it stays in log space
/// because the terms themselves underflow (`log p(x|z)` of an MNIST digit
/// is about −100 nats). A column of `−∞` gives `−∞`.
///
/// ```
/// use candle::{Device, Tensor};
/// // The mean of e^0 and e^{ln 3} is 2.
/// let x = Tensor::new(&[[0f64], [3f64.ln()]], &Device::Cpu)?;
/// let m = deepgen_numerics::log_mean_exp(&x)?.to_vec1::<f64>()?;
/// assert!((m[0] - 2f64.ln()).abs() < 1e-12);
/// # Ok::<(), deepgen_numerics::Error>(())
/// ```
///
/// # Errors
/// A Candle error for `x` not of rank 2; [`Error::InvalidArgument`] for
/// `K = 0` (the mean of no samples).
pub fn log_mean_exp(x: &Tensor) -> Result<Tensor> {
    let (k, _batch) = x.dims2()?;
    if k == 0 {
        return Err(Error::InvalidArgument {
            op: "log_mean_exp",
            reason: "K = 0: at least one sample is needed".into(),
        });
    }
    Ok((logsumexp(x, 0)? - (k as f64).ln())?)
}

/// At most this many values (`samples × batch × width`, 16 MiB of `f32`) per
/// chunk when the `K` terms of a [`log_mean_exp`] are computed chunk by chunk
/// (a decoder pass per importance sample): memory stays bounded for any `K`.
pub const CHUNK_ELEMENTS: usize = 1 << 22;

/// How many items of `item_elements` values each fit in one chunk of
/// [`CHUNK_ELEMENTS`], at least 1: samples per chunk for a batch (`item_elements
/// = batch × width`), or rows per batch for `K` samples (`K × width`).
pub fn items_per_chunk(item_elements: usize) -> usize {
    (CHUNK_ELEMENTS / item_elements.max(1)).max(1)
}

/// [`log_mean_exp`] of `k` log weights drawn chunk by chunk: `log_w(n)`
/// returns the `[n, batch]` log weights of `n` fresh samples, each sample
/// `sample_elements` values wide (`batch × width` decoder outputs), and at
/// most [`items_per_chunk`]`(sample_elements)` samples exist at once. The
/// importance-sampled `log p(x)` of every latent-variable model runs on it.
///
/// # Errors
/// `log_w`'s errors; as [`log_mean_exp`] (including `k = 0`).
pub fn chunked_log_mean_exp<E: From<Error>>(
    k: usize,
    sample_elements: usize,
    mut log_w: impl FnMut(usize) -> std::result::Result<Tensor, E>,
) -> std::result::Result<Tensor, E> {
    if k == 0 {
        return Err(Error::InvalidArgument {
            op: "chunked_log_mean_exp",
            reason: "K = 0: at least one sample is needed".into(),
        }
        .into());
    }
    let step = items_per_chunk(sample_elements);
    // The log weights wait in `pending` until they fill a chunk of their own
    // (for usual K, all of them: one logsumexp, as `log_mean_exp` of the
    // whole `[k, batch]`); beyond, they fold into a running logsumexp, so
    // memory stays bounded for any `k`.
    let (mut pending, mut pending_elements) = (Vec::new(), 0usize);
    let mut folded: Option<Tensor> = None;
    let mut done = 0;
    while done < k {
        let n = step.min(k - done);
        let w = log_w(n)?;
        pending_elements = pending_elements.saturating_add(w.elem_count());
        pending.push(w);
        done += n;
        if done == k || pending_elements >= CHUNK_ELEMENTS {
            let lse = logsumexp(&Tensor::cat(&pending, 0).map_err(Error::from)?, 0)?;
            folded = Some(match folded {
                None => lse,
                Some(before) => logsumexp(&Tensor::stack(&[before, lse], 0).map_err(Error::from)?, 0)?,
            });
            (pending, pending_elements) = (Vec::new(), 0);
        }
    }
    let total = folded.expect("k ≥ 1 folds at least once");
    Ok((total - (k as f64).ln()).map_err(Error::from)?)
}

/// Weighted `log Σ_i b_i e^{x_i}` over `dim` for non-negative weights `b`.
///
/// Computed as `logsumexp(x + log b)` with terms where `b_i = 0` dropped even
/// when `x_i = ±∞` (SciPy's semantics). `b` must have the shape of `x`.
/// Negative weights give NaN; use [`logsumexp_signed_f64`] for signed sums.
/// The gradient with respect to `x` is `b e^{x} / Σ b e^{x}`.
///
/// # Errors
/// [`Error::ShapeMismatch`] when the shapes differ; as [`logsumexp`] otherwise.
pub fn logsumexp_weighted<D: Dim>(x: &Tensor, b: &Tensor, dim: D) -> Result<Tensor> {
    if x.dims() != b.dims() {
        return Err(Error::ShapeMismatch {
            op: "logsumexp_weighted",
            left: x.dims().to_vec(),
            right: b.dims().to_vec(),
        });
    }
    let dim = dim.to_index(x.shape(), "logsumexp_weighted")?;
    let b = b.to_dtype(x.dtype())?;
    let zero_weight = b.eq(0.0)?;
    // log(1) on dropped terms keeps the unused branch (and its gradient) finite.
    let log_b = zero_weight.where_cond(&b.ones_like()?, &b)?.log()?;
    let shifted = (x + log_b)?;
    let neg_inf = full_like(x, f64::NEG_INFINITY)?;
    let terms = zero_weight.where_cond(&neg_inf, &shifted)?;
    logsumexp_dims(&terms, &[dim], false)
}

/// `log Σ e^{x_i}` of a slice in `f64`; empty → `−∞`.
///
/// Same kernel and edge cases as the tensor version; long slices use several
/// threads.
pub fn logsumexp_f64(x: &[f64]) -> f64 {
    cpu::logsumexp_row(x)
}

/// `log Σ e^{x_i}` of a slice of `f32`, summed in `f64`; empty → `−∞`.
///
/// The result is the `f64` value rounded once to `f32`, so it is within half
/// an `f32` ulp of the `f64` reference plus `~1e-9` relative.
pub fn logsumexp_f32(x: &[f32]) -> f32 {
    cpu::logsumexp_row(x) as f32
}

/// Weighted `log Σ_i b_i e^{x_i}` (SciPy's `logsumexp(x, b=b)`).
///
/// Terms with `b_i = 0` are ignored, even when `x_i = ±∞`. Weights may be
/// negative as long as the total is not; a total of exactly 0 gives `−∞`.
/// The sum is compensated (Neumaier), so cancellation costs only what the
/// rounding of the terms costs.
///
/// # Errors
/// [`Error::LengthMismatch`] when the lengths differ; [`Error::NegativeSum`]
/// when `Σ b_i e^{x_i} < 0` (SciPy returns NaN there).
pub fn logsumexp_weighted_f64(x: &[f64], b: &[f64]) -> Result<f64> {
    let (log_abs, sign) = signed_sum(x, b, "logsumexp_weighted_f64")?;
    if sign < 0.0 {
        return Err(Error::NegativeSum {
            op: "logsumexp_weighted_f64",
            sum: -log_abs.exp(),
        });
    }
    Ok(log_abs)
}

/// Signed weighted logsumexp: `(log|Σ_i b_i e^{x_i}|, sign)`.
///
/// `sign ∈ {−1, 0, 1}`; a zero sum gives `(−∞, 0)`. Terms with `b_i = 0` are
/// ignored. NaN inputs, or `+∞` terms of both signs, give `(NaN, NaN)`.
/// This is SciPy's `logsumexp(x, b=b, return_sign=True)`.
///
/// # Errors
/// [`Error::LengthMismatch`] when the lengths differ.
pub fn logsumexp_signed_f64(x: &[f64], b: &[f64]) -> Result<(f64, f64)> {
    signed_sum(x, b, "logsumexp_signed_f64")
}

fn signed_sum(x: &[f64], b: &[f64], op: &'static str) -> Result<(f64, f64)> {
    if x.len() != b.len() {
        return Err(Error::LengthMismatch {
            op,
            left: x.len(),
            right: b.len(),
        });
    }
    let terms = || x.iter().zip(b).filter(|&(_, &w)| w != 0.0);
    if terms().any(|(&xi, &w)| xi.is_nan() || w.is_nan()) {
        return Ok((f64::NAN, f64::NAN));
    }
    let shift = terms().map(|(&xi, _)| xi).fold(f64::NEG_INFINITY, f64::max);
    if shift == f64::NEG_INFINITY {
        return Ok((f64::NEG_INFINITY, 0.0));
    }
    // With an infinite max only the +inf terms matter; they carry the signs
    // of their weights. Otherwise shift by the (finite) max.
    let shift_for_terms = if shift.is_finite() { shift } else { 0.0 };
    let (mut sum, mut compensation) = (0.0f64, 0.0f64);
    for (&xi, &w) in terms() {
        let term = if shift.is_finite() {
            w * (xi - shift_for_terms).exp()
        } else if xi == f64::INFINITY {
            w * f64::INFINITY
        } else {
            0.0
        };
        // Neumaier's compensated summation.
        let total = sum + term;
        compensation += if sum.abs() >= term.abs() {
            (sum - total) + term
        } else {
            (term - total) + sum
        };
        sum = total;
    }
    let sum = if sum.is_finite() { sum + compensation } else { sum };
    if sum.is_nan() {
        return Ok((f64::NAN, f64::NAN));
    }
    if sum == 0.0 {
        return Ok((f64::NEG_INFINITY, 0.0));
    }
    Ok((shift_for_terms + sum.abs().ln(), sum.signum()))
}

/// The dtype the reduction runs in for a tensor of `dtype`.
fn compute_dtype(dtype: DType, op: &'static str) -> Result<DType> {
    match dtype {
        DType::F32 | DType::F64 => Ok(dtype),
        DType::F16 | DType::BF16 => Ok(DType::F32),
        _ => Err(Error::UnsupportedDtype { op, dtype }),
    }
}

/// A tensor shaped like `t` filled with `value`.
fn full_like(t: &Tensor, value: f64) -> candle::Result<Tensor> {
    t.zeros_like()?.affine(1.0, value)
}

/// Row-wise logsumexp of a contiguous `[n_rows, row_len]` tensor → `[n_rows, 1]`.
fn logsumexp_last_dim(rows: &Tensor) -> candle::Result<Tensor> {
    match rows.device() {
        Device::Cpu => rows.apply_op1(LogSumExpLastDim),
        _ => logsumexp_last_dim_tensor_ops(rows),
    }
}

/// The device-independent form: the max shift written with tensor ops.
///
/// The shift `a` is detached (the result does not depend on it) and replaced
/// by 0 where it is not finite; rows whose shifted sum is 0 (all `−∞`) are
/// set to `−∞` through `where_cond`, whose backward pass sends them a zero
/// gradient, and take `log 1` in the unused branch so no NaN appears.
pub(crate) fn logsumexp_last_dim_tensor_ops(rows: &Tensor) -> candle::Result<Tensor> {
    let (n_rows, row_len) = rows.dims2()?;
    if row_len == 0 {
        return Tensor::zeros((n_rows, 1), rows.dtype(), rows.device())?.affine(1.0, f64::NEG_INFINITY);
    }
    let shift = finite_or_zero(&rows.max_keepdim(1)?.detach())?;
    let sum = rows.broadcast_sub(&shift)?.exp()?.sum_keepdim(1)?;
    let empty = sum.eq(0.0)?;
    let safe_sum = empty.where_cond(&sum.ones_like()?, &sum)?;
    let value = (safe_sum.log()? + &shift)?;
    empty.where_cond(&full_like(&value, f64::NEG_INFINITY)?, &value)
}

/// `t` where it is finite, 0 where it is `±∞` or NaN.
fn finite_or_zero(t: &Tensor) -> candle::Result<Tensor> {
    let finite = t.abs()?.lt(f64::INFINITY)?;
    finite.where_cond(t, &t.zeros_like()?)
}

/// `softmax` along the last dim, computed in `f64` and cast back: the
/// gradient of logsumexp. All `−∞` rows give 0 instead of `0/0`.
///
/// Written with tensor ops so that it is itself differentiable.
fn softmax_for_gradient(x: &Tensor) -> candle::Result<Tensor> {
    let dtype = x.dtype();
    let x64 = x.to_dtype(DType::F64)?;
    let last = x64.rank().saturating_sub(1);
    let shift = finite_or_zero(&x64.max_keepdim(last)?.detach())?;
    let exps = x64.broadcast_sub(&shift)?.exp()?;
    let sum = exps.sum_keepdim(last)?;
    let safe_sum = sum.eq(0.0)?.where_cond(&sum.ones_like()?, &sum)?;
    exps.broadcast_div(&safe_sum)?.to_dtype(dtype)
}

/// The fused CPU kernel as a Candle op: reduces the last dim, keeping it as 1.
struct LogSumExpLastDim;

impl CustomOp1 for LogSumExpLastDim {
    fn name(&self) -> &'static str {
        "deepgen-logsumexp"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle::Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle::bail!("deepgen-logsumexp: the input must be contiguous")
        };
        let Some((&row_len, outer)) = layout.dims().split_last() else {
            candle::bail!("deepgen-logsumexp: the input must have rank >= 1")
        };
        let n_rows: usize = outer.iter().product();
        let mut out_dims = outer.to_vec();
        out_dims.push(1);
        let out = match storage {
            CpuStorage::F32(values) => CpuStorage::F32(cpu::logsumexp_rows(
                contiguous_slice(values, start, end)?,
                n_rows,
                row_len,
            )),
            CpuStorage::F64(values) => CpuStorage::F64(cpu::logsumexp_rows(
                contiguous_slice(values, start, end)?,
                n_rows,
                row_len,
            )),
            _ => candle::bail!("deepgen-logsumexp: only f32 and f64 are supported"),
        };
        Ok((out, Shape::from(out_dims)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle::Result<Option<Tensor>> {
        if arg.elem_count() == 0 {
            return Ok(Some(arg.zeros_like()?));
        }
        let softmax = softmax_for_gradient(arg)?;
        Ok(Some(softmax.broadcast_mul(grad_res)?))
    }
}

fn contiguous_slice<T>(values: &[T], start: usize, end: usize) -> candle::Result<&[T]> {
    values
        .get(start..end)
        .ok_or_else(|| candle::Error::msg("deepgen-logsumexp: layout outside the storage"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{D, Var};
    use std::f64::consts::LN_2;

    const NEG_INF: f64 = f64::NEG_INFINITY;

    /// Plain two-pass logsumexp in f64: the independent reference.
    fn reference(x: &[f64]) -> f64 {
        let max = x.iter().copied().fold(NEG_INF, f64::max);
        if x.iter().any(|v| v.is_nan()) {
            return f64::NAN;
        }
        if !max.is_finite() {
            return max;
        }
        max + x.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
    }

    fn cpu() -> Device {
        Device::Cpu
    }

    // ---- log_mean_exp ----

    #[test]
    fn log_mean_exp_of_equal_terms_is_the_term() -> Result<()> {
        // Three equal terms per column, far below where e^x underflows.
        let x = Tensor::new(&[[-1000f32, 5.0], [-1000.0, 5.0], [-1000.0, 5.0]], &cpu())?;
        let m = log_mean_exp(&x)?.to_vec1::<f32>()?;
        assert!((m[0] + 1000.0).abs() < 1e-3 && (m[1] - 5.0).abs() < 1e-5, "{m:?}");
        Ok(())
    }

    #[test]
    fn log_mean_exp_matches_the_mean_and_handles_neg_inf() -> Result<()> {
        // Column 0: mean(e^0, e^{ln 3}) = 2; column 1: no mass at all.
        let x = Tensor::new(&[[0f64, NEG_INF], [3f64.ln(), NEG_INF]], &cpu())?;
        let m = log_mean_exp(&x)?.to_vec1::<f64>()?;
        assert!((m[0] - LN_2).abs() < 1e-12, "{m:?}");
        assert_eq!(m[1], NEG_INF);
        Ok(())
    }

    #[test]
    fn log_mean_exp_rejects_no_samples_and_other_ranks() -> Result<()> {
        let empty = Tensor::zeros((0, 3), DType::F32, &cpu())?;
        let err = log_mean_exp(&empty).map(|_| ());
        assert!(matches!(err, Err(Error::InvalidArgument { .. })), "{err:?}");
        assert!(log_mean_exp(&Tensor::zeros(3, DType::F32, &cpu())?).is_err());
        Ok(())
    }

    #[test]
    fn chunks_hold_at_least_one_item() {
        assert_eq!(items_per_chunk(0), CHUNK_ELEMENTS);
        assert_eq!(items_per_chunk(100 * 784), CHUNK_ELEMENTS / 78_400);
        assert_eq!(items_per_chunk(CHUNK_ELEMENTS + 1), 1);
    }

    #[test]
    fn chunked_log_mean_exp_equals_one_pass() -> Result<()> {
        // Samples as wide as a whole chunk: one sample per call, 5 calls.
        let rows: Vec<f64> = (0..10).map(|i| (i as f64 * 0.7).sin() * 3.0).collect();
        let all = Tensor::from_vec(rows.clone(), (5, 2), &Device::Cpu)?;
        let mut next = 0;
        let mut calls = Vec::new();
        let chunked = chunked_log_mean_exp(5, CHUNK_ELEMENTS, |n| {
            calls.push(n);
            let part = all.narrow(0, next, n);
            next += n;
            Ok::<_, Error>(part?)
        })?;
        assert_eq!(calls, [1; 5]);
        assert_eq!(chunked.to_vec1::<f64>()?, log_mean_exp(&all)?.to_vec1::<f64>()?);
        let none = chunked_log_mean_exp(0, 1, |_| Ok::<_, Error>(all.clone()));
        assert!(none.is_err());
        Ok(())
    }

    /// Past a chunk of pending log weights the chunks fold into a running
    /// logsumexp: the same value as one pass over all of them.
    #[test]
    fn chunked_log_mean_exp_folds_beyond_a_chunk() -> Result<()> {
        let (k, batch) = (6, CHUNK_ELEMENTS / 4);
        let rows: Vec<f64> = (0..k * batch).map(|i| ((i % 977) as f64 * 0.37).sin() * 40.0).collect();
        let all = Tensor::from_vec(rows, (k, batch), &Device::Cpu)?;
        let mut next = 0;
        let chunked = chunked_log_mean_exp(k, batch, |n| {
            let part = all.narrow(0, next, n);
            next += n;
            Ok::<_, Error>(part?)
        })?;
        let diff = (chunked - log_mean_exp(&all)?)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-12, "{diff}");
        Ok(())
    }

    /// Any `k` is accepted without reserving memory for it (u64::MAX once
    /// panicked with "capacity overflow" before the first sample).
    #[test]
    fn chunked_log_mean_exp_reserves_nothing_for_huge_k() {
        let mut calls = 0;
        let err = chunked_log_mean_exp(usize::MAX, 100 * 784, |n| {
            calls += 1;
            if calls == 3 {
                return Err(Error::InvalidArgument {
                    op: "test",
                    reason: "stop".into(),
                });
            }
            Ok(Tensor::zeros((n, 100), DType::F32, &Device::Cpu)?)
        });
        assert!(err.is_err());
        assert_eq!(calls, 3);
    }

    // ---- slices ----

    #[test]
    fn slice_empty_gives_neg_inf() {
        assert_eq!(logsumexp_f64(&[]), NEG_INF);
        assert_eq!(logsumexp_f32(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn slice_all_neg_inf_gives_neg_inf() {
        assert_eq!(logsumexp_f64(&[NEG_INF; 5]), NEG_INF);
        assert_eq!(logsumexp_f32(&[f32::NEG_INFINITY; 3]), f32::NEG_INFINITY);
    }

    #[test]
    fn slice_pos_inf_gives_pos_inf() {
        assert_eq!(logsumexp_f64(&[1.0, f64::INFINITY, NEG_INF]), f64::INFINITY);
        assert_eq!(logsumexp_f32(&[f32::INFINITY, 0.0]), f32::INFINITY);
    }

    #[test]
    fn slice_nan_propagates() {
        assert!(logsumexp_f64(&[1.0, f64::NAN, 2.0]).is_nan());
        // NaN wins over +inf and over -inf.
        assert!(logsumexp_f64(&[f64::INFINITY, f64::NAN]).is_nan());
        assert!(logsumexp_f64(&[NEG_INF, f64::NAN]).is_nan());
        assert!(logsumexp_f32(&[f32::NAN]).is_nan());
    }

    #[test]
    fn slice_thousand_thousand_is_thousand_plus_ln2() {
        // log(2 e^1000) = 1000 + ln 2.
        assert!((logsumexp_f64(&[1000.0, 1000.0]) - (1000.0 + LN_2)).abs() < 1e-12);
        let f32_value = logsumexp_f32(&[1000.0, 1000.0]);
        assert_eq!(f32_value, (1000.0 + LN_2) as f32);
    }

    #[test]
    fn slice_minus_thousand() {
        // log(2 e^-1000) = -1000 + ln 2; naive e^-1000 underflows to log 0.
        assert!((logsumexp_f64(&[-1000.0, -1000.0]) - (-1000.0 + LN_2)).abs() < 1e-12);
        assert_eq!(logsumexp_f32(&[-1000.0, -1000.0]), (-1000.0 + LN_2) as f32);
    }

    #[test]
    fn slice_no_overflow_at_f64_max() {
        let max = f64::MAX;
        // ln 2 is far below half an ulp of f64::MAX, so the result rounds to MAX.
        assert_eq!(logsumexp_f64(&[max, max]), max);
        assert_eq!(logsumexp_f64(&[max, -max, 0.0]), max);
        assert_eq!(logsumexp_f64(&[-max, -max]), -max);
    }

    #[test]
    fn slice_no_overflow_at_f32_max() {
        let max = f32::MAX;
        assert_eq!(logsumexp_f32(&[max, max]), max);
        assert_eq!(logsumexp_f32(&[-max, -max]), -max);
        assert_eq!(logsumexp_f32(&[max, -max]), max);
    }

    #[test]
    fn slice_single_element_is_identity() {
        for v in [-3.5, 0.0, 42.0, 1e300, -1e300] {
            assert_eq!(logsumexp_f64(&[v]), v);
        }
    }

    #[test]
    fn slice_underflowing_terms_are_harmless() {
        // e^{-800} underflows, but the sum is dominated by e^0.
        assert!((logsumexp_f64(&[0.0, -800.0]) - 0.0).abs() < 1e-300);
        // log(e^0 + e^-30) = log1p(e^-30) ≈ 9.4e-14, to the rounding of 1 + e^-30.
        let expected = (-30f64).exp().ln_1p();
        assert!((logsumexp_f64(&[0.0, -30.0]) - expected).abs() < 2.0 * f64::EPSILON);
    }

    #[test]
    fn slice_matches_reference_on_long_input() {
        let x: Vec<f64> = (0..200_001).map(|i| (i as f64 * 0.37).sin() * 50.0).collect();
        let r = reference(&x);
        assert!((logsumexp_f64(&x) - r).abs() < 1e-12 * r.abs());
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let x32_as_64: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
        let r32 = reference(&x32_as_64);
        assert!((f64::from(logsumexp_f32(&x32)) - r32).abs() < 1e-6 * r32.abs());
    }

    // ---- weighted and signed ----

    #[test]
    fn weighted_matches_closed_form() {
        // log(2 e^1 + 3 e^2)
        let expected = (2.0 * 1f64.exp() + 3.0 * 2f64.exp()).ln();
        let got = logsumexp_weighted_f64(&[1.0, 2.0], &[2.0, 3.0]).unwrap();
        assert!((got - expected).abs() < 1e-14);
    }

    #[test]
    fn weighted_zero_weights_ignore_infinities() {
        // SciPy: b_i = 0 removes the term even when x_i = ±inf.
        let got = logsumexp_weighted_f64(&[f64::INFINITY, 0.0, NEG_INF], &[0.0, 1.0, 0.0]).unwrap();
        assert_eq!(got, 0.0);
        let got = logsumexp_weighted_f64(&[f64::NAN, 1.0], &[0.0, 1.0]).unwrap();
        assert_eq!(got, 1.0);
    }

    #[test]
    fn weighted_length_mismatch_is_error() {
        let err = logsumexp_weighted_f64(&[1.0, 2.0], &[1.0]).unwrap_err();
        assert!(matches!(err, Error::LengthMismatch { left: 2, right: 1, .. }), "{err}");
    }

    #[test]
    fn weighted_negative_total_is_error() {
        let err = logsumexp_weighted_f64(&[0.0, 1.0], &[1.0, -1.0]).unwrap_err();
        assert!(matches!(err, Error::NegativeSum { .. }), "{err}");
    }

    #[test]
    fn weighted_zero_total_is_neg_inf() {
        assert_eq!(logsumexp_weighted_f64(&[3.0, 3.0], &[1.0, -1.0]).unwrap(), NEG_INF);
        assert_eq!(logsumexp_weighted_f64(&[], &[]).unwrap(), NEG_INF);
    }

    #[test]
    fn weighted_large_inputs_do_not_overflow() {
        // log(e^1000 · 0.5 + e^1000 · 0.25) = 1000 + ln 0.75.
        let got = logsumexp_weighted_f64(&[1000.0, 1000.0], &[0.5, 0.25]).unwrap();
        assert!((got - (1000.0 + 0.75f64.ln())).abs() < 1e-12);
    }

    #[test]
    fn signed_gives_log_abs_and_sign() {
        // e^0 - 2 e^0 = -1 → (log 1, -1)
        let (value, sign) = logsumexp_signed_f64(&[0.0, 0.0], &[1.0, -2.0]).unwrap();
        assert!(value.abs() < 1e-15);
        assert_eq!(sign, -1.0);
        // 3 e^2 - e^1 > 0
        let expected = (3.0 * 2f64.exp() - 1f64.exp()).ln();
        let (value, sign) = logsumexp_signed_f64(&[2.0, 1.0], &[3.0, -1.0]).unwrap();
        assert!((value - expected).abs() < 1e-14);
        assert_eq!(sign, 1.0);
    }

    #[test]
    fn signed_zero_sum_is_neg_inf_with_zero_sign() {
        assert_eq!(logsumexp_signed_f64(&[5.0, 5.0], &[2.0, -2.0]).unwrap(), (NEG_INF, 0.0));
        assert_eq!(logsumexp_signed_f64(&[NEG_INF], &[1.0]).unwrap(), (NEG_INF, 0.0));
    }

    #[test]
    fn signed_infinities_follow_ieee() {
        assert_eq!(
            logsumexp_signed_f64(&[f64::INFINITY, 0.0], &[-1.0, 5.0]).unwrap(),
            (f64::INFINITY, -1.0)
        );
        let (value, sign) = logsumexp_signed_f64(&[f64::INFINITY, f64::INFINITY], &[1.0, -1.0]).unwrap();
        assert!(value.is_nan() && sign.is_nan());
        let (value, _) = logsumexp_signed_f64(&[f64::NAN], &[1.0]).unwrap();
        assert!(value.is_nan());
    }

    #[test]
    fn signed_cancellation_is_compensated() {
        // 1e16·e^0 + 1·e^0 - 1e16·e^0 = 1 exactly; naive summation gives 0 or 2.
        let (value, sign) = logsumexp_signed_f64(&[0.0, 0.0, 0.0], &[1e16, 1.0, -1e16]).unwrap();
        assert_eq!(sign, 1.0);
        assert!(value.abs() < 1e-15, "{value}");
    }

    // ---- tensors ----

    fn grad_of(x: &Var, y: &Tensor) -> Tensor {
        let grads = y.sum_all().unwrap().backward().unwrap();
        grads.get(x.as_tensor()).unwrap().clone()
    }

    #[test]
    fn all_neg_inf_gives_neg_inf_and_zero_grad() -> Result<()> {
        for dtype in [DType::F32, DType::F64] {
            let x = Var::from_tensor(
                &Tensor::new(&[[NEG_INF, NEG_INF, NEG_INF], [0.0, 1.0, 2.0]], &cpu())?.to_dtype(dtype)?,
            )?;
            let y = logsumexp(x.as_tensor(), 1)?;
            let values = y.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            assert_eq!(values[0], NEG_INF);
            assert!((values[1] - reference(&[0.0, 1.0, 2.0])).abs() < 1e-6);
            let grad = grad_of(&x, &y).to_dtype(DType::F64)?.to_vec2::<f64>()?;
            assert_eq!(grad[0], vec![0.0; 3], "no NaN, exactly 0");
            assert!((grad[1].iter().sum::<f64>() - 1.0).abs() < 1e-6);
        }
        Ok(())
    }

    #[test]
    fn empty_gives_neg_inf() -> Result<()> {
        let x = Var::zeros((3, 0), DType::F32, &cpu())?;
        let y = logsumexp(x.as_tensor(), 1)?;
        assert_eq!(y.to_vec1::<f32>()?, vec![f32::NEG_INFINITY; 3]);
        let grad = grad_of(&x, &y);
        assert_eq!(grad.dims(), &[3, 0]);
        let y = logsumexp_keepdim(&Tensor::zeros((0, 2), DType::F64, &cpu())?, 0)?;
        assert_eq!(y.to_vec2::<f64>()?, vec![vec![NEG_INF, NEG_INF]]);
        Ok(())
    }

    #[test]
    fn pos_inf_gives_pos_inf() -> Result<()> {
        let x = Tensor::new(&[[1f32, f32::INFINITY], [f32::INFINITY, f32::NEG_INFINITY]], &cpu())?;
        assert_eq!(logsumexp(&x, 1)?.to_vec1::<f32>()?, vec![f32::INFINITY; 2]);
        Ok(())
    }

    #[test]
    fn nan_propagates() -> Result<()> {
        let x = Tensor::new(
            &[[1f64, f64::NAN], [f64::INFINITY, f64::NAN], [NEG_INF, f64::NAN]],
            &cpu(),
        )?;
        assert!(logsumexp(&x, 1)?.to_vec1::<f64>()?.iter().all(|v| v.is_nan()));
        Ok(())
    }

    #[test]
    fn thousand_thousand_is_thousand_plus_ln2() -> Result<()> {
        let x = Var::new(&[1000f64, 1000.0], &cpu())?;
        let y = logsumexp(x.as_tensor(), 0)?;
        assert!((y.to_scalar::<f64>()? - (1000.0 + LN_2)).abs() < 1e-12);
        // The gradient is softmax = [1/2, 1/2].
        assert_eq!(grad_of(&x, &y).to_vec1::<f64>()?, vec![0.5, 0.5]);
        let y = logsumexp(&Tensor::new(&[1000f32, 1000.0], &cpu())?, 0)?;
        assert_eq!(y.to_scalar::<f32>()?, (1000.0 + LN_2) as f32);
        Ok(())
    }

    #[test]
    fn minus_thousand() -> Result<()> {
        let y = logsumexp(&Tensor::new(&[-1000f32, -1000.0], &cpu())?, 0)?;
        assert_eq!(y.to_scalar::<f32>()?, (-1000.0 + LN_2) as f32);
        let y = logsumexp(&Tensor::new(&[-1000f64, -1000.0], &cpu())?, 0)?;
        assert!((y.to_scalar::<f64>()? - (-1000.0 + LN_2)).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn no_overflow_at_f32_max() -> Result<()> {
        let m = f32::MAX;
        let x = Tensor::new(&[[m, m], [-m, -m], [m, -m]], &cpu())?;
        assert_eq!(logsumexp(&x, 1)?.to_vec1::<f32>()?, vec![m, -m, m]);
        Ok(())
    }

    #[test]
    fn no_overflow_at_f64_max() -> Result<()> {
        let m = f64::MAX;
        let x = Var::new(&[[m, m], [-m, -m], [m, -m]], &cpu())?;
        let y = logsumexp(x.as_tensor(), 1)?;
        assert_eq!(y.to_vec1::<f64>()?, vec![m, -m, m]);
        let grad = grad_of(&x, &y).to_vec2::<f64>()?;
        assert_eq!(grad, vec![vec![0.5, 0.5], vec![0.5, 0.5], vec![1.0, 0.0]]);
        Ok(())
    }

    /// Candle's `log_sum_exp` gives NaN on an all `-inf` row; ours gives `-inf`.
    /// This is the reason the crate has its own logsumexp (SPEC §11).
    #[test]
    fn candle_log_sum_exp_is_nan_where_ours_is_neg_inf() -> Result<()> {
        let x = Tensor::new(&[[f32::NEG_INFINITY, f32::NEG_INFINITY]], &cpu())?;
        let candle_value = x.log_sum_exp(1)?.to_vec1::<f32>()?;
        assert!(candle_value[0].is_nan(), "candle changed: {candle_value:?}");
        assert_eq!(logsumexp(&x, 1)?.to_vec1::<f32>()?, vec![f32::NEG_INFINITY]);
        Ok(())
    }

    #[test]
    fn multi_dim_reduction_matches_flattened_reference() -> Result<()> {
        // x[i, j, k] = sin(i + 2j + 3k) * 10, reduce dims 0 and 2.
        let (a, b, c) = (3usize, 4usize, 5usize);
        let values: Vec<f64> = (0..a * b * c)
            .map(|idx| {
                let (i, j, k) = (idx / (b * c), (idx / c) % b, idx % c);
                ((i + 2 * j + 3 * k) as f64).sin() * 10.0
            })
            .collect();
        let x = Tensor::from_vec(values.clone(), (a, b, c), &cpu())?;
        let y = logsumexp_dims(&x, &[2, 0], false)?;
        assert_eq!(y.dims(), &[b]);
        let y_keep = logsumexp_dims(&x, &[0, 2], true)?;
        assert_eq!(y_keep.dims(), &[1, b, 1]);
        let got = y.to_vec1::<f64>()?;
        for (j, &value) in got.iter().enumerate() {
            let slice: Vec<f64> = (0..a)
                .flat_map(|i| (0..c).map(move |k| (i, k)))
                .map(|(i, k)| values[i * b * c + j * c + k])
                .collect();
            assert!((value - reference(&slice)).abs() < 1e-12);
        }
        let all = logsumexp_all(&x)?.to_scalar::<f64>()?;
        assert!((all - reference(&values)).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn negative_dim_and_keepdim() -> Result<()> {
        let x = Tensor::new(&[[0f32, 0.0], [1.0, 1.0]], &cpu())?;
        let y = logsumexp_keepdim(&x, D::Minus1)?;
        assert_eq!(y.dims(), &[2, 1]);
        let y = logsumexp(&x, D::Minus2)?.to_vec1::<f32>()?;
        let expected = reference(&[0.0, 1.0]) as f32;
        assert!(y.iter().all(|&v| (v - expected).abs() < 1e-6));
        Ok(())
    }

    #[test]
    fn invalid_dims_are_errors() -> Result<()> {
        let x = Tensor::zeros((2, 3), DType::F32, &cpu())?;
        assert!(matches!(
            logsumexp_dims(&x, &[0, 0], false),
            Err(Error::InvalidDims { .. })
        ));
        assert!(matches!(
            logsumexp_dims(&x, &[2], false),
            Err(Error::InvalidDims { .. })
        ));
        assert!(logsumexp(&x, 5).is_err());
        let ints = Tensor::new(&[1u32, 2], &cpu())?;
        assert!(matches!(logsumexp(&ints, 0), Err(Error::UnsupportedDtype { .. })));
        Ok(())
    }

    #[test]
    fn half_precision_is_computed_in_f32() -> Result<()> {
        let x = Tensor::new(&[1000f32, 1000.0], &cpu())?.to_dtype(DType::BF16)?;
        let y = logsumexp(&x, 0)?;
        assert_eq!(y.dtype(), DType::BF16);
        let value = y.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        assert!((value - (1000.0 + LN_2)).abs() < 4.0, "bf16 ulp at 1000 is 4");
        Ok(())
    }

    #[test]
    fn non_contiguous_input_is_handled() -> Result<()> {
        let x = Tensor::new(&[[0f64, 10.0], [1.0, 20.0], [2.0, 30.0]], &cpu())?.t()?;
        let y = logsumexp(&x, 1)?.to_vec1::<f64>()?;
        assert!((y[0] - reference(&[0.0, 1.0, 2.0])).abs() < 1e-12);
        assert!((y[1] - reference(&[10.0, 20.0, 30.0])).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn gradient_matches_finite_differences() -> Result<()> {
        let values = [0.3f64, -1.2, 2.5, 0.0];
        let x = Var::new(&values, &cpu())?;
        let y = logsumexp(x.as_tensor(), 0)?;
        let grad = grad_of(&x, &y).to_vec1::<f64>()?;
        let h = 1e-6;
        for i in 0..values.len() {
            let mut plus = values;
            let mut minus = values;
            plus[i] += h;
            minus[i] -= h;
            let fd = (reference(&plus) - reference(&minus)) / (2.0 * h);
            assert!((grad[i] - fd).abs() < 1e-8, "{i}: {} vs {fd}", grad[i]);
        }
        Ok(())
    }

    #[test]
    fn second_derivative_is_softmax_jacobian() -> Result<()> {
        // The backward pass is built from tensor ops, so it can be
        // differentiated: ∂²/∂x_j² lse = s_j (1 − s_j).
        let x = Var::new(&[0.5f64, -0.5, 1.5], &cpu())?;
        let y = logsumexp(x.as_tensor(), 0)?;
        let grads = y.backward()?;
        let g = grads.get(x.as_tensor()).expect("gradient");
        // Candle detaches gradients unless CANDLE_GRAD_DO_NOT_DETACH is set, so
        // rebuild the graph from the softmax expression itself.
        let s = softmax_for_gradient(x.as_tensor())?;
        let (g, s_values) = (g.to_vec1::<f64>()?, s.to_vec1::<f64>()?);
        assert_eq!(g, s_values);
        let second = s.get(0)?.backward()?;
        let h = second.get(x.as_tensor()).expect("second gradient").to_vec1::<f64>()?;
        let s0 = s_values[0];
        assert!((h[0] - s0 * (1.0 - s0)).abs() < 1e-12);
        assert!((h[1] + s0 * s_values[1]).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn tensor_ops_fallback_matches_kernel() -> Result<()> {
        let rows = Tensor::new(
            &[
                [NEG_INF, NEG_INF],
                [1000.0, 1000.0],
                [-1000.0, -1000.0],
                [f64::INFINITY, 0.0],
                [f64::NAN, 0.0],
                [0.5, -0.25],
            ],
            &cpu(),
        )?;
        let fallback = logsumexp_last_dim_tensor_ops(&rows)?.flatten_all()?.to_vec1::<f64>()?;
        let kernel = logsumexp(&rows, 1)?.to_vec1::<f64>()?;
        for (a, b) in fallback.iter().zip(&kernel) {
            assert!(
                a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-12,
                "{a} vs {b}"
            );
        }
        // No NaN in the fallback's gradient on the all -inf row.
        let x = Var::from_tensor(&Tensor::new(&[[NEG_INF, NEG_INF], [0.0, 0.0]], &cpu())?)?;
        let y = logsumexp_last_dim_tensor_ops(x.as_tensor())?;
        let grad = grad_of(&x, &y).to_vec2::<f64>()?;
        assert_eq!(grad, vec![vec![0.0, 0.0], vec![0.5, 0.5]]);
        let empty = logsumexp_last_dim_tensor_ops(&Tensor::zeros((2, 0), DType::F32, &cpu())?)?;
        assert_eq!(empty.flatten_all()?.to_vec1::<f32>()?, vec![f32::NEG_INFINITY; 2]);
        Ok(())
    }

    #[test]
    fn weighted_tensor_matches_slice_version() -> Result<()> {
        let x = [[1.0f64, 2.0, f64::INFINITY], [NEG_INF, 0.0, 3.0]];
        let b = [[2.0f64, 3.0, 0.0], [1.0, 0.5, 0.0]];
        let xt = Var::new(&x, &cpu())?;
        let bt = Tensor::new(&b, &cpu())?;
        let y = logsumexp_weighted(xt.as_tensor(), &bt, 1)?;
        let got = y.to_vec1::<f64>()?;
        for row in 0..2 {
            let expected = logsumexp_weighted_f64(&x[row], &b[row]).unwrap();
            assert!((got[row] - expected).abs() < 1e-12, "{row}: {} vs {expected}", got[row]);
        }
        let grad = grad_of(&xt, &y).to_vec2::<f64>()?;
        assert!(grad.iter().flatten().all(|g| g.is_finite()));
        // Row 0: weights ∝ b e^x on the first two entries.
        let total = 2.0 * 1f64.exp() + 3.0 * 2f64.exp();
        assert!((grad[0][0] - 2.0 * 1f64.exp() / total).abs() < 1e-12);
        assert!(grad[0][2] == 0.0 && grad[1][2] == 0.0);
        let err = logsumexp_weighted(xt.as_tensor(), &Tensor::ones(3, DType::F64, &cpu())?, 1);
        assert!(matches!(err, Err(Error::ShapeMismatch { .. })));
        Ok(())
    }
}
