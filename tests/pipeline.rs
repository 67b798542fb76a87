//! data → model → core loop → checkpoint, end to end.

use deepgen_core::candle::{D, DType, Device, Module, Tensor};
use deepgen_core::candle_nn::VarMap;
use deepgen_core::train::{METRICS_FILE, StepCtx};
use deepgen_core::{
    Adam, AdamConfig, BatchSource, Checkpoint, Error, Metrics, Result, StdRng, TrainConfig, TrainStep, fit,
    rng_from_seed, seeded_var_builder,
};
use deepgen_data::{Batch, Batcher, BatcherConfig, Dataset};
use deepgen_tests::{MlpClassifier, mlp_classifier};
use std::path::Path;

/// Mean cross-entropy `−(1/N) Σ_n log softmax(logits_n)[y_n]`, through
/// numerics' stable `log_softmax`.
fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let log_probs = deepgen_numerics::log_softmax(logits, D::Minus1).map_err(Error::external)?;
    let picked = log_probs.gather(&labels.unsqueeze(1)?, 1)?;
    Ok(picked.mean_all()?.neg()?)
}

fn accuracy(model: &MlpClassifier, xs: &Tensor, labels: &Tensor) -> Result<f64> {
    let predicted = model.forward(xs)?.argmax(D::Minus1)?;
    let correct = predicted
        .eq(labels)?
        .to_dtype(DType::F64)?
        .mean_all()?
        .to_scalar::<f64>()?;
    Ok(correct)
}

struct Classifier {
    varmap: VarMap,
    model: MlpClassifier,
    opt: Adam,
    test: (Tensor, Tensor),
}

impl Classifier {
    fn new(input: usize, hidden: usize, n_classes: usize, seed: u64, test: (Tensor, Tensor)) -> Result<Self> {
        let varmap = VarMap::new();
        let model = mlp_classifier(
            input,
            hidden,
            n_classes,
            seeded_var_builder(&varmap, seed, DType::F32, &Device::Cpu),
        )?;
        let opt = Adam::new(
            &varmap,
            AdamConfig {
                lr: 1e-2,
                ..Default::default()
            },
        )?;
        Ok(Self {
            varmap,
            model,
            opt,
            test,
        })
    }
}

impl TrainStep for Classifier {
    type Batch = Batch;

    fn train_step(&mut self, batch: &Batch, _ctx: &StepCtx, _rng: &mut StdRng) -> Result<Metrics> {
        let labels = batch.labels.as_ref().ok_or_else(|| Error::InvalidConfig {
            name: "labels",
            value: "none".into(),
            reason: "a classifier needs labels".into(),
        })?;
        let loss = cross_entropy(&self.model.forward(&batch.images)?, labels)?;
        self.opt.backward_step(&loss)?;
        Ok(Metrics::new()
            .with("train_loss", loss.to_scalar::<f32>()? as f64)
            .weighted(batch.images.dim(0)? as f64))
    }

    fn end_epoch(&mut self, _epoch: usize, _rng: &mut StdRng) -> Result<Metrics> {
        Ok(Metrics::new().with("test_accuracy", accuracy(&self.model, &self.test.0, &self.test.1)?))
    }

    fn save_state(&self, checkpoint: &mut Checkpoint) -> Result<()> {
        checkpoint.add_varmap("model.", &self.varmap)?;
        self.opt.save_state("optim.", checkpoint);
        Ok(())
    }

    fn load_state(&mut self, checkpoint: &Checkpoint, path: &Path) -> Result<()> {
        checkpoint.load_varmap("model.", &self.varmap, path)?;
        self.opt.load_state("optim.", checkpoint, path)
    }
}

/// Two moons with labels as tensors: points `[n, 2]` f32, labels `[n]` u32.
fn moons(n: usize, seed: u64) -> Result<(Tensor, Tensor)> {
    let (points, labels) =
        deepgen_data::synthetic::two_moons_with_labels(n, 0.1, &mut rng_from_seed(seed)).map_err(Error::external)?;
    let xs = deepgen_data::synthetic::points_to_tensor(&points, &Device::Cpu).map_err(Error::external)?;
    let ys = Tensor::from_vec(
        labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
        labels.len(),
        &Device::Cpu,
    )?;
    Ok((xs, ys))
}

fn moons_run(epochs: usize, dir: &Path, resume: bool) -> Result<(Classifier, Vec<deepgen_core::EpochRecord>)> {
    let (xs, ys) = moons(1024, 1)?;
    let config = BatcherConfig {
        batch_size: 64,
        ..Default::default()
    };
    let mut batcher = Batcher::new(&xs, Some(&ys), config, &Device::Cpu).map_err(Error::external)?;
    let mut step = Classifier::new(2, 32, 2, 11, moons(512, 2)?)?;
    let config = TrainConfig {
        epochs,
        seed: 5,
        run_dir: Some(dir.to_path_buf()),
        resume,
        progress: false,
    };
    let records = fit(&config, &mut step, &mut batcher, |_, _| Ok(()))?;
    Ok((step, records))
}

#[test]
fn two_moons_classifier_learns_through_the_whole_stack() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (_, records) = moons_run(15, dir.path(), false)?;
    let first_loss = records[0].train.get("train_loss").unwrap_or(f64::NAN);
    let last = records
        .last()
        .map(|r| (r.train.get("train_loss"), r.eval.get("test_accuracy")));
    let (Some(Some(last_loss)), Some(Some(test_accuracy))) = (last.map(|l| l.0), last.map(|l| l.1)) else {
        panic!("missing metrics in {records:?}");
    };
    assert!(last_loss < 0.5 * first_loss, "train loss {first_loss} -> {last_loss}");
    assert!(test_accuracy > 0.95, "held-out accuracy {test_accuracy}");
    let csv = std::fs::read_to_string(dir.path().join(METRICS_FILE)).map_err(|e| Error::io("read", dir.path(), e))?;
    assert_eq!(csv.lines().next(), Some("epoch,train_loss,test_accuracy,train_seconds"));
    assert_eq!(csv.lines().count(), 16);
    Ok(())
}

#[test]
fn resuming_with_shuffled_batches_matches_the_uninterrupted_run() -> Result<()> {
    let straight = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let interrupted = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (full, _) = moons_run(3, straight.path(), false)?;
    moons_run(1, interrupted.path(), false)?;
    let (resumed, records) = moons_run(3, interrupted.path(), true)?;
    assert_eq!(records.iter().map(|r| r.epoch).collect::<Vec<_>>(), [2, 3]);
    let bits = |c: &Classifier| -> Result<Vec<u32>> {
        let mut ck = Checkpoint::default();
        c.save_state(&mut ck)?;
        let mut out = Vec::new();
        for tensor in ck.tensors.values() {
            out.extend(tensor.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f32::to_bits));
        }
        Ok(out)
    };
    assert_eq!(bits(&full)?, bits(&resumed)?);
    Ok(())
}

/// A linear softmax classifier on 6,000 MNIST training images for two epochs
/// reaches well above chance on the 10,000 test images (a pipeline check, not
/// a benchmark: the CNN crate trains the real classifier).
#[test]
#[ignore = "needs data/mnist"]
fn mnist_pipeline_trains_a_classifier() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mnist = Dataset::Mnist
        .load(&root.join(Dataset::Mnist.default_dir()))
        .map_err(Error::external)?;
    let train_x = mnist.train_images.narrow(0, 0, 6000)?;
    let train_y = mnist.train_labels.narrow(0, 0, 6000)?;
    let config = BatcherConfig {
        batch_size: 100,
        ..Default::default()
    };
    let mut batcher = Batcher::new(&train_x, Some(&train_y), config, &Device::Cpu).map_err(Error::external)?;
    let mut step = Classifier::new(784, 64, 10, 3, (mnist.test_images.clone(), mnist.test_labels.clone()))?;
    step.opt.set_learning_rate(3e-3);
    let config = TrainConfig {
        epochs: 2,
        seed: 1,
        run_dir: None,
        resume: false,
        progress: false,
    };
    let records = fit(&config, &mut step, &mut batcher, |_, _| Ok(()))?;
    let accuracy = records.last().and_then(|r| r.eval.get("test_accuracy")).unwrap_or(0.0);
    assert!(accuracy > 0.88, "test accuracy {accuracy}");
    Ok(())
}

#[test]
fn batcher_epochs_are_reproducible_across_crates() -> Result<()> {
    let (xs, ys) = moons(100, 3)?;
    let config = BatcherConfig {
        batch_size: 32,
        ..Default::default()
    };
    let mut a = Batcher::new(&xs, Some(&ys), config.clone(), &Device::Cpu).map_err(Error::external)?;
    let mut b = Batcher::new(&xs, Some(&ys), config, &Device::Cpu).map_err(Error::external)?;
    BatchSource::start_epoch(&mut a, &mut deepgen_core::derived_rng(9, 0))?;
    BatchSource::start_epoch(&mut b, &mut deepgen_core::derived_rng(9, 0))?;
    for i in 0..BatchSource::n_batches(&a) {
        let (x, y) = (BatchSource::batch(&a, i)?, BatchSource::batch(&b, i)?);
        assert_eq!(x.images.to_vec2::<f32>()?, y.images.to_vec2::<f32>()?);
    }
    Ok(())
}
