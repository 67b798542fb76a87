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
//! [`group_norm()`] (with the SiLU that follows it in a UNet block) is one op
//! with a one-pass backward instead of candle-nn's eleven; see
//! [`group_norm`](mod@group_norm).
//!
//! [`batch_norm()`] (with the rectifier that follows it in DCGAN) is one op
//! with a two-sweep backward instead of candle-nn's transposed copy and
//! some fifteen ops; see [`batch_norm`](mod@batch_norm).
//!
//! [`cross_entropy_rows`] (a softmax cross-entropy per row, the diagonal
//! optionally left out, as NT-Xent needs) is one op with a one-sweep
//! backward instead of some twenty sweeps of composed ops.
//!
//! [`upsample_nearest2d`] (a UNet's up path) has a one-sweep backward, a
//! window sum, instead of Candle's grouped convolution with one group per
//! channel; see [`upsample`]. [`upsample_conv2d_with_bias`] fuses it with
//! the 3×3 convolution that follows it, computed at the low resolution; see
//! [`resize_conv`].
//!
//! [`max_pool2d`], [`relu`], [`leaky_relu`], [`add_channel_bias`] and
//! [`bias_activation`] replace Candle backward
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

pub mod batch_norm;
pub mod conv;
pub mod cross_entropy;
pub(crate) mod exp;
pub mod group_norm;
pub(crate) mod im2col;
pub(crate) mod inplace;
pub mod maxout;
pub mod pointwise;
pub mod pool;
pub mod resize_conv;
pub mod runtime;
pub(crate) mod simd;
pub mod upsample;
pub(crate) mod winograd;

pub use batch_norm::{BatchStatistics, batch_norm};
pub use conv::{conv_transpose2d, conv_transpose2d_with_bias, conv2d, conv2d_with_bias};
pub use cross_entropy::cross_entropy_rows;
pub use group_norm::group_norm;
pub use maxout::maxout;
pub use pointwise::{Activation, add_channel_bias, bias_activation, bias_relu, leaky_relu, relu};
pub use pool::max_pool2d;
pub use resize_conv::upsample_conv2d_with_bias;
pub use runtime::{flush_subnormals, prepare_cpu_training, reuse_freed_memory};
pub use upsample::upsample_nearest2d;

use candle::{CpuStorage, DType, Layout, Shape, Tensor, WithDType, bail};
use rayon::prelude::*;

/// Below this many elements an element-wise kernel runs on the calling
/// thread. Every call into rayon's pool from outside it hands the work to
/// another thread and waits for it, which costs more than a small sweep, and
/// far more on a loaded machine (the VAE step took 88–140 ms instead of
/// 27 ms at load average 6 when every small kernel went through the pool).
pub(crate) const PARALLEL_MIN: usize = 1 << 18;

/// The element-wise arithmetic in the operands' own precision (f32 math on
/// f32 activations: no conversions, and an exponential several times
/// cheaper than f64's); statistics and parameter gradients still sum in f64.
pub(crate) trait Native: WithDType {
    /// `e^x`.
    fn exp(self) -> Self;
    /// `1/(1 + e^{−z})`.
    fn sigmoid(z: Self) -> Self;
}

impl Native for f32 {
    /// The vectorisable [`exp::exp_f32`] (within 2 ulp of libm's).
    #[inline(always)]
    fn exp(self) -> f32 {
        exp::exp_f32(self)
    }
    #[inline(always)]
    fn sigmoid(z: f32) -> f32 {
        1.0 / (1.0 + exp::exp_f32(-z))
    }
}

impl Native for f64 {
    #[inline(always)]
    fn exp(self) -> f64 {
        f64::exp(self)
    }
    #[inline(always)]
    fn sigmoid(z: f64) -> f64 {
        1.0 / (1.0 + (-z).exp())
    }
}

/// Calls `f(index, chunk)` for the `chunk`-element pieces of `data` in
/// order, on rayon's pool when `parallel`, compiled for the CPU's widest
/// vectors ([`simd::vectorized`]; give `f` `#[inline(always)]`).
pub(crate) fn for_each_chunk<T: Send>(
    data: &mut [T],
    chunk: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let chunk = chunk.max(1);
    if parallel {
        data.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| {
            simd::vectorized(
                #[inline(always)]
                || f(i, c),
            )
        });
    } else {
        data.chunks_mut(chunk).enumerate().for_each(|(i, c)| {
            simd::vectorized(
                #[inline(always)]
                || f(i, c),
            )
        });
    }
}

/// What a custom op's CPU forward pass returns: the result's storage and
/// shape (named so that `cpu_fwd` signatures fit on one line).
pub(crate) type CpuForward = candle::Result<(CpuStorage, Shape)>;

/// True when the CPU kernels here handle these operands: all on the CPU, of
/// one dtype, `f32` or `f64`. Anything else (CUDA, Metal, half precision)
/// goes to Candle's own op.
pub(crate) fn fast_path(operands: &[&Tensor]) -> bool {
    let dtype = operands[0].dtype();
    matches!(dtype, DType::F32 | DType::F64) && operands.iter().all(|t| t.device().is_cpu() && t.dtype() == dtype)
}

/// The elements of a contiguous operand. The public ops make every operand
/// contiguous before applying a kernel, so the error is an internal one.
pub(crate) fn contiguous_slice<'a, T: WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle::Result<&'a [T]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: operand is not contiguous")
    };
    Ok(&storage.as_slice::<T>()?[start..end])
}

/// Runs a kernel written once for `f32` and `f64` (closures cannot be
/// generic, so the body is expanded for each type): binds each `$x` to the
/// contiguous elements of CPU operand `($storage, $layout)`, all of one
/// float dtype, and wraps the `Vec` that `$body` returns as the result's
/// storage. Other dtypes are an error naming `$op`.
macro_rules! map_floats {
    ($op:expr, |$x:ident = ($s:expr, $l:expr)| $body:expr) => {{
        let op: &str = $op;
        match $s {
            ::candle::CpuStorage::F32(_) => {
                let $x = $crate::ops::contiguous_slice::<f32>($s, $l, op)?;
                ::candle::CpuStorage::F32($body)
            }
            ::candle::CpuStorage::F64(_) => {
                let $x = $crate::ops::contiguous_slice::<f64>($s, $l, op)?;
                ::candle::CpuStorage::F64($body)
            }
            _ => ::candle::bail!("{}: only f32 and f64 are supported", op),
        }
    }};
    ($op:expr, |$x:ident = ($s1:expr, $l1:expr), $y:ident = ($s2:expr, $l2:expr)| $body:expr) => {{
        let op: &str = $op;
        match ($s1, $s2) {
            (::candle::CpuStorage::F32(_), ::candle::CpuStorage::F32(_)) => {
                let $x = $crate::ops::contiguous_slice::<f32>($s1, $l1, op)?;
                let $y = $crate::ops::contiguous_slice::<f32>($s2, $l2, op)?;
                ::candle::CpuStorage::F32($body)
            }
            (::candle::CpuStorage::F64(_), ::candle::CpuStorage::F64(_)) => {
                let $x = $crate::ops::contiguous_slice::<f64>($s1, $l1, op)?;
                let $y = $crate::ops::contiguous_slice::<f64>($s2, $l2, op)?;
                ::candle::CpuStorage::F64($body)
            }
            _ => ::candle::bail!("{}: only f32 and f64 operands of one dtype are supported", op),
        }
    }};
}
pub(crate) use map_floats;

/// Helpers shared by the kernels' tests.
#[cfg(test)]
pub(crate) mod test_util {
    use candle::{DType, Tensor};
    use proptest::prelude::*;

    /// The elements of `t`, flattened, as `f64`.
    pub(crate) fn flat(t: &Tensor) -> Vec<f64> {
        t.flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    }

    /// `max|a − b| / max|b|` over the elements (the scale at least 1e-12).
    pub(crate) fn max_rel_err(a: &[f64], b: &[f64]) -> f64 {
        let scale = b.iter().fold(1e-12f64, |m, x| m.max(x.abs()));
        a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// [`max_rel_err`] of two tensors of one shape.
    pub(crate) fn rel_err(ours: &Tensor, reference: &Tensor) -> f64 {
        assert_eq!(ours.dims(), reference.dims());
        max_rel_err(&flat(ours), &flat(reference))
    }

    /// Fails the property case unless each of the value and the two
    /// gradients in `ours` is within `tol` ([`rel_err`]) of `reference`'s;
    /// `names` label the three in the message, with `case`.
    pub(crate) fn prop_close(
        ours: &(Tensor, Tensor, Tensor),
        reference: &(Tensor, Tensor, Tensor),
        names: [&str; 3],
        tol: f64,
        case: impl std::fmt::Debug,
    ) -> Result<(), TestCaseError> {
        let pairs = [
            (&ours.0, &reference.0),
            (&ours.1, &reference.1),
            (&ours.2, &reference.2),
        ];
        for (what, (a, b)) in names.into_iter().zip(pairs) {
            let err = rel_err(a, b);
            prop_assert!(err <= tol, "{what}: relative error {err:e} for {case:?}");
        }
        Ok(())
    }
}
