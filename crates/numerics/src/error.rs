//! The crate's error type: every fallible function returns [`Result`].

/// Errors of deepgen-numerics. Variants carry the offending values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from a Candle tensor operation.
    #[error(transparent)]
    Candle(#[from] candle::Error),

    /// A slice that should hold a probability distribution does not.
    #[error("`{name}` is not a probability distribution: {reason}")]
    NotADistribution {
        /// Which argument (`p` or `q`).
        name: &'static str,
        /// What is wrong, with the offending value.
        reason: String,
    },

    /// Two slices that must have equal lengths do not.
    #[error("{op}: length mismatch, {left} vs {right}")]
    LengthMismatch {
        /// The operation that was called.
        op: &'static str,
        /// Length of the first argument.
        left: usize,
        /// Length of the second argument.
        right: usize,
    },

    /// Two tensors that must have equal shapes do not.
    #[error("{op}: shape mismatch, {left:?} vs {right:?}")]
    ShapeMismatch {
        /// The operation that was called.
        op: &'static str,
        /// Shape of the first argument.
        left: Vec<usize>,
        /// Shape of the second argument.
        right: Vec<usize>,
    },

    /// A dimension index is out of range or repeated.
    #[error("{op}: invalid reduction dims {dims:?} for a rank-{rank} tensor")]
    InvalidDims {
        /// The operation that was called.
        op: &'static str,
        /// The dims that were asked for.
        dims: Vec<usize>,
        /// Rank of the tensor.
        rank: usize,
    },

    /// The tensor's element type is not supported by the operation.
    #[error("{op}: unsupported dtype {dtype:?}, expected a floating-point dtype")]
    UnsupportedDtype {
        /// The operation that was called.
        op: &'static str,
        /// The dtype that was passed.
        dtype: candle::DType,
    },

    /// The weighted sum `Σ b_i e^{x_i}` is negative, so its logarithm is undefined.
    #[error("{op}: the weighted sum is negative ({sum:e}), its logarithm is undefined; use the signed variant")]
    NegativeSum {
        /// The operation that was called.
        op: &'static str,
        /// The (scaled) negative sum.
        sum: f64,
    },

    /// An argument is outside the domain of the function.
    #[error("{op}: invalid argument, {reason}")]
    InvalidArgument {
        /// The operation that was called.
        op: &'static str,
        /// What is wrong, with the offending value.
        reason: String,
    },
}

/// `std::result::Result` with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
