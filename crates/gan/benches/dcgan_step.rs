//! The DCGAN pair of `anchors/torch_dcgan_mnist.py`, timed: one training
//! step at batch 64 (a discriminator update on real and detached generated
//! images, then a generator update through it), and the 2-D MLP pair of
//! PacGAN's experiments at batch 100.
//!
//! Prints `BENCH <name> <seconds> <pytorch_seconds|->` lines for `cargo xtask
//! bench` (medians of 21 steps after 3 warm-up steps, as the anchor does).
//! PyTorch reference, 2 threads, this machine (`torch_dcgan_mnist.py step`):
//! 0.095–0.154 s per step depending on the hour; run it beside this bench
//! and compare the ratio.
//!
//! A first free argument filters the workloads by name.

use candle::{DType, Device};
use deepgen_core::bench::{Workloads, median_seconds, report};
use deepgen_core::rng::{rand_uniform, rng_from_seed};
use deepgen_core::{AdamConfig, Trainer};
use deepgen_gan::{Gan, GanConfig};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn time_steps(name: &str, config: &GanConfig, batch: usize, adam: AdamConfig, pytorch: Option<f64>) -> Result<()> {
    let device = Device::Cpu;
    let mut trainer = Trainer::<Gan>::new(config, adam, 0, &device)?;
    let mut rng = rng_from_seed(1);
    let xs = rand_uniform(&mut rng, (batch, config.data_dim), 0.0, 1.0, &device)?.to_dtype(DType::F32)?;
    let seconds = median_seconds(3, 21, || {
        let (model, optimizers) = trainer.model_and_optimizers();
        model.step(&xs, optimizers, &mut rng).map(|_| ())
    })?;
    report(name, seconds, pytorch);
    Ok(())
}

fn main() -> Result<()> {
    // SAFETY: no other thread exists yet to read or write the environment.
    unsafe { deepgen_core::prepare_cpu_training() };
    let workloads = Workloads::from_args();
    let selected = |name: &str| workloads.selected(name);
    let dcgan_adam = AdamConfig {
        lr: 2e-4,
        beta1: 0.5,
        ..Default::default()
    };
    if selected("dcgan_step_b64") {
        time_steps("dcgan_step_b64", &GanConfig::default(), 64, dcgan_adam, Some(0.0945))?;
    }
    if selected("gan_mlp_2d_step_b100") {
        let adam = AdamConfig {
            lr: 1e-4,
            beta1: 0.8,
            ..Default::default()
        };
        time_steps("gan_mlp_2d_step_b100", &GanConfig::points(2), 100, adam, None)?;
    }
    Ok(())
}
