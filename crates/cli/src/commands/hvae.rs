//! `deepgen train hvae` and `deepgen eval hvae`: the two-stochastic-layer
//! hierarchical VAE of deepgen-hvae.
//!
//! Training runs exactly as `deepgen train vae` does (common's
//! [`train_with_pictures`]: the same run directory, per-epoch
//! reconstructions and prior samples, loss curve and interpolation at the
//! end), on the same input: grey levels in `[0, 1]` scored by the Bernoulli
//! decoder, as pytorch/examples' VAE does. `metrics.csv` adds the per-layer
//! KL, the active units of each layer and `β`, the columns that show
//! posterior collapse and what the warm-up does against it.

use crate::common::{
    CommonTrainArgs, ConfigValue, EVAL_BATCH, LikelihoodEvalArgs, ModelDefaults, Pictured, PicturedModel, TrainRun,
    at_least_one, checkpoint_file, metrics_has_column, non_negative_f64, open_device, parameter_count, positive_f64,
    train_with_pictures,
};
use anyhow::{Context, Result, bail};
use clap::Args;
use deepgen_core::candle::Tensor;
use deepgen_core::train::BatchSource;
use deepgen_hvae::{HvaeConfig, HvaeTrainer, KlSchedule, load_hvae};
use std::path::PathBuf;

/// The VAE's schedule (pytorch/examples: ten epochs of Adam at 1e-3 on
/// batches of 128), so that the two models compare run for run.
const DEFAULTS: ModelDefaults = ModelDefaults {
    epochs: 10,
    batch_size: 128,
    lr: 1e-3,
};

/// The `deepgen train <model>` name and the `config.toml` key of the model.
const MODEL: &str = "hvae";

/// Fraction of a `--cyclical` period spent raising `β` (Fu et al. 2019).
const CYCLE_RAMP: f64 = 0.5;

/// Test images of the per-epoch `test_log_px` of `--eval-k`: its cost is K
/// decoder passes per image, so it uses the first thousand, not all.
const LOG_PX_IMAGES: usize = 1000;

/// Flags of `deepgen train hvae`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Size of the lower latent z1 (the one the decoder reads).
    #[arg(long, value_name = "D1", default_value_t = 100, value_parser = at_least_one)]
    pub z1: usize,
    /// Size of the top latent z2.
    #[arg(long, value_name = "D2", default_value_t = 50, value_parser = at_least_one)]
    pub z2: usize,
    /// Hidden layers of q(z1|x), comma-separated or repeated; p(x|z1) mirrors them.
    #[arg(long, value_name = "H", value_delimiter = ',', default_value = "200,200", value_parser = at_least_one)]
    pub hidden1: Vec<usize>,
    /// Hidden layers of q(z2|z1), comma-separated or repeated; p(z1|z2) mirrors them.
    #[arg(long, value_name = "H", value_delimiter = ',', default_value = "100,100", value_parser = at_least_one)]
    pub hidden2: Vec<usize>,
    /// KL warm-up: β rises linearly from 0 to 1 over EPOCHS epochs [default: β = 1 throughout].
    #[arg(long, value_name = "EPOCHS", allow_hyphen_values = true, value_parser = non_negative_f64)]
    pub warmup: Option<f64>,
    /// Cyclical KL annealing: β rises from 0 to 1 over the first half of every PERIOD epochs, then holds 1.
    #[arg(long, value_name = "PERIOD", allow_hyphen_values = true, value_parser = positive_f64, conflicts_with = "warmup")]
    pub cyclical: Option<f64>,
    /// Free bits: each group's KL counts as at least LAMBDA nats (0: off).
    #[arg(long, value_name = "LAMBDA", default_value_t = 0.0, allow_hyphen_values = true, value_parser = non_negative_f64)]
    pub free_bits: f64,
    /// Latent units per free-bits group (1: per unit).
    #[arg(long, value_name = "G", default_value_t = 1, value_parser = at_least_one)]
    pub free_bits_group: usize,
    /// Also report test_log_px after every epoch: log p(x) by importance sampling with K samples on the first 1000 test images.
    #[arg(long, value_name = "K", value_parser = at_least_one)]
    pub eval_k: Option<usize>,
    #[command(flatten)]
    pub common: CommonTrainArgs,
}

/// Flags of `deepgen eval hvae`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory of `deepgen train hvae` (or its checkpoint file).
    #[arg(long, value_name = "DIR", default_value = "runs/hvae-mnist")]
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub eval: LikelihoodEvalArgs,
}

impl Pictured for HvaeTrainer {
    fn reconstruct(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(self.model().reconstruct(xs)?)
    }
    /// The noise is `[eps2 | eps1]`: `z2` first, as the prior draws it.
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>> {
        let config = self.model().config();
        let eps2 = eps.narrow(1, 0, config.latent2)?.contiguous()?;
        let eps1 = eps.narrow(1, config.latent2, config.latent1)?.contiguous()?;
        Ok(Some(self.model().generate(&eps1, &eps2)?))
    }
    fn noise_dim(&self) -> usize {
        let config = self.model().config();
        config.latent1 + config.latent2
    }
    fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Tensor> {
        Ok(self.model().interpolate(x_a, x_b, n_steps)?)
    }
    fn manifold(&self) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

/// The hierarchical VAE configuration the flags describe.
fn hvae_config(args: &TrainArgs) -> Result<HvaeConfig> {
    let schedule = match (args.warmup, args.cyclical) {
        (_, Some(period)) => KlSchedule::Cyclical {
            period,
            ramp: CYCLE_RAMP,
        },
        (Some(warmup), None) => KlSchedule::Linear { warmup },
        (None, None) => KlSchedule::Constant,
    };
    let config = HvaeConfig {
        hidden1: args.hidden1.clone(),
        latent1: args.z1,
        hidden2: args.hidden2.clone(),
        latent2: args.z2,
        schedule,
        free_bits: args.free_bits,
        free_bits_group: args.free_bits_group,
        ..Default::default()
    };
    config.validate().context("invalid hierarchical VAE options")?;
    Ok(config)
}

/// `deepgen train hvae`.
pub fn train(args: TrainArgs) -> Result<()> {
    let run = TrainRun::new(&args.common, MODEL, DEFAULTS)?;
    let config = hvae_config(&args)?;
    if args.common.resume && metrics_has_column(run.run_dir(), "test_log_px")? != args.eval_k.is_some() {
        bail!(
            "`{}` was trained {} --eval-k, and a resumed run logs the same metrics; resume it {}",
            run.run_dir().display(),
            if args.eval_k.is_some() { "without" } else { "with" },
            if args.eval_k.is_some() {
                "without --eval-k"
            } else {
                "with --eval-k K"
            },
        );
    }
    // Allowed (a run may be continued with --resume and more epochs), but
    // what such a run optimises at its end is not the ELBO.
    if let Some(warning) = config.schedule_warning(run.resolved.epochs) {
        eprintln!("warning: {warning}");
    }
    train_with_pictures(run, |run, input| {
        let mut trainer = HvaeTrainer::new(
            &config,
            run.adam(),
            run.args.seed,
            input.batches.n_batches(),
            &input.device,
        )?
        .with_test_set(input.test_images.clone(), EVAL_BATCH)?;
        let mut entries = vec![(MODEL, ConfigValue::Text(config.to_text()))];
        if let Some(k) = args.eval_k {
            trainer = trainer.with_log_likelihood(k, LOG_PX_IMAGES)?;
            entries.push(("eval_k", ConfigValue::Int(k as u64)));
        }
        let headline = vec![
            format!(
                "training a hierarchical VAE `{}` ({} parameters) {}",
                config.to_text(),
                parameter_count(trainer.varmap()),
                run.data_summary(&input.data)
            ),
            run.schedule_summary(&input.device),
        ];
        Ok(PicturedModel {
            step: trainer,
            config: entries,
            headline,
        })
    })
}

/// `deepgen eval hvae`: the importance-sampled test log-likelihood and the
/// ELBO.
pub fn eval(args: EvalArgs) -> Result<()> {
    let path = checkpoint_file(&args.checkpoint, MODEL)?;
    let device = open_device(args.eval.device)?;
    let (model, _vars) = load_hvae(&path, &device)
        .with_context(|| format!("cannot load a hierarchical VAE from `{}`", path.display()))?;
    let eval = args.eval.start(
        &path,
        &format!("hierarchical VAE `{}`", model.config().to_text()),
        &device,
    )?;
    eval.log_likelihood(|xs, k, rng| Ok(model.importance_log_likelihood(xs, k, rng)?))?;
    let elbo = model.mean_loss(eval.images(), EVAL_BATCH, &mut eval.elbo_rng())?;
    eval.say_elbo(
        -elbo.negative_elbo,
        &format!("recon {:.4}, KL1 {:.4}, KL2 {:.4}", elbo.recon, elbo.kl1, elbo.kl2),
    );
    Ok(())
}
