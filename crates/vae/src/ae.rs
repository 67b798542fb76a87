//! Deterministic autoencoders: a deep (MLP) autoencoder, the linear
//! autoencoder whose optimum spans the PCA subspace, and the sparse
//! autoencoder with an L1 or Laplace-prior penalty on its codes (seeds 002
//! and 004).
//!
//! ```text
//! plain / sparse:  h = f(x) = W₂ relu(W₁ x + b₁) + b₂   (sparse: relu of that)
//!                  x̂ = g(h) = W₄ relu(W₃ h + b₃) + b₄
//! linear:          h = W_e x + b_e,  x̂ = W_d h + b_d
//! loss:            ‖x − x̂‖² (or BCE with logits) + penalty(h), per example
//! L1:              λ Σ_i |h_i|
//! Laplace prior:   −log Π_i Laplace(h_i; 0, 1/λ) = Σ_i (λ|h_i| − log(λ/2))   (seed 004)
//! ```
//!
//! The linear autoencoder with squared error has the PCA subspace as the
//! column space of its decoder at the optimum (Baldi and Hornik 1989): the
//! loss only depends on the rank-`k` map `W_d W_e`, which the Eckart–Young
//! theorem makes the projection onto the top-`k` principal directions; the
//! two weight matrices themselves are determined only up to an invertible
//! `k × k` mix, so the comparison is by principal angles between subspaces
//! ([`principal_angles`]), not by the vectors.

use crate::config::{check_non_negative, check_sizes, text_enum};
use crate::inputs::{batch_size, interpolation_ends};
use crate::linalg::view;
use crate::{Error, Result};
use candle::{D, Module, Tensor};
use candle_nn::VarBuilder;
use deepgen_core::nn::{Linear, Relu, linear};
use deepgen_numerics::{bce_with_logits_rows, line_between, sigmoid};
use faer::{Mat, Side};
use serde::{Deserialize, Serialize};

/// Which autoencoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AeKind {
    /// A deterministic MLP autoencoder `D → H → Z → H → D` with ReLU.
    #[default]
    Plain,
    /// One linear map each way, `D → Z → D` (PCA when trained on squared error).
    Linear,
    /// The plain architecture with non-negative (ReLU) codes and a sparsity
    /// penalty on them.
    Sparse,
}

/// The sparsity penalty of [`AeKind::Sparse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SparsityPenalty {
    /// `λ Σ_i |h_i|`.
    #[default]
    L1,
    /// `Σ_i (λ|h_i| − log(λ/2))`, the negative log-density of a Laplace
    /// prior with scale `1/λ` (seed 004); same gradient as L1.
    #[serde(rename = "laplace")]
    LaplacePrior,
}

/// The reconstruction term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reconstruction {
    /// `‖x − x̂‖²`, summed over the input dims (seed 002's quadratic loss).
    #[default]
    SquaredError,
    /// Binary cross-entropy with logits summed over the input dims (for
    /// data in `[0, 1]`; the decoder outputs logits).
    Bernoulli,
}

/// An autoencoder's shape and loss. The defaults are the VAE's sizes
/// (784-400-20) with seed 002's squared error and `λ = 0.1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AeConfig {
    /// Plain, linear or sparse (default plain).
    pub kind: AeKind,
    /// Input size `D` (MNIST 784).
    pub input_dim: usize,
    /// Hidden units `H` of the plain and sparse networks (400, as the VAE).
    pub hidden_dim: usize,
    /// Code size `Z` (20, as the VAE).
    pub latent_dim: usize,
    /// Reconstruction term (default squared error, seed 002).
    pub reconstruction: Reconstruction,
    /// Penalty of the sparse autoencoder (default L1).
    pub penalty: SparsityPenalty,
    /// `λ` of the penalty (default 0.1, our choice: for squared error on
    /// MNIST it keeps the penalty a few nats against a reconstruction of
    /// tens).
    pub sparsity: f64,
}

impl Default for AeConfig {
    fn default() -> Self {
        Self {
            kind: AeKind::Plain,
            input_dim: 784,
            hidden_dim: 400,
            latent_dim: 20,
            reconstruction: Reconstruction::SquaredError,
            penalty: SparsityPenalty::L1,
            sparsity: 0.1,
        }
    }
}

impl AeConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero size, `λ` negative or not finite,
    /// or `λ = 0` with the Laplace prior (whose `log(λ/2)` is then `−∞`).
    pub fn validate(&self) -> Result<()> {
        check_sizes(&[
            ("input_dim", self.input_dim),
            ("hidden_dim", self.hidden_dim),
            ("latent_dim", self.latent_dim),
        ])?;
        check_non_negative("sparsity", self.sparsity)?;
        if self.kind == AeKind::Sparse && self.penalty == SparsityPenalty::LaplacePrior && self.sparsity == 0.0 {
            return Err(Error::invalid_display("sparsity", 0, "the Laplace prior needs λ > 0"));
        }
        Ok(())
    }
}

text_enum!(AeKind, "kind", "one of: plain linear sparse", Plain => "plain", Linear => "linear", Sparse => "sparse");
text_enum!(SparsityPenalty, "penalty", "one of: l1 laplace", L1 => "l1", LaplacePrior => "laplace");
text_enum!(
    Reconstruction,
    "reconstruction",
    "one of: squared-error bernoulli",
    SquaredError => "squared-error",
    Bernoulli => "bernoulli",
);

/// The named parts of an autoencoder loss, scalars averaged over the batch.
#[derive(Clone, Debug)]
pub struct AeLoss {
    /// `recon + penalty`.
    pub total: Tensor,
    /// `‖x − x̂‖²` or the BCE, per example.
    pub recon: Tensor,
    /// The sparsity penalty per example (0 for the plain and linear kinds).
    pub penalty: Tensor,
}

/// A deterministic autoencoder.
#[derive(Clone, Debug)]
pub struct Autoencoder {
    config: AeConfig,
    encoder: Vec<Linear>,
    decoder: Vec<Linear>,
}

/// Builds the autoencoder of `config` under `vb`: `encoder.hidden`,
/// `encoder.code`, `decoder.hidden`, `decoder.out` (linear: `encoder.code`
/// and `decoder.out` only), initialised like PyTorch's `nn.Linear`.
///
/// # Errors
/// An invalid configuration; Candle errors.
pub fn autoencoder(config: &AeConfig, vb: VarBuilder) -> Result<Autoencoder> {
    config.validate()?;
    let (d, h, z) = (config.input_dim, config.hidden_dim, config.latent_dim);
    let (enc, dec) = (vb.pp("encoder"), vb.pp("decoder"));
    let (encoder, decoder) = match config.kind {
        AeKind::Linear => (vec![linear(d, z, enc.pp("code"))?], vec![linear(z, d, dec.pp("out"))?]),
        AeKind::Plain | AeKind::Sparse => (
            vec![linear(d, h, enc.pp("hidden"))?, linear(h, z, enc.pp("code"))?],
            vec![linear(z, h, dec.pp("hidden"))?, linear(h, d, dec.pp("out"))?],
        ),
    };
    Ok(Autoencoder {
        config: config.clone(),
        encoder,
        decoder,
    })
}

/// Applies `layers` with ReLU between them (not after the last).
fn chain(layers: &[Linear], xs: &Tensor) -> candle::Result<Tensor> {
    let mut h = xs.clone();
    for (i, layer) in layers.iter().enumerate() {
        h = layer.forward(&h)?;
        if i + 1 < layers.len() {
            h = h.apply(&Relu)?;
        }
    }
    Ok(h)
}

impl Autoencoder {
    /// The configuration.
    pub fn config(&self) -> &AeConfig {
        &self.config
    }

    fn check_input(&self, xs: &Tensor) -> Result<usize> {
        batch_size(xs, self.config.input_dim, "autoencoder input")
    }

    /// The codes `h = f(x)`: `[batch, D]` → `[batch, Z]` (non-negative for
    /// the sparse kind).
    ///
    /// # Errors
    /// [`Error::BadShape`] for another input shape.
    pub fn encode(&self, xs: &Tensor) -> Result<Tensor> {
        self.check_input(xs)?;
        let h = chain(&self.encoder, xs)?;
        Ok(if self.config.kind == AeKind::Sparse {
            h.apply(&Relu)?
        } else {
            h
        })
    }

    /// The decoder network's output `g(h)`: `[n, Z]` → `[n, D]` (logits for
    /// the Bernoulli reconstruction).
    ///
    /// # Errors
    /// Candle errors for another shape.
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        Ok(chain(&self.decoder, codes)?)
    }

    /// What a picture shows for codes: `g(h)`, or `σ(g(h))` for Bernoulli.
    fn to_pixels(&self, out: Tensor) -> Result<Tensor> {
        match self.config.reconstruction {
            Reconstruction::SquaredError => Ok(out),
            Reconstruction::Bernoulli => Ok(sigmoid(&out)?),
        }
    }

    /// Reconstructions `x̂` `[batch, D]` in data space.
    ///
    /// # Errors
    /// [`Error::BadShape`].
    pub fn reconstruct(&self, xs: &Tensor) -> Result<Tensor> {
        let out = self.decode(&self.encode(xs)?)?;
        self.to_pixels(out)
    }

    /// `x̂` along the code-space line between `x_a` and `x_b` (`[1, D]`
    /// each), `n_steps ≥ 2` points → `[n_steps, D]`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `n_steps < 2`; [`Error::BadShape`].
    pub fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Tensor> {
        let ends = interpolation_ends(x_a, x_b, n_steps, self.config.input_dim, "autoencoder input")?;
        let out = self.decode(&line_between(&self.encode(&ends)?, n_steps)?)?;
        self.to_pixels(out)
    }

    /// The loss on `xs` `[batch, D]`: reconstruction plus (sparse) penalty,
    /// each averaged over the batch. A pure function of the parameters and
    /// `xs`.
    ///
    /// # Errors
    /// [`Error::BadShape`].
    pub fn loss(&self, xs: &Tensor) -> Result<AeLoss> {
        let codes = self.encode(xs)?;
        let out = self.decode(&codes)?;
        let recon = match self.config.reconstruction {
            Reconstruction::SquaredError => (xs - &out)?.sqr()?.sum(D::Minus1)?,
            Reconstruction::Bernoulli => bce_with_logits_rows(&out, xs)?,
        }
        .mean_all()?;
        let penalty = match self.config.kind {
            AeKind::Sparse => sparsity_penalty(&codes, self.config.sparsity, self.config.penalty)?.mean_all()?,
            AeKind::Plain | AeKind::Linear => recon.zeros_like()?,
        };
        Ok(AeLoss {
            total: (&recon + &penalty)?,
            recon,
            penalty,
        })
    }

    /// The decoder's weight `[D, Z]` of the linear kind, row-major `f64`:
    /// its column space is the learned subspace.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for the other kinds.
    pub fn decoder_weight(&self) -> Result<Vec<f64>> {
        match (self.config.kind, self.decoder.as_slice()) {
            (AeKind::Linear, [out]) => Ok(out.weight().to_dtype(candle::DType::F64)?.flatten_all()?.to_vec1()?),
            _ => Err(Error::invalid_display(
                "kind",
                self.config.kind,
                "only the linear autoencoder has one decoder matrix",
            )),
        }
    }
}

/// The sparsity penalty per row of `codes` `[batch, Z]` → `[batch]`:
/// `λ Σ_i |h_i|` (L1) or `Σ_i (λ|h_i| − log(λ/2))` (Laplace prior, seed 004).
///
/// # Errors
/// Candle errors; `λ ≤ 0` with the Laplace prior gives `+∞` or NaN, so
/// [`AeConfig::validate`] rejects it.
pub fn sparsity_penalty(codes: &Tensor, lambda: f64, penalty: SparsityPenalty) -> Result<Tensor> {
    let z = codes.dim(D::Minus1)? as f64;
    let l1 = codes.abs()?.sum(D::Minus1)?;
    Ok(match penalty {
        SparsityPenalty::L1 => (l1 * lambda)?,
        SparsityPenalty::LaplacePrior => l1.affine(lambda, -z * (lambda / 2.0).ln())?,
    })
}

/// The top-`k` principal directions of `data` (row-major `[n, d]`): the
/// eigenvectors of the sample covariance with the `k` largest eigenvalues,
/// as the columns of a row-major `[d, k]` matrix (faer's self-adjoint
/// eigensolver in `f64`).
///
/// # Errors
/// [`Error::InvalidConfig`] for `n < 2`, `k = 0`, `k > d`, a length other
/// than `n · d`, or an eigensolver that does not converge.
pub fn pca_components(data: &[f64], n: usize, d: usize, k: usize) -> Result<Vec<f64>> {
    if n < 2 || k == 0 || k > d || data.len() != n * d {
        return Err(Error::invalid_display(
            "pca",
            format!("n = {n}, d = {d}, k = {k}, {} values", data.len()),
            "need n ≥ 2 rows of d values and 1 ≤ k ≤ d",
        ));
    }
    let mut mean = vec![0.0; d];
    for row in data.chunks_exact(d) {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += x / n as f64;
        }
    }
    let centred = Mat::from_fn(n, d, |i, j| data[i * d + j] - mean[j]);
    let gram = centred.transpose() * centred.as_ref();
    let cov = Mat::from_fn(d, d, |i, j| gram[(i, j)] / (n - 1) as f64);
    let eigen = cov
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::invalid_display("pca", format!("{e:?}"), "the covariance eigensolver did not converge"))?;
    // faer sorts the eigenvalues in increasing order: the top k are the last.
    let vectors = eigen.U();
    Ok((0..d)
        .flat_map(|i| (0..k).map(move |j| vectors[(i, d - 1 - j)]))
        .collect())
}

/// The principal angles (radians, ascending) between the column spaces of
/// `a` and `b`, both row-major `[d, k]`: `θ_i = arccos σ_i(Q_aᵀ Q_b)` with
/// `Q` orthonormal bases from thin QR (Björck and Golub 1973). All zero iff
/// the subspaces coincide.
///
/// # Errors
/// [`Error::InvalidConfig`] for lengths other than `d · k`, `k = 0`, or an
/// SVD that does not converge.
pub fn principal_angles(a: &[f64], b: &[f64], d: usize, k: usize) -> Result<Vec<f64>> {
    if k == 0 || a.len() != d * k || b.len() != d * k {
        return Err(Error::invalid_display(
            "principal angles",
            format!("{} and {} values", a.len(), b.len()),
            format!("two [{d}, {k}] matrices"),
        ));
    }
    let (qa, qb) = (view(a, d, k).qr().compute_thin_Q(), view(b, d, k).qr().compute_thin_Q());
    let cosines = (qa.transpose() * qb.as_ref())
        .singular_values()
        .map_err(|e| Error::invalid_display("principal angles", format!("{e:?}"), "the SVD did not converge"))?;
    // Largest singular value first gives the smallest angle first.
    Ok(cosines.iter().map(|c| c.clamp(0.0, 1.0).acos()).collect())
}
