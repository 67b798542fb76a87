//! What every `deepgen train <model>` shares: the common flags, data loading
//! with a message that says how to fetch the data, the device, the
//! per-epoch line, the run directory and its config file.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use deepgen_core::candle::{Device, Tensor};
use deepgen_core::train::{BatchSource, CHECKPOINT_FILE, EpochRecord, TrainConfig};
use deepgen_core::{DeviceChoice, StdRng};
use deepgen_data::{Batcher, BatcherConfig, Dataset, Mnist};
use std::io::Write;
use std::path::{Path, PathBuf};

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
    pub fn resolve(&self, model: &str, defaults: ModelDefaults) -> Resolved {
        let dataset = self.data.dataset();
        Resolved {
            dataset,
            data_dir: self.data_dir.clone().unwrap_or_else(|| dataset.default_dir()),
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
    pub fn train_config(&self, resolved: &Resolved) -> TrainConfig {
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
    pub fn check_run_dir(&self, run_dir: &Path) -> Result<()> {
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

/// `--epochs` and `--batch-size`: an integer of at least 1.
fn positive(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{text}` is not a positive integer")),
    }
}

/// `--lr`: a positive finite number.
fn positive_f64(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("`{text}` is not a positive number")),
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

/// Batches of `(images, labels)` from a labelled [`Batcher`], the batch type
/// of supervised models.
#[derive(Debug)]
pub struct LabelledBatches(pub Batcher);

impl LabelledBatches {
    /// Shuffled batches of `batch_size` from `images` and `labels`, on `device`.
    ///
    /// # Errors
    /// The batcher's errors (an empty data set, mismatched counts).
    pub fn new(images: &Tensor, labels: &Tensor, batch_size: usize, device: &Device) -> Result<Self> {
        let config = BatcherConfig {
            batch_size,
            ..Default::default()
        };
        Ok(LabelledBatches(Batcher::new(images, Some(labels), config, device)?))
    }
}

impl BatchSource for LabelledBatches {
    type Batch = (Tensor, Tensor);

    fn n_batches(&self) -> usize {
        BatchSource::n_batches(&self.0)
    }

    fn start_epoch(&mut self, rng: &mut StdRng) -> deepgen_core::Result<()> {
        BatchSource::start_epoch(&mut self.0, rng)
    }

    fn batch(&self, batch_idx: usize) -> deepgen_core::Result<Self::Batch> {
        let batch = BatchSource::batch(&self.0, batch_idx)?;
        let labels = batch.labels.ok_or_else(|| {
            deepgen_core::Error::Candle(deepgen_core::candle::Error::msg("the batcher has no labels"))
        })?;
        Ok((batch.images, labels))
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
pub fn write_run_config(run_dir: &Path, model: &str, entries: &[(&str, ConfigValue)]) -> Result<()> {
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
pub fn common_config_entries(args: &CommonTrainArgs, resolved: &Resolved) -> Vec<(&'static str, ConfigValue)> {
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
}
