//! `deepgen train vae`, `train ae`, `sample vae` and `eval vae`: deepgen-vae's
//! models on [`crate::run::train`]. After every epoch a run writes
//! `reconstructions_epoch_XX.png` and (VAE) `samples_epoch_XX.png`; at the
//! end `interpolation.png`, `manifold.png` (2-D latent) and `loss_curve.png`.

use crate::args::{at_least_one, non_negative_f64, set};
use crate::eval::{LikelihoodCommandArgs, LikelihoodModel};
use crate::pictures::{MANIFOLD_SIDE, Pictured};
use crate::run::{EVAL_BATCH, ModelCommand, RunDefaults, RunSettings, TrainData, evaluate_on_test};
use anyhow::Result;
use deepgen_core::candle::{Device, Tensor};
use deepgen_core::{Metrics, StdRng, Trainer};
use deepgen_vae::{AeConfig, AeKind, Architecture, Autoencoder, DecoderKind, Objective, PriorKind, Vae, VaeConfig};
use deepgen_vae::{Reconstruction, SparsityPenalty};
use serde::{Deserialize, Serialize};

/// pytorch/examples' VAE: ten epochs of Adam at 1e-3 on batches of 128 (the autoencoders too).
pub const DEFAULTS: RunDefaults = RunDefaults {
    epochs: 10,
    batch_size: 128,
    lr: 1e-3,
};

/// Flags of `deepgen train vae`.
pub type TrainArgs = crate::args::TrainArgs<VaeFlags>;

/// The VAE's own flags; each overrides `[model]`/`[training]` of `--config`.
#[derive(Debug, clap::Args)]
pub struct VaeFlags {
    /// Encoder and decoder networks: mlp (784-H-Z, pytorch/examples) or conv [default: mlp].
    #[arg(long)]
    pub arch: Option<Architecture>,
    /// Hidden units H [default: 400].
    #[arg(long, value_name = "H", value_parser = at_least_one)]
    pub hidden: Option<usize>,
    /// Latent dims Z (2 also draws the latent manifold) [default: 20].
    #[arg(long, value_name = "Z", value_parser = at_least_one)]
    pub latent: Option<usize>,
    /// Observation model p(x|z): bernoulli, gaussian or gaussian-learned [default: bernoulli].
    #[arg(long)]
    pub decoder: Option<DecoderKind>,
    /// Prior p(z): standard or learned [default: standard].
    #[arg(long)]
    pub prior: Option<PriorKind>,
    /// Weight β of the KL term (1: the ELBO) [default: 1].
    #[arg(long, value_name = "B", allow_hyphen_values = true, value_parser = non_negative_f64)]
    pub beta: Option<f64>,
    /// Samples L of z per example for the reconstruction term [default: 1].
    #[arg(long, value_name = "L", value_parser = at_least_one)]
    pub samples: Option<usize>,
    /// Train on the IWAE bound with K importance samples instead of the ELBO.
    #[arg(long, value_name = "K", value_parser = at_least_one)]
    pub iwae_k: Option<usize>,
    /// How the decoder's output bias starts: marginal (the data's log-odds) or pytorch (nn.Linear's) [default: marginal].
    #[arg(long, value_enum)]
    pub output_bias: Option<OutputBias>,
}

/// How the decoder's output bias starts (`[training] output_bias`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputBias {
    /// The training data's per-pixel log-odds (Bernoulli) or mean (Gaussian).
    #[default]
    Marginal,
    /// nn.Linear's U(±1/√fan_in), as pytorch/examples.
    Pytorch,
}

/// The VAE's `[training]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaeTraining {
    /// How the decoder's output bias starts.
    pub output_bias: OutputBias,
}

/// `deepgen train vae`.
#[derive(Debug)]
pub struct VaeCommand;

impl ModelCommand for VaeCommand {
    type Model = Vae;
    type Training = VaeTraining;
    type Flags = VaeFlags;
    const DESCRIPTION: &'static str = "a VAE";
    const DEFAULTS: RunDefaults = DEFAULTS;

    fn apply_flags(f: &VaeFlags, _: &RunSettings, c: &mut VaeConfig, training: &mut VaeTraining) -> Result<()> {
        set(&mut c.architecture, f.arch);
        set(&mut c.hidden_dim, f.hidden);
        set(&mut c.latent_dim, f.latent);
        set(&mut c.decoder, f.decoder);
        set(&mut c.prior, f.prior);
        set(&mut c.beta, f.beta);
        set(&mut c.n_samples, f.samples);
        set(&mut c.objective, f.iwae_k.map(|k| Objective::Iwae { k }));
        set(&mut training.output_bias, f.output_bias);
        Ok(c.validate()?)
    }

    fn prepare(
        trainer: Trainer<Vae>,
        training: &VaeTraining,
        data: &TrainData,
        device: &Device,
    ) -> Result<Trainer<Vae>> {
        if training.output_bias == OutputBias::Marginal {
            trainer.model().decoder().init_output_bias(&data.train)?;
        }
        evaluate_on_test::<Self>(trainer, training, data, device)
    }

    fn test_metrics(vae: &Vae, test: &Tensor, _: &VaeTraining, rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        Ok(vae.test_metrics(test, EVAL_BATCH, rng)?)
    }
}

impl Pictured for Vae {
    fn reconstruct(&self, xs: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(Vae::reconstruct(self, xs)?))
    }
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(Vae::generate(self, eps)?))
    }
    fn noise_dim(&self) -> usize {
        self.config().latent_dim
    }
    fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Option<Tensor>> {
        Ok(Some(Vae::interpolate(self, x_a, x_b, n_steps)?))
    }
    fn manifold(&self) -> Result<Option<Tensor>> {
        Ok((self.noise_dim() == 2)
            .then(|| Vae::manifold(self, MANIFOLD_SIDE))
            .transpose()?)
    }
}

impl LikelihoodModel for Vae {
    const NAME: &'static str = "VAE";

    fn importance_log_likelihood(&self, xs: &Tensor, k: usize, rng: &mut StdRng) -> Result<Tensor> {
        Ok(Vae::importance_log_likelihood(self, xs, k, rng)?)
    }

    fn elbo(&self, images: &Tensor, rng: &mut StdRng) -> Result<(f64, String)> {
        let l = self.mean_loss(images, EVAL_BATCH, rng)?;
        let parts = format!("recon {:.4}, KL {:.4}", l.recon, l.kl);
        Ok((-l.negative_elbo, parts))
    }
}

/// Flags of `deepgen eval vae`.
pub type EvalArgs = LikelihoodCommandArgs<Vae>;
/// `deepgen eval vae`: the importance-sampled test log-likelihood and the ELBO.
pub use crate::eval::eval_likelihood as eval;

/// Flags of `deepgen train ae`.
pub type AeTrainArgs = crate::args::TrainArgs<AeFlags>;

/// The autoencoder's own flags; each overrides `[model]` of `--config`.
#[derive(Debug, clap::Args)]
pub struct AeFlags {
    /// Which autoencoder: plain, linear (learns the PCA subspace) or sparse [default: plain].
    #[arg(long)]
    pub kind: Option<AeKind>,
    /// Hidden units H (plain and sparse) [default: 400].
    #[arg(long, value_name = "H", value_parser = at_least_one)]
    pub hidden: Option<usize>,
    /// Code size Z [default: 20].
    #[arg(long, value_name = "Z", value_parser = at_least_one)]
    pub latent: Option<usize>,
    /// Reconstruction term: squared-error or bernoulli [default: squared-error].
    #[arg(long)]
    pub recon: Option<Reconstruction>,
    /// Sparsity penalty (sparse only): l1 or laplace [default: l1].
    #[arg(long)]
    pub penalty: Option<SparsityPenalty>,
    /// λ of the sparsity penalty (sparse only) [default: 0.1].
    #[arg(long, value_name = "λ", allow_hyphen_values = true, value_parser = non_negative_f64)]
    pub sparsity: Option<f64>,
}

/// `deepgen train ae`.
#[derive(Debug)]
pub struct AeCommand;

impl ModelCommand for AeCommand {
    type Model = Autoencoder;
    type Training = NoTraining;
    type Flags = AeFlags;
    const DESCRIPTION: &'static str = "an autoencoder";
    const DEFAULTS: RunDefaults = DEFAULTS;

    fn apply_flags(f: &AeFlags, _: &RunSettings, c: &mut AeConfig, _: &mut NoTraining) -> Result<()> {
        set(&mut c.kind, f.kind);
        set(&mut c.hidden_dim, f.hidden);
        set(&mut c.latent_dim, f.latent);
        set(&mut c.reconstruction, f.recon);
        set(&mut c.penalty, f.penalty);
        set(&mut c.sparsity, f.sparsity);
        Ok(c.validate()?)
    }

    fn test_metrics(ae: &Autoencoder, test: &Tensor, _: &NoTraining, _: &mut StdRng) -> deepgen_core::Result<Metrics> {
        Ok(ae.test_metrics(test, EVAL_BATCH)?)
    }
}

/// An empty `[training]` table, for families without training options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoTraining {}

impl Pictured for Autoencoder {
    fn reconstruct(&self, xs: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(Autoencoder::reconstruct(self, xs)?))
    }
    fn generate(&self, _eps: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
    fn noise_dim(&self) -> usize {
        self.config().latent_dim
    }
    fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Option<Tensor>> {
        Ok(Some(Autoencoder::interpolate(self, x_a, x_b, n_steps)?))
    }
}
