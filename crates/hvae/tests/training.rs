//! Active units on a constructed model, training on synthetic binary data
//! (the loss goes down; warm-up and free bits; checkpoints, resume and
//! architecture checks), and clear errors for bad configurations.

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use deepgen_core::rng::{rand_uniform, randn, rng_from_seed};
use deepgen_core::train::{CHECKPOINT_FILE, EpochRecord, TrainConfig, fit};
use deepgen_core::{AdamConfig, BatchSource, Checkpoint, StdRng, TrainStep, seeded_var_builder};
use deepgen_hvae::{Activation, Error, HvaeConfig, HvaeTrainer, KlSchedule, hvae, load_hvae};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Fixed-order batches of the rows of a tensor.
struct Rows {
    data: Tensor,
    batch_size: usize,
}

impl BatchSource for Rows {
    type Batch = Tensor;
    fn n_batches(&self) -> usize {
        self.data.dim(0).unwrap_or(0).div_ceil(self.batch_size)
    }
    fn start_epoch(&mut self, _rng: &mut StdRng) -> deepgen_core::Result<()> {
        Ok(())
    }
    fn batch(&self, batch_idx: usize) -> deepgen_core::Result<Tensor> {
        let n = self.data.dim(0)?;
        let start = batch_idx * self.batch_size;
        Ok(self.data.narrow(0, start, self.batch_size.min(n - start))?)
    }
}

/// `n` binary vectors of 24 bits: one of 8 random prototypes each, with 5%
/// of the bits flipped — data with a discrete latent structure.
fn synthetic(n: usize, seed: u64) -> Result<Tensor> {
    let dev = Device::Cpu;
    let prototypes = rand_uniform(&mut rng_from_seed(100), (8, 24), 0.0, 1.0, &dev)?
        .ge(0.5)?
        .to_dtype(DType::F32)?;
    let mut rng = rng_from_seed(seed);
    let which = rand_uniform(&mut rng, n, 0.0, 8.0, &dev)?
        .floor()?
        .to_dtype(DType::U32)?;
    let clean = prototypes.index_select(&which, 0)?;
    let flips = rand_uniform(&mut rng, (n, 24), 0.0, 1.0, &dev)?
        .lt(0.05)?
        .to_dtype(DType::F32)?;
    // x XOR flip = x + flip − 2 x flip.
    Ok(((&clean + &flips)? - ((&clean * &flips)? * 2.0)?)?)
}

fn small(schedule: KlSchedule, free_bits: f64) -> HvaeConfig {
    HvaeConfig {
        input_dim: 24,
        hidden1: vec![32],
        latent1: 8,
        hidden2: vec![16],
        latent2: 4,
        schedule,
        free_bits,
        ..Default::default()
    }
}

const BATCH: usize = 64;

fn run(
    config: &HvaeConfig,
    epochs: usize,
    run_dir: Option<std::path::PathBuf>,
    resume: bool,
) -> Result<(HvaeTrainer, Vec<EpochRecord>)> {
    let train = synthetic(512, 1)?;
    let test = synthetic(1000, 2)?;
    let adam = AdamConfig {
        lr: 1e-2,
        ..Default::default()
    };
    let mut trainer = HvaeTrainer::new(config, adam, 7, &Device::Cpu)?
        .with_evaluation(move |m, rng| Ok(m.test_metrics(&test, 500, None, rng)?));
    let run = TrainConfig {
        epochs,
        seed: 3,
        run_dir,
        resume,
        progress: false,
    };
    let mut data = Rows {
        data: train,
        batch_size: BATCH,
    };
    let records = fit(&run, &mut trainer, &mut data, |_, _| Ok(()))?;
    Ok((trainer, records))
}

fn metric(record: &EpochRecord, name: &str) -> f64 {
    record
        .train
        .get(name)
        .or_else(|| record.eval.get(name))
        .unwrap_or(f64::NAN)
}

/// (5) Twenty epochs of 8 steps on synthetic binary data: the training
/// −ELBO falls from the first epoch to the last, the test −ELBO ends well
/// below the untrained model's, and every metric the CLI logs is there.
/// (The data's own entropy is `ln 8 + 24 H(0.05) ≈ 6.9` nats per example;
/// this seed goes from about 17.8 to 9.8 on the test set.)
#[test]
fn training_lowers_the_loss() -> Result<()> {
    let config = small(KlSchedule::Constant, 0.0);
    let untrained = {
        let varmap = VarMap::new();
        let model = hvae(&config, seeded_var_builder(&varmap, 7, DType::F32, &Device::Cpu))?;
        model
            .mean_loss(&synthetic(1000, 2)?, 500, &mut rng_from_seed(4))?
            .negative_elbo
    };
    let (_, records) = run(&config, 20, None, false)?;
    let (first, last) = (&records[0], &records[19]);
    for name in [
        "train_loss",
        "objective",
        "kl1",
        "kl2",
        "beta",
        "test_loss",
        "test_recon",
        "test_kl1",
        "test_kl2",
        "active_units1",
        "active_units2",
    ] {
        assert!(metric(last, name).is_finite(), "metric {name} missing");
    }
    let (start, end) = (metric(first, "train_loss"), metric(last, "train_loss"));
    let test = metric(last, "test_loss");
    eprintln!(
        "train −ELBO {start:.2} → {end:.2}; test −ELBO {untrained:.2} → {test:.2}; active {} / {}",
        metric(last, "active_units1"),
        metric(last, "active_units2")
    );
    // 24 bits: the untrained model scores about 24 ln 2 ≈ 16.6 nats plus its KL.
    assert!(end < start - 4.0, "train −ELBO {start} → {end}");
    assert!(test < untrained - 5.0, "test −ELBO {untrained} → {test}");
    // With β = 1 and no free bits the objective is the −ELBO itself.
    assert!((metric(last, "objective") - end).abs() < 1e-4);
    assert_eq!(metric(last, "beta"), 1.0);
    Ok(())
}

/// A linear warm-up over 2 epochs of 8 steps: the step after `s` steps uses
/// `β = (s + 1)/16`, so the epoch means are `Σ_{s=1}^{8} s/16 / 8 = 0.28125`,
/// `Σ_{s=9}^{16} s/16 / 8 = 0.78125` and then 1. With free bits 0.25 nats
/// per unit the objective's KL term is at least `0.25 · 12` units.
#[test]
fn warmup_and_free_bits_in_training() -> Result<()> {
    let config = small(KlSchedule::Linear { warmup: 2.0 }, 0.25);
    assert!(config.schedule_warning(1).is_some() && config.schedule_warning(3).is_none());
    let (trainer, records) = run(&config, 3, None, false)?;
    let betas: Vec<f64> = records.iter().map(|r| metric(r, "beta")).collect();
    for (got, want) in betas.iter().zip([0.28125, 0.78125, 1.0]) {
        assert!((got - want).abs() < 1e-12, "β per epoch {betas:?}");
    }
    let xs = synthetic(64, 9)?;
    let mut rng = rng_from_seed(1);
    let eps1 = randn(&mut rng, (64, 8), &Device::Cpu)?;
    let eps2 = randn(&mut rng, (64, 4), &Device::Cpu)?;
    let loss = trainer.model().loss(&xs, &eps1, &eps2, 1.0)?;
    let floor = |t: &Tensor| -> Result<f64> { Ok(t.to_scalar::<f32>()? as f64) };
    assert!(floor(&loss.kl1_objective)? >= 0.25 * 8.0 - 1e-6);
    assert!(floor(&loss.kl2_objective)? >= 0.25 * 4.0 - 1e-6);
    assert!(floor(&loss.total)? >= floor(&loss.recon)? + 0.25 * 12.0 - 1e-4);
    Ok(())
}

/// Checkpoints: `load_hvae` rebuilds the trained model from the file alone;
/// a run stopped after 2 epochs and resumed for a third ends exactly where
/// an uninterrupted 3-epoch run does (KL schedule included); another
/// model's checkpoint, one without deepgen metadata, and resuming with other
/// options are rejected with messages saying so.
#[test]
fn checkpoints_resume_and_reject_other_models() -> Result<()> {
    let config = small(KlSchedule::Linear { warmup: 2.0 }, 0.0);
    let dir = tempfile::tempdir()?;
    let (trainer, _) = run(&config, 2, Some(dir.path().to_path_buf()), false)?;
    let path = dir.path().join(CHECKPOINT_FILE);

    let (loaded, _) = load_hvae(&path, &Device::Cpu)?;
    assert_eq!(loaded.config(), trainer.model().config());
    let xs = synthetic(32, 5)?;
    let a = loaded.reconstruct(&xs)?;
    let b = trainer.model().reconstruct(&xs)?;
    assert_eq!(a.to_vec2::<f32>()?, b.to_vec2::<f32>()?);

    let (_, resumed) = run(&config, 3, Some(dir.path().to_path_buf()), true)?;
    let (_, straight) = run(&config, 3, None, false)?;
    assert_eq!(resumed.len(), 1);
    for name in ["train_loss", "beta", "test_loss"] {
        let (r, s) = (metric(&resumed[0], name), metric(&straight[2], name));
        assert!(
            (r - s).abs() <= 1e-6 * s.abs().max(1.0),
            "{name}: resumed {r}, straight {s}"
        );
    }

    // Another model family.
    let mut other = Checkpoint::default();
    other.metadata.insert("deepgen.model".into(), "vae".into());
    other.metadata.insert("vae.config".into(), "latent_dim=20".into());
    let vae_path = dir.path().join("vae.safetensors");
    other.save(&vae_path)?;
    let message = load_hvae(&vae_path, &Device::Cpu)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("holds a `vae` model, not a `hvae`"), "{message}");
    // A foreign safetensors file without deepgen metadata.
    let bare_path = dir.path().join("bare.safetensors");
    let mut bare = Checkpoint::default();
    bare.tensors
        .insert("weight".into(), Tensor::zeros(3, DType::F32, &Device::Cpu)?);
    bare.metadata.insert("format".into(), "pt".into());
    bare.save(&bare_path)?;
    let message = load_hvae(&bare_path, &Device::Cpu)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("not a deepgen `hvae` checkpoint"), "{message}");
    // Resuming with other options.
    let mut wider = HvaeTrainer::new(
        &small(KlSchedule::Constant, 0.0),
        AdamConfig::default(),
        0,
        &Device::Cpu,
    )?;
    let checkpoint = Checkpoint::load(&path, &Device::Cpu)?;
    let message = wider
        .load_state(&checkpoint, &path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("use the same options"), "{message}");
    Ok(())
}

/// (4) Active units on a constructed model with linear heads: `z1` unit 0
/// reads the input with weights 0.5 (variance over the data
/// `6 · 0.25 · 0.25 = 0.375`, active), unit 1 with weights 0.01 (variance
/// `1.5e-4 < 0.01`, inactive), units 2 and 3 not at all (constant, inactive);
/// `z2` unit 0 copies `z1` unit 0 (active) and unit 1 copies `z1` unit 1
/// (inactive).
#[test]
fn active_units_on_a_constructed_model() -> Result<()> {
    let dev = Device::Cpu;
    let config = HvaeConfig {
        input_dim: 6,
        hidden1: vec![],
        latent1: 4,
        hidden2: vec![],
        latent2: 2,
        activation: Activation::Tanh,
        ..Default::default()
    };
    let varmap = VarMap::new();
    let model = hvae(&config, seeded_var_builder(&varmap, 0, DType::F32, &dev))?;
    let set = |name: &str, value: Tensor| -> Result<()> {
        let data = varmap.data().lock().map_err(|_| "poisoned")?;
        data.get(name).ok_or(format!("no {name}"))?.set(&value)?;
        Ok(())
    };
    let mut w1 = vec![0f32; 4 * 6];
    w1[..6].fill(0.5);
    w1[6..12].fill(0.01);
    set("q_z1.mean.weight", Tensor::from_vec(w1, (4, 6), &dev)?)?;
    set("q_z1.mean.bias", Tensor::new(&[0.1f32, -0.2, 3.0, -1.0], &dev)?)?;
    let mut w2 = vec![0f32; 2 * 4];
    w2[0] = 1.0; // z2 unit 0 ← z1 unit 0
    w2[4 + 1] = 1.0; // z2 unit 1 ← z1 unit 1
    set("q_z2.mean.weight", Tensor::from_vec(w2, (2, 4), &dev)?)?;

    let xs = rand_uniform(&mut rng_from_seed(8), (2000, 6), 0.0, 1.0, &dev)?
        .ge(0.5)?
        .to_dtype(DType::F32)?;
    let (a1, a2) = model.active_units(&xs, 256)?;
    assert_eq!((a1.count, a2.count), (1, 1), "{a1:?} {a2:?}");
    // Sample variances of Bernoulli(½) bits are 0.25 within a few percent.
    assert!((a1.variances[0] / 0.375 - 1.0).abs() < 0.1, "{:?}", a1.variances);
    assert!((a1.variances[1] / 1.5e-4 - 1.0).abs() < 0.1, "{:?}", a1.variances);
    assert!(a1.variances[2] < 1e-10 && a1.variances[3] < 1e-10);
    assert!((a2.variances[0] / a1.variances[0] - 1.0).abs() < 1e-4);
    Ok(())
}

/// (6) Bad configurations and arguments are errors that name the value.
#[test]
fn bad_configs_are_clear_errors() -> Result<()> {
    let message = |config: HvaeConfig| config.validate().err().map(|e| e.to_string()).unwrap_or_default();
    let base = HvaeConfig::default;
    assert_eq!(
        message(HvaeConfig { latent1: 0, ..base() }),
        "invalid latent1 = 0: must be at least 1"
    );
    assert_eq!(
        message(HvaeConfig { latent2: 0, ..base() }),
        "invalid latent2 = 0: must be at least 1"
    );
    assert!(message(HvaeConfig { input_dim: 0, ..base() }).starts_with("invalid input_dim = 0"));
    assert!(
        message(HvaeConfig {
            hidden1: vec![200, 0],
            ..base()
        })
        .starts_with("invalid hidden1 = 200,0")
    );
    assert!(
        message(HvaeConfig {
            free_bits: -0.5,
            ..base()
        })
        .starts_with("invalid free_bits = -0.5")
    );
    assert!(
        message(HvaeConfig {
            free_bits: f64::NAN,
            ..base()
        })
        .starts_with("invalid free_bits = NaN")
    );
    assert!(
        message(HvaeConfig {
            free_bits: f64::INFINITY,
            ..base()
        })
        .starts_with("invalid free_bits = inf")
    );
    assert!(
        message(HvaeConfig {
            free_bits_group: 0,
            ..base()
        })
        .starts_with("invalid free_bits_group = 0")
    );
    assert!(message(HvaeConfig { n_samples: 0, ..base() }).starts_with("invalid n_samples = 0"));
    let warmup = |w| HvaeConfig {
        schedule: KlSchedule::Linear { warmup: w },
        ..base()
    };
    assert!(message(warmup(-1.0)).starts_with("invalid warmup = -1"));
    assert!(message(warmup(f64::NAN)).starts_with("invalid warmup = NaN"));
    let cyclical = |period, ramp| HvaeConfig {
        schedule: KlSchedule::Cyclical { period, ramp },
        ..base()
    };
    assert!(message(cyclical(0.0, 0.5)).starts_with("invalid cycle_period = 0"));
    assert!(message(cyclical(4.0, 1.5)).starts_with("invalid cycle_ramp = 1.5"));
    // A warm-up longer than the run is valid but reported.
    let long = warmup(50.0);
    assert!(long.validate().is_ok());
    let warning = long.schedule_warning(10).unwrap_or_default();
    assert!(warning.contains("50 epochs") && warning.contains("0.200"), "{warning}");

    let varmap = VarMap::new();
    let bad = hvae(
        &HvaeConfig { latent2: 0, ..base() },
        seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu),
    );
    assert!(matches!(bad, Err(Error::InvalidConfig { name: "latent2", .. })));
    let dev = Device::Cpu;
    let config = small(KlSchedule::Constant, 0.0);

    // Shapes and arguments.
    let model = hvae(&config, seeded_var_builder(&varmap, 0, DType::F32, &dev))?;
    let one = Tensor::zeros((1, 24), DType::F32, &dev)?;
    let two = Tensor::zeros((2, 24), DType::F32, &dev)?;
    assert!(model.test_metrics(&one, 10, None, &mut rng_from_seed(0)).is_err());
    assert!(model.test_metrics(&two, 0, None, &mut rng_from_seed(0)).is_err());
    assert!(
        model
            .test_metrics(&two, 10, Some((0, 10)), &mut rng_from_seed(0))
            .is_err()
    );
    assert!(
        model
            .test_metrics(&two, 10, Some((10, 0)), &mut rng_from_seed(0))
            .is_err()
    );
    let xs = Tensor::zeros((4, 24), DType::F32, &dev)?;
    let eps = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &dev);
    assert!(matches!(
        model.loss(
            &Tensor::zeros((4, 23), DType::F32, &dev)?,
            &eps(&[4, 8])?,
            &eps(&[4, 4])?,
            1.0
        ),
        Err(Error::BadShape { .. })
    ));
    assert!(model.loss(&xs, &eps(&[4, 7])?, &eps(&[4, 4])?, 1.0).is_err());
    assert!(model.loss(&xs, &eps(&[2, 4, 8])?, &eps(&[3, 4, 4])?, 1.0).is_err());
    assert!(model.loss(&xs, &eps(&[4, 8])?, &eps(&[4, 4])?, -1.0).is_err());
    assert!(model.loss(&xs, &eps(&[2, 4, 8])?, &eps(&[2, 4, 4])?, 0.5).is_ok());
    assert!(model.importance_log_likelihood(&xs, 0, &mut rng_from_seed(0)).is_err());
    assert!(model.mean_loss(&xs, 0, &mut rng_from_seed(0)).is_err());
    Ok(())
}
