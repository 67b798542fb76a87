//! The linear-Gaussian latent model, whose every quantity has a closed form:
//! the exact check of the VAE's identities and estimators.
//!
//! ```text
//! p(z) = N(0, I_Z),   p(x|z) = N(W z + b, σ² I_D),   W ∈ R^{D×Z}
//! p(x)   = N(b, W Wᵀ + σ² I)                          (marginal)
//! p(z|x) = N(m, S),   S = (I + WᵀW/σ²)⁻¹,  m = S Wᵀ (x − b)/σ²
//! ```
//!
//! For a diagonal Gaussian `q = N(μ, diag s²)`:
//!
//! ```text
//! E_q[log p(x|z)] = −(D/2) ln(2πσ²) − (‖x − b − Wμ‖² + Σ_j s_j² ‖W_{:j}‖²) / (2σ²)
//! ELBO(q)         = E_q[log p(x|z)] − KL(q ‖ N(0, I))
//! KL(q ‖ p(z|x))  = ½ [tr(S⁻¹ diag s²) + (m − μ)ᵀ S⁻¹ (m − μ) − Z + ln det S − Σ ln s_j²]
//! ```
//!
//! and seed 003 step 3(d) says `log p(x) − ELBO(q) = KL(q ‖ p(z|x))`; the
//! three sides are computed independently here (the marginal from a
//! `D × D` Cholesky factor, the other two from `Z × Z` ones), so the tests
//! of that identity check real arithmetic. Since `p(x, z) / p(z|x) = p(x)`
//! for every `z`, importance sampling with the exact posterior as proposal
//! gives weights that all equal `p(x)`: zero variance.
//!
//! Everything is `f64` on the host; [`LinearGaussian`] also implements
//! [`LatentModel`] on tensors so that the generic estimators run on it.

use crate::estimators::LatentModel;
use crate::linalg::{column, row_major, to_vec, view};
use crate::{Error, Result};
use candle::{D, Tensor};
use faer::linalg::solvers::{DenseSolveCore, Llt, Solve};
use faer::{Mat, MatRef, Side};

/// `ln 2π`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// `p(z) = N(0, I)`, `p(x|z) = N(W z + b, σ² I)`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearGaussian {
    /// `W`, row-major `[D, Z]`.
    weight: Vec<f64>,
    bias: Vec<f64>,
    sigma: f64,
    data_dim: usize,
    latent_dim: usize,
}

/// A Gaussian with full covariance, `N(mean, cov)` (the exact posterior).
#[derive(Clone, Debug, PartialEq)]
pub struct FullGaussian {
    /// The mean `m`, `[Z]`.
    pub mean: Vec<f64>,
    /// The covariance `S`, row-major `[Z, Z]`.
    pub cov: Vec<f64>,
    /// The precision `S⁻¹`, row-major `[Z, Z]`.
    pub precision: Vec<f64>,
    /// The lower Cholesky factor of `S`, row-major `[Z, Z]`.
    cov_cholesky: Vec<f64>,
}

impl FullGaussian {
    fn dim(&self) -> usize {
        self.mean.len()
    }

    /// `log N(z; m, S)`.
    ///
    /// # Errors
    /// [`Error::BadShape`] when `z` has another length.
    pub fn log_prob(&self, z: &[f64]) -> Result<f64> {
        let n = self.dim();
        check_len("z", z, n)?;
        let diff: Vec<f64> = z.iter().zip(&self.mean).map(|(a, b)| a - b).collect();
        let l = view(&self.cov_cholesky, n, n);
        Ok(-0.5 * (n as f64 * LN_2PI + log_det_from_cholesky(l) + mahalanobis(l, &diff)))
    }

    /// `z = m + L ε` with `S = L Lᵀ`, for standard-normal `eps` `[Z]`.
    ///
    /// # Errors
    /// [`Error::BadShape`] when `eps` has another length.
    pub fn sample(&self, eps: &[f64]) -> Result<Vec<f64>> {
        let n = self.dim();
        check_len("eps", eps, n)?;
        let l_eps = view(&self.cov_cholesky, n, n) * column(eps);
        Ok(self.mean.iter().zip(l_eps.iter()).map(|(m, v)| m + v).collect())
    }
}

fn check_len(what: &'static str, v: &[f64], n: usize) -> Result<()> {
    if v.len() == n {
        Ok(())
    } else {
        Err(Error::BadShape {
            what,
            got: vec![v.len()],
            expected: format!("[{n}]"),
        })
    }
}

/// The lower Cholesky factor `L` of `a = L Lᵀ`; an error naming `what`
/// when `a` is not positive definite.
fn cholesky(a: MatRef<'_, f64>, what: &str) -> Result<Llt<f64>> {
    a.llt(Side::Lower)
        .map_err(|_| Error::invalid_display("linear-Gaussian model", what, "a covariance is not positive definite"))
}

/// `‖L⁻¹ v‖² = vᵀ (L Lᵀ)⁻¹ v` by forward substitution.
fn mahalanobis(l: MatRef<'_, f64>, v: &[f64]) -> f64 {
    let mut y = column(v).to_owned();
    l.solve_lower_triangular_in_place(y.as_mat_mut());
    y.iter().map(|v| v * v).sum()
}

/// `log det (L Lᵀ) = 2 Σ log L_ii`.
fn log_det_from_cholesky(l: MatRef<'_, f64>) -> f64 {
    2.0 * l.diagonal().column_vector().iter().map(|v| v.ln()).sum::<f64>()
}

impl LinearGaussian {
    /// The model with `W` = `weight` (row-major `[D, Z]`, `D = bias.len()`),
    /// `b` = `bias` and noise standard deviation `sigma`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `latent_dim = 0`, an empty `bias`,
    /// `sigma` not positive and finite, or `weight.len() ≠ D · Z`.
    pub fn new(weight: Vec<f64>, bias: Vec<f64>, sigma: f64, latent_dim: usize) -> Result<Self> {
        let data_dim = bias.len();
        if latent_dim == 0 || data_dim == 0 {
            return Err(Error::invalid_display("latent_dim", latent_dim, "need Z ≥ 1 and D ≥ 1"));
        }
        if !(sigma > 0.0 && sigma.is_finite()) {
            return Err(Error::invalid_display("sigma", sigma, "must be positive and finite"));
        }
        if weight.len() != data_dim * latent_dim {
            return Err(Error::invalid_display(
                "weight",
                format!("{} values", weight.len()),
                format!("W is D × Z = {data_dim} × {latent_dim}"),
            ));
        }
        Ok(Self {
            weight,
            bias,
            sigma,
            data_dim,
            latent_dim,
        })
    }

    /// `D`.
    pub fn data_dim(&self) -> usize {
        self.data_dim
    }

    /// `W`, row-major `[D, Z]`.
    pub fn weight(&self) -> &[f64] {
        &self.weight
    }

    /// `b`, `[D]`.
    pub fn bias(&self) -> &[f64] {
        &self.bias
    }

    /// `σ`.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// `W` as a `[D, Z]` matrix.
    fn w(&self) -> MatRef<'_, f64> {
        view(&self.weight, self.data_dim, self.latent_dim)
    }

    /// `log p(x|z) = log N(x; W z + b, σ² I)`.
    ///
    /// # Errors
    /// [`Error::BadShape`] for lengths other than `D` and `Z`.
    pub fn log_likelihood_at(&self, x: &[f64], z: &[f64]) -> Result<f64> {
        check_len("x", x, self.data_dim)?;
        check_len("z", z, self.latent_dim)?;
        let wz = self.w() * column(z);
        let sq: f64 = x
            .iter()
            .zip(wz.iter())
            .zip(&self.bias)
            .map(|((x, wz), b)| (x - wz - b).powi(2))
            .sum();
        let var = self.sigma * self.sigma;
        Ok(-0.5 * (self.data_dim as f64 * (LN_2PI + var.ln()) + sq / var))
    }

    /// `log p(z) = log N(z; 0, I)`.
    ///
    /// # Errors
    /// [`Error::BadShape`] for a length other than `Z`.
    pub fn log_prior_at(&self, z: &[f64]) -> Result<f64> {
        check_len("z", z, self.latent_dim)?;
        Ok(-0.5 * (self.latent_dim as f64 * LN_2PI + z.iter().map(|v| v * v).sum::<f64>()))
    }

    /// `log p(x) = log N(x; b, W Wᵀ + σ² I)`, through the `D × D` Cholesky
    /// factor of the marginal covariance.
    ///
    /// # Errors
    /// [`Error::BadShape`] for a length other than `D`.
    pub fn log_marginal(&self, x: &[f64]) -> Result<f64> {
        let d = self.data_dim;
        check_len("x", x, d)?;
        let mut cov = self.w() * self.w().transpose();
        for i in 0..d {
            cov[(i, i)] += self.sigma * self.sigma;
        }
        let llt = cholesky(cov.as_ref(), "W Wᵀ + σ² I")?;
        let diff: Vec<f64> = x.iter().zip(&self.bias).map(|(x, b)| x - b).collect();
        Ok(-0.5 * (d as f64 * LN_2PI + log_det_from_cholesky(llt.L()) + mahalanobis(llt.L(), &diff)))
    }

    /// The exact posterior `p(z|x) = N(m, S)` with `S = (I + WᵀW/σ²)⁻¹` and
    /// `m = S Wᵀ (x − b)/σ²`.
    ///
    /// # Errors
    /// [`Error::BadShape`] for a length other than `D`.
    pub fn posterior(&self, x: &[f64]) -> Result<FullGaussian> {
        let (d, z) = (self.data_dim, self.latent_dim);
        check_len("x", x, d)?;
        let var = self.sigma * self.sigma;
        let wtw = self.w().transpose() * self.w();
        let precision = Mat::from_fn(z, z, |i, j| wtw[(i, j)] / var + if i == j { 1.0 } else { 0.0 });
        let lp = cholesky(precision.as_ref(), "I + WᵀW/σ²")?;
        // S = P⁻¹, with the rounding symmetrised so its Cholesky factor exists.
        let inverse = lp.inverse();
        let cov = Mat::from_fn(z, z, |i, j| 0.5 * (inverse[(i, j)] + inverse[(j, i)]));
        let diff: Vec<f64> = x.iter().zip(&self.bias).map(|(x, b)| (x - b) / var).collect();
        let mean = lp.solve(self.w().transpose() * column(&diff));
        let cov_cholesky = cholesky(cov.as_ref(), "S")?;
        Ok(FullGaussian {
            mean: to_vec(mean.as_ref()),
            cov: row_major(cov.as_ref()),
            precision: row_major(precision.as_ref()),
            cov_cholesky: row_major(cov_cholesky.L()),
        })
    }

    fn check_q(&self, q_mean: &[f64], q_log_var: &[f64]) -> Result<()> {
        check_len("q mean", q_mean, self.latent_dim)?;
        check_len("q log-variance", q_log_var, self.latent_dim)
    }

    /// `ELBO(q) = E_q[log p(x|z)] − KL(q ‖ p(z))` in closed form for
    /// `q = N(q_mean, diag exp(q_log_var))`.
    ///
    /// # Errors
    /// [`Error::BadShape`] for lengths other than `D` and `Z`.
    pub fn elbo(&self, x: &[f64], q_mean: &[f64], q_log_var: &[f64]) -> Result<f64> {
        let (d, z) = (self.data_dim, self.latent_dim);
        check_len("x", x, d)?;
        self.check_q(q_mean, q_log_var)?;
        let var = self.sigma * self.sigma;
        let w_mu = self.w() * column(q_mean);
        let residual: f64 = x
            .iter()
            .zip(w_mu.iter())
            .zip(&self.bias)
            .map(|((x, m), b)| (x - m - b).powi(2))
            .sum();
        let spread: f64 = (0..z)
            .map(|j| q_log_var[j].exp() * (0..d).map(|i| self.weight[i * z + j].powi(2)).sum::<f64>())
            .sum();
        let expected_log_lik = -0.5 * d as f64 * (LN_2PI + var.ln()) - (residual + spread) / (2.0 * var);
        let kl_prior = 0.5
            * q_mean
                .iter()
                .zip(q_log_var)
                .map(|(m, lv)| lv.exp() + m * m - 1.0 - lv)
                .sum::<f64>();
        Ok(expected_log_lik - kl_prior)
    }

    /// `KL(q ‖ p(z|x))` in closed form for `q = N(q_mean, diag exp(q_log_var))`.
    ///
    /// # Errors
    /// [`Error::BadShape`] for lengths other than `D` and `Z`.
    pub fn kl_to_posterior(&self, x: &[f64], q_mean: &[f64], q_log_var: &[f64]) -> Result<f64> {
        self.check_q(q_mean, q_log_var)?;
        let post = self.posterior(x)?;
        let z = self.latent_dim;
        let p = &post.precision;
        let trace: f64 = (0..z).map(|i| p[i * z + i] * q_log_var[i].exp()).sum();
        let diff: Vec<f64> = post.mean.iter().zip(q_mean).map(|(m, mu)| m - mu).collect();
        let p_diff = view(p, z, z) * column(&diff);
        let maha: f64 = diff.iter().zip(p_diff.iter()).map(|(a, b)| a * b).sum();
        let log_det_cov = log_det_from_cholesky(view(&post.cov_cholesky, z, z));
        Ok(0.5 * (trace + maha - z as f64 + log_det_cov - q_log_var.iter().sum::<f64>()))
    }

    /// `log w = log p(x|z) + log p(z) − log q(z)` for a proposal `q` given by
    /// its log-density at `z`.
    ///
    /// # Errors
    /// [`Error::BadShape`] for lengths other than `D` and `Z`.
    pub fn log_weight(&self, x: &[f64], z: &[f64], log_q: f64) -> Result<f64> {
        Ok(self.log_likelihood_at(x, z)? + self.log_prior_at(z)? - log_q)
    }
}

impl LatentModel for LinearGaussian {
    fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    /// `log N(x; W z + b, σ² I)` on tensors of `xs`'s dtype.
    fn log_likelihood(&self, xs: &Tensor, zs: &Tensor) -> Result<Tensor> {
        let (d, z) = (self.data_dim, self.latent_dim);
        let (_batch, xd) = xs.dims2()?;
        let (_k, _b, zd) = zs.dims3()?;
        if xd != d || zd != z {
            return Err(Error::BadShape {
                what: "linear-Gaussian inputs",
                got: vec![xd, zd],
                expected: format!("x with {d} and z with {z} dims"),
            });
        }
        let (dev, dtype) = (xs.device(), xs.dtype());
        let wt = Tensor::from_vec(row_major(self.w().transpose()), (z, d), dev)?.to_dtype(dtype)?;
        let b = Tensor::from_vec(self.bias.clone(), d, dev)?.to_dtype(dtype)?;
        let means = zs.to_dtype(dtype)?.broadcast_matmul(&wt)?.broadcast_add(&b)?;
        let var = self.sigma * self.sigma;
        let sq = means.broadcast_sub(xs)?.sqr()?.sum(D::Minus1)?;
        Ok(sq.affine(-0.5 / var, -0.5 * d as f64 * (LN_2PI + var.ln()))?)
    }

    fn log_prior(&self, zs: &Tensor) -> Result<Tensor> {
        let z = self.latent_dim as f64;
        Ok(zs.sqr()?.sum(D::Minus1)?.affine(-0.5, -0.5 * z * LN_2PI)?)
    }

    fn sample_prior(&self, eps: &Tensor) -> Result<Tensor> {
        Ok(eps.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_of_a_non_positive_definite_matrix_is_an_error() {
        // [[1, 2], [2, 1]] has eigenvalues 3 and −1.
        let err = cholesky(view(&[1.0, 2.0, 2.0, 1.0], 2, 2), "A").unwrap_err();
        assert!(err.to_string().contains("not positive definite"), "{err}");
        // [[4, 2], [2, 3]] = L Lᵀ with L = [[2, 0], [1, √2]]: det 8.
        let l = cholesky(view(&[4.0, 2.0, 2.0, 3.0], 2, 2), "A").unwrap();
        assert!((log_det_from_cholesky(l.L()) - 8f64.ln()).abs() < 1e-14);
        assert!((mahalanobis(l.L(), &[2.0, 1.0]) - 1.0).abs() < 1e-14);
        // A NaN weight reaches the factorisation as an error, not a panic.
        let model = LinearGaussian::new(vec![f64::NAN], vec![0.0], 1.0, 1).unwrap();
        assert!(matches!(model.log_marginal(&[0.0]), Err(Error::InvalidConfig { .. })));
        assert!(matches!(model.posterior(&[0.0]), Err(Error::InvalidConfig { .. })));
    }
}
