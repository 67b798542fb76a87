//! The UNet of `anchors/torch_ddpm_mnist.py`, timed: one training step at
//! batch 128 (ε-prediction loss, Adam 2e-4, and the trainer's weight
//! average) and one forward pass at batch 256 (what a sampler pays per
//! step).
//!
//! Prints `BENCH <name> <seconds> <pytorch_seconds|->` lines for `cargo xtask
//! bench` (medians of 15 steps after 3 warm-up steps, as the anchor does).
//! PyTorch reference, 2 threads, this machine (`torch_ddpm_mnist.py step`,
//! 2026-12-03): 1.003 s per step, 0.773 s per forward; run it beside this
//! bench and compare the ratio.
//!
//! A first free argument filters the workloads by name.

use candle::{DType, Device, Tensor};
use deepgen_core::bench::{Workloads, median_seconds, report};
use deepgen_core::rng::{rand_uniform, randn, rng_from_seed};
use deepgen_core::train::{StepCtx, TrainStep};
use deepgen_core::{AdamConfig, Trainer};
use deepgen_diffusion::{DiffusionConfig, DiffusionModel};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    // SAFETY: no other thread exists yet to read or write the environment.
    unsafe { deepgen_core::prepare_cpu_training() };
    let workloads = Workloads::from_args();
    let selected = |name: &str| workloads.selected(name);
    let device = Device::Cpu;
    let adam = AdamConfig {
        lr: 2e-4,
        ..Default::default()
    };
    let mut trainer = Trainer::<DiffusionModel>::new(&DiffusionConfig::default(), adam, 0, &device)?;
    let mut rng = rng_from_seed(1);
    if selected("ddpm_unet_train_step_b128") {
        let xs = rand_uniform(&mut rng, (128, 784), 0.0, 1.0, &device)?.to_dtype(DType::F32)?;
        let seconds = median_seconds(3, 15, || {
            TrainStep::train_step(&mut trainer, &xs, &StepCtx::new(1, 0, 1), &mut rng).map(|_| ())
        })?;
        report("ddpm_unet_train_step_b128", seconds, Some(1.0031));
    }
    if selected("ddpm_unet_forward_b256") {
        let x = randn(&mut rng, (256, 784), &device)?;
        let t = Tensor::full(500f32, 256, &device)?;
        let model = trainer.model();
        let seconds = median_seconds(1, 7, || model.forward(&x, &t, true).map(|_| ()))?;
        report("ddpm_unet_forward_b256", seconds, Some(0.7729));
    }
    Ok(())
}
