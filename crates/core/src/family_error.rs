//! [`family_error!`](macro@crate::family_error): the error type every model crate
//! shares the shape of — configuration values out of range, tensors of the
//! wrong shape, Candle and core errors, plus the crate's own sources — and
//! its hand-over to the training loop, written once.

/// Defines `Error`, `Result` and the conversion into [`crate::Error`] for a
/// model crate (`family_error!("deepgen-diffusion");` at the top of its
/// `error.rs`). Extra variants wrap other crates' errors:
/// `family_error!("deepgen-score", Numerics(deepgen_numerics::Error) => "An error from deepgen-numerics.");`.
///
/// The generated `Error` has
/// - `InvalidConfig { name, value, reason }` (`Error::invalid(name, value,
///   reason)` writes the value with `{:?}`, `Error::invalid_display` with
///   `{}`), which reaches the training loop as core's `InvalidConfig`;
/// - `BadShape { what, got, expected }` (`Error::shape`);
/// - `Candle` and `Core`, handed over as themselves;
/// - the extra variants, handed over boxed whole
///   ([`crate::Error::External`]) so their chain of sources survives.
///
/// The crate needs `thiserror` and `candle` (Candle's core crate) among its
/// dependencies.
#[macro_export]
macro_rules! family_error {
    ($krate:literal $(, $variant:ident($source:ty) => $doc:literal)* $(,)?) => {
        #[doc = concat!("Errors of ", $krate, ". Variants carry the offending values.")]
        #[derive(Debug, thiserror::Error)]
        pub enum Error {
            /// A configuration value or an argument is out of range.
            #[error("invalid {name} = {value}: {reason}")]
            InvalidConfig {
                /// The option's name.
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
            Core(#[from] $crate::Error),
            $(
                #[doc = $doc]
                #[error(transparent)]
                $variant(#[from] $source),
            )*
        }

        #[doc = concat!("`Result` with ", $krate, "'s [`Error`].")]
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

            /// An [`Error::InvalidConfig`] for `name = value`, the value written
            /// with `Display` (`-1`, `relu`, not `-1.0`, `"relu"`).
            pub fn invalid_display(name: &'static str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
                Error::InvalidConfig {
                    name,
                    value: value.to_string(),
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

        impl From<Error> for $crate::Error {
            /// Hands an error to the training loop: tensor, core and
            /// configuration errors keep their kind, the rest travel as
            /// deepgen-core's `Error::External`.
            fn from(e: Error) -> Self {
                match e {
                    Error::Candle(e) => $crate::Error::Candle(e),
                    Error::Core(e) => e,
                    Error::InvalidConfig { name, value, reason } => $crate::Error::InvalidConfig { name, value, reason },
                    other => $crate::Error::external(other),
                }
            }
        }
    };
}
