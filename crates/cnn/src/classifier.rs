//! The MNIST classifier: training through core's loop, and the evaluator of
//! generated digits built from a trained run.
//!
//! [`Classifier`] implements [`TrainStep`] on batches `(images, labels)`:
//! cross-entropy of the spec's logits (`−log softmax(logits)[label]`, mean
//! over the batch), one Adam step, and at the end of each epoch `test_loss`
//! and `test_accuracy` on the test set. Its checkpoint holds the parameters
//! (`model.layers.<position>.…`), Adam's moments and, as metadata, the spec.
//!
//! A run directory holds `spec.txt` ([`SPEC_FILE`]), core's
//! `checkpoint.safetensors` and `metrics.csv`. [`Evaluator::load`] rebuilds the
//! network from the first two; [`Evaluator::evaluate`] turns a batch of images
//! (`[N, 1, 28, 28]` or `[N, 784]`, values in `[0, 1]` like the training data)
//! into the histogram of predicted classes and the mean max-softmax
//! confidence, which is how the GAN, VAE and diffusion crates judge their
//! samples.

use crate::model::{Cnn, cnn};
use crate::spec::{Dims, Spec};
use crate::{Error, Result};
use candle::{D, DType, Device, Module, Tensor};
use candle_nn::VarMap;
use deepgen_core::train::{CHECKPOINT_FILE, Metrics, StepCtx, TrainStep, batch_ranges};
use deepgen_core::{Adam, AdamConfig, Checkpoint, StdRng, seeded_var_builder};
use std::path::Path;

/// The default MNIST network, LeNet-class: two 5×5 convolutions (32 and 64
/// filters, padding 2) each followed by 2×2 max pooling, a 512-unit hidden
/// layer and 10 logits (the layout of TensorFlow's and PyTorch's MNIST
/// examples); 1,663,370 parameters.
pub const DEFAULT_MNIST_SPEC: &str = "INPUT-28x28x1 CONV-5-32-p2 POOL-2 CONV-5-64-p2 POOL-2 FLATTEN FC-512 FC-10";

/// The file in a run directory that holds the spec, one line.
pub const SPEC_FILE: &str = "spec.txt";

/// Checkpoint metadata key of the spec the parameters belong to.
const SPEC_KEY: &str = "deepgen.cnn.spec";
/// Checkpoint prefix of the parameters.
const MODEL_PREFIX: &str = "model.";
/// Checkpoint prefix of the optimizer state.
const OPTIM_PREFIX: &str = "optim.";

/// Training settings of [`Classifier`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierConfig {
    /// Adam's learning rate (PyTorch's default, 1e-3).
    pub lr: f64,
    /// Examples per forward pass when evaluating (memory only, not results;
    /// 1000).
    pub eval_batch_size: usize,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            lr: 1e-3,
            eval_batch_size: 1000,
        }
    }
}

impl ClassifierConfig {
    /// Checks every field's range.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::InvalidConfig {
                name: "lr",
                value: self.lr.to_string(),
                reason: "must be positive and finite".into(),
            });
        }
        if self.eval_batch_size == 0 {
            return Err(Error::InvalidConfig {
                name: "eval_batch_size",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// The number of classes of a classifier spec: its output must be a vector
/// of at least two logits.
fn n_classes(spec: &Spec) -> Result<usize> {
    match spec.table()?.output() {
        Dims::Flat(n) if n >= 2 => Ok(n),
        other => Err(Error::InvalidConfig {
            name: "spec",
            value: spec.to_string(),
            reason: format!("a classifier ends in a vector of at least 2 logits (e.g. `FC-10`), not {other}"),
        }),
    }
}

/// Mean cross-entropy `−(1/N) Σ_n log softmax(logits_n)[labels_n]` (nats)
/// and the number of correct arg-max predictions, for `logits` `[N, K]` and
/// `labels` `[N]` (`u32` in `0..K`).
///
/// # Errors
/// A Candle error if the shapes disagree.
pub fn cross_entropy_and_correct(logits: &Tensor, labels: &Tensor) -> candle::Result<(Tensor, usize)> {
    let loss = candle_nn::loss::cross_entropy(logits, labels)?;
    let correct = logits
        .argmax(D::Minus1)?
        .eq(labels)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok((loss, correct as usize))
}

/// Mean loss and accuracy of `model` on `images` / `labels`, in batches.
fn evaluate_on(model: &Cnn, images: &Tensor, labels: &Tensor, batch_size: usize) -> Result<(f64, f64)> {
    let n = images.dim(0)?;
    if n == 0 {
        return Ok((f64::NAN, f64::NAN));
    }
    let device = model.device().clone();
    let mut loss_sum = 0.0;
    let mut correct = 0;
    for (start, len) in batch_ranges(n, batch_size) {
        let xs = images.narrow(0, start, len)?.to_device(&device)?;
        let ys = labels.narrow(0, start, len)?.to_device(&device)?;
        let (loss, right) = cross_entropy_and_correct(&model.forward(&xs)?, &ys)?;
        loss_sum += loss.to_scalar::<f32>()? as f64 * len as f64;
        correct += right;
    }
    Ok((loss_sum / n as f64, correct as f64 / n as f64))
}

/// A classifier being trained: the network, its variables and Adam.
pub struct Classifier {
    varmap: VarMap,
    model: Cnn,
    opt: Adam,
    config: ClassifierConfig,
    test_set: Option<(Tensor, Tensor)>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("spec", &self.model.spec().to_string())
            .field("config", &self.config)
            .field("steps", &self.opt.step_count())
            .finish_non_exhaustive()
    }
}

impl Classifier {
    /// A freshly initialised classifier of `spec` on `device`, its weights
    /// drawn from `seed`.
    ///
    /// # Errors
    /// The spec's table errors; [`Error::InvalidConfig`] if it does not end
    /// in at least two logits or `config` is out of range.
    pub fn new(spec: &Spec, config: ClassifierConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        n_classes(spec)?;
        let varmap = VarMap::new();
        let model = cnn(spec, seeded_var_builder(&varmap, seed, DType::F32, device))?;
        let opt = Adam::new(
            &varmap,
            AdamConfig {
                lr: config.lr,
                ..Default::default()
            },
        )?;
        Ok(Classifier {
            varmap,
            model,
            opt,
            config,
            test_set: None,
        })
    }

    /// Evaluates on `images` (`[N, …]`, any layout [`Cnn::prepare_input`]
    /// takes) and `labels` (`[N]`, `u32`) at the end of every epoch.
    ///
    /// # Errors
    /// [`Error::BadShape`] when the counts differ.
    pub fn with_test_set(mut self, images: &Tensor, labels: &Tensor) -> Result<Self> {
        let n = images.dims().first().copied().unwrap_or(0);
        if labels.dims() != [n] {
            return Err(Error::BadShape {
                what: "test labels",
                got: labels.dims().to_vec(),
                expected: format!("[{n}], one per test image"),
            });
        }
        self.test_set = Some((images.clone(), labels.to_dtype(DType::U32)?));
        Ok(self)
    }

    /// The network.
    pub fn model(&self) -> &Cnn {
        &self.model
    }

    /// Its variables.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The configuration.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// Mean cross-entropy (nats) and accuracy on `images` / `labels`.
    ///
    /// # Errors
    /// A Candle error for shapes that do not fit the network.
    pub fn evaluate(&self, images: &Tensor, labels: &Tensor) -> Result<(f64, f64)> {
        evaluate_on(
            &self.model,
            images,
            &labels.to_dtype(DType::U32)?,
            self.config.eval_batch_size,
        )
    }
}

impl TrainStep for Classifier {
    type Batch = (Tensor, Tensor);

    fn train_step(
        &mut self,
        (images, labels): &(Tensor, Tensor),
        _ctx: &StepCtx,
        _rng: &mut StdRng,
    ) -> deepgen_core::Result<Metrics> {
        let logits = self.model.forward(images)?;
        let (loss, correct) = cross_entropy_and_correct(&logits, labels)?;
        self.opt.backward_step(&loss)?;
        let n = images.dim(0)?;
        Ok(Metrics::new()
            .with("train_loss", loss.to_scalar::<f32>()? as f64)
            .with("train_accuracy", correct as f64 / n as f64)
            .weighted(n as f64))
    }

    fn end_epoch(&mut self, _epoch: usize, _rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        let Some((images, labels)) = &self.test_set else {
            return Ok(Metrics::new());
        };
        let (loss, accuracy) = evaluate_on(&self.model, images, labels, self.config.eval_batch_size)?;
        Ok(Metrics::new().with("test_loss", loss).with("test_accuracy", accuracy))
    }

    fn save_state(&self, checkpoint: &mut Checkpoint) -> deepgen_core::Result<()> {
        checkpoint.add_varmap(MODEL_PREFIX, &self.varmap)?;
        self.opt.save_state(OPTIM_PREFIX, checkpoint);
        checkpoint
            .metadata
            .insert(SPEC_KEY.into(), self.model.spec().to_string());
        Ok(())
    }

    fn load_state(&mut self, checkpoint: &Checkpoint, path: &Path) -> deepgen_core::Result<()> {
        check_checkpoint_spec(checkpoint, self.model.spec(), path)?;
        checkpoint.load_varmap(MODEL_PREFIX, &self.varmap, path)?;
        self.opt.load_state(OPTIM_PREFIX, checkpoint, path)
    }
}

/// Fails unless the checkpoint records `spec` (or records no spec at all).
fn check_checkpoint_spec(checkpoint: &Checkpoint, spec: &Spec, path: &Path) -> deepgen_core::Result<()> {
    match checkpoint.metadata.get(SPEC_KEY) {
        Some(stored) if *stored != spec.to_string() => Err(deepgen_core::Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("it holds the network `{stored}`, not `{spec}`"),
        }),
        _ => Ok(()),
    }
}

/// Writes `spec` to `run_dir/spec.txt` (atomically) so that the run can be
/// loaded by [`Evaluator::load`].
///
/// # Errors
/// An I/O error naming the file.
pub fn save_spec(run_dir: &Path, spec: &Spec) -> Result<()> {
    let path = run_dir.join(SPEC_FILE);
    deepgen_core::checkpoint::write_atomic(&path, format!("{spec}\n").as_bytes())?;
    Ok(())
}

/// Reads the spec of a run directory (`spec.txt`).
///
/// # Errors
/// [`Error::Run`] when the file is missing or unreadable, and the parse
/// errors of [`Spec::parse`].
pub fn load_spec(run_dir: &Path) -> Result<Spec> {
    let path = run_dir.join(SPEC_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Run {
        dir: run_dir.to_path_buf(),
        reason: format!(
            "cannot read `{}`: {e} (is it a `deepgen train cnn` run?)",
            path.display()
        ),
    })?;
    Spec::parse(&text)
}

/// What a trained classifier says about a batch of images.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// How many images were assigned to each class (arg-max of the logits).
    pub histogram: Vec<usize>,
    /// Mean over images of the largest softmax probability, in `[1/K, 1]`
    /// (0 for no images).
    pub mean_confidence: f64,
    /// The predicted class of every image, in order.
    pub predictions: Vec<u32>,
}

impl Evaluation {
    /// Number of images evaluated.
    pub fn n_images(&self) -> usize {
        self.predictions.len()
    }

    /// The histogram as fractions summing to 1 (all 0 for no images).
    pub fn fractions(&self) -> Vec<f64> {
        let n = self.n_images().max(1) as f64;
        self.histogram.iter().map(|&c| c as f64 / n).collect()
    }

    /// Entropy of the predicted-class distribution in nats: `ln K` when the
    /// classes are used equally, 0 when every image gets the same class (a
    /// collapsed generator).
    pub fn class_entropy(&self) -> f64 {
        self.fractions()
            .iter()
            .filter(|&&p| p > 0.0)
            .map(|&p| -p * p.ln())
            .sum()
    }
}

/// A trained classifier used as a judge of images.
#[derive(Debug, Clone)]
pub struct Evaluator {
    model: Cnn,
    n_classes: usize,
    batch_size: usize,
}

impl Evaluator {
    /// An evaluator around a built network (e.g. `classifier.model().clone()`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the network does not end in at least two
    /// logits.
    pub fn new(model: Cnn) -> Result<Self> {
        let n_classes = n_classes(model.spec())?;
        Ok(Evaluator {
            model,
            n_classes,
            batch_size: ClassifierConfig::default().eval_batch_size,
        })
    }

    /// Loads the classifier trained in `run_dir` (`spec.txt` and
    /// `checkpoint.safetensors`) onto `device`.
    ///
    /// # Errors
    /// [`Error::Run`] for a missing file; [`Error::Core`] with a checkpoint
    /// error naming the tensor when the checkpoint belongs to another
    /// network (another spec, or another model altogether).
    pub fn load(run_dir: &Path, device: &Device) -> Result<Self> {
        let spec = load_spec(run_dir)?;
        let path = run_dir.join(CHECKPOINT_FILE);
        if !path.is_file() {
            return Err(Error::Run {
                dir: run_dir.to_path_buf(),
                reason: format!("no checkpoint `{}`; train it first", path.display()),
            });
        }
        let checkpoint = Checkpoint::load(&path, device)?;
        check_checkpoint_spec(&checkpoint, &spec, &path)?;
        let varmap = VarMap::new();
        let model = cnn(&spec, seeded_var_builder(&varmap, 0, DType::F32, device))?;
        checkpoint.load_varmap(MODEL_PREFIX, &varmap, &path)?;
        Evaluator::new(model)
    }

    /// The network.
    pub fn model(&self) -> &Cnn {
        &self.model
    }

    /// The number of classes.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Softmax probabilities `[N, K]` of a batch of images.
    ///
    /// # Errors
    /// A Candle error naming the shapes when the images do not fit the
    /// network's input.
    pub fn probabilities(&self, images: &Tensor) -> Result<Tensor> {
        let logits = self.in_batches(images, self.n_classes, |xs| self.model.forward(xs))?;
        Ok(candle_nn::ops::softmax_last_dim(&logits)?)
    }

    /// The features the last layer sees (see [`Cnn::features`]), `[N, D]`.
    ///
    /// # Errors
    /// As [`Evaluator::probabilities`].
    pub fn features(&self, images: &Tensor) -> Result<Tensor> {
        let rows = self.model.table().rows();
        let n_features = rows
            .len()
            .checked_sub(2)
            .and_then(|i| rows.get(i))
            .and_then(|row| row.output.elem_count())
            .unwrap_or(0);
        self.in_batches(images, n_features, |xs| self.model.features(xs)?.flatten_from(1))
    }

    /// The class histogram and mean confidence of a batch of images.
    ///
    /// # Errors
    /// As [`Evaluator::probabilities`].
    pub fn evaluate(&self, images: &Tensor) -> Result<Evaluation> {
        let probs = self.probabilities(images)?;
        if probs.dim(0)? == 0 {
            return Ok(Evaluation {
                histogram: vec![0; self.n_classes],
                mean_confidence: 0.0,
                predictions: Vec::new(),
            });
        }
        let predictions = probs.argmax(D::Minus1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let confidence = probs.max(D::Minus1)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let mut histogram = vec![0; self.n_classes];
        for &p in &predictions {
            if let Some(slot) = histogram.get_mut(p as usize) {
                *slot += 1;
            }
        }
        let mean_confidence = confidence.iter().sum::<f64>() / confidence.len().max(1) as f64;
        Ok(Evaluation {
            histogram,
            mean_confidence,
            predictions,
        })
    }

    /// Mean cross-entropy and accuracy on labelled images.
    ///
    /// # Errors
    /// As [`Evaluator::probabilities`].
    pub fn accuracy(&self, images: &Tensor, labels: &Tensor) -> Result<(f64, f64)> {
        evaluate_on(&self.model, images, &labels.to_dtype(DType::U32)?, self.batch_size)
    }

    /// `f` on batches of at most `batch_size` images, concatenated; `[0,
    /// width]` for no images (after checking their shape).
    fn in_batches(
        &self,
        images: &Tensor,
        width: usize,
        f: impl Fn(&Tensor) -> candle::Result<Tensor>,
    ) -> Result<Tensor> {
        let prepared = self.model.prepare_input(images)?;
        let n = prepared.dim(0)?;
        let device = self.model.device().clone();
        if n == 0 {
            return Ok(Tensor::zeros((0, width), DType::F32, &device)?);
        }
        let mut parts = Vec::new();
        for (start, len) in batch_ranges(n, self.batch_size) {
            parts.push(f(&prepared.narrow(0, start, len)?.to_device(&device)?)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_core::rng::{rand_uniform, rng_from_seed};
    use deepgen_core::train::{BatchSource, TrainConfig, fit};

    /// A 4-class problem on 6×6 single-channel images: class `c` lights up
    /// quadrant `c` (value 1 plus noise in [0, 0.3]) on a background of noise
    /// in [0, 0.3]. Linearly separable, so a small CNN gets every test image
    /// right.
    fn quadrants(n: usize, seed: u64) -> Result<(Tensor, Tensor)> {
        let mut rng = rng_from_seed(seed);
        let noise = rand_uniform(&mut rng, (n, 1, 6, 6), 0.0, 0.3, &Device::Cpu)?;
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 4).collect();
        let mut mask = vec![0f32; n * 36];
        for (i, &c) in labels.iter().enumerate() {
            let (r0, c0) = ((c as usize / 2) * 3, (c as usize % 2) * 3);
            for r in r0..r0 + 3 {
                for col in c0..c0 + 3 {
                    mask[i * 36 + r * 6 + col] = 1.0;
                }
            }
        }
        let images = (noise + Tensor::from_vec(mask, (n, 1, 6, 6), &Device::Cpu)?)?;
        Ok((images, Tensor::from_vec(labels, n, &Device::Cpu)?))
    }

    const TINY_SPEC: &str = "INPUT-6x6x1 CONV-3-4-p1 POOL-2 FLATTEN FC-4";

    struct InOrder {
        images: Tensor,
        labels: Tensor,
        batch_size: usize,
    }

    impl BatchSource for InOrder {
        type Batch = (Tensor, Tensor);
        fn n_batches(&self) -> usize {
            self.images.dims()[0].div_ceil(self.batch_size)
        }
        fn start_epoch(&mut self, _rng: &mut StdRng) -> deepgen_core::Result<()> {
            Ok(())
        }
        fn batch(&self, batch_idx: usize) -> deepgen_core::Result<Self::Batch> {
            let start = batch_idx * self.batch_size;
            let len = self.batch_size.min(self.images.dims()[0] - start);
            Ok((self.images.narrow(0, start, len)?, self.labels.narrow(0, start, len)?))
        }
    }

    fn train(
        run_dir: Option<&Path>,
        epochs: usize,
        resume: bool,
    ) -> Result<(Classifier, Vec<deepgen_core::EpochRecord>)> {
        let (train_x, train_y) = quadrants(256, 1)?;
        let (test_x, test_y) = quadrants(64, 2)?;
        let spec = Spec::parse(TINY_SPEC)?;
        let config = ClassifierConfig {
            lr: 1e-2,
            ..Default::default()
        };
        let mut classifier = Classifier::new(&spec, config, 3, &Device::Cpu)?.with_test_set(&test_x, &test_y)?;
        let mut data = InOrder {
            images: train_x,
            labels: train_y,
            batch_size: 32,
        };
        let config = TrainConfig {
            epochs,
            seed: 5,
            run_dir: run_dir.map(Path::to_path_buf),
            resume,
            progress: false,
        };
        if let Some(dir) = run_dir {
            std::fs::create_dir_all(dir).map_err(|e| deepgen_core::Error::io("mkdir", dir, e))?;
            save_spec(dir, &spec)?;
        }
        let records = fit(&config, &mut classifier, &mut data, |_, _| Ok(()))?;
        Ok((classifier, records))
    }

    #[test]
    fn learns_a_separable_problem_and_reports_test_metrics() -> Result<()> {
        let (classifier, records) = train(None, 6, false)?;
        let first = &records[0];
        let last = &records[5];
        let get = |m: &Metrics, name| m.get(name).unwrap_or(f64::NAN);
        assert!(get(&last.train, "train_loss") < 0.5 * get(&first.train, "train_loss"));
        assert_eq!(get(&last.eval, "test_accuracy"), 1.0, "{last:?}");
        let names: Vec<&str> = last.eval.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["test_loss", "test_accuracy"]);
        let (test_x, test_y) = quadrants(64, 2)?;
        let (loss, accuracy) = classifier.evaluate(&test_x, &test_y)?;
        assert_eq!(accuracy, 1.0);
        assert!((loss - get(&last.eval, "test_loss")).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn a_trained_run_loads_as_an_evaluator() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| deepgen_core::Error::io("tempdir", "/tmp", e))?;
        let (classifier, _) = train(Some(dir.path()), 6, false)?;
        let evaluator = Evaluator::load(dir.path(), &Device::Cpu)?;
        assert_eq!(evaluator.n_classes(), 4);
        // 40 images: 10 of each class, given flat as [N, 36].
        let (images, labels) = quadrants(40, 9)?;
        let evaluation = evaluator.evaluate(&images.reshape((40, 36))?)?;
        assert_eq!(evaluation.histogram, [10, 10, 10, 10]);
        assert_eq!(evaluation.predictions, labels.to_vec1::<u32>()?);
        assert!(evaluation.mean_confidence > 0.5 && evaluation.mean_confidence <= 1.0);
        assert!((evaluation.class_entropy() - 4f64.ln()).abs() < 1e-12);
        // The loaded network is the trained one.
        let a = classifier.model().forward(&images)?.to_vec2::<f32>()?;
        let b = evaluator.model().forward(&images)?.to_vec2::<f32>()?;
        assert_eq!(a, b);
        // One class only: a collapsed generator has entropy 0.
        let ones = images.narrow(0, 1, 1)?.repeat((5, 1, 1, 1))?;
        let collapsed = evaluator.evaluate(&ones)?;
        assert_eq!(collapsed.histogram, [0, 5, 0, 0]);
        assert_eq!(collapsed.class_entropy(), 0.0);
        assert_eq!(evaluator.features(&images)?.dims(), &[40, 36]);
        // No images: an empty histogram, not an error; a wrong shape: an error.
        let none = evaluator.evaluate(&images.narrow(0, 0, 0)?)?;
        assert_eq!((none.n_images(), none.histogram), (0, vec![0; 4]));
        assert_eq!(evaluator.features(&images.narrow(0, 0, 0)?)?.dims(), &[0, 36]);
        assert!(
            evaluator
                .evaluate(&images.reshape((40, 6, 6))?.narrow(2, 0, 5)?)
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn resume_continues_and_rejects_another_network() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| deepgen_core::Error::io("tempdir", "/tmp", e))?;
        train(Some(dir.path()), 2, false)?;
        let (_, records) = train(Some(dir.path()), 3, true)?;
        assert_eq!(records.iter().map(|r| r.epoch).collect::<Vec<_>>(), [3]);
        // Another spec over the same run directory: a clear error.
        let other = Spec::parse("INPUT-6x6x1 CONV-3-8-p1 POOL-2 FLATTEN FC-4")?;
        save_spec(dir.path(), &other)?;
        let err = Evaluator::load(dir.path(), &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("holds the network `INPUT-6x6x1 CONV-3-4-p1"), "{err}");
        Ok(())
    }

    #[test]
    fn checkpoints_of_other_models_and_missing_files_are_clear_errors() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| deepgen_core::Error::io("tempdir", "/tmp", e))?;
        let err = Evaluator::load(dir.path(), &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("spec.txt") && err.contains("deepgen train cnn"), "{err}");
        save_spec(dir.path(), &Spec::parse(TINY_SPEC)?)?;
        let err = Evaluator::load(dir.path(), &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("no checkpoint"), "{err}");
        // A checkpoint of some other model (a VAE's encoder, say).
        let mut checkpoint = Checkpoint::default();
        checkpoint.tensors.insert(
            "model.encoder.hidden.weight".into(),
            Tensor::zeros((4, 4), DType::F32, &Device::Cpu)?,
        );
        checkpoint.save(&dir.path().join(CHECKPOINT_FILE))?;
        let err = Evaluator::load(dir.path(), &Device::Cpu).unwrap_err().to_string();
        assert!(
            err.contains("no tensor `model.layers.") && err.contains("another model"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn classifier_specs_must_end_in_logits() -> Result<()> {
        let spec = Spec::parse("INPUT-6x6x1 CONV-3-4")?;
        let err = Classifier::new(&spec, ClassifierConfig::default(), 0, &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("at least 2 logits"), "{err}");
        let spec = Spec::parse(TINY_SPEC)?;
        let bad = ClassifierConfig {
            lr: -1.0,
            ..Default::default()
        };
        assert!(Classifier::new(&spec, bad, 0, &Device::Cpu).is_err());
        Ok(())
    }

    #[test]
    fn default_spec_parses_and_counts() -> Result<()> {
        let table = Spec::parse(DEFAULT_MNIST_SPEC)?.table()?;
        // 1·25·32 + 32 + 32·25·64 + 64 + 3136·512 + 512 + 512·10 + 10.
        assert_eq!(table.total_parameters(), 832 + 51_264 + 1_606_144 + 5_130);
        assert_eq!(table.total_parameters(), 1_663_370);
        assert_eq!(table.output(), Dims::Flat(10));
        Ok(())
    }
}
