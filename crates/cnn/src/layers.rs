//! The layers a spec builds: convolution, transposed convolution, pooling.
//!
//! The convolutions and fully connected layers are deepgen-core's
//! [`deepgen_core::nn`] layers, on its [`deepgen_core::ops`] (im2col
//! and gemm custom ops on the CPU, Candle's own ops elsewhere), as are pooling,
//! ReLU and the per-channel bias: Candle 0.11's CPU backward passes for these made
//! the seed network's training step about 25 times slower than PyTorch's,
//! and its max-pooling gradient is wrong (see [`max_pool`]).
//!
//! Initialisation follows PyTorch's defaults (`nn.Conv2d`, `nn.ConvTranspose2d`,
//! `nn.Linear`): weights and biases uniform on `±1/√fan_in`, where `fan_in` is
//! `C·K·K` for a convolution and `N·K·K` for a transposed one (PyTorch computes
//! it from dimension 1 of the weight, `[C, N, K, K]`).

use crate::spec::Activation;
use candle::{Module, Tensor};
use deepgen_core::nn;

/// A 2-D convolution with bias, `CONV-K-N-sS-pP`: deepgen-core's layer.
pub type Conv = nn::Conv2d;

/// A 2-D transposed convolution with bias, `CONVT-K-N-sS-pP`: the adjoint of
/// [`Conv`] with the same kernel, stride and padding (see [`crate::transposed`]).
pub type ConvTranspose = nn::ConvTranspose2d;

/// The constructors, under the spec's names: `conv(in_channels, filters,
/// kernel, stride, padding, vb)` ([`Conv`]), `conv_transpose(…)`
/// ([`ConvTranspose`]) and `fc(in_features, units, vb)`, each initialised
/// like PyTorch with `weight` and `bias` under `vb`.
pub use deepgen_core::nn::{conv_transpose2d as conv_transpose, conv2d as conv, linear as fc};

/// `activation(layer(xs))` for a convolution or transposed convolution;
/// with ReLU the bias and the ReLU run as one fused op.
pub fn conv_activated<const TRANSPOSED: bool>(
    layer: &nn::ConvLayer<TRANSPOSED>,
    xs: &Tensor,
    activation: Activation,
) -> candle::Result<Tensor> {
    match activation {
        Activation::Relu => layer.forward_relu(xs),
        other => other.apply(&layer.forward(xs)?),
    }
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
    deepgen_core::ops::max_pool2d(xs, k)
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
}
