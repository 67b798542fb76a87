//! The hierarchical VAE's side of deepgen-core's [`Trainer`]: its
//! [`TrainableModel`] implementation (one Adam step with `β` from the KL
//! schedule at the step's position in the run) and its per-layer test
//! diagnostics. [`HvaeTrainer`] is core's trainer of it; [`load_hvae`]
//! rebuilds a trained model from its run directory.

use crate::config::HvaeConfig;
use crate::loss::{HvaeLoss, scalar};
use crate::model::{Hvae, hvae};
use crate::{Error, Result};
use candle::{Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use deepgen_core::{Metrics, Optimizers, StdRng, StepCtx, TrainableModel, Trainer, load_model};
use deepgen_numerics::items_per_chunk;
use std::path::Path;

/// A hierarchical VAE with its variables and Adam. One step is one Adam
/// update on `recon + β (kl1 + kl2)` (with free bits if configured), summed
/// over the batch as pytorch/examples does; `β` follows the configured
/// [`crate::KlSchedule`] at the epochs completed after the step
/// ([`StepCtx::progress_after`]), so the last step of epoch `warmup` has
/// `β = 1` and a resumed run continues the schedule where it stopped.
pub type HvaeTrainer = Trainer<Hvae>;

impl TrainableModel for Hvae {
    type Config = HvaeConfig;
    type Batch = Tensor;
    const FAMILY: &'static str = "hvae";

    fn build(config: &HvaeConfig, vb: VarBuilder) -> deepgen_core::Result<Self> {
        Ok(hvae(config, vb)?)
    }

    fn config(&self) -> &HvaeConfig {
        Hvae::config(self)
    }

    /// Returns, per example and weighted by the batch size: `train_loss`
    /// (−ELBO), `objective` (what was minimised), `kl1`, `kl2` and `beta`.
    fn train_step(
        &self,
        xs: &Tensor,
        ctx: &StepCtx,
        optimizers: &mut Optimizers,
        rng: &mut StdRng,
    ) -> deepgen_core::Result<Metrics> {
        let beta = self.beta_at(ctx);
        let loss = self.objective(xs, beta, rng)?;
        Ok(self.update(xs, &loss, beta, optimizers)?)
    }
}

impl Hvae {
    /// `β` of the step at `ctx`: the schedule at the progress reached after
    /// it.
    pub fn beta_at(&self, ctx: &StepCtx) -> f64 {
        self.config().schedule.beta(ctx.progress_after())
    }

    /// One Adam step on `loss` of the batch `xs` at KL weight `beta` (the
    /// batch-mean objective times the batch size); the metrics of
    /// [`TrainableModel::train_step`].
    ///
    /// # Errors
    /// Candle errors.
    pub fn update(&self, xs: &Tensor, loss: &HvaeLoss, beta: f64, optimizers: &mut Optimizers) -> Result<Metrics> {
        let batch = xs.dim(0)?;
        optimizers.minimise(&(&loss.total * batch as f64)?)?;
        Ok(Metrics::new()
            .with("train_loss", scalar(&loss.negative_elbo()?)?)
            .with("objective", scalar(&loss.total)?)
            .with("kl1", scalar(&loss.kl1)?)
            .with("kl2", scalar(&loss.kl2)?)
            .with("beta", beta)
            .weighted(batch as f64))
    }

    /// Diagnostics on the test images `[n, D]` (one draw per example) in
    /// batches of `batch_size`: `test_loss` (−ELBO), `test_recon`,
    /// `test_kl1`, `test_kl2`, `active_units1`, `active_units2`; and with
    /// `log_likelihood = Some((k, examples))` also `test_log_px`, the
    /// importance-sampled `log p(x)` with `k` samples over the first
    /// `examples` images (costly: `k` decoder passes per image). Active
    /// units need `n ≥ 2` and are meaningful from about 1,000 examples.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `batch_size = 0`, fewer than 2 images,
    /// or `k = 0` / `examples = 0`; [`Error::BadShape`] for images of
    /// another size.
    pub fn test_metrics(
        &self,
        images: &Tensor,
        batch_size: usize,
        log_likelihood: Option<(usize, usize)>,
        rng: &mut StdRng,
    ) -> Result<Metrics> {
        if batch_size == 0 {
            return Err(Error::invalid_display("batch_size", 0, "must be at least 1"));
        }
        let n = self.check_input(images)?;
        if n < 2 {
            return Err(Error::invalid_display(
                "test_set",
                n,
                "active units need at least 2 test images (use ≥ 1,000)",
            ));
        }
        if let Some((k, examples)) = log_likelihood
            && (k == 0 || examples == 0)
        {
            return Err(Error::invalid_display(
                "log_likelihood",
                format!("k = {k}, examples = {examples}"),
                "both must be at least 1",
            ));
        }
        let d = self.diagnostics(images, batch_size, rng)?;
        let mut metrics = Metrics::new()
            .with("test_loss", d.loss.negative_elbo)
            .with("test_recon", d.loss.recon)
            .with("test_kl1", d.loss.kl1)
            .with("test_kl2", d.loss.kl2)
            .with("active_units1", d.active1.count as f64)
            .with("active_units2", d.active2.count as f64);
        if let Some((k, examples)) = log_likelihood {
            let images = images.narrow(0, 0, examples.min(n))?;
            let batch = items_per_chunk(k * self.config().input_dim).min(batch_size);
            metrics.push("test_log_px", self.mean_log_likelihood(&images, k, batch, rng)?);
        }
        Ok(metrics)
    }
}

/// Rebuilds the hierarchical VAE stored in a run directory (or checkpoint
/// file) on `device`, from its own configuration; returns the model and its
/// variables.
///
/// # Errors
/// [`deepgen_core::Error::Io`] when the file cannot be read (wrapped in
/// [`Error::Core`]); [`deepgen_core::Error::Checkpoint`] when it is not a
/// hierarchical VAE checkpoint (another model's, or no deepgen metadata) or
/// its tensors do not fit the stored configuration.
pub fn load_hvae(path: &Path, device: &Device) -> Result<(Hvae, VarMap)> {
    Ok(load_model::<Hvae>(path, device)?)
}
