//! Distributions on tensors: diagonal Gaussian, Bernoulli (logits), Laplace.
//!
//! Parameters are tensors of any shape `[.., d]`; the last dim is the event
//! dim, so `log_prob`, `entropy` and `kl` sum over it and return one value
//! per row (`[..]`). The `*_elementwise` variants skip that sum. All values
//! are in nats.
//!
//! Sampling is reparameterized and the noise is an argument
//! ([`DiagGaussian::rsample`] takes `ε ~ N(0, I)`, [`Laplace::rsample`] takes
//! `u ~ U(−1, 1)`): this crate never draws random numbers, so callers seed a
//! Rust generator and copy the noise to the device (Candle's CPU generator
//! cannot be seeded, SPEC §11). Noise broadcasts against the parameters, so
//! `ε` of shape `[n_samples, batch, d]` draws several samples per row.

use candle::{D, DType, Device, Shape, Tensor};

use crate::error::{Error, Result};
use crate::stable::{bce_with_logits_elementwise, log_sigmoid, sigmoid, softplus};

/// `ln(2π)`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

fn check_same_shape(op: &'static str, left: &Tensor, right: &Tensor) -> Result<()> {
    if left.dims() == right.dims() {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            op,
            left: left.dims().to_vec(),
            right: right.dims().to_vec(),
        })
    }
}

/// `N(μ, diag σ²)` stored as `mean = μ` and `log_var = log σ²` (pythae's names).
///
/// ```
/// use candle::{Device, Tensor};
/// use deepgen_numerics::DiagGaussian;
///
/// let dev = Device::Cpu;
/// let q = DiagGaussian::new(Tensor::new(&[[0.5f32, -1.0]], &dev)?, Tensor::new(&[[0.0f32, 0.0]], &dev)?)?;
/// // KL(N(μ, I) ‖ N(0, I)) = ½ Σ μ² = ½ (0.25 + 1) = 0.625.
/// let kl = q.kl_standard_normal()?.to_vec1::<f32>()?;
/// assert!((kl[0] - 0.625).abs() < 1e-6);
/// // z = μ + σ ⊙ ε with the caller's noise.
/// let z = q.rsample(&Tensor::new(&[[1f32, 2.0]], &dev)?)?;
/// assert_eq!(z.to_vec2::<f32>()?, vec![vec![1.5, 1.0]]);
/// # Ok::<(), deepgen_numerics::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct DiagGaussian {
    mean: Tensor,
    log_var: Tensor,
}

impl DiagGaussian {
    /// A Gaussian with mean `mean` and log-variance `log_var` (same shape).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the shapes differ.
    pub fn new(mean: Tensor, log_var: Tensor) -> Result<Self> {
        check_same_shape("DiagGaussian::new", &mean, &log_var)?;
        Ok(Self { mean, log_var })
    }

    /// The standard normal `N(0, I)` of the given shape.
    ///
    /// # Errors
    /// Candle errors (allocation, device).
    pub fn standard_normal<S: Into<Shape>>(shape: S, dtype: DType, device: &Device) -> Result<Self> {
        let mean = Tensor::zeros(shape, dtype, device)?;
        let log_var = mean.zeros_like()?;
        Ok(Self { mean, log_var })
    }

    /// `μ`.
    pub fn mean(&self) -> &Tensor {
        &self.mean
    }

    /// `log σ²`.
    pub fn log_var(&self) -> &Tensor {
        &self.log_var
    }

    /// `σ = exp(½ log σ²)`.
    ///
    /// # Errors
    /// Candle errors only.
    pub fn std(&self) -> Result<Tensor> {
        Ok((&self.log_var * 0.5)?.exp()?)
    }

    /// `σ² = exp(log σ²)`.
    ///
    /// # Errors
    /// Candle errors only.
    pub fn variance(&self) -> Result<Tensor> {
        Ok(self.log_var.exp()?)
    }

    /// Reparameterized sample `z = μ + σ ⊙ ε` with `ε ~ N(0, I)` given.
    ///
    /// `eps` broadcasts against the parameters (e.g. `[n_samples, batch, d]`
    /// against `[batch, d]`). Gradients flow to `μ` and `log σ²`.
    ///
    /// # Errors
    /// Candle errors when `eps` does not broadcast.
    pub fn rsample(&self, eps: &Tensor) -> Result<Tensor> {
        let eps = eps.to_dtype(self.mean.dtype())?;
        Ok(self.std()?.broadcast_mul(&eps)?.broadcast_add(&self.mean)?)
    }

    /// `log N(x; μ, σ²)` per element: `−½ (ln 2π + log σ² + (x − μ)² / σ²)`.
    ///
    /// # Errors
    /// Candle errors when `x` does not broadcast.
    pub fn log_prob_elementwise(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(self.mean.dtype())?;
        let scaled_sq = x
            .broadcast_sub(&self.mean)?
            .sqr()?
            .broadcast_mul(&self.log_var.neg()?.exp()?)?;
        Ok(scaled_sq.broadcast_add(&self.log_var)?.affine(-0.5, -0.5 * LN_2PI)?)
    }

    /// `log q(x) = Σ_d log N(x_d; μ_d, σ_d²)`, summed over the last dim.
    ///
    /// `x: [.., d]` broadcasting against the parameters; output `[..]`.
    ///
    /// # Errors
    /// Candle errors when `x` does not broadcast.
    pub fn log_prob(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.log_prob_elementwise(x)?.sum(D::Minus1)?)
    }

    /// Differential entropy `H = ½ Σ_d (1 + ln 2π + log σ_d²)`, per row.
    ///
    /// # Errors
    /// Candle errors only.
    pub fn entropy(&self) -> Result<Tensor> {
        Ok(self.log_var.affine(0.5, 0.5 * (1.0 + LN_2PI))?.sum(D::Minus1)?)
    }

    /// `KL(self ‖ other)` in closed form, per row:
    /// `½ Σ_d [σ₁²/σ₂² + (μ₁ − μ₂)²/σ₂² − 1 − log(σ₁²/σ₂²)]`.
    ///
    /// # Errors
    /// Candle errors when the parameters do not broadcast.
    pub fn kl(&self, other: &DiagGaussian) -> Result<Tensor> {
        let log_ratio = self.log_var.broadcast_sub(&other.log_var)?;
        let inv_var_other = other.log_var.neg()?.exp()?;
        let mean_term = self
            .mean
            .broadcast_sub(&other.mean)?
            .sqr()?
            .broadcast_mul(&inv_var_other)?;
        let per_dim = ((log_ratio.exp()? - &log_ratio)?.broadcast_add(&mean_term)? - 1.0)?;
        Ok((per_dim.sum(D::Minus1)? * 0.5)?)
    }

    /// `KL(self ‖ N(0, I)) = −½ Σ_d (1 + log σ² − μ² − σ²)` (seed 002), per row.
    ///
    /// # Errors
    /// Candle errors only.
    pub fn kl_standard_normal(&self) -> Result<Tensor> {
        let per_dim = ((&self.log_var + 1.0)? - self.mean.sqr()?)?.sub(&self.log_var.exp()?)?;
        Ok((per_dim.sum(D::Minus1)? * -0.5)?)
    }
}

/// Bernoulli distributions with `p = σ(logits)`, elementwise independent.
///
/// Everything is computed from the logits with [`softplus`]-type functions,
/// so `log_prob` stays finite for any finite logit (`log σ(l)` computed from
/// `σ(l)` is `log 0 = −∞` once `σ(l)` rounds to 0).
#[derive(Clone, Debug)]
pub struct Bernoulli {
    logits: Tensor,
}

impl Bernoulli {
    /// Bernoulli with the given logits `l = log(p / (1 − p))`.
    pub fn new(logits: Tensor) -> Self {
        Self { logits }
    }

    /// The logits.
    pub fn logits(&self) -> &Tensor {
        &self.logits
    }

    /// `p = σ(l)`.
    ///
    /// # Errors
    /// Candle errors only.
    pub fn probs(&self) -> Result<Tensor> {
        sigmoid(&self.logits)
    }

    /// `log p(x) = x log σ(l) + (1 − x) log σ(−l) = −bce_with_logits(l, x)`
    /// per element; `x ∈ [0, 1]` (values in between give the continuous
    /// relaxation used for grey-level pixels), broadcasting against the logits.
    ///
    /// # Errors
    /// Candle errors when `x` does not broadcast.
    pub fn log_prob_elementwise(&self, x: &Tensor) -> Result<Tensor> {
        let shape = self
            .logits
            .shape()
            .broadcast_shape_binary_op(x.shape(), "Bernoulli::log_prob")?;
        let logits = self.logits.broadcast_as(&shape)?;
        let x = x.to_dtype(self.logits.dtype())?.broadcast_as(&shape)?;
        Ok(bce_with_logits_elementwise(&logits, &x)?.neg()?)
    }

    /// `log p(x)` summed over the last dim: `[.., d] → [..]`.
    ///
    /// # Errors
    /// Candle errors when `x` does not broadcast.
    pub fn log_prob(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.log_prob_elementwise(x)?.sum(D::Minus1)?)
    }

    /// Entropy `H = −p log p − (1 − p) log(1 − p) = σ(l) softplus(−l) + σ(−l) softplus(l)`,
    /// summed over the last dim (both terms are non-negative: no cancellation).
    ///
    /// # Errors
    /// Candle errors only.
    pub fn entropy(&self) -> Result<Tensor> {
        let l = &self.logits;
        let neg_l = l.neg()?;
        let per_elem = (sigmoid(l)?.mul(&softplus(&neg_l)?)? + sigmoid(&neg_l)?.mul(&softplus(l)?)?)?;
        Ok(per_elem.sum(D::Minus1)?)
    }

    /// `KL(self ‖ other) = Σ_d [p (log σ(l₁) − log σ(l₂)) + (1 − p)(log σ(−l₁) − log σ(−l₂))]`,
    /// `p = σ(l₁)`, summed over the last dim.
    ///
    /// # Errors
    /// Candle errors when the logits do not broadcast.
    pub fn kl(&self, other: &Bernoulli) -> Result<Tensor> {
        let (l1, l2) = (&self.logits, &other.logits);
        let p = sigmoid(l1)?;
        let one_minus_p = sigmoid(&l1.neg()?)?;
        let log_ratio_one = log_sigmoid(l1)?.broadcast_sub(&log_sigmoid(l2)?)?;
        let log_ratio_zero = log_sigmoid(&l1.neg()?)?.broadcast_sub(&log_sigmoid(&l2.neg()?)?)?;
        let per_elem = (log_ratio_one.broadcast_mul(&p)? + log_ratio_zero.broadcast_mul(&one_minus_p)?)?;
        Ok(per_elem.sum(D::Minus1)?)
    }
}

/// `Laplace(μ, b)` with density `exp(−|x − μ| / b) / (2b)`, stored as `loc = μ`
/// and `log_scale = log b`.
///
/// Its log-density is the penalty `λ|h| − log(λ/2)` of seed 004 with
/// `λ = 1/b`, negated.
#[derive(Clone, Debug)]
pub struct Laplace {
    loc: Tensor,
    log_scale: Tensor,
}

impl Laplace {
    /// A Laplace distribution with location `loc` and log-scale `log_scale` (same shape).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the shapes differ.
    pub fn new(loc: Tensor, log_scale: Tensor) -> Result<Self> {
        check_same_shape("Laplace::new", &loc, &log_scale)?;
        Ok(Self { loc, log_scale })
    }

    /// `μ`.
    pub fn loc(&self) -> &Tensor {
        &self.loc
    }

    /// `log b`.
    pub fn log_scale(&self) -> &Tensor {
        &self.log_scale
    }

    /// `b = exp(log b)`.
    ///
    /// # Errors
    /// Candle errors only.
    pub fn scale(&self) -> Result<Tensor> {
        Ok(self.log_scale.exp()?)
    }

    /// Reparameterized sample `x = μ − b · sign(u) · log(1 − |u|)` from
    /// `u ~ U(−1, 1)` (PyTorch's convention): `−log(1 − |u|) ~ Exp(1)` and the
    /// sign is symmetric. `u` broadcasts against the parameters; `|u| = 1`
    /// gives `±∞`.
    ///
    /// # Errors
    /// Candle errors when `u` does not broadcast.
    pub fn rsample(&self, u: &Tensor) -> Result<Tensor> {
        let u = u.to_dtype(self.loc.dtype())?;
        let magnitude = crate::stable::log1p(&u.abs()?.neg()?)?;
        let offset = u.sign()?.mul(&magnitude)?;
        Ok(self.loc.broadcast_sub(&offset.broadcast_mul(&self.scale()?)?)?)
    }

    /// `log p(x) = −ln 2 − log b − |x − μ| / b`, per element.
    ///
    /// # Errors
    /// Candle errors when `x` does not broadcast.
    pub fn log_prob_elementwise(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(self.loc.dtype())?;
        let scaled = x
            .broadcast_sub(&self.loc)?
            .abs()?
            .broadcast_mul(&self.log_scale.neg()?.exp()?)?;
        Ok(scaled
            .broadcast_add(&self.log_scale)?
            .affine(-1.0, -std::f64::consts::LN_2)?)
    }

    /// `log p(x)` summed over the last dim: `[.., d] → [..]`.
    ///
    /// # Errors
    /// Candle errors when `x` does not broadcast.
    pub fn log_prob(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.log_prob_elementwise(x)?.sum(D::Minus1)?)
    }

    /// Entropy `H = Σ_d (1 + ln 2 + log b_d)`, per row.
    ///
    /// # Errors
    /// Candle errors only.
    pub fn entropy(&self) -> Result<Tensor> {
        Ok((&self.log_scale + (1.0 + std::f64::consts::LN_2))?.sum(D::Minus1)?)
    }

    /// `KL(self ‖ other)` per row:
    /// `Σ_d [log(b₂/b₁) + |μ₁ − μ₂| / b₂ + (b₁/b₂) e^{−|μ₁ − μ₂| / b₁} − 1]`.
    ///
    /// # Errors
    /// Candle errors when the parameters do not broadcast.
    pub fn kl(&self, other: &Laplace) -> Result<Tensor> {
        let log_ratio = other.log_scale.broadcast_sub(&self.log_scale)?; // log(b₂/b₁)
        let distance = self.loc.broadcast_sub(&other.loc)?.abs()?;
        let inv_b2 = other.log_scale.neg()?.exp()?;
        let inv_b1 = self.log_scale.neg()?.exp()?;
        let decay = distance.broadcast_mul(&inv_b1)?.neg()?.exp()?;
        let per_dim =
            ((distance.broadcast_mul(&inv_b2)? + decay.broadcast_mul(&log_ratio.neg()?.exp()?)?)? + log_ratio)?;
        Ok((per_dim - 1.0)?.sum(D::Minus1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{gaussian_noise, uniform_noise};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const N_MC: usize = 40_000;
    /// Monte Carlo estimates must lie within this many standard errors.
    const N_STANDARD_ERRORS: f64 = 5.0;

    fn row_values(t: &Tensor) -> Result<Vec<f64>> {
        Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
    }

    /// Mean and standard error of a sample.
    fn mean_and_standard_error(samples: &[f64]) -> (f64, f64) {
        let n = samples.len() as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, (var / n).sqrt())
    }

    fn assert_within_standard_errors(what: &str, estimate: (f64, f64), exact: f64) {
        let (mean, se) = estimate;
        assert!(
            (mean - exact).abs() <= N_STANDARD_ERRORS * se + 1e-9,
            "{what}: Monte Carlo {mean} ± {se} vs closed form {exact}"
        );
    }

    fn gaussian(mean: &[f32], log_var: &[f32], dev: &Device) -> Result<DiagGaussian> {
        DiagGaussian::new(
            Tensor::new(mean, dev)?.unsqueeze(0)?,
            Tensor::new(log_var, dev)?.unsqueeze(0)?,
        )
    }

    fn gaussian_log_prob_hand_computed(dev: &Device) -> Result<()> {
        // q = N([1, −2], diag[4, 1]), x = [2, −2]:
        // log q(x) = −½ ln(2π·4) − 1²/(2·4) − ½ ln(2π) − 0.
        let q = gaussian(&[1.0, -2.0], &[4f32.ln(), 0.0], dev)?;
        let x = Tensor::new(&[[2f32, -2.0]], dev)?;
        let expected = -0.5 * (2.0 * std::f64::consts::PI * 4.0).ln() - 1.0 / 8.0 - 0.5 * LN_2PI;
        let got = row_values(&q.log_prob(&x)?)?;
        assert_eq!(got.len(), 1);
        assert!((got[0] - expected).abs() < 1e-5, "{} vs {expected}", got[0]);
        Ok(())
    }
    candle::test_device!(
        gaussian_log_prob_hand_computed,
        gaussian_log_prob_hand_computed_cpu,
        gaussian_log_prob_hand_computed_cuda,
        gaussian_log_prob_hand_computed_metal
    );

    fn gaussian_entropy_formula(dev: &Device) -> Result<()> {
        // H(N(μ, σ²)) = ½ ln(2πe σ²) per dim; with σ² = e^{0.3}, e^{-1}:
        let q = gaussian(&[5.0, -5.0], &[0.3, -1.0], dev)?;
        let expected = 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E).ln() * 2.0 + 0.5 * (0.3 - 1.0);
        let got = row_values(&q.entropy()?)?;
        assert!((got[0] - expected).abs() < 1e-5);
        // And against Monte Carlo: H = −E[log q(z)].
        let mut rng = StdRng::seed_from_u64(7);
        let z = q.rsample(&gaussian_noise(&mut rng, N_MC, 2, dev)?)?;
        let neg_log_q: Vec<f64> = row_values(&q.log_prob(&z)?)?.iter().map(|v| -v).collect();
        assert_within_standard_errors("gaussian entropy", mean_and_standard_error(&neg_log_q), expected);
        Ok(())
    }
    candle::test_device!(
        gaussian_entropy_formula,
        gaussian_entropy_formula_cpu,
        gaussian_entropy_formula_cuda,
        gaussian_entropy_formula_metal
    );

    fn gaussian_kl_closed_form_matches_monte_carlo(dev: &Device) -> Result<()> {
        let q = gaussian(&[0.5, -1.0, 2.0], &[-0.5, 0.4, 0.0], dev)?;
        let p = gaussian(&[0.0, 0.3, 1.5], &[0.2, -0.3, 0.7], dev)?;
        let closed = row_values(&q.kl(&p)?)?[0];
        let mut rng = StdRng::seed_from_u64(42);
        let z = q.rsample(&gaussian_noise(&mut rng, N_MC, 3, dev)?)?;
        let log_q = row_values(&q.log_prob(&z)?)?;
        let log_p = row_values(&p.log_prob(&z)?)?;
        let diffs: Vec<f64> = log_q.iter().zip(&log_p).map(|(a, b)| a - b).collect();
        assert_within_standard_errors("gaussian kl", mean_and_standard_error(&diffs), closed);
        assert!(closed > 0.0);
        Ok(())
    }
    candle::test_device!(
        gaussian_kl_closed_form_matches_monte_carlo,
        gaussian_kl_closed_form_matches_monte_carlo_cpu,
        gaussian_kl_closed_form_matches_monte_carlo_cuda,
        gaussian_kl_closed_form_matches_monte_carlo_metal
    );

    fn gaussian_kl_standard_normal_closed_form(dev: &Device) -> Result<()> {
        // One dim: KL(N(μ, σ²) ‖ N(0, 1)) = ½ (σ² + μ² − 1 − ln σ²).
        let (mu, log_var) = (0.7f64, -0.4f64);
        let q = gaussian(&[mu as f32, 0.0], &[log_var as f32, 0.0], dev)?;
        let expected = 0.5 * (log_var.exp() + mu * mu - 1.0 - log_var);
        let got = row_values(&q.kl_standard_normal()?)?[0];
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
        let standard = DiagGaussian::standard_normal((1, 2), DType::F32, dev)?;
        let via_kl = row_values(&q.kl(&standard)?)?[0];
        assert!((via_kl - expected).abs() < 1e-6);
        // KL(q ‖ q) = 0.
        assert!(row_values(&q.kl(&q)?)?[0].abs() < 1e-7);
        Ok(())
    }
    candle::test_device!(
        gaussian_kl_standard_normal_closed_form,
        gaussian_kl_standard_normal_closed_form_cpu,
        gaussian_kl_standard_normal_closed_form_cuda,
        gaussian_kl_standard_normal_closed_form_metal
    );

    fn gaussian_rsample_is_reparameterized(dev: &Device) -> Result<()> {
        let q = gaussian(&[1.0, -1.0], &[2f32.ln() * 2.0, 0.0], dev)?; // σ = [2, 1]
        let z = q.rsample(&Tensor::new(&[[0.5f32, -3.0]], dev)?)?;
        assert_eq!(z.to_vec2::<f32>()?, vec![vec![2.0, -4.0]]);
        // Many samples per row through broadcasting: [n, 1, d] noise.
        let mut rng = StdRng::seed_from_u64(3);
        let eps = gaussian_noise(&mut rng, N_MC, 2, dev)?.unsqueeze(1)?;
        let z = q.rsample(&eps)?;
        assert_eq!(z.dims(), &[N_MC, 1, 2]);
        let first: Vec<f64> = row_values(&z.narrow(2, 0, 1)?)?;
        let (mean, se) = mean_and_standard_error(&first);
        assert!((mean - 1.0).abs() < N_STANDARD_ERRORS * se);
        Ok(())
    }
    candle::test_device!(
        gaussian_rsample_is_reparameterized,
        gaussian_rsample_is_reparameterized_cpu,
        gaussian_rsample_is_reparameterized_cuda,
        gaussian_rsample_is_reparameterized_metal
    );

    #[test]
    fn gaussian_kl_gradient_matches_closed_form() -> Result<()> {
        // ∂KL(q‖N(0,1))/∂μ = μ, ∂/∂ log σ² = ½ (σ² − 1).
        let dev = Device::Cpu;
        let mean = candle::Var::new(&[[0.3f64, -1.2]], &dev)?;
        let log_var = candle::Var::new(&[[0.5f64, -0.1]], &dev)?;
        let q = DiagGaussian::new(mean.as_tensor().clone(), log_var.as_tensor().clone())?;
        let grads = q.kl_standard_normal()?.sum_all()?.backward()?;
        let g_mean = grads
            .get(mean.as_tensor())
            .expect("grad")
            .flatten_all()?
            .to_vec1::<f64>()?;
        let g_lv = grads
            .get(log_var.as_tensor())
            .expect("grad")
            .flatten_all()?
            .to_vec1::<f64>()?;
        for (i, (&m, &lv)) in [0.3f64, -1.2].iter().zip(&[0.5f64, -0.1]).enumerate() {
            assert!((g_mean[i] - m).abs() < 1e-12);
            assert!((g_lv[i] - 0.5 * (lv.exp() - 1.0)).abs() < 1e-12);
        }
        Ok(())
    }

    #[test]
    fn gaussian_shape_mismatch_is_error() -> Result<()> {
        let dev = Device::Cpu;
        let err = DiagGaussian::new(
            Tensor::zeros((2, 3), DType::F32, &dev)?,
            Tensor::zeros((2, 2), DType::F32, &dev)?,
        );
        assert!(matches!(err, Err(Error::ShapeMismatch { .. })));
        Ok(())
    }

    fn bernoulli_log_prob_hand_computed(dev: &Device) -> Result<()> {
        // l = ln 3 → p = 3/4; l = 0 → p = 1/2.
        let b = Bernoulli::new(Tensor::new(&[[3f32.ln(), 0.0]], dev)?);
        let lp = row_values(&b.log_prob_elementwise(&Tensor::new(&[[1f32, 0.0]], dev)?)?)?;
        assert!((lp[0] - 0.75f64.ln()).abs() < 1e-6 && (lp[1] - 0.5f64.ln()).abs() < 1e-6);
        let lp = row_values(&b.log_prob(&Tensor::new(&[[0f32, 1.0]], dev)?)?)?;
        assert!((lp[0] - (0.25f64.ln() + 0.5f64.ln())).abs() < 1e-6);
        // Extreme logits stay finite and exact: log σ(−1e4) = −1e4 (to f32 precision).
        let b = Bernoulli::new(Tensor::new(&[[-1e4f32, 1e4, 88.0, -88.0]], dev)?);
        let lp = row_values(&b.log_prob_elementwise(&Tensor::new(&[[1f32, 1.0, 0.0, 0.0]], dev)?)?)?;
        assert_eq!(lp[0], -1e4);
        assert!(lp[1] <= 0.0 && lp[1] > -1e-30);
        assert!((lp[2] + 88.0).abs() < 1e-5 && lp[3] <= 0.0 && lp[3] > -1e-30);
        assert_eq!(row_values(&b.probs()?)?[1], 1.0);
        Ok(())
    }
    candle::test_device!(
        bernoulli_log_prob_hand_computed,
        bernoulli_log_prob_hand_computed_cpu,
        bernoulli_log_prob_hand_computed_cuda,
        bernoulli_log_prob_hand_computed_metal
    );

    fn bernoulli_entropy_and_kl_formulas(dev: &Device) -> Result<()> {
        let l1 = [0.0f64, 2.0, -1.5];
        let l2 = [1.0f64, -0.5, -1.5];
        let sigma = |v: f64| 1.0 / (1.0 + (-v).exp());
        let b1 = Bernoulli::new(Tensor::new(&l1, dev)?.to_dtype(DType::F32)?);
        let b2 = Bernoulli::new(Tensor::new(&l2, dev)?.to_dtype(DType::F32)?);
        let expected_h: f64 = l1
            .iter()
            .map(|&l| {
                let p = sigma(l);
                -p * p.ln() - (1.0 - p) * (1.0 - p).ln()
            })
            .sum();
        assert!((row_values(&b1.entropy()?)?[0] - expected_h).abs() < 1e-5);
        let expected_kl: f64 = l1
            .iter()
            .zip(&l2)
            .map(|(&a, &b)| {
                let (p, q) = (sigma(a), sigma(b));
                p * (p / q).ln() + (1.0 - p) * ((1.0 - p) / (1.0 - q)).ln()
            })
            .sum();
        assert!((row_values(&b1.kl(&b2)?)?[0] - expected_kl).abs() < 1e-5);
        // H(1/2) = ln 2 is the maximum.
        let fair = Bernoulli::new(Tensor::new(&[0f32], dev)?);
        assert!((row_values(&fair.entropy()?)?[0] - std::f64::consts::LN_2).abs() < 1e-7);
        // Extreme logits: entropy ≈ 0, finite.
        let sure = Bernoulli::new(Tensor::new(&[1e4f32, -1e30], dev)?);
        let h = row_values(&sure.entropy()?)?[0];
        assert!(h.is_finite() && (0.0..1e-30).contains(&h));
        Ok(())
    }
    candle::test_device!(
        bernoulli_entropy_and_kl_formulas,
        bernoulli_entropy_and_kl_formulas_cpu,
        bernoulli_entropy_and_kl_formulas_cuda,
        bernoulli_entropy_and_kl_formulas_metal
    );

    fn laplace(loc: &[f32], log_scale: &[f32], dev: &Device) -> Result<Laplace> {
        Laplace::new(
            Tensor::new(loc, dev)?.unsqueeze(0)?,
            Tensor::new(log_scale, dev)?.unsqueeze(0)?,
        )
    }

    fn laplace_log_prob_and_rsample_hand_computed(dev: &Device) -> Result<()> {
        // Laplace(1, b = 2) at x = 4: −ln 4 − 3/2.
        let d = laplace(&[1.0], &[2f32.ln()], dev)?;
        let lp = row_values(&d.log_prob(&Tensor::new(&[[4f32]], dev)?)?)?[0];
        assert!((lp - (-(4f64.ln()) - 1.5)).abs() < 1e-6);
        // u = 0 → μ; u = ±½ → μ ± b ln 2 (the median of |x − μ| is b ln 2).
        let u = Tensor::new(&[[0f32], [0.5], [-0.5]], dev)?;
        let x = row_values(&d.rsample(&u)?)?;
        let ln2 = std::f64::consts::LN_2;
        assert!((x[0] - 1.0).abs() < 1e-7);
        assert!((x[1] - (1.0 + 2.0 * ln2)).abs() < 1e-6);
        assert!((x[2] - (1.0 - 2.0 * ln2)).abs() < 1e-6);
        Ok(())
    }
    candle::test_device!(
        laplace_log_prob_and_rsample_hand_computed,
        laplace_log_prob_and_rsample_hand_computed_cpu,
        laplace_log_prob_and_rsample_hand_computed_cuda,
        laplace_log_prob_and_rsample_hand_computed_metal
    );

    fn laplace_entropy_and_kl_match_monte_carlo(dev: &Device) -> Result<()> {
        let p = laplace(&[0.5, -1.0], &[-0.3, 0.4], dev)?;
        let q = laplace(&[0.0, 0.5], &[0.2, 0.1], dev)?;
        let mut rng = StdRng::seed_from_u64(11);
        let x = p.rsample(&uniform_noise(&mut rng, N_MC, 2, dev)?)?;
        let log_p = row_values(&p.log_prob(&x)?)?;
        let log_q = row_values(&q.log_prob(&x)?)?;
        let entropy = row_values(&p.entropy()?)?[0];
        let expected_entropy = 2.0 * (1.0 + std::f64::consts::LN_2) + (-0.3 + 0.4);
        assert!((entropy - expected_entropy).abs() < 1e-5);
        let neg_log_p: Vec<f64> = log_p.iter().map(|v| -v).collect();
        assert_within_standard_errors("laplace entropy", mean_and_standard_error(&neg_log_p), entropy);
        let diffs: Vec<f64> = log_p.iter().zip(&log_q).map(|(a, b)| a - b).collect();
        let kl = row_values(&p.kl(&q)?)?[0];
        assert_within_standard_errors("laplace kl", mean_and_standard_error(&diffs), kl);
        assert!(row_values(&p.kl(&p)?)?[0].abs() < 1e-6);
        Ok(())
    }
    candle::test_device!(
        laplace_entropy_and_kl_match_monte_carlo,
        laplace_entropy_and_kl_match_monte_carlo_cpu,
        laplace_entropy_and_kl_match_monte_carlo_cuda,
        laplace_entropy_and_kl_match_monte_carlo_metal
    );
}
