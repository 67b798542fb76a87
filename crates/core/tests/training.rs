//! The training loop end to end: determinism, resume, the NaN guard and the
//! metrics log, on a small MLP regression with noisy inputs (so every step
//! draws from the run's generator) and shuffled batches.

use deepgen_core::candle::{DType, Device, Module, Tensor};
use deepgen_core::candle_nn::{self, VarMap};
use deepgen_core::rng::{permutation, randn, rng_from_seed};
use deepgen_core::train::{CHECKPOINT_FILE, METRICS_FILE, StepCtx};
use deepgen_core::{
    Adam, AdamConfig, BatchSource, Checkpoint, Error, LrSchedule, Metrics, Result, StdRng, TrainConfig, TrainStep, fit,
    seeded_var_builder,
};
use std::path::Path;

struct Regression {
    varmap: VarMap,
    hidden: candle_nn::Linear,
    out: candle_nn::Linear,
    opt: Adam,
    /// Make the loss NaN from this epoch's first step on (to test the guard).
    poison_from_step: Option<usize>,
    steps: usize,
}

impl Regression {
    fn new(seed: u64) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, seed, DType::F32, &Device::Cpu);
        let hidden = candle_nn::linear(4, 16, vb.pp("hidden"))?;
        let out = candle_nn::linear(16, 1, vb.pp("out"))?;
        let schedule = LrSchedule::Cosine {
            total_steps: 40,
            min_lr: 1e-4,
        };
        let opt = Adam::new(
            &varmap,
            AdamConfig {
                lr: 1e-2,
                max_grad_norm: Some(5.0),
                schedule,
                ..Default::default()
            },
        )?;
        Ok(Self {
            varmap,
            hidden,
            out,
            opt,
            poison_from_step: None,
            steps: 0,
        })
    }

    fn loss(&self, xs: &Tensor, ys: &Tensor) -> deepgen_core::candle::Result<Tensor> {
        let pred = self.out.forward(&self.hidden.forward(xs)?.relu()?)?;
        (pred - ys)?.sqr()?.mean_all()
    }

    fn parameters(&self) -> Vec<u32> {
        let mut names: Vec<_> = self.varmap.data().lock().unwrap().keys().cloned().collect();
        names.sort();
        let data = self.varmap.data().lock().unwrap();
        names
            .iter()
            .flat_map(|n| data[n].flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .map(f32::to_bits)
            .collect()
    }
}

impl TrainStep for Regression {
    type Batch = (Tensor, Tensor);

    fn train_step(&mut self, (xs, ys): &(Tensor, Tensor), _ctx: &StepCtx, rng: &mut StdRng) -> Result<Metrics> {
        let noisy = (xs + (randn(rng, xs.dims(), xs.device())? * 0.1)?)?;
        let mut loss = self.loss(&noisy, ys)?;
        if self.poison_from_step.is_some_and(|s| self.steps >= s) {
            loss = (loss * f64::NAN)?;
        }
        self.opt.backward_step(&loss)?;
        self.steps += 1;
        Ok(Metrics::new()
            .with("train_loss", loss.to_scalar::<f32>()? as f64)
            .weighted(xs.dim(0)? as f64))
    }

    fn end_epoch(&mut self, _epoch: usize, rng: &mut StdRng) -> Result<Metrics> {
        let xs = randn(rng, (64, 4), &Device::Cpu)?;
        let ys = target(&xs)?;
        Ok(Metrics::new().with("test_loss", self.loss(&xs, &ys)?.to_scalar::<f32>()? as f64))
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

/// y = sin(x₀) + x₁ x₂ − x₃.
fn target(xs: &Tensor) -> deepgen_core::candle::Result<Tensor> {
    let c = |i| xs.narrow(1, i, 1);
    c(0)?.sin()? + (c(1)? * c(2)?)? - c(3)?
}

struct Shuffled {
    xs: Tensor,
    ys: Tensor,
    batch_size: usize,
    order: Vec<u32>,
}

impl Shuffled {
    fn new() -> Result<Self> {
        let xs = randn(&mut rng_from_seed(99), (200, 4), &Device::Cpu)?;
        let ys = target(&xs)?;
        Ok(Self {
            xs,
            ys,
            batch_size: 32,
            order: (0..200).collect(),
        })
    }
}

impl BatchSource for Shuffled {
    type Batch = (Tensor, Tensor);
    fn n_batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }
    fn start_epoch(&mut self, rng: &mut StdRng) -> Result<()> {
        self.order = permutation(rng, self.order.len())
            .into_iter()
            .map(|i| i as u32)
            .collect();
        Ok(())
    }
    fn batch(&self, batch_idx: usize) -> Result<Self::Batch> {
        let start = batch_idx * self.batch_size;
        let end = (start + self.batch_size).min(self.order.len());
        let idx = Tensor::new(&self.order[start..end], &Device::Cpu)?;
        Ok((self.xs.index_select(&idx, 0)?, self.ys.index_select(&idx, 0)?))
    }
}

fn config(epochs: usize, seed: u64, dir: Option<&Path>, resume: bool) -> TrainConfig {
    TrainConfig {
        epochs,
        seed,
        run_dir: dir.map(Path::to_path_buf),
        resume,
        progress: false,
    }
}

fn run(
    epochs: usize,
    seed: u64,
    dir: Option<&Path>,
    resume: bool,
) -> Result<(Regression, Vec<deepgen_core::EpochRecord>)> {
    let mut model = Regression::new(seed)?;
    let records = fit(
        &config(epochs, seed, dir, resume),
        &mut model,
        &mut Shuffled::new()?,
        |_, _| Ok(()),
    )?;
    Ok((model, records))
}

#[test]
fn training_reduces_the_loss() -> Result<()> {
    let (_, records) = run(5, 1, None, false)?;
    let first = records[0].train.get("train_loss").unwrap();
    let last = records[4].train.get("train_loss").unwrap();
    assert!(last < 0.5 * first, "train loss {first} -> {last}");
    Ok(())
}

#[test]
fn same_seed_gives_bit_identical_parameters() -> Result<()> {
    let (a, ra) = run(3, 7, None, false)?;
    let (b, rb) = run(3, 7, None, false)?;
    let (c, _) = run(3, 8, None, false)?;
    assert_eq!(a.parameters(), b.parameters(), "same seed, different parameters");
    assert_ne!(a.parameters(), c.parameters(), "different seeds, same parameters");
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!(x.train, y.train);
        assert_eq!(x.eval, y.eval);
    }
    Ok(())
}

#[test]
fn resumed_run_ends_where_an_uninterrupted_run_ends() -> Result<()> {
    let straight = tempfile::tempdir().unwrap();
    let interrupted = tempfile::tempdir().unwrap();
    let (full, full_records) = run(4, 3, Some(straight.path()), false)?;
    run(2, 3, Some(interrupted.path()), false)?;
    // A new process: fresh model (its initial weights are overwritten by the checkpoint).
    let mut model = Regression::new(12345)?;
    let resumed = fit(
        &config(4, 3, Some(interrupted.path()), true),
        &mut model,
        &mut Shuffled::new()?,
        |_, _| Ok(()),
    )?;
    assert_eq!(resumed.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(
        model.parameters(),
        full.parameters(),
        "resumed parameters differ bitwise"
    );
    assert_eq!(resumed[1].train, full_records[3].train);
    assert_eq!(resumed[1].eval, full_records[3].eval);
    // Both metrics logs hold epochs 1..=4 with the same numbers (seconds aside).
    let strip = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join(METRICS_FILE))
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    let rows = strip(straight.path());
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0], "epoch,train_loss,test_loss");
    assert_eq!(rows, strip(interrupted.path()));
    Ok(())
}

#[test]
fn nan_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Regression::new(4)?;
    let batches_per_epoch = Shuffled::new()?.n_batches();
    model.poison_from_step = Some(2 * batches_per_epoch + 3);
    let err = fit(
        &config(5, 4, Some(dir.path()), false),
        &mut model,
        &mut Shuffled::new()?,
        |_, _| Ok(()),
    )
    .unwrap_err();
    match &err {
        Error::NonFinite {
            metric,
            epoch,
            batch,
            value,
            kept,
        } => {
            assert_eq!(*kept, Some(2));
            assert_eq!((metric.as_str(), *epoch, batch.as_str()), ("train_loss", 3, "3"));
            assert!(value.is_nan());
        }
        other => panic!("expected NonFinite, got {other}"),
    }
    assert!(
        err.to_string().contains("stopped, the checkpoint of epoch 2 is kept"),
        "{err}"
    );
    let checkpoint = Checkpoint::load(&dir.path().join(CHECKPOINT_FILE), &Device::Cpu)?;
    assert_eq!(checkpoint.metadata["deepgen.epochs_completed"], "2");
    // The kept checkpoint resumes cleanly.
    let mut healthy = Regression::new(4)?;
    let records = fit(
        &config(3, 4, Some(dir.path()), true),
        &mut healthy,
        &mut Shuffled::new()?,
        |_, _| Ok(()),
    )?;
    assert_eq!(records.len(), 1);
    assert!(records[0].train.get("train_loss").unwrap().is_finite());
    Ok(())
}

#[test]
fn resume_errors_are_clear() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let err = run(2, 1, Some(dir.path()), true).err().unwrap();
    assert!(matches!(err, Error::NothingToResume(_)), "{err}");
    run(1, 1, Some(dir.path()), false)?;
    let err = run(2, 2, Some(dir.path()), true).err().unwrap();
    assert!(err.to_string().contains("seed 1"), "{err}");
    Ok(())
}

/// Preflight (issue 18: a garbled `metrics.csv` on resume was found only
/// after a whole epoch): a resumed run reads its metrics file before the
/// first step and refuses one that is not a metrics file, naming the line.
#[test]
fn a_garbled_metrics_file_is_refused_before_the_first_step() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    run(1, 1, Some(dir.path()), false)?;
    let metrics = dir.path().join("metrics.csv");
    let good = std::fs::read_to_string(&metrics).unwrap();
    for (garbled, needle) in [
        ("hello\n".to_string(), "line 1: the header is not `epoch,…`"),
        (format!("{good}2,x,0.5\n"), "line 3: `2,x,0.5` is not an epoch number"),
        (format!("{}\n1,0.5\n", good.lines().next().unwrap()), "line 2"),
    ] {
        std::fs::write(&metrics, &garbled).unwrap();
        let mut model = Regression::new(1)?;
        let err = fit(
            &config(2, 1, Some(dir.path()), true),
            &mut model,
            &mut Shuffled::new()?,
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(matches!(err, Error::RunFile { .. }), "{err}");
        assert!(
            err.to_string().contains(needle) && err.to_string().contains("metrics.csv"),
            "{err}"
        );
        assert_eq!(model.steps, 0, "trained before the metrics file was read");
        assert_eq!(
            std::fs::read_to_string(&metrics).unwrap(),
            garbled,
            "the file was changed"
        );
    }
    std::fs::write(&metrics, &good).unwrap();
    let (_, records) = run(2, 1, Some(dir.path()), true)?;
    assert_eq!(records.len(), 1);
    Ok(())
}

/// Preflight: a run directory that cannot take a file fails before the
/// first step (`/proc` refuses new files even to root).
#[cfg(target_os = "linux")]
#[test]
fn an_unwritable_run_directory_is_refused_before_the_first_step() -> Result<()> {
    let mut model = Regression::new(1)?;
    let err = fit(
        &config(1, 1, Some(Path::new("/proc")), false),
        &mut model,
        &mut Shuffled::new()?,
        |_, _| Ok(()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("write in run directory `/proc`"), "{err}");
    assert_eq!(model.steps, 0);
    Ok(())
}
