//! The VAE's and the autoencoders' side of deepgen-core's training loop:
//! [`VaeTrainer`] and [`AeTrainer`] own their model, variables and Adam, and
//! implement [`TrainStep`] on batches of flattened images `[batch, D]`.
//!
//! Checkpoints hold the parameters under `model.`, Adam's moments under
//! `optim.`, and metadata `deepgen.model` (`vae` or `ae`) and the model's
//! configuration text, so that a run directory describes itself:
//! [`load_vae`] rebuilds the model from the checkpoint alone and rejects a
//! checkpoint of another model or architecture with a message saying so.

use crate::ae::{AeConfig, Autoencoder, autoencoder};
use crate::config::{Objective, VaeConfig};
use crate::vae::{LossValues, Vae, VaeLoss, scalar, vae};
use crate::{Error, Result};
use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use deepgen_core::{Adam, AdamConfig, Checkpoint, Metrics, StdRng, TrainStep, seeded_var_builder};
use std::path::Path;

/// Checkpoint metadata naming the model family.
pub const MODEL_KEY: &str = "deepgen.model";
/// Checkpoint metadata holding [`VaeConfig::to_text`].
pub const VAE_CONFIG_KEY: &str = "vae.config";
/// Checkpoint metadata holding [`AeConfig::to_text`].
pub const AE_CONFIG_KEY: &str = "ae.config";
/// Prefix of the parameters in a checkpoint.
pub const MODEL_PREFIX: &str = "model.";
/// Prefix of the optimizer state in a checkpoint.
pub const OPTIM_PREFIX: &str = "optim.";

/// Test-set evaluation: the images and the batch size.
#[derive(Clone, Debug)]
struct TestSet {
    images: Tensor,
    batch_size: usize,
}

/// A VAE with its variables and Adam: one step is one Adam update on the
/// configured objective (summed over the batch, as pytorch/examples'
/// `reduction="sum"`, so Adam sees the same gradient scale).
pub struct VaeTrainer {
    varmap: VarMap,
    vae: Vae,
    opt: Adam,
    test: Option<TestSet>,
}

impl std::fmt::Debug for VaeTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaeTrainer")
            .field("vae", &self.vae)
            .field("opt", &self.opt)
            .finish_non_exhaustive()
    }
}

impl VaeTrainer {
    /// A freshly initialised VAE (weights seeded by `seed`) in `f32` on
    /// `device`, optimised by Adam with `adam`.
    ///
    /// # Errors
    /// Invalid configurations; Candle errors.
    pub fn new(config: &VaeConfig, adam: AdamConfig, seed: u64, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vae = vae(config, seeded_var_builder(&varmap, seed, DType::F32, device))?;
        let opt = Adam::new(&varmap, adam)?;
        Ok(Self {
            varmap,
            vae,
            opt,
            test: None,
        })
    }

    /// Evaluates on `images` `[n, D]` after every epoch, in batches of
    /// `batch_size` (metrics `test_loss` = −ELBO, `test_recon`, `test_kl`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `batch_size = 0`.
    pub fn with_test_set(mut self, images: Tensor, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::invalid("batch_size", 0, "must be at least 1"));
        }
        self.test = Some(TestSet { images, batch_size });
        Ok(self)
    }

    /// The model.
    pub fn vae(&self) -> &Vae {
        &self.vae
    }

    /// The variables.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &Adam {
        &self.opt
    }

    /// One Adam step on `xs` `[batch, D]`; returns `train_loss` (the
    /// objective), `recon` and `kl`, per example, weighted by the batch size.
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    pub fn step(&mut self, xs: &Tensor, rng: &mut StdRng) -> Result<Metrics> {
        let loss = self.vae.objective(xs, rng)?;
        self.update(xs, &loss)
    }

    /// [`VaeTrainer::step`] with the noise given: `eps` `[batch, Z]` or
    /// `[L, batch, Z]` (`[K, batch, Z]` for IWAE).
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    pub fn step_with_noise(&mut self, xs: &Tensor, eps: &Tensor) -> Result<Metrics> {
        let loss = match self.vae.config().objective {
            Objective::Elbo => self.vae.loss(xs, eps)?,
            Objective::Iwae { .. } => self.vae.iwae_loss(xs, eps)?,
        };
        self.update(xs, &loss)
    }

    fn update(&mut self, xs: &Tensor, loss: &VaeLoss) -> Result<Metrics> {
        let batch = xs.dim(0)?;
        self.opt.backward_step(&(&loss.total * batch as f64)?)?;
        Ok(Metrics::new()
            .with("train_loss", scalar(&loss.total)?)
            .with("recon", scalar(&loss.recon)?)
            .with("kl", scalar(&loss.kl)?)
            .weighted(batch as f64))
    }

    /// `−ELBO`, `recon` and `kl` on the test set (one `z` per example), if
    /// one was given.
    ///
    /// # Errors
    /// Candle errors.
    pub fn evaluate(&self, rng: &mut StdRng) -> Result<Option<LossValues>> {
        self.test
            .as_ref()
            .map(|t| self.vae.mean_loss(&t.images, t.batch_size, rng))
            .transpose()
    }
}

impl TrainStep for VaeTrainer {
    type Batch = Tensor;

    fn train_step(&mut self, batch: &Tensor, rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        Ok(self.step(batch, rng)?)
    }

    fn end_epoch(&mut self, _epoch: usize, rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        Ok(match self.evaluate(rng)? {
            Some(v) => Metrics::new()
                .with("test_loss", v.negative_elbo)
                .with("test_recon", v.recon)
                .with("test_kl", v.kl),
            None => Metrics::new(),
        })
    }

    fn save_state(&self, checkpoint: &mut Checkpoint) -> deepgen_core::Result<()> {
        checkpoint.add_varmap(MODEL_PREFIX, &self.varmap)?;
        self.opt.save_state(OPTIM_PREFIX, checkpoint);
        checkpoint.metadata.insert(MODEL_KEY.into(), "vae".into());
        checkpoint
            .metadata
            .insert(VAE_CONFIG_KEY.into(), self.vae.config().to_text());
        Ok(())
    }

    fn load_state(&mut self, checkpoint: &Checkpoint, path: &Path) -> deepgen_core::Result<()> {
        let stored = stored_config(checkpoint, path, "vae", VAE_CONFIG_KEY)?;
        let ours = self.vae.config().to_text();
        if VaeConfig::parse(&stored)? != *self.vae.config() {
            return Err(mismatch(path, &stored, &ours));
        }
        checkpoint.load_varmap(MODEL_PREFIX, &self.varmap, path)?;
        self.opt.load_state(OPTIM_PREFIX, checkpoint, path)
    }
}

fn mismatch(path: &Path, stored: &str, ours: &str) -> deepgen_core::Error {
    deepgen_core::Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("it was trained as `{stored}`, but this run is `{ours}`; use the same options to resume"),
    }
}

/// The configuration text stored under `key` of a checkpoint of model family
/// `family`, or an error saying what the checkpoint is instead.
fn stored_config(checkpoint: &Checkpoint, path: &Path, family: &str, key: &str) -> deepgen_core::Result<String> {
    let invalid = |reason: String| deepgen_core::Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    match checkpoint.metadata.get(MODEL_KEY).map(String::as_str) {
        Some(model) if model == family => {}
        Some(other) => return Err(invalid(format!("it holds a `{other}` model, not a `{family}`"))),
        None => {
            return Err(invalid(format!(
                "it has no `{MODEL_KEY}` entry, so it is not a deepgen `{family}` checkpoint"
            )));
        }
    }
    checkpoint
        .metadata
        .get(key)
        .cloned()
        .ok_or_else(|| invalid(format!("the `{family}` checkpoint lacks its configuration `{key}`")))
}

/// Rebuilds the VAE stored in the checkpoint at `path` on `device`, from its
/// own configuration; returns the model, its variables and the
/// configuration.
///
/// # Errors
/// [`deepgen_core::Error::Io`] when the file cannot be read (wrapped in
/// [`Error::Core`]); [`deepgen_core::Error::Checkpoint`] when it is not a VAE
/// checkpoint or its tensors do not fit the stored configuration.
pub fn load_vae(path: &Path, device: &Device) -> Result<(Vae, VarMap)> {
    let checkpoint = Checkpoint::load(path, device)?;
    let text = stored_config(&checkpoint, path, "vae", VAE_CONFIG_KEY)?;
    let config = VaeConfig::parse(&text)?;
    let varmap = VarMap::new();
    let model = vae(&config, seeded_var_builder(&varmap, 0, DType::F32, device))?;
    checkpoint.load_varmap(MODEL_PREFIX, &varmap, path)?;
    Ok((model, varmap))
}

/// An autoencoder with its variables and Adam.
pub struct AeTrainer {
    varmap: VarMap,
    model: Autoencoder,
    opt: Adam,
    test: Option<TestSet>,
}

impl std::fmt::Debug for AeTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AeTrainer")
            .field("model", &self.model)
            .field("opt", &self.opt)
            .finish_non_exhaustive()
    }
}

impl AeTrainer {
    /// A freshly initialised autoencoder (seeded by `seed`) in `f32` on
    /// `device`, optimised by Adam with `adam`.
    ///
    /// # Errors
    /// Invalid configurations; Candle errors.
    pub fn new(config: &AeConfig, adam: AdamConfig, seed: u64, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let model = autoencoder(config, seeded_var_builder(&varmap, seed, DType::F32, device))?;
        let opt = Adam::new(&varmap, adam)?;
        Ok(Self {
            varmap,
            model,
            opt,
            test: None,
        })
    }

    /// Evaluates on `images` `[n, D]` after every epoch (`test_loss`,
    /// `test_recon`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `batch_size = 0`.
    pub fn with_test_set(mut self, images: Tensor, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::invalid("batch_size", 0, "must be at least 1"));
        }
        self.test = Some(TestSet { images, batch_size });
        Ok(self)
    }

    /// The model.
    pub fn model(&self) -> &Autoencoder {
        &self.model
    }

    /// The variables.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// One Adam step on the batch-mean loss of `xs`; returns `train_loss`,
    /// `recon` and `penalty` per example.
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    pub fn step(&mut self, xs: &Tensor) -> Result<Metrics> {
        let loss = self.model.loss(xs)?;
        self.opt.backward_step(&loss.total)?;
        Ok(Metrics::new()
            .with("train_loss", scalar(&loss.total)?)
            .with("recon", scalar(&loss.recon)?)
            .with("penalty", scalar(&loss.penalty)?)
            .weighted(xs.dim(0)? as f64))
    }

    /// `(loss, recon)` per example over the test set, if one was given.
    ///
    /// # Errors
    /// Candle errors.
    pub fn evaluate(&self) -> Result<Option<(f64, f64)>> {
        let Some(test) = &self.test else { return Ok(None) };
        let n = test.images.dim(0)?;
        let (mut total, mut recon, mut start) = (0f64, 0f64, 0);
        while start < n {
            let len = test.batch_size.min(n - start);
            let loss = self.model.loss(&test.images.narrow(0, start, len)?)?;
            total += scalar(&loss.total)? * len as f64;
            recon += scalar(&loss.recon)? * len as f64;
            start += len;
        }
        let n = n.max(1) as f64;
        Ok(Some((total / n, recon / n)))
    }
}

impl TrainStep for AeTrainer {
    type Batch = Tensor;

    fn train_step(&mut self, batch: &Tensor, _rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        Ok(self.step(batch)?)
    }

    fn end_epoch(&mut self, _epoch: usize, _rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        Ok(match self.evaluate()? {
            Some((loss, recon)) => Metrics::new().with("test_loss", loss).with("test_recon", recon),
            None => Metrics::new(),
        })
    }

    fn save_state(&self, checkpoint: &mut Checkpoint) -> deepgen_core::Result<()> {
        checkpoint.add_varmap(MODEL_PREFIX, &self.varmap)?;
        self.opt.save_state(OPTIM_PREFIX, checkpoint);
        checkpoint.metadata.insert(MODEL_KEY.into(), "ae".into());
        checkpoint
            .metadata
            .insert(AE_CONFIG_KEY.into(), self.model.config().to_text());
        Ok(())
    }

    fn load_state(&mut self, checkpoint: &Checkpoint, path: &Path) -> deepgen_core::Result<()> {
        let stored = stored_config(checkpoint, path, "ae", AE_CONFIG_KEY)?;
        let ours = self.model.config().to_text();
        if AeConfig::parse(&stored)? != *self.model.config() {
            return Err(mismatch(path, &stored, &ours));
        }
        checkpoint.load_varmap(MODEL_PREFIX, &self.varmap, path)?;
        self.opt.load_state(OPTIM_PREFIX, checkpoint, path)
    }
}
