//! ReLU and the per-channel bias of a convolution, with one-sweep backward
//! passes.
//!
//! Candle's backward of `relu` allocates four full-size tensors
//! (`zeros_like`, `ge`, `to_dtype`, the product) and that of
//! `broadcast_add` of a `[1, C, 1, 1]` bias reduces over three strided
//! dimensions, which on a `[32, 32, 120, 120]` activation was slower than the
//! convolution's own gemm. Here:
//!
//! ```text
//! relu:  y = max(x, 0),        ∂x = ∂y ⊙ [y > 0]           (PyTorch's rule: 0 at x = 0)
//! bias:  y = x + b[c],         ∂x = ∂y,  ∂b[c] = Σ_{n, h, w} ∂y[n, c, h, w]
//! both:  y = max(x + b[c], 0), ∂x = ∂y ⊙ [y > 0],  ∂b[c] = Σ_{n, h, w} ∂x[n, c, h, w]
//! ```
//!
//! [`bias_relu`] is the two as one graph node: besides one sweep instead of
//! two, Candle's backward then allocates (`zeros_like`) and accumulates
//! (`add`) one full-size gradient less.
//!
//! The backward kernels are differentiable in turn (`∂y ↦ ∂y ⊙ [y > 0]` is
//! its own derivative; the channel sum's derivative is a broadcast).

use super::{CpuForward, PARALLEL_MIN, fast_path, for_each_chunk, map_floats};
use candle::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, WithDType, bail};
use rayon::prelude::*;

/// Elements per rayon task in the element-wise kernels.
const CHUNK: usize = 1 << 15;

/// `max(v, 0)`; `!(v <= 0)` keeps NaN, as PyTorch's relu does.
#[inline(always)]
fn relu_value<T: WithDType>(v: T) -> T {
    if !(v <= T::zero()) { v } else { T::zero() }
}

/// `y = max(x, 0)`, NaN kept.
#[derive(Clone, Copy, Debug)]
struct Relu;

/// `(y, g) → g ⊙ [y > 0]`.
#[derive(Clone, Copy, Debug)]
struct ReluGrad;

fn relu_slice<T: WithDType>(x: &[T]) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    for_each_chunk(&mut y, CHUNK, x.len() >= PARALLEL_MIN, |i, y| {
        for (y, &x) in y.iter_mut().zip(&x[i * CHUNK..]) {
            *y = relu_value(x);
        }
    });
    y
}

fn relu_grad_slice<T: WithDType>(y: &[T], g: &[T]) -> Vec<T> {
    let mut dx = vec![T::zero(); y.len()];
    for_each_chunk(&mut dx, CHUNK, y.len() >= PARALLEL_MIN, |i, dx| {
        for ((dx, &y), &g) in dx.iter_mut().zip(&y[i * CHUNK..]).zip(&g[i * CHUNK..]) {
            *dx = if y > T::zero() { g } else { T::zero() };
        }
    });
    dx
}

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "deepgen-relu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CpuForward {
        let out = map_floats!(self.name(), |x = (storage, layout)| relu_slice(x));
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle::Result<Option<Tensor>> {
        Ok(Some(relu_grad(res, grad_res)?))
    }
}

fn relu_grad(y: &Tensor, g: &Tensor) -> candle::Result<Tensor> {
    y.detach().contiguous()?.apply_op2(&g.contiguous()?, ReluGrad)
}

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "deepgen-relu-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CpuForward {
        if l1.shape() != l2.shape() {
            bail!("{}: shapes {:?} and {:?} differ", self.name(), l1.shape(), l2.shape())
        }
        let out = map_floats!(self.name(), |y = (s1, l1), g = (s2, l2)| relu_grad_slice(y, g));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        y: &Tensor,
        g: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        // Linear in `g` with the same mask; the mask has zero derivative a.e.
        Ok((None, g.track_op().then(|| relu_grad(y, grad_res)).transpose()?))
    }
}

/// The rectified linear unit `max(x, 0)` of any tensor.
///
/// Its gradient is `∂y ⊙ [x > 0]` (PyTorch's convention; Candle's `relu`
/// passes the gradient at exactly 0 too). On the CPU in `f32`/`f64` the
/// backward pass is one sweep; elsewhere this calls Candle's `relu`.
///
/// # Errors
/// Only those of the device.
pub fn relu(xs: &Tensor) -> candle::Result<Tensor> {
    if !fast_path(&[xs]) {
        return xs.relu();
    }
    xs.contiguous()?.apply_op1(Relu)
}

/// `x + b` with `b` broadcast along dimension 1, followed by `max(·, 0)`
/// when `relu` ([`bias_relu`]; else [`add_channel_bias`]). One op for both,
/// since they differ only in that clamp and its mask in the backward pass.
#[derive(Clone, Copy, Debug)]
struct ChannelBias {
    relu: bool,
}

/// `[N, C, …] → [C]`, the sum over every dimension but 1.
#[derive(Clone, Copy, Debug)]
struct ChannelSum;

/// `(n, c, inner)` of an `[N, C, …]` shape.
fn split_channels(shape: &Shape) -> candle::Result<(usize, usize, usize)> {
    let dims = shape.dims();
    if dims.len() < 2 {
        bail!("channel ops need a tensor of rank 2 or more, got {shape:?}")
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// `(c, inner)` of an `[N, C, …]` input after checking that `bias` is `[C]`.
fn check_bias(op: &str, input: &Shape, bias: &Shape) -> candle::Result<(usize, usize)> {
    let (_, channels, inner) = split_channels(input)?;
    if bias.dims() != [channels] {
        bail!("{op}: bias {bias:?} does not fit input {input:?}")
    }
    Ok((channels, inner))
}

/// `y = x + b[c]`, and `max(y, 0)` when `RELU` (a constant, so that each
/// variant compiles to its own loop).
fn channel_bias_slice<T: WithDType, const RELU: bool>(x: &[T], b: &[T], inner: usize) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    if inner == 0 || y.is_empty() {
        return y;
    }
    let channels = b.len();
    // One task per `[inner]` plane, `plane % channels` picks the bias.
    for_each_chunk(&mut y, inner, x.len() >= PARALLEL_MIN, |plane, y| {
        let bias = b[plane % channels];
        for (y, &x) in y.iter_mut().zip(&x[plane * inner..]) {
            *y = if RELU { relu_value(x + bias) } else { x + bias };
        }
    });
    y
}

fn channel_sum_slice<T: WithDType>(g: &[T], channels: usize, inner: usize) -> Vec<T> {
    if inner == 0 || g.is_empty() {
        return vec![T::zero(); channels];
    }
    let plane_sum = |plane: &[T]| plane.iter().map(|v| v.to_f64()).sum::<f64>();
    let plane_sums: Vec<f64> = if g.len() >= PARALLEL_MIN {
        g.par_chunks(inner).map(plane_sum).collect()
    } else {
        g.chunks(inner).map(plane_sum).collect()
    };
    let mut sums = vec![0f64; channels];
    for (i, s) in plane_sums.iter().enumerate() {
        sums[i % channels] += s;
    }
    sums.into_iter().map(T::from_f64).collect()
}

impl CustomOp2 for ChannelBias {
    fn name(&self) -> &'static str {
        if self.relu {
            "deepgen-bias-relu"
        } else {
            "deepgen-add-channel-bias"
        }
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CpuForward {
        let (_, inner) = check_bias(self.name(), l1.shape(), l2.shape())?;
        let out = map_floats!(self.name(), |x = (s1, l1), b = (s2, l2)| if self.relu {
            channel_bias_slice::<_, true>(x, b, inner)
        } else {
            channel_bias_slice::<_, false>(x, b, inner)
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        // ∂x = ∂y (⊙ [y > 0] with the relu), ∂b = Σ_{n, …} ∂x.
        let dx = if self.relu {
            relu_grad(res, grad_res)?
        } else {
            grad_res.clone()
        };
        let db = bias
            .track_op()
            .then(|| dx.contiguous()?.apply_op1(ChannelSum))
            .transpose()?;
        Ok((xs.track_op().then_some(dx), db))
    }
}

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "deepgen-channel-sum"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CpuForward {
        let (_, channels, inner) = split_channels(layout.shape())?;
        let out = map_floats!(self.name(), |g = (storage, layout)| channel_sum_slice(g, channels, inner));
        Ok((out, Shape::from(channels)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle::Result<Option<Tensor>> {
        let mut dims = vec![1; arg.rank()];
        dims[1] = arg.dim(1)?;
        Ok(Some(grad_res.reshape(dims)?.broadcast_as(arg.shape())?))
    }
}

/// [`add_channel_bias`] (`relu` false) or [`bias_relu`] (true), reported
/// as `op`: the fused op on the CPU in `f32`/`f64`, else Candle's
/// `broadcast_add` (and `relu`).
fn channel_bias(op: &str, xs: &Tensor, bias: &Tensor, relu: bool) -> candle::Result<Tensor> {
    let (channels, _) = check_bias(op, xs.shape(), bias.shape())?;
    if fast_path(&[xs, bias]) {
        return xs.contiguous()?.apply_op2(&bias.contiguous()?, ChannelBias { relu });
    }
    let mut dims = vec![1; xs.rank()];
    dims[1] = channels;
    let ys = xs.broadcast_add(&bias.reshape(dims)?)?;
    if relu { ys.relu() } else { Ok(ys) }
}

/// `max(xs + bias, 0)` with `bias` `[C]` added along dimension 1 of `xs`
/// `[N, C, …]`: a convolution's (or linear layer's) bias and ReLU in one
/// sweep forward and one backward.
///
/// Same numbers as `relu(&add_channel_bias(xs, bias)?)` (gradient 0 at
/// exactly 0, as PyTorch), with one graph node instead of two, so Candle's
/// backward allocates and accumulates one full-size gradient less. Other
/// devices and dtypes use Candle's `broadcast_add` and `relu`.
///
/// # Errors
/// A tensor of rank below 2, a bias whose length is not `C`, or mismatched
/// dtypes or devices.
pub fn bias_relu(xs: &Tensor, bias: &Tensor) -> candle::Result<Tensor> {
    channel_bias("bias_relu", xs, bias, true)
}

/// `xs + bias` with `bias` `[C]` added along dimension 1 of `xs`
/// `[N, C, …]`: the bias of a convolution (`[N, C, H, W]`) or of a linear
/// layer (`[N, C]`).
///
/// Same numbers as `xs.broadcast_add(&bias.reshape((1, C, 1, 1))?)`; the
/// bias gradient `Σ_{n, h, w} ∂y[n, c, h, w]` is summed per plane (in `f64`)
/// instead of by Candle's strided reduction. Other devices and dtypes use
/// Candle's `broadcast_add`.
///
/// # Errors
/// A tensor of rank below 2, a bias whose length is not `C`, or mismatched
/// dtypes or devices.
pub fn add_channel_bias(xs: &Tensor, bias: &Tensor) -> candle::Result<Tensor> {
    channel_bias("add_channel_bias", xs, bias, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{prop_close, rel_err};
    use crate::rng::{randn, rng_from_seed};
    use candle::{DType, Device, Var};
    use proptest::prelude::*;

    /// Largest allowed relative error against Candle's ops (f32 sums in a
    /// different order for the bias gradient).
    const REL_TOL: f64 = 1e-5;

    /// The property runs in f64: with one channel `∂b` is a single sum of
    /// random-sign terms, and when it nearly cancels an f32 reference is off
    /// by more than the tolerance (seen: relative error 8.5e-5 for dims
    /// `[5, 1, 4]`). The kernels are generic, so the f32 path is the same
    /// code; `large_inputs_match_too` runs it.
    fn check_bias_relu(dims: Vec<usize>, seed: u64, dtype: DType) -> Result<(), TestCaseError> {
        let draw = |seed: u64, shape: Vec<usize>| {
            Var::from_tensor(
                &randn(&mut rng_from_seed(seed), shape, &Device::Cpu)
                    .and_then(|t| t.to_dtype(dtype))
                    .unwrap(),
            )
            .unwrap()
        };
        let xs = draw(seed, dims.clone());
        let bias = draw(seed ^ 1, vec![dims[1]]);
        let run = |ours: Option<bool>| -> candle::Result<(Tensor, Tensor, Tensor)> {
            let ys = if ours == Some(false) {
                relu(&add_channel_bias(&xs, &bias)?)?
            } else if ours == Some(true) {
                bias_relu(&xs, &bias)?
            } else {
                let mut shape = vec![1; dims.len()];
                shape[1] = dims[1];
                xs.broadcast_add(&bias.reshape(shape)?)?.relu()?
            };
            let r = randn(&mut rng_from_seed(seed ^ 2), ys.shape(), &Device::Cpu)?.to_dtype(dtype)?;
            let grads = (&ys * &r)?.sum_all()?.backward()?;
            Ok((ys, grads.get(&xs).unwrap().clone(), grads.get(&bias).unwrap().clone()))
        };
        let reference = run(None).unwrap();
        for ours in [run(Some(false)).unwrap(), run(Some(true)).unwrap()] {
            prop_close(&ours, &reference, ["value", "∂x", "∂b"], REL_TOL, &dims)?;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn prop_bias_relu_and_their_fusion_match_candle(dims in prop::collection::vec(1..=6usize, 2..=4), seed in any::<u64>()) {
            check_bias_relu(dims, seed, DType::F64)?;
        }
    }

    /// Inputs above `PARALLEL_MIN` take the parallel paths.
    #[test]
    fn large_inputs_match_too() {
        check_bias_relu(vec![3, 5, 150, 130], 9, DType::F32).unwrap();
    }

    #[test]
    fn relu_follows_pytorch_at_zero_and_keeps_nan() -> candle::Result<()> {
        let xs = Var::from_tensor(&Tensor::new(&[-1f32, 0., 2., f32::NAN], &Device::Cpu)?)?;
        let ys = relu(&xs)?;
        let values = ys.to_vec1::<f32>()?;
        assert_eq!(&values[..3], [0.0, 0.0, 2.0]);
        assert!(values[3].is_nan());
        let grad = ys.sum_all()?.backward()?.get(&xs).unwrap().to_vec1::<f32>()?;
        assert_eq!(&grad[..3], [0.0, 0.0, 1.0]);
        Ok(())
    }

    #[test]
    fn backward_kernels_are_differentiable() -> candle::Result<()> {
        // ∂/∂g ⟨relu_grad(y, g), D⟩ = relu_grad(y, D); ∂/∂g ⟨Σ_c g, D⟩ = D broadcast.
        let ys = relu(&randn(&mut rng_from_seed(1), (2, 3, 4), &Device::Cpu)?)?;
        let g = Var::from_tensor(&randn(&mut rng_from_seed(2), (2, 3, 4), &Device::Cpu)?)?;
        let d = randn(&mut rng_from_seed(3), (2, 3, 4), &Device::Cpu)?;
        let grads = (relu_grad(&ys, &g)? * &d)?.sum_all()?.backward()?;
        assert!(rel_err(grads.get(&g).unwrap(), &relu_grad(&ys, &d)?) < 1e-7);
        let sums = g.as_tensor().apply_op1(ChannelSum)?;
        let weights = Tensor::new(&[1f32, 2., 3.], &Device::Cpu)?;
        let grads = (sums * &weights)?.sum_all()?.backward()?;
        let expected = weights.reshape((1, 3, 1))?.broadcast_as((2, 3, 4))?;
        assert!(rel_err(grads.get(&g).unwrap(), &expected) < 1e-7);
        Ok(())
    }

    #[test]
    fn bad_bias_is_an_error() {
        let xs = Tensor::zeros((2, 3, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(add_channel_bias(&xs, &Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap()).is_err());
        assert!(
            add_channel_bias(
                &xs.flatten_all().unwrap(),
                &Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap()
            )
            .is_err()
        );
        assert!(bias_relu(&xs, &Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap()).is_err());
    }
}
