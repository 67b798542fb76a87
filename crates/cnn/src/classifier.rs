//! The MNIST classifier: a [`Cnn`] trained by deepgen-core's [`Trainer`],
//! and the evaluator of generated digits built from a trained run.
//!
//! [`Cnn`] is a [`TrainableModel`] on batches `(images, labels)`:
//! cross-entropy of the spec's logits (`−log softmax(logits)[label]`, mean
//! over the batch) and one Adam step; [`Cnn::test_metrics`] gives
//! `test_loss` and `test_accuracy`. Its configuration is the spec itself, so
//! the checkpoint (`model.layers.<position>.…`, Adam's moments, metadata
//! `deepgen.model = cnn` and the spec) describes its run.
//!
//! [`Evaluator::load`] rebuilds the network from a run directory's
//! `checkpoint.safetensors`; [`Evaluator::evaluate`] turns a batch of images
//! (`[N, 1, 28, 28]` or `[N, 784]`, values in `[0, 1]` like the training data)
//! into the histogram of predicted classes and the mean max-softmax
//! confidence, which is how the GAN, VAE and diffusion crates judge their
//! samples.

use crate::model::{Cnn, cnn};
use crate::spec::{Dims, Spec};
use crate::{Error, Result};
use candle::{D, DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use deepgen_core::train::{Metrics, StepCtx, batch_ranges};
use deepgen_core::{Optimizers, StdRng, TrainableModel, Trainer, load_model};
use std::path::Path;

/// The default MNIST network, LeNet-class: two 5×5 convolutions (32 and 64
/// filters, padding 2) each followed by 2×2 max pooling, a 512-unit hidden
/// layer and 10 logits (the layout of TensorFlow's and PyTorch's MNIST
/// examples); 1,663,370 parameters.
pub const DEFAULT_MNIST_SPEC: &str = "INPUT-28x28x1 CONV-5-32-p2 POOL-2 CONV-5-64-p2 POOL-2 FLATTEN FC-512 FC-10";

/// Examples per forward pass when evaluating (memory only, not results).
pub const EVAL_BATCH: usize = 1000;

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
pub type Classifier = Trainer<Cnn>;

impl TrainableModel for Cnn {
    type Config = Spec;
    type Batch = (Tensor, Tensor);
    const FAMILY: &'static str = "cnn";

    /// The network of `spec`, which must end in at least two logits.
    fn build(spec: &Spec, vb: VarBuilder) -> deepgen_core::Result<Self> {
        n_classes(spec)?;
        Ok(cnn(spec, vb)?)
    }

    fn config(&self) -> &Spec {
        self.spec()
    }

    /// One Adam step on the mean cross-entropy; `train_loss` and
    /// `train_accuracy`, weighted by the batch size.
    fn train_step(
        &self,
        (images, labels): &(Tensor, Tensor),
        _ctx: &StepCtx,
        optimizers: &mut Optimizers,
        _rng: &mut StdRng,
    ) -> deepgen_core::Result<Metrics> {
        let (loss, correct) = cross_entropy_and_correct(&self.forward(images)?, labels)?;
        optimizers.minimise(&loss)?;
        let n = images.dim(0)?;
        Ok(Metrics::new()
            .with("train_loss", loss.to_scalar::<f32>()? as f64)
            .with("train_accuracy", correct as f64 / n as f64)
            .weighted(n as f64))
    }
}

impl Cnn {
    /// `test_loss` (mean cross-entropy, nats) and `test_accuracy` on
    /// `images` (`[N, …]`, any layout [`Cnn::prepare_input`] takes) and
    /// `labels` (`[N]`).
    ///
    /// # Errors
    /// [`Error::BadShape`] when the counts differ; Candle errors for shapes
    /// that do not fit the network.
    pub fn test_metrics(&self, images: &Tensor, labels: &Tensor) -> Result<Metrics> {
        let n = images.dims().first().copied().unwrap_or(0);
        if labels.dims() != [n] {
            return Err(Error::BadShape {
                what: "test labels",
                got: labels.dims().to_vec(),
                expected: format!("[{n}], one per test image"),
            });
        }
        let (loss, accuracy) = evaluate_on(self, images, &labels.to_dtype(DType::U32)?, EVAL_BATCH)?;
        Ok(Metrics::new().with("test_loss", loss).with("test_accuracy", accuracy))
    }
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
            batch_size: EVAL_BATCH,
        })
    }

    /// Loads the classifier trained in `run_dir` (or its checkpoint file)
    /// onto `device`.
    ///
    /// # Errors
    /// [`Error::Core`] with a checkpoint error: a missing file, another
    /// model's checkpoint, tensors that do not fit the stored spec.
    pub fn load(run_dir: &Path, device: &Device) -> Result<Self> {
        let (model, _vars) = load_model::<Cnn>(run_dir, device)?;
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
    use deepgen_core::train::{BatchSource, CHECKPOINT_FILE, TrainConfig, fit};
    use deepgen_core::{AdamConfig, Checkpoint, TrainStep};

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

    fn train_spec(
        spec: &str,
        run_dir: Option<&Path>,
        epochs: usize,
        resume: bool,
    ) -> deepgen_core::Result<(Classifier, Vec<deepgen_core::EpochRecord>)> {
        let (train_x, train_y) = quadrants(256, 1)?;
        let (test_x, test_y) = quadrants(64, 2)?;
        let adam = AdamConfig {
            lr: 1e-2,
            ..Default::default()
        };
        let mut classifier = Classifier::new(&Spec::parse(spec)?, adam, 3, &Device::Cpu)?
            .with_evaluation(move |m, _| Ok(m.test_metrics(&test_x, &test_y)?));
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
        let records = fit(&config, &mut classifier, &mut data, |_, _| Ok(()))?;
        Ok((classifier, records))
    }

    fn train(
        run_dir: Option<&Path>,
        epochs: usize,
        resume: bool,
    ) -> Result<(Classifier, Vec<deepgen_core::EpochRecord>)> {
        Ok(train_spec(TINY_SPEC, run_dir, epochs, resume)?)
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
        let (loss, accuracy) = Evaluator::new(classifier.model().clone())?.accuracy(&test_x, &test_y)?;
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
        // Resuming with another spec over the same run directory: a clear error
        // that names both.
        let other = "INPUT-6x6x1 CONV-3-8-p1 POOL-2 FLATTEN FC-4";
        let err = train_spec(other, Some(dir.path()), 4, true)
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("CONV-3-4-p1") && e.contains("CONV-3-8-p1") && e.contains("same options")),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn checkpoints_of_other_models_and_missing_files_are_clear_errors() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| deepgen_core::Error::io("tempdir", "/tmp", e))?;
        let err = Evaluator::load(dir.path(), &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        // A checkpoint of some other model (a VAE's encoder, say).
        let mut checkpoint = Checkpoint::default();
        checkpoint.tensors.insert(
            "model.encoder.hidden.weight".into(),
            Tensor::zeros((4, 4), DType::F32, &Device::Cpu)?,
        );
        checkpoint.metadata.insert("deepgen.model".into(), "vae".into());
        checkpoint.save(&dir.path().join(CHECKPOINT_FILE))?;
        let err = Evaluator::load(dir.path(), &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("holds a `vae` model, not a `cnn`"), "{err}");
        // A cnn checkpoint whose tensors do not fit its spec.
        checkpoint.metadata.insert("deepgen.model".into(), "cnn".into());
        checkpoint
            .metadata
            .insert("deepgen.config".into(), format!("\"{TINY_SPEC}\""));
        checkpoint.save(&dir.path().join(CHECKPOINT_FILE))?;
        let err = Evaluator::load(dir.path(), &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("no tensor `model.layers."), "{err}");
        Ok(())
    }

    #[test]
    fn classifier_specs_must_end_in_logits() -> Result<()> {
        let spec = Spec::parse("INPUT-6x6x1 CONV-3-4")?;
        let err = Classifier::new(&spec, AdamConfig::default(), 0, &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("at least 2 logits"), "{err}");
        let spec = Spec::parse(TINY_SPEC)?;
        let bad = AdamConfig {
            lr: -1.0,
            ..Default::default()
        };
        assert!(Classifier::new(&spec, bad, 0, &Device::Cpu).is_err());
        // The step is the trainer's: one call, finite metrics.
        let mut classifier = Classifier::new(&spec, AdamConfig::default(), 0, &Device::Cpu)?;
        let (x, y) = quadrants(8, 4)?;
        let metrics = classifier.train_step(&(x, y), &StepCtx::default(), &mut rng_from_seed(0))?;
        assert!(metrics.get("train_loss").is_some_and(f64::is_finite));
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
