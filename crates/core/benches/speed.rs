//! What plain Candle costs, beside deepgen: one figure per workload and
//! implementation, each measured in one place.
//!
//! Prints one line per figure, `BENCH <name> <seconds> <pytorch_seconds|->`,
//! for `cargo xtask bench` to collect:
//!
//! - `seed_cnn_forward_b32_candle`, `seed_cnn_train_step_b32_candle`,
//!   `vae_step_b128_candle`: the seed CNN and the pytorch/examples VAE as a
//!   Candle user writes them (`Tensor::conv2d`, `broadcast_add`, `relu`,
//!   `max_pool2d`, candle-nn's layers and `AdamW`), with glibc's default
//!   allocator settings. deepgen's figures for the same workloads come from
//!   the model crates' own benches (`deepgen-cnn`'s `seed_cnn`,
//!   `deepgen-vae`'s `vae_mnist`: `seed_cnn_forward_b32`,
//!   `seed_cnn_train_step_b32`, `vae_step_b128`), which run the real models;
//! - `conv_transpose_128to64_7to14_b64_fwd_bwd_{candle,deepgen}`: one op,
//!   Candle's `conv_transpose2d` against [`deepgen_core::ops`]'s, the
//!   deepgen side in a child process that first applies
//!   [`deepgen_core::prepare_cpu_training`] (memory reuse, one element-wise
//!   thread for Candle), as a training program does.
//!
//! Both sides share one gemm build, with its AVX-512 kernels (deepgen-core
//! turns on gemm's `x86-v4` feature), so plain Candle's matrix products here
//! are faster than in a project without deepgen-core.
//!
//! Timing: one warm-up run, then the median of up to [`MAX_RUNS`] timed runs
//! that fit in [`BUDGET_SECONDS`] (at least [`MIN_RUNS`]); a workload whose
//! warm-up takes more than [`SLOW_SECONDS`] (plain Candle's CNN step, ~16 s)
//! is timed once more after its warm-up and that single figure is reported.
//!
//! PyTorch references, 2 threads (`torch.set_num_threads(2)`) on the same
//! machine: the seed CNN's Adam training step at batch 32 0.777 s and its
//! forward 0.386 s; a 128→64-channel 4×4 stride-2 transposed convolution from
//! 7×7 to 14×14 at batch 64, forward + backward, 0.027 s; the 784-400-20 VAE's
//! Adam step at batch 128 0.016 s.
//!
//! A first free argument filters the workloads by name (`cargo bench -p
//! deepgen-core --bench speed -- vae`).

use std::hint::black_box;
use std::time::Instant;

use candle::{D, DType, Device, Module, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use deepgen_core::bench::report;
use deepgen_core::rng::{rand_uniform, randn, rng_from_seed};
use deepgen_core::{StdRng, ops, seeded_var_builder};
use rand::Rng;

const BUDGET_SECONDS: f64 = 6.0;
const MIN_RUNS: usize = 3;
const MAX_RUNS: usize = 15;
const SLOW_SECONDS: f64 = 4.0;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Seconds of one representative run of `f` (see the module docs).
fn time(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    f()?;
    let warm_up = start.elapsed().as_secs_f64();
    if warm_up > SLOW_SECONDS {
        let start = Instant::now();
        f()?;
        return Ok(start.elapsed().as_secs_f64());
    }
    let runs = ((BUDGET_SECONDS / warm_up.max(1e-6)) as usize).clamp(MIN_RUNS, MAX_RUNS);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[runs / 2])
}

/// Which implementation a workload is written with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Impl {
    Candle,
    Deepgen,
}

impl Impl {
    fn suffix(self) -> &'static str {
        match self {
            Impl::Candle => "candle",
            Impl::Deepgen => "deepgen",
        }
    }
}

/// candle-nn's AdamW at learning rate 1e-3 without weight decay (Adam).
fn candle_adam(varmap: &VarMap) -> Result<candle_nn::AdamW> {
    Ok(candle_nn::AdamW::new(
        varmap.all_vars(),
        candle_nn::ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?)
}

/// Seed 000's network, `INPUT-128x128x3 CONV-9-32 POOL-2 CONV-5-64 POOL-2
/// CONV-5-64 POOL-2 FLATTEN FC-3`, ReLU after every convolution.
struct SeedCnn {
    convs: Vec<(Tensor, Tensor)>,
    fc: candle_nn::Linear,
}

impl SeedCnn {
    fn new(vb: VarBuilder) -> Result<Self> {
        let mut convs = Vec::new();
        for (i, (c_in, c_out, k)) in [(3, 32, 9), (32, 64, 5), (64, 64, 5)].into_iter().enumerate() {
            let conv = candle_nn::conv2d(c_in, c_out, k, Default::default(), vb.pp(format!("conv{i}")))?;
            let bias = conv.bias().ok_or("conv without bias")?.clone();
            convs.push((conv.weight().clone(), bias));
        }
        let fc = candle_nn::linear(9216, 3, vb.pp("fc"))?;
        Ok(Self { convs, fc })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = xs.clone();
        for (weight, bias) in &self.convs {
            xs = xs
                .conv2d(weight, 0, 1, 1, 1)?
                .broadcast_add(&bias.reshape((1, bias.dim(0)?, 1, 1))?)?
                .relu()?
                .max_pool2d(2)?;
        }
        Ok(xs.flatten_from(1)?.apply(&self.fc)?)
    }
}

/// The seed CNN's forward pass and Adam step at batch 32, in plain Candle.
fn seed_cnn(filter: &Option<String>) -> Result<()> {
    let mut rng = rng_from_seed(0);
    let xs = rand_uniform(&mut rng, (32, 3, 128, 128), 0.0, 1.0, &Device::Cpu)?;
    let labels: Vec<u32> = (0..32).map(|_| rng.random_range(0..3)).collect();
    let labels = Tensor::new(labels, &Device::Cpu)?;
    let varmap = VarMap::new();
    let model = SeedCnn::new(seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu))?;

    let name = "seed_cnn_forward_b32_candle";
    if selected(name, filter) {
        let seconds = time(|| {
            black_box(model.forward(&xs)?);
            Ok(())
        })?;
        report(name, seconds, Some(0.386));
    }

    let name = "seed_cnn_train_step_b32_candle";
    if selected(name, filter) {
        let mut opt = candle_adam(&varmap)?;
        let seconds = time(|| {
            let logits = model.forward(&xs)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
            Ok(opt.backward_step(&loss)?)
        })?;
        report(name, seconds, Some(0.777));
    }
    Ok(())
}

/// A decoder's 4×4 stride-2 padding-1 transposed convolution, 128 → 64
/// channels, 7×7 → 14×14, batch 64: forward, then the input and kernel
/// gradients of the sum of the output.
fn conv_transpose(imp: Impl, filter: &Option<String>) -> Result<()> {
    let name = format!("conv_transpose_128to64_7to14_b64_fwd_bwd_{}", imp.suffix());
    if !selected(&name, filter) {
        return Ok(());
    }
    let mut rng = rng_from_seed(1);
    let xs = candle::Var::from_tensor(&randn(&mut rng, (64, 128, 7, 7), &Device::Cpu)?)?;
    let kernel = candle::Var::from_tensor(&(randn(&mut rng, (128, 64, 4, 4), &Device::Cpu)? * 0.05)?)?;
    let seconds = time(|| {
        let ys = match imp {
            Impl::Candle => xs.conv_transpose2d(&kernel, 1, 0, 2, 1)?,
            Impl::Deepgen => ops::conv_transpose2d(&xs, &kernel, 1, 0, 2, 1)?,
        };
        let grads = ys.sum_all()?.backward()?;
        black_box(grads.get(&kernel).ok_or("no kernel gradient")?);
        Ok(())
    })?;
    report(&name, seconds, Some(0.027));
    Ok(())
}

/// The 784-400-20 VAE of pytorch/examples: `x → 400 → (μ, log σ²)`,
/// `z = μ + e^{½ log σ²} ε`, `z → 400 → 784` logits; loss = BCE-with-logits
/// summed + KL(q‖N(0, I)), divided by the batch size; Adam.
struct Vae {
    hidden: candle_nn::Linear,
    mean: candle_nn::Linear,
    log_var: candle_nn::Linear,
    dec_hidden: candle_nn::Linear,
    dec_out: candle_nn::Linear,
}

impl Vae {
    fn new(vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            hidden: candle_nn::linear(784, 400, vb.pp("hidden"))?,
            mean: candle_nn::linear(400, 20, vb.pp("mean"))?,
            log_var: candle_nn::linear(400, 20, vb.pp("log_var"))?,
            dec_hidden: candle_nn::linear(20, 400, vb.pp("dec_hidden"))?,
            dec_out: candle_nn::linear(400, 784, vb.pp("dec_out"))?,
        })
    }

    fn loss(&self, xs: &Tensor, eps: &Tensor) -> Result<Tensor> {
        let batch = xs.dim(0)? as f64;
        let h = self.hidden.forward(xs)?.relu()?;
        let (mean, log_var) = (self.mean.forward(&h)?, self.log_var.forward(&h)?);
        let zs = (&mean + ((&log_var * 0.5)?.exp()? * eps)?)?;
        let logits = self.dec_out.forward(&self.dec_hidden.forward(&zs)?.relu()?)?;
        // Stable BCE with logits: max(l, 0) − l·x + log(1 + e^{−|l|}).
        let bce = ((logits.relu()? - (&logits * xs)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
        let kl = ((mean.sqr()? + log_var.exp()?)? - (log_var + 1.0)?)?.sum(D::Minus1)?;
        Ok(((bce.sum_all()? + (kl.sum_all()? * 0.5)?)? / batch)?)
    }
}

/// The VAE's Adam step at batch 128, in plain Candle.
fn vae_step(filter: &Option<String>) -> Result<()> {
    let name = "vae_step_b128_candle";
    if !selected(name, filter) {
        return Ok(());
    }
    let mut rng: StdRng = rng_from_seed(2);
    let xs = rand_uniform(&mut rng, (128, 784), 0.0, 1.0, &Device::Cpu)?;
    let varmap = VarMap::new();
    let vae = Vae::new(seeded_var_builder(&varmap, 2, DType::F32, &Device::Cpu))?;
    let mut opt = candle_adam(&varmap)?;
    let seconds = time(|| {
        let eps = randn(&mut rng, (128, 20), &Device::Cpu)?;
        Ok(opt.backward_step(&vae.loss(&xs, &eps)?)?)
    })?;
    report(name, seconds, Some(0.016));
    Ok(())
}

fn selected(name: &str, filter: &Option<String>) -> bool {
    filter.as_ref().is_none_or(|f| name.contains(f.as_str()))
}

/// The argument that makes this binary run one deepgen workload as a child
/// process (see `main`).
const CHILD_FLAG: &str = "--deepgen-child";

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; the first other argument is a filter.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args.iter().find(|a| !a.starts_with("--")).cloned();
    if args.iter().any(|a| a == CHILD_FLAG) {
        // SAFETY: first statement of this process's work, before any other
        // thread exists or any tensor op runs.
        unsafe { deepgen_core::prepare_cpu_training() };
        return conv_transpose(Impl::Deepgen, &filter);
    }
    // Plain Candle runs in this process with Candle's and glibc's default
    // settings; the deepgen op runs right after it in a child process that
    // first applies `prepare_cpu_training`, as `deepgen train` does (the
    // settings are process-wide and read once, so they cannot be switched
    // on halfway through one process).
    seed_cnn(&filter)?;
    conv_transpose(Impl::Candle, &filter)?;
    if selected("conv_transpose_128to64_7to14_b64_fwd_bwd_deepgen", &filter) {
        let status = std::process::Command::new(std::env::current_exe()?)
            .args([CHILD_FLAG, "conv_transpose_128to64_7to14_b64_fwd_bwd_deepgen"])
            .status()?;
        if !status.success() {
            return Err(format!("the deepgen child for conv_transpose failed: {status}").into());
        }
    }
    vae_step(&filter)
}
