//! The error type of deepgen-vae: every fallible function outside a forward
//! pass returns [`Result`]. Its shape is the one every model crate shares
//! ([`deepgen_core::family_error!`]).

deepgen_core::family_error!(
    "deepgen-vae",
    Numerics(deepgen_numerics::Error) => "An error from deepgen-numerics.",
);
