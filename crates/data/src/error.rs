//! The error type of deepgen-data.
//!
//! Every variant that concerns a file carries its path and the offending
//! numbers, so a message such as ``train-images-idx3-ubyte.gz`: header claims
//! 4000000000 items of 784 bytes …`` is enough to find the problem.

use std::path::PathBuf;

/// Everything that can go wrong while loading, batching, sampling or writing
/// image grids.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch, device error, …).
    #[error(transparent)]
    Candle(#[from] candle::Error),

    /// Reading or writing a file failed.
    #[error("{op} `{path}`: {source}")]
    Io {
        /// What was being done (`open`, `decompress`, `write png`, …).
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A data file is missing; the message says how to get it.
    #[error("`{path}` not found (looked for `{path}.gz` and `{path}`): run `{fetch_command}`")]
    MissingFile {
        /// The path looked for, without the `.gz` suffix.
        path: PathBuf,
        /// The command that downloads the file, e.g. `cargo xtask fetch-mnist --dest data/mnist`.
        fetch_command: String,
    },

    /// The first four bytes of an IDX file are not the expected magic number.
    #[error("`{path}`: magic number {found:#010x}, expected {expected}")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number read.
        found: u32,
        /// What was expected, e.g. `0x00000803 (unsigned bytes, 3 dimensions)`.
        expected: String,
    },

    /// The IDX file stores a data type other than unsigned bytes (code 0x08).
    #[error("`{path}`: IDX data type {type_code:#04x} is not supported (only 0x08, unsigned bytes)")]
    UnsupportedIdxType {
        /// The file.
        path: PathBuf,
        /// The type code (third byte of the magic number).
        type_code: u8,
    },

    /// The file ended before the header or the payload was complete.
    #[error("`{path}`: truncated {part}: expected {expected} bytes, found {found}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// `header` or `payload`.
        part: &'static str,
        /// Bytes the header announced (or the header's own length).
        expected: u64,
        /// Bytes actually present.
        found: u64,
    },

    /// The file holds more bytes than its header announces.
    #[error("`{path}`: {extra} trailing byte(s) after the {expected}-byte payload the header announces")]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Payload bytes the header announced.
        expected: u64,
        /// Extra bytes found (for compressed files: at least this many).
        extra: u64,
    },

    /// The header claims a payload that is implausibly large, checked before
    /// anything is allocated.
    #[error("`{path}`: header dimensions {dims:?} claim {claimed} bytes, more than the limit of {limit} bytes{why}")]
    Oversized {
        /// The file.
        path: PathBuf,
        /// The dimensions in the header.
        dims: Vec<u32>,
        /// The payload size they imply (saturating at `u64::MAX`).
        claimed: u64,
        /// The limit that was exceeded.
        limit: u64,
        /// Which limit, e.g. ` (1073741824 bytes at most)` or
        /// ` (a 10 kB gzip file cannot decompress to more)`.
        why: String,
    },

    /// The header's dimensions do not fit what the loader expects.
    #[error("`{path}`: dimensions {found:?}, expected {expected}")]
    BadDims {
        /// The file.
        path: PathBuf,
        /// The dimensions in the header.
        found: Vec<u32>,
        /// What was expected, e.g. `[n, 28, 28]`.
        expected: String,
    },

    /// A label is outside `0..n_classes`.
    #[error("`{path}`: label {value} at index {index} is not in 0..{n_classes}")]
    BadLabel {
        /// The labels file.
        path: PathBuf,
        /// Position of the label in the file.
        index: usize,
        /// The label value.
        value: u8,
        /// Number of classes.
        n_classes: usize,
    },

    /// An images file and its labels file disagree on the number of examples.
    #[error("`{images}` has {n_images} images but `{labels}` has {n_labels} labels")]
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// Number of images.
        n_images: usize,
        /// The labels file.
        labels: PathBuf,
        /// Number of labels.
        n_labels: usize,
    },

    /// The files are the other official data set (MNIST where
    /// Fashion-MNIST was asked for, or the reverse), told by the test labels.
    #[error(
        "`{dir}` holds the official {found} files, not {expected} (its test labels are {found}'s); point --data-dir at the {expected} files or ask for --data {found}"
    )]
    WrongDataset {
        /// The folder.
        dir: PathBuf,
        /// The data set asked for.
        expected: &'static str,
        /// The data set the files are.
        found: &'static str,
    },

    /// An argument is out of range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// The offending value, as text.
        value: String,
        /// What a valid value looks like.
        reason: String,
    },

    /// A tensor has a shape the function cannot use.
    #[error("{what}: got shape {got:?}, expected {expected}")]
    BadShape {
        /// Which argument.
        what: &'static str,
        /// Its dimensions.
        got: Vec<usize>,
        /// What was expected.
        expected: String,
    },

    /// deepgen-core failed, e.g. its atomic writer could not write a file
    /// (the message names it).
    #[error(transparent)]
    Core(#[from] deepgen_core::Error),

    /// A sample metric failed (too few points, all points equal).
    #[error(transparent)]
    Numerics(#[from] deepgen_numerics::Error),

    /// Encoding a PNG failed.
    #[error("encode png `{path}`: {source}")]
    Png {
        /// The file being written.
        path: PathBuf,
        /// The encoder's error.
        source: png::EncodingError,
    },
}

/// `Result` with deepgen-data's [`Error`].
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

    /// An [`Error::InvalidArgument`].
    pub fn invalid(name: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
