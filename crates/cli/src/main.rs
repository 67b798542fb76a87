//! The `deepgen` program: train, evaluate and inspect deepgen's models.
//!
//! - `deepgen train <model>`: trains a model through deepgen-core's loop,
//!   writing `metrics.csv`, a safetensors checkpoint and the run's
//!   configuration into a run directory (`--resume` continues it);
//! - `deepgen eval <model>`: evaluates a trained run;
//! - `deepgen cnn summary "<spec>"`: the shape and parameter table of a CNN.
//!
//! Each model's commands live in their own module under `commands/`; the
//! flags every `train` shares are [`common::CommonTrainArgs`]. Errors print
//! `error: …` and exit with status 1; bad flags are clap's (status 2); user
//! input never causes a panic.

mod commands;
mod common;
mod plot;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Command-line interface of `deepgen`.
#[derive(Debug, Parser)]
#[command(
    name = "deepgen",
    version,
    about = "Classic deep generative models on Candle: train, evaluate and inspect them.",
    long_about = "Classic deep generative models on Candle: train, evaluate and inspect them.\n\n\
                  Data: `cargo xtask fetch-mnist` puts MNIST in data/mnist (add --fashion for Fashion-MNIST).\n\
                  Runs: each training run writes metrics.csv, checkpoint.safetensors and config.toml \
                  into its run directory (runs/<model>-<data> unless --out is given).",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model.
    Train {
        #[command(subcommand)]
        model: TrainModel,
    },
    /// Evaluate a trained model.
    Eval {
        #[command(subcommand)]
        model: EvalModel,
    },
    /// Inspect convolutional network specs.
    Cnn {
        #[command(subcommand)]
        command: CnnCommand,
    },
}

/// `deepgen train <model>`.
#[derive(Debug, Subcommand)]
enum TrainModel {
    /// Train a CNN classifier on MNIST or Fashion-MNIST (the evaluator of generated digits).
    Cnn(commands::cnn::TrainArgs),
    /// Train a variational autoencoder (pytorch/examples' 784-400-20 VAE by default).
    Vae(commands::vae::TrainArgs),
    /// Train a deterministic autoencoder: plain, linear (PCA) or sparse.
    Ae(commands::vae::AeTrainArgs),
    /// Train a two-layer hierarchical VAE (the IWAE paper's 784-200-200-100 / 100-100-50 by default).
    Hvae(commands::hvae::TrainArgs),
}

/// `deepgen eval <model>`.
#[derive(Debug, Subcommand)]
enum EvalModel {
    /// Test loss, accuracy and predicted-class histogram of a trained CNN classifier.
    Cnn(commands::cnn::EvalArgs),
    /// Importance-sampled test log-likelihood and ELBO of a trained VAE.
    Vae(commands::vae::EvalArgs),
    /// Importance-sampled test log-likelihood and ELBO of a trained hierarchical VAE.
    Hvae(commands::hvae::EvalArgs),
}

/// `deepgen cnn <command>`.
#[derive(Debug, Subcommand)]
enum CnnCommand {
    /// Print the shape and parameter table of a spec (output dims, weights, biases, totals).
    Summary(commands::cnn::SummaryArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train { model } => match model {
            TrainModel::Cnn(args) => commands::cnn::train(args),
            TrainModel::Vae(args) => commands::vae::train(args),
            TrainModel::Ae(args) => commands::vae::train_ae(args),
            TrainModel::Hvae(args) => commands::hvae::train(args),
        },
        Command::Eval { model } => match model {
            EvalModel::Cnn(args) => commands::cnn::eval(args),
            EvalModel::Vae(args) => commands::vae::eval(args),
            EvalModel::Hvae(args) => commands::hvae::eval(args),
        },
        Command::Cnn { command } => match command {
            CnnCommand::Summary(args) => commands::cnn::summary(args),
        },
    }
}

fn main() -> ExitCode {
    // Every command trains or evaluates on the CPU by default, and both
    // settings are process-wide and read once: reuse freed memory instead of
    // faulting in fresh pages for every large tensor, and run Candle's
    // element-wise ops on the calling thread (see deepgen-core's
    // `ops::runtime`).
    // SAFETY: the first statement of the program, before any other thread
    // exists or any tensor op runs.
    unsafe { deepgen_core::prepare_cpu_training() };
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the context chain: "cannot load mnist from `data/mnist`: … run `cargo xtask …`".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
