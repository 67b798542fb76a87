//! The pytorch/examples VAE on MNIST, timed: one training epoch through
//! deepgen-core's loop, one Adam step, and the importance-sampled
//! log-likelihood of one batch.
//!
//! Prints `BENCH <name> <seconds> <pytorch_seconds|->` lines for `cargo xtask
//! bench`. The data are MNIST's training images from `data/mnist` when
//! present, otherwise uniform noise of the same shape (the time per epoch
//! does not depend on the pixel values).
//!
//! PyTorch references, 2 threads (`torch.set_num_threads(2)`), same machine
//! (shared/anchors/torch_vae_mnist.py): 7.55 s per training epoch of 469
//! batches of 128 (6.7–8.4 over ten epochs); 0.016 s per Adam step.
//!
//! The machine is shared, so next to each wall-clock figure the bench prints
//! (on stderr) the process's CPU seconds for the same work and the load
//! average; on an idle two-core machine the wall time is about CPU / 2.
//!
//! Like the `deepgen` program, the bench first applies
//! `deepgen_core::prepare_cpu_training` (freed memory kept for reuse, one
//! element-wise thread for Candle), as a training program does.
//!
//! A first free argument filters the workloads by name.

use candle::{DType, Device, Tensor};
use deepgen_core::bench::{Workloads, report};
use deepgen_core::rng::{rand_uniform, rng_from_seed};
use deepgen_core::{AdamConfig, BatchSource, StdRng, StepCtx, TrainConfig, TrainStep, fit};
use deepgen_data::{Batcher, BatcherConfig};
use deepgen_vae::{VaeConfig, VaeTrainer};
use std::path::Path;
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Batches of images only, for a `TrainStep` whose batch is a tensor.
struct Images(Batcher);

impl BatchSource for Images {
    type Batch = Tensor;
    fn n_batches(&self) -> usize {
        self.0.n_batches()
    }
    fn start_epoch(&mut self, rng: &mut StdRng) -> deepgen_core::Result<()> {
        BatchSource::start_epoch(&mut self.0, rng)
    }
    fn batch(&self, batch_idx: usize) -> deepgen_core::Result<Tensor> {
        Ok(BatchSource::batch(&self.0, batch_idx)?.images)
    }
}

fn training_images() -> Result<(Tensor, &'static str)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    match deepgen_data::load_mnist(&dir) {
        Ok(mnist) => Ok((mnist.train_images, "mnist")),
        Err(_) => Ok((
            rand_uniform(&mut rng_from_seed(0), (60_000, 784), 0.0, 1.0, &Device::Cpu)?,
            "noise",
        )),
    }
}

/// CPU seconds (user + system, all threads) of this process so far, from
/// `/proc/self/stat` (Linux; `None` elsewhere).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses): utime and
    // stime are fields 14 and 15 of the line, 12 and 13 after the ")".
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() -> Result<()> {
    // SAFETY: first thing in `main`, before any thread or tensor exists.
    unsafe { deepgen_core::prepare_cpu_training() };
    let workloads = Workloads::from_args();
    let (images, source) = training_images()?;
    let config = VaeConfig::default();
    let adam = AdamConfig::default();

    if workloads.selected("vae_mnist_epoch") {
        // Two epochs; the figure is their mean training time (as the issue's
        // "mean training seconds per epoch").
        let mut trainer = VaeTrainer::new(&config, adam.clone(), 1, &Device::Cpu)?;
        let batcher = BatcherConfig {
            batch_size: 128,
            ..Default::default()
        };
        let mut data = Images(Batcher::new(&images, None, batcher, &Device::Cpu)?);
        let run = TrainConfig {
            epochs: 2,
            seed: 1,
            progress: false,
            ..Default::default()
        };
        let cpu_before = cpu_seconds();
        let records = fit(&run, &mut trainer, &mut data, |_, _| Ok(()))?;
        let cpu = cpu_before
            .zip(cpu_seconds())
            .map(|(a, b)| (b - a) / records.len().max(1) as f64);
        let mean = records.iter().map(|r| r.train_seconds).sum::<f64>() / records.len().max(1) as f64;
        eprintln!(
            "vae_mnist_epoch: data {source}, epoch seconds {:?}, CPU seconds per epoch {cpu:?}, load {}",
            records.iter().map(|r| r.train_seconds).collect::<Vec<_>>(),
            load_average()
        );
        report("vae_mnist_epoch", mean, Some(7.55));
    }

    // One Adam step on a batch of 128, median of 60: with one z sample per
    // image (pytorch/examples) and with two (`--samples 2`).
    for (name, n_samples) in [("vae_step_b128", 1), ("vae_step_b128_l2", 2)] {
        if !workloads.selected(name) {
            continue;
        }
        let config = VaeConfig {
            n_samples,
            ..config.clone()
        };
        let mut trainer = VaeTrainer::new(&config, adam.clone(), 2, &Device::Cpu)?;
        let xs = images.narrow(0, 0, 128)?;
        let mut rng = rng_from_seed(3);
        let mut times = Vec::new();
        for _ in 0..60 {
            let start = Instant::now();
            trainer.train_step(&xs, &StepCtx::default(), &mut rng)?;
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        report(name, times[times.len() / 2], (n_samples == 1).then_some(0.016));
    }

    if workloads.selected("vae_loglik_k1000_b128") {
        let trainer = VaeTrainer::new(&config, adam, 4, &Device::Cpu)?;
        let xs = images.narrow(0, 0, 128)?.to_dtype(DType::F32)?;
        let start = Instant::now();
        let ll = trainer
            .model()
            .importance_log_likelihood(&xs, 1000, &mut rng_from_seed(5))?;
        let seconds = start.elapsed().as_secs_f64();
        let _ = ll.mean_all()?.to_scalar::<f32>()?;
        report("vae_loglik_k1000_b128", seconds, None);
    }
    Ok(())
}
