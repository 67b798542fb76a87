//! Distances between two samples of feature vectors: the one evaluator every
//! generative model is scored with.
//!
//! Samples are row-major `f64` slices with `dim` columns (`n = len / dim`
//! rows), e.g. the classifier's penultimate-layer features of real test
//! images and of generated ones.
//!
//! - [`GaussianStats`] and [`frechet_distance`]: the Fréchet distance between
//!   Gaussians fitted to each sample (FID when the features are Inception's);
//! - [`mmd2_unbiased`] with the Gaussian kernel and the [`median_bandwidth`]
//!   heuristic;
//! - [`knn_precision_recall`]: improved precision and recall (Kynkäänniemi
//!   et al. 2019).
//!
//! # Pairwise distances
//!
//! All pairwise squared distances come from matrix products,
//! `‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b` clamped at 0, after both samples are
//! centred on a common mean (distances do not change, and the cancellation
//! in the expansion shrinks with `‖a‖²`). Rows are processed in blocks of at
//! most [`BLOCK_ELEMENTS`] distances (one faer matmul per block, blocks in
//! parallel with rayon), so memory stays `O(block)`: no `n × m` matrix is
//! ever allocated. k-th-neighbour radii are found per row with
//! `select_nth_unstable_by`.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::fast_exp::{exp_nonpositive, has_avx2_fma};

/// Most squared distances held by one block (`rows × columns`): 2²¹ `f64`s,
/// 16 MiB per rayon thread.
pub const BLOCK_ELEMENTS: usize = 1 << 21;

/// Most pairwise distances [`median_bandwidth`] collects in memory at once
/// (64 MiB); larger candidate sets are narrowed by histogram passes first.
const MEDIAN_COLLECT_CAP: usize = 1 << 23;

/// Bins of one histogram pass of [`median_bandwidth`].
const MEDIAN_BINS: usize = 1 << 16;

fn invalid(op: &'static str, reason: String) -> Error {
    Error::InvalidArgument { op, reason }
}

/// Checks a row-major sample and returns its number of rows: `dim ≥ 1`,
/// `len` a multiple of `dim`, at least `min_rows` rows, finite values.
fn check_rows(op: &'static str, name: &str, rows: &[f64], dim: usize, min_rows: usize) -> Result<usize> {
    if dim == 0 {
        return Err(invalid(op, "dim is 0, expected at least 1 column".to_string()));
    }
    if !rows.len().is_multiple_of(dim) {
        return Err(invalid(
            op,
            format!("`{name}` has {} values, not a multiple of dim {dim}", rows.len()),
        ));
    }
    let n = rows.len() / dim;
    if n < min_rows {
        return Err(invalid(
            op,
            format!("`{name}` has {n} rows, expected at least {min_rows}"),
        ));
    }
    if let Some((i, v)) = rows.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(invalid(
            op,
            format!(
                "`{name}` row {} column {} is {v}, expected a finite value",
                i / dim,
                i % dim
            ),
        ));
    }
    Ok(n)
}

/// Mean and covariance of feature rows.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianStats {
    /// Mean of the rows, `dim` entries.
    pub mean: Vec<f64>,
    /// Unbiased covariance, `dim × dim` row-major.
    pub cov: Vec<f64>,
    /// Number of features (columns).
    pub dim: usize,
    /// Number of rows the statistics were computed from.
    pub n: usize,
}

impl GaussianStats {
    /// Unbiased (n − 1) covariance; needs n ≥ 2, dim ≥ 1, finite values.
    ///
    /// Two passes: the mean, then `Σ = X_cᵀ X_c / (n − 1)` of the centred rows,
    /// accumulated over blocks of rows with faer's matmul.
    pub fn from_rows(rows: &[f64], dim: usize) -> Result<Self> {
        let n = check_rows("GaussianStats::from_rows", "rows", rows, dim, 2)?;
        let mean = column_mean(rows, dim);
        let block_rows = (BLOCK_ELEMENTS / dim).clamp(1, 1024);
        let gram = rows
            .par_chunks(block_rows * dim)
            .map(|block| {
                let r = block.len() / dim;
                let centred = Mat::from_fn(r, dim, |i, j| block[i * dim + j] - mean[j]);
                let mut g = Mat::<f64>::zeros(dim, dim);
                matmul(
                    g.as_mut(),
                    Accum::Replace,
                    centred.transpose(),
                    centred.as_ref(),
                    1.0,
                    Par::Seq,
                );
                g
            })
            .reduce_with(|a, b| a + b)
            .unwrap_or_else(|| Mat::zeros(dim, dim));
        let scale = 1.0 / (n - 1) as f64;
        // Symmetrise: the blocks' products are symmetric only up to rounding.
        let cov = (0..dim)
            .flat_map(|i| (0..dim).map(move |j| (i, j)))
            .map(|(i, j)| 0.5 * (gram[(i, j)] + gram[(j, i)]) * scale)
            .collect();
        Ok(Self { mean, cov, dim, n })
    }

    fn check(&self, name: &str) -> Result<()> {
        let op = "frechet_distance";
        if self.dim == 0 {
            return Err(invalid(op, format!("`{name}` has dim 0")));
        }
        if self.mean.len() != self.dim || self.cov.len() != self.dim * self.dim {
            return Err(invalid(
                op,
                format!(
                    "`{name}` has a mean of {} and a covariance of {} values, expected {} and {}",
                    self.mean.len(),
                    self.cov.len(),
                    self.dim,
                    self.dim * self.dim
                ),
            ));
        }
        if let Some(v) = self.mean.iter().chain(&self.cov).find(|v| !v.is_finite()) {
            return Err(invalid(op, format!("`{name}` holds {v}, expected finite values")));
        }
        Ok(())
    }
}

fn column_mean(rows: &[f64], dim: usize) -> Vec<f64> {
    let n = rows.len() / dim;
    let mut sum = vec![0.0; dim];
    for row in rows.chunks_exact(dim) {
        for (s, x) in sum.iter_mut().zip(row) {
            *s += x;
        }
    }
    sum.iter().map(|s| s / n as f64).collect()
}

/// Eigenvalues and eigenvectors of the symmetric part of `m`, eigenvalues
/// below the solver's resolution (`dim · ε · λ_max`) set to 0.
fn psd_eigen(m: MatRef<'_, f64>) -> Result<(Vec<f64>, Mat<f64>)> {
    let d = m.nrows();
    let sym = Mat::from_fn(d, d, |i, j| 0.5 * (m[(i, j)] + m[(j, i)]));
    let eigen = sym.self_adjoint_eigen(Side::Lower).map_err(|e| {
        invalid(
            "frechet_distance",
            format!("the symmetric eigensolver did not converge ({e:?})"),
        )
    })?;
    let values: Vec<f64> = eigen.S().column_vector().iter().copied().collect();
    Ok((clamp_eigenvalues(values), eigen.U().to_owned()))
}

/// Clamps eigenvalues of a PSD matrix at 0, together with those below the
/// eigensolver's resolution `dim · ε · λ_max` (its backward error is of the
/// order `ε ‖A‖`, so such values are rounding, not signal).
fn clamp_eigenvalues(mut values: Vec<f64>) -> Vec<f64> {
    let max = values.iter().copied().fold(0.0, f64::max);
    let floor = values.len() as f64 * f64::EPSILON * max;
    for v in &mut values {
        if *v <= floor {
            *v = 0.0;
        }
    }
    values
}

/// Fréchet distance between N(μ₁,Σ₁) and N(μ₂,Σ₂):
/// ‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}), by symmetric eigendecompositions.
///
/// # Method
///
/// `Σ₁ = U Λ Uᵀ` by a symmetric eigendecomposition (of `(Σ₁ + Σ₁ᵀ)/2`), with
/// the eigenvalues clamped at 0: covariances are PSD, rounding makes tiny
/// negatives, and rank-deficient ones (fewer samples than features, dead
/// features) are common. Eigenvalues below the solver's resolution
/// `dim · ε · λ_max` count as 0 too. Then `Σ₁^{1/2} = U Λ^{1/2} Uᵀ` and
/// `M = Σ₁^{1/2} Σ₂ Σ₁^{1/2} = U (Λ^{1/2} Uᵀ Σ₂ U Λ^{1/2}) Uᵀ`, so `M` has
/// the eigenvalues of `M' = Λ^{1/2} (Uᵀ Σ₂ U) Λ^{1/2}`, which is what is
/// decomposed: the same number, but a direction where `Λ` is 0 gives an
/// exact zero row instead of rounding noise whose square root would show.
/// `M'` is symmetrised (`(M' + M'ᵀ)/2`), its eigenvalues `μ_i` clamped at 0
/// the same way, and `Tr M^{1/2} = Σ_i √μ_i`.
///
/// `M` is symmetric PSD, so its square root is real and symmetric: this is
/// why we never need the complex parts that scipy's general `sqrtm` of the
/// non-symmetric `Σ₁ Σ₂` produces (and which FID code discards).
///
/// The sum can come out slightly below 0 only by rounding (when the two
/// Gaussians are equal); the result is `max(0, ·)` for that reason alone.
pub fn frechet_distance(a: &GaussianStats, b: &GaussianStats) -> Result<f64> {
    a.check("a")?;
    b.check("b")?;
    if a.dim != b.dim {
        return Err(Error::LengthMismatch {
            op: "frechet_distance",
            left: a.dim,
            right: b.dim,
        });
    }
    let d = a.dim;
    let mean_sq: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace = |c: &[f64]| (0..d).map(|i| c[i * d + i]).sum::<f64>();
    let (lambda, u) = psd_eigen(MatRef::from_row_major_slice(&a.cov, d, d))?;
    let sigma2 = MatRef::from_row_major_slice(&b.cov, d, d);
    let rotated = u.transpose() * sigma2 * u.as_ref();
    let root: Vec<f64> = lambda.iter().map(|l| l.sqrt()).collect();
    let m = Mat::from_fn(d, d, |i, j| root[i] * rotated[(i, j)] * root[j]);
    let mu = psd_eigen_values(m.as_ref())?;
    let trace_sqrt: f64 = mu.iter().map(|v| v.sqrt()).sum();
    let fd = mean_sq + trace(&a.cov) + trace(&b.cov) - 2.0 * trace_sqrt;
    Ok(fd.max(0.0))
}

/// Clamped eigenvalues of the symmetric part of `m` (no eigenvectors).
fn psd_eigen_values(m: MatRef<'_, f64>) -> Result<Vec<f64>> {
    let d = m.nrows();
    let sym = Mat::from_fn(d, d, |i, j| 0.5 * (m[(i, j)] + m[(j, i)]));
    let values = sym.self_adjoint_eigenvalues(Side::Lower).map_err(|e| {
        invalid(
            "frechet_distance",
            format!("the symmetric eigensolver did not converge ({e:?})"),
        )
    })?;
    Ok(clamp_eigenvalues(values))
}

/// Two samples centred on their pooled mean, with their squared row norms.
struct Centred {
    rows: Vec<f64>,
    norms: Vec<f64>,
}

fn centre_pair(x: &[f64], y: &[f64], dim: usize) -> (Centred, Centred) {
    let nx = x.len() / dim;
    let ny = y.len() / dim;
    let mut mean = vec![0.0; dim];
    for row in x.chunks_exact(dim).chain(y.chunks_exact(dim)) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    let total = (nx + ny) as f64;
    mean.iter_mut().for_each(|m| *m /= total);
    let centre = |rows: &[f64]| {
        let rows: Vec<f64> = rows
            .chunks_exact(dim)
            .flat_map(|r| r.iter().zip(&mean).map(|(v, m)| v - m))
            .collect();
        let norms = rows.chunks_exact(dim).map(|r| r.iter().map(|v| v * v).sum()).collect();
        Centred { rows, norms }
    };
    (centre(x), centre(y))
}

/// Squared distances between every row of `a` and every row of `b`, handed to
/// `visit(first_row, block)` one block of rows at a time (in parallel), where
/// `block` is `rows × n_b` row-major; the results are returned in block order.
fn pairwise_blocks<T: Send>(a: &Centred, b: &Centred, dim: usize, visit: impl Fn(usize, &[f64]) -> T + Sync) -> Vec<T> {
    let nb = b.norms.len();
    let block_rows = (BLOCK_ELEMENTS / nb.max(1)).clamp(1, 1024);
    let b_view = MatRef::from_row_major_slice(&b.rows, nb, dim);
    a.rows
        .par_chunks(block_rows * dim)
        .enumerate()
        .map(|(block, chunk)| {
            let first = block * block_rows;
            let r = chunk.len() / dim;
            let a_view = MatRef::from_row_major_slice(chunk, r, dim);
            // Column-major `nb × r`: column i holds row `first + i`'s distances
            // to all of `b`, contiguously, i.e. the block is row-major `r × nb`.
            let mut dot = Mat::<f64>::zeros(nb, r);
            matmul(dot.as_mut(), Accum::Replace, b_view, a_view.transpose(), -2.0, Par::Seq);
            let mut out = Vec::with_capacity(r * nb);
            for i in 0..r {
                let na = a.norms[first + i];
                out.extend(
                    dot.col_as_slice(i)
                        .iter()
                        .zip(&b.norms)
                        .map(|(m2ab, nb)| (na + nb + m2ab).max(0.0)),
                );
            }
            visit(first, &out)
        })
        .collect()
}

/// Unbiased MMD² with the Gaussian kernel k(x,y) = exp(−‖x−y‖²/(2h²)).
///
/// `MMD²_u = 1/(n(n−1)) Σ_{i≠j} k(x_i,x_j) + 1/(m(m−1)) Σ_{i≠j} k(y_i,y_j)
/// − 2/(nm) Σ_{i,j} k(x_i,y_j)` (Gretton et al. 2012, eq. 3); it can be
/// negative. Needs at least 2 rows in each sample and `h > 0` finite.
pub fn mmd2_unbiased(x: &[f64], y: &[f64], dim: usize, bandwidth: f64) -> Result<f64> {
    let op = "mmd2_unbiased";
    let n = check_rows(op, "x", x, dim, 2)?;
    let m = check_rows(op, "y", y, dim, 2)?;
    if !(bandwidth > 0.0) || !bandwidth.is_finite() {
        return Err(invalid(
            op,
            format!("bandwidth is {bandwidth}, expected a finite value > 0"),
        ));
    }
    let gamma = 1.0 / (2.0 * bandwidth * bandwidth);
    let (cx, cy) = centre_pair(x, y, dim);
    let kernel_sum = |a: &Centred, b: &Centred, skip_diagonal: bool| -> f64 {
        let nb = b.norms.len();
        pairwise_blocks(a, b, dim, |first, block| {
            block
                .chunks_exact(nb)
                .enumerate()
                .map(|(i, row)| {
                    let total = kernel_row_sum(row, gamma);
                    // k(x_i, x_i) = 1 exactly; its computed distance may be rounding.
                    if skip_diagonal {
                        total - (-gamma * row[first + i]).exp()
                    } else {
                        total
                    }
                })
                .sum::<f64>()
        })
        .iter()
        .sum()
    };
    let (nf, mf) = (n as f64, m as f64);
    let xx = kernel_sum(&cx, &cx, true) / (nf * (nf - 1.0));
    let yy = kernel_sum(&cy, &cy, true) / (mf * (mf - 1.0));
    let xy = kernel_sum(&cx, &cy, false) / (nf * mf);
    Ok(xx + yy - 2.0 * xy)
}

/// `Σ_j exp(−γ d²_j)` over one row of squared distances, with the crate's
/// vectorised `exp` (degree 12, accurate to `f64` rounding; libm's scalar
/// `exp` made this sum three quarters of the MMD's time) and 4 partial sums.
/// Inlined into its AVX2 + FMA copy: compiled on its own, the fused
/// `mul_add` becomes a call to libm's software `fma` (50× slower).
#[inline(always)]
fn kernel_row_sum_impl<const FUSED: bool>(row: &[f64], gamma: f64) -> f64 {
    let mut acc = [0.0; 4];
    let chunks = row.chunks_exact(4);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|d2| exp_nonpositive::<12, FUSED>(-gamma * d2))
        .sum();
    for chunk in chunks {
        for (a, d2) in acc.iter_mut().zip(chunk) {
            *a += exp_nonpositive::<12, FUSED>(-gamma * d2);
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// [`kernel_row_sum_impl`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_row_sum_avx2_fma(row: &[f64], gamma: f64) -> f64 {
    kernel_row_sum_impl::<true>(row, gamma)
}

fn kernel_row_sum(row: &[f64], gamma: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the running CPU supports AVX2 and FMA, checked just above.
        return unsafe { kernel_row_sum_avx2_fma(row, gamma) };
    }
    kernel_row_sum_impl::<false>(row, gamma)
}

/// The median heuristic: h = median of the pairwise distances ‖a−b‖ over the pooled sample (a ≠ b).
///
/// The pairs are those of distinct rows `i < j` of `x` followed by `y` (two
/// equal rows still count, at distance 0); with an even number of pairs the
/// median is the mean of the two middle distances, as numpy's. Needs at least
/// 2 rows in all. Time is `O(N² dim)` per pass for `N` pooled rows, memory
/// `O(block)`: up to 2²³ candidate distances are selected in memory, larger
/// sets are first narrowed by histogram passes (each one more pairwise pass).
/// For very large samples, pass a random subsample.
///
/// An `h` of 0 (more than half the pairs are equal rows) is returned as an
/// error, since it is no bandwidth.
pub fn median_bandwidth(x: &[f64], y: &[f64], dim: usize) -> Result<f64> {
    let op = "median_bandwidth";
    let n = check_rows(op, "x", x, dim, 0)?;
    let m = check_rows(op, "y", y, dim, 0)?;
    if n + m < 2 {
        return Err(invalid(
            op,
            format!("the pooled sample has {} rows, expected at least 2", n + m),
        ));
    }
    let pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    let (c, _) = centre_pair(&pooled, &[], dim);
    let total = n + m;
    let pairs = total * (total - 1) / 2;
    let lo = kth_pair_sq(&c, dim, (pairs - 1) / 2);
    let hi = if pairs % 2 == 0 {
        kth_pair_sq(&c, dim, pairs / 2)
    } else {
        lo
    };
    let h = 0.5 * (lo.sqrt() + hi.sqrt());
    if !(h > 0.0) {
        return Err(invalid(
            op,
            "the median pairwise distance is 0 (most rows are equal), which is no bandwidth".to_string(),
        ));
    }
    Ok(h)
}

/// Squared distances of the pairs `i < j` of `c` that fall in `[lo, hi)`,
/// visited block by block.
fn pair_blocks_in<T: Send>(
    c: &Centred,
    dim: usize,
    lo: f64,
    hi: f64,
    visit: impl Fn(&mut dyn Iterator<Item = f64>) -> T + Sync,
) -> Vec<T> {
    let n = c.norms.len();
    pairwise_blocks(c, c, dim, |first, block| {
        let mut it = block
            .chunks_exact(n)
            .enumerate()
            .flat_map(|(i, row)| row[first + i + 1..].iter().copied())
            .filter(|&d2| lo <= d2 && d2 < hi);
        visit(&mut it)
    })
}

/// The next representable `f64` above a finite `x ≥ 0` (`f64::next_up` is
/// newer than the workspace's MSRV, 1.85).
fn next_up(x: f64) -> f64 {
    f64::from_bits(x.to_bits() + 1)
}

/// The `rank`-th smallest (0-based) squared distance among pairs `i < j`.
fn kth_pair_sq(c: &Centred, dim: usize, mut rank: usize) -> f64 {
    let mut lo = 0.0;
    let mut hi = f64::INFINITY;
    // Each pass shrinks [lo, hi) by up to 2¹⁶; 64 passes exhaust f64.
    for _ in 0..64 {
        let counts = pair_blocks_in(c, dim, lo, hi, |it: &mut dyn Iterator<Item = f64>| {
            it.fold((0usize, lo), |(count, max), d2| (count + 1, f64::max(max, d2)))
        });
        let count: usize = counts.iter().map(|c| c.0).sum();
        let max = counts.iter().map(|c| c.1).fold(lo, f64::max);
        if count <= MEDIAN_COLLECT_CAP {
            let mut values: Vec<f64> = pair_blocks_in(c, dim, lo, hi, |it: &mut dyn Iterator<Item = f64>| {
                it.collect::<Vec<_>>()
            })
            .concat();
            let (_, v, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
            return *v;
        }
        if max <= lo {
            // Every candidate equals `lo`.
            return lo;
        }
        // Histogram of [lo, max] into MEDIAN_BINS bins with explicit edges.
        let top = next_up(max);
        let edges: Vec<f64> = (0..=MEDIAN_BINS)
            .map(|b| {
                if b == MEDIAN_BINS {
                    top
                } else {
                    lo + (top - lo) * (b as f64 / MEDIAN_BINS as f64)
                }
            })
            .collect();
        let bin_of = |d2: f64| {
            let guess = (((d2 - lo) / (top - lo)) * MEDIAN_BINS as f64) as usize;
            let mut b = guess.min(MEDIAN_BINS - 1);
            while b > 0 && d2 < edges[b] {
                b -= 1;
            }
            while b + 1 < MEDIAN_BINS && d2 >= edges[b + 1] {
                b += 1;
            }
            b
        };
        let hist = pair_blocks_in(c, dim, lo, top, |it: &mut dyn Iterator<Item = f64>| {
            let mut h = vec![0usize; MEDIAN_BINS];
            it.for_each(|d2| h[bin_of(d2)] += 1);
            h
        })
        .into_iter()
        .reduce(|mut a, b| {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            a
        })
        .unwrap_or_default();
        let mut below = 0;
        let mut bin = MEDIAN_BINS - 1;
        for (b, &count) in hist.iter().enumerate() {
            if below + count > rank {
                bin = b;
                break;
            }
            below += count;
        }
        rank -= below;
        lo = edges[bin];
        hi = edges[bin + 1];
    }
    lo
}

/// Improved precision and recall of a generative model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecisionRecall {
    /// Fraction of fake samples inside the real manifold estimate.
    pub precision: f64,
    /// Fraction of real samples inside the fake manifold estimate.
    pub recall: f64,
}

/// Kynkäänniemi et al. 2019 improved precision and recall with k nearest neighbours (k = 3 in the paper):
/// precision = fraction of fake samples inside the union of real k-NN balls; recall = fraction of real inside the union of fake k-NN balls
/// (the radius of a ball is the distance to the k-th nearest OTHER point of the same set).
///
/// A point on a ball's boundary (`‖f − r‖ ≤ radius`) is inside, as in the
/// authors' code. Needs `k ≥ 1` and more than `k` rows in each set.
/// Three pairwise passes (real–real, fake–fake, fake–real; the last one
/// serves both directions).
pub fn knn_precision_recall(real: &[f64], fake: &[f64], dim: usize, k: usize) -> Result<PrecisionRecall> {
    let op = "knn_precision_recall";
    if k == 0 {
        return Err(invalid(op, "k is 0, expected at least 1 neighbour".to_string()));
    }
    let n_real = check_rows(op, "real", real, dim, k + 1)?;
    let n_fake = check_rows(op, "fake", fake, dim, k + 1)?;
    let (cr, cf) = centre_pair(real, fake, dim);
    let real_radii = knn_radii_sq(&cr, dim, k);
    let fake_radii = knn_radii_sq(&cf, dim, k);
    // One fake–real pass: fake row f is in real ball r when d² ≤ real_radii[r];
    // real row r is in fake ball f when d² ≤ fake_radii[f].
    let per_block = pairwise_blocks(&cf, &cr, dim, |first, block| {
        let mut fake_in = 0usize;
        let mut real_in = vec![false; n_real];
        for (i, row) in block.chunks_exact(n_real).enumerate() {
            let fake_radius = fake_radii[first + i];
            let mut inside = false;
            for ((&d2, &real_radius), covered) in row.iter().zip(&real_radii).zip(real_in.iter_mut()) {
                inside |= d2 <= real_radius;
                *covered |= d2 <= fake_radius;
            }
            fake_in += usize::from(inside);
        }
        (fake_in, real_in)
    });
    let fake_in: usize = per_block.iter().map(|b| b.0).sum();
    let real_in = (0..n_real).filter(|&r| per_block.iter().any(|b| b.1[r])).count();
    Ok(PrecisionRecall {
        precision: fake_in as f64 / n_fake as f64,
        recall: real_in as f64 / n_real as f64,
    })
}

/// Squared distance from each row to its k-th nearest other row.
fn knn_radii_sq(c: &Centred, dim: usize, k: usize) -> Vec<f64> {
    let n = c.norms.len();
    pairwise_blocks(c, c, dim, |first, block| {
        let mut scratch = vec![0.0; n];
        block
            .chunks_exact(n)
            .enumerate()
            .map(|(i, row)| {
                scratch.copy_from_slice(row);
                // The point itself sorts last, so index k − 1 is the k-th other.
                scratch[first + i] = f64::INFINITY;
                *scratch.select_nth_unstable_by(k - 1, f64::total_cmp).1
            })
            .collect::<Vec<_>>()
    })
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<impl std::fmt::Debug>) -> String {
        r.expect_err("expected an error").to_string()
    }

    #[test]
    fn bad_shapes_are_errors_naming_the_problem() {
        let x = [0.0, 1.0, 2.0, 3.0];
        assert!(message(GaussianStats::from_rows(&x, 0)).contains("dim is 0"));
        assert!(message(GaussianStats::from_rows(&x, 3)).contains("not a multiple of dim 3"));
        assert!(message(GaussianStats::from_rows(&x, 4)).contains("1 rows, expected at least 2"));
        assert!(message(GaussianStats::from_rows(&[0.0, f64::NAN], 1)).contains("row 1 column 0 is NaN"));
        assert!(message(mmd2_unbiased(&x, &x, 0, 1.0)).contains("dim is 0"));
        assert!(message(mmd2_unbiased(&x, &x[..3], 2, 1.0)).contains("`y` has 3 values"));
        assert!(message(mmd2_unbiased(&x, &x[..2], 2, 1.0)).contains("`y` has 1 rows"));
        assert!(message(mmd2_unbiased(&x, &[0.0, f64::INFINITY, 1.0, 1.0], 2, 1.0)).contains("inf"));
        for h in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(message(mmd2_unbiased(&x, &x, 2, h)).contains("bandwidth"), "{h}");
        }
        assert!(message(median_bandwidth(&x, &x, 0)).contains("dim is 0"));
        assert!(message(median_bandwidth(&x[..1], &[], 1)).contains("pooled sample has 1 rows"));
        assert!(message(median_bandwidth(&x, &[f64::NAN], 1)).contains("NaN"));
        assert!(message(median_bandwidth(&[1.0, 1.0, 1.0], &[], 1)).contains("median pairwise distance is 0"));
        assert!(message(knn_precision_recall(&x, &x, 1, 0)).contains("k is 0"));
        assert!(message(knn_precision_recall(&x, &x, 1, 4)).contains("`real` has 4 rows, expected at least 5"));
        assert!(message(knn_precision_recall(&x, &x[..3], 1, 3)).contains("`fake` has 3 rows"));
        assert!(message(knn_precision_recall(&x, &x, 5, 1)).contains("not a multiple"));
        assert!(message(knn_precision_recall(&x, &x, 0, 1)).contains("dim is 0"));
    }

    #[test]
    fn bad_stats_are_errors() {
        let a = GaussianStats::from_rows(&[0.0, 1.0, 2.0, 4.0], 2).unwrap();
        let b = GaussianStats::from_rows(&[0.0, 1.0, 2.0], 1).unwrap();
        assert!(matches!(
            frechet_distance(&a, &b),
            Err(Error::LengthMismatch { left: 2, right: 1, .. })
        ));
        let mut broken = a.clone();
        broken.cov.pop();
        assert!(message(frechet_distance(&broken, &a)).contains("covariance of 3 values"));
        let mut nan = a.clone();
        nan.mean[0] = f64::NAN;
        assert!(message(frechet_distance(&a, &nan)).contains("`b` holds NaN"));
    }

    #[test]
    fn small_known_values() {
        // Rows (0,0),(2,0),(0,2),(2,2): mean (1,1), covariance (4/3) I.
        let s = GaussianStats::from_rows(&[0.0, 0.0, 2.0, 0.0, 0.0, 2.0, 2.0, 2.0], 2).unwrap();
        assert_eq!(s.mean, [1.0, 1.0]);
        let c = 4.0 / 3.0;
        for (got, want) in s.cov.iter().zip([c, 0.0, 0.0, c]) {
            assert!((got - want).abs() < 1e-15);
        }
        // 1-d pooled {0, 1, 3}: distances 1, 3, 2, median 2; {0, 1, 3, 7} adds 7, 6, 4: median (3 + 4) / 2.
        assert_eq!(median_bandwidth(&[0.0, 1.0], &[3.0], 1).unwrap(), 2.0);
        assert_eq!(median_bandwidth(&[0.0, 1.0], &[3.0, 7.0], 1).unwrap(), 3.5);
    }
}
