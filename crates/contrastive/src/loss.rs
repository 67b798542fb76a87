//! NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR
//! (SPEC §8), over the 2N views of N images, and lightly's memory-bank
//! variant.
//!
//! With `sim(u, v) = uᵀv / (‖u‖‖v‖)`, `s_ik = sim(z_i, z_k)` and `j(i)` the
//! other view of `i`'s image,
//!
//! ```text
//! ℓ_{i,j} = −log [ exp(s_ij/τ) / Σ_{k≠i} exp(s_ik/τ) ]
//! L       = (1/2N) Σ_i ℓ_{i,j(i)}
//! ```
//!
//! (seed 004 prints `exp(sim(z_i, z_j)/τ)` in every term of the
//! denominator, which makes ℓ the constant `log(2N − 1)`; SPEC §10). The
//! views are ordered `[z1; z2]`, so `j(i) = i ± N`; the loss is the same
//! for the seed's interleaved order, since it is invariant to relabelling.

use crate::{Error, Result};
use candle::{D, Tensor};
use deepgen_core::ops::cross_entropy_rows;

/// `F.normalize`'s floor on the norm.
const NORM_EPS: f64 = 1e-12;

/// `x / max(‖x‖, 1e-12)` row by row.
pub(crate) fn normalize_rows(x: &Tensor) -> Result<Tensor> {
    let norms = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(NORM_EPS)?;
    Ok(x.broadcast_div(&norms)?)
}

/// The cosine similarities `s_ik` of the rows of `z` `[m, d]`: `[m, m]`.
///
/// # Errors
/// A tensor that is not a matrix; Candle errors.
pub fn cosine_similarity_matrix(z: &Tensor) -> Result<Tensor> {
    if z.rank() != 2 {
        return Err(Error::shape("embeddings", z.dims(), "[m, d]"));
    }
    let unit = normalize_rows(z)?;
    Ok(unit.matmul(&unit.t()?)?)
}

fn check_temperature(temperature: f64) -> Result<()> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(Error::invalid(
            "temperature",
            temperature,
            "τ must be a positive number",
        ));
    }
    Ok(())
}

/// `L` of the module docs from the cosine similarities `sim` `[2N, 2N]` of
/// the views `[z1; z2]` (row `i` is anchor `i`; the diagonal is ignored).
/// Each entry is its own variable, so `∂L/∂s_ik = (p_ik − 1[k = j(i)]) /
/// (2N τ)` with `p_i` the softmax of `s_i·/τ` over `k ≠ i`.
///
/// # Errors
/// A non-square or odd-sized matrix; `τ ≤ 0`; Candle errors.
pub fn nt_xent_from_similarity(sim: &Tensor, temperature: f64) -> Result<Tensor> {
    check_temperature(temperature)?;
    let m = match sim.dims() {
        [a, b] if a == b && a % 2 == 0 && *a > 0 => *a,
        other => return Err(Error::shape("similarities", other, "[2N, 2N] with N ≥ 1")),
    };
    anchored_cross_entropy(sim, m / 2, temperature)
}

/// The mean over the `2N` rows of similarities `sim` `[2N, K ≥ 2N]` of
/// `−log softmax_{k≠i}(sim_i/τ)[j(i)]`, `j(i) = (i + N) mod 2N`: each
/// anchor's own column leaves its denominator (deepgen-core's one-op row
/// cross-entropy, which applies the 1/τ itself).
fn anchored_cross_entropy(sim: &Tensor, n: usize, temperature: f64) -> Result<Tensor> {
    let m = 2 * n;
    let positives: Vec<u32> = (0..m).map(|i| ((i + n) % m) as u32).collect();
    let positives = Tensor::from_vec(positives, m, sim.device())?;
    Ok(cross_entropy_rows(sim, &positives, true, 1.0 / temperature)?.mean_all()?)
}

/// NT-Xent of the views `z1` and `z2` `[N, d]` (row `k` of each is image
/// `k`) at temperature `τ`, averaged over all 2N anchors. `N = 1` gives 0
/// (the only other view is the positive).
///
/// # Errors
/// Shapes that differ or are not `[N, d]` with `N ≥ 1`; `τ ≤ 0`; Candle
/// errors.
pub fn nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64) -> Result<Tensor> {
    check_pair(z1, z2)?;
    nt_xent_from_similarity(&cosine_similarity_matrix(&Tensor::cat(&[z1, z2], 0)?)?, temperature)
}

fn check_pair(z1: &Tensor, z2: &Tensor) -> Result<()> {
    if z1.rank() != 2 || z1.dim(0)? == 0 {
        return Err(Error::shape("first views", z1.dims(), "[N, d] with N ≥ 1"));
    }
    if z2.dims() != z1.dims() {
        return Err(Error::shape(
            "second views",
            z2.dims(),
            format!("{:?}, as the first views", z1.dims()),
        ));
    }
    Ok(())
}

/// NT-Xent with the `M` rows of `bank` `[M, d]` (projections of earlier
/// batches, lightly's `memory_bank_size`) as further negatives of every
/// anchor: `ℓ_{i,j} = −log [exp(s_ij/τ) / (Σ_{k≠i} exp(s_ik/τ) + Σ_m
/// exp(sim(z_i, b_m)/τ))]`, averaged over the 2N anchors; an empty bank
/// gives [`nt_xent`]. The bank is not differentiated. (lightly contrasts
/// the first views with the bank alone; keeping the batch's own negatives
/// as well means a bank of stale or random rows cannot reward collapsing
/// every embedding onto one point.)
///
/// # Errors
/// As [`nt_xent`]; a bank of another width.
pub fn nt_xent_with_bank(z1: &Tensor, z2: &Tensor, bank: &Tensor, temperature: f64) -> Result<Tensor> {
    check_pair(z1, z2)?;
    check_temperature(temperature)?;
    let (n, d) = z1.dims2()?;
    if bank.rank() != 2 || bank.dim(1)? != d {
        return Err(Error::shape("memory bank", bank.dims(), format!("[M, {d}]")));
    }
    let views = normalize_rows(&Tensor::cat(&[z1, z2], 0)?)?;
    let negatives = normalize_rows(&bank.detach().to_dtype(z1.dtype())?)?;
    // Columns: the 2N views, then the M bank rows.
    let similarities = views.matmul(&Tensor::cat(&[&views, &negatives], 0)?.t()?)?;
    anchored_cross_entropy(&similarities, n, temperature)
}
