//! deepgen-data: the data every deepgen model trains and is tested on.
//!
//! - [`mnist`]: MNIST and Fashion-MNIST from the four official IDX files,
//!   gzipped or raw ([`load_mnist`], [`load_fashion_mnist`], [`Dataset`]),
//!   images as `[n, 784]` `f32` in `[0, 1]` and labels as `[n]` `u32`;
//!   [`to_images`] gives the `[n, 1, 28, 28]` layout. A missing file is an
//!   error that names it and the `cargo xtask fetch-mnist` command to run.
//! - [`idx`]: the IDX reader underneath, which treats every header as
//!   untrusted (magic number, dimensions, and the claimed size against the
//!   bytes actually present are checked before anything is allocated), and
//!   [`write_idx_images`], which saves generated images (`[n, 784]`,
//!   `[n, h, w]` or `[n, 1, h, w]` in `[0, 1]`) as an MNIST-format IDX file,
//!   gzipped for a `.gz` name, for any MNIST evaluator.
//! - [`binarize`](mod@binarize): static (thresholded or stochastic-once) and dynamic
//!   binarisation for Bernoulli likelihoods.
//! - [`batch`]: [`Batcher`], seeded shuffling, `drop_last`, dynamic
//!   binarisation, copying each batch to the training device; and the
//!   [`deepgen_core::train::BatchSource`]s whose batch type says what a batch
//!   is: [`ImageBatcher`] (images), [`LabelledBatcher`] (images, labels) and
//!   [`PairBatcher`] (two seeded augmented views of the same images).
//! - [`synthetic`]: 2-D data sets (ring of 8 and 5×5 grid of Gaussians, two
//!   moons, swiss roll) and [`GaussianMixture2d`] with closed-form log-density,
//!   score and noised mixture, the ground truth of the GAN mode-coverage
//!   benchmark (SPEC §5) and of the score-matching identities (SPEC §6).
//! - [`modes`]: that benchmark's metrics (VEEGAN / PacGAN protocol):
//!   [`GaussianMixture2d::mode_report`] gives the high-quality samples per
//!   mode (within [`HIGH_QUALITY_STDS`] = 3 sd of the nearest mode), the modes
//!   captured, the high-quality fraction and the reverse KL of the mode
//!   histogram to the uniform ([`ModeReport`]).
//! - [`image_grid`](mod@image_grid): a batch of images as one PNG grid
//!   ([`save_image_grid`]), as torchvision's `make_grid` lays it out. Plots
//!   (loss curves, scatter plots) are the CLI's, drawn with plotters.
//! - `hub` (feature `hub`): the same data through candle-datasets and the
//!   Hugging Face hub.
//!
//! # Design decisions
//!
//! - **Every random draw comes from a generator passed in** (`&mut impl Rng`,
//!   in practice deepgen-core's seeded `StdRng`), never from Candle's CPU
//!   generator, which cannot be seeded. A [`Batcher`] draws one epoch seed in
//!   `start_epoch` and derives batch `i`'s binarisation noise from
//!   `derived_rng(epoch_seed, i)`, so `batch(&self, i)` is a pure function of
//!   the epoch and the index, and a resumed run sees identical batches.
//! - **Data stay on the CPU**; each batch is gathered there and copied to the
//!   device, so a GPU holds one batch, not the data set.
//! - **Mixtures are computed in `f64` on the host** with log-sum-exp
//!   responsibilities: for the ring's sd of 0.01 a point one unit away already
//!   has `N_k(x) ≈ e^{-5000}`, which underflows in `f32` and in a naive `f64`
//!   sum. For `p(x) = Σ_k w_k N(x; μ_k, diag(s_k²))`:
//!   `ln p(x) = logsumexp_k l_k(x)` with
//!   `l_k = ln w_k − Σ_d [ln s_kd + ½ ln 2π + (x_d − μ_kd)² / (2 s_kd²)]`, and
//!   the score is `∇ ln p(x) = Σ_k r_k(x) (μ_k − x) / s_k²` with
//!   `r_k = exp(l_k − ln p)`. Noising by `N(0, σ² I)` gives the mixture with
//!   `s_k² + σ²`, so the noisy score of denoising score matching is exact.
//! - **Files are validated before allocation and written atomically.** The
//!   IDX reader never sizes a buffer from a header it has not checked against
//!   the file; PNGs and IDX files are written to a temporary name and renamed
//!   by deepgen-core's one atomic writer.
//! - candle-datasets (parquet, arrow, hf-hub, a TLS stack) sits behind the
//!   optional `hub` feature, so depending on this crate stays light.
#![deny(missing_docs)]

pub mod batch;
pub mod binarize;
pub mod error;
#[cfg(feature = "hub")]
pub mod hub;
pub mod idx;
pub mod image_grid;
pub mod mnist;
pub mod modes;
pub mod synthetic;

pub use batch::{Batch, Batcher, BatcherConfig, ImageBatcher, LabelledBatcher, PairBatcher};
pub use binarize::{binarize, binarize_stochastic};
pub use error::{Error, Result};
#[cfg(feature = "hub")]
pub use hub::{load_fashion_mnist_from_hub, load_mnist_from_hub};
pub use idx::{IdxArray, read_idx, write_idx_images};
pub use image_grid::{Image, image_grid, save_image_grid};
pub use mnist::{
    Dataset, Mnist, flatten_images, load_fashion_mnist, load_images, load_images_and_labels, load_mnist, to_images,
};
pub use modes::{HIGH_QUALITY_STDS, MmdToTruth, ModeReport};
pub use synthetic::{
    GaussianMixture2d, Synthetic2d, points_to_tensor, swiss_roll, tensor_to_points, two_moons, two_moons_with_labels,
};
