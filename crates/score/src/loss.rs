//! The score-matching losses, each a batch mean that the optimizer
//! minimises (x ∈ Rᵈ, data density q, score network s = s_θ):
//!
//! ```text
//! Fisher   l_F     = E_q ½‖s(x) − ∇log q(x)‖²                 (needs the true score)
//! explicit l_ESM   = E_q [½‖s(x)‖² + Tr ∇ₓs(x)]                = l_F − E_q ½‖∇log q‖²
//! sliced   l_SSM   = E_q E_v [vᵀ(∇ₓs)v + ½(vᵀs)²]              (E vvᵀ = I, so E_v l_SSM = l_ESM)
//!          l_SSM-VR = E_q [E_v vᵀ(∇ₓs)v + ½‖s‖²]
//! denoising l_DSM  = E_{x,ε} ½‖s(x + σε) + ε/σ‖²              = l_F,σ − E_{q_σ}½‖∇log q_σ‖² + d/(2σ²)
//! multi-level       Σ_i λ(σ_i) l_DSM(σ_i),  λ(σ) = σ²          (NCSN; one σ_i drawn per example)
//! ```
//!
//! The traces come from forward-mode tangents ([`ScoreNet::score_and_jvp`]),
//! so every loss is an ordinary forward expression whose backward pass is
//! exact. All noise is passed in, so a loss is a deterministic function of
//! its arguments (the trainer draws it from a seeded generator).

use crate::network::ScoreNet;
use crate::{Error, Result};
use candle::{DType, Device, Tensor};
use deepgen_core::rng::randn;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The distribution of the projection vectors `v` of the sliced losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Projection {
    /// `v ∈ {−1, 1}ᵈ` uniformly: the lowest-variance choice (Hutchinson).
    #[default]
    Rademacher,
    /// `v ~ N(0, I)`.
    Gaussian,
}

impl Projection {
    /// The flag's and the config's name.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Rademacher => "rademacher",
            Projection::Gaussian => "gaussian",
        }
    }

    /// `m` directions per example `[n, m, d]` (f32 on `device`).
    ///
    /// # Errors
    /// Candle errors.
    pub fn draw(self, rng: &mut impl Rng, n: usize, m: usize, d: usize, device: &Device) -> Result<Tensor> {
        Ok(match self {
            Projection::Gaussian => randn(rng, (n, m, d), device)?,
            Projection::Rademacher => {
                let signs: Vec<f32> = (0..n * m * d)
                    .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                    .collect();
                Tensor::from_vec(signs, (n, m, d), device)?
            }
        })
    }
}

impl std::fmt::Display for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Projection {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        [Projection::Rademacher, Projection::Gaussian]
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::invalid("projection", s, "rademacher or gaussian"))
    }
}

/// `E ½‖s − target‖²` over the rows of two `[n, d]` tensors: the Fisher
/// divergence when `target` is the true score at the same points.
///
/// # Errors
/// Shapes that differ.
pub fn fisher_divergence(score: &Tensor, target: &Tensor) -> Result<Tensor> {
    if score.dims() != target.dims() {
        return Err(Error::shape(
            "target score",
            target.dims(),
            format!("{:?}", score.dims()),
        ));
    }
    Ok(half_squared_norm(&(score - target)?)?.mean_all()?)
}

/// `l_ESM` on the batch `x [n, d]`, with the exact trace of `∇ₓs` (`d`
/// tangents per example, the unit vectors).
///
/// # Errors
/// Shape errors.
pub fn explicit_score_matching(net: &ScoreNet, x: &Tensor) -> Result<Tensor> {
    let (n, d) = x.dims2()?;
    let eye = Tensor::eye(d, x.dtype(), x.device())?;
    let directions = eye.unsqueeze(0)?.broadcast_as((n, d, d))?.contiguous()?;
    let (s, js) = net.score_and_jvp(x, None, &directions)?;
    // js[i, j, :] = J eⱼ, the j-th column of J; its j-th entry is J_jj.
    let trace = js.broadcast_mul(&eye)?.sum((1, 2))?;
    Ok((half_squared_norm(&s)? + trace)?.mean_all()?)
}

/// `l_SSM` (or `l_SSM-VR` when `variance_reduced`) on `x [n, d]` with the
/// projections `v [n, m, d]`, averaged over the `m` projections.
///
/// # Errors
/// `v` not `[n, m, d]`.
pub fn sliced_score_matching(net: &ScoreNet, x: &Tensor, v: &Tensor, variance_reduced: bool) -> Result<Tensor> {
    let (s, jv) = net.score_and_jvp(x, None, v)?;
    let v = v.to_dtype(s.dtype())?;
    let quadratic = (&jv * &v)?.sum(2)?.mean(1)?; // mean_j vⱼᵀ J vⱼ
    let norm_term = if variance_reduced {
        half_squared_norm(&s)?
    } else {
        let along = v.broadcast_mul(&s.unsqueeze(1)?)?.sum(2)?; // vⱼᵀ s
        (along.sqr()? * 0.5)?.mean(1)?
    };
    Ok((quadratic + norm_term)?.mean_all()?)
}

/// `½‖s(x + σε, σ) + ε/σ‖²` per example `[n]`, for `x [n, d]`, the noise
/// `eps [n, d]` and one level per example `sigma [n]`.
///
/// # Errors
/// Shapes that disagree.
pub fn denoising_terms(net: &ScoreNet, x: &Tensor, eps: &Tensor, sigma: &Tensor) -> Result<Tensor> {
    if eps.dims() != x.dims() || sigma.dims() != [x.dim(0)?] {
        return Err(Error::shape(
            "noise",
            eps.dims(),
            format!("ε like x {:?} and σ [n]", x.dims()),
        ));
    }
    let sigma_col = sigma.unsqueeze(1)?;
    let noisy = (x + eps.broadcast_mul(&sigma_col)?)?;
    let s = net.score(&noisy, Some(sigma))?;
    half_squared_norm(&(s + eps.broadcast_div(&sigma_col)?)?)
}

/// `l_DSM` at one level: the batch mean of [`denoising_terms`].
///
/// # Errors
/// As [`denoising_terms`].
pub fn denoising_score_matching(net: &ScoreNet, x: &Tensor, eps: &Tensor, sigma: f64) -> Result<Tensor> {
    let sigma = Tensor::full(sigma, x.dim(0)?, x.device())?.to_dtype(x.dtype())?;
    Ok(denoising_terms(net, x, eps, &sigma)?.mean_all()?)
}

/// NCSN's multi-level loss: the batch mean of `σ_i² · ½‖s(x + σ_iε, σ_i) +
/// ε/σ_i‖²` with each example's level `sigma [n]` drawn uniformly from the
/// levels, an unbiased estimate of `(1/L) Σ_i σ_i² l_DSM(σ_i)`. The weight
/// `λ(σ) = σ²` makes every level's term O(1).
///
/// # Errors
/// As [`denoising_terms`].
pub fn multi_level_denoising_score_matching(
    net: &ScoreNet,
    x: &Tensor,
    eps: &Tensor,
    sigma: &Tensor,
) -> Result<Tensor> {
    let terms = denoising_terms(net, x, eps, sigma)?;
    Ok((terms * sigma.sqr()?)?.mean_all()?)
}

/// `½‖row‖²` of an `[n, d]` tensor → `[n]`.
fn half_squared_norm(x: &Tensor) -> Result<Tensor> {
    Ok((x.sqr()?.sum(1)? * 0.5)?)
}

/// An `[n]` f64/f32 tensor of the levels `levels[index[i]]`.
///
/// # Errors
/// Candle errors.
pub fn levels_tensor(levels: &[f64], index: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
    let values: Vec<f64> = index.iter().map(|&i| levels[i]).collect();
    Ok(Tensor::from_vec(values, index.len(), device)?.to_dtype(dtype)?)
}
