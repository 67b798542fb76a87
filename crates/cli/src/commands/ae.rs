//! `deepgen train ae`: deepgen-vae's autoencoders (plain, linear, sparse) on
//! [`crate::run::train`], with the VAE's schedule and its pictures but for
//! the samples (an autoencoder has no prior).

use crate::args::{at_least_one, config_flags, non_negative_f64};
use crate::commands::vae::VaeCommand;
use crate::run::{EVAL_BATCH, ModelCommand, NoTraining, RunDefaults, RunSettings};
use anyhow::Result;
use deepgen_core::candle::Tensor;
use deepgen_core::{Metrics, StdRng};
use deepgen_vae::{AeConfig, AeKind, Autoencoder, Reconstruction, SparsityPenalty};

config_flags! {
    /// The autoencoder's own flags; each overrides `[model]` of `--config`.
    pub struct AeFlags onto (model: AeConfig, training: NoTraining) {
        /// Which autoencoder: plain, linear (learns the PCA subspace) or sparse [default: plain].
        #[arg(long)] kind: AeKind => model.kind,
        /// Hidden units H (plain and sparse) [default: 400].
        #[arg(long, value_name = "H", value_parser = at_least_one)] hidden: usize => model.hidden_dim,
        /// Code size Z [default: 20].
        #[arg(long, value_name = "Z", value_parser = at_least_one)] latent: usize => model.latent_dim,
        /// Reconstruction term: squared-error or bernoulli [default: squared-error].
        #[arg(long)] recon: Reconstruction => model.reconstruction,
        /// Sparsity penalty (sparse only): l1 or laplace [default: l1].
        #[arg(long)] penalty: SparsityPenalty => model.penalty,
        /// λ of the sparsity penalty (sparse only) [default: 0.1].
        #[arg(long, value_name = "λ", allow_hyphen_values = true, value_parser = non_negative_f64)]
        sparsity: f64 => model.sparsity,
    }
}

/// `deepgen train ae`.
#[derive(Debug)]
pub struct AeCommand;

impl ModelCommand for AeCommand {
    type Model = Autoencoder;
    type Training = NoTraining;
    type Flags = AeFlags;
    const DESCRIPTION: &'static str = "an autoencoder";
    const DEFAULTS: RunDefaults = VaeCommand::DEFAULTS;

    fn apply_flags(f: &AeFlags, _: &RunSettings, c: &mut AeConfig, training: &mut NoTraining) -> Result<()> {
        f.apply(c, training);
        Ok(c.validate()?)
    }

    fn test_metrics(ae: &Autoencoder, test: &Tensor, _: &NoTraining, _: &mut StdRng) -> deepgen_core::Result<Metrics> {
        Ok(ae.test_metrics(test, EVAL_BATCH)?)
    }
}
