//! ReLU, leaky ReLU and the per-channel bias of a convolution, with
//! one-sweep backward passes.
//!
//! Candle's backward of `relu` allocates four full-size tensors
//! (`zeros_like`, `ge`, `to_dtype`, the product), candle-nn's `leaky_relu`
//! is five ops (`zeros_like`, `maximum`, `minimum`, a scale, an add), and the
//! backward of `broadcast_add` of a `[1, C, 1, 1]` bias reduces over three
//! strided dimensions, which on a `[32, 32, 120, 120]` activation was slower
//! than the convolution's own gemm. Here, with `s` the negative slope (0 for
//! ReLU):
//!
//! ```text
//! rectifier: y = x (x > 0), s·x (else),  ∂x = ∂y ⊙ ([y > 0] + s·[y ≤ 0])   (PyTorch's rule at x = 0)
//! bias:      y = x + b[c],               ∂x = ∂y,  ∂b[c] = Σ_{n, h, w} ∂y[n, c, h, w]
//! both:      y = rect(x + b[c]),         ∂x as the rectifier's,  ∂b[c] = Σ_{n, h, w} ∂x[n, c, h, w]
//! ```
//!
//! The bias may also be one per example and channel, `b[n, c]` (`∂b[n, c] =
//! Σ_{h, w} ∂x[n, c, h, w]`): a convolution's bias plus a per-example shift,
//! such as a diffusion UNet's time embedding, added in the same sweep.
//!
//! The mask is read off the output, which has the input's sign for `s ≥ 0`.
//! [`bias_relu`] and [`bias_activation`] are two ops as one graph node:
//! besides one sweep instead of two, Candle's backward then allocates
//! (`zeros_like`) and accumulates (`add`) one full-size gradient less.
//!
//! The backward kernels are differentiable in turn (`∂y ↦ ∂y ⊙ mask` is
//! its own derivative; the channel sum's derivative is a broadcast).

use super::{CpuForward, PARALLEL_MIN, fast_path, for_each_chunk, map_floats};
use candle::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, WithDType, bail};
use rayon::prelude::*;

/// Elements per rayon task in the element-wise kernels.
const CHUNK: usize = 1 << 15;

/// An element-wise activation fused into a per-channel op (a bias, a
/// normalisation).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Activation {
    /// `y = z`.
    #[default]
    Identity,
    /// `y = max(z, 0)`.
    Relu,
    /// `y = z` for `z > 0`, else `slope·z` (PyTorch's `LeakyReLU(slope)`,
    /// DCGAN's discriminator uses 0.2). The fast kernels need `slope ≥ 0`.
    LeakyRelu(f64),
}

impl Activation {
    /// The rectifier's negative slope (0 for ReLU), `None` for the identity.
    pub(crate) fn rectifier_slope(self) -> Option<f64> {
        match self {
            Self::Identity => None,
            Self::Relu => Some(0.0),
            Self::LeakyRelu(slope) => Some(slope),
        }
    }

    /// Whether the fused kernels can run it: the gradient mask is read off
    /// the output, which needs a non-negative slope.
    pub(crate) fn is_fast(self) -> bool {
        self.rectifier_slope().is_none_or(|s| s >= 0.0 && s.is_finite())
    }

    /// The activation composed from Candle's ops (other devices and dtypes).
    pub fn apply_candle(self, z: &Tensor) -> candle::Result<Tensor> {
        match self {
            Self::Identity => Ok(z.clone()),
            Self::Relu => z.relu(),
            Self::LeakyRelu(slope) => candle_nn::ops::leaky_relu(z, slope),
        }
    }
}

/// `max(v, 0)`, or `slope·v` below 0 when `LEAKY`; `!(v <= 0)` keeps NaN,
/// as PyTorch's relu does.
#[inline(always)]
pub(crate) fn rectify<T: WithDType, const LEAKY: bool>(v: T, slope: T) -> T {
    if !(v <= T::zero()) {
        v
    } else if LEAKY {
        v * slope
    } else {
        T::zero()
    }
}

/// The rectifier's derivative applied to `g`, read off its output `y`.
#[inline(always)]
pub(crate) fn rectify_grad<T: WithDType, const LEAKY: bool>(y: T, g: T, slope: T) -> T {
    if y > T::zero() {
        g
    } else if LEAKY {
        g * slope
    } else {
        T::zero()
    }
}

/// `y = rect(x)` with negative slope `slope` (0: ReLU), NaN kept.
#[derive(Clone, Copy, Debug)]
struct Rectifier {
    slope: f64,
}

/// `(y, g) → g ⊙ rect'(y)`.
#[derive(Clone, Copy, Debug)]
struct RectifierGrad {
    slope: f64,
}

fn rectify_slice<T: WithDType, const LEAKY: bool>(x: &[T], slope: f64) -> Vec<T> {
    let slope = T::from_f64(slope);
    let mut y = vec![T::zero(); x.len()];
    for_each_chunk(
        &mut y,
        CHUNK,
        x.len() >= PARALLEL_MIN,
        #[inline(always)]
        |i, y| {
            for (y, &x) in y.iter_mut().zip(&x[i * CHUNK..]) {
                *y = rectify::<T, LEAKY>(x, slope);
            }
        },
    );
    y
}

fn rectify_grad_slice<T: WithDType, const LEAKY: bool>(y: &[T], g: &[T], slope: f64) -> Vec<T> {
    let slope = T::from_f64(slope);
    let mut dx = vec![T::zero(); y.len()];
    for_each_chunk(
        &mut dx,
        CHUNK,
        y.len() >= PARALLEL_MIN,
        #[inline(always)]
        |i, dx| {
            for ((dx, &y), &g) in dx.iter_mut().zip(&y[i * CHUNK..]).zip(&g[i * CHUNK..]) {
                *dx = rectify_grad::<T, LEAKY>(y, g, slope);
            }
        },
    );
    dx
}

impl CustomOp1 for Rectifier {
    fn name(&self) -> &'static str {
        if self.slope == 0.0 {
            "deepgen-relu"
        } else {
            "deepgen-leaky-relu"
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CpuForward {
        let leaky = self.slope != 0.0;
        let out = map_floats!(self.name(), |x = (storage, layout)| if leaky {
            rectify_slice::<_, true>(x, self.slope)
        } else {
            rectify_slice::<_, false>(x, self.slope)
        });
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle::Result<Option<Tensor>> {
        Ok(Some(rectifier_grad(res, grad_res, self.slope)?))
    }
}

fn rectifier_grad(y: &Tensor, g: &Tensor, slope: f64) -> candle::Result<Tensor> {
    y.detach()
        .contiguous()?
        .apply_op2(&g.contiguous()?, RectifierGrad { slope })
}

impl CustomOp2 for RectifierGrad {
    fn name(&self) -> &'static str {
        "deepgen-rectifier-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CpuForward {
        if l1.shape() != l2.shape() {
            bail!("{}: shapes {:?} and {:?} differ", self.name(), l1.shape(), l2.shape())
        }
        let leaky = self.slope != 0.0;
        let out = map_floats!(self.name(), |y = (s1, l1), g = (s2, l2)| if leaky {
            rectify_grad_slice::<_, true>(y, g, self.slope)
        } else {
            rectify_grad_slice::<_, false>(y, g, self.slope)
        });
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
        Ok((
            None,
            g.track_op()
                .then(|| rectifier_grad(y, grad_res, self.slope))
                .transpose()?,
        ))
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
    xs.contiguous()?.apply_op1(Rectifier { slope: 0.0 })
}

/// The leaky rectifier `x` for `x > 0`, `slope·x` otherwise (PyTorch's
/// `F.leaky_relu`, gradient `slope·∂y` at exactly 0 as PyTorch's), one
/// sweep forward and backward on the CPU in `f32`/`f64` for `slope ≥ 0`;
/// elsewhere candle-nn's `leaky_relu`.
///
/// # Errors
/// Only those of the device.
pub fn leaky_relu(xs: &Tensor, slope: f64) -> candle::Result<Tensor> {
    let act = Activation::LeakyRelu(slope);
    if !fast_path(&[xs]) || !act.is_fast() {
        return act.apply_candle(xs);
    }
    xs.contiguous()?.apply_op1(Rectifier { slope })
}

/// `x + b` with `b` broadcast along dimension 1, followed by an activation
/// ([`bias_activation`]). One op for all, since they differ only in the
/// clamp and its mask in the backward pass.
#[derive(Clone, Copy, Debug)]
struct ChannelBias {
    act: Activation,
}

/// `[N, C, …] → [C]`, the sum over every dimension but 1; or, per example,
/// `[N, C, …] → [N, C]`, the sum over every dimension but 0 and 1.
#[derive(Clone, Copy, Debug)]
struct ChannelSum {
    per_example: bool,
}

/// `(n, c, inner)` of an `[N, C, …]` shape.
fn split_channels(shape: &Shape) -> candle::Result<(usize, usize, usize)> {
    let dims = shape.dims();
    if dims.len() < 2 {
        bail!("channel ops need a tensor of rank 2 or more, got {shape:?}")
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// `(bias length, inner)` of an `[N, C, …]` input after checking that
/// `bias` is `[C]` or `[N, C]`.
fn check_bias(op: &str, input: &Shape, bias: &Shape) -> candle::Result<(usize, usize)> {
    let (n, channels, inner) = split_channels(input)?;
    if bias.dims() != [channels] && bias.dims() != [n, channels] {
        bail!("{op}: bias {bias:?} does not fit input {input:?} (one per channel, or per example and channel)")
    }
    Ok((bias.elem_count(), inner))
}

/// `y = x + b[c]`, rectified when `RECT` (leaky when `LEAKY`); constants,
/// so that each variant compiles to its own loop.
fn channel_bias_slice<T: WithDType, const RECT: bool, const LEAKY: bool>(
    x: &[T],
    b: &[T],
    inner: usize,
    slope: f64,
) -> Vec<T> {
    let slope = T::from_f64(slope);
    let mut y = vec![T::zero(); x.len()];
    if inner == 0 || y.is_empty() {
        return y;
    }
    let channels = b.len();
    // One task per `[inner]` plane, `plane % channels` picks the bias (the
    // plane itself for a bias per example and channel).
    for_each_chunk(
        &mut y,
        inner,
        x.len() >= PARALLEL_MIN,
        #[inline(always)]
        |plane, y| {
            let bias = b[plane % channels];
            for (y, &x) in y.iter_mut().zip(&x[plane * inner..]) {
                *y = if RECT {
                    rectify::<T, LEAKY>(x + bias, slope)
                } else {
                    x + bias
                };
            }
        },
    );
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
        match self.act {
            Activation::Identity => "deepgen-add-channel-bias",
            Activation::Relu => "deepgen-bias-relu",
            Activation::LeakyRelu(_) => "deepgen-bias-leaky-relu",
        }
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CpuForward {
        let (_, inner) = check_bias(self.name(), l1.shape(), l2.shape())?;
        let out = map_floats!(self.name(), |x = (s1, l1), b = (s2, l2)| {
            match self.act {
                Activation::Identity => channel_bias_slice::<_, false, false>(x, b, inner, 0.0),
                Activation::Relu => channel_bias_slice::<_, true, false>(x, b, inner, 0.0),
                Activation::LeakyRelu(s) => channel_bias_slice::<_, true, true>(x, b, inner, s),
            }
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
        // ∂x = ∂y (⊙ the rectifier's mask), ∂b = Σ_{n, …} ∂x.
        let dx = match self.act.rectifier_slope() {
            Some(slope) => rectifier_grad(res, grad_res, slope)?,
            None => grad_res.clone(),
        };
        let db = bias
            .track_op()
            .then(|| channel_sum(&dx, bias.rank() == 2))
            .transpose()?;
        Ok((xs.track_op().then_some(dx), db))
    }
}

/// `Σ_{n, …} g[n, c, …]` per channel (`[C]`), or per example and channel
/// (`[N, C]`) when `per_example`: the gradient of a channel bias.
pub(crate) fn channel_sum(g: &Tensor, per_example: bool) -> candle::Result<Tensor> {
    g.contiguous()?.apply_op1(ChannelSum { per_example })
}

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "deepgen-channel-sum"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CpuForward {
        let (n, channels, inner) = split_channels(layout.shape())?;
        let (sums, shape) = if self.per_example {
            (n * channels, Shape::from((n, channels)))
        } else {
            (channels, Shape::from(channels))
        };
        let out = map_floats!(self.name(), |g = (storage, layout)| channel_sum_slice(g, sums, inner));
        Ok((out, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle::Result<Option<Tensor>> {
        let mut dims = vec![1; arg.rank()];
        dims[1] = arg.dim(1)?;
        if self.per_example {
            dims[0] = arg.dim(0)?;
        }
        Ok(Some(grad_res.reshape(dims)?.broadcast_as(arg.shape())?))
    }
}

/// `act(xs + bias)` with `bias` `[C]` added along dimension 1 of `xs`
/// `[N, C, …]` (or `[N, C]`, one bias per example and channel): a
/// convolution's (or linear layer's) bias and its activation in one sweep
/// forward and one backward ([`add_channel_bias`] and [`bias_relu`] are its
/// two commonest cases).
///
/// Same numbers as the two ops composed (rectifier gradients at exactly 0
/// as PyTorch's), with one graph node instead of two, so Candle's backward
/// allocates and accumulates one full-size gradient less. Other devices and
/// dtypes, and negative slopes, use Candle's `broadcast_add` and the
/// activation composed from Candle's ops.
///
/// # Errors
/// A tensor of rank below 2, a bias that is neither `[C]` nor `[N, C]`, or
/// mismatched dtypes or devices.
pub fn bias_activation(xs: &Tensor, bias: &Tensor, act: Activation) -> candle::Result<Tensor> {
    check_bias("bias_activation", xs.shape(), bias.shape())?;
    if fast_path(&[xs, bias]) && act.is_fast() {
        return xs.contiguous()?.apply_op2(&bias.contiguous()?, ChannelBias { act });
    }
    let mut dims = vec![1; xs.rank()];
    let from = 2 - bias.rank();
    dims[from..2].copy_from_slice(&xs.dims()[from..2]);
    act.apply_candle(&xs.broadcast_add(&bias.reshape(dims)?)?)
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
    bias_activation(xs, bias, Activation::Relu)
}

/// `xs + bias` with `bias` `[C]` added along dimension 1 of `xs`
/// `[N, C, …]`: the bias of a convolution (`[N, C, H, W]`) or of a linear
/// layer (`[N, C]`). A bias `[N, C]` is one per example and channel (a
/// convolution's bias plus a per-example shift, e.g. a time embedding).
///
/// Same numbers as `xs.broadcast_add(&bias.reshape((1, C, 1, 1))?)` (or
/// `(N, C, 1, 1)`); the bias gradient `Σ_{n, h, w} ∂y[n, c, h, w]` is
/// summed per plane (in `f64`) instead of by Candle's strided reduction.
/// Other devices and dtypes use Candle's `broadcast_add`.
///
/// # Errors
/// A tensor of rank below 2, a bias that is neither `[C]` nor `[N, C]`, or
/// mismatched dtypes or devices.
pub fn add_channel_bias(xs: &Tensor, bias: &Tensor) -> candle::Result<Tensor> {
    bias_activation(xs, bias, Activation::Identity)
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
    fn check_bias_act(dims: Vec<usize>, seed: u64, dtype: DType, act: Activation) -> Result<(), TestCaseError> {
        check_bias_act_of(dims, seed, dtype, act, false)
    }

    /// As [`check_bias_act`], with a bias `[N, C]` when `per_example`.
    fn check_bias_act_of(
        dims: Vec<usize>,
        seed: u64,
        dtype: DType,
        act: Activation,
        per_example: bool,
    ) -> Result<(), TestCaseError> {
        let draw = |seed: u64, shape: Vec<usize>| {
            Var::from_tensor(
                &randn(&mut rng_from_seed(seed), shape, &Device::Cpu)
                    .and_then(|t| t.to_dtype(dtype))
                    .unwrap(),
            )
            .unwrap()
        };
        let xs = draw(seed, dims.clone());
        let bias_dims = if per_example { dims[..2].to_vec() } else { vec![dims[1]] };
        let bias = draw(seed ^ 1, bias_dims.clone());
        let run = |ours: Option<bool>| -> candle::Result<(Tensor, Tensor, Tensor)> {
            let separate = |z: &Tensor| match act {
                Activation::Identity => Ok(z.clone()),
                Activation::Relu => relu(z),
                Activation::LeakyRelu(slope) => leaky_relu(z, slope),
            };
            let ys = match ours {
                Some(false) => separate(&add_channel_bias(&xs, &bias)?)?,
                Some(true) if act == Activation::Relu => bias_relu(&xs, &bias)?,
                Some(true) => bias_activation(&xs, &bias, act)?,
                None => {
                    let mut shape = vec![1; dims.len()];
                    shape[2 - bias_dims.len()..2].copy_from_slice(&bias_dims);
                    act.apply_candle(&xs.broadcast_add(&bias.reshape(shape)?)?)?
                }
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
            check_bias_act(dims, seed, DType::F64, Activation::Relu)?;
        }

        /// The leaky rectifier (any slope in [0, 1), DCGAN's 0.2 among them)
        /// and the plain bias against candle-nn's `leaky_relu` composition.
        #[test]
        fn prop_bias_leaky_relu_matches_candle(
            dims in prop::collection::vec(1..=6usize, 2..=4), seed in any::<u64>(), slope in 0.0..1.0f64, leaky in any::<bool>(),
        ) {
            let act = if leaky { Activation::LeakyRelu(slope) } else { Activation::Identity };
            check_bias_act(dims, seed, DType::F64, act)?;
        }

        /// A bias `[N, C]`, one per example and channel, against Candle's
        /// `broadcast_add` of it reshaped to `[N, C, 1, …]`.
        #[test]
        fn prop_bias_per_example_matches_candle(
            dims in prop::collection::vec(1..=6usize, 2..=4), seed in any::<u64>(), act in 0..3usize,
        ) {
            let act = [Activation::Identity, Activation::Relu, Activation::LeakyRelu(0.2)][act];
            check_bias_act_of(dims, seed, DType::F64, act, true)?;
        }
    }

    /// Inputs above `PARALLEL_MIN` take the parallel paths.
    #[test]
    fn large_inputs_match_too() {
        check_bias_act(vec![3, 5, 150, 130], 9, DType::F32, Activation::Relu).unwrap();
        check_bias_act(vec![3, 5, 150, 130], 9, DType::F32, Activation::LeakyRelu(0.2)).unwrap();
        check_bias_act_of(vec![3, 5, 150, 130], 9, DType::F32, Activation::Identity, true).unwrap();
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
    fn leaky_relu_follows_pytorch_at_zero_and_keeps_nan() -> candle::Result<()> {
        let xs = Var::from_tensor(&Tensor::new(
            &[-1f32, 0., 2., f32::NAN, f32::NEG_INFINITY],
            &Device::Cpu,
        )?)?;
        let ys = leaky_relu(&xs, 0.2)?;
        let values = ys.to_vec1::<f32>()?;
        assert_eq!(&values[..3], [-0.2, 0.0, 2.0]);
        assert!(values[3].is_nan());
        assert_eq!(values[4], f32::NEG_INFINITY);
        let grad = ys.sum_all()?.backward()?.get(&xs).unwrap().to_vec1::<f32>()?;
        // torch.nn.functional.leaky_relu's backward: 0.2 at x = 0.
        assert_eq!(&grad[..3], [0.2, 0.2, 1.0]);
        assert_eq!(
            relu(&Tensor::new(&[f32::NEG_INFINITY], &Device::Cpu)?)?.to_vec1::<f32>()?,
            [0.0]
        );
        Ok(())
    }

    #[test]
    fn backward_kernels_are_differentiable() -> candle::Result<()> {
        // ∂/∂g ⟨rect'(y) g, D⟩ = rect'(y) D; ∂/∂g ⟨Σ_c g, D⟩ = D broadcast.
        let ys = relu(&randn(&mut rng_from_seed(1), (2, 3, 4), &Device::Cpu)?)?;
        let g = Var::from_tensor(&randn(&mut rng_from_seed(2), (2, 3, 4), &Device::Cpu)?)?;
        let d = randn(&mut rng_from_seed(3), (2, 3, 4), &Device::Cpu)?;
        let grads = (rectifier_grad(&ys, &g, 0.0)? * &d)?.sum_all()?.backward()?;
        assert!(rel_err(grads.get(&g).unwrap(), &rectifier_grad(&ys, &d, 0.0)?) < 1e-7);
        let sums = g.as_tensor().apply_op1(ChannelSum { per_example: false })?;
        let weights = Tensor::new(&[1f32, 2., 3.], &Device::Cpu)?;
        let grads = (sums * &weights)?.sum_all()?.backward()?;
        let expected = weights.reshape((1, 3, 1))?.broadcast_as((2, 3, 4))?;
        assert!(rel_err(grads.get(&g).unwrap(), &expected) < 1e-7);
        let sums = g.as_tensor().apply_op1(ChannelSum { per_example: true })?;
        let weights = Tensor::new(&[[1f32, 2., 3.], [4., 5., 6.]], &Device::Cpu)?;
        let grads = (sums * &weights)?.sum_all()?.backward()?;
        let expected = weights.reshape((2, 3, 1))?.broadcast_as((2, 3, 4))?;
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
        // Per example and channel: `[N, C]` fits, `[C, N]` does not.
        assert!(add_channel_bias(&xs, &Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()).is_ok());
        assert!(add_channel_bias(&xs, &Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap()).is_err());
    }
}
