//! What every `deepgen <command> <model>` shares, so that a new model's
//! `commands/<model>.rs` holds only what is its own: the common training
//! flags and [`TrainRun`] (run directory checks, data loading with a message
//! that says how to fetch the data, the device, `config.toml`, core's loop
//! with per-epoch lines, the closing lines), training batches, the
//! checkpoint of an evaluated run, progress bars and PNG pictures; for image
//! models, training with pictures ([`train_with_pictures`], [`Pictured`])
//! and the importance-sampled likelihood evaluation ([`LikelihoodEvalArgs`]).

use crate::plot;
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use deepgen_core::candle::{DType, Device, Tensor};
use deepgen_core::candle_nn::VarMap;
use deepgen_core::rng::{derived_rng, randn};
use deepgen_core::train::{
    BatchSource, CHECKPOINT_FILE, EpochRecord, METRICS_FILE, TrainConfig, TrainStep, batch_ranges, fit,
};
use deepgen_core::{AdamConfig, Checkpoint, DeviceChoice, Metrics, StdRng};
use deepgen_data::{Batch, Batcher, BatcherConfig, Dataset, Mnist, save_image_grid};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The name of the run configuration file in a run directory.
pub const CONFIG_FILE: &str = "config.toml";

/// The data sets `--data` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataArg {
    /// LeCun's handwritten digits.
    Mnist,
    /// Zalando's Fashion-MNIST.
    FashionMnist,
}

impl DataArg {
    /// The data crate's name for it.
    pub fn dataset(self) -> Dataset {
        match self {
            DataArg::Mnist => Dataset::Mnist,
            DataArg::FashionMnist => Dataset::FashionMnist,
        }
    }

    /// The folder of `--data-dir`, or the data set's default folder.
    fn dir(self, data_dir: Option<&Path>) -> PathBuf {
        data_dir.map_or_else(|| self.dataset().default_dir(), Path::to_path_buf)
    }

    /// Loads the data set from `--data-dir` or its default folder (see
    /// [`load_dataset`]); the eval commands' data.
    ///
    /// # Errors
    /// As [`load_dataset`].
    pub fn load(self, data_dir: Option<&Path>) -> Result<(Dataset, Mnist)> {
        let dataset = self.dataset();
        Ok((dataset, load_dataset(dataset, &self.dir(data_dir))?))
    }
}

/// Flags every `deepgen train <model>` takes (`#[command(flatten)]` them).
///
/// `--epochs`, `--batch-size` and `--lr` default per model; resolve them with
/// [`CommonTrainArgs::resolve`].
#[derive(Debug, Clone, Args)]
pub struct CommonTrainArgs {
    /// Data set to train on.
    #[arg(long, value_enum, default_value_t = DataArg::Mnist)]
    pub data: DataArg,
    /// Folder with the four IDX files [default: data/mnist or data/fashion-mnist].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of epochs in all (a resumed run continues up to it) [default: per model].
    #[arg(long, value_name = "N", value_parser = positive)]
    pub epochs: Option<usize>,
    /// Examples per training batch [default: per model].
    #[arg(long, value_name = "B", value_parser = positive)]
    pub batch_size: Option<usize>,
    /// Learning rate [default: per model].
    #[arg(long, value_name = "X", value_parser = positive_f64)]
    pub lr: Option<f64>,
    /// Seed of every random draw (initial weights, shuffling, noise).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Device: cpu, cuda, cuda:N, metal or auto (the best one this build has).
    #[arg(long, value_name = "D", default_value = "auto")]
    pub device: DeviceChoice,
    /// Run directory for metrics.csv, the checkpoint and the config [default: runs/<model>-<data>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar and no per-epoch lines.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A model's defaults for the flags that have none of their own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelDefaults {
    /// `--epochs`.
    pub epochs: usize,
    /// `--batch-size`.
    pub batch_size: usize,
    /// `--lr`.
    pub lr: f64,
}

/// The flags after the model's defaults are filled in.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The data set.
    pub dataset: Dataset,
    /// Where its files are.
    pub data_dir: PathBuf,
    /// Epochs in all.
    pub epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// The run directory.
    pub run_dir: PathBuf,
}

impl CommonTrainArgs {
    /// Fills in the model's defaults; `model` names the default run
    /// directory `runs/<model>-<data>`.
    fn resolve(&self, model: &str, defaults: ModelDefaults) -> Resolved {
        let dataset = self.data.dataset();
        Resolved {
            dataset,
            data_dir: self.data.dir(self.data_dir.as_deref()),
            epochs: self.epochs.unwrap_or(defaults.epochs),
            batch_size: self.batch_size.unwrap_or(defaults.batch_size),
            lr: self.lr.unwrap_or(defaults.lr),
            run_dir: self
                .out
                .clone()
                .unwrap_or_else(|| Path::new("runs").join(format!("{model}-{}", dataset.name()))),
        }
    }

    /// Core's loop configuration for this run.
    fn train_config(&self, resolved: &Resolved) -> TrainConfig {
        TrainConfig {
            epochs: resolved.epochs,
            seed: self.seed,
            run_dir: Some(resolved.run_dir.clone()),
            resume: self.resume,
            progress: !self.quiet,
        }
    }

    /// Refuses to overwrite a finished or interrupted run without `--resume`,
    /// and to resume a run that is not there.
    ///
    /// # Errors
    /// When the run directory holds a checkpoint and `--resume` is not set, or
    /// `--resume` is set and it holds none.
    fn check_run_dir(&self, run_dir: &Path) -> Result<()> {
        let checkpoint = run_dir.join(CHECKPOINT_FILE);
        match (self.resume, checkpoint.exists()) {
            (false, true) => bail!(
                "`{}` already holds a trained run; pass --resume to continue it, or --out DIR for a new run",
                run_dir.display()
            ),
            (true, false) => bail!(
                "cannot resume: `{}` holds no checkpoint (train without --resume first)",
                run_dir.display()
            ),
            _ => Ok(()),
        }
    }
}

/// One `deepgen train <model>` run from its flags to its last line. A
/// model's train command calls, in this order: [`TrainRun::new`] (flags
/// resolved, run directory checked), then checks its own options, then
/// [`TrainRun::open_device`] and [`TrainRun::load_data`], builds its model,
/// [`TrainRun::create_run_dir`], [`TrainRun::announce`], [`TrainRun::fit`]
/// and [`TrainRun::say_done`]. Every error before `create_run_dir` leaves no
/// run directory behind.
#[derive(Debug)]
pub struct TrainRun<'a> {
    /// The common flags.
    pub args: &'a CommonTrainArgs,
    /// The flags with the model's defaults filled in.
    pub resolved: Resolved,
    /// The `<model>` of `deepgen train <model>`.
    model: &'static str,
    /// The entries of `config.toml`, kept to write it after a resumed run's
    /// checkpoint has accepted them.
    config: Vec<(&'static str, ConfigValue)>,
    /// When training started.
    started: Instant,
}

impl<'a> TrainRun<'a> {
    /// Resolves the flags with the model's defaults and refuses a run
    /// directory in the wrong state (see [`CommonTrainArgs::check_run_dir`]).
    ///
    /// # Errors
    /// A trained run without `--resume`, or `--resume` without a checkpoint.
    pub fn new(args: &'a CommonTrainArgs, model: &'static str, defaults: ModelDefaults) -> Result<Self> {
        let resolved = args.resolve(model, defaults);
        args.check_run_dir(&resolved.run_dir)?;
        Ok(Self {
            args,
            resolved,
            model,
            config: Vec::new(),
            started: Instant::now(),
        })
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.resolved.run_dir
    }

    /// Opens `--device` (see [`open_device`]).
    ///
    /// # Errors
    /// As [`open_device`].
    pub fn open_device(&self) -> Result<Device> {
        open_device(self.args.device)
    }

    /// Loads `--data` (see [`load_dataset`]).
    ///
    /// # Errors
    /// As [`load_dataset`].
    pub fn load_data(&self) -> Result<Mnist> {
        load_dataset(self.resolved.dataset, &self.resolved.data_dir)
    }

    /// Adam with `--lr` and otherwise its defaults.
    pub fn adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.resolved.lr,
            ..Default::default()
        }
    }

    /// Creates the run directory and writes its `config.toml`: the common
    /// flags, then `model_entries`. A resumed run keeps its config file until
    /// the checkpoint has accepted the options (same model, same seed):
    /// [`TrainRun::fit`] writes it then.
    ///
    /// # Errors
    /// When the directory or the file cannot be written.
    pub fn create_run_dir(&mut self, model_entries: Vec<(&'static str, ConfigValue)>) -> Result<()> {
        let dir = &self.resolved.run_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
        self.config = common_config_entries(self.args, &self.resolved);
        self.config.extend(model_entries);
        if !self.args.resume {
            write_run_config(dir, self.model, &self.config)?;
        }
        Ok(())
    }

    /// `on mnist (60000 train / 10000 test images)`.
    pub fn data_summary(&self, data: &Mnist) -> String {
        format!(
            "on {} ({} train / {} test images)",
            self.resolved.dataset,
            data.n_train(),
            data.n_test()
        )
    }

    /// `10 epochs, batch 128, Adam lr 0.001, seed 0, device cpu; run
    /// directory `runs/vae-mnist`` (and ` (resuming)`).
    pub fn schedule_summary(&self, device: &Device) -> String {
        format!(
            "{} epochs, batch {}, Adam lr {}, seed {}, device {}; run directory `{}`{}",
            self.resolved.epochs,
            self.resolved.batch_size,
            self.resolved.lr,
            self.args.seed,
            device_name(device),
            self.run_dir().display(),
            if self.args.resume { " (resuming)" } else { "" },
        )
    }

    /// Prints a line about the run, unless `--quiet`.
    pub fn announce(&self, line: &str) {
        if !self.args.quiet {
            say(line);
        }
    }

    /// Trains `step` on `data` through core's loop, with a line per epoch
    /// unless `--quiet`; then writes a resumed run's `config.toml`. Returns
    /// the epochs' records, or `None` after saying so when the run had
    /// already reached `--epochs`.
    ///
    /// # Errors
    /// The loop's errors (a NaN, a checkpoint that does not fit); the config
    /// file.
    pub fn fit<S, D>(&mut self, step: &mut S, data: &mut D) -> Result<Option<Vec<EpochRecord>>>
    where
        S: TrainStep,
        D: BatchSource<Batch = S::Batch>,
    {
        self.started = Instant::now();
        let (quiet, epochs) = (self.args.quiet, self.resolved.epochs);
        let records = fit(&self.args.train_config(&self.resolved), step, data, |record| {
            if !quiet {
                say(&epoch_line(record, epochs));
            }
        })?;
        if self.args.resume {
            write_run_config(self.run_dir(), self.model, &self.config)?;
        }
        if records.is_empty() {
            say(&format!(
                "nothing to do: `{}` has already been trained for {epochs} epochs (raise --epochs to continue)",
                self.run_dir().display(),
            ));
            return Ok(None);
        }
        Ok(Some(records))
    }

    /// The closing line: `done: N epochs in T s{summary}; ` and the run's
    /// metrics and checkpoint files, then `more_files`.
    pub fn say_done(&self, records: &[EpochRecord], summary: &str, more_files: &[PathBuf]) {
        let files: Vec<String> = [METRICS_FILE, CHECKPOINT_FILE]
            .iter()
            .map(|file| self.run_dir().join(file))
            .chain(more_files.iter().cloned())
            .map(|path| format!("`{}`", path.display()))
            .collect();
        say(&format!(
            "done: {} epochs in {:.1} s{summary}; {}",
            records.len(),
            self.started.elapsed().as_secs_f64(),
            files.join(", ")
        ));
    }
}

/// `--epochs` and `--batch-size`: an integer of at least 1.
fn positive(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{text}` is not a positive integer")),
    }
}

/// `--lr` and other rates and periods: a positive finite number.
pub fn positive_f64(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("`{text}` is not a positive number")),
    }
}

/// A model's count flag of at least 1 (`--latent 0`, `--k 0` are errors that
/// name the flag).
pub fn at_least_one(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// A model's weight flag, a finite number ≥ 0 (`--beta -1` is an error).
pub fn non_negative_f64(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x >= 0.0 && x.is_finite() => Ok(x),
        Ok(x) => Err(format!("{x} is not a finite number ≥ 0")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

/// Opens the device, saying which one was picked.
///
/// # Errors
/// When this build or machine lacks it (the message says how to get it).
pub fn open_device(choice: DeviceChoice) -> Result<Device> {
    choice
        .device()
        .with_context(|| format!("cannot open device `{choice}`"))
}

/// A short name of an opened device: `cpu`, `cuda`, `metal`.
pub fn device_name(device: &Device) -> &'static str {
    if device.is_cuda() {
        "cuda"
    } else if device.is_metal() {
        "metal"
    } else {
        "cpu"
    }
}

/// Loads MNIST or Fashion-MNIST from `dir`; a missing file is an error that
/// names it and the `cargo xtask fetch-mnist` command that gets it.
///
/// # Errors
/// Any loading error of the data crate, with the folder in its context.
pub fn load_dataset(dataset: Dataset, dir: &Path) -> Result<Mnist> {
    dataset
        .load(dir)
        .with_context(|| format!("cannot load {dataset} from `{}`", dir.display()))
}

/// Shuffled training batches from a [`Batcher`], as core's loop takes them:
/// [`ImageBatches`] for unsupervised models, [`LabelledBatches`] for
/// supervised ones.
#[derive(Debug)]
pub struct Batches<B> {
    batcher: Batcher,
    batch: PhantomData<fn() -> B>,
}

/// Batches of images `[batch, 784]`.
pub type ImageBatches = Batches<Tensor>;
/// Batches of `(images, labels)`.
pub type LabelledBatches = Batches<(Tensor, Tensor)>;

/// What a model takes from one batch of the data crate.
pub trait FromBatch: Sized {
    /// The model's batch.
    ///
    /// # Errors
    /// When the batch lacks a part the model needs.
    fn from_batch(batch: Batch) -> deepgen_core::Result<Self>;
}

impl FromBatch for Tensor {
    fn from_batch(batch: Batch) -> deepgen_core::Result<Self> {
        Ok(batch.images)
    }
}

impl FromBatch for (Tensor, Tensor) {
    fn from_batch(batch: Batch) -> deepgen_core::Result<Self> {
        let labels = batch.labels.ok_or_else(|| core_error("the batcher has no labels"))?;
        Ok((batch.images, labels))
    }
}

impl<B> Batches<B> {
    fn with_labels(images: &Tensor, labels: Option<&Tensor>, batch_size: usize, device: &Device) -> Result<Self> {
        let config = BatcherConfig {
            batch_size,
            ..Default::default()
        };
        Ok(Batches {
            batcher: Batcher::new(images, labels, config, device)?,
            batch: PhantomData,
        })
    }
}

impl ImageBatches {
    /// Shuffled batches of `batch_size` from `images`, on `device`.
    ///
    /// # Errors
    /// The batcher's errors (an empty data set).
    pub fn new(images: &Tensor, batch_size: usize, device: &Device) -> Result<Self> {
        Self::with_labels(images, None, batch_size, device)
    }
}

impl LabelledBatches {
    /// Shuffled batches of `batch_size` from `images` and `labels`, on `device`.
    ///
    /// # Errors
    /// The batcher's errors (an empty data set, mismatched counts).
    pub fn new(images: &Tensor, labels: &Tensor, batch_size: usize, device: &Device) -> Result<Self> {
        Self::with_labels(images, Some(labels), batch_size, device)
    }
}

impl<B: FromBatch> BatchSource for Batches<B> {
    type Batch = B;

    fn n_batches(&self) -> usize {
        BatchSource::n_batches(&self.batcher)
    }

    fn start_epoch(&mut self, rng: &mut StdRng) -> deepgen_core::Result<()> {
        BatchSource::start_epoch(&mut self.batcher, rng)
    }

    fn batch(&self, batch_idx: usize) -> deepgen_core::Result<B> {
        B::from_batch(BatchSource::batch(&self.batcher, batch_idx)?)
    }
}

/// An error of the command's own work inside core's training loop (a
/// picture that cannot be written, a batch without labels) as the loop's
/// error type, with `message` as its text (`format!("{e:#}")` keeps an
/// anyhow error's context chain).
pub fn core_error(message: impl std::fmt::Display) -> deepgen_core::Error {
    deepgen_core::Error::Candle(deepgen_core::candle::Error::msg(message.to_string()))
}

/// The checkpoint file named by an eval command's flag: a run directory of
/// `deepgen train <model>` or the checkpoint file itself.
///
/// # Errors
/// When the directory holds no checkpoint or the path does not exist; the
/// message says how to make one.
pub fn checkpoint_file(arg: &Path, model: &str) -> Result<PathBuf> {
    if arg.is_dir() {
        let path = arg.join(CHECKPOINT_FILE);
        if !path.exists() {
            bail!(
                "`{}` holds no {CHECKPOINT_FILE}; is it the run directory of `deepgen train {model}`?",
                arg.display()
            );
        }
        Ok(path)
    } else if arg.is_file() {
        Ok(arg.to_path_buf())
    } else {
        bail!(
            "run directory `{}` does not exist (train one with `deepgen train {model} --out {}`)",
            arg.display(),
            arg.display()
        )
    }
}

/// A progress bar of `len` steps in the style of `template` (indicatif's
/// syntax), hidden when stderr is not a terminal so that logs get no
/// control characters.
pub fn progress_bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Saves `images` `[n, D]` as a PNG grid with `n_cols` columns at `path`;
/// the error names the file.
///
/// # Errors
/// When the images are not square pictures or the file cannot be written.
pub fn save_grid_png(images: &Tensor, n_cols: usize, path: &Path) -> Result<()> {
    save_image_grid(images, n_cols, path).with_context(|| format!("cannot write `{}`", path.display()))
}

/// The text of the run's `metrics.csv`.
fn metrics_text(run_dir: &Path) -> Result<String> {
    let path = run_dir.join(METRICS_FILE);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read `{}`", path.display()))
}

/// Whether the run's `metrics.csv` has the column `name` (false when there
/// is no such file yet): a resumed run must log the columns it logged
/// before, which core's loop checks only after an epoch of training.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn metrics_has_column(run_dir: &Path, name: &str) -> Result<bool> {
    if !run_dir.join(METRICS_FILE).exists() {
        return Ok(false);
    }
    let text = metrics_text(run_dir)?;
    Ok(text
        .lines()
        .next()
        .is_some_and(|header| header.split(',').any(|c| c == name)))
}

/// The loss history of a run: the `train_loss` and `test_loss` columns of
/// its `metrics.csv`, with one value per epoch (those it has).
#[derive(Debug)]
struct LossHistory {
    /// The epoch of the first row (1 when the file has no `epoch` column).
    first_epoch: f64,
    /// `(column name, values)` of the loss columns present.
    series: Vec<(String, Vec<f64>)>,
}

/// The run's [`LossHistory`].
fn loss_history(run_dir: &Path) -> Result<LossHistory> {
    let text = metrics_text(run_dir)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap_or(f64::NAN)).collect())
        .collect();
    let column = |name: &str| -> Option<Vec<f64>> {
        let col = header.iter().position(|h| *h == name)?;
        Some(rows.iter().filter_map(|r| r.get(col).copied()).collect())
    };
    let first_epoch = column("epoch")
        .and_then(|epochs| epochs.first().copied())
        .filter(|e| e.is_finite())
        .unwrap_or(1.0);
    let series = ["train_loss", "test_loss"]
        .iter()
        .filter_map(|name| Some((name.to_string(), column(name)?)))
        .collect();
    Ok(LossHistory { first_epoch, series })
}

/// Draws `loss_curve.png` in the run directory from its `metrics.csv`, when
/// there are at least two epochs to connect; returns its path if drawn. The
/// picture is titled with the run directory's name, its x axis counts
/// epochs and its y axis is the loss per image (nats for the likelihood
/// models; an autoencoder's squared error is not, so no unit is named).
///
/// # Errors
/// When the metrics cannot be read or the picture cannot be written.
pub fn save_loss_curve(run_dir: &Path) -> Result<Option<PathBuf>> {
    let history = loss_history(run_dir)?;
    if !history.series.iter().any(|(_, v)| v.len() >= 2) {
        return Ok(None);
    }
    // Value `i` of a column is epoch `first_epoch + i`.
    let points: Vec<Vec<(f64, f64)>> = history
        .series
        .iter()
        .map(|(_, v)| {
            v.iter()
                .enumerate()
                .map(|(i, &y)| (history.first_epoch + i as f64, y))
                .collect()
        })
        .collect();
    let series: Vec<plot::Series> = history
        .series
        .iter()
        .zip(&points)
        .map(|((name, _), points)| plot::Series { name, points })
        .collect();
    let title = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = run_dir.join("loss_curve.png");
    plot::line_plot(&series, &title, "epoch", "loss per image", &path)?;
    Ok(Some(path))
}

/// `pictures: a.png, b.png`, when there are any.
pub fn say_pictures(pictures: &[PathBuf]) {
    if !pictures.is_empty() {
        let names: Vec<String> = pictures.iter().map(|p| p.display().to_string()).collect();
        say(&format!("pictures: {}", names.join(", ")));
    }
}

/// Test images per column of the reconstruction picture (pytorch/examples: 8).
const N_RECONSTRUCTIONS: usize = 8;
/// Prior samples in the 8 × 8 samples picture (pytorch/examples: 64).
const N_SAMPLES: usize = 64;
/// Pairs of test digits and steps per pair of the interpolation picture.
const INTERPOLATION: (usize, usize) = (6, 10);
/// Points per side of the 2-D latent manifold.
pub const MANIFOLD_SIDE: usize = 20;
/// Batch size of test-set evaluation.
pub const EVAL_BATCH: usize = 128;
/// Stream of the run seed that draws the prior samples of the pictures.
const PICTURE_STREAM: u64 = 1 << 40;

/// What the picture writer needs from a model of images (the VAE, the
/// autoencoders, the hierarchical VAE).
pub trait Pictured {
    /// Reconstructions of `xs` in data space.
    ///
    /// # Errors
    /// The model's errors.
    fn reconstruct(&self, xs: &Tensor) -> Result<Tensor>;
    /// Decoder means of prior samples from standard-normal noise `eps`
    /// `[n, noise_dim]` (`None`: no prior).
    ///
    /// # Errors
    /// The model's errors.
    fn generate(&self, eps: &Tensor) -> Result<Option<Tensor>>;
    /// Standard-normal values one prior sample takes: the latent dims (all
    /// layers' for a hierarchical model).
    fn noise_dim(&self) -> usize;
    /// Decoded points on the latent line from `x_a` to `x_b` in `n_steps`.
    ///
    /// # Errors
    /// The model's errors.
    fn interpolate(&self, x_a: &Tensor, x_b: &Tensor, n_steps: usize) -> Result<Tensor>;
    /// The decoded [`MANIFOLD_SIDE`]² grid of a 2-D latent (`None`: no
    /// manifold picture).
    ///
    /// # Errors
    /// The model's errors.
    fn manifold(&self) -> Result<Option<Tensor>>;
}

/// A training step that writes the per-epoch pictures after its evaluation:
/// `reconstructions_epoch_XX.png` (test originals above, reconstructions
/// below) and, for a model with a prior, `samples_epoch_XX.png` (the same
/// noise every epoch, so that the pictures show training progress).
#[derive(Debug)]
pub struct WithPictures<S> {
    inner: S,
    run_dir: PathBuf,
    /// The first test images, shown with their reconstructions.
    originals: Tensor,
    /// Prior noise of the samples picture, the same every epoch.
    sample_eps: Tensor,
}

impl<S: Pictured> WithPictures<S> {
    fn new(inner: S, run_dir: &Path, test_images: &Tensor, seed: u64) -> Result<Self> {
        let n = N_RECONSTRUCTIONS.min(test_images.dim(0)?);
        let sample_eps = randn(
            &mut derived_rng(seed, PICTURE_STREAM),
            (N_SAMPLES, inner.noise_dim()),
            test_images.device(),
        )?;
        Ok(Self {
            inner,
            run_dir: run_dir.to_path_buf(),
            originals: test_images.narrow(0, 0, n)?,
            sample_eps,
        })
    }

    fn save_pictures(&self, epoch: usize) -> Result<()> {
        let recon = self.inner.reconstruct(&self.originals)?;
        let both = Tensor::cat(&[&self.originals, &recon], 0)?;
        let path = self.run_dir.join(format!("reconstructions_epoch_{epoch:02}.png"));
        save_grid_png(&both, self.originals.dim(0)?, &path)?;
        if let Some(samples) = self.inner.generate(&self.sample_eps)? {
            let path = self.run_dir.join(format!("samples_epoch_{epoch:02}.png"));
            save_grid_png(&samples, 8, &path)?;
        }
        Ok(())
    }
}

impl<S: Pictured + TrainStep<Batch = Tensor>> TrainStep for WithPictures<S> {
    type Batch = Tensor;

    fn train_step(&mut self, batch: &Tensor, rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        self.inner.train_step(batch, rng)
    }

    fn end_epoch(&mut self, epoch: usize, rng: &mut StdRng) -> deepgen_core::Result<Metrics> {
        let metrics = self.inner.end_epoch(epoch, rng)?;
        self.save_pictures(epoch).map_err(|e| core_error(format!("{e:#}")))?;
        Ok(metrics)
    }

    fn save_state(&self, checkpoint: &mut Checkpoint) -> deepgen_core::Result<()> {
        self.inner.save_state(checkpoint)
    }

    fn load_state(&mut self, checkpoint: &Checkpoint, path: &Path) -> deepgen_core::Result<()> {
        self.inner.load_state(checkpoint, path)
    }
}

/// The end-of-run pictures: loss curve, interpolation and (2-D latent) manifold.
fn final_pictures(run_dir: &Path, test_images: &Tensor, model: &impl Pictured) -> Result<Vec<PathBuf>> {
    let mut written: Vec<PathBuf> = save_loss_curve(run_dir)?.into_iter().collect();
    let (pairs, steps) = INTERPOLATION;
    let pairs = pairs.min(test_images.dim(0)? / 2);
    if pairs > 0 {
        let mut rows = Vec::with_capacity(pairs);
        for p in 0..pairs {
            let a = test_images.narrow(0, 2 * p, 1)?;
            let b = test_images.narrow(0, 2 * p + 1, 1)?;
            rows.push(model.interpolate(&a, &b, steps)?);
        }
        let path = run_dir.join("interpolation.png");
        save_grid_png(&Tensor::cat(&rows, 0)?, steps, &path)?;
        written.push(path);
    }
    if let Some(grid) = model.manifold()? {
        let path = run_dir.join("manifold.png");
        save_grid_png(&grid, MANIFOLD_SIDE, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// `(1.23 s of training per epoch), test loss 101.2345 nats` for the closing
/// line.
fn done_summary(records: &[EpochRecord]) -> String {
    let mean_train = records.iter().map(|r| r.train_seconds).sum::<f64>() / records.len().max(1) as f64;
    let test = records
        .last()
        .and_then(|r| r.eval.get("test_loss"))
        .map_or_else(String::new, |t| format!(", test loss {t:.4} nats"));
    format!(" ({mean_train:.2} s of training per epoch){test}")
}

/// The data an image model trains on, on the run's device.
#[derive(Debug)]
pub struct ImageData {
    /// The opened `--device`.
    pub device: Device,
    /// The data set as loaded (on the CPU).
    pub data: Mnist,
    /// Its test images on the device, what the model is evaluated on.
    pub test_images: Tensor,
    /// The shuffled training batches (`n_batches()` is an epoch's steps).
    pub batches: ImageBatches,
}

/// What a model's train command builds for [`train_with_pictures`].
#[derive(Debug)]
pub struct PicturedModel<S> {
    /// The training step (the model with its optimizer and test set).
    pub step: S,
    /// The model's entries of `config.toml`.
    pub config: Vec<(&'static str, ConfigValue)>,
    /// The lines that introduce the run.
    pub headline: Vec<String>,
}

/// A `deepgen train <model>` of an image model, once its options are
/// checked: opens the device, loads the data, lets `build` make the model
/// from them, trains it through [`TrainRun`] with pictures after every epoch
/// ([`WithPictures`]), then draws the end-of-run pictures (loss curve,
/// interpolation, manifold) and says where everything is.
///
/// # Errors
/// As the [`TrainRun`] steps and `build`; a picture that cannot be written.
pub fn train_with_pictures<S>(
    mut run: TrainRun,
    build: impl FnOnce(&TrainRun, &ImageData) -> Result<PicturedModel<S>>,
) -> Result<()>
where
    S: Pictured + TrainStep<Batch = Tensor>,
{
    let device = run.open_device()?;
    let data = run.load_data()?;
    let test_images = data.test_images.to_device(&device)?;
    let batches = ImageBatches::new(&data.train_images, run.resolved.batch_size, &device)?;
    let mut input = ImageData {
        device,
        data,
        test_images,
        batches,
    };
    let model = build(&run, &input)?;
    let mut step = WithPictures::new(model.step, run.run_dir(), &input.test_images, run.args.seed)?;

    run.create_run_dir(model.config)?;
    for line in &model.headline {
        run.announce(line);
    }
    let Some(records) = run.fit(&mut step, &mut input.batches)? else {
        return Ok(());
    };
    let pictures = final_pictures(run.run_dir(), &input.test_images, &step.inner)?;
    run.say_done(&records, &done_summary(&records), &[]);
    say_pictures(&pictures);
    Ok(())
}

/// The number of parameters of `varmap`, for the headline.
pub fn parameter_count(varmap: &VarMap) -> String {
    group_thousands(varmap.all_vars().iter().map(|v| v.elem_count()).sum())
}

/// Flags every `deepgen eval <model>` of a latent-variable model shares
/// (`#[command(flatten)]` them after the model's `--checkpoint`).
#[derive(Debug, Clone, Args)]
pub struct LikelihoodEvalArgs {
    /// Importance samples per test image.
    #[arg(long, value_name = "K", default_value_t = 1000, value_parser = at_least_one)]
    pub k: usize,
    /// Data set whose test split is evaluated.
    #[arg(long, value_enum, default_value_t = DataArg::Mnist)]
    pub data: DataArg,
    /// Folder with the four IDX files [default: data/mnist or data/fashion-mnist].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Evaluate only the first N test images [default: all].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub n_test: Option<usize>,
    /// Test images per batch.
    #[arg(long, value_name = "B", default_value_t = 100, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Seed of the importance samples.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Device: cpu, cuda, cuda:N, metal or auto.
    #[arg(long, value_name = "D", default_value = "auto")]
    pub device: DeviceChoice,
}

/// A running `deepgen eval <model>`: the test images on the device and the
/// lines it prints.
#[derive(Debug)]
pub struct LikelihoodEval<'a> {
    args: &'a LikelihoodEvalArgs,
    images: Tensor,
    started: Instant,
}

impl LikelihoodEvalArgs {
    /// Loads the first `--n-test` test images onto `device` and prints what
    /// is evaluated: the checkpoint `path`, the `model` (name and
    /// configuration), the data and `K`.
    ///
    /// # Errors
    /// As [`DataArg::load`].
    pub fn start(&self, path: &Path, model: &str, device: &Device) -> Result<LikelihoodEval<'_>> {
        let (dataset, data) = self.data.load(self.data_dir.as_deref())?;
        let n = self.n_test.map_or(data.n_test(), |n| n.min(data.n_test()));
        let images = data.test_images.narrow(0, 0, n)?.to_device(device)?;
        say(&format!(
            "`{}`: {model}; {dataset} test set, {n} images, K = {} importance samples each",
            path.display(),
            self.k
        ));
        Ok(LikelihoodEval {
            args: self,
            images,
            started: Instant::now(),
        })
    }
}

impl LikelihoodEval<'_> {
    /// The test images.
    pub fn images(&self) -> &Tensor {
        &self.images
    }

    /// Prints the mean importance-sampled `log p(x)` over the test images,
    /// with a progress bar: `estimate(xs, k, rng)` gives the estimate per
    /// row of a batch `xs`.
    ///
    /// # Errors
    /// The estimator's errors.
    pub fn log_likelihood(
        &self,
        mut estimate: impl FnMut(&Tensor, usize, &mut StdRng) -> Result<Tensor>,
    ) -> Result<()> {
        let n = self.images.dim(0)?;
        let bar = progress_bar(
            n as u64,
            "log p(x) [{bar:30}] {pos}/{len} images {msg} ({elapsed}, eta {eta})",
        );
        let mut rng = derived_rng(self.args.seed, 0);
        let mut sum_ll = 0f64;
        for (start, len) in batch_ranges(n, self.args.batch_size) {
            let ll = estimate(&self.images.narrow(0, start, len)?, self.args.k, &mut rng)?;
            sum_ll += ll.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
            let done = start + len;
            bar.set_position(done as u64);
            bar.set_message(format!("mean {:.3}", sum_ll / done as f64));
        }
        bar.finish_and_clear();
        say(&format!(
            "test log-likelihood (importance sampling, K = {}): {:.4} nats per image  ({:.1} s)",
            self.args.k,
            sum_ll / n.max(1) as f64,
            self.started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// The generator of the ELBO's draws (another stream than the
    /// importance samples').
    pub fn elbo_rng(&self) -> StdRng {
        derived_rng(self.args.seed, 1)
    }

    /// Prints the ELBO line: `elbo` and its `parts` (`recon 80.1, KL 25.3`).
    pub fn say_elbo(&self, elbo: f64, parts: &str) {
        say(&format!(
            "test ELBO (one sample): {elbo:.4} nats per image ({parts}); total {:.1} s",
            self.started.elapsed().as_secs_f64()
        ));
    }
}

/// One line per epoch: `epoch 3/10  train_loss 0.0412  …  test_accuracy 0.9912  (41.2 s)`.
/// Accuracies are printed as percentages.
pub fn epoch_line(record: &EpochRecord, epochs: usize) -> String {
    let mut line = format!(
        "epoch {:>width$}/{epochs}",
        record.epoch,
        width = epochs.to_string().len()
    );
    for (name, value) in record.train.iter().chain(record.eval.iter()) {
        if name.ends_with("accuracy") {
            line.push_str(&format!("  {name} {:.2} %", 100.0 * value));
        } else {
            line.push_str(&format!("  {name} {value:.4}"));
        }
    }
    line.push_str(&format!("  ({:.1} s)", record.train_seconds));
    line
}

/// Writes a line to stdout; a closed pipe (`deepgen … | head`) is not an
/// error worth stopping a training run for, so write errors are ignored.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A value of the run config file.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    /// A quoted string.
    Text(String),
    /// An integer.
    Int(u64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl std::fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // TOML basic strings share JSON's escapes for `"`, `\` and controls.
            ConfigValue::Text(s) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        c if c.is_control() => write!(f, "\\u{:04X}", c as u32)?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")
            }
            ConfigValue::Int(n) => write!(f, "{n}"),
            ConfigValue::Float(x) => write!(f, "{x:?}"),
            ConfigValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Writes `config.toml` in the run directory: the command's settings, one
/// `key = value` per line, so that a run can be reproduced from its folder.
///
/// # Errors
/// When the file cannot be written.
fn write_run_config(run_dir: &Path, model: &str, entries: &[(&str, ConfigValue)]) -> Result<()> {
    let mut text = format!(
        "# deepgen {} run configuration, written by `deepgen train {model}`\nmodel = {}\n",
        env!("CARGO_PKG_VERSION"),
        ConfigValue::Text(model.into())
    );
    for (key, value) in entries {
        text.push_str(&format!("{key} = {value}\n"));
    }
    let path = run_dir.join(CONFIG_FILE);
    deepgen_core::checkpoint::write_atomic(&path, text.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// The usual config entries of the common flags.
fn common_config_entries(args: &CommonTrainArgs, resolved: &Resolved) -> Vec<(&'static str, ConfigValue)> {
    vec![
        ("data", ConfigValue::Text(resolved.dataset.name().into())),
        ("data_dir", ConfigValue::Text(resolved.data_dir.display().to_string())),
        ("epochs", ConfigValue::Int(resolved.epochs as u64)),
        ("batch_size", ConfigValue::Int(resolved.batch_size as u64)),
        ("lr", ConfigValue::Float(resolved.lr)),
        ("seed", ConfigValue::Int(args.seed)),
        ("device", ConfigValue::Text(args.device.to_string())),
        ("resumed", ConfigValue::Bool(args.resume)),
    ]
}

/// `1663370` → `1,663,370`.
pub fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_core::train::Metrics;

    #[test]
    fn epoch_lines_read_well() {
        let record = EpochRecord {
            epoch: 3,
            train: Metrics::new()
                .with("train_loss", 0.04123)
                .with("train_accuracy", 0.98765),
            eval: Metrics::new().with("test_accuracy", 0.9912),
            train_seconds: 41.23,
        };
        assert_eq!(
            epoch_line(&record, 10),
            "epoch  3/10  train_loss 0.0412  train_accuracy 98.77 %  test_accuracy 99.12 %  (41.2 s)"
        );
    }

    #[test]
    fn config_values_are_toml() {
        assert_eq!(
            ConfigValue::Text("a \"b\"\\c\n".into()).to_string(),
            r#""a \"b\"\\c\u000A""#
        );
        assert_eq!(ConfigValue::Float(0.001).to_string(), "0.001");
        assert_eq!(ConfigValue::Float(1.0).to_string(), "1.0");
        assert_eq!(ConfigValue::Int(7).to_string(), "7");
        assert_eq!(ConfigValue::Bool(true).to_string(), "true");
    }

    #[test]
    fn flag_parsers_reject_nonsense() {
        assert_eq!(positive("3"), Ok(3));
        assert!(positive("0").is_err() && positive("-1").is_err() && positive("x").is_err());
        assert_eq!(positive_f64("1e-3"), Ok(1e-3));
        for bad in ["0", "-1", "nan", "inf", "x"] {
            assert!(positive_f64(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn model_flag_parsers_name_the_problem() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert_eq!(at_least_one("0"), Err("must be at least 1".into()));
        assert!(at_least_one("x").is_err());
        assert_eq!(non_negative_f64("0.5"), Ok(0.5));
        assert_eq!(non_negative_f64("-1"), Err("-1 is not a finite number ≥ 0".into()));
        assert!(non_negative_f64("inf").is_err() && non_negative_f64("x").is_err());
    }

    #[test]
    fn missing_run_directories_are_explained() {
        let err = checkpoint_file(Path::new("no/such/run"), "vae")
            .err()
            .map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.contains("does not exist")), "{err:?}");
    }
}
