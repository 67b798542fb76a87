//! CPU kernels behind [`super::logsumexp`] and the slice functions.
//!
//! One pass over memory: the input is cut into cache-sized blocks; for each
//! block we find its max (and whether it holds a NaN), then add
//! `e^{x_i − a}` for the running shift `a` into `f64` lane accumulators.
//! When a block raises the max, the running sum is rescaled by
//! `e^{a_old − a_new}` (the "online" logsumexp). Long single rows are split
//! between threads and the partial `(max, sum)` pairs merged the same way;
//! many rows are split between threads row-wise.
//!
//! The exponential is a branch-free `f64` routine for non-positive arguments
//! (Cody–Waite range reduction `d = k ln 2 + r`, Taylor polynomial for
//! `e^r`, `2^k` built from the exponent bits), so the compiler can vectorise
//! the inner loop; on x86-64 CPUs with AVX2 and FMA a copy compiled for them
//! is chosen at run time. `f32` inputs are widened to `f64` before the
//! subtraction, so `x_i − a` is exact, and the degree-7 polynomial keeps each
//! term within 1e-8 relative, below `f32`'s rounding (6e-8); `f64` inputs use
//! degree 12, accurate to rounding.

use crate::fast_exp::{exp_nonpositive, has_avx2_fma};
use rayon::prelude::*;

/// Accumulator lanes in the inner loops (a multiple of every SIMD width).
const LANES: usize = 8;
/// Elements per block: 2048 `f64` = 16 KiB, small enough to stay in L1.
const BLOCK: usize = 2048;
/// Below this many elements per thread, spawning threads does not pay.
const MIN_ELEMENTS_PER_THREAD: usize = 1 << 16;
/// A floating-point element the kernels accept (`f32`, `f64`).
pub(crate) trait Real: Copy + Send + Sync + PartialOrd + 'static {
    /// Negative infinity of this type.
    const NEG_INFINITY: Self;
    /// Exact widening (or identity) to `f64`.
    fn to_f64(self) -> f64;
    /// Rounding to this type.
    fn from_f64(value: f64) -> Self;
    /// `true` for NaN.
    fn is_nan(self) -> bool;
    /// `Σ e^{x_i − shift}` for `x_i ≤ shift`, accumulated in `f64`;
    /// `FUSED` selects fused multiply-adds (only where the CPU has them).
    fn sum_exp_shifted<const FUSED: bool>(block: &[Self], shift: f64) -> f64;
}

impl Real for f32 {
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value as f32
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    #[inline(always)]
    fn sum_exp_shifted<const FUSED: bool>(block: &[Self], shift: f64) -> f64 {
        // Degree 7 gives a relative error below 1e-8, under f32's 6e-8.
        sum_exp_shifted::<Self, 7, FUSED>(block, shift)
    }
}

impl Real for f64 {
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    #[inline(always)]
    fn sum_exp_shifted<const FUSED: bool>(block: &[Self], shift: f64) -> f64 {
        // Degree 12: truncation error below 2e-16, at the level of rounding.
        sum_exp_shifted::<Self, 12, FUSED>(block, shift)
    }
}

#[inline(always)]
fn sum_exp_shifted<T: Real, const DEGREE: usize, const FUSED: bool>(block: &[T], shift: f64) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let mut chunks = block.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += exp_nonpositive::<DEGREE, FUSED>(x.to_f64() - shift);
        }
    }
    let mut tail = 0.0;
    for &x in chunks.remainder() {
        tail += exp_nonpositive::<DEGREE, FUSED>(x.to_f64() - shift);
    }
    let [a, b, c, d, e, f, g, h] = lanes;
    ((a + b) + (c + d)) + ((e + f) + (g + h)) + tail
}

/// Max of a block (ignoring NaN) and whether it holds a NaN.
#[inline(always)]
fn scan<T: Real>(block: &[T]) -> (T, bool) {
    let mut maxes = [T::NEG_INFINITY; LANES];
    let mut nans = [false; LANES];
    let mut chunks = block.chunks_exact(LANES);
    for chunk in &mut chunks {
        for ((max, nan), &x) in maxes.iter_mut().zip(nans.iter_mut()).zip(chunk) {
            *max = if x > *max { x } else { *max };
            *nan |= x.is_nan();
        }
    }
    let mut max = T::NEG_INFINITY;
    let mut nan = nans.iter().any(|&n| n);
    for &x in maxes.iter().chain(chunks.remainder()) {
        max = if x > max { x } else { max };
        nan |= x.is_nan();
    }
    (max, nan)
}

/// Running state of the online reduction: the result is `max + ln sum`.
#[derive(Clone, Copy, Debug)]
struct Partial {
    max: f64,
    /// `Σ e^{x_i − max}` over the elements seen so far.
    sum: f64,
    nan: bool,
}

impl Partial {
    const EMPTY: Partial = Partial {
        max: f64::NEG_INFINITY,
        sum: 0.0,
        nan: false,
    };

    #[inline(always)]
    fn absorb<T: Real, const FUSED: bool>(&mut self, block: &[T]) {
        let (block_max, block_nan) = scan(block);
        self.nan |= block_nan;
        if self.nan {
            return;
        }
        let block_max = block_max.to_f64();
        if block_max == f64::INFINITY || self.max == f64::INFINITY {
            self.max = f64::INFINITY;
            return;
        }
        if block_max == f64::NEG_INFINITY {
            return;
        }
        if block_max > self.max {
            // exp(-inf) = 0 covers the first finite block.
            self.sum *= (self.max - block_max).exp();
            self.max = block_max;
        }
        self.sum += T::sum_exp_shifted::<FUSED>(block, self.max);
    }

    fn merge(self, other: Partial) -> Partial {
        let nan = self.nan || other.nan;
        let max = if self.max > other.max { self.max } else { other.max };
        if nan || !max.is_finite() {
            // NaN wins over everything, +inf over finite values; an all -inf
            // pair keeps sum 0.
            return Partial { max, sum: 0.0, nan };
        }
        let sum = self.sum * (self.max - max).exp() + other.sum * (other.max - max).exp();
        Partial { max, sum, nan }
    }

    fn finish(self) -> f64 {
        if self.nan {
            f64::NAN
        } else if self.max == f64::INFINITY {
            f64::INFINITY
        } else if self.max == f64::NEG_INFINITY {
            // All -inf, or empty: log 0 = -inf, never NaN (SPEC §10).
            f64::NEG_INFINITY
        } else {
            // sum ∈ [1, n], so ln sum ∈ [0, ln n] is finite.
            self.max + self.sum.ln()
        }
    }
}

#[inline(always)]
fn partial_of_impl<T: Real, const FUSED: bool>(row: &[T]) -> Partial {
    let mut state = Partial::EMPTY;
    for block in row.chunks(BLOCK) {
        state.absorb::<T, FUSED>(block);
        if state.nan {
            break;
        }
    }
    state
}

/// The reduction state of a whole row, using AVX2 and FMA where available.
fn partial_of<T: Real>(row: &[T]) -> Partial {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the running CPU supports AVX2 and FMA, checked just above.
        return unsafe { partial_of_avx2_fma(row) };
    }
    partial_of_impl::<T, false>(row)
}

/// [`partial_of_impl`] compiled for AVX2 + FMA: 4 `f64` lanes and fused
/// multiply-adds (the default x86-64 target has only SSE2).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn partial_of_avx2_fma<T: Real>(row: &[T]) -> Partial {
    partial_of_impl::<T, true>(row)
}

/// Number of worker threads for `n_elements` of work (at least 1).
fn n_threads_for(n_elements: usize) -> usize {
    let available = rayon::current_num_threads().max(1);
    (n_elements / MIN_ELEMENTS_PER_THREAD).clamp(1, available)
}

/// `log Σ_i e^{x_i}` over one row, in `f64`; threads for long rows.
pub(crate) fn logsumexp_row<T: Real>(row: &[T]) -> f64 {
    let n_threads = n_threads_for(row.len());
    if n_threads <= 1 {
        return partial_of(row).finish();
    }
    // Whole blocks per thread so block boundaries do not depend on threads.
    let blocks_per_thread = row.len().div_ceil(BLOCK).div_ceil(n_threads);
    let chunk_len = blocks_per_thread * BLOCK;
    row.par_chunks(chunk_len)
        .map(partial_of)
        .collect::<Vec<_>>()
        .into_iter()
        .fold(Partial::EMPTY, Partial::merge)
        .finish()
}

/// Row-wise logsumexp of a row-major `[n_rows, row_len]` buffer.
///
/// `data.len()` must be `n_rows * row_len`; a short buffer gives NaN rows
/// rather than a panic.
pub(crate) fn logsumexp_rows<T: Real>(data: &[T], n_rows: usize, row_len: usize) -> Vec<T> {
    let mut out = vec![T::NEG_INFINITY; n_rows];
    if row_len == 0 || n_rows == 0 {
        return out;
    }
    if n_rows == 1 {
        if let Some(first) = out.first_mut() {
            *first = T::from_f64(logsumexp_row(data));
        }
        return out;
    }
    let n_threads = n_threads_for(data.len()).min(n_rows);
    let fill = |rows: &[T], out: &mut [T]| {
        let mut row_iter = rows.chunks(row_len);
        for value in out.iter_mut() {
            *value = match row_iter.next() {
                Some(row) if row.len() == row_len => T::from_f64(partial_of(row).finish()),
                _ => T::from_f64(f64::NAN),
            };
        }
    };
    if n_threads <= 1 {
        fill(data, &mut out);
        return out;
    }
    let rows_per_thread = n_rows.div_ceil(n_threads);
    out.par_chunks_mut(rows_per_thread)
        .enumerate()
        .for_each(|(i, out_chunk)| {
            let start = (i * rows_per_thread * row_len).min(data.len());
            let end = (start + out_chunk.len() * row_len).min(data.len());
            fill(&data[start..end], out_chunk);
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocked, threaded and plain evaluation agree on a long row.
    #[test]
    fn threaded_row_matches_sequential() {
        let row: Vec<f64> = (0..300_000u64)
            .map(|i| ((i * 7919) % 1000) as f64 * 0.01 - 5.0)
            .collect();
        let naive = {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
        };
        let ours = logsumexp_row(&row);
        assert!((ours - naive).abs() < 1e-12 * naive.abs().max(1.0), "{ours} vs {naive}");
        let merged = partial_of(&row[..1000]).merge(partial_of(&row[1000..])).finish();
        assert!((merged - naive).abs() < 1e-12 * naive.abs().max(1.0));
        // The portable (SSE2) path agrees with the dispatched one.
        let portable = partial_of_impl::<f64, false>(&row).finish();
        assert!((portable - naive).abs() < 1e-12 * naive.abs().max(1.0));
    }

    /// A max that rises block after block forces the rescaling path.
    #[test]
    fn rising_max_rescales_running_sum() {
        let row: Vec<f64> = (0..10 * BLOCK).map(|i| i as f64 * 1e-3).collect();
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let naive = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        let ours = partial_of(&row).finish();
        assert!((ours - naive).abs() < 1e-12 * naive.abs(), "{ours} vs {naive}");
    }

    #[test]
    fn rows_kernel_handles_ragged_and_empty_shapes() {
        let data = [0.0f32, 0.0, 1.0, 1.0];
        let out = logsumexp_rows(&data, 2, 2);
        let ln2 = std::f32::consts::LN_2;
        assert!((out[0] - ln2).abs() < 1e-7 && (out[1] - 1.0 - ln2).abs() < 1e-6);
        assert_eq!(logsumexp_rows::<f32>(&[], 3, 0), vec![f32::NEG_INFINITY; 3]);
        // A buffer shorter than promised yields NaN, not a panic.
        assert!(logsumexp_rows(&data, 3, 2)[2].is_nan());
    }
}
