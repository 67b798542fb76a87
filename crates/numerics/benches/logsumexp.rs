//! Timing of the tensor logsumexp against PyTorch's reference figures.
//!
//! Prints one line per figure, `BENCH <name> <seconds> <pytorch_seconds|->`,
//! for `cargo xtask bench` to collect. Each figure is the median of 7 timed
//! runs after 2 warm-ups. PyTorch's numbers are `torch.logsumexp` on 2 CPU
//! threads (`torch.set_num_threads(2)`): 0.040 s over 1e7 `f32` values and
//! 0.037 s over the rows of a 1e4×1e3 `f32` matrix.

use std::hint::black_box;

use candle::{Device, Tensor};
use deepgen_core::bench::report;
use deepgen_numerics::logsumexp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WARM_UPS: usize = 2;
const TIMED_RUNS: usize = 7;

/// Median wall time in seconds of `f` over [`TIMED_RUNS`] after [`WARM_UPS`].
fn median_seconds(f: impl FnMut() -> deepgen_numerics::Result<()>) -> deepgen_numerics::Result<f64> {
    deepgen_core::bench::median_seconds(WARM_UPS, TIMED_RUNS, f)
}

fn random_tensor(rng: &mut StdRng, n: usize, shape: &[usize]) -> deepgen_numerics::Result<Tensor> {
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-10.0f32..10.0)).collect();
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

fn main() -> deepgen_numerics::Result<()> {
    let mut rng = StdRng::seed_from_u64(0);

    let flat = random_tensor(&mut rng, 10_000_000, &[10_000_000])?;
    let seconds = median_seconds(|| {
        black_box(logsumexp(&flat, 0)?);
        Ok(())
    })?;
    report("logsumexp_1e7_f32", seconds, Some(0.040));

    let matrix = random_tensor(&mut rng, 10_000_000, &[10_000, 1_000])?;
    let seconds = median_seconds(|| {
        black_box(logsumexp(&matrix, 1)?);
        Ok(())
    })?;
    report("logsumexp_rows_1e4x1e3_f32", seconds, Some(0.037));

    // Candle's own log_sum_exp on the same data, for comparison (it returns
    // NaN on all -inf rows, SPEC §11).
    let seconds = median_seconds(|| {
        black_box(flat.log_sum_exp(0)?);
        Ok(())
    })?;
    report("candle_log_sum_exp_1e7_f32", seconds, None);
    let seconds = median_seconds(|| {
        black_box(matrix.log_sum_exp(1)?);
        Ok(())
    })?;
    report("candle_log_sum_exp_rows_1e4x1e3_f32", seconds, None);
    Ok(())
}
