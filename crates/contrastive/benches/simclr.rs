//! SimCLR's costs, timed: NT-Xent forward and backward at N = 512, d = 128
//! (`torch_micro.py`'s `ntxent_fwd_bwd_n512_d128_s`), and one training step
//! of the anchor's model at batch 256 — both views drawn by the anchor's
//! augmentations, `f` and `g` forward and backward, Adam — as one step of
//! `torch_simclr_mnist.py`'s loop; and, alone, the step's first part: both
//! views of the 256 images drawn by the anchor's recipe.
//!
//! Prints `BENCH <name> <seconds> <pytorch_seconds|->` lines for `cargo xtask
//! bench` (medians of 7 runs after 2 warm-ups, as `torch_micro.py`). PyTorch
//! references, 2 threads, this machine: NT-Xent 0.0147 s (anchor); the step
//! 82 s per 234-step epoch ≈ 0.35 s (the anchor's epoch). Run the PyTorch
//! twins beside this bench and compare the ratio.
//!
//! A first free argument filters the workloads by name.

use candle::{DType, Device, Var};
use deepgen_contrastive::{SimClr, SimClrConfig, nt_xent};
use deepgen_core::bench::{Workloads, median_seconds, report};
use deepgen_core::rng::{rand_uniform, randn, rng_from_seed};
use deepgen_core::{AdamConfig, StepCtx, TrainableModel, Trainer};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    // SAFETY: no other thread exists yet to read or write the environment.
    unsafe { deepgen_core::prepare_cpu_training() };
    let workloads = Workloads::from_args();
    let selected = |name: &str| workloads.selected(name);
    let device = Device::Cpu;
    let mut rng = rng_from_seed(0);
    if selected("ntxent_fwd_bwd_n512_d128") {
        let z1 = Var::from_tensor(&randn(&mut rng, (512, 128), &device)?)?;
        let z2 = Var::from_tensor(&randn(&mut rng, (512, 128), &device)?)?;
        let seconds = median_seconds(2, 7, || -> Result<()> {
            nt_xent(z1.as_tensor(), z2.as_tensor(), 0.5)?.backward()?;
            Ok(())
        })?;
        report("ntxent_fwd_bwd_n512_d128", seconds, Some(0.0147));
    }
    if selected("simclr_views_b256") {
        let model = Trainer::<SimClr>::new(&SimClrConfig::default(), AdamConfig::default(), 0, &device)?;
        let xs = rand_uniform(&mut rng, (256, 784), 0.0, 1.0, &device)?.to_dtype(DType::F32)?;
        let seconds = median_seconds(2, 7, || -> Result<()> {
            model.model().views(&xs, &mut rng)?;
            Ok(())
        })?;
        report("simclr_views_b256", seconds, None);
    }
    if selected("simclr_step_b256") {
        let mut trainer = Trainer::<SimClr>::new(&SimClrConfig::default(), AdamConfig::default(), 0, &device)?;
        let xs = rand_uniform(&mut rng, (256, 784), 0.0, 1.0, &device)?.to_dtype(DType::F32)?;
        let mut step = 0;
        let seconds = median_seconds(2, 7, || -> Result<()> {
            let (model, optimizers) = trainer.model_and_optimizers();
            let views = model.views(&xs, &mut rng)?;
            model.train_step(&views, &StepCtx::new(1, step, 234), optimizers, &mut rng)?;
            step += 1;
            Ok(())
        })?;
        report("simclr_step_b256", seconds, Some(0.35));
    }
    Ok(())
}
