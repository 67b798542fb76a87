//! The error type of deepgen-core.

use std::path::PathBuf;

/// Everything that can go wrong in device selection, checkpoints, optimizers
/// and the training loop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch, device error, …).
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// Reading or writing a file failed.
    #[error("{op} `{path}`: {source}")]
    Io {
        /// What was being done (`write checkpoint`, `read metrics`, …).
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint file could not be parsed or does not fit the model.
    #[error("checkpoint `{path}`: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file of a run directory (`metrics.csv`) that cannot be read as one.
    #[error("`{path}`: {reason}")]
    RunFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A device name other than `cpu`, `cuda`, `metal`, `auto` (optionally `cuda:N`).
    #[error("unknown device `{0}` (expected cpu, cuda, cuda:N, metal or auto)")]
    UnknownDevice(String),
    /// The device exists as a choice but this build or machine lacks it.
    #[error("device `{device}` is not available: {reason}")]
    DeviceUnavailable {
        /// The requested device.
        device: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidConfig {
        /// The option's name.
        name: &'static str,
        /// The offending value, as text.
        value: String,
        /// What a valid value looks like.
        reason: String,
    },
    /// Training produced a NaN or infinite metric; the checkpoint on disk,
    /// if any, is that of epoch `kept`.
    #[error(
        "metric `{metric}` became {value} at epoch {epoch}, batch {batch}; stopped, {}",
        kept_checkpoint(*.kept)
    )]
    NonFinite {
        /// The metric that went bad.
        metric: String,
        /// Its value (NaN or ±inf).
        value: f64,
        /// 1-based epoch.
        epoch: usize,
        /// 0-based batch within the epoch (`None` for end-of-epoch metrics).
        batch: String,
        /// The last epoch whose checkpoint is on disk (`None`: none was written).
        kept: Option<usize>,
    },
    /// An error of a model or data crate passed through the training loop
    /// (their `TrainStep` and `BatchSource` implementations keep their own
    /// error types and wrap them with [`Error::external`]).
    #[error(transparent)]
    External(Box<dyn std::error::Error + Send + Sync>),
    /// `--resume` was asked for but the run directory has no checkpoint.
    #[error("cannot resume: no checkpoint at `{0}`")]
    NothingToResume(PathBuf),
    /// A stop was requested (Ctrl-C, SIGTERM); the loop stopped at a step
    /// boundary of epoch `epoch` (1-based), and the checkpoint on disk is
    /// that of epoch `kept` (`None`: no epoch had finished, nothing saved).
    #[error("interrupted in epoch {epoch}; {}", kept_checkpoint(*.kept))]
    Interrupted {
        /// The epoch that was running.
        epoch: usize,
        /// The last epoch whose checkpoint is on disk.
        kept: Option<usize>,
    },
    /// Another process holds the run directory's lock.
    #[error(
        "run directory `{0}` is in use by another deepgen process (it holds `.deepgen.lock` there); wait for it to finish, or pass --out DIR"
    )]
    RunInUse(PathBuf),
}

/// `Result` with deepgen-core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the operation and the path it concerned.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Wraps another crate's error (see [`Error::External`]).
    pub fn external(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::External(Box::new(error))
    }
}

/// What an interrupted run left on disk, for [`Error::Interrupted`].
fn kept_checkpoint(kept: Option<usize>) -> String {
    match kept {
        Some(epoch) => format!("the checkpoint of epoch {epoch} is kept"),
        None => "no checkpoint was written".into(),
    }
}
