//! The error type of deepgen-score: every fallible function returns
//! [`Result`]. Its shape is the one every model crate shares
//! ([`deepgen_core::family_error!`]), plus deepgen-numerics' errors.

deepgen_core::family_error!(
    "deepgen-score",
    Numerics(deepgen_numerics::Error) => "An error from deepgen-numerics.",
);
