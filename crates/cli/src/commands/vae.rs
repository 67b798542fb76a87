//! `deepgen train vae`, `deepgen train ae` and `deepgen eval vae`.
//!
//! Training goes through common's [`train_with_pictures`] (and so
//! [`crate::common::TrainRun`] and deepgen-core's loop) with deepgen-vae's
//! [`VaeTrainer`] / [`AeTrainer`]: after every epoch's evaluation it writes
//! `reconstructions_epoch_XX.png` (test originals above, reconstructions
//! below) and, for the VAE, `samples_epoch_XX.png` (decoder means of prior
//! samples, the same noise every epoch). After the last epoch come
//! `interpolation.png` (latent interpolation between pairs of test digits),
//! `manifold.png` (2-D latent only) and `loss_curve.png` (from
//! `metrics.csv`).

use crate::common::{
    CommonTrainArgs, ConfigValue, EVAL_BATCH, LikelihoodEvalArgs, MANIFOLD_SIDE, ModelDefaults, Pictured,
    PicturedModel, TrainRun, at_least_one, checkpoint_file, non_negative_f64, open_device, parameter_count,
    train_with_pictures,
};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use deepgen_core::candle::{Device, Tensor};
use deepgen_core::train::TrainStep;
use deepgen_data::Mnist;
use deepgen_vae::config::ConfigText;
use deepgen_vae::train::{TrainableModel, Trainer};
use deepgen_vae::{
    AeConfig, AeKind, AeTrainer, Architecture, Autoencoder, DecoderKind, Objective, PriorKind, Reconstruction,
    SparsityPenalty, Vae, VaeConfig, VaeTrainer, load_vae,
};
use std::path::PathBuf;

/// pytorch/examples' VAE: ten epochs of Adam at 1e-3 on batches of 128.
const VAE_DEFAULTS: ModelDefaults = ModelDefaults {
    epochs: 10,
    batch_size: 128,
    lr: 1e-3,
};

/// The autoencoders use the VAE's schedule.
const AE_DEFAULTS: ModelDefaults = VAE_DEFAULTS;

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

/// `--output-bias`: how the decoder's output bias starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputBiasArg {
    /// The training data's per-pixel log-odds (Bernoulli) or mean (Gaussian).
    Marginal,
    /// nn.Linear's U(±1/√fan_in), as pytorch/examples.
    Pytorch,
}

impl OutputBiasArg {
    /// Its `config.toml` value.
    fn name(self) -> &'static str {
        match self {
            Self::Marginal => "marginal",
            Self::Pytorch => "pytorch",
        }
    }
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
    /// How the decoder's output bias starts: at the data's marginal, so the
    /// first steps need not learn the mean image, or as PyTorch's nn.Linear.
    #[arg(long, value_enum, default_value_t = OutputBiasArg::Marginal)]
    pub output_bias: OutputBiasArg,
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
    #[command(flatten)]
    pub eval: LikelihoodEvalArgs,
}

impl Pictured for VaeTrainer {
    fn reconstruct(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(self.vae().reconstruct(xs)?)
    }
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.vae().generate(eps)?))
    }
    fn noise_dim(&self) -> usize {
        self.vae().config().latent_dim
    }
    fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Tensor> {
        Ok(self.vae().interpolate(x_a, x_b, n_steps)?)
    }
    fn manifold(&self) -> Result<Option<Tensor>> {
        Ok((self.noise_dim() == 2)
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
    fn noise_dim(&self) -> usize {
        self.model().config().latent_dim
    }
    fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Tensor> {
        Ok(self.model().interpolate(x_a, x_b, n_steps)?)
    }
    fn manifold(&self) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

/// `deepgen train vae` and `deepgen train ae` once the options are checked:
/// [`train_with_pictures`] with the model `M` of `config`, initialised from
/// the training images when `init_from_data` ([`Trainer::init_from_data`]),
/// its `config.toml` entries `entries` and the `headline` lines (given the
/// run, the trainer, the data and the device).
fn train_vae_family<M>(
    run: TrainRun,
    config: &M::Config,
    init_from_data: bool,
    mut entries: Vec<(&'static str, ConfigValue)>,
    headline: impl FnOnce(&TrainRun, &Trainer<M>, &Mnist, &Device) -> Vec<String>,
) -> Result<()>
where
    M: TrainableModel,
    Trainer<M>: Pictured + TrainStep<Batch = Tensor>,
{
    train_with_pictures(run, |run, input| {
        let mut trainer = Trainer::<M>::new(config, run.adam(), run.args.seed, &input.device)?
            .with_test_set(input.test_images.clone(), EVAL_BATCH)?;
        if init_from_data {
            trainer.init_from_data(&input.data.train_images)?;
        }
        let headline = headline(run, &trainer, &input.data, &input.device);
        entries.insert(0, (M::FAMILY, ConfigValue::Text(trainer.model().config().to_text())));
        Ok(PicturedModel {
            step: trainer,
            config: entries,
            headline,
        })
    })
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
    let output_bias = args.output_bias;
    let entries = vec![("output_bias", ConfigValue::Text(output_bias.name().into()))];
    let init_from_data = output_bias == OutputBiasArg::Marginal;
    train_vae_family::<Vae>(run, &config, init_from_data, entries, |run, trainer, data, device| {
        vec![
            format!(
                "training a VAE `{}` ({} parameters, output bias {}) {}",
                config.to_text(),
                parameter_count(trainer.varmap()),
                output_bias.name(),
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
    train_vae_family::<Autoencoder>(run, &config, false, Vec::new(), |run, _trainer, data, device| {
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
    let device = open_device(args.eval.device)?;
    let (model, _vars) =
        load_vae(&path, &device).with_context(|| format!("cannot load a VAE from `{}`", path.display()))?;
    let eval = args
        .eval
        .start(&path, &format!("VAE `{}`", model.config().to_text()), &device)?;
    eval.log_likelihood(|xs, k, rng| Ok(model.importance_log_likelihood(xs, k, rng)?))?;
    let elbo = model.mean_loss(eval.images(), EVAL_BATCH, &mut eval.elbo_rng())?;
    eval.say_elbo(
        -elbo.negative_elbo,
        &format!("recon {:.4}, KL {:.4}", elbo.recon, elbo.kl),
    );
    Ok(())
}
