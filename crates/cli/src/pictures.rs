//! The pictures of a run: per-epoch reconstructions and prior samples (image
//! grids; for a model of 2-D points, its samples scattered over the test
//! points), and at the end the loss curve, latent interpolations and (2-D
//! latent) the manifold — image grids by deepgen-data, plots by
//! [`crate::plot`].

use crate::plot::{ScatterLayer, scatter_plot};
use anyhow::{Context, Result};
use deepgen_core::Generative;
use deepgen_core::candle::Tensor;
use deepgen_core::rng::{derived_rng, randn};
use deepgen_core::train::METRICS_FILE;
use deepgen_data::{save_image_grid, tensor_to_points};
use std::path::{Path, PathBuf};

/// Test images per column of the reconstruction picture (pytorch/examples: 8).
const N_RECONSTRUCTIONS: usize = 8;
/// Prior samples in the 8 × 8 samples picture (pytorch/examples: 64).
const N_SAMPLES: usize = 64;
/// Pairs of test digits and steps per pair of the interpolation picture.
const INTERPOLATION: (usize, usize) = (6, 10);
/// Points per side of the 2-D latent manifold.
pub const MANIFOLD_SIDE: usize = 20;
/// Stream of the run seed that draws the prior samples of the pictures.
const PICTURE_STREAM: u64 = 1 << 40;

/// Samples per epoch in the scatter picture of a model of 2-D points.
const N_POINT_SAMPLES: usize = 1000;

/// The per-epoch pictures: `reconstructions_epoch_XX.png` (test originals
/// above, reconstructions below) for a model with an encoder and, for a
/// model with a prior, `samples_epoch_XX.png` (the same noise every epoch,
/// so that the pictures show training progress): a grid of images, or 1,000
/// 2-D samples scattered over the test points.
#[derive(Debug)]
pub struct EpochPictures {
    run_dir: PathBuf,
    /// The first test images, shown with their reconstructions.
    originals: Tensor,
    /// Prior noise of the samples picture, the same every epoch.
    sample_eps: Tensor,
    /// The test points a 2-D model's samples are drawn over.
    test_points: Tensor,
}

impl EpochPictures {
    /// Pictures of `model` in `run_dir`, the noise drawn from `seed`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn new(model: &impl Generative, run_dir: &Path, test_images: &Tensor, seed: u64) -> Result<Self> {
        let n = N_RECONSTRUCTIONS.min(test_images.dim(0)?);
        let n_samples = if model.generates_points() {
            N_POINT_SAMPLES
        } else {
            N_SAMPLES
        };
        let sample_eps = randn(
            &mut derived_rng(seed, PICTURE_STREAM),
            (n_samples, model.noise_dim()),
            test_images.device(),
        )?;
        Ok(Self {
            run_dir: run_dir.to_path_buf(),
            originals: test_images.narrow(0, 0, n)?,
            sample_eps,
            test_points: test_images.clone(),
        })
    }

    /// Draws epoch `epoch`'s pictures of `model`.
    ///
    /// # Errors
    /// The model's errors; a file that cannot be written.
    pub fn save(&mut self, model: &impl Generative, epoch: usize) -> Result<()> {
        if let Some(recon) = model.reconstruct(&self.originals)? {
            let both = Tensor::cat(&[&self.originals, &recon], 0)?;
            let path = self.run_dir.join(format!("reconstructions_epoch_{epoch:02}.png"));
            save_grid_png(&both, self.originals.dim(0)?, &path)?;
        }
        if let Some(samples) = model.generate(&self.sample_eps)? {
            let path = self.run_dir.join(format!("samples_epoch_{epoch:02}.png"));
            if model.generates_points() {
                let title = format!("epoch {epoch}");
                save_points_png(&samples, Some(&self.test_points), &title, &path)?;
            } else {
                save_grid_png(&samples, 8, &path)?;
            }
        }
        Ok(())
    }
}

/// The end-of-run pictures: loss curve, interpolation and (2-D latent)
/// manifold; returns the files written.
///
/// # Errors
/// The model's errors; a file that cannot be read or written.
pub fn final_pictures(run_dir: &Path, test_images: &Tensor, model: &impl Generative) -> Result<Vec<PathBuf>> {
    let mut written: Vec<PathBuf> = save_loss_curve(run_dir)?.into_iter().collect();
    let (pairs, steps) = INTERPOLATION;
    let pairs = pairs.min(test_images.dim(0)? / 2);
    let mut rows = Vec::with_capacity(pairs);
    for p in 0..pairs {
        let a = test_images.narrow(0, 2 * p, 1)?;
        let b = test_images.narrow(0, 2 * p + 1, 1)?;
        match model.interpolate(&a, &b, steps)? {
            Some(row) => rows.push(row),
            None => break,
        }
    }
    if !rows.is_empty() {
        let path = run_dir.join("interpolation.png");
        save_grid_png(&Tensor::cat(&rows, 0)?, steps, &path)?;
        written.push(path);
    }
    if let Some(grid) = model.manifold(MANIFOLD_SIDE)? {
        let path = run_dir.join("manifold.png");
        save_grid_png(&grid, MANIFOLD_SIDE, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// Saves `images` `[n, D]` as a PNG grid with `n_cols` columns at `path`;
/// the error names the file.
///
/// # Errors
/// When the images are not square pictures or the file cannot be written.
pub fn save_grid_png(images: &Tensor, n_cols: usize, path: &Path) -> Result<()> {
    save_image_grid(images, n_cols, path).with_context(|| format!("cannot write `{}`", path.display()))
}

/// Saves 2-D `samples` `[n, 2]` as a scatter plot at `path`, drawn over
/// `data` `[m, 2]` when given; the error names the file.
///
/// # Errors
/// Tensors that are not 2-D points; a file that cannot be written.
pub fn save_points_png(samples: &Tensor, data: Option<&Tensor>, title: &str, path: &Path) -> Result<()> {
    let samples = tensor_to_points(samples)?;
    let data = data.map(tensor_to_points).transpose()?;
    let mut layers = Vec::new();
    if let Some(data) = &data {
        layers.push(ScatterLayer {
            name: "data",
            points: data,
            color: (150, 150, 150),
            size: 2,
        });
    }
    layers.push(ScatterLayer {
        name: "samples",
        points: &samples,
        color: (214, 39, 40),
        size: 2,
    });
    // The data's box widened by a quarter on each side: samples far off are
    // left out of the picture rather than shrinking the data to a dot.
    let extent = data.as_ref().map(|data| {
        let fold = |d: usize| {
            data.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p[d]), hi.max(p[d]))
            })
        };
        let widen = |(lo, hi): (f64, f64)| {
            let pad = 0.25 * (hi - lo).max(1e-3);
            [lo - pad, hi + pad]
        };
        (widen(fold(0)), widen(fold(1)))
    });
    scatter_plot(&layers, title, extent, path).with_context(|| format!("cannot write `{}`", path.display()))
}

/// `pictures: a.png, b.png`, when there are any.
pub fn say_pictures(pictures: &[PathBuf]) {
    if !pictures.is_empty() {
        let names: Vec<String> = pictures.iter().map(|p| p.display().to_string()).collect();
        crate::run::say(&format!("pictures: {}", names.join(", ")));
    }
}

/// A named series of `(epoch, value)` points.
type History = (&'static str, Vec<(f64, f64)>);

/// The `(epoch, value)` points of the loss columns (`train_loss`,
/// `test_loss`; a GAN's `d_loss`, `g_loss`; `loss` of the families with
/// one training loss and no test loss) of a run's `metrics.csv`.
fn loss_history(run_dir: &Path) -> Result<Vec<History>> {
    let path = run_dir.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap_or(f64::NAN)).collect())
        .collect();
    let epoch = header.iter().position(|h| *h == "epoch");
    Ok(["loss", "train_loss", "test_loss", "d_loss", "g_loss"]
        .into_iter()
        .filter_map(|name| {
            let col = header.iter().position(|h| *h == name)?;
            let points = rows
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let x = epoch.and_then(|e| r.get(e).copied()).unwrap_or(i as f64 + 1.0);
                    Some((x, *r.get(col)?))
                })
                .collect();
            Some((name, points))
        })
        .collect())
}

/// Draws `loss_curve.png` in the run directory from its `metrics.csv`, when
/// there are at least two epochs to connect; returns its path if drawn. The
/// picture is titled with the run directory's name, its x axis counts
/// epochs and its y axis is the loss per example (image or point).
///
/// # Errors
/// When the metrics cannot be read or the picture cannot be written.
pub fn save_loss_curve(run_dir: &Path) -> Result<Option<PathBuf>> {
    let history = loss_history(run_dir)?;
    if !history.iter().any(|(_, points)| points.len() >= 2) {
        return Ok(None);
    }
    let series: Vec<crate::plot::Series> = history
        .iter()
        .map(|(name, points)| crate::plot::Series { name, points })
        .collect();
    let title = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = run_dir.join("loss_curve.png");
    crate::plot::line_plot(&series, &title, "epoch", "loss per example", &path)?;
    Ok(Some(path))
}
