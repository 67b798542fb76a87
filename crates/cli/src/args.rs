//! Flags every `deepgen train <model>` shares, and the parsers of the flags
//! that must be positive or at least one.

use deepgen_core::DeviceChoice;
use deepgen_data::Dataset;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The data sets `--data` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
    pub fn dir(self, data_dir: Option<&Path>) -> PathBuf {
        data_dir.map_or_else(|| self.dataset().default_dir(), Path::to_path_buf)
    }
}

/// Flags every `deepgen train <model>` takes (`#[command(flatten)]` them).
/// Each is optional: a flag given overrides the `--config` file (or, with
/// `--resume`, the run's own `config.toml`), which overrides the model's
/// defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunFlags {
    /// Read the run's settings from this config.toml (a run directory's own
    /// repeats that run); flags given as well override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data set to train on [default: mnist].
    #[arg(long, value_enum)]
    pub data: Option<DataArg>,
    /// Folder with the four IDX files [default: data/mnist or data/fashion-mnist].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of epochs in all (a resumed run continues up to it) [default: per model].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub epochs: Option<usize>,
    /// Examples per training batch [default: per model].
    #[arg(long, value_name = "B", value_parser = at_least_one)]
    pub batch_size: Option<usize>,
    /// Learning rate [default: per model].
    #[arg(long, value_name = "X", value_parser = positive_f64)]
    pub lr: Option<f64>,
    /// Seed of every random draw (initial weights, shuffling, noise) [default: 0].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Device: cpu, cuda, cuda:N, metal or auto (the best one this build has) [default: auto].
    #[arg(long, value_name = "D")]
    pub device: Option<DeviceChoice>,
    /// Run directory for metrics.csv, the checkpoint, config.toml and pictures [default: runs/<model>-<data>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint, with its own config.toml.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar and no per-epoch lines.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `--lr` and other rates and periods: a positive finite number.
pub fn positive_f64(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("`{text}` is not a positive number")),
    }
}

/// A count flag of at least 1 (`--latent 0`, `--k 0` are errors that name
/// the flag).
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// A weight flag, a finite number ≥ 0 (`--beta -1` is an error).
pub fn non_negative_f64(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x >= 0.0 && x.is_finite() => Ok(x),
        Ok(x) => Err(format!("{x} is not a finite number ≥ 0")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_parsers_name_the_problem() {
        assert_eq!(positive_f64("1e-3"), Ok(1e-3));
        for bad in ["0", "-1", "nan", "inf", "x"] {
            assert!(positive_f64(bad).is_err(), "{bad}");
        }
        assert_eq!(at_least_one("3"), Ok(3));
        assert_eq!(at_least_one("0"), Err("must be at least 1".into()));
        assert!(at_least_one("x").is_err() && at_least_one("-1").is_err());
        assert_eq!(non_negative_f64("0.5"), Ok(0.5));
        assert_eq!(non_negative_f64("-1"), Err("-1 is not a finite number ≥ 0".into()));
        assert!(non_negative_f64("inf").is_err() && non_negative_f64("x").is_err());
    }
}
