//! The `deepgen` program: train, evaluate and inspect deepgen's models.
//!
//! - `deepgen train <model>`: trains a model through deepgen-core's loop,
//!   writing `metrics.csv`, a safetensors checkpoint and the run's
//!   configuration into a run directory (`--resume` continues it);
//! - `deepgen eval <model>`: evaluates a trained run;
//! - `deepgen sample <model>`: prior samples of a trained run as a PNG grid
//!   and an IDX file;
//! - `deepgen cnn summary "<spec>"`: the shape and parameter table of a CNN.
//!
//! A model family's commands live in `commands/<family>.rs` (its flags and
//! its [`run::ModelCommand`]); what they share is split by concern: `args`
//! (flags every train command takes), `run` (settings, run directory,
//! `config.toml`, the driver), `pictures` and `plot` (PNG output), `eval`
//! (likelihood evaluation), `points` (scores of 2-D samples) and `sample`. Errors print `error: …` and exit
//! with status 1; bad flags are clap's (status 2); user input never causes a
//! panic.

mod args;
mod commands;
mod eval;
mod pictures;
mod plot;
mod points;
mod run;
mod sample;

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
    /// Draw samples of a trained generative model: a PNG grid, and an IDX file on request.
    Sample {
        #[command(subcommand)]
        model: SampleModel,
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
    /// Train a GAN: MLPs on 2-D points (--data ring|grid, PacGAN's settings) or DCGAN on images.
    Gan(commands::gan::TrainArgs),
    /// Train a score model on 2-D points (--data mixture|ring|grid|moons|swiss-roll): exact-trace, sliced or denoising score matching.
    Score(commands::score::TrainArgs),
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
    /// Samples of a trained GAN: the image scores, or mode metrics and MMD² for 2-D points.
    Gan(commands::gan::EvalArgs),
    /// Score generated images (an MNIST-format IDX file from any program): FCD, precision, recall, classes.
    Samples(eval::SampleEvalArgs),
}

/// `deepgen sample <model>`.
#[derive(Debug, Subcommand)]
enum SampleModel {
    /// Decoder means of prior samples of a trained VAE.
    Vae(sample::SampleArgs),
    /// Decoder means of prior samples (z2, then z1) of a trained hierarchical VAE.
    Hvae(sample::SampleArgs),
    /// Generator samples of a trained GAN (a scatter plot for 2-D points).
    Gan(sample::SampleArgs),
    /// Langevin or annealed Langevin samples of a trained score model (or of its data's exact score), over the data; the score field.
    Score(commands::score::SampleArgs),
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
            TrainModel::Cnn(args) => commands::cnn::train(&args),
            TrainModel::Vae(args) => run::train::<commands::vae::VaeCommand>(&args),
            TrainModel::Ae(args) => run::train::<commands::vae::AeCommand>(&args),
            TrainModel::Hvae(args) => run::train::<commands::hvae::HvaeCommand>(&args),
            TrainModel::Gan(args) => run::train::<commands::gan::GanCommand>(&args),
            TrainModel::Score(args) => run::train::<commands::score::ScoreCommand>(&args),
        },
        Command::Eval { model } => match model {
            EvalModel::Cnn(args) => commands::cnn::eval(&args),
            EvalModel::Vae(args) => commands::vae::eval(&args),
            EvalModel::Hvae(args) => commands::hvae::eval(&args),
            EvalModel::Gan(args) => commands::gan::eval(&args),
            EvalModel::Samples(args) => eval::eval_samples(&args),
        },
        Command::Sample { model } => match model {
            SampleModel::Vae(args) => sample::sample::<deepgen_vae::Vae>(&args),
            SampleModel::Hvae(args) => sample::sample::<deepgen_hvae::Hvae>(&args),
            SampleModel::Gan(args) => sample::sample::<deepgen_gan::Gan>(&args),
            SampleModel::Score(args) => commands::score::sample(&args),
        },
        Command::Cnn { command } => match command {
            CnnCommand::Summary(args) => commands::cnn::summary(&args),
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
