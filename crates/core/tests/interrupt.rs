//! A stop requested during training (as Ctrl-C does through the program's
//! handler) ends `fit` at the next step boundary with `Error::Interrupted`,
//! naming the epoch whose checkpoint is kept, and that checkpoint resumes.
//! Its own test binary: the stop flag is process-wide, as signals are.

use deepgen_core::candle::{DType, Device, Tensor};
use deepgen_core::checkpoint::Checkpoint;
use deepgen_core::train::{BatchSource, StepCtx, TrainConfig, TrainStep, fit};

use deepgen_core::{Error, Metrics, Result, StdRng, interrupt};

/// Counts its steps; asks for a stop at `(epoch, batch)`.
struct Counter {
    steps: f64,
    stop_at: Option<(usize, usize)>,
}

impl TrainStep for Counter {
    type Batch = ();
    fn train_step(&mut self, _: &(), ctx: &StepCtx, _: &mut StdRng) -> Result<Metrics> {
        assert!(interrupt::training_active());
        self.steps += 1.0;
        if self.stop_at == Some((ctx.epoch, ctx.batch_idx)) {
            interrupt::request_stop();
        }
        Ok(Metrics::new().with("steps", self.steps))
    }
    fn save_state(&self, checkpoint: &mut Checkpoint) -> Result<()> {
        let steps = Tensor::new(&[self.steps as f32], &Device::Cpu)?.to_dtype(DType::F32)?;
        checkpoint.tensors.insert("steps".into(), steps);
        Ok(())
    }
    fn load_state(&mut self, checkpoint: &Checkpoint, _: &std::path::Path) -> Result<()> {
        self.steps = f64::from(checkpoint.tensors["steps"].to_vec1::<f32>()?[0]);
        Ok(())
    }
}

struct FourBatches;

impl BatchSource for FourBatches {
    type Batch = ();
    fn n_batches(&self) -> usize {
        4
    }
    fn start_epoch(&mut self, _: &mut StdRng) -> Result<()> {
        Ok(())
    }
    fn batch(&self, _: usize) -> Result<()> {
        Ok(())
    }
}

#[test]
fn a_stop_ends_the_epoch_at_a_step_boundary_and_the_kept_checkpoint_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        epochs: 5,
        run_dir: Some(dir.path().to_path_buf()),
        progress: false,
        ..TrainConfig::default()
    };
    let mut step = Counter {
        steps: 0.0,
        stop_at: Some((3, 1)),
    };
    let err = fit(&config, &mut step, &mut FourBatches, |_, _| Ok(())).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Interrupted {
                epoch: 3,
                kept: Some(2)
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("interrupted in epoch 3; the checkpoint of epoch 2 is kept"),
        "{err}"
    );
    // Two whole epochs and two steps of the third ran; the step after the request did not.
    assert_eq!(step.steps, 10.0);
    assert!(!interrupt::training_active() && !interrupt::stop_requested());

    let resume = TrainConfig { resume: true, ..config };
    let mut resumed = Counter {
        steps: -1.0,
        stop_at: None,
    };
    let records = fit(&resume, &mut resumed, &mut FourBatches, |_, _| Ok(())).unwrap();
    assert_eq!(records.first().map(|r| r.epoch), Some(3));
    assert_eq!(
        resumed.steps, 20.0,
        "epochs 3–5 continue from the 8 steps of epoch 2's checkpoint"
    );

    // A stop in the first epoch leaves no checkpoint, and says so.
    let fresh = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        run_dir: Some(fresh.path().to_path_buf()),
        ..resume
    };
    let config = TrainConfig {
        resume: false,
        ..config
    };
    let mut step = Counter {
        steps: 0.0,
        stop_at: Some((1, 0)),
    };
    let err = fit(&config, &mut step, &mut FourBatches, |_, _| Ok(())).unwrap_err();
    assert!(err.to_string().contains("no checkpoint was written"), "{err}");
}
