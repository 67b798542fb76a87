//! Timing of seed 000's network (`INPUT-128x128x3 CONV-9-32 POOL-2 CONV-5-64
//! POOL-2 CONV-5-64 POOL-2 FLATTEN FC-3`, 189,187 parameters) on the CPU,
//! batch 32, against PyTorch on the same machine with 2 threads.
//!
//! Prints `BENCH <name> <seconds> <pytorch_seconds>` for `cargo xtask bench`:
//!
//! - `seed_cnn_train_step_b32`: forward, cross-entropy, backward and one Adam
//!   update (PyTorch: 0.777 s);
//! - `seed_cnn_forward_b32`: the forward pass alone (PyTorch: 0.386 s).
//!
//! Each figure is the median of [`TIMED_RUNS`] runs after [`WARM_UPS`].
//! With `DEEPGEN_BENCH_PROFILE=1` it also prints where a training step's
//! time goes: forward, backward and optimizer, and each convolution of the
//! network forward and in both directions of its backward pass, with
//! Candle's ops and with deepgen-core's (which the layers use).

use std::hint::black_box;

use deepgen_cnn::Spec;
use deepgen_core::candle::{DType, Device, Module, Tensor, Var};
use deepgen_core::candle_nn::VarMap;
use deepgen_core::rng::{randn, rng_from_seed};
use deepgen_core::train::{StepCtx, TrainStep};
use deepgen_core::{Adam, AdamConfig, seeded_var_builder};

const SEED_SPEC: &str = "INPUT-128x128x3 CONV-9-32 POOL-2 CONV-5-64 POOL-2 CONV-5-64 POOL-2 FLATTEN FC-3";
const BATCH: usize = 32;
const WARM_UPS: usize = 1;
const TIMED_RUNS: usize = 3;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Median wall time in seconds of `f` over [`TIMED_RUNS`] after [`WARM_UPS`].
fn median_seconds(f: impl FnMut() -> Result<()>) -> Result<f64> {
    deepgen_core::bench::median_seconds(WARM_UPS, TIMED_RUNS, f)
}

/// The `BENCH` line, and the ratio to PyTorch for a reader of the output.
fn report(name: &str, seconds: f64, pytorch: f64) {
    deepgen_core::bench::report(name, seconds, Some(pytorch));
    println!(
        "  {name}: {seconds:.3} s, {:.2}× PyTorch's {pytorch:.3} s",
        seconds / pytorch
    );
}

/// Whether `cargo xtask bench --filter NAME` (passed as the first free
/// argument) selects this bench.
fn selected() -> bool {
    let names = ["seed_cnn_train_step_b32", "seed_cnn_forward_b32"];
    match std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        Some(filter) => names.iter().any(|n| n.contains(&filter)),
        None => true,
    }
}

fn main() -> Result<()> {
    if !selected() {
        return Ok(());
    }
    let device = Device::Cpu;
    let spec = Spec::parse(SEED_SPEC)?;
    let mut rng = rng_from_seed(0);
    let images = randn(&mut rng, (BATCH, 3, 128, 128), &device)?;
    let labels = Tensor::from_vec((0..BATCH as u32).map(|i| i % 3).collect::<Vec<_>>(), BATCH, &device)?;

    let mut classifier = deepgen_cnn::Classifier::new(&spec, AdamConfig::default(), 0, &device)?;
    let batch = (images.clone(), labels.clone());
    let seconds = median_seconds(|| {
        black_box(classifier.train_step(&batch, &StepCtx::default(), &mut rng)?);
        Ok(())
    })?;
    report("seed_cnn_train_step_b32", seconds, 0.777);

    let model = classifier.model().clone();
    let seconds = median_seconds(|| {
        black_box(model.forward(&images)?);
        Ok(())
    })?;
    report("seed_cnn_forward_b32", seconds, 0.386);

    if std::env::var_os("DEEPGEN_BENCH_PROFILE").is_some() {
        profile(&spec, &images, &labels)?;
    }
    Ok(())
}

/// Splits a training step into forward, backward and Adam, then times each
/// convolution's forward pass and the two convolutions its backward pass
/// runs (input gradient: a transposed convolution; kernel gradient: a
/// convolution of the input with the output gradient). Candle's backward
/// computes the first layer's input gradient too, although the images need
/// none; core's skips it.
fn profile(spec: &Spec, images: &Tensor, labels: &Tensor) -> Result<()> {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let model = deepgen_cnn::cnn(spec, seeded_var_builder(&varmap, 0, DType::F32, &device))?;
    let mut opt = Adam::new(&varmap, AdamConfig::default())?;
    let mut loss = None;
    let forward = median_seconds(|| {
        let logits = model.forward(images)?;
        loss = Some(deepgen_core::candle_nn::loss::cross_entropy(&logits, labels)?);
        Ok(())
    })?;
    let loss = loss.ok_or("no loss")?;
    let mut grads = None;
    let backward = median_seconds(|| {
        grads = Some(loss.backward()?);
        Ok(())
    })?;
    let mut grads = grads.ok_or("no gradients")?;
    let adam = median_seconds(|| {
        opt.step(&mut grads)?;
        Ok(())
    })?;
    println!("profile: forward + loss {forward:.3} s, backward {backward:.3} s, Adam {adam:.3} s");

    // The three convolutions of the seed network: (input dims, kernel dims).
    let layers = [
        ((BATCH, 3, 128, 128), (32, 3, 9, 9)),
        ((BATCH, 32, 60, 60), (64, 32, 5, 5)),
        ((BATCH, 64, 28, 28), (64, 64, 5, 5)),
    ];
    let mut rng = rng_from_seed(1);
    for (i, (x_dims, k_dims)) in layers.into_iter().enumerate() {
        let x = randn(&mut rng, x_dims, &device)?;
        let k = randn(&mut rng, k_dims, &device)?;
        let y = x.conv2d(&k, 0, 1, 1, 1)?;
        let g = randn(&mut rng, y.dims(), &device)?;
        // Candle's ops, as its Conv2D backward (backprop.rs) runs them.
        let fwd = median_seconds(|| {
            black_box(x.conv2d(&k, 0, 1, 1, 1)?);
            Ok(())
        })?;
        let input_grad = median_seconds(|| {
            black_box(g.conv_transpose2d(&k, 0, 0, 1, 1)?);
            Ok(())
        })?;
        let kernel_grad = median_seconds(|| {
            black_box(
                x.transpose(0, 1)?
                    .conv2d(&g.transpose(0, 1)?, 0, 1, 1, 1)?
                    .transpose(0, 1)?,
            );
            Ok(())
        })?;
        println!(
            "profile: conv {} {x_dims:?} * {k_dims:?}, Candle: forward {fwd:.3} s, input gradient \
             (conv_transpose2d) {input_grad:.3} s, kernel gradient (conv2d) {kernel_grad:.3} s",
            i + 1
        );
        // deepgen-core's ops, which the layers use: forward, then backward of
        // ⟨conv(x, k), g⟩ with x constant (kernel gradient only, as for the
        // images) and with x a variable (both gradients).
        let kv = Var::from_tensor(&k)?;
        let xv = Var::from_tensor(&x)?;
        let fwd = median_seconds(|| {
            black_box(deepgen_core::ops::conv2d(&x, &k, 0, 1, 1)?);
            Ok(())
        })?;
        let y_const = deepgen_core::ops::conv2d(&x, kv.as_tensor(), 0, 1, 1)?;
        let loss_const = (&y_const * &g)?.sum_all()?;
        let kernel_only = median_seconds(|| {
            black_box(loss_const.backward()?);
            Ok(())
        })?;
        let y_var = deepgen_core::ops::conv2d(xv.as_tensor(), kv.as_tensor(), 0, 1, 1)?;
        let loss_var = (&y_var * &g)?.sum_all()?;
        let both = median_seconds(|| {
            black_box(loss_var.backward()?);
            Ok(())
        })?;
        println!(
            "profile: conv {} deepgen-core: forward {fwd:.3} s, backward kernel gradient only {kernel_only:.3} s, \
             input and kernel gradients {both:.3} s",
            i + 1
        );
    }
    Ok(())
}
