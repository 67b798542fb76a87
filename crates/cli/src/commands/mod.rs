//! One module per model family; each holds its subcommands' flags and `run`
//! functions.

pub mod ae;
pub mod cnn;
pub mod diffusion;
pub mod gan;
pub mod hvae;
pub mod score;
pub mod simclr;
pub mod vae;
