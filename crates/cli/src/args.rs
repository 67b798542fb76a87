//! Flags every `deepgen train <model>` shares, the parsers of the flags
//! that must be positive or at least one, and [`set`], which applies a flag.

use deepgen_core::DeviceChoice;
use deepgen_data::{Dataset, GaussianMixture2d, Synthetic2d};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The data sets `--data` accepts: image sets, and 2-D point sets for the
/// families that model points (gan, score; diffusion later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataArg {
    /// LeCun's handwritten digits.
    Mnist,
    /// Zalando's Fashion-MNIST.
    FashionMnist,
    /// 2-D: 8 Gaussians on a circle of radius 1, sd 0.01 (VEEGAN / PacGAN).
    Ring,
    /// 2-D: 25 Gaussians on {−4, −2, 0, 2, 4}², sd 0.05 (VEEGAN / PacGAN).
    Grid,
    /// 2-D: two interleaved half circles, noise sd 0.05.
    Moons,
    /// 2-D: a swiss roll, noise sd 0.5.
    SwissRoll,
    /// 2-D: 0.8 N((5, 5), I) + 0.2 N((−5, −5), I) (Song & Ermon 2019).
    Mixture,
}

impl DataArg {
    /// The name `--data` takes.
    pub fn name(self) -> &'static str {
        match self {
            DataArg::Mnist => "mnist",
            DataArg::FashionMnist => "fashion-mnist",
            DataArg::Ring => "ring",
            DataArg::Grid => "grid",
            DataArg::Moons => "moons",
            DataArg::SwissRoll => "swiss-roll",
            DataArg::Mixture => "mixture",
        }
    }

    /// The image data set, if this is one.
    pub fn images(self) -> Option<Dataset> {
        match self {
            DataArg::Mnist => Some(Dataset::Mnist),
            DataArg::FashionMnist => Some(Dataset::FashionMnist),
            _ => None,
        }
    }

    /// The 2-D point set, if this is one.
    pub fn points(self) -> Option<Synthetic2d> {
        match self {
            DataArg::Mnist | DataArg::FashionMnist => None,
            DataArg::Ring => Some(Synthetic2d::Ring),
            DataArg::Grid => Some(Synthetic2d::Grid),
            DataArg::Moons => Some(Synthetic2d::TwoMoons { noise: 0.05 }),
            DataArg::SwissRoll => Some(Synthetic2d::SwissRoll { noise: 0.5 }),
            DataArg::Mixture => Some(Synthetic2d::Mixture(GaussianMixture2d::song_ermon())),
        }
    }

    /// The image data set, or an error that says this is a 2-D point set.
    ///
    /// # Errors
    /// For a 2-D point set.
    pub fn require_images(self) -> anyhow::Result<Dataset> {
        self.images().ok_or_else(|| {
            anyhow::anyhow!(
                "--data {} is a 2-D point set; this needs 28×28 images (--data mnist or fashion-mnist)",
                self.name()
            )
        })
    }

    /// The folder of `--data-dir`, or the data set's default folder (none
    /// for a 2-D set, which is drawn, not read).
    pub fn dir(self, data_dir: Option<&Path>) -> PathBuf {
        match (data_dir, self.images()) {
            (Some(dir), _) => dir.to_path_buf(),
            (None, Some(dataset)) => dataset.default_dir(),
            (None, None) => PathBuf::new(),
        }
    }
}

/// The flags of `deepgen train <model>`: the family's own, `F`, then the
/// [`RunFlags`] every family takes.
#[derive(Debug, clap::Args)]
pub struct TrainArgs<F: clap::Args> {
    #[command(flatten)]
    pub model: F,
    #[command(flatten)]
    pub run: RunFlags,
}

/// Flags every `deepgen train <model>` takes (in a [`TrainArgs`]).
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
    /// With --resume: continue at the --lr given instead of refusing a new one (recorded in config.toml's run.history).
    #[arg(long, requires = "resume")]
    pub change_lr: bool,
    /// No progress bar and no per-epoch lines.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A family's flags, declared once with where each goes: every flag is an
/// `Option` (none keeps what `--config` or the default says), and the
/// generated `apply` writes the given ones onto the model's configuration
/// or the training options, through a map where the flag is not the field
/// itself (`iwae_k: usize => model.objective = |k| Objective::Iwae { k }`).
macro_rules! config_flags {
    (
        $(#[$meta:meta])*
        pub struct $name:ident onto ($model:ident: $config:ty, $training:ident: $training_ty:ty) {
            $(
                $(#[$flag_meta:meta])*
                $flag:ident: $ty:ty => $root:ident $(.$path:ident)+ $(= $map:expr)?,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, clap::Args)]
        pub struct $name {
            $($(#[$flag_meta])* pub $flag: Option<$ty>,)*
        }

        impl $name {
            /// Writes every flag given onto the configuration or the training options.
            #[allow(unused_variables)]
            pub fn apply(&self, $model: &mut $config, $training: &mut $training_ty) {
                $(
                    if let Some(value) = &self.$flag {
                        $root $(.$path)+ = config_flags!(@map value.to_owned() $(, $map)?);
                    }
                )*
            }
        }
    };
    (@map $value:expr) => { $value };
    (@map $value:expr, $map:expr) => { ($map)($value) };
}
pub(crate) use config_flags;

/// Which weights sample, for a model whose trainer keeps a moving average
/// of them (diffusion models; GANs with `--ema-decay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weights {
    /// The moving average the trainer kept (the default).
    Ema,
    /// The weights as last trained (what a run without an average samples).
    Trained,
}

/// `value = Some(new)` replaces `value`: a flag given overrides the
/// configuration.
pub fn set<T>(value: &mut T, new: Option<T>) {
    if let Some(new) = new {
        *value = new;
    }
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

/// A number of samples to draw and score, at most
/// [`crate::sample::MAX_SAMPLES`] (`--samples 10¹²` once ran out of memory).
pub fn sample_count(text: &str) -> Result<usize, String> {
    let max = crate::sample::MAX_SAMPLES;
    match text.parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        Ok(n) => Err(format!("{n} is more than the {max} samples a command draws at most")),
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
