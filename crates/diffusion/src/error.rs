//! The error type of deepgen-diffusion: every fallible function returns
//! [`Result`]. Its shape is the one every model crate shares
//! ([`deepgen_core::family_error!`]).

deepgen_core::family_error!("deepgen-diffusion");
