//! `deepgen train vae`, `deepgen train ae` and `deepgen eval vae`.
//!
//! Training goes through deepgen-core's loop with deepgen-vae's
//! [`VaeTrainer`] / [`AeTrainer`], wrapped in [`WithPictures`], which after
//! every epoch's evaluation writes `reconstructions_epoch_XX.png` (test
//! originals above, reconstructions below) and, for the VAE,
//! `samples_epoch_XX.png` (decoder means of prior samples, the same noise
//! every epoch). After the last epoch come `interpolation.png` (latent
//! interpolation between pairs of test digits), `manifold.png` (2-D latent
//! only) and `loss_curve.png` (from `metrics.csv`).

use crate::common::{
    CommonTrainArgs, ConfigValue, DataArg, ModelDefaults, common_config_entries, device_name, epoch_line,
    group_thousands, load_dataset, open_device, say, write_run_config,
};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use deepgen_core::candle::{Device, Tensor};
use deepgen_core::rng::{derived_rng, randn};
use deepgen_core::train::{BatchSource, CHECKPOINT_FILE, EpochRecord, METRICS_FILE, TrainStep, fit};
use deepgen_core::{AdamConfig, Checkpoint, DeviceChoice, Metrics, StdRng};
use deepgen_data::{Batch, Batcher, BatcherConfig, save_image_grid, save_line_plot_png};
use deepgen_vae::{
    AeConfig, AeKind, AeTrainer, Architecture, DecoderKind, Objective, PriorKind, Reconstruction, SparsityPenalty,
    VaeConfig, VaeTrainer, load_vae,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// pytorch/examples' VAE: ten epochs of Adam at 1e-3 on batches of 128.
const VAE_DEFAULTS: ModelDefaults = ModelDefaults {
    epochs: 10,
    batch_size: 128,
    lr: 1e-3,
};

/// The autoencoders use the VAE's schedule.
const AE_DEFAULTS: ModelDefaults = VAE_DEFAULTS;

/// Test images per column of the reconstruction picture (pytorch/examples: 8).
const N_RECONSTRUCTIONS: usize = 8;
/// Prior samples in the 8 × 8 samples picture (pytorch/examples: 64).
const N_SAMPLES: usize = 64;
/// Pairs of test digits and steps per pair of the interpolation picture.
const INTERPOLATION: (usize, usize) = (6, 10);
/// Points per side of the 2-D latent manifold.
const MANIFOLD_SIDE: usize = 20;
/// Batch size of test-set evaluation.
const EVAL_BATCH: usize = 128;
/// Stream of the run seed that draws the prior samples of the pictures.
const PICTURE_STREAM: u64 = 1 << 40;

/// `--arch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    /// 784-H-Z multilayer perceptrons with ReLU (pytorch/examples).
    Mlp,
    /// Two stride-2 convolutions (32, 64 channels) and a hidden layer; transposed convolutions back.
    Conv,
}

/// `--decoder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecoderArg {
    /// Bernoulli pixels (binary cross-entropy on grey levels, pytorch/examples).
    Bernoulli,
    /// Gaussian with unit variance.
    Gaussian,
    /// Gaussian with a learned diagonal variance σ(NN(z)) (seed 003).
    GaussianLearned,
}

/// `--prior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PriorArg {
    /// N(0, I).
    Standard,
    /// N(μ_z, σ_z² I) with learned μ_z and σ_z (seed 003).
    Learned,
}

/// `--kind` of `deepgen train ae`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AeKindArg {
    /// Deterministic 784-H-Z-H-784 autoencoder.
    Plain,
    /// One linear map each way (learns the PCA subspace).
    Linear,
    /// Plain architecture with ReLU codes and a sparsity penalty.
    Sparse,
}

/// `--penalty` of the sparse autoencoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PenaltyArg {
    /// λ Σ |h_i|.
    L1,
    /// Σ (λ |h_i| − log(λ/2)), the Laplace prior of seed 004.
    Laplace,
}

/// `--recon` of the autoencoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReconArg {
    /// ‖x − x̂‖² (seed 002).
    SquaredError,
    /// Binary cross-entropy with logits.
    Bernoulli,
}

/// Flags of `deepgen train vae`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Encoder and decoder networks.
    #[arg(long, value_enum, default_value_t = ArchArg::Mlp)]
    pub arch: ArchArg,
    /// Hidden units H.
    #[arg(long, value_name = "H", default_value_t = 400, value_parser = at_least_one)]
    pub hidden: usize,
    /// Latent dims Z (2 also draws the latent manifold).
    #[arg(long, value_name = "Z", default_value_t = 20, value_parser = at_least_one)]
    pub latent: usize,
    /// Observation model p(x|z).
    #[arg(long, value_enum, default_value_t = DecoderArg::Bernoulli)]
    pub decoder: DecoderArg,
    /// Prior p(z).
    #[arg(long, value_enum, default_value_t = PriorArg::Standard)]
    pub prior: PriorArg,
    /// Weight β of the KL term (1: the ELBO).
    #[arg(long, value_name = "B", default_value_t = 1.0, allow_hyphen_values = true, value_parser = non_negative_f64)]
    pub beta: f64,
    /// Samples L of z per example for the reconstruction term.
    #[arg(long, value_name = "L", default_value_t = 1, value_parser = at_least_one)]
    pub samples: usize,
    /// Train on the IWAE bound with K importance samples instead of the ELBO.
    #[arg(long, value_name = "K", value_parser = at_least_one)]
    pub iwae_k: Option<usize>,
    #[command(flatten)]
    pub common: CommonTrainArgs,
}

/// Flags of `deepgen train ae`.
#[derive(Debug, Args)]
pub struct AeTrainArgs {
    /// Which autoencoder.
    #[arg(long, value_enum, default_value_t = AeKindArg::Plain)]
    pub kind: AeKindArg,
    /// Hidden units H (plain and sparse).
    #[arg(long, value_name = "H", default_value_t = 400, value_parser = at_least_one)]
    pub hidden: usize,
    /// Code size Z.
    #[arg(long, value_name = "Z", default_value_t = 20, value_parser = at_least_one)]
    pub latent: usize,
    /// Reconstruction term.
    #[arg(long, value_enum, default_value_t = ReconArg::SquaredError)]
    pub recon: ReconArg,
    /// Sparsity penalty (sparse only).
    #[arg(long, value_enum, default_value_t = PenaltyArg::L1)]
    pub penalty: PenaltyArg,
    /// λ of the sparsity penalty (sparse only).
    #[arg(long, value_name = "λ", default_value_t = 0.1, allow_hyphen_values = true, value_parser = non_negative_f64)]
    pub sparsity: f64,
    #[command(flatten)]
    pub common: CommonTrainArgs,
}

/// Flags of `deepgen eval vae`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory of `deepgen train vae` (or its checkpoint file).
    #[arg(long, value_name = "DIR", default_value = "runs/vae-mnist")]
    pub checkpoint: PathBuf,
    /// Importance samples per test image.
    #[arg(long, value_name = "K", default_value_t = 1000, value_parser = at_least_one)]
    pub k: usize,
    /// Data set whose test split is evaluated.
    #[arg(long, value_enum, default_value_t = DataArg::Mnist)]
    pub data: DataArg,
    /// Folder with the four IDX files [default: data/mnist or data/fashion-mnist].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Evaluate only the first N test images [default: all].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub n_test: Option<usize>,
    /// Test images per batch.
    #[arg(long, value_name = "B", default_value_t = 100, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Seed of the importance samples.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Device: cpu, cuda, cuda:N, metal or auto.
    #[arg(long, value_name = "D", default_value = "auto")]
    pub device: DeviceChoice,
}

/// A count of at least 1 (`--latent 0`, `--k 0` are errors that name the flag).
fn at_least_one(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// A finite number ≥ 0 (`--beta -1` is an error).
fn non_negative_f64(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x >= 0.0 && x.is_finite() => Ok(x),
        Ok(x) => Err(format!("{x} is not a finite number ≥ 0")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

/// Keeps freed memory in the process instead of returning it to the system.
///
/// glibc serves blocks above 128 KiB by `mmap` and trims the heap top on
/// `free`; a training step allocates and frees dozens of such blocks (every
/// `[128, 784]` activation and gradient, every optimizer temporary), so each
/// of them page-faults fresh zeroed pages. Raising the mmap threshold to its
/// maximum (32 MiB) and the trim threshold to 1 GiB makes them reuse the
/// heap: on two cores the VAE's Adam step went from about 30 ms to 5 ms.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: `mallopt` only sets allocator parameters; both values lie in
        // the ranges glibc accepts (it returns 0 and changes nothing otherwise).
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

/// Images only, from an unlabelled [`Batcher`].
#[derive(Debug)]
struct Images(Batcher);

impl Images {
    fn new(images: &Tensor, batch_size: usize, device: &Device) -> Result<Self> {
        let config = BatcherConfig {
            batch_size,
            ..Default::default()
        };
        Ok(Images(Batcher::new(images, None, config, device)?))
    }
}

impl BatchSource for Images {
    type Batch = Tensor;

    fn n_batches(&self) -> usize {
        BatchSource::n_batches(&self.0)
    }

    fn start_epoch(&mut self, rng: &mut StdRng) -> deepgen_core::Result<()> {
        BatchSource::start_epoch(&mut self.0, rng)
    }

    fn batch(&self, batch_idx: usize) -> deepgen_core::Result<Tensor> {
        let Batch { images, .. } = BatchSource::batch(&self.0, batch_idx)?;
        Ok(images)
    }
}

/// What the picture writer needs from a model.
trait Pictured {
    /// Reconstructions of `xs` in data space.
    fn reconstruct(&self, xs: &Tensor) -> Result<Tensor>;
    /// Decoder means of prior samples from `eps` (`None`: no prior).
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>>;
    /// Latent dims.
    fn latent_dim(&self) -> usize;
}

impl Pictured for VaeTrainer {
    fn reconstruct(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(self.vae().reconstruct(xs)?)
    }
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.vae().generate(eps)?))
    }
    fn latent_dim(&self) -> usize {
        self.vae().config().latent_dim
    }
}

impl Pictured for AeTrainer {
    fn reconstruct(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(self.model().reconstruct(xs)?)
    }
    fn generate(&self, _eps: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
    fn latent_dim(&self) -> usize {
        self.model().config().latent_dim
    }
}

/// A training step that writes the per-epoch pictures after its evaluation.
struct WithPictures<S> {
    inner: S,
    run_dir: PathBuf,
    /// The first test images, shown with their reconstructions.
    originals: Tensor,
    /// Prior noise of the samples picture, the same every epoch.
    sample_eps: Tensor,
}

impl<S: Pictured> WithPictures<S> {
    fn new(inner: S, run_dir: &Path, test_images: &Tensor, seed: u64) -> Result<Self> {
        let n = N_RECONSTRUCTIONS.min(test_images.dim(0)?);
        let latent = inner.latent_dim();
        let sample_eps = randn(
            &mut derived_rng(seed, PICTURE_STREAM),
            (N_SAMPLES, latent),
            test_images.device(),
        )?;
        Ok(Self {
            inner,
            run_dir: run_dir.to_path_buf(),
            originals: test_images.narrow(0, 0, n)?,
            sample_eps,
        })
    }

    fn save_pictures(&self, epoch: usize) -> Result<()> {
        let recon = self.inner.reconstruct(&self.originals)?;
        let both = Tensor::cat(&[&self.originals, &recon], 0)?;
        let path = self.run_dir.join(format!("reconstructions_epoch_{epoch:02}.png"));
        save_image_grid(&both, self.originals.dim(0)?, &path)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        if let Some(samples) = self.inner.generate(&self.sample_eps)? {
            let path = self.run_dir.join(format!("samples_epoch_{epoch:02}.png"));
            save_image_grid(&samples, 8, &path).with_context(|| format!("cannot write `{}`", path.display()))?;
        }
        Ok(())
    }
}

impl<S: Pictured + TrainStep<Batch = Tensor>> TrainStep for WithPictures<S> {
    type Batch = Tensor;

    fn train_step(&mut self, batch: &Tensor, rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        self.inner.train_step(batch, rng)
    }

    fn end_epoch(&mut self, epoch: usize, rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        let metrics = self.inner.end_epoch(epoch, rng)?;
        self.save_pictures(epoch)
            .map_err(|e| deepgen_core::Error::Candle(deepgen_core::candle::Error::msg(format!("{e:#}"))))?;
        Ok(metrics)
    }

    fn save_state(&self, checkpoint: &mut Checkpoint) -> deepgen_core::Result<()> {
        self.inner.save_state(checkpoint)
    }

    fn load_state(&mut self, checkpoint: &Checkpoint, path: &Path) -> deepgen_core::Result<()> {
        self.inner.load_state(checkpoint, path)
    }
}

/// `(train_loss, test_loss)` per epoch from the run's `metrics.csv`.
fn loss_history(run_dir: &Path) -> Result<Vec<(String, Vec<f64>)>> {
    let path = run_dir.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap_or(f64::NAN)).collect())
        .collect();
    Ok(["train_loss", "test_loss"]
        .iter()
        .filter_map(|name| {
            let col = header.iter().position(|h| h == name)?;
            Some((
                name.to_string(),
                rows.iter().filter_map(|r| r.get(col).copied()).collect(),
            ))
        })
        .collect())
}

/// The end-of-run pictures: loss curve, interpolation and (2-D latent) manifold.
fn final_pictures(
    run_dir: &Path,
    test_images: &Tensor,
    interpolate: impl Fn(&Tensor, &Tensor, usize) -> Result<Tensor>,
    manifold: Option<Tensor>,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let history = loss_history(run_dir)?;
    let series: Vec<(&str, &[f64])> = history.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    if series.iter().any(|(_, v)| v.len() >= 2) {
        let path = run_dir.join("loss_curve.png");
        save_line_plot_png(&series, &path).with_context(|| format!("cannot write `{}`", path.display()))?;
        written.push(path);
    }
    let (pairs, steps) = INTERPOLATION;
    let pairs = pairs.min(test_images.dim(0)? / 2);
    if pairs > 0 {
        let mut rows = Vec::with_capacity(pairs);
        for p in 0..pairs {
            let a = test_images.narrow(0, 2 * p, 1)?;
            let b = test_images.narrow(0, 2 * p + 1, 1)?;
            rows.push(interpolate(&a, &b, steps)?);
        }
        let path = run_dir.join("interpolation.png");
        save_image_grid(&Tensor::cat(&rows, 0)?, steps, &path)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        written.push(path);
    }
    if let Some(grid) = manifold {
        let path = run_dir.join("manifold.png");
        save_image_grid(&grid, MANIFOLD_SIDE, &path).with_context(|| format!("cannot write `{}`", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn print_done(records: &[EpochRecord], run_dir: &Path, started: Instant, pictures: &[PathBuf]) {
    let mean_train = records.iter().map(|r| r.train_seconds).sum::<f64>() / records.len().max(1) as f64;
    let test = records
        .last()
        .and_then(|r| r.eval.get("test_loss"))
        .map_or_else(String::new, |t| format!(", test loss {t:.4} nats"));
    say(&format!(
        "done: {} epochs in {:.1} s ({mean_train:.2} s of training per epoch){test}; `{}`, `{}`",
        records.len(),
        started.elapsed().as_secs_f64(),
        run_dir.join(METRICS_FILE).display(),
        run_dir.join(CHECKPOINT_FILE).display(),
    ));
    if !pictures.is_empty() {
        let names: Vec<String> = pictures.iter().map(|p| p.display().to_string()).collect();
        say(&format!("pictures: {}", names.join(", ")));
    }
}

/// The VAE configuration the flags describe.
fn vae_config(args: &TrainArgs) -> Result<VaeConfig> {
    let config = VaeConfig {
        architecture: match args.arch {
            ArchArg::Mlp => Architecture::Mlp,
            ArchArg::Conv => Architecture::Conv,
        },
        hidden_dim: args.hidden,
        latent_dim: args.latent,
        decoder: match args.decoder {
            DecoderArg::Bernoulli => DecoderKind::Bernoulli,
            DecoderArg::Gaussian => DecoderKind::Gaussian,
            DecoderArg::GaussianLearned => DecoderKind::GaussianLearned,
        },
        prior: match args.prior {
            PriorArg::Standard => PriorKind::Standard,
            PriorArg::Learned => PriorKind::Learned,
        },
        beta: args.beta,
        n_samples: args.samples,
        objective: args.iwae_k.map_or(Objective::Elbo, |k| Objective::Iwae { k }),
        ..Default::default()
    };
    config.validate().context("invalid VAE options")?;
    Ok(config)
}

/// `deepgen train vae`.
pub fn train(args: TrainArgs) -> Result<()> {
    keep_freed_memory();
    let common = &args.common;
    let resolved = common.resolve("vae", VAE_DEFAULTS);
    let run_dir = resolved.run_dir.clone();
    common.check_run_dir(&run_dir)?;
    let config = vae_config(&args)?;
    let device = open_device(common.device)?;
    let data = load_dataset(resolved.dataset, &resolved.data_dir)?;
    let test_images = data.test_images.to_device(&device)?;

    let adam = AdamConfig {
        lr: resolved.lr,
        ..Default::default()
    };
    let trainer =
        VaeTrainer::new(&config, adam, common.seed, &device)?.with_test_set(test_images.clone(), EVAL_BATCH)?;
    let n_params: usize = trainer.varmap().all_vars().iter().map(|v| v.elem_count()).sum();
    let mut step = WithPictures::new(trainer, &run_dir, &test_images, common.seed)?;
    let mut batches = Images::new(&data.train_images, resolved.batch_size, &device)?;

    std::fs::create_dir_all(&run_dir).with_context(|| format!("cannot create `{}`", run_dir.display()))?;
    let mut entries = common_config_entries(common, &resolved);
    entries.push(("vae", ConfigValue::Text(config.to_text())));
    // A resumed run keeps its config file until the checkpoint has accepted
    // the options (same model, same seed).
    if !common.resume {
        write_run_config(&run_dir, "vae", &entries)?;
    }
    if !common.quiet {
        say(&format!(
            "training a VAE `{}` ({} parameters) on {} ({} train / {} test images)",
            config.to_text(),
            group_thousands(n_params),
            resolved.dataset,
            data.n_train(),
            data.n_test()
        ));
        say(&format!(
            "{} epochs, batch {}, Adam lr {}, seed {}, device {}; run directory `{}`{}",
            resolved.epochs,
            resolved.batch_size,
            resolved.lr,
            common.seed,
            device_name(&device),
            run_dir.display(),
            if common.resume { " (resuming)" } else { "" },
        ));
    }
    let started = Instant::now();
    let quiet = common.quiet;
    let records = fit(&common.train_config(&resolved), &mut step, &mut batches, |record| {
        if !quiet {
            say(&epoch_line(record, resolved.epochs));
        }
    })?;
    if common.resume {
        write_run_config(&run_dir, "vae", &entries)?;
    }
    if records.is_empty() {
        say(&format!(
            "nothing to do: `{}` has already been trained for {} epochs (raise --epochs to continue)",
            run_dir.display(),
            resolved.epochs
        ));
        return Ok(());
    }
    let model = step.inner.vae();
    let manifold = (config.latent_dim == 2)
        .then(|| model.manifold(MANIFOLD_SIDE))
        .transpose()?;
    let pictures = final_pictures(
        &run_dir,
        &test_images,
        |a, b, n| Ok(model.interpolate(a, b, n)?),
        manifold,
    )?;
    print_done(&records, &run_dir, started, &pictures);
    Ok(())
}

/// `deepgen train ae`.
pub fn train_ae(args: AeTrainArgs) -> Result<()> {
    keep_freed_memory();
    let common = &args.common;
    let resolved = common.resolve("ae", AE_DEFAULTS);
    let run_dir = resolved.run_dir.clone();
    common.check_run_dir(&run_dir)?;
    let config = AeConfig {
        kind: match args.kind {
            AeKindArg::Plain => AeKind::Plain,
            AeKindArg::Linear => AeKind::Linear,
            AeKindArg::Sparse => AeKind::Sparse,
        },
        hidden_dim: args.hidden,
        latent_dim: args.latent,
        reconstruction: match args.recon {
            ReconArg::SquaredError => Reconstruction::SquaredError,
            ReconArg::Bernoulli => Reconstruction::Bernoulli,
        },
        penalty: match args.penalty {
            PenaltyArg::L1 => SparsityPenalty::L1,
            PenaltyArg::Laplace => SparsityPenalty::LaplacePrior,
        },
        sparsity: args.sparsity,
        ..Default::default()
    };
    config.validate().context("invalid autoencoder options")?;
    let device = open_device(common.device)?;
    let data = load_dataset(resolved.dataset, &resolved.data_dir)?;
    let test_images = data.test_images.to_device(&device)?;
    let adam = AdamConfig {
        lr: resolved.lr,
        ..Default::default()
    };
    let trainer =
        AeTrainer::new(&config, adam, common.seed, &device)?.with_test_set(test_images.clone(), EVAL_BATCH)?;
    let mut step = WithPictures::new(trainer, &run_dir, &test_images, common.seed)?;
    let mut batches = Images::new(&data.train_images, resolved.batch_size, &device)?;

    std::fs::create_dir_all(&run_dir).with_context(|| format!("cannot create `{}`", run_dir.display()))?;
    let mut entries = common_config_entries(common, &resolved);
    entries.push(("ae", ConfigValue::Text(config.to_text())));
    if !common.resume {
        write_run_config(&run_dir, "ae", &entries)?;
    }
    if !common.quiet {
        say(&format!(
            "training an autoencoder `{}` on {} ({} train / {} test images); {} epochs, batch {}, Adam lr {}, \
             seed {}, device {}; run directory `{}`{}",
            config.to_text(),
            resolved.dataset,
            data.n_train(),
            data.n_test(),
            resolved.epochs,
            resolved.batch_size,
            resolved.lr,
            common.seed,
            device_name(&device),
            run_dir.display(),
            if common.resume { " (resuming)" } else { "" },
        ));
    }
    let started = Instant::now();
    let quiet = common.quiet;
    let records = fit(&common.train_config(&resolved), &mut step, &mut batches, |record| {
        if !quiet {
            say(&epoch_line(record, resolved.epochs));
        }
    })?;
    if common.resume {
        write_run_config(&run_dir, "ae", &entries)?;
    }
    if records.is_empty() {
        say(&format!(
            "nothing to do: `{}` has already been trained for {} epochs (raise --epochs to continue)",
            run_dir.display(),
            resolved.epochs
        ));
        return Ok(());
    }
    let model = step.inner.model();
    let pictures = final_pictures(&run_dir, &test_images, |a, b, n| Ok(model.interpolate(a, b, n)?), None)?;
    print_done(&records, &run_dir, started, &pictures);
    Ok(())
}

/// The checkpoint file of `--checkpoint` (a run directory or the file itself).
fn checkpoint_path(arg: &Path) -> Result<PathBuf> {
    if arg.is_dir() {
        let path = arg.join(CHECKPOINT_FILE);
        if !path.exists() {
            bail!(
                "`{}` holds no {CHECKPOINT_FILE}; is it the run directory of `deepgen train vae`?",
                arg.display()
            );
        }
        Ok(path)
    } else if arg.is_file() {
        Ok(arg.to_path_buf())
    } else {
        bail!(
            "run directory `{}` does not exist (train one with `deepgen train vae --out {}`)",
            arg.display(),
            arg.display()
        )
    }
}

/// `deepgen eval vae`: the importance-sampled test log-likelihood and the ELBO.
pub fn eval(args: EvalArgs) -> Result<()> {
    keep_freed_memory();
    let path = checkpoint_path(&args.checkpoint)?;
    let device = open_device(args.device)?;
    let (model, _vars) =
        load_vae(&path, &device).with_context(|| format!("cannot load a VAE from `{}`", path.display()))?;
    let dataset = args.data.dataset();
    let data_dir = args.data_dir.clone().unwrap_or_else(|| dataset.default_dir());
    let data = load_dataset(dataset, &data_dir)?;
    let n = args.n_test.map_or(data.n_test(), |n| n.min(data.n_test()));
    let images = data.test_images.narrow(0, 0, n)?.to_device(&device)?;
    say(&format!(
        "`{}`: VAE `{}`; {dataset} test set, {n} images, K = {} importance samples each",
        path.display(),
        model.config().to_text(),
        args.k
    ));

    let started = Instant::now();
    let bar = ProgressBar::new(n as u64);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) =
        ProgressStyle::with_template("log p(x) [{bar:30}] {pos}/{len} images {msg} ({elapsed}, eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let mut rng = derived_rng(args.seed, 0);
    let (mut sum_ll, mut start) = (0f64, 0);
    while start < n {
        let len = args.batch_size.min(n - start);
        let xs = images.narrow(0, start, len)?;
        let ll = model.importance_log_likelihood(&xs, args.k, &mut rng)?;
        sum_ll += ll
            .to_dtype(deepgen_core::candle::DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        start += len;
        bar.set_position(start as u64);
        bar.set_message(format!("mean {:.3}", sum_ll / start as f64));
    }
    bar.finish_and_clear();
    let ll_seconds = started.elapsed().as_secs_f64();
    let elbo = model.mean_loss(&images, EVAL_BATCH, &mut derived_rng(args.seed, 1))?;
    say(&format!(
        "test log-likelihood (importance sampling, K = {}): {:.4} nats per image  ({ll_seconds:.1} s)",
        args.k,
        sum_ll / n.max(1) as f64
    ));
    say(&format!(
        "test ELBO (one sample): {:.4} nats per image (recon {:.4}, KL {:.4}); total {:.1} s",
        -elbo.negative_elbo,
        elbo.recon,
        elbo.kl,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_parsers_name_the_problem() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert_eq!(at_least_one("0"), Err("must be at least 1".into()));
        assert!(at_least_one("x").is_err());
        assert_eq!(non_negative_f64("0.5"), Ok(0.5));
        assert_eq!(non_negative_f64("-1"), Err("-1 is not a finite number ≥ 0".into()));
        assert!(non_negative_f64("inf").is_err() && non_negative_f64("x").is_err());
    }

    #[test]
    fn missing_run_directories_are_explained() {
        let err = checkpoint_path(Path::new("no/such/run")).err().map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.contains("does not exist")), "{err:?}");
    }
}
