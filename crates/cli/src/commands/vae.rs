//! `deepgen train vae`: deepgen-vae's VAE on [`crate::run::train`]; `sample
//! vae` and `eval vae` are the generic ones over its [`deepgen_core::Generative`]
//! and [`deepgen_core::LikelihoodModel`]. After every epoch a run writes
//! `reconstructions_epoch_XX.png` and `samples_epoch_XX.png`; at the end
//! `interpolation.png`, `manifold.png` (2-D latent) and `loss_curve.png`.

use crate::args::{at_least_one, non_negative_f64, set};
use crate::run::{EVAL_BATCH, MAX_TRAIN_IMAGES, ModelCommand, RunDefaults, RunSettings, TrainData};
use crate::run::{evaluate_on_test, refuse_beyond_memory};
use anyhow::Result;
use deepgen_core::candle::{Device, Tensor};
use deepgen_core::{Metrics, StdRng, Trainer};
use deepgen_vae::{Architecture, DecoderKind, Objective, OutputBias, PriorKind, Vae, VaeConfig};
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
    #[arg(long)]
    pub output_bias: Option<OutputBias>,
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

    fn apply_flags(f: &VaeFlags, settings: &RunSettings, c: &mut VaeConfig, training: &mut VaeTraining) -> Result<()> {
        set(&mut c.architecture, f.arch);
        set(&mut c.hidden_dim, f.hidden);
        set(&mut c.latent_dim, f.latent);
        set(&mut c.decoder, f.decoder);
        set(&mut c.prior, f.prior);
        set(&mut c.beta, f.beta);
        set(&mut c.n_samples, f.samples);
        set(&mut c.objective, f.iwae_k.map(|k| Objective::Iwae { k }));
        set(&mut training.output_bias, f.output_bias);
        c.validate()?;
        let batch = settings.batch_size.min(MAX_TRAIN_IMAGES);
        let knobs = "--samples, --iwae-k, --batch-size or the sizes --hidden and --latent";
        refuse_beyond_memory(c.step_bytes(batch), "one training step", knobs)
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
