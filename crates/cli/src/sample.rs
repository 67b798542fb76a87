//! `deepgen sample <model>`: prior samples of a trained generative model as
//! a PNG grid and, on request, an IDX file (the MNIST format, uint8 28×28)
//! that any MNIST evaluator can score; a model of 2-D points draws a
//! scatter plot.

use crate::args::at_least_one;
use crate::pictures::{save_grid_png, save_points_png};
use crate::run::{checkpoint_file, open_device, say};
use anyhow::{Context, Result, bail};
use clap::Args;
use deepgen_core::Generative;
use deepgen_core::candle::{Device, Tensor};
use deepgen_core::rng::{derived_rng, randn};
use deepgen_core::{DeviceChoice, TrainableModel, load_model};
use std::path::PathBuf;

/// The largest `--n` (and `eval diffusion --samples`): 100,000 images of 784 floats are 300 MB.
pub const MAX_SAMPLES: usize = 100_000;
/// Images decoded per batch.
const SAMPLE_BATCH: usize = 1000;

/// Flags of `deepgen sample <model>`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Run directory of `deepgen train <model>` (or its checkpoint file).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Number of samples.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = at_least_one)]
    pub n: usize,
    /// Seed of the prior draws.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// The PNG grid to write.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    /// Also write the samples as an IDX file (uint8, the MNIST format; `.gz` gzips it).
    #[arg(long, value_name = "FILE.idx")]
    pub idx: Option<PathBuf>,
    /// Columns of the grid [default: ⌈√N⌉].
    #[arg(long, value_name = "C", value_parser = at_least_one)]
    pub cols: Option<usize>,
    /// Device: cpu, cuda, cuda:N, metal or auto.
    #[arg(long, value_name = "D", default_value = "auto")]
    pub device: DeviceChoice,
}

/// `n` prior samples of `model` (decoded images `[n, D]`) from standard-normal
/// noise drawn with `seed`, in batches; `None` for a model without a prior.
///
/// # Errors
/// More than [`MAX_SAMPLES`] (before any is drawn); the model's errors.
pub fn draw_samples(model: &impl Generative, n: usize, seed: u64, device: &Device) -> Result<Option<Tensor>> {
    if n > MAX_SAMPLES {
        bail!("{n} samples are more than the {MAX_SAMPLES} a command draws at most (lower --samples or --n)");
    }
    let mut rng = derived_rng(seed, 0);
    let mut parts = Vec::new();
    for start in (0..n).step_by(SAMPLE_BATCH) {
        let len = SAMPLE_BATCH.min(n - start);
        let eps = randn(&mut rng, (len, model.noise_dim()), device)?;
        let Some(images) = model.generate(&eps)? else {
            return Ok(None);
        };
        parts.push(images);
    }
    Ok(Some(Tensor::cat(&parts, 0)?))
}

/// `deepgen sample <model>` for a model family `M`.
///
/// # Errors
/// A run that is not `M`'s, a model without a prior, `--n` above the limit,
/// files that cannot be written.
pub fn sample<M: TrainableModel + Generative>(args: &SampleArgs) -> Result<()> {
    let path = checkpoint_file(&args.checkpoint, M::FAMILY)?;
    let device = open_device(args.device)?;
    let (model, _vars) = load_model::<M>(&path, &device)
        .with_context(|| format!("cannot load a `{}` model from `{}`", M::FAMILY, path.display()))?;
    write_samples(&model, args, &device)
}

/// Draws `args.n` samples of a loaded `model` and writes the grid (or the
/// scatter plot) and the IDX file the flags ask for.
///
/// # Errors
/// A model without a prior, `--n` above the limit, files that cannot be
/// written.
pub fn write_samples(model: &impl Generative, args: &SampleArgs, device: &Device) -> Result<()> {
    if args.n > MAX_SAMPLES {
        bail!("--n {} is more than {MAX_SAMPLES} samples", args.n);
    }
    let Some(images) = draw_samples(model, args.n, args.seed, device)? else {
        bail!(
            "`{}` holds a model with no prior to sample from",
            args.checkpoint.display()
        );
    };
    let mut written = vec![args.out.display().to_string()];
    if model.generates_points() {
        if let Some(idx) = &args.idx {
            bail!(
                "`{}` is a model of 2-D points; --idx `{}` writes 28×28 images (leave it out: the samples are drawn as a scatter plot)",
                args.checkpoint.display(),
                idx.display()
            );
        }
        let title = format!("{} samples (seed {})", args.n, args.seed);
        save_points_png(&images, None, &title, &args.out)?;
        say(&format!(
            "{} 2-D samples of `{}`: {}",
            args.n,
            args.checkpoint.display(),
            written[0]
        ));
        return Ok(());
    }
    let cols = args.cols.unwrap_or_else(|| (args.n as f64).sqrt().ceil() as usize);
    save_grid_png(&images, cols, &args.out)?;
    if let Some(idx) = &args.idx {
        deepgen_data::write_idx_images(idx, &images).with_context(|| format!("cannot write `{}`", idx.display()))?;
        written.push(idx.display().to_string());
    }
    say(&format!(
        "{} samples of `{}` (seed {}): {}",
        args.n,
        args.checkpoint.display(),
        args.seed,
        written.join(", ")
    ));
    Ok(())
}
