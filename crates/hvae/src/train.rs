//! The hierarchical VAE's side of deepgen-core's training loop:
//! [`HvaeTrainer`] owns the model, its variables and Adam, advances the KL
//! schedule every step, and reports per-layer diagnostics after each epoch.
//!
//! Checkpoints hold the parameters under `model.`, Adam's moments under
//! `optim.`, and metadata `deepgen.model = hvae`, the configuration text
//! (`hvae.config`) and the epochs completed (`hvae.epochs_done`, so that a
//! resumed run continues the KL schedule where it stopped). [`load_hvae`]
//! rebuilds the model from the checkpoint alone and rejects a checkpoint of
//! another model with a message saying what it holds.

use crate::config::HvaeConfig;
use crate::diagnostics::Diagnostics;
use crate::loss::{HvaeLoss, scalar};
use crate::model::{Hvae, hvae};
use crate::{Error, Result};
use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use deepgen_core::{Adam, AdamConfig, Checkpoint, Metrics, StdRng, TrainStep, seeded_var_builder};
use deepgen_numerics::items_per_chunk;
use std::path::Path;

/// Checkpoint metadata naming the model family (the key every deepgen model
/// crate writes).
pub const MODEL_KEY: &str = "deepgen.model";
/// The model family name stored under [`MODEL_KEY`].
pub const MODEL_NAME: &str = "hvae";
/// Checkpoint metadata holding [`HvaeConfig::to_text`].
pub const CONFIG_KEY: &str = "hvae.config";
/// Checkpoint metadata holding the number of completed epochs.
pub const EPOCHS_KEY: &str = "hvae.epochs_done";
/// Prefix of the parameters in a checkpoint.
pub const MODEL_PREFIX: &str = "model.";
/// Prefix of the optimizer state in a checkpoint.
pub const OPTIM_PREFIX: &str = "optim.";

/// Test-set evaluation settings.
#[derive(Clone, Debug)]
struct TestSet {
    images: Tensor,
    batch_size: usize,
    /// `(K, examples)` for the importance-sampled `log p(x)`, if asked for.
    log_likelihood: Option<(usize, usize)>,
}

/// A hierarchical VAE with its variables and Adam. One step is one Adam
/// update on `recon + β (kl1 + kl2)` (with free bits if configured), summed
/// over the batch as pytorch/examples does; `β` follows the configured
/// [`crate::KlSchedule`] at `epochs + (steps this epoch) / steps_per_epoch`.
pub struct HvaeTrainer {
    varmap: VarMap,
    model: Hvae,
    opt: Adam,
    steps_per_epoch: usize,
    epochs_done: usize,
    steps_this_epoch: usize,
    test: Option<TestSet>,
}

impl std::fmt::Debug for HvaeTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HvaeTrainer")
            .field("model", &self.model)
            .field("opt", &self.opt)
            .field("steps_per_epoch", &self.steps_per_epoch)
            .field("epochs_done", &self.epochs_done)
            .finish_non_exhaustive()
    }
}

impl HvaeTrainer {
    /// A freshly initialised model (weights seeded by `seed`) in `f32` on
    /// `device`, optimised by Adam with `adam`; `steps_per_epoch` (the
    /// batches per epoch) converts steps into the epochs of the KL schedule.
    ///
    /// # Errors
    /// Invalid configurations, `steps_per_epoch = 0`; Candle errors.
    pub fn new(
        config: &HvaeConfig,
        adam: AdamConfig,
        seed: u64,
        steps_per_epoch: usize,
        device: &Device,
    ) -> Result<Self> {
        if steps_per_epoch == 0 {
            return Err(Error::invalid(
                "steps_per_epoch",
                0,
                "an epoch needs at least one batch",
            ));
        }
        let varmap = VarMap::new();
        let model = hvae(config, seeded_var_builder(&varmap, seed, DType::F32, device))?;
        let opt = Adam::new(&varmap, adam)?;
        Ok(Self {
            varmap,
            model,
            opt,
            steps_per_epoch,
            epochs_done: 0,
            steps_this_epoch: 0,
            test: None,
        })
    }

    /// Evaluates on `images` `[n, D]` after every epoch, in batches of
    /// `batch_size`: metrics `test_loss` (−ELBO), `test_recon`, `test_kl1`,
    /// `test_kl2`, `active_units1`, `active_units2`. Active units need
    /// `n ≥ 2` and are meaningful from about 1,000 examples.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `batch_size = 0` or fewer than 2 images;
    /// [`Error::BadShape`] for images of another size.
    pub fn with_test_set(mut self, images: Tensor, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::invalid("batch_size", 0, "must be at least 1"));
        }
        let n = self.model.check_input(&images)?;
        if n < 2 {
            return Err(Error::invalid(
                "test_set",
                n,
                "active units need at least 2 test images (use ≥ 1,000)",
            ));
        }
        self.test = Some(TestSet {
            images,
            batch_size,
            log_likelihood: None,
        });
        Ok(self)
    }

    /// Also reports `test_log_px`, the importance-sampled `log p(x)` with `k`
    /// samples, averaged over the first `examples` test images (costly:
    /// `k` decoder passes per image).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] without a test set, or for `k = 0` or
    /// `examples = 0`.
    pub fn with_log_likelihood(mut self, k: usize, examples: usize) -> Result<Self> {
        if k == 0 || examples == 0 {
            return Err(Error::invalid(
                "log_likelihood",
                format!("k = {k}, examples = {examples}"),
                "both must be at least 1",
            ));
        }
        let Some(test) = self.test.as_mut() else {
            return Err(Error::invalid("log_likelihood", k, "set a test set first"));
        };
        test.log_likelihood = Some((k, examples));
        Ok(self)
    }

    /// The model.
    pub fn model(&self) -> &Hvae {
        &self.model
    }

    /// The variables.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &Adam {
        &self.opt
    }

    /// Training progress in epochs (fractional within an epoch).
    pub fn progress(&self) -> f64 {
        let within = self.steps_this_epoch.min(self.steps_per_epoch) as f64 / self.steps_per_epoch as f64;
        self.epochs_done as f64 + within
    }

    /// `β` of the next step: the schedule at the progress reached after it,
    /// so that the last step of epoch `warmup` has `β = 1`.
    pub fn beta(&self) -> f64 {
        let within = (self.steps_this_epoch + 1).min(self.steps_per_epoch) as f64 / self.steps_per_epoch as f64;
        self.model.config().schedule.beta(self.epochs_done as f64 + within)
    }

    /// One Adam step on `xs` `[batch, D]`. Returns, per example and weighted
    /// by the batch size: `train_loss` (−ELBO), `objective` (what was
    /// minimised), `kl1`, `kl2` and `beta`.
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    pub fn step(&mut self, xs: &Tensor, rng: &mut StdRng) -> Result<Metrics> {
        let beta = self.beta();
        let loss = self.model.objective(xs, beta, rng)?;
        self.update(xs, &loss, beta)
    }

    /// [`HvaeTrainer::step`] with the noise given: `eps1` `[batch, Z1]` and
    /// `eps2` `[batch, Z2]` (or `[L, batch, ·]`).
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    pub fn step_with_noise(&mut self, xs: &Tensor, eps1: &Tensor, eps2: &Tensor) -> Result<Metrics> {
        let beta = self.beta();
        let loss = self.model.loss(xs, eps1, eps2, beta)?;
        self.update(xs, &loss, beta)
    }

    fn update(&mut self, xs: &Tensor, loss: &HvaeLoss, beta: f64) -> Result<Metrics> {
        let batch = xs.dim(0)?;
        self.opt.backward_step(&(&loss.total * batch as f64)?)?;
        self.steps_this_epoch += 1;
        Ok(Metrics::new()
            .with("train_loss", scalar(&loss.negative_elbo()?)?)
            .with("objective", scalar(&loss.total)?)
            .with("kl1", scalar(&loss.kl1)?)
            .with("kl2", scalar(&loss.kl2)?)
            .with("beta", beta)
            .weighted(batch as f64))
    }

    /// Diagnostics on the test set (one draw per example), if one was given.
    ///
    /// # Errors
    /// Candle errors.
    pub fn evaluate(&self, rng: &mut StdRng) -> Result<Option<Diagnostics>> {
        self.test
            .as_ref()
            .map(|t| self.model.diagnostics(&t.images, t.batch_size, rng))
            .transpose()
    }

    fn epoch_metrics(&self, rng: &mut StdRng) -> Result<Metrics> {
        let (Some(test), Some(d)) = (&self.test, self.evaluate(rng)?) else {
            return Ok(Metrics::new());
        };
        let mut metrics = Metrics::new()
            .with("test_loss", d.loss.negative_elbo)
            .with("test_recon", d.loss.recon)
            .with("test_kl1", d.loss.kl1)
            .with("test_kl2", d.loss.kl2)
            .with("active_units1", d.active1.count as f64)
            .with("active_units2", d.active2.count as f64);
        if let Some((k, examples)) = test.log_likelihood {
            let n = examples.min(test.images.dim(0)?);
            let images = test.images.narrow(0, 0, n)?;
            let batch = items_per_chunk(k * self.model.config().input_dim).min(test.batch_size);
            metrics.push("test_log_px", self.model.mean_log_likelihood(&images, k, batch, rng)?);
        }
        Ok(metrics)
    }
}

impl TrainStep for HvaeTrainer {
    type Batch = Tensor;

    fn train_step(&mut self, batch: &Tensor, rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        Ok(self.step(batch, rng)?)
    }

    fn end_epoch(&mut self, epoch: usize, rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        self.epochs_done = epoch;
        self.steps_this_epoch = 0;
        Ok(self.epoch_metrics(rng)?)
    }

    fn save_state(&self, checkpoint: &mut Checkpoint) -> deepgen_core::Result<()> {
        checkpoint.add_varmap(MODEL_PREFIX, &self.varmap)?;
        self.opt.save_state(OPTIM_PREFIX, checkpoint);
        checkpoint.metadata.insert(MODEL_KEY.into(), MODEL_NAME.into());
        checkpoint
            .metadata
            .insert(CONFIG_KEY.into(), self.model.config().to_text());
        checkpoint
            .metadata
            .insert(EPOCHS_KEY.into(), self.epochs_done.to_string());
        Ok(())
    }

    fn load_state(&mut self, checkpoint: &Checkpoint, path: &Path) -> deepgen_core::Result<()> {
        let stored = stored_config(checkpoint, path)?;
        let ours = self.model.config().to_text();
        if HvaeConfig::parse(&stored)? != *self.model.config() {
            return Err(deepgen_core::Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!(
                    "it was trained as `{stored}`, but this run is `{ours}`; use the same options to resume"
                ),
            });
        }
        let epochs_done = checkpoint.metadata_value(EPOCHS_KEY, path)?;
        checkpoint.load_varmap(MODEL_PREFIX, &self.varmap, path)?;
        self.opt.load_state(OPTIM_PREFIX, checkpoint, path)?;
        self.epochs_done = epochs_done;
        self.steps_this_epoch = 0;
        Ok(())
    }
}

/// The configuration text of a hierarchical VAE checkpoint, or an error
/// saying what the checkpoint is instead.
fn stored_config(checkpoint: &Checkpoint, path: &Path) -> deepgen_core::Result<String> {
    let invalid = |reason: String| deepgen_core::Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    match checkpoint.metadata.get(MODEL_KEY).map(String::as_str) {
        Some(MODEL_NAME) => {}
        Some(other) => {
            return Err(invalid(format!(
                "it holds a `{other}` model, not a `{MODEL_NAME}` (hierarchical VAE)"
            )));
        }
        None => {
            return Err(invalid(format!(
                "it has no `{MODEL_KEY}` entry, so it is not a deepgen `{MODEL_NAME}` checkpoint"
            )));
        }
    }
    checkpoint.metadata.get(CONFIG_KEY).cloned().ok_or_else(|| {
        invalid(format!(
            "the `{MODEL_NAME}` checkpoint lacks its configuration `{CONFIG_KEY}`"
        ))
    })
}

/// Rebuilds the hierarchical VAE stored in the checkpoint at `path` on
/// `device`, from its own configuration; returns the model and its
/// variables.
///
/// # Errors
/// [`deepgen_core::Error::Io`] when the file cannot be read (wrapped in
/// [`Error::Core`]); [`deepgen_core::Error::Checkpoint`] when it is not a
/// hierarchical VAE checkpoint (another model's, or no deepgen metadata) or
/// its tensors do not fit the stored configuration.
pub fn load_hvae(path: &Path, device: &Device) -> Result<(Hvae, VarMap)> {
    let checkpoint = Checkpoint::load(path, device)?;
    let text = stored_config(&checkpoint, path)?;
    let config = HvaeConfig::parse(&text)?;
    let varmap = VarMap::new();
    let model = hvae(&config, seeded_var_builder(&varmap, 0, DType::F32, device))?;
    checkpoint.load_varmap(MODEL_PREFIX, &varmap, path)?;
    Ok((model, varmap))
}
