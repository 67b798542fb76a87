//! `deepgen train vae`, `deepgen train ae` and `deepgen eval vae`.
//!
//! Training goes through [`TrainRun`] and deepgen-core's loop with
//! deepgen-vae's [`VaeTrainer`] / [`AeTrainer`], wrapped in [`WithPictures`], which after
//! every epoch's evaluation writes `reconstructions_epoch_XX.png` (test
//! originals above, reconstructions below) and, for the VAE,
//! `samples_epoch_XX.png` (decoder means of prior samples, the same noise
//! every epoch). After the last epoch come `interpolation.png` (latent
//! interpolation between pairs of test digits), `manifold.png` (2-D latent
//! only) and `loss_curve.png` (from `metrics.csv`).

use crate::common::{
    CommonTrainArgs, ConfigValue, DataArg, ImageBatches, ModelDefaults, TrainRun, at_least_one, checkpoint_file,
    core_error, group_thousands, non_negative_f64, open_device, progress_bar, save_grid_png, save_loss_curve, say,
    say_pictures,
};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use deepgen_core::candle::{DType, Device, Tensor};
use deepgen_core::rng::{derived_rng, randn};
use deepgen_core::train::{EpochRecord, TrainStep};
use deepgen_core::{Checkpoint, DeviceChoice, Metrics, StdRng};
use deepgen_data::Mnist;
use deepgen_vae::config::ConfigText;
use deepgen_vae::train::{TrainableModel, Trainer};
use deepgen_vae::{
    AeConfig, AeKind, AeTrainer, Architecture, Autoencoder, DecoderKind, Objective, PriorKind, Reconstruction,
    SparsityPenalty, Vae, VaeConfig, VaeTrainer, load_vae,
};
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

/// What the picture writer needs from a model.
trait Pictured {
    /// Reconstructions of `xs` in data space.
    fn reconstruct(&self, xs: &Tensor) -> Result<Tensor>;
    /// Decoder means of prior samples from `eps` (`None`: no prior).
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>>;
    /// Latent dims.
    fn latent_dim(&self) -> usize;
    /// Decoded points on the latent line from `x_a` to `x_b` in `n_steps`.
    fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Tensor>;
    /// The decoded [`MANIFOLD_SIDE`]² grid of a 2-D latent (`None`: no
    /// manifold picture).
    fn manifold(&self) -> Result<Option<Tensor>>;
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
    fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Tensor> {
        Ok(self.vae().interpolate(x_a, x_b, n_steps)?)
    }
    fn manifold(&self) -> Result<Option<Tensor>> {
        Ok((self.latent_dim() == 2)
            .then(|| self.vae().manifold(MANIFOLD_SIDE))
            .transpose()?)
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
    fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Tensor> {
        Ok(self.model().interpolate(x_a, x_b, n_steps)?)
    }
    fn manifold(&self) -> Result<Option<Tensor>> {
        Ok(None)
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
        save_grid_png(&both, self.originals.dim(0)?, &path)?;
        if let Some(samples) = self.inner.generate(&self.sample_eps)? {
            let path = self.run_dir.join(format!("samples_epoch_{epoch:02}.png"));
            save_grid_png(&samples, 8, &path)?;
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
        self.save_pictures(epoch).map_err(|e| core_error(format!("{e:#}")))?;
        Ok(metrics)
    }

    fn save_state(&self, checkpoint: &mut Checkpoint) -> deepgen_core::Result<()> {
        self.inner.save_state(checkpoint)
    }

    fn load_state(&mut self, checkpoint: &Checkpoint, path: &Path) -> deepgen_core::Result<()> {
        self.inner.load_state(checkpoint, path)
    }
}

/// The end-of-run pictures: loss curve, interpolation and (2-D latent) manifold.
fn final_pictures(run_dir: &Path, test_images: &Tensor, model: &impl Pictured) -> Result<Vec<PathBuf>> {
    let mut written: Vec<PathBuf> = save_loss_curve(run_dir)?.into_iter().collect();
    let (pairs, steps) = INTERPOLATION;
    let pairs = pairs.min(test_images.dim(0)? / 2);
    if pairs > 0 {
        let mut rows = Vec::with_capacity(pairs);
        for p in 0..pairs {
            let a = test_images.narrow(0, 2 * p, 1)?;
            let b = test_images.narrow(0, 2 * p + 1, 1)?;
            rows.push(model.interpolate(&a, &b, steps)?);
        }
        let path = run_dir.join("interpolation.png");
        save_grid_png(&Tensor::cat(&rows, 0)?, steps, &path)?;
        written.push(path);
    }
    if let Some(grid) = model.manifold()? {
        let path = run_dir.join("manifold.png");
        save_grid_png(&grid, MANIFOLD_SIDE, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// `deepgen train vae` and `deepgen train ae` once the options are checked:
/// builds the model `M` of `config`, prints the `headline` lines (given the
/// run, the trainer, the data and the device), trains it with pictures after
/// every epoch, and draws the end-of-run pictures.
fn train_with_pictures<M>(
    mut run: TrainRun,
    config: &M::Config,
    headline: impl FnOnce(&TrainRun, &Trainer<M>, &Mnist, &Device) -> Vec<String>,
) -> Result<()>
where
    M: TrainableModel,
    Trainer<M>: Pictured,
{
    let device = run.open_device()?;
    let data = run.load_data()?;
    let test_images = data.test_images.to_device(&device)?;
    let trainer = Trainer::<M>::new(config, run.adam(), run.args.seed, &device)?
        .with_test_set(test_images.clone(), EVAL_BATCH)?;
    let headline = headline(&run, &trainer, &data, &device);
    let config_text = trainer.model().config().to_text();
    let mut step = WithPictures::new(trainer, run.run_dir(), &test_images, run.args.seed)?;
    let mut batches = ImageBatches::new(&data.train_images, run.resolved.batch_size, &device)?;

    run.create_run_dir(vec![(M::FAMILY, ConfigValue::Text(config_text))])?;
    for line in &headline {
        run.announce(line);
    }
    let Some(records) = run.fit(&mut step, &mut batches)? else {
        return Ok(());
    };
    let pictures = final_pictures(run.run_dir(), &test_images, &step.inner)?;
    run.say_done(&records, &done_summary(&records), &[]);
    say_pictures(&pictures);
    Ok(())
}

/// `(1.23 s of training per epoch), test loss 101.2345 nats` for the closing
/// line.
fn done_summary(records: &[EpochRecord]) -> String {
    let mean_train = records.iter().map(|r| r.train_seconds).sum::<f64>() / records.len().max(1) as f64;
    let test = records
        .last()
        .and_then(|r| r.eval.get("test_loss"))
        .map_or_else(String::new, |t| format!(", test loss {t:.4} nats"));
    format!(" ({mean_train:.2} s of training per epoch){test}")
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
    let run = TrainRun::new(&args.common, Vae::FAMILY, VAE_DEFAULTS)?;
    let config = vae_config(&args)?;
    train_with_pictures::<Vae>(run, &config, |run, trainer, data, device| {
        let n_params: usize = trainer.varmap().all_vars().iter().map(|v| v.elem_count()).sum();
        vec![
            format!(
                "training a VAE `{}` ({} parameters) {}",
                config.to_text(),
                group_thousands(n_params),
                run.data_summary(data)
            ),
            run.schedule_summary(device),
        ]
    })
}

/// `deepgen train ae`.
pub fn train_ae(args: AeTrainArgs) -> Result<()> {
    let run = TrainRun::new(&args.common, Autoencoder::FAMILY, AE_DEFAULTS)?;
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
    train_with_pictures::<Autoencoder>(run, &config, |run, _trainer, data, device| {
        vec![format!(
            "training an autoencoder `{}` {}; {}",
            config.to_text(),
            run.data_summary(data),
            run.schedule_summary(device)
        )]
    })
}

/// `deepgen eval vae`: the importance-sampled test log-likelihood and the ELBO.
pub fn eval(args: EvalArgs) -> Result<()> {
    let path = checkpoint_file(&args.checkpoint, "vae")?;
    let device = open_device(args.device)?;
    let (model, _vars) =
        load_vae(&path, &device).with_context(|| format!("cannot load a VAE from `{}`", path.display()))?;
    let (dataset, data) = args.data.load(args.data_dir.as_deref())?;
    let n = args.n_test.map_or(data.n_test(), |n| n.min(data.n_test()));
    let images = data.test_images.narrow(0, 0, n)?.to_device(&device)?;
    say(&format!(
        "`{}`: VAE `{}`; {dataset} test set, {n} images, K = {} importance samples each",
        path.display(),
        model.config().to_text(),
        args.k
    ));

    let started = Instant::now();
    let bar = progress_bar(
        n as u64,
        "log p(x) [{bar:30}] {pos}/{len} images {msg} ({elapsed}, eta {eta})",
    );
    let mut rng = derived_rng(args.seed, 0);
    let (mut sum_ll, mut start) = (0f64, 0);
    while start < n {
        let len = args.batch_size.min(n - start);
        let xs = images.narrow(0, start, len)?;
        let ll = model.importance_log_likelihood(&xs, args.k, &mut rng)?;
        sum_ll += ll.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
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
