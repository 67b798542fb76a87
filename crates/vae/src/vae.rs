//! The VAE: encoder, decoder and prior, its losses, estimators and pictures.

use crate::config::{Objective, VaeConfig};
use crate::decoder::{Decoder, DecoderOutput, decoder};
use crate::encoder::{Encoder, encoder};
use crate::estimators::{self, LatentModel};
use crate::inputs::{batch_size, interpolation_ends};
use crate::prior::{Prior, prior};
use crate::{Error, Result};
use candle::Tensor;
use candle_nn::VarBuilder;
use deepgen_core::nonempty_batch_ranges;
use deepgen_numerics::{DiagGaussian, line_between};
use rand::Rng;

/// The named parts of a VAE loss, each a scalar averaged over the batch
/// (nats per example).
#[derive(Clone, Debug)]
pub struct VaeLoss {
    /// What training minimises: `recon + β kl` for the ELBO objective, the
    /// negative IWAE bound for IWAE.
    pub total: Tensor,
    /// `E_q[−log p(x|z)]`, estimated with the given samples.
    pub recon: Tensor,
    /// `KL(q(z|x) ‖ p(z))` in closed form.
    pub kl: Tensor,
}

/// Host values of a loss averaged over a data set (nats per example).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossValues {
    /// `recon + kl`: the negative ELBO (β = 1), whatever β training used.
    pub negative_elbo: f64,
    /// `E_q[−log p(x|z)]`.
    pub recon: f64,
    /// `KL(q ‖ p)`.
    pub kl: f64,
}

/// A variational autoencoder `p_θ(x|z) p(z)` with encoder `q_φ(z|x)`.
#[derive(Clone, Debug)]
pub struct Vae {
    config: VaeConfig,
    encoder: Encoder,
    decoder: Decoder,
    prior: Prior,
}

/// Builds the VAE of `config` under `vb`: variables `encoder.*`, `decoder.*`
/// and (learned prior) `prior.*`.
///
/// ```
/// use deepgen_core::candle::{DType, Device, Tensor};
/// use deepgen_vae::{VaeConfig, vae};
///
/// let varmap = deepgen_core::candle_nn::VarMap::new();
/// let vb = deepgen_core::seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
/// let config = VaeConfig { input_dim: 16, hidden_dim: 8, latent_dim: 2, ..Default::default() };
/// let model = vae(&config, vb)?;
/// let xs = Tensor::full(0.5f32, (3, 16), &Device::Cpu)?;
/// let eps = deepgen_core::rng::randn(&mut deepgen_core::rng_from_seed(1), (3, 2), &Device::Cpu)?;
/// let loss = model.loss(&xs, &eps)?;
/// // −ELBO = recon + KL, per example, in nats; recon ≥ 16 ln 2 − ε for x = ½.
/// let (total, recon, kl) = (loss.total.to_scalar::<f32>()?, loss.recon.to_scalar::<f32>()?, loss.kl.to_scalar::<f32>()?);
/// assert!((total - recon - kl).abs() < 1e-4 && recon > 11.0 && kl >= 0.0);
/// # Ok::<(), deepgen_vae::Error>(())
/// ```
///
/// # Errors
/// An invalid configuration ([`VaeConfig::validate`]); Candle errors.
pub fn vae(config: &VaeConfig, vb: VarBuilder) -> Result<Vae> {
    config.validate()?;
    Ok(Vae {
        config: config.clone(),
        encoder: encoder(config, vb.pp("encoder"))?,
        decoder: decoder(config, vb.pp("decoder"))?,
        prior: prior(config, vb.pp("prior"))?,
    })
}

impl Vae {
    /// From ready-made parts; `config` must describe them (its sizes are used
    /// for shape checks).
    ///
    /// # Errors
    /// An invalid configuration.
    pub fn new(config: VaeConfig, encoder: Encoder, decoder: Decoder, prior: Prior) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            encoder,
            decoder,
            prior,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The decoder.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The prior.
    pub fn prior(&self) -> &Prior {
        &self.prior
    }

    fn check_input(&self, xs: &Tensor) -> Result<usize> {
        batch_size(xs, self.config.input_dim, "vae input")
    }

    /// `q(z|x)`: `xs` `[batch, D]` → `[batch, Z]` Gaussian.
    ///
    /// # Errors
    /// [`Error::BadShape`] for another input shape.
    pub fn posterior(&self, xs: &Tensor) -> Result<DiagGaussian> {
        self.check_input(xs)?;
        self.encoder.posterior(xs)
    }

    /// The decoder network on latents `[n, Z]`.
    ///
    /// # Errors
    /// Candle errors for another shape.
    pub fn decode(&self, zs: &Tensor) -> Result<DecoderOutput> {
        Ok(self.decoder.forward(zs)?)
    }

    /// `−log p(x|z)` for `zs` `[k, batch, Z]` → `[k, batch]`.
    fn neg_log_likelihood(&self, xs: &Tensor, zs: &Tensor) -> Result<Tensor> {
        let batch = self.check_input(xs)?;
        let (k, zb, z) = zs.dims3()?;
        if zb != batch || z != self.config.latent_dim {
            return Err(Error::BadShape {
                what: "latent samples",
                got: zs.dims().to_vec(),
                expected: format!("[k, {batch}, {}]", self.config.latent_dim),
            });
        }
        let output = self.decoder.forward(&zs.reshape((k * batch, z))?)?;
        // Sample i of row b is row i·batch + b: scored against xs[b].
        Ok(self.decoder.neg_log_prob(xs, &output)?.reshape((k, batch))?)
    }

    /// `[L, batch, Z]` noise from `[batch, Z]` or `[L, batch, Z]`.
    fn samples_noise(&self, eps: &Tensor, batch: usize) -> Result<Tensor> {
        let z = self.config.latent_dim;
        match *eps.dims() {
            [b, zz] if b == batch && zz == z => Ok(eps.unsqueeze(0)?),
            [_, b, zz] if b == batch && zz == z => Ok(eps.clone()),
            _ => Err(Error::BadShape {
                what: "noise",
                got: eps.dims().to_vec(),
                expected: format!("[{batch}, {z}] or [samples, {batch}, {z}]"),
            }),
        }
    }

    /// The β-weighted negative ELBO (seed 003, with step 2.2.6's missing
    /// minus sign restored):
    /// `−ELBO_β(x) = E_{q(z|x)}[−log p(x|z)] + β KL(q(z|x) ‖ p(z))`,
    /// with the expectation over `z = μ + σ ⊙ ε` for the given standard-normal
    /// `eps` (`[batch, Z]` for one sample, `[L, batch, Z]` for `L`) and the
    /// KL in closed form. Values are batch means (nats per example).
    ///
    /// This is a pure function of the parameters, `xs` `[batch, D]` and `eps`.
    ///
    /// # Errors
    /// [`Error::BadShape`] for shapes that do not fit.
    pub fn loss(&self, xs: &Tensor, eps: &Tensor) -> Result<VaeLoss> {
        let batch = self.check_input(xs)?;
        let eps = self.samples_noise(eps, batch)?;
        let q = self.encoder.posterior(xs)?;
        let zs = q.rsample(&eps)?;
        let recon = self.neg_log_likelihood(xs, &zs)?.mean(0)?.mean_all()?;
        let kl = self.prior.kl(&q)?.mean_all()?;
        let total = if self.config.beta == 1.0 {
            (&recon + &kl)?
        } else {
            (&recon + (&kl * self.config.beta)?)?
        };
        Ok(VaeLoss { total, recon, kl })
    }

    /// The negative IWAE bound with `K` samples `eps` `[K, batch, Z]`:
    /// `−(1/B) Σ_b [logsumexp_k(log p(x|z_k) + log p(z_k) − log q(z_k|x)) − log K]`
    /// (`total`); `recon` and `kl` are the ELBO's parts from the same samples.
    ///
    /// # Errors
    /// [`Error::BadShape`] for shapes that do not fit.
    pub fn iwae_loss(&self, xs: &Tensor, eps: &Tensor) -> Result<VaeLoss> {
        let batch = self.check_input(xs)?;
        let eps = self.samples_noise(eps, batch)?;
        let q = self.encoder.posterior(xs)?;
        let zs = q.rsample(&eps)?;
        let nll = self.neg_log_likelihood(xs, &zs)?;
        let log_w = ((self.prior.log_prob(&zs)? - &nll)? - q.log_prob(&zs)?)?;
        Ok(VaeLoss {
            total: estimators::iwae_loss_from_log_weights(&log_w)?,
            recon: nll.mean_all()?,
            kl: self.prior.kl(&q)?.mean_all()?,
        })
    }

    /// The configured objective ([`Vae::loss`] or [`Vae::iwae_loss`]) with
    /// noise drawn from `rng` (`n_samples` or `k` draws per example).
    ///
    /// # Errors
    /// As the loss.
    pub fn objective(&self, xs: &Tensor, rng: &mut impl Rng) -> Result<VaeLoss> {
        let batch = self.check_input(xs)?;
        let z = self.config.latent_dim;
        let draw = |rng: &mut _, n: usize| -> Result<Tensor> {
            let shape: Vec<usize> = if n == 1 { vec![batch, z] } else { vec![n, batch, z] };
            Ok(deepgen_core::rng::randn(rng, shape, xs.device())?.to_dtype(xs.dtype())?)
        };
        match self.config.objective {
            Objective::Elbo => self.loss(xs, &draw(rng, self.config.n_samples)?),
            Objective::Iwae { k } => self.iwae_loss(xs, &draw(rng, k)?),
        }
    }

    /// `−ELBO`, `recon` and `kl` averaged over all rows of `xs` `[n, D]`, in
    /// batches of `batch_size`, one `z` sample per example (as
    /// pytorch/examples computes its test loss). β is not applied.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `batch_size = 0` or no rows.
    pub fn mean_loss(&self, xs: &Tensor, batch_size: usize, rng: &mut impl Rng) -> Result<LossValues> {
        let n = self.check_input(xs)?;
        let (mut recon, mut kl) = (0f64, 0f64);
        for (start, len) in nonempty_batch_ranges(n, batch_size, Error::invalid)? {
            let batch = xs.narrow(0, start, len)?;
            let eps = deepgen_core::rng::randn(rng, (len, self.config.latent_dim), xs.device())?;
            let loss = self.loss(&batch, &eps.to_dtype(xs.dtype())?)?;
            recon += scalar(&loss.recon)? * len as f64;
            kl += scalar(&loss.kl)? * len as f64;
        }
        let (recon, kl) = (recon / n as f64, kl / n as f64);
        Ok(LossValues {
            negative_elbo: recon + kl,
            recon,
            kl,
        })
    }

    /// The importance-sampled `log p(x)` per row with `q(z|x)` as proposal and
    /// `k` samples (see [`crate::estimators`]): `[batch]`, nats.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `k = 0`; [`Error::BadShape`].
    pub fn importance_log_likelihood(&self, xs: &Tensor, k: usize, rng: &mut impl Rng) -> Result<Tensor> {
        let q = self.posterior(xs)?;
        estimators::importance_log_likelihood(self, xs, &q, k, rng)
    }

    /// The naive `log p(x)` estimate per row from `k` prior samples, `[batch]`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `k = 0`; [`Error::BadShape`].
    pub fn naive_log_likelihood(&self, xs: &Tensor, k: usize, rng: &mut impl Rng) -> Result<Tensor> {
        self.check_input(xs)?;
        estimators::naive_log_likelihood(self, xs, k, rng)
    }

    /// `E[x|z]` at `z = E_q[z|x]`: reconstructions `[batch, D]` for pictures.
    ///
    /// # Errors
    /// [`Error::BadShape`].
    pub fn reconstruct(&self, xs: &Tensor) -> Result<Tensor> {
        let q = self.posterior(xs)?;
        self.decoder.mean(&self.decoder.forward(q.mean())?)
    }

    /// `E[x|z]` for prior samples `z = μ_z + σ_z ε`, `eps` `[n, Z]` → `[n, D]`.
    ///
    /// # Errors
    /// Candle errors for another noise shape.
    pub fn generate(&self, eps: &Tensor) -> Result<Tensor> {
        let zs = self.prior.sample(eps)?;
        self.decoder.mean(&self.decoder.forward(&zs)?)
    }

    /// `E[x|z_t]` along the line `z_t = (1 − t) μ_a + t μ_b`, `t = 0 … 1` in
    /// `n_steps` steps, between the posterior means of `x_a` and `x_b`
    /// (`[1, D]` each; seed 001's latent interpolation) → `[n_steps, D]`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `n_steps < 2`; [`Error::BadShape`].
    pub fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Tensor> {
        let ends = interpolation_ends(x_a, x_b, n_steps, self.config.input_dim, "vae input")?;
        let zs = line_between(self.encoder.posterior(&ends)?.mean(), n_steps)?;
        self.decoder.mean(&self.decoder.forward(&zs)?)
    }

    /// For a 2-D latent: `E[x|z]` on an `n × n` grid of `z = μ_z + σ_z
    /// (Φ⁻¹(u), Φ⁻¹(v))` with `u, v` evenly spaced in `(0, 1)` (Kingma and
    /// Welling's figure 4), row by row from the top-left → `[n², D]`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the latent is not 2-D or `n = 0`.
    pub fn manifold(&self, n: usize) -> Result<Tensor> {
        if self.config.latent_dim != 2 {
            return Err(Error::invalid_display(
                "latent_dim",
                self.config.latent_dim,
                "the latent manifold is drawn for a 2-D latent only",
            ));
        }
        if n == 0 {
            return Err(Error::invalid_display("n", 0, "at least one point per side"));
        }
        let quantile = |i: usize| normal_quantile((i as f64 + 0.5) / n as f64) as f32;
        let mut eps = Vec::with_capacity(2 * n * n);
        for row in 0..n {
            for col in 0..n {
                // Rows go down in z₂ so the picture has z₂ growing upwards.
                eps.extend([quantile(col), quantile(n - 1 - row)]);
            }
        }
        let dev = self.prior.distribution()?.mean().device().clone();
        self.generate(&Tensor::from_vec(eps, (n * n, 2), &dev)?)
    }
}

impl LatentModel for Vae {
    fn latent_dim(&self) -> usize {
        self.config.latent_dim
    }

    fn log_likelihood(&self, xs: &Tensor, zs: &Tensor) -> Result<Tensor> {
        Ok(self.neg_log_likelihood(xs, zs)?.neg()?)
    }

    fn log_prior(&self, zs: &Tensor) -> Result<Tensor> {
        self.prior.log_prob(zs)
    }

    fn sample_prior(&self, eps: &Tensor) -> Result<Tensor> {
        self.prior.sample(eps)
    }
}

/// A scalar tensor's value as `f64`.
pub(crate) fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle::DType::F64)?.to_scalar::<f64>()?)
}

/// `Φ⁻¹(p)`, the standard normal quantile, by Acklam's rational
/// approximation (relative error below 1.2e-9) for `p ∈ (0, 1)`.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const E: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.02425;
    if p.is_nan() || p <= 0.0 {
        return if p == 0.0 { f64::NEG_INFINITY } else { f64::NAN };
    }
    if p >= 1.0 {
        return if p == 1.0 { f64::INFINITY } else { f64::NAN };
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((E[0] * q + E[1]) * q + E[2]) * q + E[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - P_LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}
