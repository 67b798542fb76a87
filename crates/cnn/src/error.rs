//! The error type of deepgen-cnn.

use std::path::PathBuf;

/// Everything that can go wrong when parsing a spec, sizing its layers,
/// building, training or loading a network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec text is not in the layer-spec language.
    #[error("token {position} `{token}` (at character {offset}): {reason}")]
    Parse {
        /// The offending token as written.
        token: String,
        /// 1-based position of the token in the spec (`INPUT-…` is 1).
        position: usize,
        /// 1-based character offset of the token's first character.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The spec has no tokens at all.
    #[error("the spec is empty; it starts with an input such as `INPUT-28x28x1`")]
    EmptySpec,
    /// A layer cannot take the output of the layer before it.
    #[error("layer {position} `{token}` does not fit its {input} input: {reason}")]
    LayerDoesNotFit {
        /// 1-based position of the layer in the spec.
        position: usize,
        /// The layer in canonical form.
        token: String,
        /// The input it receives, e.g. `5×5×64` or `9216`.
        input: String,
        /// Why it does not fit.
        reason: String,
    },
    /// A tensor does not have the shape a network or function expects.
    #[error("{what}: got shape {got:?}, expected {expected}")]
    BadShape {
        /// What was being checked.
        what: &'static str,
        /// The dims received.
        got: Vec<usize>,
        /// The dims expected, in words.
        expected: String,
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
    /// A trained run directory cannot be loaded.
    #[error("run `{dir}`: {reason}")]
    Run {
        /// The run directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// The core training loop, a checkpoint or the device failed.
    #[error(transparent)]
    Core(#[from] deepgen_core::Error),
    /// A sample metric failed (too few images, non-finite features).
    #[error(transparent)]
    Numerics(#[from] deepgen_numerics::Error),
}

/// `Result` with deepgen-cnn's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for deepgen_core::Error {
    /// Lets a [`deepgen_core::train::TrainStep`] implementation use `?` on this
    /// crate's results: core and Candle errors come back unchanged, the
    /// others are wrapped with [`deepgen_core::Error::external`].
    fn from(err: Error) -> Self {
        match err {
            Error::Core(e) => e,
            Error::Candle(e) => deepgen_core::Error::Candle(e),
            other => deepgen_core::Error::external(other),
        }
    }
}
