//! `deepgen train simclr` and `deepgen eval simclr`: deepgen-contrastive's
//! SimCLR on MNIST or Fashion-MNIST through core's trainer, with pairs of
//! views from deepgen-data's `PairBatcher`; after every epoch the frozen
//! representation `h = f(x)` is judged by the linear probe and by k-NN
//! (`metrics.csv`). Pictures: the views (`views.png`), the loss curve and
//! the test embeddings' 2-D PCA coloured by class (`embeddings_pca.png`).

use crate::args::{RunFlags, at_least_one, positive_f64, set};
use crate::pictures::{save_grid_png, save_loss_curve, say_pictures};
use crate::plot::{PALETTE, ScatterLayer, scatter_plot};
use crate::run::{
    CONFIG_FILE, RunDefaults, RunFile, TrainRun, checkpoint_file, group_thousands, load_dataset, open_device, say,
};
use anyhow::{Context, Result, bail};
use deepgen_contrastive::{
    KnnConfig, Labelled, ProbeConfig, ProbeSolver, SimClr, SimClrConfig, as_images, knn_accuracy, linear_probe,
};
use deepgen_core::candle::{DType, Device, Tensor};
use deepgen_core::train::BatchSource;
use deepgen_core::{DeviceChoice, LrSchedule, Metrics, TrainableModel, Trainer, load_model, rng_from_seed};
use deepgen_data::{BatcherConfig, Mnist, PairBatcher};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The anchor's recipe: 5 epochs of Adam 1e-3 at batch 256.
const DEFAULTS: RunDefaults = RunDefaults {
    epochs: 5,
    batch_size: 256,
    lr: 1e-3,
};
/// Images per forward pass when features are extracted.
const FEATURE_BATCH: usize = 1000;

/// Which frozen-feature judges run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Probe {
    /// The linear probe and k-NN.
    #[default]
    Both,
    /// Logistic regression on standardised features.
    Linear,
    /// Weighted k-NN on cosine similarity.
    Knn,
    /// None (training only).
    None,
}

/// Flags of `deepgen train simclr`; each overrides `[model]`/`[training]` of `--config`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// NT-Xent's temperature τ [default: 0.5].
    #[arg(long, value_name = "τ", allow_hyphen_values = true, value_parser = positive_f64)]
    pub tau: Option<f64>,
    /// The encoder f in the cnn spec language; it takes 28×28 images and ends in a vector [default: the anchor's].
    #[arg(long, value_name = "SPEC")]
    pub encoder: Option<String>,
    /// Projection head widths after h, comma-separated [default: 128,64].
    #[arg(long, value_name = "W", value_delimiter = ',', value_parser = at_least_one)]
    pub projection: Option<Vec<usize>>,
    /// Negatives kept from earlier batches (0: none) [default: 0].
    #[arg(long, value_name = "M")]
    pub memory_bank: Option<usize>,
    /// Frozen-feature judges after every epoch [default: both].
    #[arg(long, value_enum)]
    pub probe: Option<Probe>,
    /// How the linear probe is fitted: lbfgs (the logistic regression's optimum) or adam (the anchor's 20 epochs) [default: lbfgs].
    #[arg(long, value_name = "SOLVER")]
    pub probe_solver: Option<ProbeSolver>,
    /// Anneal the learning rate to 0 over the run with a half cosine (SimCLR's schedule; the anchor keeps it constant).
    #[arg(long)]
    pub cosine: bool,
    #[command(flatten)]
    pub run: RunFlags,
}

/// The `[training]` table: the per-epoch judges.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimClrTraining {
    /// Which judges run after every epoch.
    pub probe: Probe,
    /// Learning rate annealed by a half cosine to 0 over all the run's steps.
    pub cosine: bool,
    /// The linear probe's settings.
    pub linear: ProbeConfig,
    /// The k-NN classifier's settings.
    pub knn: KnnConfig,
}

/// The frozen-feature judges of one representation.
fn judge(train: Labelled<'_>, test: Labelled<'_>, training: &SimClrTraining, device: &Device) -> Result<Metrics> {
    let mut metrics = Metrics::new();
    if matches!(training.probe, Probe::Both | Probe::Linear) {
        metrics.push(
            "linear_probe_accuracy",
            linear_probe(train, test, &training.linear, device)?,
        );
    }
    if matches!(training.probe, Probe::Both | Probe::Knn) {
        metrics.push("knn_accuracy", knn_accuracy(train, test, &training.knn, device)?);
    }
    Ok(metrics)
}

/// The judges of `model`'s representation of `data`.
fn judge_model(model: &SimClr, data: &Mnist, training: &SimClrTraining) -> Result<Metrics> {
    let train = model.features(&data.train_images, FEATURE_BATCH)?;
    let test = model.features(&data.test_images, FEATURE_BATCH)?;
    let labelled = |features| Labelled {
        features,
        labels: &data.train_labels,
    };
    let test = Labelled {
        features: &test,
        labels: &data.test_labels,
    };
    judge(labelled(&train), test, training, model.device())
}

/// `deepgen train simclr`.
pub fn train(args: &TrainArgs) -> Result<()> {
    let (mut run, mut config, mut training) =
        TrainRun::start::<SimClrConfig, SimClrTraining>(&args.run, SimClr::FAMILY, |_| DEFAULTS)?;
    set(&mut config.temperature, args.tau);
    set(&mut config.encoder, args.encoder.clone());
    set(&mut config.projection, args.projection.clone());
    set(&mut config.memory_bank_size, args.memory_bank);
    set(&mut training.probe, args.probe);
    set(&mut training.linear.solver, args.probe_solver);
    training
        .linear
        .validate()
        .context("invalid [training.linear] probe settings")?;
    training.cosine |= args.cosine;
    config.validate().context("invalid simclr options")?;
    if config.image_shape()? != (1, 28, 28) {
        bail!(
            "the encoder takes {:?} images; MNIST's are 28×28×1 (start the spec with INPUT-28x28x1)",
            config.image_shape()?
        );
    }
    if run.settings.batch_size < 2 {
        bail!(
            "--batch-size {}: SimCLR contrasts each image with the others of its batch, so it needs at least 2",
            run.settings.batch_size
        );
    }
    let device = run.open_device()?;
    let data = run.load_images()?;
    let recipe = config.augmentations.clone();
    let augment = move |x: &Tensor, rng: &mut deepgen_core::StdRng| -> deepgen_core::Result<Tensor> {
        Ok(recipe.apply(&as_images(x, (1, 28, 28))?, rng)?)
    };
    let batcher = BatcherConfig {
        batch_size: run.settings.batch_size,
        drop_last: true,
        ..Default::default()
    };
    let mut batches = PairBatcher::new(&data.train_images, batcher, &device, augment)
        .context("the training set makes no full batch")?;
    let (judged, judges) = (data.clone(), training.clone());
    let mut adam = run.adam();
    if training.cosine {
        adam.schedule = LrSchedule::Cosine {
            total_steps: run.total_steps(batches.n_batches())?,
            min_lr: 0.0,
        };
    }
    let trainer = Trainer::<SimClr>::new(&config, adam, run.settings.seed, &device)?;
    let parameters = trainer.parameter_count();
    let mut trainer = trainer.with_evaluation(move |model, _| {
        judge_model(model, &judged, &judges).map_err(|e| deepgen_core::Error::External(e.into()))
    });

    let file = run.file(SimClr::FAMILY, config.clone(), training.clone());
    run.create_run_dir(&file)?;
    let views = save_views(trainer.model(), &data.test_images, run.settings.seed, &run.run_dir)?;
    run.announce(&format!(
        "training SimCLR ({} parameters) on {} ({} train / {} test images)",
        group_thousands(parameters),
        run.settings.data.name(),
        data.n_train(),
        data.n_test()
    ));
    run.announce(&format!("model {}", deepgen_core::trainer::config_json(&config)?));
    run.announce(&run.schedule_summary(&device));
    let Some(records) = run.fit(&mut trainer, &mut batches, &file, |_, _| Ok(()))? else {
        return Ok(());
    };
    let mut pictures = vec![views];
    pictures.extend(save_loss_curve(&run.run_dir)?);
    let features = trainer.model().features(&data.test_images, FEATURE_BATCH)?;
    pictures.push(save_embedding_pca(
        &features,
        &data.test_labels,
        &run.run_dir.join("embeddings_pca.png"),
    )?);
    let seconds = records.iter().map(|r| r.train_seconds).sum::<f64>() / records.len() as f64;
    run.say_done(&records, &format!(" ({seconds:.1} s of training per epoch)"), &[]);
    say_pictures(&pictures);
    Ok(())
}

/// `views.png`: the first 16 test images (top row) and two views of each,
/// as one training batch would draw them.
fn save_views(model: &SimClr, test: &Tensor, seed: u64, run_dir: &Path) -> Result<PathBuf> {
    let originals = test.narrow(0, 0, test.dim(0)?.min(16))?.to_device(model.device())?;
    let (first, second) = model.views(&originals, &mut rng_from_seed(seed))?;
    let rows = Tensor::cat(&[originals, first.flatten_from(1)?, second.flatten_from(1)?], 0)?.clamp(0.0, 1.0)?;
    let path = run_dir.join("views.png");
    save_grid_png(&rows, 16, &path)?;
    Ok(path)
}

/// A scatter plot of `features` `[n, F]` on their first two principal
/// directions, one colour per class.
fn save_embedding_pca(features: &Tensor, labels: &Tensor, path: &Path) -> Result<PathBuf> {
    let (n, d) = features.dims2()?;
    let data: Vec<f64> = features.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let directions = deepgen_vae::pca_components(&data, n, d, 2)?;
    let mean: Vec<f64> = (0..d)
        .map(|j| data.iter().skip(j).step_by(d).sum::<f64>() / n as f64)
        .collect();
    let labels = labels.to_vec1::<u32>()?;
    let mut by_class: Vec<Vec<[f64; 2]>> = vec![Vec::new(); 10];
    for (row, label) in data.chunks_exact(d).zip(&labels) {
        let project = |k: usize| (0..d).map(|j| (row[j] - mean[j]) * directions[j * 2 + k]).sum::<f64>();
        if let Some(points) = by_class.get_mut(*label as usize) {
            points.push([project(0), project(1)]);
        }
    }
    let names: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    let layers: Vec<ScatterLayer> = by_class
        .iter()
        .enumerate()
        .map(|(c, points)| ScatterLayer {
            name: &names[c],
            points,
            color: PALETTE[c],
            size: 1,
        })
        .collect();
    scatter_plot(&layers, "test h = f(x), two principal components", None, path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(path.to_path_buf())
}

/// Flags of `deepgen eval simclr`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Run directory of `deepgen train simclr` (or its checkpoint file).
    #[arg(long, value_name = "DIR", default_value = "runs/simclr-mnist")]
    pub checkpoint: PathBuf,
    /// Frozen-feature judges.
    #[arg(long, value_enum, default_value_t = Probe::Both)]
    pub probe: Probe,
    /// How the linear probe is fitted: lbfgs (the logistic regression's optimum) or adam (the anchor's 20 epochs) [default: the run's].
    #[arg(long, value_name = "SOLVER")]
    pub probe_solver: Option<ProbeSolver>,
    /// Also judge a randomly initialised encoder (seed 0) and the raw pixels.
    #[arg(long)]
    pub baselines: bool,
    /// Folder with the four IDX files [default: the run's].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Device: cpu, cuda, cuda:N, metal or auto.
    #[arg(long, value_name = "D", default_value = "auto")]
    pub device: DeviceChoice,
}

/// `deepgen eval simclr`: the judges of the trained encoder's `h`, and on
/// request of a random encoder and of the raw pixels.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let path = checkpoint_file(&args.checkpoint, SimClr::FAMILY)?;
    let device = open_device(args.device)?;
    let (model, _vars) = load_model::<SimClr>(&path, &device)
        .with_context(|| format!("cannot load a SimCLR model from `{}`", path.display()))?;
    let run_dir = path.parent().map(PathBuf::from).unwrap_or_default();
    let file = RunFile::<SimClrConfig, SimClrTraining>::read(&run_dir.join(CONFIG_FILE), SimClr::FAMILY)
        .with_context(|| format!("`{}` is not a complete run directory", run_dir.display()))?;
    let data = file.run.data.unwrap_or(crate::args::DataArg::Mnist);
    let dir = data.dir(args.data_dir.as_deref().or(file.run.data_dir.as_deref()));
    let images = load_dataset(data.require_images()?, &dir)?;
    let mut training = SimClrTraining {
        probe: args.probe,
        ..file.training
    };
    set(&mut training.linear.solver, args.probe_solver);
    training
        .linear
        .validate()
        .context("invalid [training.linear] probe settings")?;
    let line = |what: &str, metrics: &Metrics| {
        let parts: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {:.2} %", 100.0 * v)).collect();
        say(&format!("{what:<28} {}", parts.join("  ")));
    };
    line(
        &format!("`{}`", run_dir.display()),
        &judge_model(&model, &images, &training)?,
    );
    if args.baselines {
        let random = Trainer::<SimClr>::new(model.config(), Default::default(), 0, &device)?;
        line(
            "random encoder (seed 0)",
            &judge_model(random.model(), &images, &training)?,
        );
        let labelled = |features, labels| Labelled { features, labels };
        let metrics = judge(
            labelled(&images.train_images, &images.train_labels),
            labelled(&images.test_images, &images.test_labels),
            &training,
            &device,
        )?;
        line("raw pixels", &metrics);
    }
    Ok(())
}
