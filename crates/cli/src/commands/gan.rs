//! `deepgen train gan`, `sample gan` and `eval gan`: deepgen-gan's MLP pair
//! on 2-D point sets (PacGAN's settings) and its DCGAN pair on MNIST (the
//! anchor's), on [`crate::run::train`]. `metrics.csv` holds the losses,
//! mean `D` on real and generated samples, both gradient norms and, for
//! the 2-D mixtures, the mode metrics of 2,500 samples after every epoch
//! (of the generator's moving average with `--ema-decay`, and then also of
//! the trained generator, as `trained_modes` …).

use crate::args::{DataArg, Weights, at_least_one, non_negative_f64, set};
use crate::eval::JudgeArgs;
use crate::points::point_scores;
use crate::run::{
    CONFIG_FILE, ModelCommand, RunDefaults, RunFile, RunSettings, TEST_POINTS, TrainData, checkpoint_file, open_device,
    say,
};
use crate::sample::draw_samples;
use anyhow::{Context, Result, bail};
use deepgen_core::candle::Device;
use deepgen_core::{AdamConfig, DeviceChoice, LrSchedule, Trainer, load_model};
use deepgen_gan::{Gan, GanConfig, GanLoss, MlpInit, Network, PackInput};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The GAN's own flags; each overrides `[model]`/`[training]` of `--config`.
#[derive(Debug, clap::Args)]
pub struct GanFlags {
    /// Networks: mlp (2-D points) or dcgan (28×28 images) [default: from --data].
    #[arg(long, value_name = "NET")]
    pub network: Option<Network>,
    /// Adversarial loss: minimax, non-saturating, least-squares, hinge, wasserstein [default: non-saturating].
    #[arg(long, value_name = "LOSS")]
    pub loss: Option<GanLoss>,
    /// PacGAN packing: the discriminator judges K samples at once [default: 1].
    #[arg(long, value_name = "K", value_parser = at_least_one)]
    pub pack: Option<usize>,
    /// How the MLP discriminator's first layer reads a pack: joint (PacGAN: one layer over the K samples concatenated) or per-sample (the same units on each sample, the next layer over their outputs side by side) [default: joint].
    #[arg(long, value_name = "HOW")]
    pub pack_input: Option<PackInput>,
    /// WGAN-GP weight λ (MLP discriminator) [default: 0].
    #[arg(long, value_name = "λ", allow_hyphen_values = true, value_parser = non_negative_f64)]
    pub gp: Option<f64>,
    /// R1 weight γ, the penalty γ/2 E‖∇D(x)‖² (MLP discriminator) [default: 0].
    #[arg(long, value_name = "γ", allow_hyphen_values = true, value_parser = non_negative_f64)]
    pub r1: Option<f64>,
    /// Size of the noise z [default: 100 for images, 2 for points].
    #[arg(long, value_name = "D", value_parser = at_least_one)]
    pub latent: Option<usize>,
    /// MLP generator's hidden widths, comma-separated [default: 400,400,400,400].
    #[arg(long, value_name = "H", value_delimiter = ',', value_parser = at_least_one)]
    pub g_hidden: Option<Vec<usize>>,
    /// Batch norm in the MLP generator's hidden layers, true or false [default: true].
    #[arg(long, value_name = "BOOL")]
    pub g_batch_norm: Option<bool>,
    /// MLP discriminator's hidden widths, comma-separated [default: 200,200,200].
    #[arg(long, value_name = "H", value_delimiter = ',', value_parser = at_least_one)]
    pub d_hidden: Option<Vec<usize>>,
    /// Pieces of the MLP discriminator's maxout units (1: leaky ReLU) [default: 5].
    #[arg(long, value_name = "K", value_parser = at_least_one)]
    pub maxout: Option<usize>,
    /// MLP pair's initialisation: pytorch (U(±1/√fan_in)) or pacgan (weights N(0, 0.02²), biases 0) [default: pytorch].
    #[arg(long, value_name = "INIT")]
    pub init: Option<MlpInit>,
    /// Keep a moving average of the generator's weights with this decay (e.g. 0.999) and sample from it [default: 0, none].
    #[arg(long, value_name = "D", value_parser = non_negative_f64)]
    pub ema_decay: Option<f64>,
    /// Anneal the learning rate to 1 % of --lr over the run with a half cosine (PyTorch's CosineAnnealingLR).
    #[arg(long)]
    pub cosine: bool,
    /// Adam's β₁ for both networks [default: 0.5 for images (DCGAN), 0.8 for points (PacGAN)].
    #[arg(long, value_name = "B", allow_hyphen_values = true, value_parser = non_negative_f64)]
    pub beta1: Option<f64>,
}

/// The GAN's `[training]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GanTraining {
    /// Adam's β₁ (β₂ = 0.999).
    pub beta1: Option<f64>,
    /// Learning rate annealed by a half cosine to 1 % of the run's over all its steps.
    pub cosine: bool,
}

/// `deepgen train gan`.
#[derive(Debug)]
pub struct GanCommand;

impl ModelCommand for GanCommand {
    type Model = Gan;
    type Training = GanTraining;
    type Flags = GanFlags;
    const DESCRIPTION: &'static str = "a GAN";
    /// The anchor's DCGAN: Adam 2e-4, batch 64.
    const DEFAULTS: RunDefaults = RunDefaults {
        epochs: 5,
        batch_size: 64,
        lr: 2e-4,
    };
    /// PacGAN's 2-D settings: Adam 1e-4, batch 100.
    const POINT_DEFAULTS: Option<RunDefaults> = Some(RunDefaults {
        epochs: 10,
        batch_size: 100,
        lr: 1e-4,
    });

    fn default_config(data: DataArg) -> GanConfig {
        match data.points() {
            Some(_) => GanConfig::points(2),
            None => GanConfig::default(),
        }
    }

    fn apply_flags(f: &GanFlags, settings: &RunSettings, c: &mut GanConfig, t: &mut GanTraining) -> Result<()> {
        if let Some(network) = f.network {
            c.network = network;
            if network == Network::Dcgan {
                c.data_dim = deepgen_gan::IMAGE_DIM;
            }
        }
        let points = settings.data.points().is_some();
        match (points, c.network) {
            (true, Network::Dcgan) => bail!(
                "--network dcgan generates 28×28 images; --data {} is 2-D (use mlp)",
                settings.data.name()
            ),
            (false, Network::Mlp) => bail!(
                "--network mlp models 2-D points; --data {} is images (use dcgan)",
                settings.data.name()
            ),
            _ => {}
        }
        set(&mut c.loss, f.loss);
        set(&mut c.pack, f.pack);
        set(&mut c.pack_input, f.pack_input);
        set(&mut c.gradient_penalty, f.gp);
        set(&mut c.r1, f.r1);
        set(&mut c.latent_dim, f.latent);
        set(&mut c.generator_hidden, f.g_hidden.clone());
        set(&mut c.generator_batch_norm, f.g_batch_norm);
        set(&mut c.discriminator_hidden, f.d_hidden.clone());
        set(&mut c.maxout, f.maxout);
        set(&mut c.init, f.init);
        set(&mut c.ema_decay, f.ema_decay);
        t.beta1 = Some(f.beta1.or(t.beta1).unwrap_or(if points { 0.8 } else { 0.5 }));
        t.cosine |= f.cosine;
        if t.beta1.is_some_and(|b| b >= 1.0) {
            bail!("--beta1 {}: must be in [0, 1)", t.beta1.unwrap_or_default());
        }
        Ok(c.validate()?)
    }

    fn adam(t: &GanTraining, settings: &RunSettings, total_steps: usize) -> AdamConfig {
        let schedule = if t.cosine {
            LrSchedule::Cosine {
                total_steps,
                min_lr: 0.01 * settings.lr,
            }
        } else {
            LrSchedule::Constant
        };
        AdamConfig {
            lr: settings.lr,
            beta1: t.beta1.unwrap_or(0.5),
            beta2: 0.999,
            schedule,
            ..Default::default()
        }
    }

    /// For a 2-D mixture, the mode metrics and MMD² of 2,500 samples after
    /// every epoch: of the samples the model draws (its average when it
    /// keeps one) and, when it does, of the trained generator's
    /// (`trained_…`), from the same noise.
    fn prepare(trainer: Trainer<Gan>, _: &GanTraining, data: &TrainData, device: &Device) -> Result<Trainer<Gan>> {
        let Some(set) = data.points.clone() else {
            return Ok(trainer);
        };
        let device = device.clone();
        Ok(trainer.with_evaluation(move |gan, _| {
            let scores = || -> Result<deepgen_core::Metrics> {
                let mut metrics = point_scores(gan, &set, TEST_POINTS, 0, &device)?;
                if gan.has_average() {
                    let mut trained = gan.clone();
                    trained.sample_with_average(false);
                    for (name, value) in point_scores(&trained, &set, TEST_POINTS, 0, &device)?.iter() {
                        metrics.push(format!("trained_{name}"), value);
                    }
                }
                Ok(metrics)
            };
            scores().map_err(|e| deepgen_core::Error::External(e.into()))
        }))
    }
}

/// Flags of `deepgen eval gan`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Run directory of `deepgen train gan` (or its checkpoint file).
    #[arg(long, value_name = "DIR", default_value = "runs/gan-mnist")]
    pub checkpoint: PathBuf,
    /// Samples to score [default: 10,000 images, or the protocol's 2,500 points].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub samples: Option<usize>,
    /// Seed of the noise.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Sample with the generator's moving average (ema, when the run kept one) or the trained weights.
    #[arg(long, value_enum, default_value = "ema")]
    pub weights: Weights,
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// Folder with the four IDX files of the reference set [default: the run's].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Device: cpu, cuda, cuda:N, metal or auto.
    #[arg(long, value_name = "D", default_value = "auto")]
    pub device: DeviceChoice,
}

/// `deepgen eval gan`: images are scored by the one evaluator; 2-D samples
/// by the mode metrics (mixtures) and MMD² to the run's data set.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let path = checkpoint_file(&args.checkpoint, "gan")?;
    let device = open_device(args.device)?;
    let (mut gan, _vars) =
        load_model::<Gan>(&path, &device).with_context(|| format!("cannot load a GAN from `{}`", path.display()))?;
    gan.sample_with_average(args.weights == Weights::Ema);
    let run_dir = path.parent().map(PathBuf::from).unwrap_or_default();
    let file = RunFile::<GanConfig, GanTraining>::read(&run_dir.join(CONFIG_FILE), "gan")
        .with_context(|| format!("`{}` is not a complete run directory", run_dir.display()))?;
    let data = file.run.data.unwrap_or(DataArg::Mnist);
    if let Some(set) = data.points() {
        if args.judge.classifier.is_some() || args.judge.reference.is_some() {
            bail!(
                "`{}` is a GAN of 2-D points ({}); --classifier and --reference judge 28×28 images",
                run_dir.display(),
                data.name()
            );
        }
        let n = args.samples.unwrap_or(TEST_POINTS);
        let metrics = point_scores(&gan, &set, n, args.seed, &device)?;
        let line: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        say(&format!(
            "{n} samples of `{}` (seed {}) against {}: {}",
            run_dir.display(),
            args.seed,
            data.name(),
            line.join("  ")
        ));
        return Ok(());
    }
    let data_dir = args.data_dir.clone().or(file.run.data_dir);
    let judge = args.judge.judge(data, data_dir.as_deref(), &device)?;
    let n = args.samples.unwrap_or(10_000);
    let images = draw_samples(&gan, n, args.seed, &device)?.context("a GAN always samples")?;
    judge.score_and_say(
        &format!("samples of `{}` (seed {})", run_dir.display(), args.seed),
        &images,
    )?;
    Ok(())
}
