//! `deepgen eval <model>` of the latent-variable models: the
//! importance-sampled test log-likelihood with a progress bar, and the ELBO.

use crate::args::{DataArg, at_least_one};
use crate::run::{load_dataset, say};
use anyhow::Result;
use clap::Args;
use deepgen_core::candle::{DType, Device, Tensor};
use deepgen_core::rng::derived_rng;
use deepgen_core::{DeviceChoice, StdRng, batch_ranges, progress_bar};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Flags every `deepgen eval <model>` of a latent-variable model shares
/// (`#[command(flatten)]` them after the model's `--checkpoint`).
#[derive(Debug, Clone, Args)]
pub struct LikelihoodEvalArgs {
    /// Importance samples per test image.
    #[arg(long, value_name = "K", default_value_t = 1000, value_parser = at_least_one)]
    pub k: usize,
    /// Data set whose test split is evaluated.
    #[arg(long, value_enum, default_value_t = DataArg::Mnist)]
    pub data: DataArg,
    /// Folder with the four IDX files [default: data/mnist or data/fashion-mnist].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Evaluate only the first N test images [default: all].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub n_test: Option<usize>,
    /// Test images per batch.
    #[arg(long, value_name = "B", default_value_t = 100, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Seed of the importance samples.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Device: cpu, cuda, cuda:N, metal or auto.
    #[arg(long, value_name = "D", default_value = "auto")]
    pub device: DeviceChoice,
}

/// A running `deepgen eval <model>`: the test images on the device and the
/// lines it prints.
#[derive(Debug)]
pub struct LikelihoodEval<'a> {
    args: &'a LikelihoodEvalArgs,
    images: Tensor,
    started: Instant,
}

impl LikelihoodEvalArgs {
    /// Loads the first `--n-test` test images onto `device` and prints what
    /// is evaluated: the checkpoint `path`, the `model`, the data and `K`.
    ///
    /// # Errors
    /// As [`load_dataset`].
    pub fn start(&self, path: &Path, model: &str, device: &Device) -> Result<LikelihoodEval<'_>> {
        let dataset = self.data.dataset();
        let data = load_dataset(dataset, &self.data.dir(self.data_dir.as_deref()))?;
        let n = self.n_test.map_or(data.n_test(), |n| n.min(data.n_test()));
        let images = data.test_images.narrow(0, 0, n)?.to_device(device)?;
        say(&format!(
            "`{}`: {model}; {dataset} test set, {n} images, K = {} importance samples each",
            path.display(),
            self.k
        ));
        Ok(LikelihoodEval {
            args: self,
            images,
            started: Instant::now(),
        })
    }
}

impl LikelihoodEval<'_> {
    /// The test images.
    pub fn images(&self) -> &Tensor {
        &self.images
    }

    /// Prints the mean importance-sampled `log p(x)` over the test images,
    /// with a progress bar: `estimate(xs, k, rng)` gives the estimate per
    /// row of a batch `xs`.
    ///
    /// # Errors
    /// The estimator's errors.
    pub fn log_likelihood(
        &self,
        mut estimate: impl FnMut(&Tensor, usize, &mut StdRng) -> Result<Tensor>,
    ) -> Result<()> {
        let n = self.images.dim(0)?;
        let bar = progress_bar(n as u64, "log p(x)", true);
        let mut rng = derived_rng(self.args.seed, 0);
        let mut sum_ll = 0f64;
        for (start, len) in batch_ranges(n, self.args.batch_size) {
            let ll = estimate(&self.images.narrow(0, start, len)?, self.args.k, &mut rng)?;
            sum_ll += ll.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
            let done = start + len;
            bar.set_position(done as u64);
            bar.set_message(format!("mean {:.3}", sum_ll / done as f64));
        }
        bar.finish_and_clear();
        say(&format!(
            "test log-likelihood (importance sampling, K = {}): {:.4} nats per image  ({:.1} s)",
            self.args.k,
            sum_ll / n.max(1) as f64,
            self.started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// The generator of the ELBO's draws (another stream than the
    /// importance samples').
    pub fn elbo_rng(&self) -> StdRng {
        derived_rng(self.args.seed, 1)
    }

    /// Prints the ELBO line: `elbo` and its `parts` (`recon 80.1, KL 25.3`).
    pub fn say_elbo(&self, elbo: f64, parts: &str) {
        say(&format!(
            "test ELBO (one sample): {elbo:.4} nats per image ({parts}); total {:.1} s",
            self.started.elapsed().as_secs_f64()
        ));
    }
}
