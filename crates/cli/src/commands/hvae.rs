//! `deepgen train hvae`, `sample hvae` and `eval hvae`: the two-stochastic-layer
//! hierarchical VAE of deepgen-hvae on [`crate::run::train`], with the same
//! pictures as the VAE; `metrics.csv` adds the per-layer KL, the active
//! units of each layer and `β`, the columns that show posterior collapse.

use crate::args::{RunFlags, at_least_one, non_negative_f64, positive_f64};
use crate::commands::vae::set;
use crate::eval::{LikelihoodEvalArgs, SampleScoreArgs};
use crate::pictures::Pictured;
use crate::run::{EVAL_BATCH, ModelCommand, RunDefaults, RunSettings, TrainData, checkpoint_file, open_device};
use anyhow::{Context, Result};
use deepgen_core::Trainer;
use deepgen_core::candle::{Device, Tensor};
use deepgen_core::trainer::config_json;
use deepgen_hvae::{Hvae, HvaeConfig, KlSchedule, load_hvae};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Test images of the per-epoch `test_log_px` of `--eval-k` (K decoder passes each).
const LOG_PX_IMAGES: usize = 1000;

/// Flags of `deepgen train hvae`; each overrides `[model]`/`[training]` of `--config`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Size of the lower latent z1 (the one the decoder reads) [default: 100].
    #[arg(long, value_name = "D1", value_parser = at_least_one)]
    pub z1: Option<usize>,
    /// Size of the top latent z2 [default: 50].
    #[arg(long, value_name = "D2", value_parser = at_least_one)]
    pub z2: Option<usize>,
    /// Hidden layers of q(z1|x), comma-separated; p(x|z1) mirrors them [default: 200,200].
    #[arg(long, value_name = "H", value_delimiter = ',', value_parser = at_least_one)]
    pub hidden1: Option<Vec<usize>>,
    /// Hidden layers of q(z2|z1), comma-separated; p(z1|z2) mirrors them [default: 100,100].
    #[arg(long, value_name = "H", value_delimiter = ',', value_parser = at_least_one)]
    pub hidden2: Option<Vec<usize>>,
    /// KL warm-up: β rises linearly from 0 to 1 over EPOCHS epochs [default: β = 1 throughout].
    #[arg(long, value_name = "EPOCHS", allow_hyphen_values = true, value_parser = non_negative_f64)]
    pub warmup: Option<f64>,
    /// Cyclical KL annealing: β rises from 0 to 1 over the first half of every PERIOD epochs, then holds 1.
    #[arg(long, value_name = "PERIOD", allow_hyphen_values = true, value_parser = positive_f64, conflicts_with = "warmup")]
    pub cyclical: Option<f64>,
    /// Free bits: each group's KL counts as at least LAMBDA nats (0: off) [default: 0].
    #[arg(long, value_name = "LAMBDA", allow_hyphen_values = true, value_parser = non_negative_f64)]
    pub free_bits: Option<f64>,
    /// Latent units per free-bits group (1: per unit) [default: 1].
    #[arg(long, value_name = "G", value_parser = at_least_one)]
    pub free_bits_group: Option<usize>,
    /// Also report test_log_px after every epoch: log p(x) by importance sampling with K samples on the first 1000 test images.
    #[arg(long, value_name = "K", value_parser = at_least_one)]
    pub eval_k: Option<usize>,
    #[command(flatten)]
    pub run: RunFlags,
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
    type Flags = TrainArgs;
    const DESCRIPTION: &'static str = "a hierarchical VAE";
    /// The VAE's schedule, so that the two models compare run for run.
    const DEFAULTS: RunDefaults = RunDefaults {
        epochs: 10,
        batch_size: 128,
        lr: 1e-3,
    };

    fn run_flags(flags: &TrainArgs) -> &RunFlags {
        &flags.run
    }

    fn apply_flags(f: &TrainArgs, _: &RunSettings, c: &mut HvaeConfig, training: &mut HvaeTraining) -> Result<()> {
        set(&mut c.latent1, f.z1);
        set(&mut c.latent2, f.z2);
        set(&mut c.hidden1, f.hidden1.clone());
        set(&mut c.hidden2, f.hidden2.clone());
        set(&mut c.schedule, f.warmup.map(|warmup| KlSchedule::Linear { warmup }));
        set(
            &mut c.schedule,
            f.cyclical.map(|period| KlSchedule::Cyclical { period, ramp: 0.5 }),
        );
        set(&mut c.free_bits, f.free_bits);
        set(&mut c.free_bits_group, f.free_bits_group);
        set(&mut training.eval_k, f.eval_k.map(Some));
        Ok(c.validate()?)
    }

    fn prepare(
        trainer: Trainer<Hvae>,
        training: &HvaeTraining,
        data: &TrainData,
        device: &Device,
    ) -> Result<Trainer<Hvae>> {
        let test = data.test.to_device(device)?;
        let log_px = training.eval_k.map(|k| (k, LOG_PX_IMAGES));
        Ok(trainer.with_evaluation(move |m, rng| Ok(m.test_metrics(&test, EVAL_BATCH, log_px, rng)?)))
    }

    /// A schedule that does not reach β = 1 by the end optimises something other than the ELBO.
    fn warning(config: &HvaeConfig, settings: &RunSettings) -> Option<String> {
        config.schedule_warning(settings.epochs)
    }
}

impl Pictured for Hvae {
    fn reconstruct(&self, xs: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(Hvae::reconstruct(self, xs)?))
    }
    /// The noise is `[eps2 | eps1]`: `z2` first, as the prior draws it.
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>> {
        let config = self.config();
        let eps2 = eps.narrow(1, 0, config.latent2)?.contiguous()?;
        let eps1 = eps.narrow(1, config.latent2, config.latent1)?.contiguous()?;
        Ok(Some(Hvae::generate(self, &eps1, &eps2)?))
    }
    fn noise_dim(&self) -> usize {
        self.config().latent1 + self.config().latent2
    }
    fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Option<Tensor>> {
        Ok(Some(Hvae::interpolate(self, x_a, x_b, n_steps)?))
    }
}

/// Flags of `deepgen eval hvae`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Run directory of `deepgen train hvae` (or its checkpoint file).
    #[arg(long, value_name = "DIR", default_value = "runs/hvae-mnist")]
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub eval: LikelihoodEvalArgs,
    #[command(flatten)]
    pub scores: SampleScoreArgs,
}

/// `deepgen eval hvae`: the importance-sampled test log-likelihood and the ELBO.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let path = checkpoint_file(&args.checkpoint, "hvae")?;
    let device = open_device(args.eval.device)?;
    let (model, _vars) = load_hvae(&path, &device)
        .with_context(|| format!("cannot load a hierarchical VAE from `{}`", path.display()))?;
    let description = format!("hierarchical VAE {}", config_json(model.config())?);
    let eval = args.eval.start(&path, &description, &device)?;
    eval.log_likelihood(|xs, k, rng| Ok(model.importance_log_likelihood(xs, k, rng)?))?;
    let elbo = model.mean_loss(eval.images(), EVAL_BATCH, &mut eval.elbo_rng())?;
    let parts = format!("recon {:.4}, KL1 {:.4}, KL2 {:.4}", elbo.recon, elbo.kl1, elbo.kl2);
    eval.say_elbo(-elbo.negative_elbo, &parts);
    eval.score_samples(&model, &args.scores, &device)
}
