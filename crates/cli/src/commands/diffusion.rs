//! `deepgen train diffusion`, `sample diffusion` and `eval diffusion`:
//! deepgen-diffusion's UNet on MNIST-format images (the PyTorch twin's
//! model and settings) and its MLP on the 2-D point sets, on
//! [`crate::run::train`]. Any sampler samples any checkpoint: the one stored
//! with the model is the default, and the flags override it.

use crate::args::{DataArg, Weights, at_least_one, non_negative_f64, set};
use crate::eval::JudgeArgs;
use crate::pictures::save_grid_png;
use crate::plot::{Panel, ScatterLayer, panels_plot};
use crate::points::{point_scores, sample_scores};
use crate::run::{
    CONFIG_FILE, ModelCommand, NoTraining, RunDefaults, RunFile, RunSettings, TEST_POINTS, TrainData, checkpoint_file,
    open_device, say,
};
use crate::sample::{MAX_SAMPLES, SampleArgs as BaseSampleArgs, draw_samples, write_samples};
use anyhow::{Context, Result, bail};
use deepgen_core::Generative;
use deepgen_core::candle::{Device, Tensor};
use deepgen_core::rng::{derived_rng, randn};
use deepgen_core::{DeviceChoice, StdRng, Trainer, load_model, progress_bar};
use deepgen_data::tensor_to_points;
use deepgen_diffusion::{
    BetaSchedule, DdpmVariance, DiffusionConfig, DiffusionModel, LossWeighting, Network, PredictionType,
    SampleProcessing, SamplerConfig, SamplerKind, TimestepSpacing,
};
use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Instant;

/// The diffusion model's own flags; each overrides `[model]` of `--config`.
#[derive(Debug, clap::Args)]
pub struct DiffusionFlags {
    /// Network: unet (28×28 images) or mlp (2-D points) [default: from --data].
    #[arg(long, value_name = "NET")]
    pub network: Option<Network>,
    /// What the network predicts: epsilon, sample (x₀) or v [default: epsilon].
    #[arg(long, value_name = "P")]
    pub prediction: Option<PredictionType>,
    /// Timestep weights: uniform, min-snr:γ or elbo [default: uniform].
    #[arg(long, value_name = "W", value_parser = parse_weighting)]
    pub weighting: Option<LossWeighting>,
    /// β schedule: linear, scaled-linear or cosine [default: linear].
    #[arg(long, value_name = "S")]
    pub schedule: Option<BetaSchedule>,
    /// Training timesteps T [default: 1000].
    #[arg(long, value_name = "T", value_parser = at_least_one)]
    pub timesteps: Option<usize>,
    /// First β of the linear schedules [default: 1e-4].
    #[arg(long, value_name = "B")]
    pub beta_start: Option<f64>,
    /// Last β of the linear schedules [default: 0.02].
    #[arg(long, value_name = "B")]
    pub beta_end: Option<f64>,
    /// Rescale the schedule to zero terminal SNR (needs --prediction v or sample).
    #[arg(long)]
    pub zero_snr: bool,
    /// Decay of the weight average the samples come from [default: 0.999].
    #[arg(long, value_name = "D", value_parser = non_negative_f64)]
    pub ema_decay: Option<f64>,
    /// The MLP's hidden widths, comma-separated [default: 256,256,256].
    #[arg(long, value_name = "H", value_delimiter = ',', value_parser = at_least_one)]
    pub hidden: Option<Vec<usize>>,
    #[command(flatten)]
    pub sampler: SamplerFlags,
}

/// `uniform`, `elbo` or `min-snr:γ`.
fn parse_weighting(text: &str) -> Result<LossWeighting, String> {
    match text.split_once(':') {
        None if text == "uniform" => Ok(LossWeighting::Uniform),
        None if text == "elbo" => Ok(LossWeighting::Elbo),
        Some(("min-snr", gamma)) => match gamma.parse::<f64>() {
            Ok(g) if g > 0.0 && g.is_finite() => Ok(LossWeighting::MinSnr { gamma: g }),
            _ => Err(format!("min-snr:{gamma}: γ must be a positive number (min-snr:5)")),
        },
        _ => Err(format!("`{text}`: expected uniform, elbo or min-snr:γ")),
    }
}

/// The sampler's flags, shared by `train diffusion` (stored with the model)
/// and `sample`/`eval diffusion` (overriding the stored one).
#[derive(Debug, Clone, clap::Args)]
pub struct SamplerFlags {
    /// Sampler: ddpm, ddim or dpm-solver++ [default: ddim].
    #[arg(long, value_name = "S")]
    pub sampler: Option<SamplerKind>,
    /// Inference steps S ≤ T [default: 50; ddpm: T].
    #[arg(long, value_name = "S", value_parser = at_least_one)]
    pub steps: Option<usize>,
    /// DDIM's η (0: deterministic, 1: DDPM's variance) [default: 0].
    #[arg(long, value_name = "η", allow_hyphen_values = true)]
    pub eta: Option<f64>,
    /// Timestep spacing: leading, trailing, linspace or quadratic [default: linspace; dpm-solver++: trailing].
    #[arg(long, value_name = "SP")]
    pub spacing: Option<TimestepSpacing>,
    /// DDPM's variance: fixed-small or fixed-large [default: fixed-small].
    #[arg(long, value_name = "V")]
    pub variance: Option<DdpmVariance>,
    /// Clip the predicted x₀ to [−R, R], or `none` [default: 1 for images, none for points].
    #[arg(long, value_name = "R|none", value_parser = parse_clip)]
    pub clip: Option<Option<f64>>,
    /// Dynamic thresholding at this quantile of |x̂₀| instead of clipping (Imagen: 0.995).
    #[arg(long, value_name = "P", conflicts_with = "clip")]
    pub threshold: Option<f64>,
}

/// `none` or a positive range.
fn parse_clip(text: &str) -> Result<Option<f64>, String> {
    if text == "none" {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(Some(r)),
        _ => Err(format!("`{text}`: expected a positive range or `none`")),
    }
}

impl SamplerFlags {
    /// Writes the given flags onto `c`. A sampler named without `--steps`
    /// takes its own default count (DDPM: every timestep of `train_steps`),
    /// and DPM-Solver++ without `--spacing` trailing spacing.
    ///
    /// # Errors
    /// An invalid result (η < 0, S > T, …).
    pub fn apply(&self, c: &mut SamplerConfig, train_steps: usize) -> Result<()> {
        if let Some(kind) = self.sampler {
            c.kind = kind;
            c.steps = match kind {
                SamplerKind::Ddpm => train_steps,
                _ => SamplerConfig::default().steps.min(train_steps),
            };
            c.spacing = match kind {
                SamplerKind::DpmSolverPlusPlus => TimestepSpacing::Trailing,
                _ => TimestepSpacing::Linspace,
            };
        }
        set(&mut c.steps, self.steps);
        set(&mut c.eta, self.eta);
        set(&mut c.spacing, self.spacing);
        set(&mut c.variance, self.variance);
        if let Some(clip) = self.clip {
            c.processing = clip.map_or(SampleProcessing::None, |range| SampleProcessing::Clip { range });
        }
        if let Some(ratio) = self.threshold {
            c.processing = SampleProcessing::Threshold { ratio, max: 1.0 };
        }
        if c.steps > train_steps {
            bail!("--steps {}: a sampler takes at most T = {train_steps} steps", c.steps);
        }
        if c.eta > 0.0 && c.kind != SamplerKind::Ddim {
            bail!("--eta {} is DDIM's; --sampler {} has none", c.eta, c.kind);
        }
        Ok(c.validate()?)
    }
}

/// `deepgen train diffusion`.
#[derive(Debug)]
pub struct DiffusionCommand;

impl ModelCommand for DiffusionCommand {
    type Model = DiffusionModel;
    type Training = NoTraining;
    type Flags = DiffusionFlags;
    const DESCRIPTION: &'static str = "a diffusion model";
    /// The PyTorch twin's: Adam 2e-4, batch 128.
    const DEFAULTS: RunDefaults = RunDefaults {
        epochs: 10,
        batch_size: 128,
        lr: 2e-4,
    };
    /// 2-D points: 20 epochs of 390 batches of 256 at 1e-3.
    const POINT_DEFAULTS: Option<RunDefaults> = Some(RunDefaults {
        epochs: 20,
        batch_size: 256,
        lr: 1e-3,
    });

    fn default_config(data: DataArg) -> DiffusionConfig {
        match data.points() {
            Some(_) => DiffusionConfig::points(2),
            None => DiffusionConfig::default(),
        }
    }

    fn apply_flags(
        f: &DiffusionFlags,
        settings: &RunSettings,
        c: &mut DiffusionConfig,
        _: &mut NoTraining,
    ) -> Result<()> {
        if let Some(network) = f.network {
            c.network = network;
        }
        let points = settings.data.points().is_some();
        match (points, c.network) {
            (true, Network::Unet) => bail!(
                "--network unet denoises 28×28 images; --data {} is 2-D (use mlp)",
                settings.data.name()
            ),
            (false, Network::Mlp) => bail!(
                "--network mlp denoises 2-D points; --data {} is images (use unet)",
                settings.data.name()
            ),
            _ => {}
        }
        set(&mut c.prediction, f.prediction);
        set(&mut c.weighting, f.weighting);
        set(&mut c.schedule.beta_schedule, f.schedule);
        set(&mut c.schedule.num_train_timesteps, f.timesteps);
        set(&mut c.schedule.beta_start, f.beta_start);
        set(&mut c.schedule.beta_end, f.beta_end);
        c.schedule.rescale_betas_zero_snr |= f.zero_snr;
        set(&mut c.ema_decay, f.ema_decay);
        set(&mut c.hidden, f.hidden.clone());
        let t = c.schedule.num_train_timesteps;
        if f.sampler.steps.is_none() && c.sampler.steps > t {
            c.sampler.steps = t;
        }
        f.sampler.apply(&mut c.sampler, t)?;
        Ok(c.validate()?)
    }

    /// For a 2-D set, the mode metrics and MMD² of 2,500 samples of the
    /// stored sampler after every epoch.
    fn prepare(
        trainer: Trainer<DiffusionModel>,
        _: &NoTraining,
        data: &TrainData,
        device: &Device,
    ) -> Result<Trainer<DiffusionModel>> {
        let Some(set) = data.points.clone() else {
            return Ok(trainer);
        };
        let device = device.clone();
        Ok(trainer.with_evaluation(move |model, _| {
            point_scores(model, &set, TEST_POINTS, 0, &device).map_err(|e| deepgen_core::Error::External(e.into()))
        }))
    }
}

/// A model with a sampler and the generator of its noise: what `sample`
/// and `eval` draw from.
#[derive(Debug)]
pub struct Sampled<'a> {
    model: &'a DiffusionModel,
    sampler: SamplerConfig,
    rng: RefCell<StdRng>,
    /// Show a bar over the sampler's steps (a DDPM-1000 batch takes minutes).
    progress: bool,
}

impl<'a> Sampled<'a> {
    /// `model` sampled by `sampler` with noise from `seed`'s stream 1.
    pub fn new(model: &'a DiffusionModel, sampler: SamplerConfig, seed: u64) -> Self {
        Self {
            model,
            sampler,
            rng: RefCell::new(derived_rng(seed, 1)),
            progress: false,
        }
    }

    /// With a progress bar over each batch's sampler steps.
    pub fn with_progress(mut self) -> Self {
        self.progress = true;
        self
    }
}

impl Generative for Sampled<'_> {
    fn noise_dim(&self) -> usize {
        self.model.noise_dim()
    }
    /// `x_T = eps`, then the sampler's steps.
    fn generate(&self, eps: &Tensor) -> deepgen_core::Result<Option<Tensor>> {
        let mut rng = self.rng.borrow_mut();
        let label = format!("{} × {}", self.sampler.label(), eps.dim(0)?);
        let bar = progress_bar(self.sampler.steps as u64, &label, self.progress);
        let images = self.model.generate_with(&self.sampler, eps, &mut *rng, |_, _, _| {
            bar.inc(1);
            Ok(())
        })?;
        bar.finish_and_clear();
        Ok(Some(images))
    }
    fn generates_points(&self) -> bool {
        self.model.generates_points()
    }
}

/// A trained model, its run's data set and the sampler the flags ask for.
fn load(
    checkpoint: &std::path::Path,
    flags: &SamplerFlags,
    weights: Weights,
    device: &Device,
) -> Result<(DiffusionModel, DataArg, PathBuf, SamplerConfig)> {
    let path = checkpoint_file(checkpoint, "diffusion")?;
    let (mut model, _vars) = load_model::<DiffusionModel>(&path, device)
        .with_context(|| format!("cannot load a diffusion model from `{}`", path.display()))?;
    model.sample_with_ema(weights == Weights::Ema);
    let run_dir = path.parent().map(PathBuf::from).unwrap_or_default();
    let file = RunFile::<DiffusionConfig, NoTraining>::read(&run_dir.join(CONFIG_FILE), "diffusion")
        .with_context(|| format!("`{}` is not a complete run directory", run_dir.display()))?;
    let data = file.run.data.unwrap_or(DataArg::Mnist);
    let mut sampler = model.config().sampler.clone();
    flags
        .apply(&mut sampler, model.schedule().len())
        .context("invalid sampler flags")?;
    Ok((model, data, run_dir, sampler))
}

/// Flags of `deepgen sample diffusion`.
#[derive(Debug, clap::Args)]
pub struct DiffusionSampleArgs {
    #[command(flatten)]
    pub base: BaseSampleArgs,
    #[command(flatten)]
    pub sampler: SamplerFlags,
    /// Also draw one run of the sampler, x_T … x₀ (8 images per frame, or the points).
    #[arg(long, value_name = "FILE.png")]
    pub trajectory: Option<PathBuf>,
    /// Sample with the weight average (ema) or the trained weights.
    #[arg(long, value_enum, default_value = "ema")]
    pub weights: Weights,
}

/// Frames of a trajectory picture.
const FRAMES: usize = 10;
/// Images followed through a trajectory.
const TRAJECTORY_IMAGES: usize = 8;
/// Scatter panels of a trajectory of points.
const PANELS: usize = 5;

/// `deepgen sample diffusion`.
///
/// # Errors
/// A run that is not a diffusion model's; bad sampler flags; files that
/// cannot be written.
pub fn sample(args: &DiffusionSampleArgs) -> Result<()> {
    let device = open_device(args.base.device)?;
    let (model, data, _, sampler) = load(&args.base.checkpoint, &args.sampler, args.weights, &device)?;
    say(&format!("sampler: {}", sampler.label()));
    let started = Instant::now();
    write_samples(
        &Sampled::new(&model, sampler.clone(), args.base.seed).with_progress(),
        &args.base,
        &device,
    )?;
    say(&format!(
        "{} samples in {:.1} s",
        args.base.n,
        started.elapsed().as_secs_f64()
    ));
    if let Some(path) = &args.trajectory {
        trajectory(&model, &sampler, data, args.base.seed, path, &device)?;
        say(&format!("trajectory: {}", path.display()));
    }
    Ok(())
}

/// Writes the frames `x_T, …, x₀` of one sampler run: a grid with one row
/// per image and one column per frame, or scatter panels of 1,000 points.
fn trajectory(
    model: &DiffusionModel,
    sampler: &SamplerConfig,
    data: DataArg,
    seed: u64,
    path: &std::path::Path,
    device: &Device,
) -> Result<()> {
    let images = model.config().is_images();
    let n = if images { TRAJECTORY_IMAGES } else { 1000 };
    let x_t = randn(&mut derived_rng(seed, 0), (n, model.config().data_dim), device)?;
    let steps = sampler.steps;
    // Frames after evenly spaced steps: x_T first, x₀ last.
    let keep: Vec<usize> = (1..FRAMES)
        .map(|k| (k * steps).div_ceil(FRAMES - 1).max(1) - 1)
        .collect();
    let mut frames = vec![("x_T".to_string(), x_t.clone())];
    let mut rng = derived_rng(seed, 1);
    model.generate_with(sampler, &x_t, &mut rng, |i, t, step| {
        if keep.contains(&i) && frames.len() < FRAMES {
            // (The plot font has no subscript digits.)
            let label = if i + 1 == steps {
                "x_0".to_string()
            } else {
                format!("after step {}/{steps} (from t = {t})", i + 1)
            };
            frames.push((label, step.prev_sample.clone()));
        }
        Ok(())
    })?;
    if images {
        // Rows are images, columns frames.
        let mut tiles = Vec::with_capacity(n * frames.len());
        for i in 0..n {
            for (_, frame) in &frames {
                tiles.push(model.to_data_space(&frame.narrow(0, i, 1)?)?);
            }
        }
        return save_grid_png(&Tensor::cat(&tiles, 0)?, frames.len(), path);
    }
    let truth = data.points().context("a model of points has a 2-D data set")?;
    let truth = tensor_to_points(&truth.sample(n, &mut derived_rng(seed, 2), device)?)?;
    // Five panels, the first and the last frame among them.
    let last = frames.len() - 1;
    let points: Vec<(String, Vec<[f64; 2]>)> = (0..PANELS)
        .map(|k| (k * last).div_ceil(PANELS - 1))
        .map(|i| Ok((frames[i].0.clone(), tensor_to_points(&frames[i].1)?)))
        .collect::<Result<_>>()?;
    let layers: Vec<[ScatterLayer; 2]> = points
        .iter()
        .map(|(_, p)| {
            [
                ScatterLayer {
                    name: "data",
                    points: &truth,
                    color: (150, 150, 150),
                    size: 2,
                },
                ScatterLayer {
                    name: "samples",
                    points: p,
                    color: (31, 119, 180),
                    size: 1,
                },
            ]
        })
        .collect();
    let panels: Vec<Panel> = points
        .iter()
        .zip(&layers)
        .map(|((label, _), layers)| Panel {
            layers,
            arrows: &[],
            title: label,
        })
        .collect();
    // The data's extent, and at least ±3 so that x_T ~ N(0, I) fits.
    let extent = truth
        .iter()
        .fold(3.0f64, |m, p| m.max(p[0].abs() * 1.2).max(p[1].abs() * 1.2));
    panels_plot(&panels, ([-extent, extent], [-extent, extent]), path)
}

/// Flags of `deepgen eval diffusion`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Run directory of `deepgen train diffusion` (or its checkpoint file).
    #[arg(long, value_name = "DIR", default_value = "runs/diffusion-mnist")]
    pub checkpoint: PathBuf,
    /// Samples to score [default: 1,000 images, or the protocol's 2,500 points].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub samples: Option<usize>,
    /// Seed of the noise.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub sampler: SamplerFlags,
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// Folder with the four IDX files of the reference set [default: the run's].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Also write the samples as an IDX file (images).
    #[arg(long, value_name = "FILE.idx")]
    pub idx: Option<PathBuf>,
    /// Sample with the weight average (ema) or the trained weights.
    #[arg(long, value_enum, default_value = "ema")]
    pub weights: Weights,
    /// Device: cpu, cuda, cuda:N, metal or auto.
    #[arg(long, value_name = "D", default_value = "auto")]
    pub device: DeviceChoice,
}

/// `deepgen eval diffusion`: samples of any sampler, timed, scored by the
/// one evaluator (images) or by the mode metrics and MMD² (points).
///
/// # Errors
/// As `sample`; the evaluator's errors.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let device = open_device(args.device)?;
    let (model, data, run_dir, sampler) = load(&args.checkpoint, &args.sampler, args.weights, &device)?;
    let points = data.points();
    let n = args
        .samples
        .unwrap_or(if points.is_some() { TEST_POINTS } else { 1000 });
    if n > MAX_SAMPLES {
        bail!("--samples {n} is more than {MAX_SAMPLES} samples");
    }
    let judge = match points {
        Some(_) if args.judge.classifier.is_some() || args.judge.reference.is_some() => bail!(
            "`{}` is a diffusion model of 2-D points ({}); --classifier and --reference judge 28×28 images",
            run_dir.display(),
            data.name()
        ),
        Some(_) => None,
        None => {
            let data_dir = args.data_dir.clone().or_else(|| {
                RunFile::<DiffusionConfig, NoTraining>::read(&run_dir.join(CONFIG_FILE), "diffusion")
                    .ok()
                    .and_then(|f| f.run.data_dir)
            });
            Some(args.judge.judge(data, data_dir.as_deref(), &device)?)
        }
    };
    let started = Instant::now();
    let samples = draw_samples(
        &Sampled::new(&model, sampler.clone(), args.seed).with_progress(),
        n,
        args.seed,
        &device,
    )?
    .context("a diffusion model always samples")?;
    let seconds = started.elapsed().as_secs_f64();
    let label = format!(
        "{n} samples of `{}` by {}{} (seed {}) in {seconds:.1} s ({:.1} s per 1,000)",
        run_dir.display(),
        sampler.label(),
        if args.weights == Weights::Trained {
            ", trained weights"
        } else {
            ""
        },
        args.seed,
        1000.0 * seconds / n as f64
    );
    if let Some(set) = points {
        let metrics = sample_scores(&samples, &set, args.seed)?;
        let line: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        say(&format!("{label}: {}", line.join("  ")));
    }
    if let Some(judge) = judge {
        if let Some(idx) = &args.idx {
            deepgen_data::write_idx_images(idx, &samples)
                .with_context(|| format!("cannot write `{}`", idx.display()))?;
        }
        judge.score_and_say(&label, &samples)?;
    }
    Ok(())
}
