//! The one model trainer: a model, its variables, its optimizers and what a
//! checkpoint holds of them, for every deepgen family.
//!
//! A family implements [`TrainableModel`] (how it is built from its serde
//! configuration, and one training step given its optimizers); [`Trainer`]
//! owns the model's `VarMap` and one [`Adam`] per optimizer group (a GAN has
//! two: `generator.` and `discriminator.`), implements core's
//! [`TrainStep`] and writes checkpoints that describe themselves:
//!
//! - tensors `model.<var>` (parameters) and `optim.<group>.<var>.m|v`
//!   (Adam's moments, `optim.` alone for a single group);
//! - metadata `deepgen.model` (the family) and `deepgen.config` (the model's
//!   configuration as JSON), so that [`load_model`] rebuilds a trained model
//!   from a run directory alone.

use crate::checkpoint::Checkpoint;
use crate::optim::{Adam, AdamConfig, named_vars};
use crate::train::{CHECKPOINT_FILE, Metrics, StepCtx, TrainStep};
use crate::weight_average::WeightAverage;
use crate::{Error, Result, StdRng, seeded_var_builder};
use candle::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Checkpoint metadata naming the model family.
pub const MODEL_KEY: &str = "deepgen.model";
/// Checkpoint metadata holding the model's configuration as JSON.
pub const CONFIG_KEY: &str = "deepgen.config";
/// Prefix of the parameters in a checkpoint.
pub const MODEL_PREFIX: &str = "model.";
/// Prefix of the optimizer state in a checkpoint.
pub const OPTIM_PREFIX: &str = "optim.";

/// A model family's side of training.
pub trait TrainableModel: Sized {
    /// What the model is built from; stored as JSON in checkpoints and as a
    /// TOML table in a run's `config.toml`.
    type Config: Serialize + DeserializeOwned + Clone + PartialEq + std::fmt::Debug;
    /// What one training batch is.
    type Batch;
    /// The family's name (`vae`, `hvae`, `gan`, …): checkpoint metadata and
    /// the `<model>` of `deepgen train <model>`.
    const FAMILY: &'static str;
    /// One optimizer per group, each over the variables whose names start
    /// with the group's prefix (`""`: all of them, the default).
    const OPTIMIZER_GROUPS: &'static [&'static str] = &[""];

    /// The model of `config` with its variables under `vb`.
    ///
    /// # Errors
    /// An invalid configuration; Candle errors.
    fn build(config: &Self::Config, vb: VarBuilder) -> Result<Self>;

    /// The configuration the model was built from.
    fn config(&self) -> &Self::Config;

    /// One optimisation step on `batch` at position `ctx` (schedules such as
    /// a KL warm-up are functions of it), updating through `optimizers`;
    /// returns named scalars for the metrics log. All noise comes from `rng`.
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    fn train_step(
        &self,
        batch: &Self::Batch,
        ctx: &StepCtx,
        optimizers: &mut Optimizers,
        rng: &mut StdRng,
    ) -> Result<Metrics>;

    /// A moving average of the weights that the trainer keeps after every
    /// step (diffusion models sample with it); `None`, the default, keeps
    /// none. Its variables must be excluded from every optimizer group.
    fn weight_average(&self) -> Option<WeightAverage> {
        None
    }
}

/// The optimizers of a [`Trainer`], one per [`TrainableModel::OPTIMIZER_GROUPS`]
/// entry, in that order.
#[derive(Debug)]
pub struct Optimizers {
    groups: Vec<(&'static str, Adam)>,
}

impl Optimizers {
    /// One Adam per group prefix over `varmap`'s variables.
    ///
    /// # Errors
    /// A group that holds no variable; an invalid Adam configuration.
    fn new(varmap: &VarMap, groups: &[&'static str], config: &AdamConfig) -> Result<Self> {
        let vars = named_vars(varmap)?;
        let groups = groups
            .iter()
            .map(|&prefix| {
                let members: Vec<_> = vars.iter().filter(|(n, _)| n.starts_with(prefix)).cloned().collect();
                if members.is_empty() && !vars.is_empty() {
                    return Err(Error::InvalidConfig {
                        name: "optimizer group",
                        value: prefix.to_string(),
                        reason: "no variable of the model has this prefix".into(),
                    });
                }
                Ok((prefix, Adam::from_named_vars(members, config.clone())?))
            })
            .collect::<Result<_>>()?;
        Ok(Self { groups })
    }

    /// `loss.backward()` and one update of the first (for most models the
    /// only) group.
    ///
    /// # Errors
    /// Candle errors.
    pub fn minimise(&mut self, loss: &Tensor) -> Result<()> {
        self.minimise_group(0, loss)
    }

    /// `loss.backward()` and one update of group `index` only.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an index past the groups; Candle errors.
    pub fn minimise_group(&mut self, index: usize, loss: &Tensor) -> Result<()> {
        self.get_mut(index)?.backward_step(loss)
    }

    /// The optimizer of group `index`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an index past the groups.
    pub fn get_mut(&mut self, index: usize) -> Result<&mut Adam> {
        let n = self.groups.len();
        self.groups
            .get_mut(index)
            .map(|(_, adam)| adam)
            .ok_or_else(|| Error::InvalidConfig {
                name: "optimizer group",
                value: index.to_string(),
                reason: format!("the model has {n} groups"),
            })
    }

    /// `(prefix, optimizer)` of every group.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Adam)> {
        self.groups.iter().map(|(p, a)| (*p, a))
    }

    /// The checkpoint prefix of group `index`'s state.
    fn state_prefix(&self, index: usize) -> String {
        if self.groups.len() == 1 {
            OPTIM_PREFIX.to_string()
        } else {
            format!("{OPTIM_PREFIX}{index}.")
        }
    }
}

/// An end-of-epoch evaluation of the model (test metrics); noise from the
/// generator given.
pub type Evaluation<M> = Box<dyn FnMut(&M, &mut StdRng) -> Result<Metrics>>;

/// A model with its variables and optimizers: the [`TrainStep`] of every
/// deepgen model.
pub struct Trainer<M: TrainableModel> {
    varmap: VarMap,
    model: M,
    optimizers: Optimizers,
    evaluation: Option<Evaluation<M>>,
    /// The model's weight average and its `(average, trained)` variables.
    average: Option<(WeightAverage, Vec<(candle::Var, candle::Var)>)>,
}

impl<M: TrainableModel + std::fmt::Debug> std::fmt::Debug for Trainer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("model", &self.model)
            .field("optimizers", &self.optimizers)
            .field("evaluates", &self.evaluation.is_some())
            .finish_non_exhaustive()
    }
}

impl<M: TrainableModel> Trainer<M> {
    /// A freshly initialised model (weights seeded by `seed`) in `f32` on
    /// `device`, each optimizer group trained by Adam with `adam`.
    ///
    /// # Errors
    /// Invalid configurations; Candle errors.
    pub fn new(config: &M::Config, adam: AdamConfig, seed: u64, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let model = M::build(config, seeded_var_builder(&varmap, seed, DType::F32, device))?;
        let optimizers = Optimizers::new(&varmap, M::OPTIMIZER_GROUPS, &adam)?;
        let average = match model.weight_average() {
            Some(average) => {
                let pairs = average.pairs(&varmap)?;
                WeightAverage::reset(&pairs)?;
                Some((average, pairs))
            }
            None => None,
        };
        Ok(Self {
            varmap,
            model,
            optimizers,
            evaluation: None,
            average,
        })
    }

    /// Runs `evaluation` after every epoch; its metrics join the epoch's row.
    pub fn with_evaluation(mut self, evaluation: impl FnMut(&M, &mut StdRng) -> Result<Metrics> + 'static) -> Self {
        self.evaluation = Some(Box::new(evaluation));
        self
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The variables.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The optimizers.
    pub fn optimizers(&self) -> &Optimizers {
        &self.optimizers
    }

    /// The optimizers, to step them by hand (tests that give the noise).
    pub fn optimizers_mut(&mut self) -> &mut Optimizers {
        &mut self.optimizers
    }

    /// The model and its optimizers together, for a step taken by hand (tests
    /// that give the noise).
    pub fn model_and_optimizers(&mut self) -> (&M, &mut Optimizers) {
        (&self.model, &mut self.optimizers)
    }

    /// The model's evaluation, if one was given.
    ///
    /// # Errors
    /// The evaluation's errors.
    pub fn evaluate(&mut self, rng: &mut StdRng) -> Result<Option<Metrics>> {
        match self.evaluation.as_mut() {
            Some(evaluate) => evaluate(&self.model, rng).map(Some),
            None => Ok(None),
        }
    }

    /// The number of parameters: the variables some optimizer group trains
    /// (a weight average's copies and other state, such as a memory bank,
    /// not counted).
    pub fn parameter_count(&self) -> usize {
        self.varmap
            .data()
            .lock()
            .map(|vars| {
                vars.iter()
                    .filter(|(name, _)| M::OPTIMIZER_GROUPS.iter().any(|prefix| name.starts_with(prefix)))
                    .map(|(_, var)| var.elem_count())
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl<M: TrainableModel> TrainStep for Trainer<M> {
    type Batch = M::Batch;

    /// The model's step, then the weight average's update (its warm-up
    /// counts the first group's optimizer steps, which a checkpoint keeps).
    fn train_step(&mut self, batch: &M::Batch, ctx: &StepCtx, rng: &mut StdRng) -> Result<Metrics> {
        let metrics = self.model.train_step(batch, ctx, &mut self.optimizers, rng)?;
        if let Some((average, pairs)) = &self.average {
            let updates = self.optimizers.get_mut(0)?.step_count();
            WeightAverage::update(pairs, average.decay_at(updates.saturating_sub(1)))?;
        }
        Ok(metrics)
    }

    fn end_epoch(&mut self, _epoch: usize, rng: &mut StdRng) -> Result<Metrics> {
        Ok(self.evaluate(rng)?.unwrap_or_default())
    }

    fn save_state(&self, checkpoint: &mut Checkpoint) -> Result<()> {
        checkpoint.add_varmap(MODEL_PREFIX, &self.varmap)?;
        for (i, (_, adam)) in self.optimizers.groups.iter().enumerate() {
            adam.save_state(&self.optimizers.state_prefix(i), checkpoint);
        }
        checkpoint.metadata.insert(MODEL_KEY.into(), M::FAMILY.into());
        checkpoint
            .metadata
            .insert(CONFIG_KEY.into(), config_json(self.model.config())?);
        Ok(())
    }

    fn load_state(&mut self, checkpoint: &Checkpoint, path: &Path) -> Result<()> {
        let stored: M::Config = stored_config::<M>(checkpoint, path)?;
        if stored != *self.model.config() {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!(
                    "it was trained as {}, but this run is {}; use the same options to resume",
                    config_json(&stored)?,
                    config_json(self.model.config())?
                ),
            });
        }
        checkpoint.load_varmap(MODEL_PREFIX, &self.varmap, path)?;
        for i in 0..self.optimizers.groups.len() {
            let prefix = self.optimizers.state_prefix(i);
            self.optimizers.groups[i].1.load_state(&prefix, checkpoint, path)?;
        }
        Ok(())
    }
}

/// A configuration as one line of JSON (checkpoint metadata, messages).
///
/// # Errors
/// [`Error::InvalidConfig`] if serde cannot represent it (a non-finite
/// float).
pub fn config_json<C: Serialize>(config: &C) -> Result<String> {
    serde_json::to_string(config).map_err(|e| Error::InvalidConfig {
        name: "config",
        value: String::new(),
        reason: format!("cannot be written as JSON: {e}"),
    })
}

/// The configuration stored in a checkpoint of family `M`, or an error
/// saying what the checkpoint holds instead.
///
/// # Errors
/// [`Error::Checkpoint`] for another family's checkpoint, one without deepgen
/// metadata, or a configuration that does not parse.
pub fn stored_config<M: TrainableModel>(checkpoint: &Checkpoint, path: &Path) -> Result<M::Config> {
    let invalid = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let family = M::FAMILY;
    match checkpoint.metadata.get(MODEL_KEY).map(String::as_str) {
        Some(model) if model == family => {}
        Some(other) => return Err(invalid(format!("it holds a `{other}` model, not a `{family}`"))),
        None => {
            return Err(invalid(format!(
                "it has no `{MODEL_KEY}` entry, so it is not a deepgen `{family}` checkpoint"
            )));
        }
    }
    let json = checkpoint.metadata.get(CONFIG_KEY).ok_or_else(|| {
        invalid(format!(
            "the `{family}` checkpoint lacks its configuration `{CONFIG_KEY}`"
        ))
    })?;
    serde_json::from_str(json).map_err(|e| invalid(format!("its `{family}` configuration does not parse: {e}")))
}

/// The checkpoint file of a run: `path` itself if it is a file, else
/// `path/checkpoint.safetensors`.
///
/// # Errors
/// [`Error::NothingToResume`]-style [`Error::Checkpoint`] when neither exists.
pub fn checkpoint_path(path: &Path) -> Result<PathBuf> {
    let file = if path.is_dir() {
        path.join(CHECKPOINT_FILE)
    } else {
        path.to_path_buf()
    };
    if file.is_file() {
        Ok(file)
    } else {
        Err(Error::Checkpoint {
            path: file,
            reason: "it does not exist (train a model first, or point to its run directory)".into(),
        })
    }
}

/// Rebuilds the model of family `M` stored in a run directory (or checkpoint
/// file) on `device`, from the configuration the checkpoint holds; returns
/// the model and its variables.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Checkpoint`] when it
/// is not a checkpoint of `M` or its tensors do not fit its configuration.
pub fn load_model<M: TrainableModel>(path: &Path, device: &Device) -> Result<(M, VarMap)> {
    let path = checkpoint_path(path)?;
    let checkpoint = Checkpoint::load(&path, device)?;
    let config = stored_config::<M>(&checkpoint, &path)?;
    let varmap = VarMap::new();
    let model = M::build(&config, seeded_var_builder(&varmap, 0, DType::F32, device))?;
    checkpoint.load_varmap(MODEL_PREFIX, &varmap, &path)?;
    Ok((model, varmap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{TrainConfig, fit};
    use candle::Module;
    use serde::Deserialize;

    /// Two linear maps in two optimizer groups, `a.` trained towards 1 and
    /// `b.` towards −1: the smallest model with two optimizers.
    #[derive(Debug)]
    struct TwoGroups {
        config: Width,
        a: candle_nn::Linear,
        b: candle_nn::Linear,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Width {
        width: usize,
    }

    impl TrainableModel for TwoGroups {
        type Config = Width;
        type Batch = Tensor;
        const FAMILY: &'static str = "two-groups";
        const OPTIMIZER_GROUPS: &'static [&'static str] = &["a.", "b."];

        fn build(config: &Width, vb: VarBuilder) -> Result<Self> {
            Ok(Self {
                config: config.clone(),
                a: candle_nn::linear(config.width, 1, vb.pp("a"))?,
                b: candle_nn::linear(config.width, 1, vb.pp("b"))?,
            })
        }

        fn config(&self) -> &Width {
            &self.config
        }

        fn train_step(&self, xs: &Tensor, _: &StepCtx, optimizers: &mut Optimizers, _: &mut StdRng) -> Result<Metrics> {
            let la = (self.a.forward(xs)? - 1.0)?.sqr()?.mean_all()?;
            optimizers.minimise_group(0, &la)?;
            let lb = (self.b.forward(xs)? + 1.0)?.sqr()?.mean_all()?;
            optimizers.minimise_group(1, &lb)?;
            Ok(Metrics::new()
                .with("loss_a", la.to_scalar::<f32>()? as f64)
                .with("loss_b", lb.to_scalar::<f32>()? as f64))
        }
    }

    struct Fixed(Tensor);

    impl crate::train::BatchSource for Fixed {
        type Batch = Tensor;
        fn n_batches(&self) -> usize {
            4
        }
        fn start_epoch(&mut self, _: &mut StdRng) -> Result<()> {
            Ok(())
        }
        fn batch(&self, _: usize) -> Result<Tensor> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn two_optimizer_groups_train_and_reload() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
        let xs = Tensor::new(&[[1f32, 2.0], [0.5, -1.0]], &Device::Cpu)?;
        let config = Width { width: 2 };
        let adam = AdamConfig {
            lr: 0.05,
            ..Default::default()
        };
        let mut trainer = Trainer::<TwoGroups>::new(&config, adam.clone(), 3, &Device::Cpu)?;
        assert_eq!(trainer.optimizers().iter().count(), 2);
        let train = TrainConfig {
            epochs: 10,
            seed: 3,
            run_dir: Some(dir.path().to_path_buf()),
            progress: false,
            ..Default::default()
        };
        let records = fit(&train, &mut trainer, &mut Fixed(xs.clone()), |_, _| Ok(()))?;
        let (first, last) = (&records[0].train, &records[9].train);
        for name in ["loss_a", "loss_b"] {
            let (f, l) = (first.get(name).unwrap_or(f64::NAN), last.get(name).unwrap_or(f64::NAN));
            assert!(l < 0.1 * f, "{name}: {f} → {l}");
        }

        let (loaded, _) = load_model::<TwoGroups>(dir.path(), &Device::Cpu)?;
        assert_eq!(loaded.config, config);
        let diff = (loaded.a.forward(&xs)? - trainer.model().a.forward(&xs)?)?
            .abs()?
            .sum_all()?
            .to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);

        // Another width is refused with both configurations in the message.
        let mut other = Trainer::<TwoGroups>::new(&Width { width: 3 }, adam, 3, &Device::Cpu)?;
        let checkpoint = Checkpoint::load(&dir.path().join(CHECKPOINT_FILE), &Device::Cpu)?;
        let err = other.load_state(&checkpoint, dir.path()).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains(r#"{"width":2}"#) && e.contains(r#"{"width":3}"#)),
            "{err:?}"
        );
        Ok(())
    }

    /// A linear map trained towards 1 under `net.`, averaged under `ema.`.
    #[derive(Debug)]
    struct Averaged {
        config: Width,
        net: candle_nn::Linear,
        ema: candle_nn::Linear,
    }

    impl TrainableModel for Averaged {
        type Config = Width;
        type Batch = Tensor;
        const FAMILY: &'static str = "averaged";
        const OPTIMIZER_GROUPS: &'static [&'static str] = &["net."];

        fn build(config: &Width, vb: VarBuilder) -> Result<Self> {
            Ok(Self {
                config: config.clone(),
                net: candle_nn::linear(config.width, 1, vb.pp("net"))?,
                ema: candle_nn::linear(config.width, 1, vb.pp("ema"))?,
            })
        }

        fn config(&self) -> &Width {
            &self.config
        }

        fn train_step(&self, xs: &Tensor, _: &StepCtx, optimizers: &mut Optimizers, _: &mut StdRng) -> Result<Metrics> {
            let loss = (self.net.forward(xs)? - 1.0)?.sqr()?.mean_all()?;
            optimizers.minimise(&loss)?;
            Ok(Metrics::new())
        }

        fn weight_average(&self) -> Option<WeightAverage> {
            Some(WeightAverage {
                source: "net.",
                target: "ema.",
                decay: 0.5,
            })
        }
    }

    /// The trainer's average starts at the initial weights and follows
    /// `w̄ ← d_k w̄ + (1 − d_k) w_k` (recomputed here in f64 from the
    /// trained weights after every step); the optimizer never touches it.
    #[test]
    fn the_weight_average_follows_its_recursion() -> Result<()> {
        let xs = Tensor::new(&[[1f32, 2.0], [0.5, -1.0]], &Device::Cpu)?;
        let adam = AdamConfig {
            lr: 0.1,
            ..Default::default()
        };
        let mut trainer = Trainer::<Averaged>::new(&Width { width: 2 }, adam, 5, &Device::Cpu)?;
        let weights = |l: &candle_nn::Linear| -> Result<Vec<f64>> {
            let w = l.weight().flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            let b = l.bias().map(|b| b.to_dtype(DType::F64)?.to_vec1::<f64>()).transpose()?;
            Ok([w, b.unwrap_or_default()].concat())
        };
        let mut expected = weights(&trainer.model().net)?;
        assert_eq!(
            weights(&trainer.model().ema)?,
            expected,
            "the average starts at the weights"
        );
        let average = trainer.model().weight_average().expect("Averaged keeps an average");
        let mut rng = crate::rng_from_seed(0);
        for k in 0..12 {
            TrainStep::train_step(&mut trainer, &xs, &StepCtx::new(1, k, 12), &mut rng)?;
            let d = average.decay_at(k);
            let w = weights(&trainer.model().net)?;
            expected = expected.iter().zip(&w).map(|(a, w)| d * a + (1.0 - d) * w).collect();
        }
        assert_eq!(trainer.parameter_count(), 3, "the average's copies are not parameters");
        let got = weights(&trainer.model().ema)?;
        let w = weights(&trainer.model().net)?;
        for ((g, e), w) in got.iter().zip(&expected).zip(&w) {
            assert!((g - e).abs() < 1e-5, "average {g} ≠ {e}");
            assert!((g - w).abs() > 1e-3, "the average lags the weights");
        }
        Ok(())
    }

    #[test]
    fn other_families_and_missing_runs_are_explained() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
        let mut checkpoint = Checkpoint::default();
        checkpoint.metadata.insert(MODEL_KEY.into(), "vae".into());
        let path = dir.path().join(CHECKPOINT_FILE);
        checkpoint.save(&path)?;
        let err = load_model::<TwoGroups>(dir.path(), &Device::Cpu)
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("holds a `vae` model, not a `two-groups`")),
            "{err:?}"
        );
        let err = load_model::<TwoGroups>(&dir.path().join("nope"), &Device::Cpu)
            .err()
            .map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.contains("does not exist")), "{err:?}");
        Ok(())
    }
}
