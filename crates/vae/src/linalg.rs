//! Small dense `f64` linear algebra on row-major slices, for the closed forms
//! of the linear-Gaussian model and the PCA comparison: Cholesky, triangular
//! solves, the symmetric eigenproblem (cyclic Jacobi), Gram–Schmidt and
//! principal angles. Sizes here are tens, not thousands.

/// `A B` for `A` `[n, k]` and `B` `[k, m]`.
pub(crate) fn matmul(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * m];
    for i in 0..n {
        for p in 0..k {
            let a_ip = a[i * k + p];
            for j in 0..m {
                out[i * m + j] += a_ip * b[p * m + j];
            }
        }
    }
    out
}

/// `Aᵀ` for `A` `[n, m]`.
pub(crate) fn transpose(a: &[f64], n: usize, m: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            out[j * n + i] = a[i * m + j];
        }
    }
    out
}

/// The lower Cholesky factor `L` of a symmetric positive-definite `[n, n]`
/// matrix (`A = L Lᵀ`), or `None` if it is not positive definite.
pub(crate) fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|p| l[i * n + p] * l[j * n + p]).sum();
            if i == j {
                let d = a[i * n + i] - s;
                if !(d > 0.0) {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// `y` with `L y = b` (forward substitution).
pub(crate) fn solve_lower(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|p| l[i * n + p] * y[p]).sum();
        y[i] = (b[i] - s) / l[i * n + i];
    }
    y
}

/// `x` with `Lᵀ x = y` (back substitution).
pub(crate) fn solve_lower_transposed(l: &[f64], n: usize, y: &[f64]) -> Vec<f64> {
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|p| l[p * n + i] * x[p]).sum();
        x[i] = (y[i] - s) / l[i * n + i];
    }
    x
}

/// `log det A = 2 Σ log L_ii` from `A`'s Cholesky factor.
pub(crate) fn log_det_from_cholesky(l: &[f64], n: usize) -> f64 {
    2.0 * (0..n).map(|i| l[i * n + i].ln()).sum::<f64>()
}

/// Eigenvalues and eigenvectors of a symmetric `[n, n]` matrix by cyclic
/// Jacobi rotations, sorted by decreasing eigenvalue; eigenvector `i` is
/// column `i` of the returned row-major `[n, n]` matrix.
pub(crate) fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j].powi(2))
            .sum();
        let scale: f64 = m.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation that zeroes m[p, q] (Golub & Van Loan 8.4.2).
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m[j * n + j].total_cmp(&m[i * n + i]));
    let values = order.iter().map(|&i| m[i * n + i]).collect();
    let mut vectors = vec![0.0; n * n];
    for (new, &old) in order.iter().enumerate() {
        for k in 0..n {
            vectors[k * n + new] = v[k * n + old];
        }
    }
    (values, vectors)
}

/// An orthonormal basis (modified Gram–Schmidt, done twice) of the columns of
/// `a` `[n, k]`, as `[n, k]`; columns that are dependent come out as zero.
pub(crate) fn orthonormal_columns(a: &[f64], n: usize, k: usize) -> Vec<f64> {
    let mut q = a.to_vec();
    for j in 0..k {
        for _ in 0..2 {
            for p in 0..j {
                let dot: f64 = (0..n).map(|i| q[i * k + p] * q[i * k + j]).sum();
                for i in 0..n {
                    q[i * k + j] -= dot * q[i * k + p];
                }
            }
        }
        let norm = (0..n).map(|i| q[i * k + j].powi(2)).sum::<f64>().sqrt();
        for i in 0..n {
            q[i * k + j] = if norm > 1e-300 { q[i * k + j] / norm } else { 0.0 };
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_and_log_det() {
        // A = [[4, 2], [2, 3]]: L = [[2, 0], [1, √2]], det A = 8.
        let a = [4.0, 2.0, 2.0, 3.0];
        let l = cholesky(&a, 2).unwrap_or_default();
        assert!((l[3] - 2f64.sqrt()).abs() < 1e-15 && l[2] == 1.0);
        assert!((log_det_from_cholesky(&l, 2) - 8f64.ln()).abs() < 1e-14);
        // A x = b for b = (2, 1): x = (0.5, 0).
        let x = solve_lower_transposed(&l, 2, &solve_lower(&l, 2, &[2.0, 1.0]));
        assert!((x[0] - 0.5).abs() < 1e-15 && x[1].abs() < 1e-15);
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }

    #[test]
    fn jacobi_diagonalises() {
        // [[2, 1], [1, 2]] has eigenvalues 3 and 1 with vectors (1, ±1)/√2.
        let (values, vectors) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((values[0] - 3.0).abs() < 1e-12 && (values[1] - 1.0).abs() < 1e-12);
        assert!((vectors[0].abs() - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((vectors[0] * vectors[2] - 0.5).abs() < 1e-12);
    }
}
