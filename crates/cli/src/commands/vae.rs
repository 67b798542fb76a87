//! `deepgen train vae`: deepgen-vae's VAE on [`crate::run::train`] (`sample vae` and `eval vae` are
//! the generic ones). A run draws reconstructions and samples after every epoch, and at the end the
//! interpolation, the latent manifold (2-D latent) and the loss curve.

use crate::args::{at_least_one, config_flags, non_negative_f64};
use crate::run::{EVAL_BATCH, MAX_TRAIN_IMAGES, ModelCommand, RunDefaults};
use crate::run::{RunSettings, TrainData, refuse_beyond_memory};
use anyhow::Result;
use deepgen_core::{Metrics, StdRng, candle::Tensor};
use deepgen_vae::{Architecture, DecoderKind, Objective, OutputBias, PriorKind, Vae, VaeConfig};
use serde::{Deserialize, Serialize};

config_flags! {
    /// The VAE's own flags; each overrides `[model]`/`[training]` of `--config`.
    pub struct VaeFlags onto (model: VaeConfig, training: VaeTraining) {
        /// Encoder and decoder networks: mlp (784-H-Z, pytorch/examples) or conv [default: mlp].
        #[arg(long)] arch: Architecture => model.architecture,
        /// Hidden units H [default: 400].
        #[arg(long, value_name = "H", value_parser = at_least_one)] hidden: usize => model.hidden_dim,
        /// Latent dims Z (2 also draws the latent manifold) [default: 20].
        #[arg(long, value_name = "Z", value_parser = at_least_one)] latent: usize => model.latent_dim,
        /// Observation model p(x|z): bernoulli, gaussian or gaussian-learned [default: bernoulli].
        #[arg(long)] decoder: DecoderKind => model.decoder,
        /// Prior p(z): standard or learned [default: standard].
        #[arg(long)] prior: PriorKind => model.prior,
        /// Weight β of the KL term (1: the ELBO) [default: 1].
        #[arg(long, value_name = "B", allow_hyphen_values = true, value_parser = non_negative_f64)]
        beta: f64 => model.beta,
        /// Samples L of z per example for the reconstruction term [default: 1].
        #[arg(long, value_name = "L", value_parser = at_least_one)] samples: usize => model.n_samples,
        /// Train on the IWAE bound with K importance samples instead of the ELBO.
        #[arg(long, value_name = "K", value_parser = at_least_one)]
        iwae_k: usize => model.objective = |k| Objective::Iwae { k },
        /// How the decoder's output bias starts: marginal (the data's log-odds) or pytorch (nn.Linear's)
        /// [default: marginal].
        #[arg(long)] output_bias: OutputBias => training.output_bias,
    }
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
    /// pytorch/examples' VAE: ten epochs of Adam at 1e-3 on batches of 128.
    const DEFAULTS: RunDefaults = RunDefaults {
        epochs: 10,
        batch_size: 128,
        lr: 1e-3,
    };

    fn apply_flags(f: &VaeFlags, settings: &RunSettings, c: &mut VaeConfig, training: &mut VaeTraining) -> Result<()> {
        f.apply(c, training);
        c.validate()?;
        let batch = settings.batch_size.min(MAX_TRAIN_IMAGES);
        let knobs = "--samples, --iwae-k, --batch-size or the sizes --hidden and --latent";
        refuse_beyond_memory(c.step_bytes(batch), "one training step", knobs)
    }

    /// The decoder's output bias starts at the data's log-odds unless `--output-bias pytorch`.
    fn initialise(vae: &Vae, training: &VaeTraining, data: &TrainData) -> Result<()> {
        Ok(vae.decoder().start_output_bias(training.output_bias, &data.train)?)
    }

    fn test_metrics(vae: &Vae, test: &Tensor, _: &VaeTraining, rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        Ok(vae.test_metrics(test, EVAL_BATCH, rng)?)
    }
}
