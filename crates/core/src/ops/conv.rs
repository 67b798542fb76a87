//! 2-D convolution and transposed convolution as Candle custom ops whose CPU
//! forward and backward passes are im2col/col2im + gemm.
//!
//! With the kernel viewed as a matrix `W` of `M` rows and `C·kh·kw` columns
//! and `cols = im2col(x)` (the column matrix: entry `((c, ki, kj), (oy, ox))` is
//! `x[c, oy·stride − padding + ki·dilation, ox·stride − padding + kj·dilation]`,
//! zero outside the image), three products cover
//! every pass of both layers, per image of the batch:
//!
//! ```text
//! forward     F(x, W) = W · im2col(x)              [M, out_h·out_w]
//! adjoint     A(u, W) = col2im(Wᵀ · u)             [C, H, W]
//! kernel      K(x, u) = Σ_batch u · im2col(x)ᵀ     [M, C·kh·kw]
//! ```
//!
//! `conv2d(x, W) = F(x, W)` with `W = [c_out, c_in, kh, kw]` (`M = c_out`), and
//! `conv_transpose2d(x, W) = A(x, W)` with `W = [c_in, c_out, kh, kw]`
//! (`M = c_in`): a transposed convolution is the adjoint of the convolution
//! with the same kernel (seed 002). The three are closed under
//! differentiation, which is how every backward pass is computed:
//!
//! ```text
//! y = F(x, W):  ∂x = A(∂y, W)   ∂W = K(x, ∂y)
//! z = A(u, W):  ∂u = F(∂z, W)   ∂W = K(∂z, u)
//! G = K(x, u):  ∂x = A(u, ∂G)   ∂u = F(x, ∂G)
//! ```
//!
//! so `∂x = col2im(Wᵀ · ∂y)` and `∂W = ∂y · colsᵀ` for a convolution, and
//! since the backward ops are themselves differentiable custom ops, gradients
//! of gradients (gradient penalties, with `CANDLE_GRAD_DO_NOT_DETACH`) work
//! too. An argument that does not track gradients (the input images of the
//! first layer) gets no gradient computed.
//!
//! Blocking and parallelism: each gemm call covers either several whole
//! images side by side (small grids: a 7×7 grid alone would give gemm 49
//! columns) or a band of grid rows of one image (large grids), so that its
//! column matrix holds about 1 MiB and stays in the L2 cache. Groups of
//! images run in parallel on rayon's pool, each with a single-threaded gemm;
//! with fewer groups than threads the groups run one at a time with gemm's
//! own parallelism, and small products stay on the calling thread.
//!
//! Stride-2, 4×4, padding-1 layers on even images with at least eight
//! channels on both sides (DCGAN's and the VAE's) compute the same three
//! products by Winograd's `F(7×7, 2×2)` instead (`winograd.rs`), with
//! a third of the multiplications. Their backward pass computes both
//! gradients from three transforms of the operands instead of five, one of
//! them kept from the forward pass ([`ConvOp::fused_backward`]).

use super::im2col::{Geometry, Mat, col2im, im2col, matmul};
use super::pointwise::{add_channel_bias, channel_sum};
use super::winograd;
use super::{CpuForward, PARALLEL_MIN, contiguous_slice, fast_path, for_each_chunk, map_floats};
use candle::backend::BackendStorage;
use candle::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Storage, Tensor, WithDType, bail};
use gemm::Parallelism;
use rayon::prelude::*;
use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};

/// About how many elements the column matrix of one gemm call holds (1 MiB
/// of `f32`, half of a 2 MiB L2 cache, leaving room for gemm's packed panels).
const BAND_ELEMS: usize = 1 << 18;

/// Below this many multiply-adds a lone gemm runs on one thread.
const PARALLEL_GEMM_MIN: usize = 1 << 18;

/// Below this many multiply-adds in all, a whole product runs on the
/// calling thread (a hand-off to rayon's pool costs tens of microseconds,
/// much more on a loaded machine).
const PARALLEL_BATCH_MIN: usize = 1 << 22;

/// A grid of at least this many positions is a gemm of its own: its
/// columns need no copying in and out of a band of several images.
const MIN_GRID_ALONE: usize = 512;

/// Which of the three products an op computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `(x [B, C, H, W], W [M, C, kh, kw]) → [B, M, out_h, out_w]`.
    Forward,
    /// `(u [B, M, out_h, out_w], W [M, C, kh, kw]) → [B, C, H, W]`.
    Adjoint,
    /// `(x [B, C, H, W], u [B, M, out_h, out_w]) → [M, C, kh, kw]`.
    Kernel,
}

/// One of the three products for a fixed geometry, as a Candle custom op.
#[derive(Clone, Debug)]
struct ConvOp {
    kind: Kind,
    geometry: Geometry,
    /// Where a Winograd forward pass leaves the transform of its first
    /// operand for the kernel gradient of its backward pass ([`ConvOp::keeping`]).
    kept: Option<Arc<Slot>>,
}

/// A value one pass computes for another: a transform kept from the
/// forward pass, or a gradient already computed ([`Computed`]).
#[derive(Debug, Default)]
struct Slot(Mutex<Option<CpuStorage>>);

impl Slot {
    fn put<T: WithDType>(&self, values: Vec<T>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(T::to_cpu_storage_owned(values));
    }

    fn take(&self) -> Option<CpuStorage> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl ConvOp {
    fn new(kind: Kind, geometry: Geometry) -> Self {
        Self {
            kind,
            geometry,
            kept: None,
        }
    }

    /// The op, keeping its Winograd transform of the first operand for the
    /// backward pass when that pass will compute a kernel gradient from it
    /// (the kernel tracks gradients): a convolution's `V = Bᵀ x B` and a
    /// transposed convolution's `A u Aᵀ` are the kernel gradient's operands
    /// too ([`ConvOp::fused_backward`]). It holds about as much memory as the
    /// input, until the backward pass or until the graph is dropped.
    fn keeping(self, kernel: &Tensor) -> Self {
        let m = kernel.dims().first().copied().unwrap_or(0);
        let keeps = matches!(self.kind, Kind::Forward | Kind::Adjoint)
            && kernel.track_op()
            && winograd::applies(&self.geometry, m);
        Self {
            kept: keeps.then(Arc::default),
            ..self
        }
    }

    fn apply(self, lhs: &Tensor, rhs: &Tensor) -> candle::Result<Tensor> {
        lhs.contiguous()?.apply_op2(&rhs.contiguous()?, self)
    }

    /// The op's product plus `bias` (`[C_out]`, or `[N, C_out]` one per
    /// example) along the output's channels, when given: one op
    /// ([`BiasedConv`]) on the fast path, else the product and
    /// [`add_channel_bias`].
    fn apply_biased(self, lhs: &Tensor, rhs: &Tensor, bias: Option<&Tensor>) -> candle::Result<Tensor> {
        match bias {
            None => self.apply(lhs, rhs),
            Some(bias) if fast_path(&[lhs, rhs, bias]) => {
                lhs.contiguous()?
                    .apply_op3(&rhs.contiguous()?, &bias.contiguous()?, BiasedConv { conv: self })
            }
            Some(bias) => add_channel_bias(&self.apply(lhs, rhs)?, bias),
        }
    }

    /// Another of the three products of this geometry.
    fn with(&self, kind: Kind) -> Self {
        Self::new(kind, self.geometry)
    }

    /// Checks the operands' shapes against the geometry; returns `(batch, M)`
    /// and the output shape.
    fn check(&self, l1: &Layout, l2: &Layout) -> candle::Result<(usize, usize, Shape)> {
        let g = &self.geometry;
        let image = (g.channels, g.height, g.width);
        let grid = (g.out_h, g.out_w);
        let (a, b) = (l1.shape().dims4()?, l2.shape().dims4()?);
        let name = self.name_str();
        match self.kind {
            Kind::Forward => {
                let (batch, m) = (a.0, b.0);
                if (a.1, a.2, a.3) != image || (b.1, b.2, b.3) != (g.channels, g.kernel_h, g.kernel_w) {
                    bail!("{name}: input {a:?} and kernel {b:?} do not fit {g:?}")
                }
                Ok((batch, m, Shape::from((batch, m, g.out_h, g.out_w))))
            }
            Kind::Adjoint => {
                let (batch, m) = (a.0, a.1);
                if (a.2, a.3) != grid || (b.0, b.1, b.2, b.3) != (m, g.channels, g.kernel_h, g.kernel_w) {
                    bail!("{name}: input {a:?} and kernel {b:?} do not fit {g:?}")
                }
                Ok((batch, m, Shape::from((batch, g.channels, g.height, g.width))))
            }
            Kind::Kernel => {
                let (batch, m) = (a.0, b.1);
                if (a.1, a.2, a.3) != image || b.0 != batch || (b.2, b.3) != grid {
                    bail!("{name}: image {a:?} and output gradient {b:?} do not fit {g:?}")
                }
                Ok((batch, m, Shape::from((m, g.channels, g.kernel_h, g.kernel_w))))
            }
        }
    }

    fn name_str(&self) -> &'static str {
        match self.kind {
            Kind::Forward => "deepgen-conv-forward",
            Kind::Adjoint => "deepgen-conv-adjoint",
            Kind::Kernel => "deepgen-conv-kernel-grad",
        }
    }

    fn run<T: WithDType>(&self, batch: usize, m: usize, lhs: &[T], rhs: &[T]) -> Vec<T> {
        let g = &self.geometry;
        if winograd::applies(g, m) {
            let layer = winograd::Layer::new(g, batch, m);
            let (result, transform) = match self.kind {
                Kind::Forward => {
                    let v = layer.input(lhs);
                    (layer.forward(rhs, &v), v)
                }
                Kind::Adjoint => {
                    let dm = layer.output_gradient(lhs);
                    (layer.adjoint(rhs, &dm), dm)
                }
                Kind::Kernel => return layer.kernel_grad(&layer.input(lhs), &layer.output_gradient(rhs)),
            };
            if let Some(kept) = &self.kept {
                kept.put(transform);
            }
            return result;
        }
        match self.kind {
            Kind::Forward => forward(g, batch, m, lhs, rhs),
            Kind::Adjoint => adjoint(g, batch, m, lhs, rhs),
            Kind::Kernel => kernel_grad(g, batch, m, lhs, rhs),
        }
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        self.name_str()
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CpuForward {
        let (batch, m, shape) = self.check(l1, l2)?;
        let storage = map_floats!(self.name_str(), |lhs = (s1, l1), rhs = (s2, l2)| self.run(batch, m, lhs, rhs));
        Ok((storage, shape))
    }

    fn bwd(
        &self,
        arg1: &Tensor,
        arg2: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        use Kind::*;
        if let Some(gradients) = self.fused_backward(arg1, arg2, grad)? {
            return Ok(gradients);
        }
        // See the module docs for the three rules.
        let (d1, d2) = match self.kind {
            Forward => (
                arg1.track_op().then(|| self.with(Adjoint).apply(grad, arg2)),
                arg2.track_op().then(|| self.with(Kernel).apply(arg1, grad)),
            ),
            Adjoint => (
                arg1.track_op().then(|| self.with(Forward).apply(grad, arg2)),
                arg2.track_op().then(|| self.with(Kernel).apply(grad, arg1)),
            ),
            Kernel => (
                arg1.track_op().then(|| self.with(Adjoint).apply(arg2, grad)),
                arg2.track_op().then(|| self.with(Forward).apply(arg1, grad)),
            ),
        };
        Ok((d1.transpose()?, d2.transpose()?))
    }
}

impl ConvOp {
    /// Both gradients of a Winograd convolution or transposed convolution
    /// whose kernel tracks gradients, from three transforms instead of five:
    ///
    /// ```text
    /// y = F(x, W):  ∂x = A(∂y, W)   ∂W = K(x, ∂y)    share A ∂y Aᵀ; V of x kept
    /// z = A(u, W):  ∂u = F(∂z, W)   ∂W = K(∂z, u)    share Bᵀ ∂z B; A u Aᵀ kept
    /// ```
    ///
    /// (the kept transform recomputed if the forward pass left none). Each
    /// result is applied as the product it is ([`Computed`]), so gradients
    /// of gradients flow through it as through [`ConvOp::bwd`]'s. `None`
    /// where this does not apply.
    fn fused_backward(
        &self,
        arg1: &Tensor,
        arg2: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<Option<(Option<Tensor>, Option<Tensor>)>> {
        let m = arg2.dim(0)?;
        if self.kind == Kind::Kernel
            || !arg2.track_op()
            || !winograd::applies(&self.geometry, m)
            || !fast_path(&[arg1, arg2, grad])
        {
            return Ok(None);
        }
        let batch = arg1.dim(0)?;
        let want_first = arg1.track_op();
        let (arg1, arg2, grad) = (arg1.contiguous()?, arg2.contiguous()?, grad.contiguous()?);
        let kept = self.kept.as_ref().and_then(|kept| kept.take());
        let (first, kernel) = {
            let (s1, l1) = arg1.storage_and_layout();
            let (s2, l2) = arg2.storage_and_layout();
            let (s3, l3) = grad.storage_and_layout();
            let (Storage::Cpu(s1), Storage::Cpu(s2), Storage::Cpu(s3)) = (&*s1, &*s2, &*s3) else {
                bail!("{}: operands left the CPU", self.name_str())
            };
            let operands = [(s1, l1), (s2, l2), (s3, l3)];
            match s1 {
                CpuStorage::F32(_) => self.fused_gradients::<f32>(batch, m, operands, kept.as_ref(), want_first)?,
                CpuStorage::F64(_) => self.fused_gradients::<f64>(batch, m, operands, kept.as_ref(), want_first)?,
                _ => bail!("{}: only f32 and f64 are supported", self.name_str()),
            }
        };
        let computed = |kind: Kind, value: CpuStorage, lhs: &Tensor, rhs: &Tensor| {
            let op = Computed {
                conv: self.with(kind),
                value: Slot(Mutex::new(Some(value))),
            };
            lhs.apply_op2(rhs, op)
        };
        let (d1, d2) = match self.kind {
            Kind::Forward => (
                first.map(|d| computed(Kind::Adjoint, d, &grad, &arg2)).transpose()?,
                computed(Kind::Kernel, kernel, &arg1, &grad)?,
            ),
            _ => (
                first.map(|d| computed(Kind::Forward, d, &grad, &arg2)).transpose()?,
                computed(Kind::Kernel, kernel, &grad, &arg1)?,
            ),
        };
        Ok(Some((d1, Some(d2))))
    }

    /// [`ConvOp::fused_backward`]'s arithmetic on the contiguous operands
    /// `(arg1, arg2, grad)`: the first argument's gradient when `want_first`,
    /// and the kernel's.
    fn fused_gradients<T: WithDType>(
        &self,
        batch: usize,
        m: usize,
        [(s1, l1), (s2, l2), (s3, l3)]: [(&CpuStorage, &Layout); 3],
        kept: Option<&CpuStorage>,
        want_first: bool,
    ) -> candle::Result<(Option<CpuStorage>, CpuStorage)> {
        let name = self.name_str();
        let (arg1, kernel, grad) = (
            contiguous_slice::<T>(s1, l1, name)?,
            contiguous_slice::<T>(s2, l2, name)?,
            contiguous_slice::<T>(s3, l3, name)?,
        );
        let layer = winograd::Layer::new(&self.geometry, batch, m);
        let kept = kept.map(|s| T::cpu_storage_as_slice(s)).transpose()?;
        let kept = |transform: fn(&winograd::Layer<T>, &[T]) -> Vec<T>, operand: &[T]| match kept {
            Some(values) => Cow::Borrowed(values),
            None => Cow::Owned(transform(&layer, operand)),
        };
        let (d1, dw) = if self.kind == Kind::Forward {
            let (v, dm) = (kept(winograd::Layer::input, arg1), layer.output_gradient(grad));
            (
                want_first.then(|| layer.adjoint(kernel, &dm)),
                layer.kernel_grad(&v, &dm),
            )
        } else {
            let (dm, v) = (kept(winograd::Layer::output_gradient, arg1), layer.input(grad));
            (
                want_first.then(|| layer.forward(kernel, &v)),
                layer.kernel_grad(&v, &dm),
            )
        };
        Ok((d1.map(T::to_cpu_storage_owned), T::to_cpu_storage_owned(dw)))
    }
}

/// One of the three products whose value [`ConvOp::fused_backward`] has
/// already computed: applying it hands that value to Candle as the op's
/// result, and its backward pass is the product's own.
#[derive(Debug)]
struct Computed {
    conv: ConvOp,
    value: Slot,
}

impl CustomOp2 for Computed {
    fn name(&self) -> &'static str {
        self.conv.name_str()
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CpuForward {
        let (_, _, shape) = self.conv.check(l1, l2)?;
        match self.value.take() {
            Some(value) if BackendStorage::dtype(&value) == BackendStorage::dtype(s1) => Ok((value, shape)),
            _ => self.conv.cpu_fwd(s1, l1, s2, l2),
        }
    }

    fn bwd(
        &self,
        arg1: &Tensor,
        arg2: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        self.conv.bwd(arg1, arg2, res, grad)
    }
}

/// A convolution (or transposed convolution) and its bias as one op,
/// `y = conv(x, W) + b`, the bias added in place to the product's output.
///
/// Same numbers as [`add_channel_bias`] after the product; one graph node
/// instead of two, so Candle's backward no longer zero-fills, adds into
/// and passes on a second full-size gradient per layer, and the forward
/// pass no second full-size output. Backward: the product's two rules
/// ([`ConvOp`]) and `∂b = Σ ∂y` over all but the channel (and example)
/// dimensions.
#[derive(Clone, Debug)]
struct BiasedConv {
    conv: ConvOp,
}

impl BiasedConv {
    /// The product, then `bias` added to each `inner`-value output plane:
    /// plane `i` is example `i / C`, channel `i % C`, so a bias `[C]` is
    /// indexed by `i mod C` and a bias `[N, C]` by `i` itself.
    fn run<T: WithDType>(&self, batch: usize, m: usize, lhs: &[T], rhs: &[T], bias: &[T], inner: usize) -> Vec<T> {
        let mut ys = self.conv.run(batch, m, lhs, rhs);
        let parallel = ys.len() >= PARALLEL_MIN;
        for_each_chunk(
            &mut ys,
            inner,
            parallel,
            #[inline(always)]
            |plane, y| {
                let b = bias[plane % bias.len()];
                for v in y.iter_mut() {
                    *v += b;
                }
            },
        );
        ys
    }
}

impl CustomOp3 for BiasedConv {
    fn name(&self) -> &'static str {
        match self.conv.kind {
            Kind::Forward => "deepgen-conv-bias",
            Kind::Adjoint => "deepgen-conv-transpose-bias",
            Kind::Kernel => "deepgen-conv-kernel-grad-bias",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CpuForward {
        let (batch, m, shape) = self.conv.check(l1, l2)?;
        let dims = shape.dims();
        let (channels, inner) = (dims[1], dims[2..].iter().product::<usize>());
        if l3.shape().dims() != [channels] && l3.shape().dims() != [batch, channels] {
            bail!(
                "{}: bias {:?} does not fit output {shape:?} (one per channel, or per example and channel)",
                self.name(),
                l3.shape()
            )
        }
        let name = self.name();
        let storage = map_floats!(name, |lhs = (s1, l1), rhs = (s2, l2)| {
            self.run(batch, m, lhs, rhs, contiguous_slice(s3, l3, name)?, inner)
        });
        Ok((storage, shape))
    }

    fn bwd(
        &self,
        arg1: &Tensor,
        arg2: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (d1, d2) = self.conv.bwd(arg1, arg2, res, grad)?;
        let db = bias
            .track_op()
            .then(|| channel_sum(grad, bias.rank() == 2))
            .transpose()?;
        Ok((d1, d2, db))
    }
}

/// How a batch is cut into gemm-sized pieces.
///
/// The columns of one gemm call are either whole images side by side (small
/// grids: a 7×7 grid alone would give gemm 49 columns) or a band of grid rows
/// of one image (large grids), so that the column matrix of a piece holds
/// about [`BAND_ELEMS`] elements.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Images per group (1 when an image is cut into bands).
    group: usize,
    /// Grid rows per band (`out_h` when whole images are grouped).
    band_rows: usize,
}

impl Plan {
    fn new(g: &Geometry, batch: usize) -> Self {
        let per_image = g.col_rows() * g.grid_len();
        if g.grid_len() >= MIN_GRID_ALONE && per_image <= BAND_ELEMS {
            Plan {
                group: 1,
                band_rows: g.out_h,
            }
        } else if 2 * per_image <= BAND_ELEMS {
            let most = (BAND_ELEMS / per_image.max(1)).clamp(1, batch.max(1));
            Plan {
                group: balanced_group(batch, most, rayon::current_num_threads()),
                band_rows: g.out_h,
            }
        } else {
            Plan {
                group: 1,
                band_rows: g.band_rows(BAND_ELEMS),
            }
        }
    }

    /// The rows `oy0..oy1` of every band of the grid.
    fn bands(&self, g: &Geometry) -> impl Iterator<Item = (usize, usize)> + use<> {
        let (rows, out_h) = (self.band_rows.max(1), g.out_h);
        (0..out_h).step_by(rows).map(move |oy0| (oy0, (oy0 + rows).min(out_h)))
    }
}

/// The images per group, at most `most`, that leave the busiest of
/// `threads` threads the fewest images: `g` minimising
/// `min(batch, ⌈⌈batch/g⌉/threads⌉ · g)`, the larger on ties (so the
/// largest on one thread). 64 images in groups of at most 5 are 13
/// groups, 7 and 6 on two threads, one thread idle for a seventh of the
/// op; groups of 4 split 8 and 8 (the DCGAN step about 5 % faster, the
/// transposed convolution alone unchanged within the noise). The grouping,
/// and with it the last bits of a result, follows the thread count: the
/// same on every run of one machine, not across machines.
fn balanced_group(batch: usize, most: usize, threads: usize) -> usize {
    (1..=most.max(1))
        .rev()
        .min_by_key(|&g| (batch.div_ceil(g).div_ceil(threads.max(1)) * g).min(batch))
        .unwrap_or(1)
}

/// Per-thread buffers: the column matrix and a packed copy of grid-shaped data.
struct Scratch<T> {
    cols: Vec<T>,
    packed: Vec<T>,
}

impl<T: WithDType> Scratch<T> {
    fn new() -> Self {
        Self {
            cols: Vec::new(),
            packed: Vec::new(),
        }
    }
}

/// Resizes `buffer` to `len` and returns it.
fn sized<T: WithDType>(buffer: &mut Vec<T>, len: usize) -> &mut [T] {
    buffer.resize(len, T::zero());
    buffer
}

fn gemm_parallelism(threads: usize, flops: usize) -> Parallelism {
    if threads > 1 && flops >= PARALLEL_GEMM_MIN {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// Runs `work(first_image, output_chunk, scratch, gemm_parallelism)` for
/// every group of the plan, writing group `i`'s outputs (`out_per_image`
/// each) into its own chunk: groups in parallel when there are enough of
/// them, else one at a time with a parallel gemm.
fn for_each_group<T: WithDType>(
    plan: Plan,
    batch: usize,
    output: &mut [T],
    out_per_image: usize,
    flops_per_image: usize,
    work: impl Fn(usize, &mut [T], &mut Scratch<T>, Parallelism) + Sync + Send,
) {
    if batch == 0 || out_per_image == 0 {
        return;
    }
    let chunk = plan.group * out_per_image;
    let threads = rayon::current_num_threads();
    if threads > 1 && batch.div_ceil(plan.group) >= threads && flops_per_image * batch >= PARALLEL_BATCH_MIN {
        output
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each_init(Scratch::new, |scratch, (i, out)| {
                work(i * plan.group, out, scratch, Parallelism::None)
            });
    } else {
        let parallelism = gemm_parallelism(threads, flops_per_image * plan.group);
        let mut scratch = Scratch::new();
        for (i, out) in output.chunks_mut(chunk).enumerate() {
            work(i * plan.group, out, &mut scratch, parallelism);
        }
    }
}

/// Copies band `oy0..oy1` of the grid-shaped data (`[rows, grid]` per image)
/// of `images` consecutive images into `packed` as one `[rows, images·band]`
/// matrix.
fn pack_grid<T: WithDType>(
    g: &Geometry,
    rows: usize,
    data: &[T],
    images: usize,
    oy0: usize,
    oy1: usize,
    packed: &mut [T],
) {
    let (grid, band) = (g.grid_len(), (oy1 - oy0) * g.out_w);
    let n = images * band;
    for j in 0..images {
        let image = &data[j * rows * grid..(j + 1) * rows * grid];
        for r in 0..rows {
            packed[r * n + j * band..][..band].copy_from_slice(&image[r * grid + oy0 * g.out_w..][..band]);
        }
    }
}

/// The column matrices of grid rows `oy0..oy1` of the first `images`
/// images (`[C, H, W]` each) of `xs`, side by side in `cols` as one
/// `[C·kh·kw, images·band]` matrix.
fn band_cols<'a, T: WithDType>(
    g: &Geometry,
    xs: &[T],
    images: usize,
    (oy0, oy1): (usize, usize),
    cols: &'a mut Vec<T>,
) -> &'a mut [T] {
    let band = (oy1 - oy0) * g.out_w;
    let n = images * band;
    let cols = sized(cols, g.col_rows() * n);
    im2col(g, xs, images, (oy0, oy1), cols, n);
    cols
}

/// Grid rows `oy0..oy1` of the first `images` grid-shaped images
/// (`[m, grid]` each) of `us` as one `[m, images·band]` matrix: a strided
/// view of `us` for a single image, else a copy packed into `packed`.
fn band_matrix<'a, T: WithDType>(
    g: &Geometry,
    m: usize,
    us: &'a [T],
    images: usize,
    (oy0, oy1): (usize, usize),
    packed: &'a mut Vec<T>,
) -> Mat<'a, T> {
    if images == 1 {
        return Mat {
            data: &us[oy0 * g.out_w..],
            row_stride: g.grid_len(),
            col_stride: 1,
        };
    }
    let n = images * (oy1 - oy0) * g.out_w;
    pack_grid(g, m, us, images, oy0, oy1, sized(packed, m * n));
    Mat::rows(&packed[..m * n], n)
}

/// `y_b = W · im2col(x_b)` for every image `b`.
fn forward<T: WithDType>(g: &Geometry, batch: usize, m: usize, xs: &[T], kernel: &[T]) -> Vec<T> {
    let (k, grid) = (g.col_rows(), g.grid_len());
    let plan = Plan::new(g, batch);
    let mut ys = vec![T::zero(); batch * m * grid];
    for_each_group(
        plan,
        batch,
        &mut ys,
        m * grid,
        m * k * grid,
        |first, y, scratch, par| {
            let images = y.len() / (m * grid);
            for (oy0, oy1) in plan.bands(g) {
                let band = (oy1 - oy0) * g.out_w;
                let n = images * band;
                let cols = band_cols(g, &xs[first * g.image_len()..], images, (oy0, oy1), &mut scratch.cols);
                if images == 1 {
                    let dst = &mut y[oy0 * g.out_w..];
                    matmul(
                        (m, n, k),
                        dst,
                        grid,
                        false,
                        Mat::rows(kernel, k),
                        Mat::rows(cols, n),
                        par,
                    );
                } else {
                    let out = sized(&mut scratch.packed, m * n);
                    matmul((m, n, k), out, n, false, Mat::rows(kernel, k), Mat::rows(cols, n), par);
                    for j in 0..images {
                        for r in 0..m {
                            y[j * m * grid + r * grid..][..band].copy_from_slice(&out[r * n + j * band..][..band]);
                        }
                    }
                }
            }
        },
    );
    ys
}

/// `z_b = col2im(Wᵀ · u_b)` for every image `b`.
fn adjoint<T: WithDType>(g: &Geometry, batch: usize, m: usize, us: &[T], kernel: &[T]) -> Vec<T> {
    let (k, grid) = (g.col_rows(), g.grid_len());
    let plan = Plan::new(g, batch);
    let mut zs = vec![T::zero(); batch * g.image_len()];
    for_each_group(
        plan,
        batch,
        &mut zs,
        g.image_len(),
        m * k * grid,
        |first, z, scratch, par| {
            let images = z.len() / g.image_len();
            let u = &us[first * m * grid..(first + images) * m * grid];
            for (oy0, oy1) in plan.bands(g) {
                let band = (oy1 - oy0) * g.out_w;
                let n = images * band;
                let rhs = band_matrix(g, m, u, images, (oy0, oy1), &mut scratch.packed);
                let cols = sized(&mut scratch.cols, k * n);
                matmul((k, n, m), cols, n, false, Mat::transposed(kernel, k), rhs, par);
                col2im(g, cols, images, (oy0, oy1), z, n);
            }
        },
    );
    zs
}

/// Partial sums of a kernel gradient computed in parallel; a constant, so
/// the order of the floating-point sum does not depend on the scheduling.
const KERNEL_GRAD_PARTS: usize = 8;

/// `Σ_b u_b · im2col(x_b)ᵀ`, accumulated in [`KERNEL_GRAD_PARTS`] parts
/// and then summed in order.
///
/// Both operands run along the grid, so gemm must repack one of them into
/// panels, and it repacks its left operand: where the column matrix has
/// more rows (`C·kh·kw ≥ m`) the sum is taken transposed,
/// `Σ_b im2col(x_b) · u_bᵀ` (`[C·kh·kw, m]`), and turned round once at the
/// end, so that the `m`-row output gradient is repacked instead (9× fewer
/// values for a 3×3 convolution with as many channels in as out; repacking
/// the column matrix was 7 % of the diffusion UNet's step); a first layer
/// (`C·kh·kw = 9` for one input channel) keeps the direct product.
fn kernel_grad<T: WithDType>(g: &Geometry, batch: usize, m: usize, xs: &[T], us: &[T]) -> Vec<T> {
    let (k, grid) = (g.col_rows(), g.grid_len());
    let plan = Plan::new(g, batch);
    let transposed = k >= m;
    let accumulate = |first: usize, acc: &mut [T], scratch: &mut Scratch<T>, par: Parallelism| {
        let images = plan.group.min(batch - first);
        let u = &us[first * m * grid..(first + images) * m * grid];
        for (oy0, oy1) in plan.bands(g) {
            let n = images * (oy1 - oy0) * g.out_w;
            let cols = band_cols(g, &xs[first * g.image_len()..], images, (oy0, oy1), &mut scratch.cols);
            let u_band = band_matrix(g, m, u, images, (oy0, oy1), &mut scratch.packed);
            if transposed {
                matmul((k, m, n), acc, m, true, Mat::rows(cols, n), u_band.t(), par);
            } else {
                matmul((m, k, n), acc, k, true, u_band, Mat::transposed(cols, n), par);
            }
        }
    };
    let threads = rayon::current_num_threads();
    let groups: Vec<usize> = (0..batch).step_by(plan.group.max(1)).collect();
    let total = if threads > 1 && groups.len() >= threads && m * k * grid * batch >= PARALLEL_BATCH_MIN {
        // A fixed number of accumulators over contiguous runs of groups,
        // summed in order: the same sum in the same order on every run
        // (rayon's fold and reduce split by work stealing, which made the
        // gradient differ in its last bits from run to run).
        let parts = groups.len().min(KERNEL_GRAD_PARTS);
        let per_part = groups.len().div_ceil(parts);
        let partials: Vec<Vec<T>> = groups
            .par_chunks(per_part)
            .map(|firsts| {
                let (mut acc, mut scratch) = (vec![T::zero(); m * k], Scratch::new());
                for &first in firsts {
                    accumulate(first, &mut acc, &mut scratch, Parallelism::None);
                }
                acc
            })
            .collect();
        let mut partials = partials.into_iter();
        let mut total = partials.next().unwrap_or_else(|| vec![T::zero(); m * k]);
        for part in partials {
            total.iter_mut().zip(&part).for_each(|(x, y)| *x += *y);
        }
        total
    } else {
        let mut acc = vec![T::zero(); m * k];
        let mut scratch = Scratch::new();
        let par = gemm_parallelism(threads, m * k * grid * plan.group);
        for first in groups {
            accumulate(first, &mut acc, &mut scratch, par);
        }
        acc
    };
    if !transposed {
        return total;
    }
    // `[k, m]` → `[m, k]`.
    (0..m).flat_map(|i| total.iter().skip(i).step_by(m).copied()).collect()
}

/// Checks the operands of `op`: both 4-D, the kernel's input-channel
/// dimension `in_dim` (1 for a convolution's `[c_out, c_in, kh, kw]`, 0 for
/// a transposed convolution's `[c_in, c_out, kh, kw]`) equal to the input's
/// channel count, non-zero stride, dilation and kernel. Returns the input's
/// `(c_in, h, w)` followed by the kernel's `(c_out, kh, kw)`.
fn check_operands(
    op: &str,
    xs: &Tensor,
    kernel: &Tensor,
    in_dim: usize,
    stride: usize,
    dilation: usize,
) -> candle::Result<(usize, usize, usize, usize, usize, usize)> {
    let (_batch, c_in, height, width) = xs.dims4()?;
    let (k0, k1, kernel_h, kernel_w) = kernel.dims4()?;
    let (c_in_k, c_out) = if in_dim == 0 { (k0, k1) } else { (k1, k0) };
    if c_in != c_in_k {
        bail!("{op}: input has {c_in} channels but the kernel expects {c_in_k}")
    }
    if stride == 0 || dilation == 0 {
        bail!("{op}: stride ({stride}) and dilation ({dilation}) must be at least 1")
    }
    if kernel_h == 0 || kernel_w == 0 {
        bail!("{op}: empty kernel {:?}", (kernel_h, kernel_w))
    }
    Ok((c_in, height, width, c_out, kernel_h, kernel_w))
}

/// 2-D convolution (cross-correlation, as in PyTorch and Candle) of `xs`
/// `[batch, c_in, h, w]` with `kernel` `[c_out, c_in, kh, kw]`, zero padding
/// `padding` on each side, `stride` and `dilation` in both directions, one
/// group. The output is `[batch, c_out, h_out, w_out]` with
/// `h_out = ⌊(h + 2·padding − dilation·(kh − 1) − 1) / stride⌋ + 1`.
///
/// `y[b, o, i, j] = Σ_{c, p, q} W[o, c, p, q] · x[b, c, i·s − pad + p·d, j·s − pad + q·d]`.
/// With a bias: [`conv2d_with_bias`].
///
/// Same numbers and gradients as `xs.conv2d(kernel, padding, stride,
/// dilation, 1)`; on the CPU in `f32`/`f64` both passes run as im2col + gemm
/// (the module docs give the math), elsewhere this calls Candle's op.
///
/// # Errors
/// Operands that are not 4-D, channel counts that differ, a zero stride,
/// dilation or kernel size, a kernel larger than the padded input, or
/// operands on different devices or of different dtypes.
///
/// ```
/// use deepgen_core::candle::{Device, Tensor};
/// let xs = Tensor::ones((1, 1, 3, 3), deepgen_core::candle::DType::F32, &Device::Cpu)?;
/// let kernel = Tensor::ones((2, 1, 2, 2), deepgen_core::candle::DType::F32, &Device::Cpu)?;
/// let ys = deepgen_core::ops::conv2d(&xs, &kernel, 0, 1, 1)?;
/// assert_eq!(ys.dims(), &[1, 2, 2, 2]);
/// assert_eq!(ys.flatten_all()?.to_vec1::<f32>()?, vec![4.0; 8]);
/// # Ok::<(), deepgen_core::candle::Error>(())
/// ```
pub fn conv2d(xs: &Tensor, kernel: &Tensor, padding: usize, stride: usize, dilation: usize) -> candle::Result<Tensor> {
    conv2d_biased(xs, kernel, None, padding, stride, dilation)
}

/// [`conv2d`] plus a bias along the output channels, `bias` `[c_out]` (or
/// `[batch, c_out]`, one per example and channel, e.g. a convolution's bias
/// plus a time embedding): `conv2d(xs, kernel, …) + b`, computed as one op
/// whose output takes the bias in place.
///
/// Same numbers and gradients as [`add_channel_bias`] after [`conv2d`],
/// with one full-size graph node fewer (see the module docs).
///
/// # Errors
/// As [`conv2d`], and a bias that is neither `[c_out]` nor `[batch, c_out]`.
pub fn conv2d_with_bias(
    xs: &Tensor,
    kernel: &Tensor,
    bias: &Tensor,
    padding: usize,
    stride: usize,
    dilation: usize,
) -> candle::Result<Tensor> {
    conv2d_biased(xs, kernel, Some(bias), padding, stride, dilation)
}

fn conv2d_biased(
    xs: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
    dilation: usize,
) -> candle::Result<Tensor> {
    const OP: &str = "conv2d";
    let (c_in, height, width, _c_out, kernel_h, kernel_w) = check_operands(OP, xs, kernel, 1, stride, dilation)?;
    let out = |size: usize, k: usize| -> candle::Result<usize> {
        let span = dilation * (k - 1) + 1;
        match (size + 2 * padding).checked_sub(span) {
            Some(room) => Ok(room / stride + 1),
            None => bail!(
                "{OP}: kernel span {span} is larger than the padded input {}",
                size + 2 * padding
            ),
        }
    };
    let geometry = Geometry {
        channels: c_in,
        height,
        width,
        kernel_h,
        kernel_w,
        out_h: out(height, kernel_h)?,
        out_w: out(width, kernel_w)?,
        stride,
        padding,
        dilation,
    };
    if !fast_path(&[xs, kernel]) {
        let ys = candle_conv2d(xs, kernel, padding, stride, dilation)?;
        return match bias {
            Some(b) => add_channel_bias(&ys, b),
            None => Ok(ys),
        };
    }
    ConvOp::new(Kind::Forward, geometry)
        .keeping(kernel)
        .apply_biased(xs, kernel, bias)
}

/// Candle's own `conv2d`, for the devices and dtypes the fast path does not
/// take, with the operands rewritten around two shapes whose backward pass
/// fails in Candle 0.11.1 (`backprop.rs`, `Op::Conv2D`), for equivalent
/// convolutions it handles:
/// - padding with `2p ≥ K`: the input gradient's size `(H' − 1)·s + K − 2p`
///   is computed in unsigned arithmetic and can go below zero (an overflow
///   panic in debug builds, garbage in release). Padding the input explicitly
///   and convolving with `p = 0` gives the same output;
/// - `(H + 2p − K) mod s ≠ (W + 2p − K) mod s`: the transposed convolution's
///   output padding is taken from the height alone, so the input gradient
///   gets the wrong width. Zeros at the far end of the side with the smaller
///   remainder, up to the other remainder (less than `s`, so no new window
///   fits), make the two equal without changing the output.
fn candle_conv2d(
    xs: &Tensor,
    kernel: &Tensor,
    padding: usize,
    stride: usize,
    dilation: usize,
) -> candle::Result<Tensor> {
    let (_, _, k_h, k_w) = kernel.dims4()?;
    let (span_h, span_w) = (dilation * (k_h - 1) + 1, dilation * (k_w - 1) + 1);
    let (xs, padding) = if padding > 0 && 2 * padding >= span_h.min(span_w) {
        let padded = xs
            .pad_with_zeros(2, padding, padding)?
            .pad_with_zeros(3, padding, padding)?;
        (padded, 0)
    } else {
        (xs.clone(), padding)
    };
    let (_, _, h, w) = xs.dims4()?;
    let remainder = |n: usize, span: usize| (n + 2 * padding).checked_sub(span).map(|r| r % stride);
    let xs = match (remainder(h, span_h), remainder(w, span_w)) {
        (Some(r_h), Some(r_w)) if r_h > r_w => xs.pad_with_zeros(3, 0, r_h - r_w)?,
        (Some(r_h), Some(r_w)) if r_w > r_h => xs.pad_with_zeros(2, 0, r_w - r_h)?,
        _ => xs,
    };
    xs.conv2d(kernel, padding, stride, dilation, 1)
}

/// 2-D transposed convolution of `xs` `[batch, c_in, h, w]` with `kernel`
/// `[c_in, c_out, kh, kw]` (Candle's and PyTorch's layout), one group. The
/// output is `[batch, c_out, h_out, w_out]` with
/// `h_out = (h − 1)·stride − 2·padding + dilation·(kh − 1) + output_padding + 1`.
///
/// It is the adjoint of [`conv2d`] with the same kernel, padding, stride and
/// dilation: `⟨conv2d(y, W), x⟩ = ⟨y, conv_transpose2d(x, W)⟩`, i.e.
/// `z = col2im(Wᵀ · x)`; the input gradient of a convolution is this op
/// applied to the output gradient (seed 002).
///
/// Same numbers and gradients as `xs.conv_transpose2d(kernel, padding,
/// output_padding, stride, dilation)`; on the CPU in `f32`/`f64` both passes
/// run as col2im/im2col + gemm, elsewhere this calls Candle's op.
///
/// # Errors
/// Operands that are not 4-D, channel counts that differ, a zero stride,
/// dilation or kernel size, an empty output, or operands on different
/// devices or of different dtypes.
pub fn conv_transpose2d(
    xs: &Tensor,
    kernel: &Tensor,
    padding: usize,
    output_padding: usize,
    stride: usize,
    dilation: usize,
) -> candle::Result<Tensor> {
    conv_transpose2d_biased(xs, kernel, None, (padding, output_padding, stride, dilation))
}

/// [`conv_transpose2d`] plus a bias along the output channels, `bias`
/// `[c_out]` (or `[batch, c_out]`), as one op: a decoder's or generator's
/// `nn.ConvTranspose2d` with its bias.
///
/// Same numbers and gradients as [`add_channel_bias`] after
/// [`conv_transpose2d`], with one full-size graph node fewer.
///
/// # Errors
/// As [`conv_transpose2d`], and a bias that is neither `[c_out]` nor
/// `[batch, c_out]`.
pub fn conv_transpose2d_with_bias(
    xs: &Tensor,
    kernel: &Tensor,
    bias: &Tensor,
    padding: usize,
    output_padding: usize,
    stride: usize,
    dilation: usize,
) -> candle::Result<Tensor> {
    conv_transpose2d_biased(xs, kernel, Some(bias), (padding, output_padding, stride, dilation))
}

fn conv_transpose2d_biased(
    xs: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    (padding, output_padding, stride, dilation): (usize, usize, usize, usize),
) -> candle::Result<Tensor> {
    const OP: &str = "conv_transpose2d";
    let (_c_in, height, width, c_out, kernel_h, kernel_w) = check_operands(OP, xs, kernel, 0, stride, dilation)?;
    let out = |size: usize, k: usize| -> candle::Result<usize> {
        let full = size.saturating_sub(1) * stride + dilation * (k - 1) + output_padding + 1;
        match full.checked_sub(2 * padding) {
            Some(out) if out > 0 && size > 0 => Ok(out),
            _ => {
                bail!("{OP}: input size {size}, kernel {k}, stride {stride} and padding {padding} give an empty output")
            }
        }
    };
    let geometry = Geometry {
        channels: c_out,
        height: out(height, kernel_h)?,
        width: out(width, kernel_w)?,
        kernel_h,
        kernel_w,
        out_h: height,
        out_w: width,
        stride,
        padding,
        dilation,
    };
    if !fast_path(&[xs, kernel]) {
        let ys = xs.conv_transpose2d(kernel, padding, output_padding, stride, dilation)?;
        return match bias {
            Some(b) => add_channel_bias(&ys, b),
            None => Ok(ys),
        };
    }
    ConvOp::new(Kind::Adjoint, geometry)
        .keeping(kernel)
        .apply_biased(xs, kernel, bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{flat, prop_close};
    use crate::rng::{randn, rng_from_seed};
    use candle::{DType, Device, Var};
    use proptest::prelude::*;

    /// Largest allowed `max|ours − candle| / max|candle|` over the elements of
    /// a value or gradient (f32 reductions in a different order).
    const REL_TOL: f64 = 1e-4;
    /// The same for central finite differences in f64 (step [`FD_STEP`]).
    const FD_REL_TOL: f64 = 1e-6;
    const FD_STEP: f64 = 1e-5;

    fn fail(e: candle::Error) -> TestCaseError {
        TestCaseError::fail(e.to_string())
    }

    #[derive(Clone, Copy, Debug)]
    struct Case {
        batch: usize,
        c_in: usize,
        c_out: usize,
        height: usize,
        width: usize,
        kernel_h: usize,
        kernel_w: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
        output_padding: usize,
        seed: u64,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            (1..=3usize, 1..=4usize, 1..=4usize, 1..=10usize, 1..=10usize),
            (1..=4usize, 1..=4usize, 1..=3usize, 0..=2usize, 1..=2usize),
            (0..3usize, any::<u64>()),
        )
            .prop_map(
                |(
                    (batch, c_in, c_out, height, width),
                    (kernel_h, kernel_w, stride, padding, dilation),
                    (output_padding, seed),
                )| Case {
                    batch,
                    c_in,
                    c_out,
                    height,
                    width,
                    kernel_h,
                    kernel_w,
                    stride,
                    padding,
                    dilation,
                    // PyTorch requires output_padding < max(stride, dilation);
                    // Candle's backward needs output_padding < stride.
                    output_padding: output_padding % stride,
                    seed,
                },
            )
    }

    fn fits_conv(c: &Case) -> bool {
        c.dilation * (c.kernel_h - 1) < c.height + 2 * c.padding
            && c.dilation * (c.kernel_w - 1) < c.width + 2 * c.padding
    }

    fn transposed_output_is_not_empty(c: &Case) -> bool {
        let full = |size: usize, k: usize| (size - 1) * c.stride + c.dilation * (k - 1) + c.output_padding + 1;
        full(c.height, c.kernel_h) > 2 * c.padding && full(c.width, c.kernel_w) > 2 * c.padding
    }

    /// Candle's conv2d backward (backprop.rs) pads its input gradient by the
    /// height's remainder in both directions and computes
    /// `(out_h − 1)·stride + dilation·(kh − 1) + 1 − 2·padding` in `usize`;
    /// compare only where that is right and does not underflow.
    fn candle_conv_backward_is_right(c: &Case) -> bool {
        let room = |size: usize, k: usize| size + 2 * c.padding - c.dilation * (k - 1) - 1;
        let out_h = room(c.height, c.kernel_h) / c.stride + 1;
        room(c.height, c.kernel_h) % c.stride == room(c.width, c.kernel_w) % c.stride
            && (out_h - 1) * c.stride + c.dilation * (c.kernel_h - 1) + 1 >= 2 * c.padding
    }

    fn random(seed: u64, shape: (usize, usize, usize, usize), dtype: DType) -> Var {
        let t = randn(&mut rng_from_seed(seed), shape, &Device::Cpu).unwrap();
        Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap()
    }

    /// Value, input gradient and kernel gradient of `Σ y ⊙ r` for a random `r`.
    fn value_and_grads(
        op: impl Fn(&Tensor, &Tensor) -> candle::Result<Tensor>,
        xs: &Var,
        kernel: &Var,
        seed: u64,
    ) -> candle::Result<(Tensor, Tensor, Tensor)> {
        let ys = op(xs.as_tensor(), kernel.as_tensor())?;
        let r = randn(&mut rng_from_seed(seed), ys.shape(), &Device::Cpu)?.to_dtype(ys.dtype())?;
        let grads = (&ys * &r)?.sum_all()?.backward()?;
        let gx = grads.get(xs).cloned().unwrap_or(xs.zeros_like()?);
        let gk = grads.get(kernel).cloned().unwrap_or(kernel.zeros_like()?);
        Ok((ys, gx, gk))
    }

    /// `ours` against Candle's op `reference` on random f32 operands (the
    /// kernel shaped `kernel_shape`): the value and both gradients.
    fn check_against_candle(
        c: Case,
        kernel_shape: (usize, usize, usize, usize),
        ours: impl Fn(&Tensor, &Tensor) -> candle::Result<Tensor>,
        reference: impl Fn(&Tensor, &Tensor) -> candle::Result<Tensor>,
    ) -> std::result::Result<(), TestCaseError> {
        let xs = random(c.seed, (c.batch, c.c_in, c.height, c.width), DType::F32);
        let kernel = random(c.seed ^ 1, kernel_shape, DType::F32);
        let ours = value_and_grads(ours, &xs, &kernel, c.seed ^ 2).map_err(fail)?;
        let reference = value_and_grads(reference, &xs, &kernel, c.seed ^ 2).map_err(fail)?;
        prop_close(&ours, &reference, ["value", "∂x", "∂W"], REL_TOL, c)
    }

    fn check_conv2d(c: Case) -> std::result::Result<(), TestCaseError> {
        let (p, s, d) = (c.padding, c.stride, c.dilation);
        let kernel_shape = (c.c_out, c.c_in, c.kernel_h, c.kernel_w);
        check_against_candle(
            c,
            kernel_shape,
            |x, k| conv2d(x, k, p, s, d),
            |x, k| x.conv2d(k, p, s, d, 1),
        )
    }

    fn check_conv_transpose2d(c: Case) -> std::result::Result<(), TestCaseError> {
        let (p, op, s, d) = (c.padding, c.output_padding, c.stride, c.dilation);
        let kernel_shape = (c.c_in, c.c_out, c.kernel_h, c.kernel_w);
        let ours = |x: &Tensor, k: &Tensor| conv_transpose2d(x, k, p, op, s, d);
        check_against_candle(c, kernel_shape, ours, |x, k| x.conv_transpose2d(k, p, op, s, d))
    }

    /// `⟨conv2d(x, W), y⟩ = ⟨x, conv_transpose2d(y, W)⟩` (seed 002).
    fn check_adjoint(c: Case) -> std::result::Result<(), TestCaseError> {
        let xs = random(c.seed, (c.batch, c.c_in, c.height, c.width), DType::F64);
        let kernel = random(c.seed ^ 1, (c.c_out, c.c_in, c.kernel_h, c.kernel_w), DType::F64);
        let conv = conv2d(&xs, &kernel, c.padding, c.stride, c.dilation).map_err(fail)?;
        let (_, _, oh, ow) = conv.dims4().unwrap();
        let ys = random(c.seed ^ 3, (c.batch, c.c_out, oh, ow), DType::F64);
        // The output padding that gives back the input's size.
        let extra = |size: usize, out: usize, k: usize| {
            size + 2 * c.padding - ((out - 1) * c.stride + c.dilation * (k - 1) + 1)
        };
        let (eh, ew) = (extra(c.height, oh, c.kernel_h), extra(c.width, ow, c.kernel_w));
        prop_assume!(eh == ew);
        let back = conv_transpose2d(&ys, &kernel, c.padding, eh, c.stride, c.dilation).map_err(fail)?;
        let dot = |a: Tensor, b: &Tensor| -> candle::Result<f64> { (a * b)?.sum_all()?.to_scalar::<f64>() };
        let (lhs, rhs) = (
            dot(conv, ys.as_tensor()).map_err(fail)?,
            dot(back, xs.as_tensor()).map_err(fail)?,
        );
        prop_assert!(
            (lhs - rhs).abs() <= 1e-10 * lhs.abs().max(1.0),
            "{lhs} vs {rhs} for {c:?}"
        );
        Ok(())
    }

    /// The one-op convolution plus bias ([`conv2d_with_bias`],
    /// [`conv_transpose2d_with_bias`]; a bias `[C]`, or `[N, C]` when
    /// `per_example`) against the product followed by Candle's
    /// `broadcast_add`, in f64: the value and the gradients of the input,
    /// the kernel and the bias of `Σ y ⊙ r`.
    fn check_biased(c: Case, transposed: bool, per_example: bool) -> std::result::Result<(), TestCaseError> {
        let (p, op, s, d) = (c.padding, c.output_padding, c.stride, c.dilation);
        let kernel_shape = if transposed {
            (c.c_in, c.c_out, c.kernel_h, c.kernel_w)
        } else {
            (c.c_out, c.c_in, c.kernel_h, c.kernel_w)
        };
        let xs = random(c.seed, (c.batch, c.c_in, c.height, c.width), DType::F64);
        let kernel = random(c.seed ^ 1, kernel_shape, DType::F64);
        let bias_shape: &[usize] = if per_example { &[c.batch, c.c_out] } else { &[c.c_out] };
        let bias = randn(&mut rng_from_seed(c.seed ^ 4), bias_shape, &Device::Cpu)
            .and_then(|b| b.to_dtype(DType::F64))
            .and_then(|b| Var::from_tensor(&b))
            .map_err(fail)?;
        let product = |x: &Tensor, k: &Tensor| {
            if transposed {
                conv_transpose2d(x, k, p, op, s, d)
            } else {
                conv2d(x, k, p, s, d)
            }
        };
        let run = |fused: bool| -> candle::Result<[Tensor; 4]> {
            let (x, k, b) = (xs.as_tensor(), kernel.as_tensor(), bias.as_tensor());
            let ys = match (fused, transposed) {
                (true, false) => conv2d_with_bias(x, k, b, p, s, d)?,
                (true, true) => conv_transpose2d_with_bias(x, k, b, p, op, s, d)?,
                (false, _) => {
                    let dims = if per_example {
                        (c.batch, c.c_out, 1, 1)
                    } else {
                        (1, c.c_out, 1, 1)
                    };
                    product(x, k)?.broadcast_add(&b.reshape(dims)?)?
                }
            };
            let r = randn(&mut rng_from_seed(c.seed ^ 2), ys.shape(), &Device::Cpu)?.to_dtype(DType::F64)?;
            let grads = (&ys * &r)?.sum_all()?.backward()?;
            let grad = |v: &Var| {
                grads
                    .get(v)
                    .cloned()
                    .ok_or_else(|| candle::Error::Msg("no gradient".into()))
            };
            Ok([ys.clone(), grad(&xs)?, grad(&kernel)?, grad(&bias)?])
        };
        let (ours, reference) = (run(true).map_err(fail)?, run(false).map_err(fail)?);
        for (what, (a, b)) in ["value", "∂x", "∂W", "∂b"].into_iter().zip(ours.iter().zip(&reference)) {
            let err = crate::ops::test_util::rel_err(a, b);
            prop_assert!(err <= 1e-12, "{what}: relative error {err:e} for {c:?}");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn prop_conv2d_matches_candle(c in case().prop_filter("kernel fits", fits_conv)
            .prop_filter("candle's backward is right", candle_conv_backward_is_right)) {
            check_conv2d(c)?;
        }

        /// The GPU/half-precision fallback rewrites the shapes Candle's
        /// backward gets wrong; on every shape it must give our values and
        /// gradients (the f32 kernels stand in for the fallback's Candle op).
        #[test]
        fn prop_candle_fallback_matches_on_every_shape(c in case().prop_filter("kernel fits", fits_conv)
            .prop_filter("no dilation", |c| c.dilation == 1)) {
            let (p, s) = (c.padding, c.stride);
            let kernel_shape = (c.c_out, c.c_in, c.kernel_h, c.kernel_w);
            check_against_candle(c, kernel_shape, |x, k| conv2d(x, k, p, s, 1), |x, k| candle_conv2d(x, k, p, s, 1))?;
        }

        #[test]
        fn prop_conv_transpose2d_matches_candle(c in case().prop_filter("output not empty", transposed_output_is_not_empty)) {
            check_conv_transpose2d(c)?;
        }

        #[test]
        fn prop_conv_with_bias_matches_conv_then_bias(c in case().prop_filter("kernel fits", fits_conv), per_example in any::<bool>()) {
            check_biased(c, false, per_example)?;
        }

        #[test]
        fn prop_conv_transpose_with_bias_matches_conv_transpose_then_bias(
            c in case().prop_filter("output not empty", transposed_output_is_not_empty),
            per_example in any::<bool>(),
        ) {
            check_biased(c, true, per_example)?;
        }

        #[test]
        fn prop_conv_adjoint_identity(c in case().prop_filter("kernel fits", fits_conv)) {
            check_adjoint(c)?;
        }
    }

    /// The kernel gradient of a batch large enough to be split across
    /// threads is the same to the bit however many threads share it and
    /// however they steal work (rayon's fold once decided the order of the
    /// partial sums, so runs differed in their last bits).
    #[test]
    fn the_parallel_kernel_gradient_is_deterministic() -> candle::Result<()> {
        let mut rng = rng_from_seed(5);
        let xs = randn(&mut rng, (256, 32, 14, 14), &Device::Cpu)?;
        let kernel = Var::from_tensor(&randn(&mut rng, (64, 32, 3, 3), &Device::Cpu)?)?;
        let gradient = |threads: usize| -> candle::Result<Vec<f64>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(candle::Error::wrap)?;
            pool.install(|| {
                let ys = conv2d(&xs, kernel.as_tensor(), 1, 1, 1)?;
                let grads = (ys.sqr()?.sum_all()?).backward()?;
                Ok(flat(grads.get(&kernel).expect("a kernel gradient")))
            })
        };
        let first = gradient(2)?;
        for threads in [3, 4, 2, 5] {
            assert!(
                gradient(threads)? == first,
                "{threads} threads gave another kernel gradient"
            );
        }
        Ok(())
    }

    /// Groups split evenly over the threads where they can, and never hold
    /// more than the cache allows.
    #[test]
    fn groups_balance_the_threads() {
        assert_eq!(balanced_group(64, 5, 2), 4); // 16 groups, 8 and 8 (not 13: 7 and 6)
        assert_eq!(balanced_group(128, 5, 2), 4);
        assert_eq!(balanced_group(64, 64, 2), 32);
        assert_eq!(balanced_group(10, 5, 2), 5);
        assert_eq!(balanced_group(64, 5, 1), 5); // one thread: the widest gemm
        assert_eq!(balanced_group(7, 3, 2), 2); // 4 groups, 2 and 2 (not 3 groups: 2 and 1)
        for (batch, most, threads) in [(64, 5, 2), (211, 148, 4), (3, 8, 16), (1, 1, 2)] {
            let g = balanced_group(batch, most, threads);
            assert!((1..=most).contains(&g), "{g} for {batch} {most} {threads}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        /// Stride-2, 4×4, padding-1 layers with at least eight channels on
        /// both sides take the Winograd path (`winograd.rs`): convolution
        /// and transposed convolution equal Candle's in value and in both
        /// gradients, for even image sizes with one tile, several and partial
        /// ones.
        #[test]
        fn prop_winograd_layers_match_candle(
            batch in 1usize..4,
            c_in in 8usize..20,
            c_out in 8usize..20,
            half_h in 1usize..12,
            half_w in 1usize..12,
            seed in any::<u64>(),
        ) {
            let c = Case {
                batch, c_in, c_out, height: 2 * half_h, width: 2 * half_w,
                kernel_h: 4, kernel_w: 4, stride: 2, padding: 1, dilation: 1, output_padding: 0, seed,
            };
            let g = Geometry { channels: c_in, height: c.height, width: c.width, kernel_h: 4, kernel_w: 4,
                out_h: half_h, out_w: half_w, stride: 2, padding: 1, dilation: 1 };
            prop_assert!(winograd::applies(&g, c_out));
            check_conv2d(c)?;
            // The transposed layer from the small grid back up.
            check_conv_transpose2d(Case { height: half_h, width: half_w, ..c })?;
        }
    }

    /// Shapes that exercise the gemm plans the small property-test shapes do
    /// not reach: several groups of whole images with a short last group
    /// (run in parallel), images cut into bands of grid rows, and whole
    /// images alone; the kernel gradient taken transposed (`C·kh·kw ≥
    /// c_out`) and directly (the one-channel first layer, 9 < 32).
    #[test]
    fn grouped_banded_and_lone_plans_match_candle() {
        let (grouped, banded, alone) = (0, 1, 2);
        for (batch, c_in, c_out, size, k, expected) in [
            (5, 64, 8, 30, 3, banded),
            (2, 3, 4, 66, 5, banded),
            (211, 1, 32, 16, 3, grouped), // a prime batch: the last group is short on any thread count
            (5, 1, 32, 28, 3, alone),
        ] {
            let g = Geometry {
                channels: c_in,
                height: size,
                width: size,
                kernel_h: k,
                kernel_w: k,
                out_h: size - k + 1,
                out_w: size - k + 1,
                stride: 1,
                padding: 0,
                dilation: 1,
            };
            let plan = Plan::new(&g, batch);
            let kind = match (plan.group, plan.band_rows) {
                (group, _) if group > 1 && group < batch => grouped,
                (1, rows) if rows < g.out_h => banded,
                (1, _) => alone,
                _ => panic!("{plan:?} for a batch of {batch}"),
            };
            assert_eq!(kind, expected, "{plan:?}");
            let case = Case {
                batch,
                c_in,
                c_out,
                height: size,
                width: size,
                kernel_h: k,
                kernel_w: k,
                stride: 1,
                padding: 0,
                dilation: 1,
                output_padding: 0,
                seed: size as u64,
            };
            check_conv2d(case).unwrap();
            // The transposed convolution's grid is its input.
            check_conv_transpose2d(Case {
                c_in: c_out,
                c_out: c_in,
                height: size - k + 1,
                width: size - k + 1,
                ..case
            })
            .unwrap();
        }
    }

    /// Central differences of `L = Σ op(a, b) ⊙ r` with respect to every
    /// element of `a` and `b`, against the autograd gradients, in f64.
    fn finite_difference_check(
        op: impl Fn(&Tensor, &Tensor) -> candle::Result<Tensor>,
        a: &Var,
        b: &Var,
    ) -> candle::Result<()> {
        let (ys, ga, gb) = value_and_grads(&op, a, b, 99)?;
        let r = randn(&mut rng_from_seed(99), ys.shape(), &Device::Cpu)?.to_dtype(DType::F64)?;
        let loss = |a: &Tensor, b: &Tensor| -> candle::Result<f64> { (op(a, b)? * &r)?.sum_all()?.to_scalar::<f64>() };
        check_central_differences(a, &ga, |a| loss(a, b.as_tensor()))?;
        check_central_differences(b, &gb, |b| loss(a.as_tensor(), b))
    }

    /// Checks `autograd`, the gradient of the scalar function `f` at `at`,
    /// against central differences of `f` (step [`FD_STEP`]), element by
    /// element.
    fn check_central_differences(
        at: &Tensor,
        autograd: &Tensor,
        f: impl Fn(&Tensor) -> candle::Result<f64>,
    ) -> candle::Result<()> {
        let (base, autograd) = (flat(at), flat(autograd));
        let scale = autograd.iter().fold(1e-12f64, |m, g| m.max(g.abs()));
        for i in 0..base.len() {
            let shifted = |delta: f64| -> candle::Result<f64> {
                let mut v = base.clone();
                v[i] += delta;
                f(&Tensor::from_vec(v, at.shape(), &Device::Cpu)?)
            };
            let numeric = (shifted(FD_STEP)? - shifted(-FD_STEP)?) / (2.0 * FD_STEP);
            let err = (numeric - autograd[i]).abs() / scale;
            assert!(
                err <= FD_REL_TOL,
                "element {i}: numeric {numeric} vs autograd {} ({err:e})",
                autograd[i]
            );
        }
        Ok(())
    }

    #[test]
    fn conv2d_gradients_match_finite_differences() -> candle::Result<()> {
        for (c_in, c_out, size, k, s, p, d) in [(2, 3, 5, 3, 1, 1, 1), (1, 2, 6, 2, 2, 0, 2), (3, 1, 4, 3, 3, 2, 1)] {
            let xs = random(7, (2, c_in, size, size), DType::F64);
            let kernel = random(8, (c_out, c_in, k, k), DType::F64);
            finite_difference_check(|x, w| conv2d(x, w, p, s, d), &xs, &kernel)?;
        }
        Ok(())
    }

    #[test]
    fn conv_transpose2d_gradients_match_finite_differences() -> candle::Result<()> {
        for (c_in, c_out, size, k, s, p, op, d) in [(2, 3, 4, 3, 2, 1, 1, 1), (1, 2, 3, 4, 1, 2, 0, 2)] {
            let xs = random(9, (2, c_in, size, size), DType::F64);
            let kernel = random(10, (c_in, c_out, k, k), DType::F64);
            finite_difference_check(|x, w| conv_transpose2d(x, w, p, op, s, d), &xs, &kernel)?;
        }
        Ok(())
    }

    /// The kernel-gradient op is itself differentiable (second derivatives of
    /// a convolution go through it), in both of its arguments.
    #[test]
    fn kernel_gradient_op_is_differentiable() -> candle::Result<()> {
        let geometry = Geometry {
            channels: 2,
            height: 5,
            width: 4,
            kernel_h: 3,
            kernel_w: 2,
            out_h: 3,
            out_w: 2,
            stride: 2,
            padding: 1,
            dilation: 1,
        };
        let op = ConvOp::new(Kind::Kernel, geometry);
        let xs = random(11, (2, 2, 5, 4), DType::F64);
        let us = random(12, (2, 3, 3, 2), DType::F64);
        finite_difference_check(|x, u| op.clone().apply(x, u), &xs, &us)
    }

    /// Gradients of gradients (gradient penalties) go through the backward
    /// ops: `h(W) = ⟨∂f/∂x, v⟩` for `f = ½‖conv2d(x, W)‖²` involves all three
    /// products, and `∂h/∂W` by double backward must match central
    /// differences of `h`. Candle keeps the graph of a backward pass only with
    /// `CANDLE_GRAD_DO_NOT_DETACH` set before the first backward of a thread,
    /// so the check runs in a child process of this test binary with the
    /// variable set.
    #[test]
    fn second_derivatives_match_finite_differences() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "ops::conv::tests::second_order_child",
                "--test-threads=1",
            ])
            .env("CANDLE_GRAD_DO_NOT_DETACH", "1")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the second-order check failed; rerun it with --ignored --nocapture"
        );
    }

    #[test]
    #[ignore = "run by second_derivatives_match_finite_differences with CANDLE_GRAD_DO_NOT_DETACH=1"]
    fn second_order_child() -> candle::Result<()> {
        if !std::env::var("CANDLE_GRAD_DO_NOT_DETACH").is_ok_and(|v| v == "1") {
            // `--include-ignored` runs this directly: without the variable
            // Candle detaches gradients, so only the parent's run is a check.
            return Ok(());
        }
        let xs = random(21, (2, 2, 5, 5), DType::F64);
        let kernel = random(22, (3, 2, 3, 3), DType::F64);
        let v = randn(&mut rng_from_seed(23), (2, 2, 5, 5), &Device::Cpu)?.to_dtype(DType::F64)?;
        // h(W) = ⟨∂f/∂x, v⟩ with f = ½‖conv2d(x, W)‖², returned with its graph.
        let h = |w: &Tensor| -> candle::Result<Tensor> {
            let f = (conv2d(xs.as_tensor(), w, 1, 2, 1)?.sqr()?.sum_all()? * 0.5)?;
            let grads = f.backward()?;
            (grads.get(&xs).unwrap() * &v)?.sum_all()
        };
        let grads = h(kernel.as_tensor())?.backward()?;
        check_central_differences(kernel.as_tensor(), grads.get(&kernel).unwrap(), |w| {
            h(w)?.to_scalar::<f64>()
        })?;
        // The same through the Winograd layers and their fused backward pass
        // (`ConvOp::fused_backward`), a convolution and a transposed one.
        for transposed in [false, true] {
            let size = if transposed { 2 } else { 4 };
            let xs = random(24, (1, 8, size, size), DType::F64);
            let kernel = random(25, (8, 8, 4, 4), DType::F64);
            let v = random(26, (1, 8, size, size), DType::F64);
            let h = |w: &Tensor| -> candle::Result<Tensor> {
                let ys = match transposed {
                    false => conv2d(xs.as_tensor(), w, 1, 2, 1)?,
                    true => conv_transpose2d(xs.as_tensor(), w, 1, 0, 2, 1)?,
                };
                let grads = (ys.sqr()?.sum_all()? * 0.5)?.backward()?;
                (grads.get(&xs).unwrap() * v.as_tensor())?.sum_all()
            };
            let grads = h(kernel.as_tensor())?.backward()?;
            check_central_differences(kernel.as_tensor(), grads.get(&kernel).unwrap(), |w| {
                h(w)?.to_scalar::<f64>()
            })?;
        }
        Ok(())
    }

    /// The Winograd forward pass leaves its transform for one backward pass
    /// (`ConvOp::keeping`); a second backward pass of the same graph
    /// recomputes it and gets the same gradients.
    #[test]
    fn a_second_backward_pass_gets_the_same_gradients() -> candle::Result<()> {
        for transposed in [false, true] {
            let xs = random(31, (2, 8, 6, 6), DType::F32);
            let kernel = random(32, if transposed { (8, 16, 4, 4) } else { (16, 8, 4, 4) }, DType::F32);
            let ys = match transposed {
                false => conv2d(xs.as_tensor(), kernel.as_tensor(), 1, 2, 1)?,
                true => conv_transpose2d(xs.as_tensor(), kernel.as_tensor(), 1, 0, 2, 1)?,
            };
            let loss = ys.sqr()?.sum_all()?;
            let (first, second) = (loss.backward()?, loss.backward()?);
            for var in [&xs, &kernel] {
                let (a, b) = (first.get(var).unwrap(), second.get(var).unwrap());
                assert_eq!(flat(a), flat(b), "transposed: {transposed}");
            }
        }
        Ok(())
    }

    #[test]
    fn first_layer_inputs_get_no_gradient() -> candle::Result<()> {
        let xs = randn(&mut rng_from_seed(1), (2, 3, 8, 8), &Device::Cpu)?;
        let kernel = random(2, (4, 3, 3, 3), DType::F32);
        let grads = conv2d(&xs, &kernel, 1, 1, 1)?.sum_all()?.backward()?;
        assert!(grads.get(&xs).is_none());
        assert!(grads.get(&kernel).is_some());
        Ok(())
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let cpu = &Device::Cpu;
        let x = Tensor::zeros((1, 3, 5, 5), DType::F32, cpu).unwrap();
        let k = |shape: (usize, usize, usize, usize)| Tensor::zeros(shape, DType::F32, cpu).unwrap();
        assert!(conv2d(&x, &k((2, 4, 3, 3)), 0, 1, 1).is_err(), "channel mismatch");
        assert!(conv2d(&x, &k((2, 3, 3, 3)), 0, 0, 1).is_err(), "zero stride");
        assert!(conv2d(&x, &k((2, 3, 3, 3)), 0, 1, 0).is_err(), "zero dilation");
        assert!(
            conv2d(&x, &k((2, 3, 7, 7)), 0, 1, 1).is_err(),
            "kernel larger than input"
        );
        assert!(conv2d(&x, &k((2, 3, 0, 3)), 0, 1, 1).is_err(), "empty kernel");
        assert!(
            conv2d(&x.flatten_all().unwrap(), &k((2, 3, 3, 3)), 0, 1, 1).is_err(),
            "not 4-D"
        );
        assert!(
            conv2d(&x, &k((2, 3, 3, 3)).to_dtype(DType::F64).unwrap(), 0, 1, 1).is_err(),
            "dtypes differ"
        );
        assert!(
            conv_transpose2d(&x, &k((4, 2, 3, 3)), 0, 0, 1, 1).is_err(),
            "channel mismatch"
        );
        assert!(
            conv_transpose2d(&x, &k((3, 2, 1, 1)), 3, 0, 1, 1).is_err(),
            "empty output"
        );
        assert!(
            conv_transpose2d(&x, &k((3, 2, 3, 3)), 0, 0, 0, 1).is_err(),
            "zero stride"
        );
    }

    #[test]
    fn other_dtypes_fall_back_to_candle() -> candle::Result<()> {
        let x = Tensor::ones((1, 2, 4, 4), DType::F16, &Device::Cpu)?;
        let k = Tensor::ones((3, 2, 3, 3), DType::F16, &Device::Cpu)?;
        // Every output sums 2·3·3 ones.
        let ys = conv2d(&x, &k, 0, 1, 1)?.to_dtype(DType::F32)?;
        assert_eq!(ys.flatten_all()?.to_vec1::<f32>()?, vec![18.0; 12]);
        Ok(())
    }
}
