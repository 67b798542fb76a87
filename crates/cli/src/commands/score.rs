//! `deepgen train score` and `sample score`: deepgen-score's networks on the
//! 2-D point sets, on [`crate::run::train`]. After every epoch a run writes
//! the samples of its sampler over the test points and, for a mixture, the
//! Fisher divergence of the network to the true score and the mode metrics
//! of 2,500 samples; `sample score` also draws the learned score field
//! beside the true one.

use crate::args::{DataArg, at_least_one, positive_f64, set};
use crate::pictures::save_points_png;
use crate::plot::{ArrowLayer, Panel, ScatterLayer, panels_plot};
use crate::points::point_scores;
use crate::run::{
    CONFIG_FILE, ModelCommand, RunDefaults, RunFile, RunSettings, TEST_POINTS, TrainData, checkpoint_file, open_device,
    say,
};
use anyhow::{Context, Result, bail};
use deepgen_core::candle::{DType, Device, Tensor};
use deepgen_core::rng::{derived_rng, randn, rng_from_seed};
use deepgen_core::{DeviceChoice, Metrics, Trainer, load_model};
use deepgen_score::loss::fisher_divergence;
use deepgen_score::{
    ChainStart, GaussianMixture, NoiseLevels, Projection, SamplerConfig, SamplerKind, ScoreConfig, ScoreField,
    ScoreLoss, ScoreModel,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The score model's own flags; each overrides `[model]` of `--config`.
#[derive(Debug, clap::Args)]
pub struct ScoreFlags {
    /// Objective: esm (exact trace), ssm, ssm-vr (sliced), dsm (denoising) [default: dsm].
    #[arg(long, value_name = "LOSS")]
    pub loss: Option<ScoreLoss>,
    /// Hidden widths of the softplus MLP, comma-separated [default: 128,128].
    #[arg(long, value_name = "H", value_delimiter = ',', value_parser = at_least_one)]
    pub hidden: Option<Vec<usize>>,
    /// Noise levels, largest first, comma-separated (one level: single-level DSM) [default: per --data].
    #[arg(long, value_name = "σ", value_delimiter = ',', allow_hyphen_values = true)]
    pub sigmas: Option<Vec<f64>>,
    /// Whether the network reads σ, true or false [default: true for dsm, false otherwise].
    #[arg(long, value_name = "BOOL")]
    pub noise_conditional: Option<bool>,
    /// Projections of the sliced losses: rademacher or gaussian [default: rademacher].
    #[arg(long, value_name = "V")]
    pub projection: Option<Projection>,
    /// Projections per example of the sliced losses [default: 1].
    #[arg(long, value_name = "M", value_parser = at_least_one)]
    pub projections: Option<usize>,
    #[command(flatten)]
    pub sampler: SamplerFlags,
}

/// The sampler's flags, shared by `train score` (stored with the model) and
/// `sample score` (overriding the stored one).
#[derive(Debug, clap::Args)]
pub struct SamplerFlags {
    /// Sampler: langevin or annealed [default: annealed for a noise-conditional network].
    #[arg(long, value_name = "KIND")]
    pub sampler: Option<SamplerKind>,
    /// Langevin steps: per level (annealed) or in all [default: 100 annealed, 1000 langevin].
    #[arg(long, value_name = "T", value_parser = at_least_one)]
    pub sampler_steps: Option<usize>,
    /// Step size: ε of α_i = ε σ_i²/σ_L² (annealed) or α (langevin) [default: 0.1 σ_L²].
    #[arg(long, value_name = "ε", allow_hyphen_values = true, value_parser = positive_f64)]
    pub epsilon: Option<f64>,
    /// Tweedie's final denoising step x + σ_L² s(x, σ_L), true or false [default: false].
    #[arg(long, value_name = "BOOL")]
    pub denoise: Option<bool>,
    /// Chain start: uniform:H (U[−H, H]²) or gaussian:S (N(0, S²I)) [default: per --data].
    #[arg(long, value_name = "START", value_parser = parse_start)]
    pub start: Option<ChainStart>,
}

impl SamplerFlags {
    fn apply(&self, sampler: &mut SamplerConfig) {
        set(&mut sampler.kind, self.sampler);
        set(&mut sampler.steps, self.sampler_steps);
        set(&mut sampler.epsilon, self.epsilon);
        set(&mut sampler.denoise, self.denoise);
        set(&mut sampler.start, self.start);
    }
}

/// `uniform:8` or `gaussian:2.5`.
fn parse_start(text: &str) -> Result<ChainStart, String> {
    let (kind, scale) = text.split_once(':').ok_or("expected uniform:H or gaussian:S")?;
    let scale = positive_f64(scale)?;
    match kind {
        "uniform" => Ok(ChainStart::Uniform { half_width: scale }),
        "gaussian" => Ok(ChainStart::Gaussian { std: scale }),
        other => Err(format!("`{other}` is not uniform or gaussian")),
    }
}

/// `(σ_max, σ_min)` per data set: σ_max about the largest distance between
/// two points (NCSNv2's first rule); σ_min Song & Ermon's 1 for their
/// mixture, otherwise a few times the data's own noise, below which the
/// network would have to resolve finer structure than it can learn in a
/// short run — Tweedie's final step then takes the samples onto the data.
fn noise_range(data: DataArg) -> (f64, f64) {
    match data {
        DataArg::Mixture => (20.0, 1.0),
        DataArg::Ring => (2.0, 0.05),
        DataArg::Grid => (12.0, 0.1),
        DataArg::Moons => (3.0, 0.05),
        _ => (30.0, 0.3),
    }
}

/// The score model's `[training]` table: no option beyond the run's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreTraining {}

/// Chains of the per-epoch sample metrics: each runs the whole sampler (a
/// thousand network passes), so fewer than the 2,500 of `sample score`.
const EPOCH_CHAINS: usize = 500;

/// The default Langevin step in units of the last level's variance,
/// `α_L = 0.1 σ_L²` (Song & Ermon's ε = 0.1 at σ_L = 1).
const STEP_PER_VARIANCE: f64 = 0.1;

/// `deepgen train score`.
#[derive(Debug)]
pub struct ScoreCommand;

impl ModelCommand for ScoreCommand {
    type Model = ScoreModel;
    type Training = ScoreTraining;
    type Flags = ScoreFlags;
    const DESCRIPTION: &'static str = "a score model";
    /// 7,810 Adam steps at 1e-3 on batches of 128 of the 100,000 points.
    const DEFAULTS: RunDefaults = RunDefaults {
        epochs: 10,
        batch_size: 128,
        lr: 1e-3,
    };
    /// Score models are for points only (images are refused in `apply_flags`).
    const POINT_DEFAULTS: Option<RunDefaults> = Some(Self::DEFAULTS);

    /// Ten geometric levels over the data's scales; annealed Langevin with
    /// `α_i = 0.1 σ_i²` (Song & Ermon's ε = 0.1 at σ_L = 1). Their mixture
    /// keeps their setting (two layers of 128, chains from `U[−8, 8]²`, no
    /// final denoising); the sharper sets get three layers of 256, chains
    /// from `N(0, σ₁²I)` and Tweedie's final step.
    fn default_config(data: DataArg) -> ScoreConfig {
        let (high, low) = noise_range(data);
        let song_ermon = data == DataArg::Mixture;
        let start = if song_ermon {
            ChainStart::Uniform { half_width: 8.0 }
        } else {
            ChainStart::Gaussian { std: high }
        };
        ScoreConfig {
            hidden: if song_ermon {
                vec![128, 128]
            } else {
                vec![256, 256, 256]
            },
            sigmas: NoiseLevels::geometric(high, low, 10).expect("valid levels"),
            sampler: SamplerConfig {
                epsilon: STEP_PER_VARIANCE * low * low,
                denoise: !song_ermon,
                start,
                ..SamplerConfig::default()
            },
            ..ScoreConfig::default()
        }
    }

    fn apply_flags(f: &ScoreFlags, settings: &RunSettings, c: &mut ScoreConfig, _: &mut ScoreTraining) -> Result<()> {
        if settings.data.points().is_none() {
            bail!(
                "`deepgen train score` models 2-D points; --data {} is images",
                settings.data.name()
            );
        }
        if let Some(loss) = f.loss {
            c.loss = loss;
            c.noise_conditional = loss == ScoreLoss::Dsm;
        }
        set(&mut c.noise_conditional, f.noise_conditional);
        if let Some(sigmas) = &f.sigmas {
            c.sigmas = NoiseLevels::new(sigmas.clone())?;
            // The step follows the last level (α_L = 0.1 σ_L²) unless given.
            c.sampler.epsilon = STEP_PER_VARIANCE * c.sigmas.smallest().powi(2);
        } else if !c.noise_conditional && c.sigmas.len() > 1 {
            // An unconditional network is fitted (and sampled) at one level: the smallest.
            c.sigmas = NoiseLevels::new(vec![c.sigmas.smallest()])?;
        }
        // An unconditional network cannot anneal: plain Langevin, unless asked otherwise.
        if !c.noise_conditional && c.sampler.kind == SamplerKind::Annealed && f.sampler.sampler.is_none() {
            c.sampler.kind = SamplerKind::Langevin;
            c.sampler.steps = 1000;
            c.sampler.denoise = false;
        }
        set(&mut c.hidden, f.hidden.clone());
        set(&mut c.projection, f.projection);
        set(&mut c.projections, f.projections);
        f.sampler.apply(&mut c.sampler);
        Ok(c.validate()?)
    }

    /// For a mixture, the Fisher divergence to the true score at the level
    /// the network is judged at; for every set, the metrics of 500 samples.
    fn prepare(
        trainer: Trainer<ScoreModel>,
        _: &ScoreTraining,
        data: &TrainData,
        device: &Device,
    ) -> Result<Trainer<ScoreModel>> {
        let Some(set) = data.points.clone() else {
            return Ok(trainer);
        };
        let (device, test) = (device.clone(), data.test.to_device(device)?);
        let truth = set.mixture().map(|m| exact_mixture(&m)).transpose()?;
        let evaluate = move |model: &ScoreModel| -> Result<Metrics> {
            let mut metrics = Metrics::new();
            if let Some(truth) = &truth {
                metrics.push("fisher", fisher_at_judged_level(model, truth, &test)?);
            }
            for (name, value) in point_scores(model, &set, EPOCH_CHAINS, 0, &device)?.iter() {
                metrics.push(name, value);
            }
            Ok(metrics)
        };
        Ok(trainer
            .with_evaluation(move |model, _| evaluate(model).map_err(|e| deepgen_core::Error::External(e.into()))))
    }
}

/// deepgen-data's 2-D mixture as deepgen-score's exact-score mixture.
///
/// # Errors
/// Never for a valid mixture.
pub fn exact_mixture(m: &deepgen_data::GaussianMixture2d) -> deepgen_score::Result<GaussianMixture> {
    GaussianMixture::new(
        m.weights().to_vec(),
        m.means().iter().map(|p| p.to_vec()).collect(),
        m.stds().iter().map(|s| s.to_vec()).collect(),
    )
}

/// The level a network is judged at: `σ_L` of a noise-conditional network
/// (its sampler ends there), the training level of single-level DSM, 0
/// (the data itself) for the other losses.
fn judged_level(config: &ScoreConfig) -> f64 {
    match (config.noise_conditional, config.loss) {
        (true, _) | (false, ScoreLoss::Dsm) => config.sigmas.smallest(),
        _ => 0.0,
    }
}

/// `E_{q_σ} ½‖s_θ(x̃, σ) − ∇log q_σ(x̃)‖²` on the test points noised to the
/// judged level σ (with a fixed seed).
fn fisher_at_judged_level(model: &ScoreModel, truth: &GaussianMixture, test: &Tensor) -> deepgen_score::Result<f64> {
    let sigma = judged_level(model.config());
    let noise = randn(&mut rng_from_seed(0), test.dims(), test.device())?.to_dtype(test.dtype())?;
    let x = (test + (noise * sigma)?)?;
    let learned = ScoreField::score(model, &x, sigma)?;
    let true_score = ScoreField::score(truth, &x, sigma)?;
    Ok(fisher_divergence(&learned, &true_score)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

/// Flags of `deepgen sample score`.
#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// Run directory of `deepgen train score` (or its checkpoint file).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Number of chains.
    #[arg(long, value_name = "N", default_value_t = 1280, value_parser = at_least_one)]
    pub n: usize,
    /// Seed of the starts and the Langevin noise.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// The scatter plot of the samples over the data to write.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    /// Also draw the learned score field beside the true one (mixtures) to this PNG.
    #[arg(long, value_name = "FILE.png")]
    pub field: Option<PathBuf>,
    /// Sample with the data set's exact score instead of the network (mixtures).
    #[arg(long)]
    pub exact: bool,
    #[command(flatten)]
    pub sampler: SamplerFlags,
    /// Device: cpu, cuda, cuda:N, metal or auto.
    #[arg(long, value_name = "D", default_value = "auto")]
    pub device: DeviceChoice,
}

/// `deepgen sample score`: chains of the stored sampler (flags override
/// it), the samples drawn over the data; for a mixture, the fraction in
/// each component and the mode metrics.
pub fn sample(args: &SampleArgs) -> Result<()> {
    let path = checkpoint_file(&args.checkpoint, "score")?;
    let device = open_device(args.device)?;
    let (model, _vars) = load_model::<ScoreModel>(&path, &device)
        .with_context(|| format!("cannot load a score model from `{}`", path.display()))?;
    let run_dir = path.parent().map(PathBuf::from).unwrap_or_default();
    let file = RunFile::<ScoreConfig, ScoreTraining>::read(&run_dir.join(CONFIG_FILE), "score")
        .with_context(|| format!("`{}` is not a complete run directory", run_dir.display()))?;
    let data = file.run.data.unwrap_or(DataArg::Mixture);
    let set = data.points().context("a score run models 2-D points")?;
    let truth = set.mixture().map(|m| exact_mixture(&m)).transpose()?;
    let mut sampler = model.config().sampler.clone();
    args.sampler.apply(&mut sampler);

    let e = randn(&mut derived_rng(args.seed, 0), (args.n, 2), &device)?;
    let mut rng = derived_rng(args.seed, 1);
    let (samples, source) = if args.exact {
        let Some(truth) = &truth else {
            bail!(
                "--exact needs a mixture's score; --data {} has no closed form",
                data.name()
            );
        };
        // The same sampler on the true score: annealed over the model's
        // levels, plain on the data's own score (σ = 0).
        let x0 = sampler.start_from(&e)?;
        (
            sampler.run(truth, &model.config().sigmas, 0.0, &x0, &mut rng)?,
            "exact score",
        )
    } else {
        (model.draw(&sampler, &e, &mut rng)?, "network")
    };
    let data_points = set.sample(TEST_POINTS, &mut derived_rng(args.seed, 2), &device)?;
    let title = match sampler.kind {
        SamplerKind::Annealed => format!(
            "annealed Langevin, {} × {} steps, {source}",
            model.config().sigmas.len(),
            sampler.steps
        ),
        SamplerKind::Langevin => format!("Langevin, {} steps, {source}", sampler.steps),
    };
    save_points_png(&samples, Some(&data_points), &title, &args.out)?;
    let mut line = format!(
        "{} samples ({} on the {source}, seed {}): {}",
        args.n,
        sampler.kind,
        args.seed,
        args.out.display()
    );
    if let Some(truth) = &truth {
        let fractions: Vec<String> = truth
            .component_fractions(&samples)?
            .iter()
            .take(8)
            .map(|f| format!("{f:.3}"))
            .collect();
        line.push_str(&format!("; fraction per component {}", fractions.join(" ")));
    }
    let scores = crate::points::sample_scores(&samples, &set, args.seed)?;
    let scores: Vec<String> = scores.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
    say(&format!("{line}; {}", scores.join("  ")));
    if let Some(field) = &args.field {
        let level = judged_level(model.config());
        save_score_fields_png(&model, truth.as_ref(), level, &data_points, field)?;
        say(&format!("score field at σ = {level}: {}", field.display()));
    }
    Ok(())
}

/// Arrows per side of the score-field picture.
const FIELD_SIDE: usize = 21;

/// The learned score at level `sigma` on a grid over the data's box, beside
/// the true one when known, as arrows whose length saturates
/// (`|s| / (|s| + median |s_true|)` of a cell) so that both the faint
/// field between modes and the steep one near them show their direction.
fn save_score_fields_png(
    model: &ScoreModel,
    truth: Option<&GaussianMixture>,
    sigma: f64,
    data: &Tensor,
    path: &std::path::Path,
) -> Result<()> {
    let points = deepgen_data::tensor_to_points(data)?;
    let bound = |d: usize| {
        points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p[d]), hi.max(p[d]))
        })
    };
    let ((x0, x1), (y0, y1)) = (bound(0), bound(1));
    let half = 0.5 * (x1 - x0).max(y1 - y0) * 1.5;
    let (cx, cy) = (0.5 * (x0 + x1), 0.5 * (y0 + y1));
    let cell = 2.0 * half / FIELD_SIDE as f64;
    let grid: Vec<[f64; 2]> = (0..FIELD_SIDE * FIELD_SIDE)
        .map(|k| {
            let (i, j) = ((k % FIELD_SIDE) as f64 + 0.5, (k / FIELD_SIDE) as f64 + 0.5);
            [cx - half + i * cell, cy - half + j * cell]
        })
        .collect();
    let flat: Vec<f32> = grid.iter().flat_map(|p| [p[0] as f32, p[1] as f32]).collect();
    let at = Tensor::from_vec(flat, (grid.len(), 2), data.device())?;
    let learned = deepgen_data::tensor_to_points(&ScoreField::score(model, &at, sigma)?)?;
    let true_field = truth.map(|t| ScoreField::score(t, &at, sigma)).transpose()?;
    let true_field = true_field.as_ref().map(deepgen_data::tensor_to_points).transpose()?;
    let mut norms: Vec<f64> = true_field
        .as_ref()
        .unwrap_or(&learned)
        .iter()
        .map(|v| v[0].hypot(v[1]))
        .collect();
    norms.sort_by(f64::total_cmp);
    let median = norms[norms.len() / 2].max(f64::MIN_POSITIVE);
    let arrows = |field: &[[f64; 2]]| -> Vec<[f64; 2]> {
        field
            .iter()
            .map(|v| {
                let norm = v[0].hypot(v[1]);
                let length = 0.9 * cell * norm / (norm + median);
                if norm > 0.0 {
                    [v[0] / norm * length, v[1] / norm * length]
                } else {
                    [0.0, 0.0]
                }
            })
            .collect()
    };
    let data_layer = [ScatterLayer {
        name: "",
        points: &points,
        color: (190, 190, 190),
        size: 1,
    }];
    let learned_arrows = arrows(&learned);
    let learned_layer = [ArrowLayer {
        origins: &grid,
        vectors: &learned_arrows,
        color: (214, 39, 40),
    }];
    let learned_title = format!("learned s(x, σ = {sigma:.3})");
    let mut panels = vec![Panel {
        layers: &data_layer,
        arrows: &learned_layer,
        title: &learned_title,
    }];
    let true_arrows = true_field.as_deref().map(arrows);
    let true_layer = true_arrows.as_ref().map(|v| {
        [ArrowLayer {
            origins: &grid,
            vectors: v,
            color: (31, 119, 180),
        }]
    });
    let true_title = format!("true ∇log q_σ, σ = {sigma:.3}");
    if let Some(layer) = &true_layer {
        panels.push(Panel {
            layers: &data_layer,
            arrows: layer,
            title: &true_title,
        });
    }
    let extent = ([cx - half, cx + half], [cy - half, cy + half]);
    panels_plot(&panels, extent, path)
}
