//! The layers a spec builds: convolution, transposed convolution, pooling.
//!
//! Every convolution of this crate, forward or transposed, goes through the
//! two private functions `conv2d` and `conv_transpose2d` at the top of this
//! file. They call deepgen-core's [`ops`](deepgen_core::ops) (im2col + gemm
//! custom ops on the CPU, Candle's own ops elsewhere), as do pooling, ReLU
//! and the per-channel bias: Candle 0.11's CPU backward passes for these made
//! the seed network's training step about 25 times slower than PyTorch's,
//! and its max-pooling gradient is wrong (see [`max_pool`]).
//!
//! Initialisation follows PyTorch's defaults (`nn.Conv2d`, `nn.ConvTranspose2d`,
//! `nn.Linear`): weights and biases uniform on `±1/√fan_in`, where `fan_in` is
//! `C·K·K` for a convolution and `N·K·K` for a transposed one (PyTorch computes
//! it from dimension 1 of the weight, `[C, N, K, K]`).

use crate::spec::Activation;
use candle::{Module, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

/// The one place this crate runs a convolution: cross-correlation of `xs`
/// `[N, C, H, W]` with `kernel` `[F, C, K, K]`, zero padding `padding`, stride
/// `stride`, no dilation, one group.
///
/// Two shapes make Candle's conv2d backward (candle-core 0.11.1,
/// `backprop.rs`, `Op::Conv2D`) fail; core's op falls back to it on GPUs and
/// for dtypes other than `f32`/`f64`, so they are rewritten here into
/// equivalent convolutions it handles:
/// - Padding with `2p ≥ K`: the size of the input gradient,
///   `(H' − 1)·s + K − 2p`, is computed in unsigned arithmetic and can go
///   below zero (an overflow panic in debug builds, garbage in release).
///   Padding the input explicitly and convolving with `p = 0` gives the same
///   output.
/// - `(H + 2p − K) mod s ≠ (W + 2p − K) mod s`: the transposed
///   convolution's output padding is taken from the height alone, so the
///   input gradient gets the wrong width (a shape-mismatch error). Padding the
///   side with the smaller remainder with zeros at its far end, up to the
///   other remainder (less than `s`, so no new window fits), makes the two
///   equal without changing the output.
pub(crate) fn conv2d(xs: &Tensor, kernel: &Tensor, padding: usize, stride: usize) -> candle::Result<Tensor> {
    let k = kernel.dim(2)?;
    let (xs, padding) = if padding > 0 && 2 * padding >= k {
        let padded = xs
            .pad_with_zeros(2, padding, padding)?
            .pad_with_zeros(3, padding, padding)?;
        (padded, 0)
    } else {
        (xs.clone(), padding)
    };
    let (_, _, h, w) = xs.dims4()?;
    let remainder = |n: usize| (n + 2 * padding).checked_sub(k).map(|r| r % stride);
    let xs = match (remainder(h), remainder(w)) {
        (Some(r_h), Some(r_w)) if r_h > r_w => xs.pad_with_zeros(3, 0, r_h - r_w)?,
        (Some(r_h), Some(r_w)) if r_w > r_h => xs.pad_with_zeros(2, 0, r_w - r_h)?,
        _ => xs,
    };
    deepgen_core::ops::conv2d(&xs, kernel, padding, stride, 1)
}

/// The one place this crate runs a transposed convolution: `xs` `[N, C, H, W]`,
/// `kernel` `[C, F, K, K]`, output side `(H − 1)·stride − 2·padding + K +
/// output_padding`, no dilation.
pub(crate) fn conv_transpose2d(
    xs: &Tensor,
    kernel: &Tensor,
    padding: usize,
    output_padding: usize,
    stride: usize,
) -> candle::Result<Tensor> {
    deepgen_core::ops::conv_transpose2d(xs, kernel, padding, output_padding, stride, 1)
}

fn uniform(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// A 2-D convolution with bias: `CONV-K-N-sS-pP`.
#[derive(Clone, Debug)]
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv {
    /// A convolution from ready-made tensors: `weight` `[F, C, K, K]`, `bias` `[F]`.
    pub fn new(weight: Tensor, bias: Tensor, stride: usize, padding: usize) -> Self {
        Conv {
            weight,
            bias,
            stride,
            padding,
        }
    }

    /// The kernel, `[F, C, K, K]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `[F]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

/// A convolution from `in_channels` to `filters` channels with a `kernel ×
/// kernel` window; parameters `weight` and `bias` under `vb`.
pub fn conv(
    in_channels: usize,
    filters: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    vb: VarBuilder,
) -> candle::Result<Conv> {
    let init = uniform(in_channels * kernel * kernel);
    let weight = vb.get_with_hints((filters, in_channels, kernel, kernel), "weight", init)?;
    let bias = vb.get_with_hints(filters, "bias", init)?;
    Ok(Conv::new(weight, bias, stride, padding))
}

impl Conv {
    /// The convolution followed by `activation`; with ReLU the bias and the
    /// ReLU run as one fused op.
    pub fn forward_activated(&self, xs: &Tensor, activation: Activation) -> candle::Result<Tensor> {
        let ys = conv2d(xs, &self.weight, self.padding, self.stride)?;
        bias_then(&ys, &self.bias, activation)
    }
}

impl Module for Conv {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        self.forward_activated(xs, Activation::Linear)
    }
}

/// `activation(ys + bias)` with the bias along dimension 1.
fn bias_then(ys: &Tensor, bias: &Tensor, activation: Activation) -> candle::Result<Tensor> {
    match activation {
        Activation::Relu => deepgen_core::ops::bias_relu(ys, bias),
        other => other.apply(&deepgen_core::ops::add_channel_bias(ys, bias)?),
    }
}

/// A 2-D transposed convolution with bias: `CONVT-K-N-sS-pP`, the adjoint of
/// [`Conv`] with the same kernel, stride and padding (see [`crate::transposed`]).
#[derive(Clone, Debug)]
pub struct ConvTranspose {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl ConvTranspose {
    /// A transposed convolution from ready-made tensors: `weight` `[C, F, K, K]`
    /// (PyTorch's layout), `bias` `[F]`.
    pub fn new(weight: Tensor, bias: Tensor, stride: usize, padding: usize) -> Self {
        ConvTranspose {
            weight,
            bias,
            stride,
            padding,
        }
    }

    /// The kernel, `[C, F, K, K]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `[F]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

/// A transposed convolution from `in_channels` to `filters` channels;
/// parameters `weight` and `bias` under `vb`.
pub fn conv_transpose(
    in_channels: usize,
    filters: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    vb: VarBuilder,
) -> candle::Result<ConvTranspose> {
    let init = uniform(filters * kernel * kernel);
    let weight = vb.get_with_hints((in_channels, filters, kernel, kernel), "weight", init)?;
    let bias = vb.get_with_hints(filters, "bias", init)?;
    Ok(ConvTranspose::new(weight, bias, stride, padding))
}

impl ConvTranspose {
    /// The transposed convolution followed by `activation`; with ReLU the
    /// bias and the ReLU run as one fused op.
    pub fn forward_activated(&self, xs: &Tensor, activation: Activation) -> candle::Result<Tensor> {
        let ys = conv_transpose2d(xs, &self.weight, self.padding, 0, self.stride)?;
        bias_then(&ys, &self.bias, activation)
    }
}

impl Module for ConvTranspose {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        self.forward_activated(xs, Activation::Linear)
    }
}

/// A fully connected layer `D → N` with PyTorch's initialisation; parameters
/// `weight` `[N, D]` and `bias` `[N]` under `vb`.
pub fn fc(in_features: usize, units: usize, vb: VarBuilder) -> candle::Result<Linear> {
    let init = uniform(in_features);
    let weight = vb.get_with_hints((units, in_features), "weight", init)?;
    let bias = vb.get_with_hints(units, "bias", init)?;
    Ok(Linear::new(weight, Some(bias)))
}

/// Cuts `[N, C, H, W]` to `[N, C, ⌊H/k⌋·k, ⌊W/k⌋·k]`: the rows and columns a
/// stride-`k` window never reaches, so pooling gives the same values, and
/// Candle's average-pooling backward (which upsamples the gradient to the
/// full input size) puts the gradient in the right place when `k` does not
/// divide `H` or `W`.
fn crop_to_multiple(xs: &Tensor, k: usize) -> candle::Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    let (h_used, w_used) = (h / k * k, w / k * k);
    if (h_used, w_used) == (h, w) {
        Ok(xs.clone())
    } else {
        xs.narrow(2, 0, h_used)?.narrow(3, 0, w_used)?.contiguous()
    }
}

/// `k×k` max pooling with stride `k` on `[N, C, H, W]` (rows and columns no
/// window reaches are dropped, as PyTorch does).
///
/// This is deepgen-core's `max_pool2d`, whose gradient goes to the first
/// maximum of each window, as PyTorch's. Candle's own `max_pool2d` has the
/// same forward values, but its backward pass (candle-core 0.11.1,
/// `backprop.rs`, `Op::MaxPool2D`) multiplies the upstream gradient by the
/// fraction of maxima in the window where it should divide by their count:
/// a unique maximum gets `1/k²` of its gradient (a quarter for `POOL-2`), so
/// every layer below a pooling layer would learn from a gradient scaled down
/// by `k²` per pooling layer.
pub fn max_pool(xs: &Tensor, k: usize) -> candle::Result<Tensor> {
    deepgen_core::ops::max_pool2d(&crop_to_multiple(xs, k)?, k)
}

/// `k×k` average pooling with stride `k` on `[N, C, H, W]`.
pub fn avg_pool(xs: &Tensor, k: usize) -> candle::Result<Tensor> {
    crop_to_multiple(xs, k)?.avg_pool2d(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device, Var};

    #[test]
    fn pooling_gradient_is_right_when_the_window_does_not_divide_the_input() -> candle::Result<()> {
        // A 1×1×5×5 ramp x = 0..25. With k = 2 the windows cover rows and
        // columns 0..4; max pooling picks x[1,1] = 6, x[1,3] = 8, x[3,1] = 16,
        // x[3,3] = 18, so d(sum)/dx is 1 exactly there and 0 elsewhere
        // (row and column 4 included).
        let x = Var::from_tensor(&Tensor::arange(0f32, 25.0, &Device::Cpu)?.reshape((1, 1, 5, 5))?)?;
        let pooled = max_pool(x.as_tensor(), 2)?;
        assert_eq!(pooled.flatten_all()?.to_vec1::<f32>()?, [6.0, 8.0, 16.0, 18.0]);
        let grads = pooled.sum_all()?.backward()?;
        let g = grads.get(&x).map(|g| g.flatten_all()?.to_vec1::<f32>()).transpose()?;
        let mut expected = vec![0f32; 25];
        for i in [6, 8, 16, 18] {
            expected[i] = 1.0;
        }
        assert_eq!(g, Some(expected));

        // Average pooling: each used cell gets 1/4, row and column 4 get 0.
        let avg = avg_pool(x.as_tensor(), 2)?;
        assert_eq!(avg.flatten_all()?.to_vec1::<f32>()?, [3.0, 5.0, 13.0, 15.0]);
        let grads = avg.sum_all()?.backward()?;
        let g = grads
            .get(&x)
            .map(|g| g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
            .transpose()?;
        let expected: Vec<f32> = (0..25)
            .map(|i| if i % 5 < 4 && i / 5 < 4 { 0.25 } else { 0.0 })
            .collect();
        assert_eq!(g, Some(expected));
        Ok(())
    }

    #[test]
    fn max_pool_matches_candle_forward() -> candle::Result<()> {
        let xs = deepgen_core::rng::randn(&mut deepgen_core::rng_from_seed(1), (2, 3, 8, 6), &Device::Cpu)?;
        for k in [1, 2, 3] {
            let ours = max_pool(&xs, k)?.flatten_all()?.to_vec1::<f32>()?;
            let cropped = crop_to_multiple(&xs, k)?;
            let theirs = cropped.max_pool2d(k)?.flatten_all()?.to_vec1::<f32>()?;
            assert_eq!(ours, theirs, "k = {k}");
        }
        Ok(())
    }

    #[test]
    fn fused_bias_and_activation_match_the_separate_ops() -> candle::Result<()> {
        let mut rng = deepgen_core::rng_from_seed(2);
        let dev = &Device::Cpu;
        let xs = deepgen_core::rng::randn(&mut rng, (2, 3, 7, 7), dev)?;
        let layer = Conv::new(
            deepgen_core::rng::randn(&mut rng, (4, 3, 3, 3), dev)?,
            deepgen_core::rng::randn(&mut rng, 4, dev)?,
            2,
            1,
        );
        let plain = layer.forward(&xs)?;
        for activation in Activation::ALL {
            let fused = layer
                .forward_activated(&xs, activation)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let separate = activation.apply(&plain)?.flatten_all()?.to_vec1::<f32>()?;
            assert_eq!(fused, separate, "{activation}");
        }
        Ok(())
    }

    #[test]
    fn conv_adds_its_bias_per_channel() -> candle::Result<()> {
        // A 1×1 kernel of ones on a 2-channel input sums the channels; the bias
        // of filter f adds f + 1. Input channel 0 is all 1, channel 1 all 2.
        let dev = &Device::Cpu;
        let xs = Tensor::cat(
            &[
                Tensor::ones((1, 1, 2, 2), DType::F32, dev)?,
                Tensor::full(2f32, (1, 1, 2, 2), dev)?,
            ],
            1,
        )?;
        let layer = Conv::new(
            Tensor::ones((2, 2, 1, 1), DType::F32, dev)?,
            Tensor::new(&[1f32, 2.0], dev)?,
            1,
            0,
        );
        let ys = layer.forward(&xs)?;
        assert_eq!(ys.dims(), &[1, 2, 2, 2]);
        assert_eq!(
            ys.flatten_all()?.to_vec1::<f32>()?,
            [4.0, 4.0, 4.0, 4.0, 5.0, 5.0, 5.0, 5.0]
        );
        Ok(())
    }
}
