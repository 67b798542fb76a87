//! The error type of deepgen-gan: every fallible function outside a forward
//! pass returns [`Result`]. Its shape is the one every model crate shares
//! ([`deepgen_core::family_error!`]).

deepgen_core::family_error!(
    "deepgen-gan",
    Numerics(deepgen_numerics::Error) => "An error from deepgen-numerics.",
);
