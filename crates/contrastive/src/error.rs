//! The error type of deepgen-contrastive: every fallible function returns
//! [`Result`]. Its shape is the one every model crate shares
//! ([`deepgen_core::family_error!`]), plus deepgen-cnn's errors (the
//! encoder's spec).

deepgen_core::family_error!(
    "deepgen-contrastive",
    Cnn(deepgen_cnn::Error) => "An error from deepgen-cnn (the encoder's spec).",
    Solver(crate::probe::SolverError) => "The linear probe's solver did not finish.",
);
