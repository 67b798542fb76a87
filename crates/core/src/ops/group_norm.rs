//! Group normalisation, optionally followed by SiLU, as one op with a
//! one-pass backward.
//!
//! candle-nn's `GroupNorm` is eleven tensor ops; its backward reduces the
//! scale's and shift's gradients over three strided dimensions and, with the
//! SiLU that follows it in every UNet block, sweeps a full-size activation
//! some twenty times. For each sample n and group g of `m = (C/G)·H·W`
//! values:
//!
//! ```text
//! μ, σ² = mean, variance of x over the group,  r = 1/√(σ² + ε),  x̂ = (x − μ) r
//! z = γ_c x̂ + β_c,       y = z        or   y = SiLU(z) = z s(z),  s = sigmoid
//! ∂z = ∂y                or   ∂z = ∂y s(z)(1 + z(1 − s(z)))
//! ∂β_c = Σ ∂z,   ∂γ_c = Σ ∂z x̂                                     (over n and the channel's H·W)
//! ∂x = r (γ_c ∂z − mean_g(γ_c ∂z) − x̂ mean_g(γ_c ∂z x̂))
//! ```
//!
//! Statistics are accumulated in f64. Samples run in parallel. On other
//! devices and dtypes [`group_norm`] is candle-nn's formula and Candle's
//! `silu`.

use super::simd::vectorized;
use super::{CpuForward, Native, contiguous_slice, fast_path, map_floats};
use candle::{CpuStorage, CustomOp3, Layout, Shape, Tensor, WithDType, bail};
use rayon::prelude::*;

/// `y = GN(x)` or `SiLU(GN(x))`.
#[derive(Clone, Copy, Debug)]
struct GroupNormOp {
    groups: usize,
    eps: f64,
    silu: bool,
}

/// `(x, [γ; β], ∂y) → [∂x, ∂γ, ∂β]` flattened into one vector.
#[derive(Clone, Copy, Debug)]
struct GroupNormGrad {
    norm: GroupNormOp,
}

/// `(n, c, inner)` of `[N, C, …]`.
fn dims(shape: &Shape, groups: usize) -> candle::Result<(usize, usize, usize)> {
    let d = shape.dims();
    if d.len() < 2 {
        bail!("group_norm: rank {} input, expected [N, C, …]", d.len())
    }
    let (n, c) = (d[0], d[1]);
    if groups == 0 || !c.is_multiple_of(groups) {
        bail!("group_norm: {c} channels do not split into {groups} groups")
    }
    Ok((n, c, d[2..].iter().product()))
}

/// Lanes of the f64 sums (independent accumulators the compiler can vectorise).
const LANES: usize = 8;

/// `Σ f(x)` over `x` in f64, in [`LANES`] partial sums.
#[inline(always)]
fn lane_sum<T: WithDType>(x: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f64 = chunks.remainder().iter().map(|v| f(v.to_f64())).sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += f(v.to_f64());
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// `(μ, r)` of one group's values.
#[inline(always)]
fn moments<T: WithDType>(x: &[T], eps: f64) -> (f64, f64) {
    let m = x.len() as f64;
    let mean = lane_sum(x, |v| v) / m;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / m;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Independent partial sums in [`channel_grad`], so that its reductions
/// vectorise (one running sum is a chain of dependent additions).
const SUM_LANES: usize = 8;

/// One channel's share of the backward pass: writes `∂z` per value into
/// `dz` and returns `(Σ ∂z, Σ ∂z x̂)`, with `∂z = ∂y` or, after SiLU,
/// `∂y s(z)(1 + z(1 − s(z)))`. Two sweeps, each simple enough for the
/// compiler to vectorise: the element-wise `∂z`, then the two sums in
/// [`SUM_LANES`] lanes (one sweep doing both, with the exponential inside
/// the lane loop, stayed scalar).
#[inline(always)]
fn channel_grad<T: Native, const SILU: bool>(
    xs: &[T],
    ds: &[T],
    dz: &mut [T],
    (mean, r, gamma, beta): (T, T, T, T),
) -> (T, T) {
    let one = T::one();
    if SILU {
        for ((o, &x), &d) in dz.iter_mut().zip(xs).zip(ds) {
            let z = gamma * ((x - mean) * r) + beta;
            let s = T::sigmoid(z);
            *o = d * s * (one + z * (one - s));
        }
    } else {
        dz.copy_from_slice(ds);
    }
    let (mut sum_dz, mut sum_dz_xhat) = ([T::zero(); SUM_LANES], [T::zero(); SUM_LANES]);
    for (xc, dc) in xs.chunks_exact(SUM_LANES).zip(dz.chunks_exact(SUM_LANES)) {
        for l in 0..SUM_LANES {
            sum_dz[l] += dc[l];
            sum_dz_xhat[l] += dc[l] * ((xc[l] - mean) * r);
        }
    }
    let done = xs.len() - xs.len() % SUM_LANES;
    let (mut total_dz, mut total_dz_xhat) = (T::zero(), T::zero());
    for k in done..xs.len() {
        total_dz += dz[k];
        total_dz_xhat += dz[k] * ((xs[k] - mean) * r);
    }
    for l in 0..SUM_LANES {
        total_dz += sum_dz[l];
        total_dz_xhat += sum_dz_xhat[l];
    }
    (total_dz, total_dz_xhat)
}

impl GroupNormOp {
    fn forward<T: Native>(&self, x: &[T], w: &[T], b: &[T], (n, c, inner): (usize, usize, usize)) -> Vec<T> {
        let mut y = vec![T::zero(); x.len()];
        let sample = c * inner;
        y.par_chunks_mut(sample.max(1)).enumerate().take(n).for_each(|(i, y)| {
            let x = &x[i * sample..(i + 1) * sample];
            vectorized(
                #[inline(always)]
                || self.forward_sample(x, w, b, y, inner),
            )
        });
        y
    }

    /// One sample's `y` from its `x` (`C·inner` values each).
    #[inline(always)]
    fn forward_sample<T: Native>(&self, x: &[T], w: &[T], b: &[T], y: &mut [T], inner: usize) {
        let per_group = w.len() / self.groups;
        for g in 0..self.groups {
            let start = g * per_group * inner;
            let block = &x[start..start + per_group * inner];
            let (mean, r) = moments(block, self.eps);
            for ch in 0..per_group {
                let channel = g * per_group + ch;
                let scale = w[channel].to_f64() * r;
                let shift = b[channel].to_f64() - mean * scale;
                let (xs, ys) = (
                    &block[ch * inner..(ch + 1) * inner],
                    &mut y[start + ch * inner..start + (ch + 1) * inner],
                );
                let (scale, shift) = (T::from_f64(scale), T::from_f64(shift));
                if self.silu {
                    for (y, &x) in ys.iter_mut().zip(xs) {
                        let z = scale * x + shift;
                        *y = z * T::sigmoid(z);
                    }
                } else {
                    for (y, &x) in ys.iter_mut().zip(xs) {
                        *y = scale * x + shift;
                    }
                }
            }
        }
    }

    /// `[∂x (N·C·inner), ∂γ (C), ∂β (C)]`.
    fn backward<T: Native>(&self, x: &[T], params: &[T], dy: &[T], (n, c, inner): (usize, usize, usize)) -> Vec<T> {
        let sample = c * inner;
        let mut dx = vec![T::zero(); x.len()];
        // Each sample's ∂x and its share of ∂γ, ∂β.
        let partials: Vec<(Vec<f64>, Vec<f64>)> = dx
            .par_chunks_mut(sample.max(1))
            .enumerate()
            .take(n)
            .map(|(i, dx)| {
                let range = i * sample..(i + 1) * sample;
                let (x, dy) = (&x[range.clone()], &dy[range]);
                vectorized(
                    #[inline(always)]
                    || self.backward_sample(x, params, dy, dx, inner),
                )
            })
            .collect();
        let mut out = dx;
        out.reserve(2 * c);
        for part in 0..2 {
            for ch in 0..c {
                let total: f64 = partials.iter().map(|p| if part == 0 { p.0[ch] } else { p.1[ch] }).sum();
                out.push(T::from_f64(total));
            }
        }
        out
    }

    /// One sample's `∂x` (written into `dx`) and its `(∂γ, ∂β)` shares, from
    /// its `x` and `∂y`; `params` is `[γ; β]`.
    #[inline(always)]
    fn backward_sample<T: Native>(
        &self,
        x: &[T],
        params: &[T],
        dy: &[T],
        dx: &mut [T],
        inner: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let c = params.len() / 2;
        let (w, b) = params.split_at(c);
        let per_group = c / self.groups;
        let (mut dw, mut db) = (vec![0.0; c], vec![0.0; c]);
        let mut dz = vec![T::zero(); per_group * inner];
        for g in 0..self.groups {
            let start = g * per_group * inner;
            let range = start..start + per_group * inner;
            let (block, dblock) = (&x[range.clone()], &dy[range]);
            let (mean, r) = moments(block, self.eps);
            let (mean_t, r_t) = (T::from_f64(mean), T::from_f64(r));
            // ∂z per value, and the two group means of the ∂x formula.
            let (mut sum, mut sum_xhat) = (0.0, 0.0);
            for ch in 0..per_group {
                let channel = g * per_group + ch;
                let (gamma, beta) = (w[channel], b[channel]);
                // Per-channel sums in T (a channel is one H·W plane), then f64.
                let plane = ch * inner..(ch + 1) * inner;
                let (xs, ds) = (&block[plane.clone()], &dblock[plane.clone()]);
                let (db_c, dw_c) = if self.silu {
                    channel_grad::<T, true>(xs, ds, &mut dz[plane], (mean_t, r_t, gamma, beta))
                } else {
                    channel_grad::<T, false>(xs, ds, &mut dz[plane], (mean_t, r_t, gamma, beta))
                };
                db[channel] += db_c.to_f64();
                dw[channel] += dw_c.to_f64();
                let g = gamma.to_f64();
                sum += g * db_c.to_f64();
                sum_xhat += g * dw_c.to_f64();
            }
            let m = (per_group * inner) as f64;
            let (mean_d, mean_dx) = (T::from_f64(sum / m), T::from_f64(sum_xhat / m));
            for ch in 0..per_group {
                let gamma = w[g * per_group + ch];
                let plane = ch * inner..(ch + 1) * inner;
                let dx = &mut dx[start + plane.start..start + plane.end];
                for ((dx, &x), &dz) in dx.iter_mut().zip(&block[plane.clone()]).zip(&dz[plane]) {
                    let xhat = (x - mean_t) * r_t;
                    *dx = r_t * (gamma * dz - mean_d - xhat * mean_dx);
                }
            }
        }
        (dw, db)
    }
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "deepgen-group-norm"
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
        let shape = dims(l1.shape(), self.groups)?;
        if l2.shape().dims() != [shape.1] || l3.shape().dims() != [shape.1] {
            bail!("group_norm: weight and bias must be [{}]", shape.1)
        }
        let name = self.name();
        let out = map_floats!(name, |x = (s1, l1), w = (s2, l2)| {
            self.forward(x, w, contiguous_slice(s3, l3, name)?, shape)
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = w.dim(0)?;
        let params = Tensor::cat(&[w.detach(), b.detach()], 0)?;
        let packed = x
            .detach()
            .contiguous()?
            .apply_op3(&params, &grad.contiguous()?, GroupNormGrad { norm: *self })?;
        let n = x.elem_count();
        Ok((
            Some(packed.narrow(0, 0, n)?.reshape(x.shape())?),
            Some(packed.narrow(0, n, c)?),
            Some(packed.narrow(0, n + c, c)?),
        ))
    }
}

impl CustomOp3 for GroupNormGrad {
    fn name(&self) -> &'static str {
        "deepgen-group-norm-grad"
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
        let shape = dims(l1.shape(), self.norm.groups)?;
        if l3.shape() != l1.shape() || l2.shape().dims() != [2 * shape.1] {
            bail!(
                "{}: operand shapes {:?}, {:?}, {:?}",
                self.name(),
                l1.shape(),
                l2.shape(),
                l3.shape()
            )
        }
        let name = self.name();
        let out = map_floats!(name, |x = (s1, l1), params = (s2, l2)| {
            self.norm.backward(x, params, contiguous_slice(s3, l3, name)?, shape)
        });
        Ok((out, Shape::from(l1.shape().elem_count() + 2 * shape.1)))
    }
}

/// Group normalisation of `x [N, C, …]` with `groups` groups, scale
/// `weight [C]` and shift `bias [C]`, then SiLU when `silu`.
///
/// # Errors
/// `C` not divisible by `groups`; parameters of the wrong size.
pub fn group_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    groups: usize,
    eps: f64,
    silu: bool,
) -> candle::Result<Tensor> {
    if !fast_path(&[x, weight, bias]) {
        let (n, c, _) = dims(x.shape(), groups)?;
        let xs = x.reshape((n, groups, ()))?;
        let centred = xs.broadcast_sub(&xs.mean_keepdim(2)?)?;
        let normed = centred.broadcast_div(&(centred.sqr()?.mean_keepdim(2)? + eps)?.sqrt()?)?;
        let mut w_dims = vec![1; x.rank()];
        w_dims[1] = c;
        let z = normed
            .reshape(x.shape())?
            .broadcast_mul(&weight.reshape(w_dims.clone())?)?
            .broadcast_add(&bias.reshape(w_dims)?)?;
        return if silu { z.silu() } else { Ok(z) };
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        GroupNormOp { groups, eps, silu },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::flat;
    use crate::rng::{randn, rng_from_seed};
    use candle::{DType, Device, Var};
    use proptest::prelude::*;

    /// candle-nn's formula and Candle's silu, in f64: the reference.
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, groups: usize, silu: bool) -> Tensor {
        let (n, c) = (x.dim(0).unwrap(), x.dim(1).unwrap());
        let xs = x.reshape((n, groups, ())).unwrap();
        let centred = xs.broadcast_sub(&xs.mean_keepdim(2).unwrap()).unwrap();
        let var = centred.sqr().unwrap().mean_keepdim(2).unwrap();
        let normed = centred.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap()).unwrap();
        let mut dims = vec![1; x.rank()];
        dims[1] = c;
        let z = normed
            .reshape(x.shape())
            .unwrap()
            .broadcast_mul(&w.reshape(dims.clone()).unwrap())
            .unwrap()
            .broadcast_add(&b.reshape(dims).unwrap())
            .unwrap();
        if silu { z.silu().unwrap() } else { z }
    }

    fn max_gap(a: &Tensor, b: &Tensor) -> f64 {
        flat(a)
            .iter()
            .zip(flat(b))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Values and all three gradients (of a random linear functional of
        /// the output) against Candle's autograd through the reference, in f64.
        #[test]
        fn prop_group_norm_matches_candle(
            n in 1usize..4, groups in 1usize..4, per_group in 1usize..4, side in 1usize..5,
            silu in any::<bool>(), seed in 0u64..1000,
        ) {
            let c = groups * per_group;
            let mut rng = rng_from_seed(seed);
            let mut draw = |shape: &[usize]| randn(&mut rng, shape, &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
            let (x, w, b, probe) = (
                Var::from_tensor(&draw(&[n, c, side, side])).unwrap(),
                Var::from_tensor(&(draw(&[c]) + 1.0).unwrap()).unwrap(),
                Var::from_tensor(&draw(&[c])).unwrap(),
                draw(&[n, c, side, side]),
            );
            let fast = group_norm(&x, &w, &b, groups, 1e-5, silu).unwrap();
            let slow = reference(&x, &w, &b, groups, silu);
            prop_assert!(max_gap(&fast, &slow) < 1e-10);
            let g_fast = (fast * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g_slow = (slow * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &w, &b] {
                let (a, r) = (g_fast.get(v).unwrap(), g_slow.get(v).unwrap());
                prop_assert!(max_gap(a, r) < 1e-9, "gradient gap {}", max_gap(a, r));
            }
        }
    }

    /// The f32 path on a UNet-sized activation agrees with the reference.
    #[test]
    fn f32_on_a_large_activation() {
        let mut rng = rng_from_seed(3);
        let x = randn(&mut rng, (4, 32, 28, 28), &Device::Cpu).unwrap();
        let w = randn(&mut rng, 32, &Device::Cpu).unwrap().affine(0.1, 1.0).unwrap();
        let b = randn(&mut rng, 32, &Device::Cpu).unwrap();
        let fast = group_norm(&x, &w, &b, 8, 1e-5, true).unwrap();
        let slow = reference(&x, &w, &b, 8, true);
        assert!(max_gap(&fast, &slow) < 1e-5);
        assert!(
            group_norm(&x, &w, &b, 5, 1e-5, true).is_err(),
            "32 channels in 5 groups"
        );
    }
}
