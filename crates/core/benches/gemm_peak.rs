//! The physical limit of this machine for deepgen's convolutions: the gemm
//! kernel's throughput on a large square `f32` product, one thread and all
//! of them, the same gemm build (AVX-512 kernels) and thread pool the
//! im2col/gemm convolutions of [`deepgen_core::ops`] call.
//!
//! Prints `BENCH gemm_f32_<n>_<threads>t <seconds> <pytorch_seconds|->` for
//! `cargo xtask bench`; GFLOP/s is `2n³ / seconds / 1e9`. Its PyTorch side
//! (`torch.mm` on the same sizes, 2 threads) and the FLOPs of the anchors'
//! training steps are printed by `benches/torch_flops.py`, so a step's
//! lower bound on this machine is its FLOPs over the peak measured here.
//!
//! A first free argument filters the workloads by name.

use deepgen_core::bench::{Workloads, median_seconds, report};
use deepgen_core::rng::{rand_uniform, rng_from_seed};
use gemm::{Parallelism, gemm};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `C = A·B` for square `n × n` row-major matrices, timed (median of 7 after 2 warm-ups).
fn time_square(n: usize, parallelism: Parallelism) -> Result<f64> {
    let mut rng = rng_from_seed(0);
    let device = candle::Device::Cpu;
    let a: Vec<f32> = rand_uniform(&mut rng, n * n, -1.0, 1.0, &device)?
        .to_dtype(candle::DType::F32)?
        .to_vec1()?;
    let b: Vec<f32> = rand_uniform(&mut rng, n * n, -1.0, 1.0, &device)?
        .to_dtype(candle::DType::F32)?
        .to_vec1()?;
    let mut c = vec![0f32; n * n];
    let stride = n as isize;
    let seconds = median_seconds(2, 7, || -> Result<()> {
        // SAFETY: the three buffers hold n·n values each, row-major with
        // row stride n and column stride 1, and `c` aliases neither input.
        unsafe {
            gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                stride,
                false,
                a.as_ptr(),
                1,
                stride,
                b.as_ptr(),
                1,
                stride,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        std::hint::black_box(&c);
        Ok(())
    })?;
    Ok(seconds)
}

fn main() -> Result<()> {
    // SAFETY: no other thread exists yet to read or write the environment.
    unsafe { deepgen_core::prepare_cpu_training() };
    let workloads = Workloads::from_args();
    let threads = rayon::current_num_threads();
    let n = 2048;
    let one = format!("gemm_f32_{n}_1t");
    if workloads.selected(&one) {
        report(&one, time_square(n, Parallelism::None)?, None);
    }
    let all = format!("gemm_f32_{n}_{threads}t");
    if threads > 1 && workloads.selected(&all) {
        report(&all, time_square(n, Parallelism::Rayon(threads))?, None);
    }
    Ok(())
}
