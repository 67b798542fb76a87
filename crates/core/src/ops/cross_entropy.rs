//! The cross-entropy of every row of a logits matrix with one target
//! column, optionally leaving each row's diagonal entry out of its softmax
//! (NT-Xent: an anchor is not its own negative), as one op whose backward
//! pass is one sweep:
//!
//! ```text
//! ℓ_i        = log Σ_{k ∈ K_i} exp(c x_ik) − c x_{i,t_i},   K_i = every column (or every k ≠ i)
//! ∂ℓ_i/∂x_ik = c (p_ik − 1[k = t_i]) for k ∈ K_i,  p_i = softmax of c x_i over K_i;  0 for a left-out diagonal
//! ```
//!
//! with a scale `c` (NT-Xent's `1/τ`) applied inside, which saves a
//! full-size scaled copy and its gradient.
//!
//! ```text
//! ```
//!
//! Composed from Candle ops (mask, log-softmax, gather) the same loss runs
//! about twenty sweeps over the matrix forward and backward, and for
//! NT-Xent's 1024 × 1024 similarities took twice PyTorch's time. On CUDA
//! and Metal, and for other dtypes, [`cross_entropy_rows`] composes Candle's
//! ops.

use super::{CpuForward, Native, PARALLEL_MIN, fast_path, for_each_chunk, map_floats};
use candle::{CpuStorage, CustomOp1, CustomOp2, D, DType, Layout, Shape, Tensor, bail};
use std::sync::Arc;

/// Row targets and whether the diagonal is left out.
#[derive(Clone, Debug)]
struct RowCrossEntropy {
    targets: Arc<Vec<u32>>,
    skip_diagonal: bool,
    scale: f64,
}

/// Independent accumulators of the row reductions, so that the compiler
/// vectorises them (a single running max or sum is a chain of dependent
/// operations, one value at a time: the scalar loop was half of NT-Xent's
/// forward and backward time at 1024 × 1024).
const LANES: usize = 16;

/// `max(c x)` over `xs` (−∞ for none), in [`LANES`] running maxima.
#[inline(always)]
fn scaled_max<T: Native>(xs: &[T], c: T) -> T {
    let lowest = T::from_f64(f64::NEG_INFINITY);
    let mut lanes = [lowest; LANES];
    let chunks = xs.chunks_exact(LANES);
    let mut max = chunks
        .remainder()
        .iter()
        .fold(lowest, |m, &x| if c * x > m { c * x } else { m });
    for chunk in chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = if c * x > *m { c * x } else { *m };
        }
    }
    for m in lanes {
        max = if m > max { m } else { max };
    }
    max
}

/// `Σ exp(c x − max)` over `xs`: each term in `T`, summed in f64 in
/// [`LANES`] partial sums.
#[inline(always)]
fn shifted_exp_sum<T: Native>(xs: &[T], c: T, max: T) -> f64 {
    let mut lanes = [0f64; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest: f64 = chunks.remainder().iter().map(|&x| (c * x - max).exp().to_f64()).sum();
    for chunk in chunks {
        for (a, &x) in lanes.iter_mut().zip(chunk) {
            *a += (c * x - max).exp().to_f64();
        }
    }
    lanes.iter().sum::<f64>() + rest
}

/// `(max, log Σ exp(c x − max))` over row `i`'s columns in `K_i` (`max`
/// of `c x`): the row in at most two contiguous pieces, around a left-out
/// diagonal.
#[inline(always)]
fn log_sum_exp<T: Native>(row: &[T], i: usize, skip: bool, c: T) -> (T, T) {
    let (before, after) = if skip && i < row.len() {
        (&row[..i], &row[i + 1..])
    } else {
        (row, &row[..0])
    };
    let (a, b) = (scaled_max(before, c), scaled_max(after, c));
    let max = if b > a { b } else { a };
    let sum = shifted_exp_sum(before, c, max) + shifted_exp_sum(after, c, max);
    (max, T::from_f64(sum.ln()))
}

impl RowCrossEntropy {
    fn check(&self, rows: usize, cols: usize) -> candle::Result<()> {
        if self.targets.len() != rows {
            bail!("cross_entropy_rows: {} targets for {rows} rows", self.targets.len())
        }
        if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= cols) {
            bail!("cross_entropy_rows: target {t} is past the {cols} columns")
        }
        if self.skip_diagonal
            && let Some(i) = (0..rows).find(|&i| self.targets[i] as usize == i)
        {
            bail!("cross_entropy_rows: row {i}'s target is its left-out diagonal")
        }
        Ok(())
    }

    fn forward<T: Native>(&self, x: &[T], rows: usize, cols: usize) -> Vec<T> {
        let mut out = vec![T::zero(); rows];
        for_each_chunk(
            &mut out,
            1,
            x.len() >= PARALLEL_MIN,
            #[inline(always)]
            |i, loss| {
                let row = &x[i * cols..(i + 1) * cols];
                let c = T::from_f64(self.scale);
                let (max, lse) = log_sum_exp(row, i, self.skip_diagonal, c);
                loss[0] = max + lse - c * row[self.targets[i] as usize];
            },
        );
        out
    }

    fn backward<T: Native>(&self, x: &[T], g: &[T], rows: usize, cols: usize) -> Vec<T> {
        let mut dx = vec![T::zero(); rows * cols];
        for_each_chunk(
            &mut dx,
            cols.max(1),
            x.len() >= PARALLEL_MIN,
            #[inline(always)]
            |i, d| {
                let row = &x[i * cols..(i + 1) * cols];
                let c = T::from_f64(self.scale);
                let (max, lse) = log_sum_exp(row, i, self.skip_diagonal, c);
                let (shift, gc) = (max + lse, g[i] * c);
                for (d, &x) in d.iter_mut().zip(row) {
                    *d = gc * (c * x - shift).exp();
                }
                if self.skip_diagonal && i < cols {
                    d[i] = T::zero();
                }
                let t = self.targets[i] as usize;
                d[t] -= gc;
            },
        );
        dx
    }
}

fn matrix(layout: &Layout, op: &str) -> candle::Result<(usize, usize)> {
    match layout.shape().dims() {
        &[rows, cols] => Ok((rows, cols)),
        other => bail!("{op}: logits of shape {other:?}, expected [rows, columns]"),
    }
}

impl CustomOp1 for RowCrossEntropy {
    fn name(&self) -> &'static str {
        "deepgen-cross-entropy-rows"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CpuForward {
        let (rows, cols) = matrix(layout, self.name())?;
        self.check(rows, cols)?;
        let out = map_floats!(self.name(), |x = (storage, layout)| self.forward(x, rows, cols));
        Ok((out, Shape::from(rows)))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad: &Tensor) -> candle::Result<Option<Tensor>> {
        let op = RowCrossEntropyGrad(self.clone());
        Ok(Some(logits.detach().contiguous()?.apply_op2(&grad.contiguous()?, op)?))
    }
}

/// `(logits, ∂ℓ) → ∂logits` of [`RowCrossEntropy`] (not differentiable again).
#[derive(Debug)]
struct RowCrossEntropyGrad(RowCrossEntropy);

impl CustomOp2 for RowCrossEntropyGrad {
    fn name(&self) -> &'static str {
        "deepgen-cross-entropy-rows-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CpuForward {
        let (rows, cols) = matrix(l1, self.name())?;
        if l2.shape().dims() != [rows] {
            bail!("{}: a gradient of shape {:?} for {rows} rows", self.name(), l2.shape())
        }
        let out = map_floats!(self.name(), |x = (s1, l1), g = (s2, l2)| self.0.backward(x, g, rows, cols));
        Ok((out, Shape::from((rows, cols))))
    }
}

/// `ℓ_i = −log softmax(c · logits_i)[targets_i]` for every row of `logits`
/// `[rows, columns]`, the softmax over all columns or, with
/// `skip_diagonal`, over every column but `i`: `[rows]`. `targets` are
/// `u32` column indices, one per row (never the left-out diagonal); `c` is
/// `scale` (1 for plain logits).
///
/// # Errors
/// Logits that are not a matrix; a target per row missing, past the
/// columns, or on a left-out diagonal; a scale that is not finite; Candle
/// errors.
pub fn cross_entropy_rows(
    logits: &Tensor,
    targets: &Tensor,
    skip_diagonal: bool,
    scale: f64,
) -> candle::Result<Tensor> {
    if !scale.is_finite() {
        bail!("cross_entropy_rows: scale {scale} is not finite")
    }
    let (rows, cols) = logits.dims2()?;
    let targets_host = targets
        .to_dtype(DType::U32)?
        .to_device(&candle::Device::Cpu)?
        .to_vec1::<u32>()?;
    let op = RowCrossEntropy {
        targets: Arc::new(targets_host),
        skip_diagonal,
        scale,
    };
    op.check(rows, cols)?;
    if fast_path(&[logits]) {
        return logits.contiguous()?.apply_op1(op);
    }
    composed(logits, &op.targets, skip_diagonal, scale)
}

/// The same loss from Candle's ops (what CUDA and Metal run): scale, −∞ on
/// the left-out diagonal, log-softmax, pick the targets.
fn composed(logits: &Tensor, targets: &[u32], skip_diagonal: bool, scale: f64) -> candle::Result<Tensor> {
    let logits = (logits * scale)?;
    let (rows, cols) = logits.dims2()?;
    let masked = if skip_diagonal {
        let mut mask = vec![0f64; rows * cols];
        for i in 0..rows.min(cols) {
            mask[i * cols + i] = f64::NEG_INFINITY;
        }
        let mask = Tensor::from_vec(mask, (rows, cols), logits.device())?.to_dtype(logits.dtype())?;
        (&logits + mask)?
    } else {
        logits
    };
    let log_p = candle_nn::ops::log_softmax(&masked, D::Minus1)?;
    let index = Tensor::from_vec(targets.to_vec(), (rows, 1), masked.device())?;
    log_p.gather(&index, 1)?.squeeze(1)?.neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::flat;
    use crate::rng::{randn, rng_from_seed};
    use candle::{Device, Var};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Values and gradients (with random row weights) equal the composed
        /// Candle ops in f64, with and without the diagonal, for rows shorter
        /// and longer than the reductions' lanes.
        #[test]
        fn prop_cross_entropy_rows_matches_the_composed_ops(seed in 0u64..10_000, rows in 1usize..9, extra in 1usize..40, skip: bool, scale in 0.1f64..5.0) {
            let cols = rows + extra;
            let mut rng = rng_from_seed(seed);
            let x = (randn(&mut rng, (rows, cols), &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap() * 3.0).unwrap();
            let weights = randn(&mut rng, rows, &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
            let targets: Vec<u32> = (0..rows).map(|i| ((i + 1 + seed as usize % extra) % cols) as u32).collect();
            let targets_t = Tensor::from_vec(targets.clone(), rows, &Device::Cpu).unwrap();
            let var = Var::from_tensor(&x).unwrap();
            let ours = cross_entropy_rows(var.as_tensor(), &targets_t, skip, scale).unwrap();
            let theirs = composed(var.as_tensor(), &targets, skip, scale).unwrap();
            for (a, b) in flat(&ours).iter().zip(flat(&theirs)) {
                prop_assert!((a - b).abs() < 1e-12, "{a} vs {b}");
            }
            let g_ours = (ours * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            let g_theirs = (theirs * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            let (a, b) = (flat(g_ours.get(&var).unwrap()), flat(g_theirs.get(&var).unwrap()));
            for (k, (a, b)) in a.iter().zip(&b).enumerate() {
                prop_assert!((a - b).abs() < 1e-12, "element {k}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn f32_agrees_with_f64_and_bad_targets_are_errors() -> candle::Result<()> {
        let x = randn(&mut rng_from_seed(3), (64, 64), &Device::Cpu)?;
        let targets = Tensor::from_vec((0..64u32).map(|i| (i + 32) % 64).collect(), 64, &Device::Cpu)?;
        let single = flat(&cross_entropy_rows(&x, &targets, true, 2.0)?);
        let double = flat(&cross_entropy_rows(&x.to_dtype(DType::F64)?, &targets, true, 2.0)?);
        for (a, b) in single.iter().zip(&double) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let on_diagonal = Tensor::from_vec((0..64u32).collect(), 64, &Device::Cpu)?;
        assert!(cross_entropy_rows(&x, &on_diagonal, true, 1.0).is_err());
        let past = Tensor::from_vec(vec![64u32; 64], 64, &Device::Cpu)?;
        assert!(cross_entropy_rows(&x, &past, false, 1.0).is_err());
        assert!(cross_entropy_rows(&x, &targets.narrow(0, 0, 3)?, false, 1.0).is_err());
        assert!(cross_entropy_rows(&x, &targets, false, f64::NAN).is_err());
        Ok(())
    }
}
