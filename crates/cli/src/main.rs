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
#[cfg(test)]
mod config_fuzz;
mod eval;
mod pictures;
mod plot;
mod points;
mod run;
mod sample;

use args::TrainArgs;
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
    Vae(TrainArgs<commands::vae::VaeFlags>),
    /// Train a deterministic autoencoder: plain, linear (PCA) or sparse.
    Ae(TrainArgs<commands::ae::AeFlags>),
    /// Train a two-layer hierarchical VAE (the IWAE paper's 784-200-200-100 / 100-100-50 by default).
    Hvae(TrainArgs<commands::hvae::HvaeFlags>),
    /// Train a GAN: MLPs on 2-D points (--data ring|grid, PacGAN's settings) or DCGAN on images.
    Gan(TrainArgs<commands::gan::GanFlags>),
    /// Train a score model on 2-D points (--data mixture|ring|grid|moons|swiss-roll): exact-trace, sliced or denoising score matching.
    Score(TrainArgs<commands::score::ScoreFlags>),
    /// Train a diffusion model: the PyTorch twin's UNet on images, or an MLP on 2-D points; ε-, x₀- or v-prediction.
    Diffusion(TrainArgs<commands::diffusion::DiffusionFlags>),
    /// Train SimCLR (NT-Xent on two augmented views) on images, with a linear probe and k-NN after every epoch.
    Simclr(commands::simclr::TrainArgs),
}

/// `deepgen eval <model>`.
#[derive(Debug, Subcommand)]
enum EvalModel {
    /// Test loss, accuracy and predicted-class histogram of a trained CNN classifier.
    Cnn(commands::cnn::EvalArgs),
    /// Importance-sampled test log-likelihood and ELBO of a trained VAE.
    Vae(eval::LikelihoodCommandArgs<deepgen_vae::Vae>),
    /// Importance-sampled test log-likelihood and ELBO of a trained hierarchical VAE.
    Hvae(eval::LikelihoodCommandArgs<deepgen_hvae::Hvae>),
    /// Samples of a trained GAN: the image scores, or mode metrics and MMD² for 2-D points.
    Gan(commands::gan::EvalArgs),
    /// Samples of a trained diffusion model by any sampler (ddpm, ddim, dpm-solver++), timed and scored.
    Diffusion(commands::diffusion::EvalArgs),
    /// Linear-probe and k-NN accuracy of a trained SimCLR encoder (and of a random encoder and raw pixels).
    Simclr(commands::simclr::EvalArgs),
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
    /// Samples of a trained diffusion model by any sampler, and one trajectory x_T … x₀.
    Diffusion(commands::diffusion::DiffusionSampleArgs),
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
            TrainModel::Ae(args) => run::train::<commands::ae::AeCommand>(&args),
            TrainModel::Hvae(args) => run::train::<commands::hvae::HvaeCommand>(&args),
            TrainModel::Gan(args) => run::train::<commands::gan::GanCommand>(&args),
            TrainModel::Score(args) => run::train::<commands::score::ScoreCommand>(&args),
            TrainModel::Diffusion(args) => run::train::<commands::diffusion::DiffusionCommand>(&args),
            TrainModel::Simclr(args) => commands::simclr::train(&args),
        },
        Command::Eval { model } => match model {
            EvalModel::Cnn(args) => commands::cnn::eval(&args),
            EvalModel::Vae(args) => eval::eval_likelihood(&args),
            EvalModel::Hvae(args) => eval::eval_likelihood(&args),
            EvalModel::Gan(args) => commands::gan::eval(&args),
            EvalModel::Diffusion(args) => commands::diffusion::eval(&args),
            EvalModel::Simclr(args) => commands::simclr::eval(&args),
            EvalModel::Samples(args) => eval::eval_samples(&args),
        },
        Command::Sample { model } => match model {
            SampleModel::Vae(args) => sample::sample::<deepgen_vae::Vae>(&args),
            SampleModel::Hvae(args) => sample::sample::<deepgen_hvae::Hvae>(&args),
            SampleModel::Gan(args) => sample::sample::<deepgen_gan::Gan>(&args),
            SampleModel::Score(args) => commands::score::sample(&args),
            SampleModel::Diffusion(args) => commands::diffusion::sample(&args),
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
    stop_cleanly_on_signals();
    match run(cli) {
        Ok(()) => match run::stdout_error() {
            None => ExitCode::SUCCESS,
            Some(e) => {
                eprintln!("error: cannot write to standard output: {e}");
                ExitCode::FAILURE
            }
        },
        Err(err) if interrupted(&err).is_some() => {
            eprintln!("error: {}", one_line(&err));
            if let Some(hint) = interrupted(&err).and_then(resume_hint) {
                eprintln!("{hint}");
            }
            ExitCode::from(INTERRUPTED)
        }
        Err(err) => {
            // `{:#}` prints the context chain: "cannot load mnist from `data/mnist`: … run `cargo xtask …`".
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `context: cause: cause`, each
/// said once: library errors include their source in their own message
/// (so that `to_string` is whole), which anyhow's `{:#}` would print again
/// ("No space left on device (os error 28): No space left on device (os
/// error 28)").
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The exit status of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT).
const INTERRUPTED: u8 = 130;

/// Ctrl-C and SIGTERM: during training the first asks the loop to stop at
/// its next step boundary (the last epoch's checkpoint is intact); a second,
/// or one outside training, ends the program at once.
fn stop_cleanly_on_signals() {
    let installed = ctrlc::set_handler(|| {
        use deepgen_core::interrupt;
        if interrupt::training_active() && !interrupt::stop_requested() {
            interrupt::request_stop();
            eprintln!("\nstopping after this step (again to stop at once)");
        } else {
            std::process::exit(i32::from(INTERRUPTED));
        }
    });
    if let Err(e) = installed {
        eprintln!("warning: cannot handle Ctrl-C ({e}); it will stop the program at once");
    }
}

/// The training loop's interruption, if that is what ended the command.
fn interrupted(err: &anyhow::Error) -> Option<Option<usize>> {
    err.chain().find_map(|e| match e.downcast_ref::<deepgen_core::Error>() {
        Some(deepgen_core::Error::Interrupted { kept, .. }) => Some(*kept),
        _ => None,
    })
}

/// `resume with: deepgen train … --resume` when a checkpoint is kept: this
/// program's own arguments, with `--resume` added; otherwise how to start
/// again.
fn resume_hint(kept: Option<usize>) -> Option<String> {
    if kept.is_none() {
        return Some("nothing was saved: remove the run directory to start again".into());
    }
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            if a.chars().any(|c| c.is_whitespace() || c == '\'') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect();
    Some(format!("resume with: deepgen {}", quoted.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// A cause that its parent's message already carries is said once.
    #[test]
    fn each_cause_is_said_once() {
        let os = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device (os error 28)");
        let core = deepgen_core::Error::io("write", "runs/x/metrics.csv", os);
        let err = anyhow::Error::new(core).context("cannot save the run");
        assert_eq!(
            one_line(&err),
            "cannot save the run: write `runs/x/metrics.csv`: No space left on device (os error 28)"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&plain), "outer: inner");
    }
}
