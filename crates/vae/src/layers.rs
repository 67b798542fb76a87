//! The layers the networks are built from, initialised as PyTorch does.
//!
//! candle-nn's `linear` draws weights from a Kaiming normal; PyTorch's
//! `nn.Linear`, `nn.Conv2d` and `nn.ConvTranspose2d` draw weights and biases
//! from `U(−1/√fan_in, 1/√fan_in)`. The initialisation changes the training
//! curve, so to compare a run with pytorch/examples the layers here use
//! PyTorch's. Convolutions run through deepgen-core's im2col/gemm ops.
//!
//! [`Linear`] is one fused op on the CPU: `y = x Wᵀ + b` by one gemm into a
//! buffer pre-filled with `b`, and a backward pass that computes exactly
//!
//! ```text
//! ∂W = ∂yᵀ x   [out, in], contiguous     ∂b = Σ_rows ∂y     ∂x = ∂y W (only if x needs it)
//! ```
//!
//! candle-nn's `Linear` is `x.matmul(&w.t())` plus `broadcast_add`; its
//! backward also computes `∂x` for the input images, transposes `∂Wᵀ` back
//! with a strided copy and reduces the broadcast bias through extra nodes:
//! about 4 ms per 784×400 layer at batch 128 on two cores against 1 ms here.

use candle::{CpuStorage, CustomOp3, DType, Layout, Module, Shape, Tensor, WithDType};
use candle_nn::{Init, VarBuilder};

/// `U(−1/√fan_in, 1/√fan_in)`, PyTorch's default for weights and biases.
fn pytorch_uniform(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// A fully connected layer `y = x Wᵀ + b` (PyTorch's `nn.Linear`).
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// From ready-made tensors: `weight` `[out, in]`, `bias` `[out]`.
    pub fn new(weight: Tensor, bias: Tensor) -> Self {
        Self { weight, bias }
    }

    /// `W`, `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `b`, `[out]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

/// A fully connected layer `in_dim → out_dim` initialised like `nn.Linear`:
/// `weight` `[out_dim, in_dim]` and `bias` `[out_dim]` under `vb`.
///
/// # Errors
/// Candle errors (a stored variable of another shape).
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle::Result<Linear> {
    let init = pytorch_uniform(in_dim);
    let weight = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let bias = vb.get_with_hints(out_dim, "bias", init)?;
    Ok(Linear::new(weight, bias))
}

impl Module for Linear {
    /// `xs` `[n, in]` → `[n, out]`; other ranks are flattened to rows first.
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        let dims = xs.dims().to_vec();
        let Some((&in_dim, lead)) = dims.split_last() else {
            candle::bail!("linear: a scalar input")
        };
        let rows: usize = lead.iter().product();
        let flat = if dims.len() == 2 {
            xs.clone()
        } else {
            xs.reshape((rows, in_dim))?
        };
        let fused = flat.device().is_cpu()
            && matches!(flat.dtype(), DType::F32 | DType::F64)
            && self.weight.dtype() == flat.dtype()
            && self.bias.dtype() == flat.dtype();
        let ys = if fused {
            flat.contiguous()?
                .apply_op3(&self.weight.contiguous()?, &self.bias.contiguous()?, LinearOp)?
        } else {
            flat.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?
        };
        if dims.len() == 2 {
            Ok(ys)
        } else {
            let mut out_dims = lead.to_vec();
            out_dims.push(self.weight.dim(0)?);
            ys.reshape(out_dims)
        }
    }
}

/// `(x [n, in], W [out, in], b [out]) → x Wᵀ + b`.
struct LinearOp;

fn contiguous_slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> candle::Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => data
            .get(start..end)
            .ok_or_else(|| candle::Error::msg("linear: layout outside the storage")),
        None => candle::bail!("linear: operands must be contiguous"),
    }
}

/// `x Wᵀ + b` into a new `[n, out]` buffer.
fn linear_forward<T: WithDType>(x: &[T], w: &[T], b: &[T], n: usize, in_dim: usize, out: usize) -> Vec<T> {
    let mut y: Vec<T> = Vec::with_capacity(n * out);
    for _ in 0..n {
        y.extend_from_slice(b);
    }
    assert!(x.len() == n * in_dim && w.len() == out * in_dim && y.len() == n * out);
    if n == 0 || out == 0 || in_dim == 0 {
        return y;
    }
    let parallelism = if n * out * in_dim >= 1 << 18 {
        gemm::Parallelism::Rayon(candle::utils::get_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assert above sizes the three buffers for the strides below:
    // dst [n, out] row-major (col stride 1, row stride out); lhs x [n, in]
    // row-major; rhs Wᵀ [in, out] read from W [out, in] (element (p, j) at
    // j·in + p: col stride in, row stride 1). `y` is a fresh buffer, so it
    // aliases neither input.
    unsafe {
        gemm::gemm(
            n,
            out,
            in_dim,
            y.as_mut_ptr(),
            1,
            out as isize,
            true,
            x.as_ptr(),
            1,
            in_dim as isize,
            w.as_ptr(),
            in_dim as isize,
            1,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
    y
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "deepgen-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let (n, in_dim) = l1.shape().dims2()?;
        let (out, w_in) = l2.shape().dims2()?;
        if w_in != in_dim || l3.shape().dims() != [out] {
            candle::bail!(
                "linear: input {:?}, weight {:?} and bias {:?} do not fit",
                l1.dims(),
                l2.dims(),
                l3.dims()
            )
        }
        let ys = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(linear_forward(
                contiguous_slice(s1, l1)?,
                contiguous_slice(s2, l2)?,
                contiguous_slice(s3, l3)?,
                n,
                in_dim,
                out,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(linear_forward(
                contiguous_slice(s1, l1)?,
                contiguous_slice(s2, l2)?,
                contiguous_slice(s3, l3)?,
                n,
                in_dim,
                out,
            )),
            _ => candle::bail!("linear: only f32 and f64 are supported"),
        };
        Ok((ys, Shape::from((n, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad_x = if x.track_op() { Some(grad.matmul(w)?) } else { None };
        let grad_w = grad.t()?.matmul(x)?;
        let grad_b = match grad.dtype() {
            DType::F32 | DType::F64 if grad.device().is_cpu() => grad.contiguous()?.apply_op1(ColumnSums)?,
            _ => grad.sum(0)?,
        };
        Ok((grad_x, Some(grad_w), Some(grad_b)))
    }
}

/// `[n, d] → [d]`, the sum of the rows, row by row (Candle's `sum(0)` walks
/// the columns with a stride of `d`).
struct ColumnSums;

fn column_sums<T: WithDType>(x: &[T], d: usize) -> Vec<T> {
    let mut acc = vec![T::zero(); d];
    for row in x.chunks_exact(d.max(1)) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v;
        }
    }
    acc
}

impl candle::CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "deepgen-column-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle::Result<(CpuStorage, Shape)> {
        let (_n, d) = l.shape().dims2()?;
        let out = match s {
            CpuStorage::F32(_) => CpuStorage::F32(column_sums(contiguous_slice(s, l)?, d)),
            CpuStorage::F64(_) => CpuStorage::F64(column_sums(contiguous_slice(s, l)?, d)),
            _ => candle::bail!("column sums: only f32 and f64 are supported"),
        };
        Ok((out, Shape::from(d)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle::Result<Option<Tensor>> {
        Ok(Some(grad.unsqueeze(0)?.broadcast_as(arg.shape())?.contiguous()?))
    }
}

/// ReLU as a layer, through deepgen-core's one-sweep kernel (Candle's
/// `relu` backward allocates four full-size temporaries).
#[derive(Clone, Copy, Debug, Default)]
pub struct Relu;

impl Module for Relu {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        deepgen_core::ops::relu(xs)
    }
}

/// A 2-D convolution with bias (stride and padding on both axes).
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// From ready-made tensors: `weight` `[c_out, c_in, k, k]`, `bias` `[c_out]`.
    pub fn new(weight: Tensor, bias: Tensor, stride: usize, padding: usize) -> Self {
        Self {
            weight,
            bias,
            stride,
            padding,
        }
    }

    /// The kernel `[c_out, c_in, k, k]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

/// A `k × k` convolution `c_in → c_out`, initialised like `nn.Conv2d`.
///
/// # Errors
/// Candle errors (a stored variable of another shape).
pub fn conv2d(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    vb: VarBuilder,
) -> candle::Result<Conv2d> {
    let init = pytorch_uniform(c_in * kernel * kernel);
    let weight = vb.get_with_hints((c_out, c_in, kernel, kernel), "weight", init)?;
    let bias = vb.get_with_hints(c_out, "bias", init)?;
    Ok(Conv2d::new(weight, bias, stride, padding))
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        let ys = deepgen_core::ops::conv2d(xs, &self.weight, self.padding, self.stride, 1)?;
        deepgen_core::ops::add_channel_bias(&ys, &self.bias)
    }
}

/// A 2-D transposed convolution with bias, the adjoint of [`Conv2d`] with the
/// same kernel, stride and padding (output side `(H − 1)·s − 2p + k`).
#[derive(Clone, Debug)]
pub struct ConvTranspose2d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl ConvTranspose2d {
    /// From ready-made tensors: `weight` `[c_in, c_out, k, k]` (PyTorch's
    /// layout), `bias` `[c_out]`.
    pub fn new(weight: Tensor, bias: Tensor, stride: usize, padding: usize) -> Self {
        Self {
            weight,
            bias,
            stride,
            padding,
        }
    }

    /// The kernel `[c_in, c_out, k, k]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

/// A `k × k` transposed convolution `c_in → c_out`, initialised like
/// `nn.ConvTranspose2d` (whose `fan_in` is `c_out · k²`).
///
/// # Errors
/// Candle errors (a stored variable of another shape).
pub fn conv_transpose2d(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    vb: VarBuilder,
) -> candle::Result<ConvTranspose2d> {
    let init = pytorch_uniform(c_out * kernel * kernel);
    let weight = vb.get_with_hints((c_in, c_out, kernel, kernel), "weight", init)?;
    let bias = vb.get_with_hints(c_out, "bias", init)?;
    Ok(ConvTranspose2d::new(weight, bias, stride, padding))
}

impl Module for ConvTranspose2d {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        let ys = deepgen_core::ops::conv_transpose2d(xs, &self.weight, self.padding, 0, self.stride, 1)?;
        deepgen_core::ops::add_channel_bias(&ys, &self.bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{Device, Var};
    use candle_nn::VarMap;

    /// The fused layer against candle's `x Wᵀ + b`, values and all three
    /// gradients, in f64 (and the input gradient is skipped for constants).
    #[test]
    fn fused_linear_matches_candle() -> candle::Result<()> {
        let dev = Device::Cpu;
        let mut rng = deepgen_core::rng_from_seed(4);
        let randn = |rng: &mut _, shape: (usize, usize)| -> candle::Result<Tensor> {
            deepgen_core::rng::randn(rng, shape, &dev)?.to_dtype(DType::F64)
        };
        let x = Var::from_tensor(&randn(&mut rng, (5, 7))?)?;
        let w = Var::from_tensor(&randn(&mut rng, (3, 7))?)?;
        let b = Var::from_tensor(&randn(&mut rng, (1, 3))?.flatten_all()?)?;
        // A weighting so the upstream gradient is not constant.
        let c = randn(&mut rng, (5, 3))?;
        let layer = Linear::new(w.as_tensor().clone(), b.as_tensor().clone());
        let ours = layer.forward(x.as_tensor())?;
        let theirs = x
            .as_tensor()
            .matmul(&w.as_tensor().t()?)?
            .broadcast_add(b.as_tensor())?;
        let diff = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-12, "forward differs by {diff}");
        let g1 = (ours * &c)?.sum_all()?.backward()?;
        let g2 = (theirs * &c)?.sum_all()?.backward()?;
        for var in [&x, &w, &b] {
            let (a, e) = (g1.get(var), g2.get(var));
            let (Some(a), Some(e)) = (a, e) else {
                panic!("missing gradient")
            };
            let diff = (a - e)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(diff < 1e-12, "gradient differs by {diff}");
        }
        // A constant input gets no gradient computed.
        let xc = x.as_tensor().detach();
        let grads = layer.forward(&xc)?.sum_all()?.backward()?;
        assert!(grads.get(&xc).is_none() && grads.get(&w).is_some());
        // Rank 3 flattens the leading dims.
        let x3 = x.as_tensor().reshape((1, 5, 7))?;
        assert_eq!(layer.forward(&x3)?.dims(), &[1, 5, 3]);
        Ok(())
    }

    #[test]
    fn linear_init_is_pytorch_uniform() -> candle::Result<()> {
        // nn.Linear(784, 400): weights and biases in ±1/√784 = ±1/28, and a
        // uniform's variance is bound²/3.
        let varmap = VarMap::new();
        let vb = deepgen_core::seeded_var_builder(&varmap, 1, DType::F32, &Device::Cpu);
        let fc = linear(784, 400, vb.pp("fc"))?;
        let w = fc.weight().flatten_all()?.to_vec1::<f32>()?;
        let bound = 1.0 / 28.0;
        assert!(w.iter().all(|&x| (x as f64).abs() <= bound));
        let var = w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / w.len() as f64;
        assert!((var / (bound * bound / 3.0) - 1.0).abs() < 0.02, "variance {var}");
        let b = fc.bias().to_vec1::<f32>()?;
        assert_eq!(b.len(), 400);
        assert!(b.iter().all(|&x| (x as f64).abs() <= bound) && b.iter().any(|&x| (x as f64).abs() > bound / 2.0));
        Ok(())
    }

    #[test]
    fn conv_and_transpose_restore_the_side() -> candle::Result<()> {
        // 4×4 kernels, stride 2, padding 1: 28 → 14 → 7 and back 7 → 14 → 28.
        let varmap = VarMap::new();
        let vb = deepgen_core::seeded_var_builder(&varmap, 2, DType::F32, &Device::Cpu);
        let down = conv2d(1, 3, 4, 2, 1, vb.pp("down"))?;
        let up = conv_transpose2d(3, 1, 4, 2, 1, vb.pp("up"))?;
        let xs = Tensor::ones((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
        let h = down.forward(&xs)?;
        assert_eq!(h.dims(), &[2, 3, 14, 14]);
        assert_eq!(up.forward(&h)?.dims(), &[2, 1, 28, 28]);
        Ok(())
    }
}
