//! One `deepgen train <model>` run from its flags to its last line: the
//! settings (defaults < config file < flags), the run directory and its
//! `config.toml`, the device and the data, core's loop with a line per epoch,
//! the closing line. [`train`] is the whole of it for a model family that
//! implements [`ModelCommand`].

use crate::args::{DataArg, RunFlags, TrainArgs};
use crate::pictures::{EpochPictures, final_pictures, say_pictures};
use anyhow::{Context, Result, bail};
use deepgen_core::Generative;
use deepgen_core::candle::{Device, Tensor};
use deepgen_core::rng::derived_rng;
use deepgen_core::run_lock::LOCK_FILE;
use deepgen_core::train::{BatchSource, CHECKPOINT_FILE, EpochRecord, METRICS_FILE, TrainConfig, TrainStep, fit};
use deepgen_core::{AdamConfig, DeviceChoice, Metrics, RunLock, StdRng, TrainableModel, Trainer};
use deepgen_data::{BatcherConfig, Dataset, ImageBatcher, Mnist, Synthetic2d};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The name of the run configuration file in a run directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Batch size of test-set evaluation.
pub const EVAL_BATCH: usize = 128;

/// A model's defaults for the settings that have none of their own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunDefaults {
    /// Epochs.
    pub epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
}

/// The `[run]` table of `config.toml`: what every training run is made of.
/// In a file every key is optional (the model's defaults fill the rest);
/// unknown keys are errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunTable {
    /// Data set.
    pub data: Option<DataArg>,
    /// Folder of its IDX files.
    pub data_dir: Option<PathBuf>,
    /// Epochs in all.
    pub epochs: Option<usize>,
    /// Training batch size.
    pub batch_size: Option<usize>,
    /// Adam's learning rate.
    pub lr: Option<f64>,
    /// Seed of every random draw.
    pub seed: Option<u64>,
    /// `cpu`, `cuda`, `cuda:N`, `metal` or `auto`.
    pub device: Option<String>,
    /// Written by a run on an image set: [`Mnist::checksum`] of the files it
    /// trained on. Resuming the run, or repeating it from this file, on
    /// other files is refused (delete the key to train on other files).
    pub data_checksum: Option<String>,
    /// Written by resumed runs: each change a `--resume` made to the
    /// settings a run may change (`epochs 10 → 20`, `device cpu → cuda`),
    /// in order; a run that began here has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<String>,
}

/// The resolved run settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    /// Data set.
    pub data: DataArg,
    /// Folder of its IDX files.
    pub data_dir: PathBuf,
    /// Epochs in all.
    pub epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Seed of every random draw.
    pub seed: u64,
    /// The device asked for.
    pub device: DeviceChoice,
    /// The checksum of the image set, once loaded ([`TrainRun::load_images`]).
    pub data_checksum: Option<String>,
    /// The changes resuming made ([`RunTable::history`]).
    pub history: Vec<String>,
}

impl RunSettings {
    /// The file's table, then the flags over it, then `defaults` for what
    /// neither says.
    ///
    /// # Errors
    /// An invalid value in the file (a zero count, a bad device name).
    fn resolve(file: &RunTable, flags: &RunFlags, defaults: impl Fn(DataArg) -> RunDefaults) -> Result<Self> {
        let data = flags.data.or(file.data).unwrap_or(DataArg::Mnist);
        let defaults = defaults(data);
        let device = match (&flags.device, &file.device) {
            (Some(device), _) => *device,
            (None, Some(text)) => text.parse().with_context(|| format!("run.device = `{text}`"))?,
            (None, None) => DeviceChoice::Auto,
        };
        let settings = RunSettings {
            data,
            data_dir: data.dir(flags.data_dir.as_deref().or(file.data_dir.as_deref())),
            epochs: flags.epochs.or(file.epochs).unwrap_or(defaults.epochs),
            batch_size: flags.batch_size.or(file.batch_size).unwrap_or(defaults.batch_size),
            lr: flags.lr.or(file.lr).unwrap_or(defaults.lr),
            seed: flags.seed.or(file.seed).unwrap_or(0),
            device,
            data_checksum: None,
            history: Vec::new(),
        };
        for (name, value) in [("run.epochs", settings.epochs), ("run.batch_size", settings.batch_size)] {
            if value == 0 {
                bail!("{name} = 0: must be at least 1");
            }
        }
        if !(settings.lr > 0.0 && settings.lr.is_finite()) {
            bail!("run.lr = {}: must be a positive number", settings.lr);
        }
        Ok(settings)
    }

    /// The table written to `config.toml` (every key present).
    fn table(&self) -> RunTable {
        RunTable {
            data: Some(self.data),
            data_dir: self.data.images().map(|_| self.data_dir.clone()),
            epochs: Some(self.epochs),
            batch_size: Some(self.batch_size),
            lr: Some(self.lr),
            seed: Some(self.seed),
            device: Some(self.device.to_string()),
            data_checksum: self.data_checksum.clone(),
            history: self.history.clone(),
        }
    }
}

/// A run's `config.toml`: the family, `[run]`, `[model]` (the model's own
/// configuration, as the library defines it) and `[training]` (the family's
/// training options that are not part of the model).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFile<C, T> {
    /// `deepgen train <family>`.
    pub family: String,
    /// The run settings.
    #[serde(default)]
    pub run: RunTable,
    /// The model's configuration (missing keys keep the model's defaults).
    #[serde(default)]
    pub model: C,
    /// The family's training options.
    #[serde(default)]
    pub training: T,
}

impl<C: Serialize + DeserializeOwned + Default, T: Serialize + DeserializeOwned + Default> RunFile<C, T> {
    /// Reads `path`; the family must be `family`.
    ///
    /// # Errors
    /// A file that cannot be read, is not TOML, has an unknown key or a value
    /// of the wrong type (toml names the key and the line), or is another
    /// family's.
    pub fn read(path: &Path, family: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let file: Self = toml::from_str(&text).with_context(|| format!("invalid config file `{}`", path.display()))?;
        if file.family != family {
            bail!(
                "`{}` configures a `{}` run, not a `{family}` run (use `deepgen train {}`)",
                path.display(),
                file.family,
                file.family
            );
        }
        Ok(file)
    }

    /// Writes the file atomically into `run_dir`, with a comment line first.
    ///
    /// # Errors
    /// A value TOML cannot hold; the file system.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let body = toml::to_string(self).context("cannot write the run configuration as TOML")?;
        let text = format!(
            "# deepgen {} run configuration, written by `deepgen train {}`;\n\
             # `deepgen train {} --config <this file> --out DIR` repeats the run.\n{body}",
            env!("CARGO_PKG_VERSION"),
            self.family,
            self.family
        );
        let path = run_dir.join(CONFIG_FILE);
        deepgen_core::checkpoint::write_atomic(&path, text.as_bytes())
            .with_context(|| format!("cannot write `{}`", path.display()))
    }
}

/// The base configuration of a run: `--config`, or with `--resume` the run's
/// own `config.toml`, or nothing (defaults).
fn base_file<C, T>(flags: &RunFlags, run_dir: Option<&Path>, family: &str) -> Result<RunFile<C, T>>
where
    C: Serialize + DeserializeOwned + Default,
    T: Serialize + DeserializeOwned + Default,
{
    let own = run_dir
        .map(|dir| dir.join(CONFIG_FILE))
        .filter(|p| flags.resume && p.is_file());
    match flags.config.as_ref().or(own.as_ref()) {
        Some(path) => RunFile::read(path, family),
        None => Ok(RunFile {
            family: family.to_string(),
            run: RunTable::default(),
            model: C::default(),
            training: T::default(),
        }),
    }
}

/// Points in a drawn 2-D training set (PacGAN's 100,000).
pub const TRAIN_POINTS: usize = 100_000;
/// Points in a drawn 2-D test set (the mode protocol's 2,500 samples).
pub const TEST_POINTS: usize = 2_500;
/// Stream of the run seed that draws a 2-D training set (the test set: the next one).
const POINTS_STREAM: u64 = 1 << 41;

/// A run's data: training and test rows `[n, D]` on the CPU (images
/// flattened in `[0, 1]`, or 2-D points), and the 2-D set they were drawn
/// from.
#[derive(Debug)]
pub struct TrainData {
    /// Training rows.
    pub train: Tensor,
    /// Test rows.
    pub test: Tensor,
    /// The 2-D set, for point data.
    pub points: Option<Synthetic2d>,
    /// `on mnist (60000 train / 10000 test images)`.
    pub summary: String,
}

/// One training run: its settings, directory and clock.
#[derive(Debug)]
pub struct TrainRun {
    /// The resolved settings.
    pub settings: RunSettings,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Continue from the checkpoint.
    pub resume: bool,
    /// No progress bar, no per-epoch lines.
    pub quiet: bool,
    started: Instant,
    /// The run directory's lock, held from [`Self::create_run_dir`] until
    /// the run ends.
    lock: Option<RunLock>,
    /// The data checksum the base file (`--config`, or the resumed run's
    /// `config.toml`) records, and the file.
    recorded_checksum: Option<(String, PathBuf)>,
}

impl TrainRun {
    /// Reads the base configuration (see `--config`), resolves the settings
    /// for `family` with `defaults`, and refuses a run directory in the wrong
    /// state; returns the run and the file's `[model]` and `[training]`
    /// tables for the family to apply its flags to.
    ///
    /// # Errors
    /// A bad config file; a trained run without `--resume`, or `--resume`
    /// without a checkpoint.
    pub fn start<C, T>(
        flags: &RunFlags,
        family: &str,
        defaults: impl Fn(DataArg) -> RunDefaults,
    ) -> Result<(Self, C, T)>
    where
        C: Serialize + DeserializeOwned + Default,
        T: Serialize + DeserializeOwned + Default,
    {
        let file: RunFile<C, T> = base_file(flags, flags.out.as_deref(), family)?;
        let settings = RunSettings::resolve(&file.run, flags, defaults).with_context(|| match &flags.config {
            Some(path) => format!("invalid settings (from `{}` and the flags)", path.display()),
            None => "invalid settings".to_string(),
        })?;
        let run_dir = flags
            .out
            .clone()
            .unwrap_or_else(|| Path::new("runs").join(format!("{family}-{}", settings.data.name())));
        check_run_dir(&run_dir, flags.resume)?;
        let mut settings = settings;
        if flags.resume {
            refuse_changed_settings(&run_dir, &file.run, &settings, flags.change_lr)?;
            settings.history = resumed_history(&file.run, &settings);
        }
        let recorded_checksum = file.run.data_checksum.clone().map(|sum| {
            let from = flags.config.clone().unwrap_or_else(|| run_dir.join(CONFIG_FILE));
            (sum, from)
        });
        let run = TrainRun {
            settings,
            run_dir,
            resume: flags.resume,
            quiet: flags.quiet,
            started: Instant::now(),
            lock: None,
            recorded_checksum,
        };
        Ok((run, file.model, file.training))
    }

    /// Opens the device.
    ///
    /// # Errors
    /// When this build or machine lacks it (the message says how to get it).
    pub fn open_device(&self) -> Result<Device> {
        open_device(self.settings.device)
    }

    /// Loads the image set, or draws the 2-D point set with the run's seed.
    ///
    /// # Errors
    /// As [`load_dataset`].
    pub fn load_data(&mut self) -> Result<TrainData> {
        let data = self.settings.data;
        if let Some(set) = data.points() {
            let draw = |n: usize, stream: u64| -> Result<Tensor> {
                let mut rng = derived_rng(self.settings.seed, stream);
                Ok(set.sample(n, &mut rng, &Device::Cpu)?)
            };
            return Ok(TrainData {
                train: draw(TRAIN_POINTS, POINTS_STREAM)?,
                test: draw(TEST_POINTS, POINTS_STREAM + 1)?,
                summary: format!(
                    "on {} ({TRAIN_POINTS} training points drawn with seed {}, {TEST_POINTS} test points)",
                    data.name(),
                    self.settings.seed
                ),
                points: Some(set),
            });
        }
        let dataset = data.require_images()?;
        let mnist = self.load_images()?;
        Ok(TrainData {
            summary: format!(
                "on {dataset} ({} train / {} test images)",
                mnist.n_train(),
                mnist.n_test()
            ),
            train: mnist.train_images,
            test: mnist.test_images,
            points: None,
        })
    }

    /// Loads the run's image set and its checksum, which `config.toml`
    /// records; refuses files other than those the base file records.
    ///
    /// # Errors
    /// As [`load_dataset`]; another checksum than the recorded one.
    pub fn load_images(&mut self) -> Result<Mnist> {
        let dataset = self.settings.data.require_images()?;
        let dir = &self.settings.data_dir;
        let mnist = load_dataset(dataset, dir)?;
        let checksum = mnist.checksum()?;
        if let Some((recorded, file)) = &self.recorded_checksum
            && *recorded != checksum
        {
            bail!(
                "`{}` holds other {dataset} files than `{}` records: data_checksum was {recorded}, now {checksum}; {}",
                dir.display(),
                file.display(),
                if self.resume {
                    "a run resumes on the data it began with (point --data-dir at those files)"
                } else {
                    "point --data-dir at the recorded files, or delete data_checksum from the file to train on these"
                }
            );
        }
        self.settings.data_checksum = Some(checksum);
        Ok(mnist)
    }

    /// The optimizer steps of the whole run, `n_batches` per epoch.
    ///
    /// # Errors
    /// When they overflow `usize` (an absurd `--epochs` or `run.epochs`,
    /// which would otherwise panic in a debug build and give learning-rate
    /// schedules a wrapped step count in a release one).
    pub fn total_steps(&self, n_batches: usize) -> Result<usize> {
        let epochs = self.settings.epochs;
        n_batches.checked_mul(epochs).with_context(|| {
            format!("{epochs} epochs of {n_batches} batches are more optimizer steps than can be counted; lower --epochs (run.epochs)")
        })
    }

    /// Adam with the run's learning rate and otherwise its defaults.
    pub fn adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.settings.lr,
            ..Default::default()
        }
    }

    /// Creates the run directory, takes its lock for the rest of the run
    /// and, for a new run, refuses a folder that holds any file (a new run
    /// would overwrite the user's `config.toml` or `metrics.csv`), then
    /// writes its `config.toml` (a resumed run's is written by
    /// [`TrainRun::fit`] once the checkpoint has accepted the settings).
    ///
    /// # Errors
    /// Another process holds the folder; foreign files in it; the file system.
    pub fn create_run_dir<C: Serialize + DeserializeOwned + Default, T: Serialize + DeserializeOwned + Default>(
        &mut self,
        file: &RunFile<C, T>,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.run_dir)
            .with_context(|| format!("cannot create `{}`", self.run_dir.display()))?;
        self.lock = Some(RunLock::acquire(&self.run_dir)?);
        if !self.resume {
            let found = foreign_files(&self.run_dir)?;
            if !found.is_empty() {
                bail!(
                    "`{}` already holds {} ({}); a new run goes into an empty or new folder: pass --out DIR",
                    self.run_dir.display(),
                    if found.len() == 1 { "a file" } else { "files" },
                    found.join(", ")
                );
            }
            file.write(&self.run_dir)?;
        }
        Ok(())
    }

    /// The `config.toml` of this run with the family's tables.
    pub fn file<C, T>(&self, family: &str, model: C, training: T) -> RunFile<C, T> {
        RunFile {
            family: family.to_string(),
            run: self.settings.table(),
            model,
            training,
        }
    }

    /// `10 epochs, batch 128, Adam lr 0.001, seed 0, device cpu; run
    /// directory `runs/vae-mnist`` (and ` (resuming)`).
    pub fn schedule_summary(&self, device: &Device) -> String {
        format!(
            "{} epochs, batch {}, Adam lr {}, seed {}, device {}; run directory `{}`{}",
            self.settings.epochs,
            self.settings.batch_size,
            self.settings.lr,
            self.settings.seed,
            device_name(device),
            self.run_dir.display(),
            if self.resume { " (resuming)" } else { "" },
        )
    }

    /// Prints a line about the run, unless `--quiet`.
    pub fn announce(&self, line: &str) {
        if !self.quiet {
            say(line);
        }
    }

    /// Trains `step` on `data` through core's loop, with a line per epoch
    /// unless `--quiet` and `after_epoch` after each; then writes a resumed
    /// run's `config.toml`. Returns the epochs' records, or `None` after
    /// saying so when the run had already reached its epochs.
    ///
    /// # Errors
    /// The loop's errors (a NaN, a checkpoint that does not fit); the config
    /// file.
    pub fn fit<S, D, C, T>(
        &mut self,
        step: &mut S,
        data: &mut D,
        file: &RunFile<C, T>,
        mut after_epoch: impl FnMut(&EpochRecord, &S) -> Result<()>,
    ) -> Result<Option<Vec<EpochRecord>>>
    where
        S: TrainStep,
        D: BatchSource<Batch = S::Batch>,
        C: Serialize + DeserializeOwned + Default,
        T: Serialize + DeserializeOwned + Default,
    {
        self.started = Instant::now();
        let (quiet, epochs) = (self.quiet, self.settings.epochs);
        let config = TrainConfig {
            epochs,
            seed: self.settings.seed,
            run_dir: Some(self.run_dir.clone()),
            resume: self.resume,
            progress: !quiet,
        };
        let records = fit(&config, step, data, |record, step| {
            if !quiet {
                say(&epoch_line(record, epochs));
            }
            after_epoch(record, step).map_err(|e| deepgen_core::Error::External(e.into()))
        })?;
        if self.resume {
            file.write(&self.run_dir)?;
        }
        if records.is_empty() {
            say(&format!(
                "nothing to do: `{}` has already been trained for {epochs} epochs (raise --epochs to continue)",
                self.run_dir.display(),
            ));
            return Ok(None);
        }
        Ok(Some(records))
    }

    /// The closing line: `done: N epochs in T s{summary}; ` and the run's
    /// files, then `more_files`.
    pub fn say_done(&self, records: &[EpochRecord], summary: &str, more_files: &[PathBuf]) {
        let files: Vec<String> = [METRICS_FILE, CHECKPOINT_FILE, CONFIG_FILE]
            .iter()
            .map(|file| self.run_dir.join(file))
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

/// The entries of `dir` other than the run lock, sorted, at most 5 named
/// (then `…`).
fn foreign_files(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list `{}`", dir.display()))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != LOCK_FILE)
        .collect();
    names.sort();
    if names.len() > 5 {
        names.truncate(5);
        names.push("…".into());
    }
    Ok(names)
}

/// A resumed run keeps the data, batch size and learning rate it began with
/// (`--epochs` may grow, the device may change, the learning rate with
/// `--change-lr`, each recorded by [`resumed_history`]): a flag that changes
/// one is refused with both values, instead of silently continuing another
/// run.
fn refuse_changed_settings(run_dir: &Path, was: &RunTable, now: &RunSettings, change_lr: bool) -> Result<()> {
    let mut changed = Vec::new();
    if let Some(data) = was.data.filter(|d| *d != now.data) {
        changed.push(format!("data was {}, now {}", data.name(), now.data.name()));
    }
    if let Some(batch) = was.batch_size.filter(|b| *b != now.batch_size) {
        changed.push(format!("batch size was {batch}, now {}", now.batch_size));
    }
    if let Some(lr) = was.lr.filter(|lr| *lr != now.lr && !change_lr) {
        changed.push(format!(
            "learning rate was {lr}, now {} (--change-lr continues at it)",
            now.lr
        ));
    }
    if !changed.is_empty() {
        bail!(
            "cannot resume `{}` with other settings: {}; a run keeps the data, batch size and learning rate it began with (start a new run with --out DIR)",
            run_dir.display(),
            changed.join("; ")
        );
    }
    Ok(())
}

/// The run's history after this `--resume`: the file's, then the changes
/// to the settings a run may change (epochs, device, the learning rate with
/// `--change-lr`), never silent.
fn resumed_history(was: &RunTable, now: &RunSettings) -> Vec<String> {
    let mut history = was.history.clone();
    if let Some(epochs) = was.epochs.filter(|e| *e != now.epochs) {
        history.push(format!("epochs {epochs} → {} (--resume)", now.epochs));
    }
    if let Some(lr) = was.lr.filter(|lr| *lr != now.lr) {
        history.push(format!("lr {lr} → {} (--resume --change-lr)", now.lr));
    }
    if let Some(device) = was.device.as_ref().filter(|d| **d != now.device.to_string()) {
        history.push(format!("device {device} → {} (--resume)", now.device));
    }
    history
}

/// `[training]` as one line, for messages.
fn one_line<T: Serialize>(table: &T) -> String {
    toml::to_string(table).map_or_else(|_| "?".into(), |t| t.trim().replace('\n', ", "))
}

/// Refuses to overwrite a finished or interrupted run without `--resume`,
/// and to resume a run that is not there.
fn check_run_dir(run_dir: &Path, resume: bool) -> Result<()> {
    match (resume, run_dir.join(CHECKPOINT_FILE).exists()) {
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

/// Training images a batch can hold at most: MNIST's and Fashion-MNIST's
/// 60,000 (a larger `--batch-size` is one batch of them all).
pub const MAX_TRAIN_IMAGES: usize = 60_000;

/// Refuses work whose estimated memory `bytes` (`None`: past `u64`) is more
/// than the machine has, before a byte is spent: `what` needs it, `knobs`
/// are the flags that lower it.
///
/// # Errors
/// The refusal, with the estimate and the memory available.
pub fn refuse_beyond_memory(bytes: Option<u64>, what: &str, knobs: &str) -> Result<()> {
    let Some(bytes) = bytes else {
        bail!("{what} would need more memory than can be addressed; lower {knobs}");
    };
    if let Some(available) = deepgen_core::device::available_memory()
        && bytes > available
    {
        bail!(
            "{what} would need about {:.1} GB, more than the {:.1} GB of memory available; lower {knobs}",
            bytes as f64 / 1e9,
            available as f64 / 1e9
        );
    }
    Ok(())
}

/// An empty `[training]` table, for families without training options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoTraining {}

/// A generative model family's `deepgen train <family>` (and `sample`): its
/// flags and how they change its configuration, what it does with the data
/// before training, and its evaluation. [`train`] does the rest.
pub trait ModelCommand {
    /// The model, trained on batches of data rows `[batch, D]`.
    type Model: TrainableModel<Batch = Tensor, Config: Default> + Generative + 'static;
    /// The family's training options outside the model's configuration
    /// (the `[training]` table of `config.toml`).
    type Training: Serialize + DeserializeOwned + Default + Clone + std::fmt::Debug + 'static;
    /// The family's own flags; `deepgen train <family>` takes them before
    /// the [`RunFlags`] every family takes, in a [`TrainArgs`].
    type Flags: clap::Args + std::fmt::Debug;
    /// `a VAE`, for the headline.
    const DESCRIPTION: &'static str;
    /// Epochs, batch size and learning rate when nothing says otherwise.
    const DEFAULTS: RunDefaults;
    /// The defaults for the 2-D point sets (`--data ring`, …) of a family
    /// that models them; `None`, the default: images only.
    const POINT_DEFAULTS: Option<RunDefaults> = None;

    /// The defaults for the data set `data`.
    fn defaults(data: DataArg) -> RunDefaults {
        match (data.points(), Self::POINT_DEFAULTS) {
            (Some(_), Some(points)) => points,
            _ => Self::DEFAULTS,
        }
    }

    /// The configuration when no file gives one, for the data set `data`.
    fn default_config(_data: DataArg) -> <Self::Model as TrainableModel>::Config {
        Default::default()
    }

    /// Writes the flags given onto the configuration and training options
    /// read from a file (or the defaults), then validates them against the
    /// run's settings.
    ///
    /// # Errors
    /// An invalid combination; the library's `validate()`.
    fn apply_flags(
        flags: &Self::Flags,
        settings: &RunSettings,
        config: &mut <Self::Model as TrainableModel>::Config,
        training: &mut Self::Training,
    ) -> Result<()>;

    /// The optimizer settings (every group's) for a run of `total_steps`
    /// optimizer steps: Adam with the run's learning rate and otherwise its
    /// defaults.
    fn adam(_training: &Self::Training, settings: &RunSettings, _total_steps: usize) -> AdamConfig {
        AdamConfig {
            lr: settings.lr,
            ..Default::default()
        }
    }

    /// Data-dependent initialisation of a new model, before its first step
    /// (a resumed run then loads its checkpoint over it); none by default.
    ///
    /// # Errors
    /// The model's errors.
    fn initialise(_model: &Self::Model, _training: &Self::Training, _data: &TrainData) -> Result<()> {
        Ok(())
    }

    /// Before the first step: the end-of-epoch evaluation; by default
    /// [`Self::test_metrics`] on the test rows (see [`evaluate_on_test`]).
    ///
    /// # Errors
    /// The model's errors.
    fn prepare(
        trainer: Trainer<Self::Model>,
        training: &Self::Training,
        data: &TrainData,
        device: &Device,
    ) -> Result<Trainer<Self::Model>> {
        evaluate_on_test::<Self>(trainer, training, data, device)
    }

    /// The end-of-epoch metrics of `model` on the test rows `test` (on the
    /// run's device), with [`EVAL_BATCH`]es; none by default.
    ///
    /// # Errors
    /// The model's errors.
    fn test_metrics(
        _model: &Self::Model,
        _test: &Tensor,
        _training: &Self::Training,
        _rng: &mut StdRng,
    ) -> deepgen_core::Result<Metrics> {
        Ok(Metrics::new())
    }

    /// A warning to print before training, if the settings deserve one.
    fn warning(_config: &<Self::Model as TrainableModel>::Config, _settings: &RunSettings) -> Option<String> {
        None
    }
}

/// `trainer` evaluated after every epoch by [`ModelCommand::test_metrics`]
/// on the test rows of `data`, moved to `device` once.
///
/// # Errors
/// Candle's, moving the rows.
pub fn evaluate_on_test<C: ModelCommand + ?Sized>(
    trainer: Trainer<C::Model>,
    training: &C::Training,
    data: &TrainData,
    device: &Device,
) -> Result<Trainer<C::Model>> {
    let (test, training) = (data.test.to_device(device)?, training.clone());
    Ok(trainer.with_evaluation(move |model, rng| C::test_metrics(model, &test, &training, rng)))
}

/// `deepgen train <family>`: settings, model, run directory, core's loop with
/// pictures after every epoch, the end-of-run pictures and the closing line.
///
/// # Errors
/// Bad settings, missing data, a run directory in the wrong state, the
/// model's and the loop's errors, pictures that cannot be written.
pub fn train<C: ModelCommand>(args: &TrainArgs<C::Flags>) -> Result<()> {
    let family = <C::Model as TrainableModel>::FAMILY;
    let (flags, run_flags) = (&args.model, &args.run);
    let (mut run, mut config, mut training) = TrainRun::start::<_, C::Training>(run_flags, family, C::defaults)?;
    if run.settings.data.points().is_some() && C::POINT_DEFAULTS.is_none() {
        bail!(
            "`deepgen train {family}` models 28×28 images; --data {} is a 2-D point set (for gan)",
            run.settings.data.name()
        );
    }
    if run_flags.config.is_none() && !run.resume {
        config = C::default_config(run.settings.data);
    }
    let training_before = one_line(&training);
    C::apply_flags(flags, &run.settings, &mut config, &mut training).with_context(|| match &run_flags.config {
        Some(path) => format!("invalid {family} options (from `{}` and the flags)", path.display()),
        None => format!("invalid {family} options"),
    })?;
    if run.resume && one_line(&training) != training_before {
        bail!(
            "cannot resume `{}` with other [training] options: was {training_before}, now {}; start a new run with --out DIR",
            run.run_dir.display(),
            one_line(&training)
        );
    }
    if let Some(warning) = C::warning(&config, &run.settings) {
        eprintln!("warning: {warning}");
    }
    let device = run.open_device()?;
    let data = run.load_data()?;
    let test = data.test.to_device(&device)?;
    let batcher_config = BatcherConfig {
        batch_size: run.settings.batch_size,
        ..Default::default()
    };
    let mut batches = ImageBatcher::new(&data.train, batcher_config, &device)?;
    let total_steps = run.total_steps(batches.n_batches())?;
    let adam = C::adam(&training, &run.settings, total_steps);
    let trainer = Trainer::<C::Model>::new(&config, adam, run.settings.seed, &device)?;
    C::initialise(trainer.model(), &training, &data)?;
    let mut trainer = C::prepare(trainer, &training, &data, &device)?;
    let mut pictures = EpochPictures::new(trainer.model(), &run.run_dir, &test, run.settings.seed)?;

    let file = run.file(family, config.clone(), training);
    run.create_run_dir(&file)?;
    run.announce(&format!(
        "training {} ({} parameters) {}",
        C::DESCRIPTION,
        group_thousands(trainer.parameter_count()),
        data.summary
    ));
    run.announce(&format!(
        "model {}; training {}",
        deepgen_core::trainer::config_json(&config)?,
        deepgen_core::trainer::config_json(&file.training)?
    ));
    run.announce(&run.schedule_summary(&device));
    let Some(records) = run.fit(&mut trainer, &mut batches, &file, |record, trainer| {
        pictures.save(trainer.model(), record.epoch)
    })?
    else {
        return Ok(());
    };
    let written = final_pictures(&run.run_dir, &test, trainer.model())?;
    run.say_done(&records, &done_summary(&records), &[]);
    say_pictures(&written);
    Ok(())
}

/// `(1.23 s of training per epoch), test loss 101.2345 nats` for the closing
/// line.
fn done_summary(records: &[EpochRecord]) -> String {
    let mean_train = records.iter().map(|r| r.train_seconds).sum::<f64>() / records.len().max(1) as f64;
    let test = records
        .last()
        .and_then(|r| r.eval.get("test_loss"))
        .map_or_else(String::new, |t| format!(", test loss {t:.4}"));
    format!(" ({mean_train:.2} s of training per epoch){test}")
}

/// The checkpoint file named by an eval or sample command's flag: a run
/// directory of `deepgen train <family>` or the checkpoint file itself.
///
/// # Errors
/// When the directory holds no checkpoint or the path does not exist; the
/// message says how to make one.
pub fn checkpoint_file(arg: &Path, family: &str) -> Result<PathBuf> {
    if arg.is_dir() {
        let path = arg.join(CHECKPOINT_FILE);
        if !path.exists() {
            bail!(
                "`{}` holds no {CHECKPOINT_FILE}; is it the run directory of `deepgen train {family}`?",
                arg.display()
            );
        }
        Ok(path)
    } else if arg.is_file() {
        Ok(arg.to_path_buf())
    } else {
        bail!(
            "run directory `{}` does not exist (train one with `deepgen train {family} --out {}`)",
            arg.display(),
            arg.display()
        )
    }
}

/// Opens the device.
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

/// One line per epoch: `epoch 3/10  train_loss 0.0412  …  test_accuracy 99.12 %  (41.2 s)`.
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
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        let _ = STDOUT_ERROR.set(e);
    }
}

/// The first error writing to standard output (a full disk behind
/// `> file`), kept so that the program can fail at the end instead of
/// exiting 0 with its output lost.
static STDOUT_ERROR: std::sync::OnceLock<std::io::Error> = std::sync::OnceLock::new();

/// Flushes standard output and returns the first write error, if any; a
/// closed pipe (`| head`) is not one.
pub fn stdout_error() -> Option<String> {
    let flushed = std::io::stdout().flush().err();
    let error = STDOUT_ERROR.get().or(flushed.as_ref())?;
    (error.kind() != std::io::ErrorKind::BrokenPipe).then(|| error.to_string())
}

/// `1663370` → `1,663,370`.
pub fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
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
        assert_eq!(group_thousands(1_663_370), "1,663,370");
        assert_eq!(group_thousands(12), "12");
    }

    #[test]
    fn settings_come_from_defaults_then_file_then_flags() -> Result<()> {
        let defaults = RunDefaults {
            epochs: 10,
            batch_size: 128,
            lr: 1e-3,
        };
        let file = RunTable {
            epochs: Some(3),
            seed: Some(7),
            device: Some("cpu".into()),
            ..Default::default()
        };
        let flags = RunFlags {
            seed: Some(9),
            ..Default::default()
        };
        let settings = RunSettings::resolve(&file, &flags, |_| defaults)?;
        assert_eq!((settings.epochs, settings.batch_size, settings.seed), (3, 128, 9));
        assert_eq!(settings.device, DeviceChoice::Cpu);
        let zero = RunTable {
            batch_size: Some(0),
            ..Default::default()
        };
        let err = RunSettings::resolve(&zero, &RunFlags::default(), |_| defaults)
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("run.batch_size = 0: must be at least 1"));
        Ok(())
    }
}
