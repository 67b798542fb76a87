//! The error type of deepgen-diffusion: every fallible function returns
//! [`Result`].

/// Errors of deepgen-diffusion. Variants carry the offending values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value or an argument is out of range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidConfig {
        /// The option's name (`beta_start`, `steps`, `eta`, …).
        name: &'static str,
        /// The offending value, as text.
        value: String,
        /// What a valid value looks like.
        reason: String,
    },
    /// A tensor argument has the wrong shape.
    #[error("{what}: expected {expected}, got shape {got:?}")]
    BadShape {
        /// Which argument.
        what: &'static str,
        /// Its shape.
        got: Vec<usize>,
        /// The shape that was expected.
        expected: String,
    },
    /// An error from a Candle tensor operation.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// An error from deepgen-core (optimizer, checkpoint).
    #[error(transparent)]
    Core(#[from] deepgen_core::Error),
}

/// `Result` with deepgen-diffusion's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::InvalidConfig`] for `name = value`.
    pub fn invalid(name: &'static str, value: impl std::fmt::Debug, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            name,
            value: format!("{value:?}"),
            reason: reason.into(),
        }
    }

    /// An [`Error::BadShape`] for `what`.
    pub fn shape(what: &'static str, got: &[usize], expected: impl Into<String>) -> Self {
        Error::BadShape {
            what,
            got: got.to_vec(),
            expected: expected.into(),
        }
    }
}

impl From<Error> for deepgen_core::Error {
    /// Hands an error to the training loop: tensor, core and configuration
    /// errors keep their kind, the rest travel as
    /// [`deepgen_core::Error::External`].
    fn from(e: Error) -> Self {
        match e {
            Error::Candle(e) => deepgen_core::Error::Candle(e),
            Error::Core(e) => e,
            Error::InvalidConfig { name, value, reason } => deepgen_core::Error::InvalidConfig { name, value, reason },
            other @ Error::BadShape { .. } => deepgen_core::Error::external(other),
        }
    }
}
