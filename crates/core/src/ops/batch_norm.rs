//! Batch normalisation, optionally followed by a rectifier, as one op with
//! a two-sweep backward.
//!
//! candle-nn's `BatchNorm` in training mode transposes the activation to
//! `[C, N·H·W]` (a full copy), then runs some fifteen tensor ops, each a
//! sweep with its own output and, in the backward pass, its own gradient
//! buffer; DCGAN's leaky ReLU after it is five more. For each channel `c`,
//! over its `M = N·H·W` values:
//!
//! ```text
//! μ_c, σ²_c = mean, biased variance (training; the running statistics in evaluation)
//! r = 1/√(σ² + ε),  x̂ = (x − μ) r,  z = γ_c x̂ + β_c,  y = act(z)
//! ∂z = ∂y ⊙ act'(z)
//! ∂β_c = Σ ∂z,   ∂γ_c = Σ ∂z x̂
//! ∂x = r γ_c (∂z − ∂β_c/M − x̂ ∂γ_c/M)     (training: μ, σ² depend on x)
//! ∂x = r γ_c ∂z                            (evaluation: they are constants)
//! ```
//!
//! The statistics are summed in f64 (two passes: the mean, then the squared
//! deviations), over a fixed split of the batch, so the result does not
//! depend on the number of threads. [`batch_norm`] returns them too, for
//! the running averages (PyTorch's rule, [`crate::nn::BatchNorm`]). On
//! other devices and dtypes it is candle-nn's formula.

use super::pointwise::{Activation, rectify};
use super::simd::vectorized;
use super::{CpuForward, Native, PARALLEL_MIN, contiguous_slice, fast_path, map_floats};
use candle::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor, WithDType, bail};
use rayon::prelude::*;

/// Pieces the batch is split into for the statistics: fixed, so that the
/// summation order (and the result) is the same on any number of threads.
const SPLITS: usize = 16;

/// `(n, c, inner)` of `[N, C, …]`.
fn dims(shape: &Shape) -> candle::Result<(usize, usize, usize)> {
    let d = shape.dims();
    if d.len() < 2 {
        bail!("batch_norm: rank {} input, expected [N, C, …]", d.len())
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

/// `x [N, C, …] → [μ (C), σ² (C)]`, the biased variance. Not differentiated:
/// the normalisation's backward pass accounts for the statistics.
#[derive(Clone, Copy, Debug)]
struct BatchMoments;

/// `(x, [γ; β; μ; σ²]) → act(γ (x − μ)/√(σ² + ε) + β)`.
#[derive(Clone, Copy, Debug)]
struct BatchNormOp {
    eps: f64,
    act: Activation,
    /// Whether `μ, σ²` are the batch's own (their gradient flows to `x`).
    train: bool,
}

/// `(x, [γ; β; μ; σ²], ∂y) → [∂x, ∂γ, ∂β, 0 (2C)]` flattened into one vector
/// (the zeros are the statistics' gradient, so that the tail has the
/// auxiliary operand's shape).
#[derive(Clone, Copy, Debug)]
struct BatchNormGrad {
    norm: BatchNormOp,
}

/// `K` per-channel sums over the batch, in f64: `block(i, c)` sums sample
/// `i`'s values of channel `c` in `T`; the blocks of each piece of a fixed
/// split of the batch are added in f64 (the pieces in parallel), then the
/// pieces in order.
fn channel_sums<T: WithDType, const K: usize>(
    (n, c): (usize, usize),
    parallel: bool,
    block: impl Fn(usize, usize) -> [T; K] + Sync,
) -> Vec<[f64; K]> {
    let per_split = n.div_ceil(SPLITS).max(1);
    // Each piece compiled for the CPU's widest vectors (`block` is inlined).
    let split_sums = |s: usize| {
        vectorized(
            #[inline(always)]
            || {
                let mut sums = vec![[0.0f64; K]; c];
                for i in s * per_split..((s + 1) * per_split).min(n) {
                    for (ch, sum) in sums.iter_mut().enumerate() {
                        for (acc, v) in sum.iter_mut().zip(block(i, ch)) {
                            *acc += v.to_f64();
                        }
                    }
                }
                sums
            },
        )
    };
    let splits = n.div_ceil(per_split);
    let parts: Vec<Vec<[f64; K]>> = if parallel {
        (0..splits).into_par_iter().map(split_sums).collect()
    } else {
        (0..splits).map(split_sums).collect()
    };
    let mut total = vec![[0.0f64; K]; c];
    for part in parts {
        for (t, p) in total.iter_mut().zip(part) {
            for (a, b) in t.iter_mut().zip(p) {
                *a += b;
            }
        }
    }
    total
}

/// Independent accumulators per sum, so that the compiler can vectorise a
/// reduction (one running sum is a chain of dependent additions).
const LANES: usize = 8;

/// `Σ_i f(a_i, b_i)` (`K` sums at once) over two equal-length slices, in
/// [`LANES`] partial sums of `T`.
#[inline(always)]
fn lane_sums<T: WithDType, const K: usize>(a: &[T], b: &[T], f: impl Fn(T, T) -> [T; K]) -> [T; K] {
    let mut acc = [[T::zero(); LANES]; K];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for l in 0..LANES {
            let v = f(xa[l], xb[l]);
            for k in 0..K {
                acc[k][l] += v[k];
            }
        }
    }
    let mut out = [T::zero(); K];
    for (&x, &y) in ra.iter().zip(rb) {
        let v = f(x, y);
        for k in 0..K {
            out[k] += v[k];
        }
    }
    for (o, lanes) in out.iter_mut().zip(acc) {
        for v in lanes {
            *o += v;
        }
    }
    out
}

/// `[μ; σ²]` per channel of `x`, in `T` (summed in f64).
fn moments<T: WithDType>(x: &[T], shape: (usize, usize, usize)) -> Vec<T> {
    let (n, c, inner) = shape;
    let parallel = x.len() >= PARALLEL_MIN;
    let at = |i: usize, ch: usize| &x[(i * c + ch) * inner..(i * c + ch + 1) * inner];
    let m = (n * inner).max(1) as f64;
    let sums = channel_sums((n, c), parallel, |i, ch| lane_sums(at(i, ch), at(i, ch), |v, _| [v]));
    let means: Vec<f64> = sums.iter().map(|s| s[0] / m).collect();
    let squares = channel_sums((n, c), parallel, |i, ch| {
        let mean = T::from_f64(means[ch]);
        lane_sums(at(i, ch), at(i, ch), |v, _| [(v - mean) * (v - mean)])
    });
    means
        .iter()
        .map(|&mu| T::from_f64(mu))
        .chain(squares.iter().map(|s| T::from_f64(s[0] / m)))
        .collect()
}

/// [`Activation`] as a constant, so that each kernel compiles to its own
/// branch-free loop.
const IDENTITY: u8 = 0;
/// See [`IDENTITY`].
const RELU: u8 = 1;
/// See [`IDENTITY`].
const LEAKY: u8 = 2;

/// `∂z = ∂y ⊙ act'(z)` for activation `MODE` (the rectifier's mask is `z > 0`).
#[inline(always)]
fn act_grad<T: WithDType, const MODE: u8>(d: T, z: T, slope: T) -> T {
    if MODE == IDENTITY || z > T::zero() {
        d
    } else if MODE == LEAKY {
        d * slope
    } else {
        T::zero()
    }
}

impl BatchNormOp {
    /// Per channel `(γ r, β − μ γ r)`, `r` and `μ`, from `[γ; β; μ; σ²]`.
    fn coefficients<T: WithDType>(&self, aux: &[T], c: usize) -> Vec<(T, T, T, T)> {
        (0..c)
            .map(|ch| {
                let (gamma, beta, mean, var) = (
                    aux[ch].to_f64(),
                    aux[c + ch].to_f64(),
                    aux[2 * c + ch].to_f64(),
                    aux[3 * c + ch].to_f64(),
                );
                let r = 1.0 / (var + self.eps).sqrt();
                (
                    T::from_f64(gamma * r),
                    T::from_f64(beta - mean * gamma * r),
                    T::from_f64(r),
                    T::from_f64(mean),
                )
            })
            .collect()
    }

    fn forward<T: Native>(&self, x: &[T], aux: &[T], (_, c, inner): (usize, usize, usize)) -> Vec<T> {
        let coef = self.coefficients(aux, c);
        let mut y = vec![T::zero(); x.len()];
        let sample = (c * inner).max(1);
        let run = |i: usize, y: &mut [T]| {
            vectorized(
                #[inline(always)]
                || {
                    for (ch, &(scale, shift, _, _)) in coef.iter().enumerate() {
                        let (xs, ys) = (
                            &x[(i * c + ch) * inner..(i * c + ch + 1) * inner],
                            &mut y[ch * inner..(ch + 1) * inner],
                        );
                        match self.act {
                            Activation::Identity => ys.iter_mut().zip(xs).for_each(|(y, &x)| *y = scale * x + shift),
                            Activation::Relu => ys
                                .iter_mut()
                                .zip(xs)
                                .for_each(|(y, &x)| *y = rectify::<T, false>(scale * x + shift, T::zero())),
                            Activation::LeakyRelu(s) => {
                                let s = T::from_f64(s);
                                ys.iter_mut()
                                    .zip(xs)
                                    .for_each(|(y, &x)| *y = rectify::<T, true>(scale * x + shift, s));
                            }
                        }
                    }
                },
            )
        };
        if x.len() >= PARALLEL_MIN {
            y.par_chunks_mut(sample).enumerate().for_each(|(i, y)| run(i, y));
        } else {
            y.chunks_mut(sample).enumerate().for_each(|(i, y)| run(i, y));
        }
        y
    }

    /// `[∂x, ∂γ, ∂β, 0, 0]`.
    fn backward<T: Native>(&self, x: &[T], aux: &[T], dy: &[T], shape: (usize, usize, usize)) -> Vec<T> {
        match self.act {
            Activation::Identity => self.backward_with::<T, IDENTITY>(x, aux, dy, shape, 0.0),
            Activation::Relu => self.backward_with::<T, RELU>(x, aux, dy, shape, 0.0),
            Activation::LeakyRelu(s) => self.backward_with::<T, LEAKY>(x, aux, dy, shape, s),
        }
    }

    fn backward_with<T: Native, const MODE: u8>(
        &self,
        x: &[T],
        aux: &[T],
        dy: &[T],
        (n, c, inner): (usize, usize, usize),
        slope: f64,
    ) -> Vec<T> {
        let coef = self.coefficients(aux, c);
        let gammas = &aux[..c];
        let parallel = x.len() >= PARALLEL_MIN;
        let slope = T::from_f64(slope);
        let range = |i: usize, ch: usize| (i * c + ch) * inner..(i * c + ch + 1) * inner;
        // Σ ∂z and Σ ∂z x̂ per channel.
        let sums = channel_sums(
            (n, c),
            parallel,
            #[inline(always)]
            |i, ch| {
                let (scale, shift, r, mean) = coef[ch];
                lane_sums(&x[range(i, ch)], &dy[range(i, ch)], |x, d| {
                    let g = act_grad::<T, MODE>(d, scale * x + shift, slope);
                    [g, g * (x - mean) * r]
                })
            },
        );
        let m = (n * inner).max(1) as f64;
        let means: Vec<(T, T)> = sums
            .iter()
            .map(|s| {
                if self.train {
                    (T::from_f64(s[0] / m), T::from_f64(s[1] / m))
                } else {
                    (T::zero(), T::zero())
                }
            })
            .collect();
        let mut out = vec![T::zero(); x.len() + 4 * c];
        let (dx, tail) = out.split_at_mut(x.len());
        let sample = (c * inner).max(1);
        let run = |i: usize, dx: &mut [T]| {
            vectorized(
                #[inline(always)]
                || {
                    for ch in 0..c {
                        let (scale, shift, r, mean) = coef[ch];
                        let (mean_dz, mean_dz_xhat) = means[ch];
                        let rg = r * gammas[ch];
                        let (xs, ds) = (&x[range(i, ch)], &dy[range(i, ch)]);
                        for ((out, &x), &d) in dx[ch * inner..(ch + 1) * inner].iter_mut().zip(xs).zip(ds) {
                            let xhat = (x - mean) * r;
                            *out =
                                rg * (act_grad::<T, MODE>(d, scale * x + shift, slope) - mean_dz - xhat * mean_dz_xhat);
                        }
                    }
                },
            )
        };
        if parallel {
            dx.par_chunks_mut(sample).enumerate().for_each(|(i, dx)| run(i, dx));
        } else {
            dx.chunks_mut(sample).enumerate().for_each(|(i, dx)| run(i, dx));
        }
        for (ch, s) in sums.iter().enumerate() {
            tail[ch] = T::from_f64(s[1]);
            tail[c + ch] = T::from_f64(s[0]);
        }
        out
    }
}

impl CustomOp1 for BatchMoments {
    fn name(&self) -> &'static str {
        "deepgen-batch-moments"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CpuForward {
        let shape = dims(layout.shape())?;
        let out = map_floats!(self.name(), |x = (storage, layout)| moments(x, shape));
        Ok((out, Shape::from(2 * shape.1)))
    }
}

/// Checks that the auxiliary operand is `[4C]`.
fn check_aux(op: &str, x: &Shape, aux: &Shape) -> candle::Result<(usize, usize, usize)> {
    let shape = dims(x)?;
    if aux.dims() != [4 * shape.1] {
        bail!("{op}: parameters {aux:?} do not fit input {x:?}")
    }
    Ok(shape)
}

impl CustomOp2 for BatchNormOp {
    fn name(&self) -> &'static str {
        "deepgen-batch-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CpuForward {
        let shape = check_aux(self.name(), l1.shape(), l2.shape())?;
        let out = map_floats!(self.name(), |x = (s1, l1), aux = (s2, l2)| self.forward(x, aux, shape));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        aux: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        let packed =
            x.detach()
                .contiguous()?
                .apply_op3(&aux.detach(), &grad.contiguous()?, BatchNormGrad { norm: *self })?;
        let len = x.elem_count();
        Ok((
            Some(packed.narrow(0, 0, len)?.reshape(x.shape())?),
            Some(packed.narrow(0, len, aux.elem_count())?),
        ))
    }
}

impl CustomOp3 for BatchNormGrad {
    fn name(&self) -> &'static str {
        "deepgen-batch-norm-grad"
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
        let shape = check_aux(self.name(), l1.shape(), l2.shape())?;
        if l3.shape() != l1.shape() {
            bail!("{}: gradient {:?} of input {:?}", self.name(), l3.shape(), l1.shape())
        }
        let name = self.name();
        let out = map_floats!(name, |x = (s1, l1), aux = (s2, l2)| {
            self.norm.backward(x, aux, contiguous_slice(s3, l3, name)?, shape)
        });
        Ok((out, Shape::from(l1.shape().elem_count() + 4 * shape.1)))
    }
}

/// What [`batch_norm`] normalises with.
#[derive(Clone, Copy, Debug)]
pub enum BatchStatistics<'a> {
    /// The batch's own mean and biased variance (training); they are
    /// returned for the running averages.
    Batch,
    /// Given per-channel mean and variance `[C]` each (evaluation with the
    /// running statistics): constants for the gradient.
    Fixed {
        /// `μ`, `[C]`.
        mean: &'a Tensor,
        /// `σ²`, `[C]`.
        var: &'a Tensor,
    },
}

/// `act(γ (x − μ)/√(σ² + ε) + β)` per channel `c` of `x [N, C, …]`, with
/// scale `weight [C]` and shift `bias [C]`, and the statistics used, `[2, C]`
/// (mean and biased variance).
///
/// # Errors
/// An input of rank below 2; parameters or statistics of the wrong size.
pub fn batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stats: BatchStatistics,
    eps: f64,
    act: Activation,
) -> candle::Result<(Tensor, Tensor)> {
    let (_, c, _) = dims(x.shape())?;
    for (what, t) in [("weight", weight), ("bias", bias)] {
        if t.dims() != [c] {
            bail!("batch_norm: {what} {:?} for {c} channels", t.shape())
        }
    }
    let x = x.contiguous()?;
    let train = matches!(stats, BatchStatistics::Batch);
    let fixed = match stats {
        BatchStatistics::Batch => None,
        BatchStatistics::Fixed { mean, var } => {
            if mean.dims() != [c] || var.dims() != [c] {
                bail!(
                    "batch_norm: statistics {:?}, {:?} for {c} channels",
                    mean.shape(),
                    var.shape()
                )
            }
            Some(Tensor::cat(&[mean.detach(), var.detach()], 0)?)
        }
    };
    if fast_path(&[&x, weight, bias]) && act.is_fast() {
        let moments = match fixed {
            Some(m) => m,
            None => x.apply_op1_no_bwd(&BatchMoments)?,
        };
        let aux = Tensor::cat(&[weight, bias, &moments.to_dtype(x.dtype())?], 0)?;
        let y = x.apply_op2(&aux, BatchNormOp { eps, act, train })?;
        return Ok((y, moments.reshape((2, c))?));
    }
    // candle-nn's formula; in training the statistics are functions of x in the graph.
    let mut shape = vec![1; x.rank()];
    shape[1] = c;
    let (mean, var) = match fixed {
        Some(m) => (m.narrow(0, 0, c)?, m.narrow(0, c, c)?),
        None => {
            let xs = x.transpose(0, 1)?.flatten_from(1)?;
            let mean = xs.mean_keepdim(1)?;
            let var = xs.broadcast_sub(&mean)?.sqr()?.mean_keepdim(1)?;
            (mean.flatten_all()?, var.flatten_all()?)
        }
    };
    let per_channel = |t: &Tensor| t.reshape(shape.as_slice());
    let normed = x
        .broadcast_sub(&per_channel(&mean)?)?
        .broadcast_div(&(per_channel(&var)? + eps)?.sqrt()?)?;
    let z = normed
        .broadcast_mul(&per_channel(weight)?)?
        .broadcast_add(&per_channel(bias)?)?;
    let moments = Tensor::stack(&[mean.detach(), var.detach()], 0)?;
    Ok((act.apply_candle(&z)?, moments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{flat, max_rel_err};
    use crate::rng::{randn, rng_from_seed};
    use candle::{DType, Device, Var};
    use proptest::prelude::*;

    /// candle-nn's training-mode formula (and its activation), in f64: the
    /// reference, differentiated by Candle's autograd.
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, act: Activation, fixed: Option<(&Tensor, &Tensor)>) -> Tensor {
        let c = x.dim(1).unwrap();
        let mut shape = vec![1; x.rank()];
        shape[1] = c;
        let per_channel = |t: &Tensor| t.reshape(shape.as_slice()).unwrap();
        let (mean, var) = match fixed {
            Some((m, v)) => (per_channel(m), per_channel(v)),
            None => {
                let xs = x.transpose(0, 1).unwrap().flatten_from(1).unwrap();
                let mean = xs.mean_keepdim(1).unwrap();
                let var = xs.broadcast_sub(&mean).unwrap().sqr().unwrap().mean_keepdim(1).unwrap();
                (per_channel(&mean), per_channel(&var))
            }
        };
        let normed = x
            .broadcast_sub(&mean)
            .unwrap()
            .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap();
        let z = normed
            .broadcast_mul(&per_channel(w))
            .unwrap()
            .broadcast_add(&per_channel(b))
            .unwrap();
        act.apply_candle(&z).unwrap()
    }

    fn rel(a: &Tensor, b: &Tensor) -> f64 {
        max_rel_err(&flat(a), &flat(b))
    }

    fn activation(kind: u8, slope: f64) -> Activation {
        match kind % 3 {
            0 => Activation::Identity,
            1 => Activation::Relu,
            _ => Activation::LeakyRelu(slope),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Values, statistics and the three gradients (of a random linear
        /// functional of the output) against Candle's autograd through the
        /// reference, in f64, in training and in evaluation mode, for
        /// rank-2 (`[N, C]`, MLPs) and rank-4 inputs.
        #[test]
        fn prop_batch_norm_matches_candle(
            n in 2usize..5, c in 1usize..5, side in 0usize..4, kind in any::<u8>(), slope in 0.0..1.0f64,
            train in any::<bool>(), seed in 0u64..1000,
        ) {
            let act = activation(kind, slope);
            let mut rng = rng_from_seed(seed);
            let mut draw = |shape: &[usize]| randn(&mut rng, shape, &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
            let x_shape: Vec<usize> = if side == 0 { vec![n, c] } else { vec![n, c, side, side + 1] };
            let (x, w, b, probe) = (
                Var::from_tensor(&draw(&x_shape)).unwrap(),
                Var::from_tensor(&(draw(&[c]) + 1.0).unwrap()).unwrap(),
                Var::from_tensor(&draw(&[c])).unwrap(),
                draw(&x_shape),
            );
            let (rm, rv) = (draw(&[c]), (draw(&[c]).sqr().unwrap() + 0.5).unwrap());
            let stats = if train { BatchStatistics::Batch } else { BatchStatistics::Fixed { mean: &rm, var: &rv } };
            let (fast, moments) = batch_norm(&x, &w, &b, stats, 1e-5, act).unwrap();
            let slow = reference(&x, &w, &b, act, (!train).then_some((&rm, &rv)));
            prop_assert!(rel(&fast, &slow) < 1e-10, "value {}", rel(&fast, &slow));
            if train {
                let xs = x.transpose(0, 1).unwrap().flatten_from(1).unwrap();
                let mean = xs.mean(1).unwrap();
                let var = xs.broadcast_sub(&xs.mean_keepdim(1).unwrap()).unwrap().sqr().unwrap().mean(1).unwrap();
                prop_assert!(rel(&moments, &Tensor::stack(&[mean, var], 0).unwrap()) < 1e-12);
            }
            let g_fast = (fast * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g_slow = (slow * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("γ", &w), ("β", &b)] {
                let (a, r) = (g_fast.get(v).unwrap(), g_slow.get(v).unwrap());
                prop_assert!(rel(a, r) < 1e-9, "∂{name}: relative error {}", rel(a, r));
            }
        }
    }

    /// Central finite differences of `⟨y, probe⟩` in x, on a small case
    /// with the leaky rectifier, in f64: independent of any autograd.
    #[test]
    fn gradient_matches_finite_differences() -> candle::Result<()> {
        let dev = Device::Cpu;
        let mut rng = rng_from_seed(5);
        let x0 = flat(&randn(&mut rng, (3, 2, 2, 2), &dev)?);
        let w = Tensor::new(&[1.3f64, -0.7], &dev)?;
        let b = Tensor::new(&[0.2f64, 0.1], &dev)?;
        let probe = randn(&mut rng, (3, 2, 2, 2), &dev)?.to_dtype(DType::F64)?;
        let act = Activation::LeakyRelu(0.2);
        let loss = |x: &[f64]| -> candle::Result<f64> {
            let x = Tensor::from_slice(x, (3, 2, 2, 2), &dev)?;
            let (y, _) = batch_norm(&x, &w, &b, BatchStatistics::Batch, 1e-5, act)?;
            (y * &probe)?.sum_all()?.to_scalar::<f64>()
        };
        let x = Var::from_tensor(&Tensor::from_slice(&x0, (3, 2, 2, 2), &dev)?)?;
        let (y, _) = batch_norm(&x, &w, &b, BatchStatistics::Batch, 1e-5, act)?;
        let grad = flat((y * &probe)?.sum_all()?.backward()?.get(&x).unwrap());
        let h = 1e-6;
        for k in 0..x0.len() {
            let (mut up, mut down) = (x0.clone(), x0.clone());
            up[k] += h;
            down[k] -= h;
            let numeric = (loss(&up)? - loss(&down)?) / (2.0 * h);
            assert!((numeric - grad[k]).abs() < 1e-6, "x[{k}]: {numeric} vs {}", grad[k]);
        }
        Ok(())
    }

    /// The f32 path on DCGAN-sized activations (parallel sweeps) agrees
    /// with the f64 reference, and gives the same bits on 1 and 2 threads.
    #[test]
    fn f32_on_a_dcgan_activation() -> candle::Result<()> {
        let dev = Device::Cpu;
        let mut rng = rng_from_seed(3);
        let x = Var::from_tensor(&randn(&mut rng, (64, 64, 14, 14), &dev)?.affine(2.0, 0.5)?)?;
        let w = randn(&mut rng, 64, &dev)?.affine(0.1, 1.0)?;
        let b = randn(&mut rng, 64, &dev)?;
        let probe = randn(&mut rng, (64, 64, 14, 14), &dev)?;
        let act = Activation::Relu;
        let (y, _) = batch_norm(&x, &w, &b, BatchStatistics::Batch, 1e-5, act)?;
        let f64s = |t: &Tensor| t.to_dtype(DType::F64);
        let slow = reference(&f64s(&x)?, &f64s(&w)?, &f64s(&b)?, act, None);
        assert!(rel(&y, &slow) < 1e-5, "value {}", rel(&y, &slow));
        let dx = (&y * &probe)?.sum_all()?.backward()?.get(&x).unwrap().clone();
        let xr = Var::from_tensor(&f64s(&x)?)?;
        let slow = reference(&xr, &f64s(&w)?, &f64s(&b)?, act, None);
        let dx_ref = (slow * f64s(&probe)?)?.sum_all()?.backward()?.get(&xr).unwrap().clone();
        assert!(rel(&dx, &dx_ref) < 1e-4, "∂x {}", rel(&dx, &dx_ref));
        let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let (y1, m1) = one_thread.install(|| batch_norm(&x, &w, &b, BatchStatistics::Batch, 1e-5, act))?;
        let (y2, m2) = batch_norm(&x, &w, &b, BatchStatistics::Batch, 1e-5, act)?;
        assert_eq!(flat(&y1), flat(&y2));
        assert_eq!(flat(&m1), flat(&m2));
        Ok(())
    }

    #[test]
    fn bad_shapes_are_errors() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3, 4), DType::F32, &dev).unwrap();
        let p = Tensor::zeros(3, DType::F32, &dev).unwrap();
        let q = Tensor::zeros(4, DType::F32, &dev).unwrap();
        let none = Activation::Identity;
        assert!(batch_norm(&x, &q, &p, BatchStatistics::Batch, 1e-5, none).is_err());
        assert!(batch_norm(&x.flatten_all().unwrap(), &p, &p, BatchStatistics::Batch, 1e-5, none).is_err());
        let fixed = BatchStatistics::Fixed { mean: &q, var: &p };
        assert!(batch_norm(&x, &p, &p, fixed, 1e-5, none).is_err());
        assert!(batch_norm(&x, &p, &p, BatchStatistics::Batch, 1e-5, none).is_ok());
    }
}
