//! Row-major `f64` slices ↔ [faer] matrices, for the closed forms of the
//! linear-Gaussian model and the PCA comparison. The decompositions
//! themselves (LLᵀ, self-adjoint eigen, QR, SVD) are faer's.
//!
//! Why faer: it is well kept and pure Rust with its own SIMD kernels, so it
//! needs no BLAS or LAPACK system library (CI installs nothing by hand), and
//! its LLᵀ reports a matrix that is not positive definite as an error value,
//! not a panic. nalgebra is pure Rust too and would also do; faer is the
//! crate dedicated to dense decompositions, and the wrappers of LAPACK
//! (nalgebra-lapack, ndarray-linalg) would bring the system dependency back.

use faer::{ColRef, MatRef};

/// A view of row-major `data` as a `[rows, cols]` matrix.
///
/// # Panics
/// If `data.len() ≠ rows · cols` (callers check lengths first).
pub(crate) fn view(data: &[f64], rows: usize, cols: usize) -> MatRef<'_, f64> {
    MatRef::from_row_major_slice(data, rows, cols)
}

/// A view of `v` as a column vector.
pub(crate) fn column(v: &[f64]) -> ColRef<'_, f64> {
    ColRef::from_slice(v)
}

/// The entries of `m`, row-major.
pub(crate) fn row_major(m: MatRef<'_, f64>) -> Vec<f64> {
    (0..m.nrows())
        .flat_map(|i| (0..m.ncols()).map(move |j| m[(i, j)]))
        .collect()
}

/// The entries of a column vector.
pub(crate) fn to_vec(v: ColRef<'_, f64>) -> Vec<f64> {
    v.iter().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_major_round_trip() {
        let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let m = view(&data, 2, 3);
        assert_eq!((m[(0, 2)], m[(1, 0)]), (3.0, 4.0));
        assert_eq!(row_major(m), data);
        assert_eq!(row_major(m.transpose()), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(to_vec(column(&data[..2])), [1.0, 2.0]);
    }
}
