//! The VAE's and the autoencoders' side of deepgen-core's [`Trainer`]: their
//! [`TrainableModel`] implementations (one Adam step on a batch of flattened
//! images `[batch, D]`) and their test-set metrics. [`VaeTrainer`] and
//! [`AeTrainer`] are core's trainer of each; [`load_vae`] rebuilds a trained
//! VAE from its run directory.

use crate::ae::{AeConfig, AeLoss, Autoencoder, autoencoder};
use crate::config::VaeConfig;
use crate::vae::{Vae, VaeLoss, scalar, vae};
use crate::{Error, Result};
use candle::{Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use deepgen_core::{Metrics, Optimizers, StdRng, StepCtx, TrainableModel, Trainer, batch_ranges, load_model};
use std::path::Path;

/// A VAE with its variables and Adam: one step is one Adam update on the
/// configured objective (summed over the batch, as pytorch/examples'
/// `reduction="sum"`, so Adam sees the same gradient scale).
pub type VaeTrainer = Trainer<Vae>;

/// An autoencoder with its variables and Adam: one step is one Adam update on
/// the batch-mean loss.
pub type AeTrainer = Trainer<Autoencoder>;

impl TrainableModel for Vae {
    type Config = VaeConfig;
    type Batch = Tensor;
    const FAMILY: &'static str = "vae";

    fn build(config: &VaeConfig, vb: VarBuilder) -> deepgen_core::Result<Self> {
        Ok(vae(config, vb)?)
    }

    fn config(&self) -> &VaeConfig {
        Vae::config(self)
    }

    /// `train_loss` (the objective), `recon` and `kl` per example.
    fn train_step(
        &self,
        xs: &Tensor,
        _ctx: &StepCtx,
        optimizers: &mut Optimizers,
        rng: &mut StdRng,
    ) -> deepgen_core::Result<Metrics> {
        Ok(self.update(xs, &self.objective(xs, rng)?, optimizers)?)
    }
}

impl Vae {
    /// One Adam step on `loss` of the batch `xs`: Adam minimises the
    /// batch-mean objective times the batch size (the sum pytorch/examples
    /// minimises); `train_loss` (the objective), `recon` and `kl` are
    /// reported per example, weighted by the batch size.
    ///
    /// # Errors
    /// Candle errors.
    pub fn update(&self, xs: &Tensor, loss: &VaeLoss, optimizers: &mut Optimizers) -> Result<Metrics> {
        let batch = xs.dim(0)?;
        optimizers.minimise(&(&loss.total * batch as f64)?)?;
        Ok(Metrics::new()
            .with("train_loss", scalar(&loss.total)?)
            .with("recon", scalar(&loss.recon)?)
            .with("kl", scalar(&loss.kl)?)
            .weighted(batch as f64))
    }

    /// The end-of-epoch metrics on `images` `[n, D]` in batches of
    /// `batch_size`: `test_loss` = −ELBO, `test_recon`, `test_kl`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `batch_size = 0`; Candle errors.
    pub fn test_metrics(&self, images: &Tensor, batch_size: usize, rng: &mut StdRng) -> Result<Metrics> {
        if batch_size == 0 {
            return Err(Error::invalid_display("batch_size", 0, "must be at least 1"));
        }
        let v = self.mean_loss(images, batch_size, rng)?;
        Ok(Metrics::new()
            .with("test_loss", v.negative_elbo)
            .with("test_recon", v.recon)
            .with("test_kl", v.kl))
    }
}

impl TrainableModel for Autoencoder {
    type Config = AeConfig;
    type Batch = Tensor;
    const FAMILY: &'static str = "ae";

    fn build(config: &AeConfig, vb: VarBuilder) -> deepgen_core::Result<Self> {
        Ok(autoencoder(config, vb)?)
    }

    fn config(&self) -> &AeConfig {
        Autoencoder::config(self)
    }

    /// Deterministic (`rng` is not used): Adam minimises the batch-mean loss;
    /// `train_loss`, `recon` and `penalty` are reported per example.
    fn train_step(
        &self,
        xs: &Tensor,
        _ctx: &StepCtx,
        optimizers: &mut Optimizers,
        _rng: &mut StdRng,
    ) -> deepgen_core::Result<Metrics> {
        let loss: AeLoss = self.loss(xs)?;
        optimizers.minimise(&loss.total)?;
        Ok(Metrics::new()
            .with("train_loss", scalar(&loss.total)?)
            .with("recon", scalar(&loss.recon)?)
            .with("penalty", scalar(&loss.penalty)?)
            .weighted(xs.dim(0)? as f64))
    }
}

impl Autoencoder {
    /// The end-of-epoch metrics on `images` `[n, D]` in batches of
    /// `batch_size`: `test_loss`, `test_recon`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn test_metrics(&self, images: &Tensor, batch_size: usize) -> Result<Metrics> {
        let n = images.dim(0)?;
        let (mut total, mut recon) = (0f64, 0f64);
        for (start, len) in batch_ranges(n, batch_size) {
            let loss = self.loss(&images.narrow(0, start, len)?)?;
            total += scalar(&loss.total)? * len as f64;
            recon += scalar(&loss.recon)? * len as f64;
        }
        let n = n.max(1) as f64;
        Ok(Metrics::new()
            .with("test_loss", total / n)
            .with("test_recon", recon / n))
    }
}

/// Rebuilds the VAE stored in a run directory (or checkpoint file) on
/// `device`, from its own configuration; returns the model and its
/// variables.
///
/// # Errors
/// [`deepgen_core::Error::Io`] when the file cannot be read (wrapped in
/// [`Error::Core`]); [`deepgen_core::Error::Checkpoint`] when it is not a VAE
/// checkpoint or its tensors do not fit the stored configuration.
pub fn load_vae(path: &Path, device: &Device) -> Result<(Vae, VarMap)> {
    Ok(load_model::<Vae>(path, device)?)
}
