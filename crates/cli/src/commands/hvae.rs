//! `deepgen train hvae`: the two-stochastic-layer hierarchical VAE of
//! deepgen-hvae on [`crate::run::train`], with the VAE's pictures (`sample`
//! and `eval` are the generic ones); `metrics.csv` adds the per-layer KL,
//! the active units of each layer and `β`, the columns of posterior collapse.

use crate::args::{at_least_one, config_flags, non_negative_f64, positive_f64};
use crate::commands::vae::VaeCommand;
use crate::run::{EVAL_BATCH, ModelCommand, RunDefaults, RunSettings};
use anyhow::{Result, bail};
use deepgen_core::candle::Tensor;
use deepgen_core::{Metrics, StdRng};
use deepgen_hvae::{Hvae, HvaeConfig, KlSchedule};
use serde::{Deserialize, Serialize};

/// Test images of the per-epoch `test_log_px` of `--eval-k` (K decoder passes each).
const LOG_PX_IMAGES: usize = 1000;
/// The largest `--eval-k`: 10⁹ decoder passes after every epoch.
const MAX_EVAL_K: usize = 1_000_000;

config_flags! {
    /// The hierarchical VAE's own flags; each overrides `[model]`/`[training]` of `--config`.
    pub struct HvaeFlags onto (model: HvaeConfig, training: HvaeTraining) {
        /// Size of the lower latent z1 (the one the decoder reads) [default: 100].
        #[arg(long, value_name = "D1", value_parser = at_least_one)] z1: usize => model.latent1,
        /// Size of the top latent z2 [default: 50].
        #[arg(long, value_name = "D2", value_parser = at_least_one)] z2: usize => model.latent2,
        /// Hidden layers of q(z1|x), comma-separated; p(x|z1) mirrors them [default: 200,200].
        #[arg(long, value_name = "H", value_delimiter = ',', value_parser = at_least_one)]
        hidden1: Vec<usize> => model.hidden1,
        /// Hidden layers of q(z2|z1), comma-separated; p(z1|z2) mirrors them [default: 100,100].
        #[arg(long, value_name = "H", value_delimiter = ',', value_parser = at_least_one)]
        hidden2: Vec<usize> => model.hidden2,
        /// KL warm-up: β rises linearly from 0 to 1 over EPOCHS epochs [default: β = 1 throughout].
        #[arg(long, value_name = "EPOCHS", allow_hyphen_values = true, value_parser = non_negative_f64)]
        warmup: f64 => model.schedule = |warmup| KlSchedule::Linear { warmup },
        /// Cyclical KL annealing: β rises from 0 to 1 over the first half of every PERIOD epochs, then holds 1.
        #[arg(long, value_name = "PERIOD", allow_hyphen_values = true, value_parser = positive_f64, conflicts_with = "warmup")]
        cyclical: f64 => model.schedule = |period| KlSchedule::Cyclical { period, ramp: 0.5 },
        /// Free bits: each group's KL counts as at least LAMBDA nats (0: off) [default: 0].
        #[arg(long, value_name = "LAMBDA", allow_hyphen_values = true, value_parser = non_negative_f64)]
        free_bits: f64 => model.free_bits,
        /// Latent units per free-bits group (1: per unit) [default: 1].
        #[arg(long, value_name = "G", value_parser = at_least_one)] free_bits_group: usize => model.free_bits_group,
        /// Also report test_log_px after every epoch: log p(x) by importance sampling with K samples on the first 1000 test images.
        #[arg(long, value_name = "K", value_parser = at_least_one)] eval_k: usize => training.eval_k = Some,
    }
}

/// The hierarchical VAE's `[training]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HvaeTraining {
    /// K of the per-epoch `test_log_px` (none: not reported).
    pub eval_k: Option<usize>,
}

/// `deepgen train hvae`.
#[derive(Debug)]
pub struct HvaeCommand;

impl ModelCommand for HvaeCommand {
    type Model = Hvae;
    type Training = HvaeTraining;
    type Flags = HvaeFlags;
    const DESCRIPTION: &'static str = "a hierarchical VAE";
    /// The VAE's schedule, so that the two models compare run for run.
    const DEFAULTS: RunDefaults = VaeCommand::DEFAULTS;

    fn apply_flags(f: &HvaeFlags, _: &RunSettings, c: &mut HvaeConfig, training: &mut HvaeTraining) -> Result<()> {
        f.apply(c, training);
        if let Some(k) = training.eval_k.filter(|&k| k > MAX_EVAL_K) {
            bail!(
                "--eval-k {k}: above {MAX_EVAL_K} the per-epoch log p(x) takes hours; `deepgen eval hvae --k` shows progress"
            );
        }
        Ok(c.validate()?)
    }

    fn test_metrics(m: &Hvae, test: &Tensor, t: &HvaeTraining, rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        let log_px = t.eval_k.map(|k| (k, LOG_PX_IMAGES));
        Ok(m.test_metrics(test, EVAL_BATCH, log_px, rng)?)
    }

    /// A schedule that does not reach β = 1 by the end optimises something other than the ELBO.
    fn warning(config: &HvaeConfig, settings: &RunSettings) -> Option<String> {
        config.schedule_warning(settings.epochs)
    }
}
