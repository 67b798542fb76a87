//! Fused, in-place optimizer updates on CPU storage: Adam/AdamW and SGD with
//! (Nesterov) momentum, each one sweep over a parameter, its gradient and
//! its state, allocating nothing.
//!
//! candle-nn's `AdamW` spends about ten allocating tensor ops per parameter
//! per step (`m·β₁`, `g·(1−β₁)`, their sum, `g²`, …, then `Var::set` copies);
//! on the 784-400-20 VAE that was as long as the forward and backward passes
//! together. Candle exposes in-place custom ops for one destination
//! (`Tensor::inplace_op2`), so the three destinations of an Adam step
//! (θ, m, v) are reached by nesting them: the op on θ (reading `g`) runs an
//! op on `m`, which runs an op on `v`, and the innermost one holds all four
//! slices and does the arithmetic. Each op holds its tensor's storage lock
//! for the duration, so nothing else can observe a half-updated state.
//!
//! The arithmetic is candle-nn's `AdamW`, operation for operation and in the
//! parameter's dtype, so the results match it to rounding:
//!
//! ```text
//! m ← m·β₁ + g·(1 − β₁)            v ← v·β₂ + g²·(1 − β₂)
//! θ ← θ·(1 − ηλ) − η · (m·s_m) / (√(v·s_v) + ε),   s_m = 1/(1 − β₁ᵗ), s_v = 1/(1 − β₂ᵗ)
//! ```
//!
//! with `g` already multiplied by the clipping factor. These functions
//! return `Ok(false)` when they cannot run (not on the CPU, not `f32`/`f64`,
//! dtypes or shapes that differ, a parameter that is not contiguous); the
//! optimizers then take their tensor-op path, which is what runs on CUDA and
//! Metal.

use super::simd::vectorized;
use super::{PARALLEL_MIN, contiguous_slice};
use candle::{CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Tensor, WithDType, bail};
use rayon::prelude::*;
use std::cell::Cell;
use std::marker::PhantomData;

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

/// The float types the fused updates run on.
pub(crate) trait Float: WithDType {
    /// The elements of `storage` if it holds this type.
    fn elements_mut(storage: &mut CpuStorage) -> Option<&mut Vec<Self>>;
    /// `√self`.
    fn sqrt(self) -> Self;
}

/// [`Float`] for a primitive float and its [`CpuStorage`] variant.
macro_rules! impl_float {
    ($t:ident, $variant:ident) => {
        impl Float for $t {
            fn elements_mut(storage: &mut CpuStorage) -> Option<&mut Vec<Self>> {
                match storage {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
        }
    };
}
impl_float!(f32, F32);
impl_float!(f64, F64);

fn slice_mut<'a, T: Float>(storage: &'a mut CpuStorage, layout: &Layout, op: &str) -> candle::Result<&'a mut [T]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: destination is not contiguous")
    };
    match T::elements_mut(storage) {
        Some(v) => Ok(&mut v[start..end]),
        None => bail!("{op}: destination dtype differs"),
    }
}

/// An in-place op that lends its destination's elements (and, as a binary
/// op, those of a read-only second operand) to the closure `f`, once.
/// Candle lends a storage out mutably only to an in-place op, which holds
/// the tensor's lock while it runs; nesting these reaches several
/// destinations at once.
struct Lend<T, F, R> {
    op: &'static str,
    f: Cell<Option<F>>,
    out: Cell<Option<R>>,
    element: PhantomData<T>,
}

impl<T, F, R> Lend<T, F, R> {
    fn new(op: &'static str, f: F) -> Self {
        Self {
            op,
            f: Cell::new(Some(f)),
            out: Cell::new(None),
            element: PhantomData,
        }
    }

    /// Runs `f` through `call` and keeps what it returns.
    fn run(&self, call: impl FnOnce(F) -> candle::Result<R>) -> candle::Result<()> {
        let Some(f) = self.f.take() else {
            bail!("{}: applied twice", self.op)
        };
        self.out.set(Some(call(f)?));
        Ok(())
    }

    /// What `f` returned.
    fn result(self) -> candle::Result<R> {
        match self.out.into_inner() {
            Some(out) => Ok(out),
            None => bail!("{}: not applied", self.op),
        }
    }
}

impl<T: Float, F: FnOnce(&mut [T]) -> candle::Result<R>, R> InplaceOp1 for Lend<T, F, R> {
    fn name(&self) -> &'static str {
        self.op
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle::Result<()> {
        let dst = slice_mut::<T>(storage, layout, self.op)?;
        self.run(|f| f(dst))
    }
}

impl<T: Float, F: FnOnce(&mut [T], &[T]) -> candle::Result<R>, R> InplaceOp2 for Lend<T, F, R> {
    fn name(&self) -> &'static str {
        self.op
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, ld: &Layout, src: &CpuStorage, ls: &Layout) -> candle::Result<()> {
        let dst = slice_mut::<T>(dst, ld, self.op)?;
        let src = contiguous_slice::<T>(src, ls, self.op)?;
        self.run(|f| f(dst, src))
    }
}

/// Calls `f` with the elements of the contiguous CPU tensor `t`, mutably.
fn with_slice_mut<T: Float, R>(
    t: &Tensor,
    op: &'static str,
    f: impl FnOnce(&mut [T]) -> candle::Result<R>,
) -> candle::Result<R> {
    let lend = Lend::new(op, f);
    t.inplace_op1(&lend)?;
    lend.result()
}

/// Calls `f` with the elements of `t`, mutably, and of `src`.
fn with_slices_mut<T: Float, R>(
    t: &Tensor,
    src: &Tensor,
    op: &'static str,
    f: impl FnOnce(&mut [T], &[T]) -> candle::Result<R>,
) -> candle::Result<R> {
    let lend = Lend::new(op, f);
    t.inplace_op2(src, &lend)?;
    lend.result()
}

/// True when `tensors` are CPU tensors of one float dtype and one shape,
/// contiguous; the gradient may be strided (it is made contiguous first).
fn fusable(state: &[&Tensor], grad: &Tensor) -> bool {
    let first = state[0];
    matches!(first.dtype(), DType::F32 | DType::F64)
        && grad.dtype() == first.dtype()
        && grad.device().is_cpu()
        && grad.shape() == first.shape()
        && state.iter().all(|t| {
            t.device().is_cpu() && t.dtype() == first.dtype() && t.shape() == first.shape() && t.is_contiguous()
        })
}

/// The address of a CPU tensor's buffer, to tell whether two tensors share
/// storage.
fn buffer_address(t: &Tensor) -> Option<usize> {
    let (storage, _) = t.storage_and_layout();
    match &*storage {
        candle::Storage::Cpu(CpuStorage::F32(v)) => Some(v.as_ptr() as usize),
        candle::Storage::Cpu(CpuStorage::F64(v)) => Some(v.as_ptr() as usize),
        _ => None,
    }
}

/// `g` as a contiguous tensor with storage of its own: a gradient that
/// aliases its parameter (`grad = θ.detach()`, say) is copied first, since
/// the update writes θ while it reads `g`.
fn own_contiguous(g: &Tensor, theta: &Tensor) -> candle::Result<Tensor> {
    let g = g.contiguous()?;
    if buffer_address(&g).is_some() && buffer_address(&g) == buffer_address(theta) {
        return g.copy();
    }
    Ok(g)
}

/// Runs `f` over matching chunks of the slices, in parallel when they are
/// long, and returns the sum of what it returns.
fn for_chunks<T: Float, const N: usize>(
    mut dst: [&mut [T]; N],
    src: &[T],
    f: impl Fn([&mut [T]; N], &[T]) -> f64 + Sync + Send,
) -> f64 {
    let n = src.len();
    if n < PARALLEL_MIN {
        return vectorized(
            #[inline(always)]
            || f(dst, src),
        );
    }
    // Split every slice at the same chunk boundaries, then hand the chunk
    // tuples to rayon.
    let mut parts: Vec<([&mut [T]; N], &[T])> = Vec::with_capacity(n.div_ceil(CHUNK));
    let mut rest_src = src;
    while !rest_src.is_empty() {
        let len = CHUNK.min(rest_src.len());
        let (head_src, tail_src) = rest_src.split_at(len);
        let mut heads: [&mut [T]; N] = std::array::from_fn(|_| <&mut [T]>::default());
        for (head, d) in heads.iter_mut().zip(dst.iter_mut()) {
            let (h, t) = std::mem::take(d).split_at_mut(len);
            *head = h;
            *d = t;
        }
        parts.push((heads, head_src));
        rest_src = tail_src;
    }
    // Collected in chunk order and summed in that order: rayon's own `sum`
    // splits by work stealing, so its f64 total would vary in its last bits.
    let sums: Vec<f64> = parts
        .into_par_iter()
        .map(|(d, s)| {
            vectorized(
                #[inline(always)]
                || f(d, s),
            )
        })
        .collect();
    sums.iter().sum()
}

/// The scalars of one Adam/AdamW step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamStep {
    /// η after the schedule.
    pub lr: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay λ.
    pub weight_decay: f64,
    /// The step number `t ≥ 1` of the bias corrections.
    pub t: i32,
    /// The clipping factor the gradient is multiplied by (1 without clipping).
    pub grad_scale: f64,
}

/// Updates θ, m, v in place; returns `Σ g²` of the raw (unclipped) gradient.
#[inline(always)]
fn adam_kernel<T: Float>(s: &AdamStep, theta: &mut [T], m: &mut [T], v: &mut [T], g: &[T]) -> f64 {
    let c = |x: f64| T::from_f64(x);
    let (beta1, one_minus_beta1) = (c(s.beta1), c(1.0 - s.beta1));
    let (beta2, one_minus_beta2) = (c(s.beta2), c(1.0 - s.beta2));
    let scale_m = c(1.0 / (1.0 - s.beta1.powi(s.t)));
    let scale_v = c(1.0 / (1.0 - s.beta2.powi(s.t)));
    let decay = c(1.0 - s.lr * s.weight_decay);
    let (lr, eps, grad_scale) = (c(s.lr), c(s.eps), c(s.grad_scale));
    // The update loop carries no reduction, so it vectorises; the sum of
    // squares is its own lane-wise pass (one running f64 sum in the loop
    // kept the whole update scalar: a third of the VAE's step).
    let sum_sq = slice_sum_of_squares(g);
    for (((theta, m), v), &g) in theta.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        // Multiplying by exactly 1 changes nothing, so the unclipped step is
        // candle-nn's to the bit.
        let g = g * grad_scale;
        *m = *m * beta1 + g * one_minus_beta1;
        *v = *v * beta2 + (g * g) * one_minus_beta2;
        let m_hat = *m * scale_m;
        let v_hat = *v * scale_v;
        *theta = *theta * decay - (m_hat / (v_hat.sqrt() + eps)) * lr;
    }
    sum_sq
}

/// `Σ g²` in f64, in eight independent lanes that the compiler vectorises.
fn slice_sum_of_squares<T: Float>(g: &[T]) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [0f64; LANES];
    let chunks = g.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|&x| x.to_f64() * x.to_f64()).sum();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += x.to_f64() * x.to_f64();
        }
    }
    lanes.iter().sum::<f64>() + tail
}

const ADAM: &str = "deepgen-fused-adam";

/// [`adam_in_place`] for parameters of element type `T`: the op on θ
/// (reading `g`) runs the one on `m`, which runs the one on `v`.
fn adam<T: Float>(theta: &Tensor, m: &Tensor, v: &Tensor, g: &Tensor, step: AdamStep) -> candle::Result<f64> {
    with_slices_mut::<T, _>(theta, g, ADAM, |theta, g| {
        with_slice_mut::<T, _>(m, ADAM, |m| {
            with_slice_mut::<T, _>(v, ADAM, |v| {
                if theta.len() != g.len() || m.len() != g.len() || v.len() != g.len() {
                    bail!("{ADAM}: parameter, gradient and state lengths differ")
                }
                Ok(for_chunks(
                    [theta, m, v],
                    g,
                    #[inline(always)]
                    move |[theta, m, v], g| adam_kernel(&step, theta, m, v, g),
                ))
            })
        })
    })
}

/// One fused Adam/AdamW update of `theta` and its moments `m`, `v` from the
/// gradient `g`; returns `Σ g²` of the unclipped gradient (read in the same
/// sweep), or `None` when the operands do not allow the fused update (see
/// the module docs).
pub(crate) fn adam_in_place(
    theta: &Tensor,
    m: &Tensor,
    v: &Tensor,
    g: &Tensor,
    step: &AdamStep,
) -> candle::Result<Option<f64>> {
    if !fusable(&[theta, m, v], g) {
        return Ok(None);
    }
    let g = own_contiguous(g, theta)?;
    // `fusable`: f32 or f64.
    let sum_sq = if theta.dtype() == DType::F32 {
        adam::<f32>(theta, m, v, &g, *step)?
    } else {
        adam::<f64>(theta, m, v, &g, *step)?
    };
    Ok(Some(sum_sq))
}

/// The scalars of one SGD step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SgdStep {
    /// η after the schedule.
    pub lr: f64,
    /// μ.
    pub momentum: f64,
    /// Coupled L2 weight decay.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// True at the first step, where the buffer starts as the gradient.
    pub first: bool,
    /// The clipping factor the gradient is multiplied by.
    pub grad_scale: f64,
}

#[inline(always)]
fn sgd_kernel<T: Float>(s: &SgdStep, theta: &mut [T], buffer: Option<&mut [T]>, g: &[T]) -> f64 {
    let c = |x: f64| T::from_f64(x);
    let (lr, momentum, weight_decay, grad_scale) = (c(s.lr), c(s.momentum), c(s.weight_decay), c(s.grad_scale));
    // g' = g + λθ (PyTorch's coupled decay), as the tensor path computes it.
    let decayed = |g: T, theta: T| {
        if s.weight_decay == 0.0 {
            g
        } else {
            g + theta * weight_decay
        }
    };
    match buffer {
        None => {
            for (theta, &g) in theta.iter_mut().zip(g) {
                let g = decayed(g * grad_scale, *theta);
                *theta -= g * lr;
            }
        }
        Some(buffer) => {
            for ((theta, b), &g) in theta.iter_mut().zip(buffer.iter_mut()).zip(g) {
                let g = decayed(g * grad_scale, *theta);
                *b = if s.first { g } else { *b * momentum + g };
                let direction = if s.nesterov { g + *b * momentum } else { *b };
                *theta -= direction * lr;
            }
        }
    }
    0.0
}

const SGD: &str = "deepgen-fused-sgd";

/// [`sgd_in_place`] for parameters of element type `T`: the op on θ
/// (reading `g`) runs the one on the momentum buffer, if any.
fn sgd<T: Float>(theta: &Tensor, buffer: Option<&Tensor>, g: &Tensor, step: SgdStep) -> candle::Result<()> {
    with_slices_mut::<T, _>(theta, g, SGD, |theta, g| {
        if theta.len() != g.len() {
            bail!("{SGD}: parameter and gradient lengths differ")
        }
        let Some(buffer) = buffer else {
            for_chunks(
                [theta],
                g,
                #[inline(always)]
                move |[theta], g| sgd_kernel(&step, theta, None, g),
            );
            return Ok(());
        };
        with_slice_mut::<T, _>(buffer, SGD, |buffer| {
            if buffer.len() != g.len() {
                bail!("{SGD}: buffer and gradient lengths differ")
            }
            for_chunks(
                [theta, buffer],
                g,
                #[inline(always)]
                move |[theta, buffer], g| sgd_kernel(&step, theta, Some(buffer), g),
            );
            Ok(())
        })
    })
}

/// One fused SGD update of `theta` (and its momentum `buffer` when given)
/// from `g`; `Ok(false)` when the operands do not allow it.
pub(crate) fn sgd_in_place(
    theta: &Tensor,
    buffer: Option<&Tensor>,
    g: &Tensor,
    step: &SgdStep,
) -> candle::Result<bool> {
    let mut state = vec![theta];
    state.extend(buffer);
    if !fusable(&state, g) {
        return Ok(false);
    }
    let g = own_contiguous(g, theta)?;
    // `fusable`: f32 or f64.
    if theta.dtype() == DType::F32 {
        sgd::<f32>(theta, buffer, &g, *step)?;
    } else {
        sgd::<f64>(theta, buffer, &g, *step)?;
    }
    Ok(true)
}

/// `Σ g²` in `f64` read straight from a CPU gradient's storage; `None` when
/// the gradient is not a contiguous `f32`/`f64` CPU tensor.
pub(crate) fn sum_of_squares(g: &Tensor) -> Option<f64> {
    let (storage, layout) = g.storage_and_layout();
    let (start, end) = layout.contiguous_offsets()?;
    let candle::Storage::Cpu(cpu) = &*storage else {
        return None;
    };
    match cpu {
        CpuStorage::F32(v) => Some(slice_sum_of_squares(&v[start..end])),
        CpuStorage::F64(v) => Some(slice_sum_of_squares(&v[start..end])),
        _ => None,
    }
}
