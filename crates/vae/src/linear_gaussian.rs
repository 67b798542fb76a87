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
use crate::linalg::{cholesky, log_det_from_cholesky, matmul, solve_lower, solve_lower_transposed, transpose};
use crate::{Error, Result};
use candle::{D, Tensor};

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
    /// The lower Cholesky factor of `S`.
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
        let y = solve_lower(&self.cov_cholesky, n, &diff);
        let maha: f64 = y.iter().map(|v| v * v).sum();
        Ok(-0.5 * (n as f64 * LN_2PI + log_det_from_cholesky(&self.cov_cholesky, n) + maha))
    }

    /// `z = m + L ε` with `S = L Lᵀ`, for standard-normal `eps` `[Z]`.
    ///
    /// # Errors
    /// [`Error::BadShape`] when `eps` has another length.
    pub fn sample(&self, eps: &[f64]) -> Result<Vec<f64>> {
        let n = self.dim();
        check_len("eps", eps, n)?;
        let l_eps = matmul(&self.cov_cholesky, eps, n, n, 1);
        Ok(self.mean.iter().zip(l_eps).map(|(m, v)| m + v).collect())
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

fn not_positive_definite(what: &str) -> Error {
    Error::invalid("linear-Gaussian model", what, "a covariance is not positive definite")
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
            return Err(Error::invalid("latent_dim", latent_dim, "need Z ≥ 1 and D ≥ 1"));
        }
        if !(sigma > 0.0 && sigma.is_finite()) {
            return Err(Error::invalid("sigma", sigma, "must be positive and finite"));
        }
        if weight.len() != data_dim * latent_dim {
            return Err(Error::invalid(
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

    /// `log p(x|z) = log N(x; W z + b, σ² I)`.
    ///
    /// # Errors
    /// [`Error::BadShape`] for lengths other than `D` and `Z`.
    pub fn log_likelihood_at(&self, x: &[f64], z: &[f64]) -> Result<f64> {
        check_len("x", x, self.data_dim)?;
        check_len("z", z, self.latent_dim)?;
        let wz = matmul(&self.weight, z, self.data_dim, self.latent_dim, 1);
        let sq: f64 = x
            .iter()
            .zip(&wz)
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
        let (d, z) = (self.data_dim, self.latent_dim);
        check_len("x", x, d)?;
        let mut cov = matmul(&self.weight, &transpose(&self.weight, d, z), d, z, d);
        for i in 0..d {
            cov[i * d + i] += self.sigma * self.sigma;
        }
        let l = cholesky(&cov, d).ok_or_else(|| not_positive_definite("W Wᵀ + σ² I"))?;
        let diff: Vec<f64> = x.iter().zip(&self.bias).map(|(x, b)| x - b).collect();
        let y = solve_lower(&l, d, &diff);
        let maha: f64 = y.iter().map(|v| v * v).sum();
        Ok(-0.5 * (d as f64 * LN_2PI + log_det_from_cholesky(&l, d) + maha))
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
        let wt = transpose(&self.weight, d, z);
        let mut precision = matmul(&wt, &self.weight, z, d, z);
        for v in precision.iter_mut() {
            *v /= var;
        }
        for i in 0..z {
            precision[i * z + i] += 1.0;
        }
        let lp = cholesky(&precision, z).ok_or_else(|| not_positive_definite("I + WᵀW/σ²"))?;
        // S = P⁻¹, column by column.
        let mut cov = vec![0.0; z * z];
        for j in 0..z {
            let mut e = vec![0.0; z];
            e[j] = 1.0;
            let col = solve_lower_transposed(&lp, z, &solve_lower(&lp, z, &e));
            for i in 0..z {
                cov[i * z + j] = col[i];
            }
        }
        // Symmetrise the rounding so the Cholesky factor exists.
        for i in 0..z {
            for j in 0..i {
                let avg = 0.5 * (cov[i * z + j] + cov[j * z + i]);
                cov[i * z + j] = avg;
                cov[j * z + i] = avg;
            }
        }
        let diff: Vec<f64> = x.iter().zip(&self.bias).map(|(x, b)| (x - b) / var).collect();
        let rhs = matmul(&wt, &diff, z, d, 1);
        let mean = solve_lower_transposed(&lp, z, &solve_lower(&lp, z, &rhs));
        let cov_cholesky = cholesky(&cov, z).ok_or_else(|| not_positive_definite("S"))?;
        Ok(FullGaussian {
            mean,
            cov,
            precision,
            cov_cholesky,
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
        let w_mu = matmul(&self.weight, q_mean, d, z, 1);
        let residual: f64 = x
            .iter()
            .zip(&w_mu)
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
        let p_diff = matmul(p, &diff, z, z, 1);
        let maha: f64 = diff.iter().zip(&p_diff).map(|(a, b)| a * b).sum();
        let log_det_cov = log_det_from_cholesky(&post.cov_cholesky, z);
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
        let wt = Tensor::from_vec(transpose(&self.weight, d, z), (z, d), dev)?.to_dtype(dtype)?;
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
