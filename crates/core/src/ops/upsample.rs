//! Nearest-neighbour upsampling by an integer factor `k` as a Candle custom
//! op whose backward pass is one sweep: a `k×k` window sum.
//!
//! ```text
//! y[c, i, j] = x[c, ⌊i/k⌋, ⌊j/k⌋]
//! ∂x[c, a, b] = Σ_{0 ≤ u, v < k} ∂y[c, a·k + u, b·k + v]
//! ```
//!
//! Candle 0.11 computes that backward as a grouped convolution with a ones
//! kernel (one group per channel): in the UNet's up path, 64 convolutions
//! a step, each cutting its channel out of the gradient and the results
//! concatenated again. Both maps are linear and each is the other's adjoint,
//! so the pair `Upsample`/`WindowSum` is closed under differentiation.

use super::{CpuForward, PARALLEL_MIN, fast_path, for_each_chunk, map_floats};
use candle::{CpuStorage, CustomOp1, Layout, Shape, Tensor, WithDType, bail};

/// `[n, c, h, w] → [n, c, h·k, w·k]`, each pixel repeated in a `k×k` block.
#[derive(Clone, Copy, Debug)]
struct Upsample {
    k: usize,
}

/// `[n, c, h·k, w·k] → [n, c, h, w]`, the sum of each `k×k` block.
#[derive(Clone, Copy, Debug)]
struct WindowSum {
    k: usize,
}

/// Repeats every pixel of the planes of `x` (`h × w` each) into `k × k`
/// blocks: each output row is built once and copied `k − 1` times below.
fn upsample<T: WithDType>(x: &[T], h: usize, w: usize, k: usize) -> Vec<T> {
    let (ow, plane_in) = (w * k, h * w);
    let mut y = vec![T::zero(); x.len() * k * k];
    if y.is_empty() {
        return y;
    }
    let parallel = y.len() >= PARALLEL_MIN;
    for_each_chunk(
        &mut y,
        plane_in * k * k,
        parallel,
        #[inline(always)]
        |p, out| {
            let x = &x[p * plane_in..(p + 1) * plane_in];
            for (row, block) in x.chunks_exact(w).zip(out.chunks_exact_mut(ow * k)) {
                let (first, rest) = block.split_at_mut(ow);
                for (&v, run) in row.iter().zip(first.chunks_exact_mut(k)) {
                    run.fill(v);
                }
                for copy in rest.chunks_exact_mut(ow) {
                    copy.copy_from_slice(first);
                }
            }
        },
    );
    y
}

/// Sums the `k × k` blocks of the planes of `g` (`h·k × w·k` each) into
/// `h × w` planes: the rows of a block are added first, then each run of `k`.
fn window_sum<T: WithDType>(g: &[T], h: usize, w: usize, k: usize) -> Vec<T> {
    let (gw, plane_in) = (w * k, h * w);
    let planes = g.len() / (plane_in * k * k).max(1);
    let mut out = vec![T::zero(); planes * plane_in];
    if out.is_empty() {
        return out;
    }
    let parallel = g.len() >= PARALLEL_MIN;
    for_each_chunk(
        &mut out,
        plane_in,
        parallel,
        #[inline(always)]
        |p, out| {
            let g = &g[p * plane_in * k * k..(p + 1) * plane_in * k * k];
            let mut rows = vec![T::zero(); gw];
            for (block, out_row) in g.chunks_exact(gw * k).zip(out.chunks_exact_mut(w)) {
                rows.copy_from_slice(&block[..gw]);
                for row in block[gw..].chunks_exact(gw) {
                    for (s, &v) in rows.iter_mut().zip(row) {
                        *s += v;
                    }
                }
                for (o, run) in out_row.iter_mut().zip(rows.chunks_exact(k)) {
                    *o = run.iter().fold(T::zero(), |s, &v| s + v);
                }
            }
        },
    );
    out
}

impl CustomOp1 for Upsample {
    fn name(&self) -> &'static str {
        "deepgen-upsample-nearest2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CpuForward {
        let (n, c, h, w) = layout.shape().dims4()?;
        let k = self.k;
        let out = map_floats!(self.name(), |x = (storage, layout)| upsample(x, h, w, k));
        Ok((out, Shape::from((n, c, h * k, w * k))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle::Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(WindowSum { k: self.k })?))
    }
}

impl CustomOp1 for WindowSum {
    fn name(&self) -> &'static str {
        "deepgen-upsample-nearest2d-window-sum"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CpuForward {
        let (n, c, gh, gw) = layout.shape().dims4()?;
        let k = self.k;
        if gh % k != 0 || gw % k != 0 {
            bail!("{}: {gh}x{gw} is not a multiple of {k}", self.name())
        }
        let (h, w) = (gh / k, gw / k);
        let out = map_floats!(self.name(), |g = (storage, layout)| window_sum(g, h, w, k));
        Ok((out, Shape::from((n, c, h, w))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle::Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(Upsample { k: self.k })?))
    }
}

/// Nearest-neighbour upsampling of `xs` `[batch, channels, h, w]` to
/// `[batch, channels, target_h, target_w]`, as Candle's
/// `upsample_nearest2d` (and PyTorch's `Upsample(mode="nearest")`).
///
/// On the CPU in `f32`/`f64`, when both sides grow by one integer factor
/// (what a UNet's up path does), forward and backward are single sweeps;
/// otherwise this is Candle's op.
///
/// # Errors
/// A tensor that is not 4-D; Candle's errors on its path.
pub fn upsample_nearest2d(xs: &Tensor, target_h: usize, target_w: usize) -> candle::Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    let integer_factor =
        h > 0 && w > 0 && target_h.is_multiple_of(h) && target_w.is_multiple_of(w) && target_h / h == target_w / w;
    if !fast_path(&[xs]) || !integer_factor {
        return xs.upsample_nearest2d(target_h, target_w);
    }
    xs.contiguous()?.apply_op1(Upsample { k: target_h / h })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{flat, max_rel_err, rel_err};
    use crate::rng::{randn, rng_from_seed};
    use candle::{DType, Device, Var};
    use proptest::prelude::*;

    /// The gradient of `Σ r ⊙ upsample(x)` by its definition: each input
    /// pixel collects the weights of its block.
    fn reference_gradient(r: &[f64], dims: (usize, usize, usize, usize), k: usize) -> Vec<f64> {
        let (n, c, h, w) = dims;
        let mut dx = vec![0.0; n * c * h * w];
        for plane in 0..n * c {
            for i in 0..h * k {
                for j in 0..w * k {
                    dx[plane * h * w + (i / k) * w + j / k] += r[plane * h * w * k * k + i * w * k + j];
                }
            }
        }
        dx
    }

    fn check(dims: (usize, usize, usize, usize), k: usize, seed: u64, dtype: DType) -> Result<(), TestCaseError> {
        let device = Device::Cpu;
        let xs = Var::from_tensor(
            &randn(&mut rng_from_seed(seed), dims, &device)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let (_, _, h, w) = dims;
        let ys = upsample_nearest2d(&xs, h * k, w * k).unwrap();
        let reference = xs.upsample_nearest2d(h * k, w * k).unwrap();
        prop_assert_eq!(flat(&ys), flat(&reference), "value for {:?}, k {}", dims, k);
        let r = randn(&mut rng_from_seed(seed ^ 7), ys.shape(), &device)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let grads = (&ys * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let expected = reference_gradient(&flat(&r), dims, k);
        let got = flat(grads.get(&xs).unwrap());
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        prop_assert!(max_rel_err(&got, &expected) <= tol, "gradient for {dims:?}, k {k}");
        // Candle's own backward (the grouped convolution) agrees.
        let candle = (&reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
        prop_assert!(rel_err(grads.get(&xs).unwrap(), candle.get(&xs).unwrap()) <= tol);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn prop_upsample_nearest2d_matches_candle_value_and_gradient(
            batch in 1..=3usize, channels in 1..=4usize, h in 1..=9usize, w in 1..=9usize,
            k in 1..=4usize, seed in any::<u64>(), double in any::<bool>(),
        ) {
            check((batch, channels, h, w), k, seed, if double { DType::F64 } else { DType::F32 })?;
        }
    }

    /// Inputs above `PARALLEL_MIN` take the parallel paths (the UNet's first
    /// up step at batch 128).
    #[test]
    fn large_inputs_match_too() {
        check((128, 64, 7, 7), 2, 3, DType::F32).unwrap();
    }

    #[test]
    fn the_window_sum_is_the_adjoint_and_differentiable() -> candle::Result<()> {
        // ⟨upsample(x), D⟩ = ⟨x, window_sum(D)⟩; the gradient of the window
        // sum of a variable is the upsampled weight.
        let device = Device::Cpu;
        let x = randn(&mut rng_from_seed(1), (2, 3, 4, 5), &device)?;
        let d = Var::from_tensor(&randn(&mut rng_from_seed(2), (2, 3, 8, 10), &device)?)?;
        let lhs = (upsample_nearest2d(&x, 8, 10)? * d.as_tensor())?.sum_all()?;
        let summed = d.as_tensor().apply_op1(WindowSum { k: 2 })?;
        let rhs = (&summed * &x)?.sum_all()?;
        let (lhs_v, rhs_v) = (lhs.to_scalar::<f32>()?, rhs.to_scalar::<f32>()?);
        assert!((lhs_v - rhs_v).abs() < 1e-4, "{lhs_v} against {rhs_v}");
        let grad = rhs.backward()?.get(&d).unwrap().clone();
        assert!(rel_err(&grad, &upsample_nearest2d(&x, 8, 10)?) < 1e-6);
        Ok(())
    }

    #[test]
    fn other_factors_fall_back_to_candle() -> candle::Result<()> {
        let xs = Tensor::arange(0f32, 6.0, &Device::Cpu)?.reshape((1, 1, 2, 3))?;
        let ys = upsample_nearest2d(&xs, 4, 9)?;
        assert_eq!(flat(&ys), flat(&xs.upsample_nearest2d(4, 9)?));
        assert!(upsample_nearest2d(&xs.flatten_all()?, 4, 6).is_err());
        Ok(())
    }
}
