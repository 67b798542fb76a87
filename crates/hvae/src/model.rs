//! The networks of the hierarchical VAE: [`GaussianMlp`] for `q(z1|x)`,
//! `q(z2|z1)` and `p(z1|z2)`, [`BernoulliMlp`] for `p(x|z1)`, and [`Hvae`]
//! that holds the four.

use crate::config::{Activation, HvaeConfig};
use crate::{Error, Result};
use candle::{Module, Tensor};
use candle_nn::VarBuilder;
use deepgen_core::nn::{Linear, Relu, linear};
use deepgen_numerics::{DiagGaussian, bce_with_logits_rows, line_between, sigmoid};

/// Hidden layers `h_{i+1} = act(W_i h_i + b_i)`, the body every conditional
/// distribution shares.
#[derive(Clone, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    activation: Activation,
}

/// Builds `in_dim → sizes[0] → … → sizes[n−1]` under `vb` (`0`, `1`, …).
///
/// # Errors
/// Candle errors from the variable store.
pub fn mlp(in_dim: usize, sizes: &[usize], activation: Activation, vb: VarBuilder) -> Result<Mlp> {
    let mut layers = Vec::with_capacity(sizes.len());
    let mut fan_in = in_dim;
    for (i, &size) in sizes.iter().enumerate() {
        layers.push(linear(fan_in, size, vb.pp(i))?);
        fan_in = size;
    }
    Ok(Mlp { layers, activation })
}

impl Mlp {
    /// From ready-made layers.
    pub fn new(layers: Vec<Linear>, activation: Activation) -> Self {
        Self { layers, activation }
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }

    /// The nonlinearity.
    pub fn activation(&self) -> Activation {
        self.activation
    }
}

impl Module for Mlp {
    /// `[n, in]` → `[n, last hidden size]` (the input itself with no layers).
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        let mut h = xs.clone();
        for layer in &self.layers {
            h = h.apply(layer)?;
            h = match self.activation {
                Activation::Relu => h.apply(&Relu)?,
                Activation::Tanh => h.tanh()?,
            };
        }
        Ok(h)
    }
}

/// A diagonal Gaussian conditional `N(μ(u), diag exp(log σ²(u)))`: an
/// [`Mlp`] body and two linear heads.
#[derive(Clone, Debug)]
pub struct GaussianMlp {
    hidden: Mlp,
    mean: Linear,
    log_var: Linear,
}

/// Builds a Gaussian conditional `in_dim → hidden… → (μ, log σ²)` of size
/// `out_dim` under `vb` (`hidden.0`, …, `mean`, `log_var`).
///
/// # Errors
/// Candle errors from the variable store.
pub fn gaussian_mlp(
    in_dim: usize,
    hidden: &[usize],
    out_dim: usize,
    activation: Activation,
    vb: VarBuilder,
) -> Result<GaussianMlp> {
    let last = hidden.last().copied().unwrap_or(in_dim);
    Ok(GaussianMlp {
        hidden: mlp(in_dim, hidden, activation, vb.pp("hidden"))?,
        mean: linear(last, out_dim, vb.pp("mean"))?,
        log_var: linear(last, out_dim, vb.pp("log_var"))?,
    })
}

impl GaussianMlp {
    /// From ready-made parts.
    pub fn new(hidden: Mlp, mean: Linear, log_var: Linear) -> Self {
        Self { hidden, mean, log_var }
    }

    /// The body.
    pub fn hidden(&self) -> &Mlp {
        &self.hidden
    }

    /// The distribution for conditioning inputs `us` `[n, in]`: `[n, out]`.
    ///
    /// # Errors
    /// Candle errors, e.g. an input that is not `[n, in]`.
    pub fn forward(&self, us: &Tensor) -> Result<DiagGaussian> {
        let h = us.apply(&self.hidden)?;
        Ok(DiagGaussian::new(h.apply(&self.mean)?, h.apply(&self.log_var)?)?)
    }
}

/// Independent Bernoulli pixels with logits `NN(z1)`.
#[derive(Clone, Debug)]
pub struct BernoulliMlp {
    hidden: Mlp,
    logits: Linear,
}

/// Builds `in_dim → hidden… → logits` of size `out_dim` under `vb`
/// (`hidden.0`, …, `logits`).
///
/// # Errors
/// Candle errors from the variable store.
pub fn bernoulli_mlp(
    in_dim: usize,
    hidden: &[usize],
    out_dim: usize,
    activation: Activation,
    vb: VarBuilder,
) -> Result<BernoulliMlp> {
    let last = hidden.last().copied().unwrap_or(in_dim);
    Ok(BernoulliMlp {
        hidden: mlp(in_dim, hidden, activation, vb.pp("hidden"))?,
        logits: linear(last, out_dim, vb.pp("logits"))?,
    })
}

impl BernoulliMlp {
    /// From ready-made parts.
    pub fn new(hidden: Mlp, logits: Linear) -> Self {
        Self { hidden, logits }
    }
}

impl Module for BernoulliMlp {
    /// Logits `[n, D]` for latents `[n, Z1]`.
    fn forward(&self, zs: &Tensor) -> candle::Result<Tensor> {
        zs.apply(&self.hidden)?.apply(&self.logits)
    }
}

/// The hierarchical VAE `p(x|z1) p(z1|z2) p(z2)` with inference network
/// `q(z1|x) q(z2|z1)`; the losses are in [`crate::loss`], the diagnostics in
/// [`crate::diagnostics`].
#[derive(Clone, Debug)]
pub struct Hvae {
    config: HvaeConfig,
    q_z1: GaussianMlp,
    q_z2: GaussianMlp,
    p_z1: GaussianMlp,
    p_x: BernoulliMlp,
}

/// Builds the hierarchical VAE of `config` under `vb`: variables `q_z1.*`,
/// `q_z2.*`, `p_z1.*` and `p_x.*`.
///
/// ```
/// use deepgen_core::candle::{DType, Device, Tensor};
/// use deepgen_hvae::{HvaeConfig, hvae};
///
/// let dev = Device::Cpu;
/// let varmap = deepgen_core::candle_nn::VarMap::new();
/// let vb = deepgen_core::seeded_var_builder(&varmap, 0, DType::F32, &dev);
/// let config = HvaeConfig { input_dim: 16, hidden1: vec![8], latent1: 4, hidden2: vec![4], latent2: 2, ..Default::default() };
/// let model = hvae(&config, vb)?;
/// let xs = Tensor::full(0.5f32, (3, 16), &dev)?;
/// let mut rng = deepgen_core::rng_from_seed(1);
/// let eps1 = deepgen_core::rng::randn(&mut rng, (3, 4), &dev)?;
/// let eps2 = deepgen_core::rng::randn(&mut rng, (3, 2), &dev)?;
/// // β = 1 and no free bits: the loss is −ELBO = recon + kl1 + kl2, nats per example.
/// let loss = model.loss(&xs, &eps1, &eps2, 1.0)?;
/// let value = |t: &Tensor| t.to_scalar::<f32>();
/// let (total, recon) = (value(&loss.total)?, value(&loss.recon)?);
/// assert!((total - recon - value(&loss.kl1)? - value(&loss.kl2)?).abs() < 1e-4);
/// assert!(recon > 16.0 * 0.69 && value(&loss.kl2)? >= 0.0);
/// # Ok::<(), deepgen_hvae::Error>(())
/// ```
///
/// # Errors
/// An invalid configuration ([`HvaeConfig::validate`]); Candle errors.
pub fn hvae(config: &HvaeConfig, vb: VarBuilder) -> Result<Hvae> {
    config.validate()?;
    let act = config.activation;
    let reversed = |sizes: &[usize]| sizes.iter().rev().copied().collect::<Vec<_>>();
    Ok(Hvae {
        config: config.clone(),
        q_z1: gaussian_mlp(config.input_dim, &config.hidden1, config.latent1, act, vb.pp("q_z1"))?,
        q_z2: gaussian_mlp(config.latent1, &config.hidden2, config.latent2, act, vb.pp("q_z2"))?,
        p_z1: gaussian_mlp(
            config.latent2,
            &reversed(&config.hidden2),
            config.latent1,
            act,
            vb.pp("p_z1"),
        )?,
        p_x: bernoulli_mlp(
            config.latent1,
            &reversed(&config.hidden1),
            config.input_dim,
            act,
            vb.pp("p_x"),
        )?,
    })
}

impl Hvae {
    /// From ready-made parts; `config` must describe them (its sizes are used
    /// for shape checks).
    ///
    /// # Errors
    /// An invalid configuration.
    pub fn new(
        config: HvaeConfig,
        q_z1: GaussianMlp,
        q_z2: GaussianMlp,
        p_z1: GaussianMlp,
        p_x: BernoulliMlp,
    ) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            q_z1,
            q_z2,
            p_z1,
            p_x,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HvaeConfig {
        &self.config
    }

    /// `[batch]` of an input `[batch, D]`, or [`Error::BadShape`].
    pub(crate) fn check_input(&self, xs: &Tensor) -> Result<usize> {
        match *xs.dims() {
            [batch, d] if d == self.config.input_dim => Ok(batch),
            _ => Err(Error::BadShape {
                what: "hvae input",
                got: xs.dims().to_vec(),
                expected: format!("[batch, {}]", self.config.input_dim),
            }),
        }
    }

    /// Noise for `batch` rows of a latent of size `dim` as `[L, batch, dim]`,
    /// from `[batch, dim]` (one sample) or `[L, batch, dim]`.
    pub(crate) fn noise(&self, what: &'static str, eps: &Tensor, batch: usize, dim: usize) -> Result<Tensor> {
        match *eps.dims() {
            [b, d] if b == batch && d == dim => Ok(eps.unsqueeze(0)?),
            [_, b, d] if b == batch && d == dim => Ok(eps.clone()),
            _ => Err(Error::BadShape {
                what,
                got: eps.dims().to_vec(),
                expected: format!("[{batch}, {dim}] or [samples, {batch}, {dim}]"),
            }),
        }
    }

    /// `q(z1|x)`: `xs` `[batch, D]` → `[batch, Z1]` Gaussian.
    ///
    /// # Errors
    /// [`Error::BadShape`] for another input shape.
    pub fn posterior_z1(&self, xs: &Tensor) -> Result<DiagGaussian> {
        self.check_input(xs)?;
        self.q_z1.forward(xs)
    }

    /// `q(z2|z1)`: `z1` `[.., Z1]` → `[.., Z2]` Gaussian.
    ///
    /// # Errors
    /// Candle errors for another shape.
    pub fn posterior_z2(&self, z1: &Tensor) -> Result<DiagGaussian> {
        rows_apply(z1, self.config.latent2, |rows| self.q_z2.forward(rows))
    }

    /// `p(z1|z2)`: `z2` `[.., Z2]` → `[.., Z1]` Gaussian.
    ///
    /// # Errors
    /// Candle errors for another shape.
    pub fn prior_z1(&self, z2: &Tensor) -> Result<DiagGaussian> {
        rows_apply(z2, self.config.latent1, |rows| self.p_z1.forward(rows))
    }

    /// The logits of `p(x|z1)`: `z1` `[.., Z1]` → `[.., D]`.
    ///
    /// # Errors
    /// Candle errors for another shape.
    pub fn decode(&self, z1: &Tensor) -> Result<Tensor> {
        let dims = z1.dims().to_vec();
        let Some((&z, lead)) = dims.split_last() else {
            return Err(Error::BadShape {
                what: "decoder input",
                got: dims,
                expected: format!("[.., {}]", self.config.latent1),
            });
        };
        let rows: usize = lead.iter().product();
        let logits = z1.reshape((rows, z))?.apply(&self.p_x)?;
        let mut out = lead.to_vec();
        out.push(self.config.input_dim);
        Ok(logits.reshape(out)?)
    }

    /// `log p(x|z1)` per sample, nats: `xs` `[batch, D]`, `z1`
    /// `[L, batch, Z1]` → `[L, batch]`, the Bernoulli log-likelihood with
    /// logits through deepgen-numerics' fused, stable BCE.
    ///
    /// # Errors
    /// [`Error::BadShape`] for shapes that do not fit.
    pub fn log_likelihood(&self, xs: &Tensor, z1: &Tensor) -> Result<Tensor> {
        let batch = self.check_input(xs)?;
        let (l, zb, z) = z1.dims3()?;
        if zb != batch || z != self.config.latent1 {
            return Err(Error::BadShape {
                what: "z1 samples",
                got: z1.dims().to_vec(),
                expected: format!("[samples, {batch}, {}]", self.config.latent1),
            });
        }
        let logits = z1.reshape((l * batch, z))?.apply(&self.p_x)?;
        // Row i·batch + b is sample i of example b, scored against xs[b].
        let nll = bce_with_logits_rows(&logits, &xs.to_dtype(logits.dtype())?)?;
        Ok(nll.reshape((l, batch))?.neg()?)
    }

    /// Reconstructions `E[x|z1]` at `z1 = E_q[z1|x]`, `[batch, D]`.
    ///
    /// # Errors
    /// [`Error::BadShape`].
    pub fn reconstruct(&self, xs: &Tensor) -> Result<Tensor> {
        let q1 = self.posterior_z1(xs)?;
        Ok(sigmoid(&self.decode(q1.mean())?)?)
    }

    /// `E[x|z1_t]` along the line `z1_t = (1 − t) μ1(x_a) + t μ1(x_b)`,
    /// `t = 0 … 1` in `n_steps ≥ 2` steps, between the posterior means of
    /// `x_a` and `x_b` (`[1, D]` each) → `[n_steps, D]`. The line is drawn in
    /// `z1` because the pixels depend on `z1` alone; its ends are
    /// [`Hvae::reconstruct`] of the two inputs.
    ///
    /// # Errors
    /// [`Error::BadShape`] unless the ends make two `[·, D]` rows;
    /// [`Error::Numerics`] for `n_steps < 2`.
    pub fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Tensor> {
        // One batch, so that one encoder pass maps both ends.
        let ends = Tensor::cat(&[x_a, x_b], 0)?;
        if self.check_input(&ends)? != 2 {
            return Err(Error::BadShape {
                what: "interpolation ends",
                got: ends.dims().to_vec(),
                expected: format!("two [1, {}] inputs", self.config.input_dim),
            });
        }
        let z1 = line_between(self.posterior_z1(&ends)?.mean(), n_steps)?;
        Ok(sigmoid(&self.decode(&z1)?)?)
    }

    /// Ancestral samples `E[x|z1]` with `z2 = eps2 ~ N(0, I)` `[n, Z2]` and
    /// `z1 = μ(z2) + σ(z2) ⊙ eps1`, `eps1` `[n, Z1]` → `[n, D]`.
    ///
    /// # Errors
    /// Candle errors for other noise shapes.
    pub fn generate(&self, eps1: &Tensor, eps2: &Tensor) -> Result<Tensor> {
        let p1 = self.prior_z1(eps2)?;
        let z1 = p1.rsample(eps1)?;
        Ok(sigmoid(&self.decode(&z1)?)?)
    }
}

/// A Gaussian network applied to `[.., in]` through its `[n, in]` form, the
/// result reshaped to `[.., out]`.
fn rows_apply(us: &Tensor, out_dim: usize, f: impl FnOnce(&Tensor) -> Result<DiagGaussian>) -> Result<DiagGaussian> {
    let dims = us.dims().to_vec();
    let Some((&in_dim, lead)) = dims.split_last() else {
        return Err(Error::BadShape {
            what: "conditioning input",
            got: dims,
            expected: "[.., dim]".into(),
        });
    };
    if dims.len() == 2 {
        return f(us);
    }
    let rows: usize = lead.iter().product();
    let q = f(&us.reshape((rows, in_dim))?)?;
    let mut out = lead.to_vec();
    out.push(out_dim);
    Ok(DiagGaussian::new(
        q.mean().reshape(out.clone())?,
        q.log_var().reshape(out)?,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};

    /// The interpolation starts and ends at the two reconstructions, and
    /// refuses a wrong number of ends or steps.
    #[test]
    fn interpolation_runs_between_the_reconstructions() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = candle_nn::VarMap::new();
        let vb = deepgen_core::seeded_var_builder(&varmap, 3, DType::F32, &dev);
        let config = HvaeConfig {
            input_dim: 6,
            hidden1: vec![5],
            latent1: 3,
            hidden2: vec![4],
            latent2: 2,
            ..Default::default()
        };
        let model = hvae(&config, vb)?;
        let xs = deepgen_core::rng::rand_uniform(&mut deepgen_core::rng_from_seed(1), (2, 6), 0.0, 1.0, &dev)?;
        let (a, b) = (xs.narrow(0, 0, 1)?, xs.narrow(0, 1, 1)?);
        let line = model.interpolate(&a, &b, 4)?;
        assert_eq!(line.dims(), [4, 6]);
        let recon = model.reconstruct(&xs)?;
        let ends = Tensor::cat(&[line.narrow(0, 0, 1)?, line.narrow(0, 3, 1)?], 0)?;
        let diff = (ends - recon)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "{diff}");
        assert!(model.interpolate(&a, &b, 1).is_err());
        assert!(model.interpolate(&xs, &b, 4).is_err());
        Ok(())
    }
}
