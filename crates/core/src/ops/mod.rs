//! Fast CPU kernels for training: convolutions as im2col/col2im + gemm, max
//! pooling, ReLU and the per-channel bias, written as Candle custom ops so
//! that Candle's autograd differentiates through them.
//!
//! Plain Candle 0.11 computes a convolution's input gradient with a direct
//! `conv_transpose2d` loop and its kernel gradient with a convolution whose
//! "kernel" is the whole output gradient; on two cores that made the seed
//! CNN's training step 20× slower than PyTorch's. Here every pass is one
//! matrix product per image (see [`conv`] for the math):
//!
//! ```text
//! y  = W · cols,          cols = im2col(x)
//! ∂x = col2im(Wᵀ · ∂y)
//! ∂W = Σ_batch ∂y · colsᵀ
//! ```
//!
//! [`max_pool2d`], [`relu`], [`add_channel_bias`] and [`bias_relu`] replace Candle backward
//! passes that allocate several full-size temporaries (and, for max pooling,
//! scale the gradient wrongly) with one sweep each; see [`pool`] and
//! [`pointwise`].
//!
//! On CUDA and Metal, and for dtypes other than `f32`/`f64`, every function
//! here calls Candle's own op instead, so model code can call these
//! unconditionally.
//!
//! [`runtime`] holds the two process settings a CPU training program applies
//! first ([`prepare_cpu_training`]): reusing freed memory instead of mapping
//! fresh pages for every large tensor, and one thread for Candle's
//! element-wise ops so that its spinning pool does not fight rayon's.

pub mod conv;
mod im2col;
pub(crate) mod inplace;
pub mod pointwise;
pub mod pool;
pub mod runtime;

pub use conv::{conv_transpose2d, conv2d};
pub use pointwise::{add_channel_bias, bias_relu, relu};
pub use pool::max_pool2d;
pub use runtime::{prepare_cpu_training, reuse_freed_memory};

use rayon::prelude::*;

/// Below this many elements an element-wise kernel runs on the calling
/// thread. Every call into rayon's pool from outside it hands the work to
/// another thread and waits for it, which costs more than a small sweep, and
/// far more on a loaded machine (the VAE step took 88–140 ms instead of
/// 27 ms at load average 6 when every small kernel went through the pool).
pub(crate) const PARALLEL_MIN: usize = 1 << 18;

/// Calls `f(index, chunk)` for the `chunk`-element pieces of `data` in
/// order, on rayon's pool when `parallel`.
pub(crate) fn for_each_chunk<T: Send>(
    data: &mut [T],
    chunk: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let chunk = chunk.max(1);
    if parallel {
        data.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        data.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    }
}
