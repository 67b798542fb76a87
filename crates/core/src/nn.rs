//! Layers initialised as PyTorch does, with fast CPU passes: the building
//! blocks of every model crate (MLP encoders and decoders, convolutional
//! networks, the UNet and critics later).
//!
//! candle-nn's `linear` draws weights from a Kaiming normal; PyTorch's
//! `nn.Linear`, `nn.Conv2d` and `nn.ConvTranspose2d` draw weights and biases
//! from `U(−1/√fan_in, 1/√fan_in)` ([`pytorch_uniform`]). The initialisation
//! changes the training curve, so to compare a run with PyTorch's the layers
//! here use PyTorch's. Convolutions run through [`crate::ops`]' im2col/gemm
//! ops; with ReLU after them, [`Conv2d::forward_relu`] fuses bias and ReLU.
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

use crate::ops::im2col::{Mat, matmul};
use crate::ops::{contiguous_slice, map_floats};
use candle::{CpuStorage, CustomOp3, DType, Layout, Module, Shape, Tensor, WithDType};
use candle_nn::{Init, VarBuilder};

/// `U(−1/√fan_in, 1/√fan_in)`, PyTorch's default for weights and biases.
pub fn pytorch_uniform(fan_in: usize) -> Init {
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

    /// The same layer with parameters that take no gradient: for a pass
    /// that updates another network only (a GAN's generator step through
    /// its discriminator), so that backward skips `∂W` and `∂b`.
    pub fn detached(&self) -> Self {
        Self::new(self.weight.detach(), self.bias.detach())
    }
}

/// A fully connected layer `in_dim → out_dim` initialised like `nn.Linear`:
/// `weight` `[out_dim, in_dim]` and `bias` `[out_dim]` under `vb`.
///
/// # Errors
/// Candle errors (a stored variable of another shape).
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle::Result<Linear> {
    let init = pytorch_uniform(in_dim);
    linear_with_init(in_dim, out_dim, init, init, vb)
}

/// A fully connected layer `in_dim → out_dim` whose new weights and biases
/// are drawn from `weight` and `bias` (a paper's own scheme, e.g. DCGAN's
/// and PacGAN's `N(0, 0.02²)` weights and zero biases).
///
/// # Errors
/// Candle errors (a stored variable of another shape).
pub fn linear_with_init(
    in_dim: usize,
    out_dim: usize,
    weight: Init,
    bias: Init,
    vb: VarBuilder,
) -> candle::Result<Linear> {
    let weight = vb.get_with_hints((out_dim, in_dim), "weight", weight)?;
    let bias = vb.get_with_hints(out_dim, "bias", bias)?;
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
    // y [n, out] += x [n, in] · Wᵀ, Wᵀ read in place from W [out, in].
    matmul(
        (n, out, in_dim),
        &mut y,
        out,
        true,
        Mat::rows(x, in_dim),
        Mat::transposed(w, in_dim),
        gemm_parallelism(n * out * in_dim),
    );
    y
}

/// Rayon's pool (where gemm runs) for products of at least 2¹⁸
/// multiply-adds, the calling thread below. Rayon's count is a field read;
/// Candle's `get_num_threads` reads `/proc/cpuinfo` on every call.
fn gemm_parallelism(multiply_adds: usize) -> gemm::Parallelism {
    if multiply_adds >= 1 << 18 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    }
}

/// The two products of the linear layer's backward pass, by gemm straight
/// from the row-major buffers (no transposed copies).
#[derive(Clone, Copy, Debug)]
enum LinearGrad {
    /// `(∂y [n, out], W [out, in]) → ∂x = ∂y W`, `[n, in]`.
    Input,
    /// `(∂y [n, out], x [n, in]) → ∂W = ∂yᵀ x`, `[out, in]`.
    Weight,
}

/// [`LinearGrad`]'s product for `∂y` `g` `[n, out]` and `m` (`W` or `x`,
/// both `[·, in]`): `rows × in` from an inner dimension `k`.
fn linear_grad<T: WithDType>(op: LinearGrad, g: &[T], m: &[T], (n, out, in_dim): (usize, usize, usize)) -> Vec<T> {
    let (rows, k, lhs) = match op {
        // ∂x [n, in] = ∂y [n, out] · W [out, in]
        LinearGrad::Input => (n, out, Mat::rows(g, out)),
        // ∂W [out, in] = ∂yᵀ [out, n] · x [n, in]
        LinearGrad::Weight => (out, n, Mat::transposed(g, out)),
    };
    let mut dst = vec![T::zero(); rows * in_dim];
    let parallelism = gemm_parallelism(n * in_dim * out);
    matmul(
        (rows, in_dim, k),
        &mut dst,
        in_dim,
        false,
        lhs,
        Mat::rows(m, in_dim),
        parallelism,
    );
    dst
}

impl candle::CustomOp2 for LinearGrad {
    fn name(&self) -> &'static str {
        "deepgen-linear-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let (n, out) = l1.shape().dims2()?;
        let (rows, in_dim) = l2.shape().dims2()?;
        let (expected_rows, shape) = match self {
            Self::Input => (out, Shape::from((n, in_dim))),
            Self::Weight => (n, Shape::from((out, in_dim))),
        };
        if rows != expected_rows {
            candle::bail!(
                "linear backward: gradient {:?} and operand {:?} do not fit",
                l1.dims(),
                l2.dims()
            )
        }
        let op = *self;
        let result = map_floats!("linear backward", |g = (s1, l1), m = (s2, l2)| {
            linear_grad(op, g, m, (n, out, in_dim))
        });
        Ok((result, shape))
    }
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
        let ys = map_floats!("linear", |x = (s1, l1), w = (s2, l2)| {
            linear_forward(x, w, contiguous_slice(s3, l3, "linear")?, n, in_dim, out)
        });
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
        if !(grad.device().is_cpu() && matches!(grad.dtype(), DType::F32 | DType::F64)) {
            let grad_x = if x.track_op() { Some(grad.matmul(w)?) } else { None };
            return Ok((grad_x, Some(grad.t()?.matmul(x)?), Some(grad.sum(0)?)));
        }
        let grad = grad.contiguous()?;
        let grad_x = if x.track_op() {
            Some(grad.apply_op2_no_bwd(&w.contiguous()?, &LinearGrad::Input)?)
        } else {
            None
        };
        let grad_w = grad.apply_op2_no_bwd(&x.contiguous()?, &LinearGrad::Weight)?;
        Ok((grad_x, Some(grad_w), Some(grad.apply_op1(ColumnSums)?)))
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
        let out = map_floats!("column sums", |x = (s, l)| column_sums(x, d));
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
        crate::ops::relu(xs)
    }
}

/// A 2-D convolution with bias, stride and padding on both axes, forward
/// (`TRANSPOSED = false`, [`Conv2d`]) or transposed (`true`,
/// [`ConvTranspose2d`]); the two share everything but the product they run.
#[derive(Clone, Debug)]
pub struct ConvLayer<const TRANSPOSED: bool> {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

/// A 2-D convolution with bias (PyTorch's `nn.Conv2d`): kernel
/// `[c_out, c_in, k, k]`, output side `⌊(H + 2p − k)/s⌋ + 1`.
pub type Conv2d = ConvLayer<false>;

/// A 2-D transposed convolution with bias (`nn.ConvTranspose2d`), the adjoint
/// of [`Conv2d`] with the same kernel, stride and padding: kernel
/// `[c_in, c_out, k, k]` (PyTorch's layout), output side `(H − 1)·s − 2p + k`.
pub type ConvTranspose2d = ConvLayer<true>;

impl<const TRANSPOSED: bool> ConvLayer<TRANSPOSED> {
    /// From ready-made tensors: `weight` in the layout of [`Conv2d`] or
    /// [`ConvTranspose2d`], `bias` `[c_out]`.
    pub fn new(weight: Tensor, bias: Tensor, stride: usize, padding: usize) -> Self {
        Self {
            weight,
            bias,
            stride,
            padding,
        }
    }

    /// The kernel.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[c_out]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The same layer with parameters that take no gradient (see
    /// [`Linear::detached`]).
    pub fn detached(&self) -> Self {
        Self::new(self.weight.detach(), self.bias.detach(), self.stride, self.padding)
    }

    /// The (transposed) convolution plus `bias` (`[c_out]` or `[N, c_out]`)
    /// as one op ([`crate::ops::conv2d_with_bias`]).
    fn correlate_biased(&self, xs: &Tensor, bias: &Tensor) -> candle::Result<Tensor> {
        if TRANSPOSED {
            crate::ops::conv_transpose2d_with_bias(xs, &self.weight, bias, self.padding, 0, self.stride, 1)
        } else {
            crate::ops::conv2d_with_bias(xs, &self.weight, bias, self.padding, self.stride, 1)
        }
    }

    /// The (transposed) convolution without its bias.
    fn correlate(&self, xs: &Tensor) -> candle::Result<Tensor> {
        if TRANSPOSED {
            crate::ops::conv_transpose2d(xs, &self.weight, self.padding, 0, self.stride, 1)
        } else {
            crate::ops::conv2d(xs, &self.weight, self.padding, self.stride, 1)
        }
    }

    /// `relu(conv(x) + b)`, bias and ReLU in one sweep ([`crate::ops::bias_relu`]).
    pub fn forward_relu(&self, xs: &Tensor) -> candle::Result<Tensor> {
        crate::ops::bias_relu(&self.correlate(xs)?, &self.bias)
    }

    /// `conv(x) + b + shift`, with `shift` `[N, c_out]` one value per example
    /// and output channel (a UNet's time embedding), added with the bias in
    /// the convolution's op (a bias `[N, C]`): neither the bare nor the
    /// unshifted output is a full-size node of the graph.
    pub fn forward_shifted(&self, xs: &Tensor, shift: &Tensor) -> candle::Result<Tensor> {
        let bias = self.bias.unsqueeze(0)?.broadcast_add(shift)?;
        self.correlate_biased(xs, &bias)
    }

    /// `conv(upsample_nearest(x, 2)) + b` for a 3×3, stride-1, padding-1
    /// convolution (a UNet's up step), computed at `x`'s resolution
    /// ([`crate::ops::upsample_conv2d_with_bias`], about half the
    /// arithmetic); other layers upsample and then convolve.
    pub fn forward_upsampled(&self, xs: &Tensor) -> candle::Result<Tensor> {
        let (_, _, h, w) = xs.dims4()?;
        let (_, _, kh, kw) = self.weight.dims4()?;
        if !TRANSPOSED && (kh, kw, self.stride, self.padding) == (3, 3, 1, 1) {
            return crate::ops::upsample_conv2d_with_bias(xs, &self.weight, &self.bias);
        }
        self.correlate_biased(&crate::ops::upsample_nearest2d(xs, 2 * h, 2 * w)?, &self.bias)
    }

    /// `max_pool(relu(conv(x) + b), k)` ([`crate::ops::max_pool2d`]),
    /// computed as `relu(max_pool(conv(x), k) + b)`.
    ///
    /// A window's maximum commutes with adding a per-channel constant and
    /// with a non-decreasing function, so the two are equal, and so are
    /// their gradients: each window's gradient reaches its first maximum
    /// when the output is positive, and nothing otherwise. (The first
    /// maximum of `x` and of `x + b` differ only where two of a window's
    /// values round to the same float once `b` is added; the gradient then
    /// goes to the other one, as valid a subgradient.) The bias and ReLU
    /// touch `k²` times fewer values, and the full-size `relu(conv(x) + b)`
    /// is not a node of the graph, whose gradient Candle's backward would
    /// zero-fill, add into and pass through the ReLU at full size: SimCLR's
    /// encoder step on 512 views of 28×28 lost 51 MB of such work per layer.
    pub fn forward_relu_max_pool(&self, xs: &Tensor, k: usize) -> candle::Result<Tensor> {
        crate::ops::bias_relu(&crate::ops::max_pool2d(&self.correlate(xs)?, k)?, &self.bias)
    }

    /// `act(conv(x) + b)`, bias and activation in one sweep
    /// ([`crate::ops::bias_activation`]).
    pub fn forward_act(&self, xs: &Tensor, act: crate::ops::Activation) -> candle::Result<Tensor> {
        crate::ops::bias_activation(&self.correlate(xs)?, &self.bias, act)
    }
}

impl<const TRANSPOSED: bool> Module for ConvLayer<TRANSPOSED> {
    /// `conv(x) + b` as one op ([`crate::ops::conv2d_with_bias`]).
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        self.correlate_biased(xs, &self.bias)
    }
}

/// `weight` of `shape` and `bias` `[c_out]`, both `U(±1/√fan_in)`.
fn conv_parameters(
    shape: (usize, usize, usize, usize),
    fan_in: usize,
    c_out: usize,
    vb: VarBuilder,
) -> candle::Result<(Tensor, Tensor)> {
    let init = pytorch_uniform(fan_in);
    Ok((
        vb.get_with_hints(shape, "weight", init)?,
        vb.get_with_hints(c_out, "bias", init)?,
    ))
}

/// Group normalisation as PyTorch's `nn.GroupNorm` (scale 1, shift 0 at
/// first), on the one-op kernel of [`crate::ops::group_norm()`];
/// [`GroupNorm::forward_silu`] fuses the SiLU that follows it in a UNet
/// block.
#[derive(Clone, Debug)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    /// `SiLU(GN(x))`.
    ///
    /// # Errors
    /// As [`crate::ops::group_norm()`].
    pub fn forward_silu(&self, xs: &Tensor) -> candle::Result<Tensor> {
        crate::ops::group_norm(xs, &self.weight, &self.bias, self.groups, self.eps, true)
    }
}

impl Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        crate::ops::group_norm(xs, &self.weight, &self.bias, self.groups, self.eps, false)
    }
}

/// Group normalisation of `channels` channels in `groups` groups.
///
/// # Errors
/// `channels` not divisible by `groups`; Candle errors.
pub fn group_norm(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> candle::Result<GroupNorm> {
    if groups == 0 || !channels.is_multiple_of(groups) {
        candle::bail!("group_norm: {channels} channels do not split into {groups} groups")
    }
    Ok(GroupNorm {
        weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
        bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
        groups,
        eps,
    })
}

/// Batch normalisation as PyTorch's `nn.BatchNorm1d`/`nn.BatchNorm2d`
/// (scale 1, shift 0, `eps` 1e-5, momentum 0.1), on the one-op kernel of
/// [`crate::ops::batch_norm()`]; [`BatchNorm::forward_act`] fuses the
/// rectifier that follows it. The running statistics are variables under
/// the same names as candle-nn's and PyTorch's (`running_mean`,
/// `running_var`), so checkpoints carry them, updated in training by
/// PyTorch's rule:
///
/// ```text
/// running_mean ← (1 − m) running_mean + m μ_batch
/// running_var  ← (1 − m) running_var  + m σ²_batch · M/(M − 1)     (unbiased, M values per channel)
/// ```
#[derive(Clone, Debug)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: candle::Var,
    running_var: candle::Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    /// `act(BN(x))`: the batch's statistics (and the running ones updated)
    /// when `train`, the running statistics otherwise.
    ///
    /// # Errors
    /// A channel count other than the layer's; one value per channel in
    /// training (PyTorch's error too: no variance to estimate).
    pub fn forward_act(&self, xs: &Tensor, train: bool, act: crate::ops::Activation) -> candle::Result<Tensor> {
        use crate::ops::BatchStatistics;
        if !train {
            let stats = BatchStatistics::Fixed {
                mean: self.running_mean.as_tensor(),
                var: self.running_var.as_tensor(),
            };
            return Ok(crate::ops::batch_norm(xs, &self.weight, &self.bias, stats, self.eps, act)?.0);
        }
        let values = xs.elem_count() / xs.dim(1)?.max(1);
        if values < 2 {
            candle::bail!(
                "batch_norm: expected more than 1 value per channel when training, got {:?}",
                xs.shape()
            )
        }
        let (ys, moments) =
            crate::ops::batch_norm(xs, &self.weight, &self.bias, BatchStatistics::Batch, self.eps, act)?;
        let m = self.momentum;
        let unbiased = values as f64 / (values - 1) as f64;
        let moments = moments.to_dtype(self.running_mean.dtype())?;
        let mean = (self.running_mean.as_tensor() * (1.0 - m))? + (moments.get(0)? * m)?;
        let var = (self.running_var.as_tensor() * (1.0 - m))? + (moments.get(1)? * (m * unbiased))?;
        self.running_mean.set(&mean?)?;
        self.running_var.set(&var?)?;
        Ok(ys)
    }

    /// The same layer with scale and shift that take no gradient (see
    /// [`Linear::detached`]); the running statistics are shared, so a
    /// training-mode pass still updates them, as PyTorch's does.
    pub fn detached(&self) -> Self {
        Self {
            weight: self.weight.detach(),
            bias: self.bias.detach(),
            ..self.clone()
        }
    }

    /// The running mean and variance, `[C]` each.
    pub fn running_statistics(&self) -> (&Tensor, &Tensor) {
        (self.running_mean.as_tensor(), self.running_var.as_tensor())
    }
}

impl candle::ModuleT for BatchNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle::Result<Tensor> {
        self.forward_act(xs, train, crate::ops::Activation::Identity)
    }
}

/// Batch normalisation of `channels` channels with PyTorch's defaults.
///
/// # Errors
/// Candle errors (a stored variable of another shape).
pub fn batch_norm(channels: usize, vb: VarBuilder) -> candle::Result<BatchNorm> {
    let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
    let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
    Ok(BatchNorm {
        weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
        bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
        running_mean: candle::Var::from_tensor(&running_mean)?,
        running_var: candle::Var::from_tensor(&running_var)?,
        eps: 1e-5,
        momentum: 0.1,
    })
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
    let (weight, bias) = conv_parameters((c_out, c_in, kernel, kernel), c_in * kernel * kernel, c_out, vb)?;
    Ok(Conv2d::new(weight, bias, stride, padding))
}

/// A `k × k` transposed convolution `c_in → c_out`, initialised like
/// `nn.ConvTranspose2d` (whose `fan_in` is `c_out · k²`, from dimension 1 of
/// the weight).
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
    let (weight, bias) = conv_parameters((c_in, c_out, kernel, kernel), c_out * kernel * kernel, c_out, vb)?;
    Ok(ConvTranspose2d::new(weight, bias, stride, padding))
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
        let mut rng = crate::rng_from_seed(4);
        let randn = |rng: &mut _, shape: (usize, usize)| -> candle::Result<Tensor> {
            crate::rng::randn(rng, shape, &dev)?.to_dtype(DType::F64)
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
        let vb = crate::seeded_var_builder(&varmap, 1, DType::F32, &Device::Cpu);
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
        let vb = crate::seeded_var_builder(&varmap, 2, DType::F32, &Device::Cpu);
        let down = conv2d(1, 3, 4, 2, 1, vb.pp("down"))?;
        let up = conv_transpose2d(3, 1, 4, 2, 1, vb.pp("up"))?;
        let xs = Tensor::ones((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
        let h = down.forward(&xs)?;
        assert_eq!(h.dims(), &[2, 3, 14, 14]);
        assert_eq!(up.forward(&h)?.dims(), &[2, 1, 28, 28]);
        Ok(())
    }

    #[test]
    fn fused_bias_relu_matches_the_separate_ops() -> candle::Result<()> {
        let mut rng = crate::rng_from_seed(2);
        let dev = &Device::Cpu;
        let xs = crate::rng::randn(&mut rng, (2, 3, 7, 7), dev)?;
        let down = Conv2d::new(
            crate::rng::randn(&mut rng, (4, 3, 3, 3), dev)?,
            crate::rng::randn(&mut rng, 4, dev)?,
            2,
            1,
        );
        let up = ConvTranspose2d::new(
            crate::rng::randn(&mut rng, (3, 4, 3, 3), dev)?,
            crate::rng::randn(&mut rng, 4, dev)?,
            2,
            1,
        );
        for (fused, plain) in [
            (down.forward_relu(&xs)?, down.forward(&xs)?),
            (up.forward_relu(&xs)?, up.forward(&xs)?),
        ] {
            let separate = plain.relu()?.flatten_all()?.to_vec1::<f32>()?;
            assert_eq!(fused.flatten_all()?.to_vec1::<f32>()?, separate);
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// `relu(max_pool(conv(x)) + b)` against the layers in PyTorch's
        /// order, `max_pool(relu(conv(x) + b))`: value and the gradients of
        /// input, kernel and bias, windows that do not divide the side
        /// included.
        #[test]
        fn prop_relu_max_pool_reordered_matches_the_layers_in_order(
            seed in proptest::prelude::any::<u64>(), batch in 1usize..4, c_in in 1usize..4, c_out in 1usize..5,
            side in 5usize..12, k in 1usize..4, padding in 0usize..2,
        ) {
            use crate::ops::test_util::rel_err;
            let mut rng = crate::rng_from_seed(seed);
            let dev = &Device::Cpu;
            let var = |t: Tensor| Var::from_tensor(&t).unwrap();
            let xs = var(crate::rng::randn(&mut rng, (batch, c_in, side, side), dev).unwrap());
            let weight = var(crate::rng::randn(&mut rng, (c_out, c_in, 3, 3), dev).unwrap());
            let bias = var(crate::rng::randn(&mut rng, c_out, dev).unwrap());
            let conv = Conv2d::new(weight.as_tensor().clone(), bias.as_tensor().clone(), 1, padding);
            let fused = conv.forward_relu_max_pool(&xs, k).unwrap();
            let in_order = crate::ops::max_pool2d(&conv.forward_relu(&xs).unwrap(), k).unwrap();
            proptest::prop_assert!(rel_err(&fused, &in_order) <= 1e-6);
            let r = crate::rng::randn(&mut rng, fused.shape(), dev).unwrap();
            let grads = |ys: &Tensor| (ys * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let (ours, theirs) = (grads(&fused), grads(&in_order));
            for v in [&xs, &weight, &bias] {
                let (a, b) = (ours.get(v).unwrap(), theirs.get(v).unwrap());
                proptest::prop_assert!(rel_err(a, b) <= 1e-5, "gradient of a {:?} tensor", v.dims());
            }
        }
    }

    /// `forward_shifted` against the conv and a broadcast add of the shift:
    /// value and the gradients of input, kernel, bias and shift.
    #[test]
    fn shifted_conv_matches_a_broadcast_add() -> candle::Result<()> {
        use crate::ops::test_util::rel_err;
        let mut rng = crate::rng_from_seed(5);
        let dev = &Device::Cpu;
        let var = |t: Tensor| Var::from_tensor(&t);
        let xs = var(crate::rng::randn(&mut rng, (3, 2, 9, 9), dev)?)?;
        let weight = var(crate::rng::randn(&mut rng, (4, 2, 3, 3), dev)?)?;
        let bias = var(crate::rng::randn(&mut rng, 4, dev)?)?;
        let shift = var(crate::rng::randn(&mut rng, (3, 4), dev)?)?;
        let conv = Conv2d::new(weight.as_tensor().clone(), bias.as_tensor().clone(), 1, 1);
        let fused = conv.forward_shifted(&xs, &shift)?;
        let plain = conv.forward(&xs)?.broadcast_add(&shift.unsqueeze(2)?.unsqueeze(3)?)?;
        assert!(rel_err(&fused, &plain) < 1e-6);
        let r = crate::rng::randn(&mut rng, fused.shape(), dev)?;
        let (ours, theirs) = (
            (&fused * &r)?.sum_all()?.backward()?,
            (&plain * &r)?.sum_all()?.backward()?,
        );
        for v in [&xs, &weight, &bias, &shift] {
            let (a, b) = (ours.get(v).unwrap(), theirs.get(v).unwrap());
            assert!(rel_err(a, b) < 1e-5, "gradient of a {:?} tensor", v.dims());
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
        let layer = Conv2d::new(
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

    /// Three training batches then evaluation: outputs and running
    /// statistics equal candle-nn's `BatchNorm` (PyTorch's rule), and the
    /// running variance is the momentum average of each batch's unbiased
    /// variance computed here directly.
    #[test]
    fn batch_norm_running_statistics_follow_pytorch() -> candle::Result<()> {
        use candle::ModuleT;
        let dev = Device::Cpu;
        let (ours_map, theirs_map) = (VarMap::new(), VarMap::new());
        let ours = batch_norm(3, VarBuilder::from_varmap(&ours_map, DType::F64, &dev))?;
        let config = candle_nn::BatchNormConfig {
            eps: 1e-5,
            remove_mean: true,
            affine: true,
            momentum: 0.1,
        };
        let theirs = candle_nn::batch_norm(3, config, VarBuilder::from_varmap(&theirs_map, DType::F64, &dev))?;
        let mut rng = crate::rng_from_seed(8);
        let (mut mean, mut var) = (vec![0.0; 3], vec![1.0; 3]);
        for _ in 0..3 {
            let x = (crate::rng::randn(&mut rng, (5, 3, 2, 2), &dev)?.to_dtype(DType::F64)? * 2.0)?;
            let (a, b) = (ours.forward_t(&x, true)?, theirs.forward_t(&x, true)?);
            assert!((a - b)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-12);
            let per_channel = x.transpose(0, 1)?.flatten_from(1)?.to_vec2::<f64>()?;
            for (c, values) in per_channel.iter().enumerate() {
                let m = values.iter().sum::<f64>() / 20.0;
                let unbiased = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / 19.0;
                mean[c] = 0.9 * mean[c] + 0.1 * m;
                var[c] = 0.9 * var[c] + 0.1 * unbiased;
            }
        }
        let (rm, rv) = ours.running_statistics();
        let gap = |t: &Tensor, v: &[f64]| -> candle::Result<f64> {
            Ok(t.to_vec1::<f64>()?
                .iter()
                .zip(v)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max))
        };
        assert!(gap(rm, &mean)? < 1e-12 && gap(rv, &var)? < 1e-12);
        let x = crate::rng::randn(&mut rng, (4, 3, 2, 2), &dev)?.to_dtype(DType::F64)?;
        let (a, b) = (ours.forward_t(&x, false)?, theirs.forward_t(&x, false)?);
        assert!((a - b)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-12);
        let names = |map: &VarMap| {
            let mut n: Vec<String> = map.data().lock().unwrap().keys().cloned().collect();
            n.sort();
            n
        };
        assert_eq!(names(&ours_map), names(&theirs_map), "same checkpoint names");
        assert!(
            ours.forward_t(&x.narrow(0, 0, 1)?.narrow(2, 0, 1)?.narrow(3, 0, 1)?, true)
                .is_err()
        );
        Ok(())
    }
}
