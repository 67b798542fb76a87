//! The VAE's and the autoencoders' side of deepgen-core's training loop: one
//! [`Trainer`] owns a model, its variables and Adam, and implements
//! [`TrainStep`] on batches of flattened images `[batch, D]`; what differs
//! between the models (how they are built, their step loss and test
//! metrics) is their [`TrainableModel`] implementation. [`VaeTrainer`] and
//! [`AeTrainer`] are its two instances.
//!
//! Checkpoints hold the parameters under `model.`, Adam's moments under
//! `optim.`, and metadata `deepgen.model` (`vae` or `ae`) and the model's
//! configuration text, so that a run directory describes itself:
//! [`load_vae`] rebuilds the model from the checkpoint alone and rejects a
//! checkpoint of another model or architecture with a message saying so.

use crate::ae::{AeConfig, AeLoss, Autoencoder, autoencoder};
use crate::config::{ConfigText, Objective, VaeConfig};
use crate::vae::{Vae, VaeLoss, scalar, vae};
use crate::{Error, Result};
use candle::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use deepgen_core::{Adam, AdamConfig, Checkpoint, Metrics, StdRng, TrainStep, batch_ranges, seeded_var_builder};
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

/// A model that [`Trainer`] trains: how it is built from its configuration,
/// how its checkpoints name it, and its losses.
pub trait TrainableModel: Sized {
    /// The configuration the model is built from; its text form goes into
    /// checkpoints.
    type Config: ConfigText;
    /// The model family in the checkpoint metadata [`MODEL_KEY`].
    const FAMILY: &'static str;
    /// The checkpoint metadata key of the configuration's text form.
    const CONFIG_KEY: &'static str;

    /// The model of `config` with its variables under `vb`.
    ///
    /// # Errors
    /// Invalid configurations; Candle errors.
    fn build(config: &Self::Config, vb: VarBuilder) -> Result<Self>;

    /// The model's configuration.
    fn config(&self) -> &Self::Config;

    /// The loss of one training step on `xs` `[batch, D]`, noise from `rng`.
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    fn step_loss(&self, xs: &Tensor, rng: &mut StdRng) -> Result<StepLoss>;

    /// Data-dependent initialisation from the training images `[n, D]`,
    /// before the first step; the default does nothing. The VAE starts its
    /// decoder's output bias at the data's per-pixel marginal
    /// ([`crate::Decoder::init_output_bias`]).
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    fn init_from_data(&self, _images: &Tensor) -> Result<()> {
        Ok(())
    }

    /// The end-of-epoch metrics on `images` `[n, D]` in batches of
    /// `batch_size`.
    ///
    /// # Errors
    /// Candle errors.
    fn test_metrics(&self, images: &Tensor, batch_size: usize, rng: &mut StdRng) -> Result<Metrics>;
}

/// One training step's loss: the tensor Adam differentiates and the
/// per-example values the metrics log reports.
#[derive(Debug)]
pub struct StepLoss {
    /// What Adam minimises (scaled as the model's reference does).
    pub minimised: Tensor,
    /// Named per-example scalars, `train_loss` first, reported after the
    /// update.
    pub reported: Vec<(&'static str, Tensor)>,
    /// The batch size, the weight of the step's metrics in the epoch mean.
    pub batch: usize,
}

/// Test-set evaluation: the images and the batch size.
#[derive(Clone, Debug)]
struct TestSet {
    images: Tensor,
    batch_size: usize,
}

/// A model with its variables and Adam: one step is one Adam update on the
/// model's [`TrainableModel::step_loss`].
pub struct Trainer<M> {
    varmap: VarMap,
    model: M,
    opt: Adam,
    test: Option<TestSet>,
}

impl<M: std::fmt::Debug> std::fmt::Debug for Trainer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("model", &self.model)
            .field("opt", &self.opt)
            .finish_non_exhaustive()
    }
}

/// A VAE with its variables and Adam: one step is one Adam update on the
/// configured objective (summed over the batch, as pytorch/examples'
/// `reduction="sum"`, so Adam sees the same gradient scale); test metrics
/// `test_loss` = −ELBO, `test_recon`, `test_kl`.
pub type VaeTrainer = Trainer<Vae>;

/// An autoencoder with its variables and Adam: one step is one Adam update on
/// the batch-mean loss; test metrics `test_loss`, `test_recon`.
pub type AeTrainer = Trainer<Autoencoder>;

impl<M: TrainableModel> Trainer<M> {
    /// A freshly initialised model (weights seeded by `seed`) in `f32` on
    /// `device`, optimised by Adam with `adam`.
    ///
    /// # Errors
    /// Invalid configurations; Candle errors.
    pub fn new(config: &M::Config, adam: AdamConfig, seed: u64, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let model = M::build(config, seeded_var_builder(&varmap, seed, DType::F32, device))?;
        let opt = Adam::new(&varmap, adam)?;
        Ok(Self {
            varmap,
            model,
            opt,
            test: None,
        })
    }

    /// Evaluates on `images` `[n, D]` after every epoch, in batches of
    /// `batch_size`.
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

    /// Initialises the model from its training images `[n, D]` before the
    /// first step ([`TrainableModel::init_from_data`]); a resumed run's
    /// checkpoint overwrites it.
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    pub fn init_from_data(&mut self, images: &Tensor) -> Result<()> {
        self.model.init_from_data(images)
    }

    /// The model.
    pub fn model(&self) -> &M {
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

    /// The model's test metrics on the test set, if one was given.
    ///
    /// # Errors
    /// Candle errors.
    pub fn evaluate(&self, rng: &mut StdRng) -> Result<Option<Metrics>> {
        self.test
            .as_ref()
            .map(|t| self.model.test_metrics(&t.images, t.batch_size, rng))
            .transpose()
    }

    /// One Adam step on `loss`; returns its reported values weighted by the
    /// batch size.
    fn update(&mut self, loss: StepLoss) -> Result<Metrics> {
        self.opt.backward_step(&loss.minimised)?;
        let mut metrics = Metrics::new();
        for (name, value) in &loss.reported {
            metrics.push(*name, scalar(value)?);
        }
        Ok(metrics.weighted(loss.batch as f64))
    }

    /// One Adam step on the model's step loss on `xs`.
    fn step_on(&mut self, xs: &Tensor, rng: &mut StdRng) -> Result<Metrics> {
        let loss = self.model.step_loss(xs, rng)?;
        self.update(loss)
    }
}

impl<M: TrainableModel> TrainStep for Trainer<M> {
    type Batch = Tensor;

    fn train_step(&mut self, batch: &Tensor, rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        Ok(self.step_on(batch, rng)?)
    }

    fn end_epoch(&mut self, _epoch: usize, rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        Ok(self.evaluate(rng)?.unwrap_or_default())
    }

    fn save_state(&self, checkpoint: &mut Checkpoint) -> deepgen_core::Result<()> {
        checkpoint.add_varmap(MODEL_PREFIX, &self.varmap)?;
        self.opt.save_state(OPTIM_PREFIX, checkpoint);
        checkpoint.metadata.insert(MODEL_KEY.into(), M::FAMILY.into());
        checkpoint
            .metadata
            .insert(M::CONFIG_KEY.into(), self.model.config().to_text());
        Ok(())
    }

    fn load_state(&mut self, checkpoint: &Checkpoint, path: &Path) -> deepgen_core::Result<()> {
        let stored = stored_config(checkpoint, path, M::FAMILY, M::CONFIG_KEY)?;
        if M::Config::parse(&stored)? != *self.model.config() {
            return Err(deepgen_core::Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!(
                    "it was trained as `{stored}`, but this run is `{}`; use the same options to resume",
                    self.model.config().to_text()
                ),
            });
        }
        checkpoint.load_varmap(MODEL_PREFIX, &self.varmap, path)?;
        self.opt.load_state(OPTIM_PREFIX, checkpoint, path)
    }
}

impl TrainableModel for Vae {
    type Config = VaeConfig;
    const FAMILY: &'static str = "vae";
    const CONFIG_KEY: &'static str = VAE_CONFIG_KEY;

    fn build(config: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        vae(config, vb)
    }

    fn config(&self) -> &VaeConfig {
        Vae::config(self)
    }

    fn step_loss(&self, xs: &Tensor, rng: &mut StdRng) -> Result<StepLoss> {
        vae_step_loss(xs, self.objective(xs, rng)?)
    }

    fn init_from_data(&self, images: &Tensor) -> Result<()> {
        self.decoder().init_output_bias(images)
    }

    fn test_metrics(&self, images: &Tensor, batch_size: usize, rng: &mut StdRng) -> Result<Metrics> {
        let v = self.mean_loss(images, batch_size, rng)?;
        Ok(Metrics::new()
            .with("test_loss", v.negative_elbo)
            .with("test_recon", v.recon)
            .with("test_kl", v.kl))
    }
}

/// The VAE's step: Adam minimises the batch-mean objective times the batch
/// size (the sum pytorch/examples minimises); `train_loss` (the objective),
/// `recon` and `kl` are reported per example.
fn vae_step_loss(xs: &Tensor, loss: VaeLoss) -> Result<StepLoss> {
    let batch = xs.dim(0)?;
    Ok(StepLoss {
        minimised: (&loss.total * batch as f64)?,
        reported: vec![("train_loss", loss.total), ("recon", loss.recon), ("kl", loss.kl)],
        batch,
    })
}

impl VaeTrainer {
    /// The VAE.
    pub fn vae(&self) -> &Vae {
        &self.model
    }

    /// One Adam step on `xs` `[batch, D]`; returns `train_loss` (the
    /// objective), `recon` and `kl`, per example, weighted by the batch size.
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    pub fn step(&mut self, xs: &Tensor, rng: &mut StdRng) -> Result<Metrics> {
        self.step_on(xs, rng)
    }

    /// [`VaeTrainer::step`] with the noise given: `eps` `[batch, Z]` or
    /// `[L, batch, Z]` (`[K, batch, Z]` for IWAE).
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    pub fn step_with_noise(&mut self, xs: &Tensor, eps: &Tensor) -> Result<Metrics> {
        let loss = match self.model.config().objective {
            Objective::Elbo => self.model.loss(xs, eps)?,
            Objective::Iwae { .. } => self.model.iwae_loss(xs, eps)?,
        };
        self.update(vae_step_loss(xs, loss)?)
    }
}

impl TrainableModel for Autoencoder {
    type Config = AeConfig;
    const FAMILY: &'static str = "ae";
    const CONFIG_KEY: &'static str = AE_CONFIG_KEY;

    fn build(config: &AeConfig, vb: VarBuilder) -> Result<Self> {
        autoencoder(config, vb)
    }

    fn config(&self) -> &AeConfig {
        Autoencoder::config(self)
    }

    /// Deterministic: `rng` is not used.
    fn step_loss(&self, xs: &Tensor, _rng: &mut StdRng) -> Result<StepLoss> {
        ae_step_loss(xs, self.loss(xs)?)
    }

    fn test_metrics(&self, images: &Tensor, batch_size: usize, _rng: &mut StdRng) -> Result<Metrics> {
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

/// The autoencoder's step: Adam minimises the batch-mean loss; `train_loss`,
/// `recon` and `penalty` are reported per example.
fn ae_step_loss(xs: &Tensor, loss: AeLoss) -> Result<StepLoss> {
    Ok(StepLoss {
        minimised: loss.total.clone(),
        reported: vec![
            ("train_loss", loss.total),
            ("recon", loss.recon),
            ("penalty", loss.penalty),
        ],
        batch: xs.dim(0)?,
    })
}

impl AeTrainer {
    /// One Adam step on the batch-mean loss of `xs`; returns `train_loss`,
    /// `recon` and `penalty` per example.
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    pub fn step(&mut self, xs: &Tensor) -> Result<Metrics> {
        let loss = ae_step_loss(xs, self.model.loss(xs)?)?;
        self.update(loss)
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
/// own configuration; returns the model and its variables.
///
/// # Errors
/// [`deepgen_core::Error::Io`] when the file cannot be read (wrapped in
/// [`Error::Core`]); [`deepgen_core::Error::Checkpoint`] when it is not a VAE
/// checkpoint or its tensors do not fit the stored configuration.
pub fn load_vae(path: &Path, device: &Device) -> Result<(Vae, VarMap)> {
    let checkpoint = Checkpoint::load(path, device)?;
    let text = stored_config(&checkpoint, path, Vae::FAMILY, Vae::CONFIG_KEY)?;
    let config = VaeConfig::parse(&text)?;
    let varmap = VarMap::new();
    let model = vae(&config, seeded_var_builder(&varmap, 0, DType::F32, device))?;
    checkpoint.load_varmap(MODEL_PREFIX, &varmap, path)?;
    Ok((model, varmap))
}
