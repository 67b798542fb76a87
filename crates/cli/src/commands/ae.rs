//! `deepgen train ae`: deepgen-vae's autoencoders (plain, linear, sparse) on
//! [`crate::run::train`], with the VAE's schedule and its pictures but for
//! the samples (an autoencoder has no prior).

use crate::args::{at_least_one, non_negative_f64, set};
use crate::commands::vae::DEFAULTS;
use crate::run::{EVAL_BATCH, ModelCommand, NoTraining, RunDefaults, RunSettings};
use anyhow::Result;
use deepgen_core::candle::Tensor;
use deepgen_core::{Metrics, StdRng};
use deepgen_vae::{AeConfig, AeKind, Autoencoder, Reconstruction, SparsityPenalty};

/// Flags of `deepgen train ae`.
pub type TrainArgs = crate::args::TrainArgs<AeFlags>;

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
