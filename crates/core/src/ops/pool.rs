//! Max pooling with non-overlapping `k×k` windows (stride `k`) as a Candle
//! custom op whose backward pass is one sweep over the input.
//!
//! Candle 0.11's own backward of `max_pool2d` builds the gradient from seven
//! full-size tensors (upsample the output, compare, cast, average-pool,
//! multiply, upsample, multiply) and scales it wrongly: a window's maximum
//! gets `∂y · ties / k²` instead of `∂y` (a quarter of the gradient for a
//! unique maximum of a 2×2 window; see the test
//! `candle_scales_the_max_pool_gradient_by_ties_over_k2`). Here it is one
//! kernel with PyTorch's rule:
//!
//! ```text
//! ∂x[i] = ∂y[w] if i = argmax_{j ∈ w} x[j] (the first maximum in row-major order), else 0
//! ```
//!
//! where `w` is the window holding pixel `i`; a NaN counts as the maximum so
//! that it propagates. Rows and columns past the last whole window get no
//! gradient (floor mode, as in PyTorch and Candle).
//!
//! The backward kernel ("scatter") is linear in `∂y`; its derivative is the
//! matching "gather" `∂y'[w] = D[argmax w]`, whose derivative is the scatter
//! again, so the pair is closed under differentiation like the convolutions.

use super::{CpuForward, PARALLEL_MIN, fast_path, for_each_chunk, map_floats};
use candle::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, WithDType, bail};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

/// Largest window side of the fast path: window offsets are stored as `u8`.
const MAX_FAST_KERNEL: usize = 16;

/// `max_pool2d` forward for a fixed window size. The forward pass records
/// where each window's maximum was (its offset `ky·k + kx` inside the
/// window), so the backward pass does not search again.
#[derive(Debug)]
struct MaxPool {
    kernel: usize,
    offsets: OnceLock<Arc<Vec<u8>>>,
}

/// What a [`PoolGrad`] op computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// `(x, ∂y) → ∂x`, shaped like `x`.
    Scatter,
    /// `(x, D) → D[argmax]`, shaped like the pooled output.
    Gather,
}

/// The backward kernels of [`MaxPool`], with the window offsets of the
/// forward pass when it recorded them (else they are found again from `x`).
#[derive(Clone, Debug)]
struct PoolGrad {
    kernel: usize,
    direction: Direction,
    offsets: Option<Arc<Vec<u8>>>,
}

/// Sizes of one pooled plane: input `h × w`, output `oh × ow`.
#[derive(Clone, Copy, Debug)]
struct Plane {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    k: usize,
}

impl Plane {
    fn new(dims: (usize, usize, usize, usize), k: usize) -> Self {
        let (_, _, h, w) = dims;
        Self {
            h,
            w,
            oh: h / k,
            ow: w / k,
            k,
        }
    }

    fn input_len(&self) -> usize {
        self.h * self.w
    }

    fn output_len(&self) -> usize {
        self.oh * self.ow
    }

    /// Calls `f(window, pixel)` for every window of a plane in row order,
    /// with `pixel` the plane index of the pixel at the window's offset.
    #[inline]
    fn for_each_window(&self, offsets: &[u8], mut f: impl FnMut(usize, usize)) {
        // The plane distance of each in-window offset `ky·k + kx` from the
        // window's corner, so the loop needs no division.
        let deltas: Vec<usize> = (0..self.k * self.k)
            .map(|o| (o / self.k) * self.w + o % self.k)
            .collect();
        for oy in 0..self.oh {
            let corner = oy * self.k * self.w;
            let row = &offsets[oy * self.ow..(oy + 1) * self.ow];
            for (ox, &offset) in row.iter().enumerate() {
                f(oy * self.ow + ox, corner + ox * self.k + deltas[offset as usize]);
            }
        }
    }
}

/// True when `v` should replace `best` as the first maximum seen so far: a
/// larger value, or the first NaN (a NaN `best` is never replaced).
#[inline(always)]
#[allow(clippy::eq_op)]
fn beats<T: WithDType>(v: T, best: T) -> bool {
    // `x != x` is NaN; `&`/`|`, not `&&`/`||`, so that no branch is taken.
    (best == best) & ((v > best) | (v != v))
}

/// Finds the first maximum of every window of plane `x`: its value into
/// `values` and its offset inside the window into `offsets`.
fn argmax_plane<T: WithDType>(p: &Plane, x: &[T], values: &mut [T], offsets: &mut [u8]) {
    if p.k == 2 {
        // The first maximum of (a0, a1, b0, b1) is the later of the two pair
        // winners only if it beats the earlier one: selects without
        // branches, which mispredict on real activations (ReLU zeros and
        // noise) and made this loop five times slower.
        for oy in 0..p.oh {
            let top = 2 * oy * p.w;
            let (r0, r1) = (&x[top..][..2 * p.ow], &x[top + p.w..][..2 * p.ow]);
            let values = &mut values[oy * p.ow..][..p.ow];
            let offsets = &mut offsets[oy * p.ow..][..p.ow];
            for ox in 0..p.ow {
                let (a0, a1, b0, b1) = (r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
                let (ta, tb) = (beats(a1, a0), beats(b1, b0));
                let (ma, oa) = (if ta { a1 } else { a0 }, u8::from(ta));
                let (mb, ob) = (if tb { b1 } else { b0 }, 2 + u8::from(tb));
                let t = beats(mb, ma);
                values[ox] = if t { mb } else { ma };
                offsets[ox] = if t { ob } else { oa };
            }
        }
        return;
    }
    let width = p.ow * p.k;
    for oy in 0..p.oh {
        let values = &mut values[oy * p.ow..][..p.ow];
        let offsets = &mut offsets[oy * p.ow..][..p.ow];
        for ky in 0..p.k {
            let row = &x[(oy * p.k + ky) * p.w..][..width];
            for ((window, best), at) in row.chunks_exact(p.k).zip(values.iter_mut()).zip(offsets.iter_mut()) {
                for (kx, &v) in window.iter().enumerate() {
                    if (ky == 0 && kx == 0) || beats(v, *best) {
                        *best = v;
                        *at = (ky * p.k + kx) as u8;
                    }
                }
            }
        }
    }
}

/// Pooled values and window offsets of `planes` planes, in parallel.
fn max_pool<T: WithDType>(p: Plane, planes: usize, x: &[T]) -> (Vec<T>, Vec<u8>) {
    let mut values = vec![T::zero(); planes * p.output_len()];
    let mut offsets = vec![0u8; planes * p.output_len()];
    if values.is_empty() {
        return (values, offsets);
    }
    let plane = |(i, (values, offsets)): (usize, (&mut [T], &mut [u8]))| {
        argmax_plane(&p, &x[i * p.input_len()..(i + 1) * p.input_len()], values, offsets)
    };
    let len = p.output_len();
    if x.len() >= PARALLEL_MIN {
        values
            .par_chunks_mut(len)
            .zip(offsets.par_chunks_mut(len))
            .enumerate()
            .for_each(plane);
    } else {
        values
            .chunks_mut(len)
            .zip(offsets.chunks_mut(len))
            .enumerate()
            .for_each(plane);
    }
    (values, offsets)
}

fn scatter<T: WithDType>(p: Plane, offsets: &[u8], g: &[T]) -> Vec<T> {
    let planes = g.len() / p.output_len().max(1);
    let mut dx = vec![T::zero(); planes * p.input_len()];
    if dx.is_empty() || p.output_len() == 0 {
        return dx;
    }
    let parallel = dx.len() >= PARALLEL_MIN;
    for_each_chunk(
        &mut dx,
        p.input_len(),
        parallel,
        #[inline(always)]
        |i, dx| {
            let range = i * p.output_len()..(i + 1) * p.output_len();
            let g = &g[range.clone()];
            p.for_each_window(&offsets[range], |window, pixel| dx[pixel] = g[window]);
        },
    );
    dx
}

fn gather<T: WithDType>(p: Plane, offsets: &[u8], d: &[T]) -> Vec<T> {
    let planes = d.len() / p.input_len().max(1);
    let mut out = vec![T::zero(); planes * p.output_len()];
    if out.is_empty() {
        return out;
    }
    for_each_chunk(
        &mut out,
        p.output_len(),
        d.len() >= PARALLEL_MIN,
        #[inline(always)]
        |i, out| {
            let d = &d[i * p.input_len()..(i + 1) * p.input_len()];
            let offsets = &offsets[i * p.output_len()..(i + 1) * p.output_len()];
            p.for_each_window(offsets, |window, pixel| out[window] = d[pixel]);
        },
    );
    out
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "deepgen-max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CpuForward {
        let dims = layout.shape().dims4()?;
        let p = Plane::new(dims, self.kernel);
        let planes = dims.0 * dims.1;
        let out = map_floats!("deepgen max_pool2d", |x = (storage, layout)| {
            let (values, offsets) = max_pool(p, planes, x);
            // A second forward through the same op value (never done by
            // `max_pool2d`) would find the cell full and keep the first offsets.
            let _ = self.offsets.set(Arc::new(offsets));
            values
        });
        Ok((out, Shape::from((dims.0, dims.1, p.oh, p.ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle::Result<Option<Tensor>> {
        let op = PoolGrad {
            kernel: self.kernel,
            direction: Direction::Scatter,
            offsets: self.offsets.get().cloned(),
        };
        Ok(Some(op.apply(arg, grad_res)?))
    }
}

impl PoolGrad {
    fn apply(self, x: &Tensor, z: &Tensor) -> candle::Result<Tensor> {
        x.detach().contiguous()?.apply_op2(&z.contiguous()?, self)
    }

    fn run<T: WithDType>(&self, p: Plane, planes: usize, x: &[T], z: &[T]) -> Vec<T> {
        let found;
        let offsets: &[u8] = match &self.offsets {
            Some(offsets) if offsets.len() == planes * p.output_len() => offsets,
            _ => {
                found = max_pool(p, planes, x).1;
                &found
            }
        };
        match self.direction {
            Direction::Scatter => scatter(p, offsets, z),
            Direction::Gather => gather(p, offsets, z),
        }
    }
}

impl CustomOp2 for PoolGrad {
    fn name(&self) -> &'static str {
        match self.direction {
            Direction::Scatter => "deepgen-max-pool2d-scatter",
            Direction::Gather => "deepgen-max-pool2d-gather",
        }
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CpuForward {
        let dims = l1.shape().dims4()?;
        let p = Plane::new(dims, self.kernel);
        let planes = dims.0 * dims.1;
        let pooled = (dims.0, dims.1, p.oh, p.ow);
        let (out_shape, second) = match self.direction {
            Direction::Scatter => (dims, pooled),
            Direction::Gather => (pooled, dims),
        };
        if l2.shape().dims4()? != second {
            bail!(
                "{}: operands {:?} and {:?} do not fit",
                self.name(),
                l1.shape(),
                l2.shape()
            )
        }
        let out = map_floats!(self.name(), |x = (s1, l1), z = (s2, l2)| self.run(p, planes, x, z));
        Ok((out, Shape::from(out_shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        z: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        // Linear in `z`; `x` only picks the routing, whose derivative is zero
        // almost everywhere.
        let direction = match self.direction {
            Direction::Scatter => Direction::Gather,
            Direction::Gather => Direction::Scatter,
        };
        let op = PoolGrad {
            direction,
            ..self.clone()
        };
        let dz = z.track_op().then(|| op.apply(x, grad_res)).transpose()?;
        Ok((None, dz))
    }
}

/// Max pooling of `xs` `[batch, channels, h, w]` over `kernel_size ×
/// kernel_size` windows with stride `kernel_size` (PyTorch's `MaxPool2d(k)`,
/// Candle's `max_pool2d(k)`); the output is `[batch, channels, ⌊h/k⌋, ⌊w/k⌋]`.
///
/// The gradient of each window goes to its first maximum, as in PyTorch
/// (Candle 0.11 scales it by `ties / k²`, see the module docs); NaN
/// propagates. On the CPU in `f32`/`f64` (windows up to 16×16) forward and
/// backward are single sweeps, the forward recording each window's argmax
/// for the backward; elsewhere this calls Candle's `max_pool2d` (and its
/// gradient) on the rows and columns that whole windows cover.
///
/// # Errors
/// A tensor that is not 4-D, a zero kernel size, or a kernel larger than the
/// input.
pub fn max_pool2d(xs: &Tensor, kernel_size: usize) -> candle::Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    if kernel_size == 0 {
        bail!("max_pool2d: kernel size must be at least 1")
    }
    if h < kernel_size || w < kernel_size {
        bail!("max_pool2d: kernel size {kernel_size} is larger than the input size {h}x{w}")
    }
    if !fast_path(&[xs]) || kernel_size > MAX_FAST_KERNEL {
        // Candle's backward upsamples the pooled gradient to the input's
        // size, which misplaces it unless `k` divides both sides: pool only
        // the rows and columns whole windows cover (the same values).
        let (h_used, w_used) = (h / kernel_size * kernel_size, w / kernel_size * kernel_size);
        if (h_used, w_used) != (h, w) {
            return xs
                .narrow(2, 0, h_used)?
                .narrow(3, 0, w_used)?
                .contiguous()?
                .max_pool2d(kernel_size);
        }
        return xs.max_pool2d(kernel_size);
    }
    xs.contiguous()?.apply_op1(MaxPool {
        kernel: kernel_size,
        offsets: OnceLock::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{flat, max_rel_err, rel_err};
    use crate::rng::{randn, rng_from_seed};
    use candle::{DType, Device, Var};
    use proptest::prelude::*;

    /// Largest allowed relative error (both sides select the same elements,
    /// so the match is exact up to the sum of `Σ pool(x) ⊙ r`).
    const REL_TOL: f64 = 1e-6;

    /// PyTorch's max-pool gradient by its definition: each window's gradient
    /// goes to the first maximum in row-major order.
    fn reference_gradient(x: &[f64], dims: (usize, usize, usize, usize), k: usize, g: &[f64]) -> Vec<f64> {
        let (n, c, h, w) = dims;
        let (oh, ow) = (h / k, w / k);
        let mut dx = vec![0.0; x.len()];
        for plane in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best = (f64::NEG_INFINITY, 0);
                    for ky in 0..k {
                        for kx in 0..k {
                            let at = plane * h * w + (oy * k + ky) * w + ox * k + kx;
                            if x[at] > best.0 {
                                best = (x[at], at);
                            }
                        }
                    }
                    dx[best.1] = g[plane * oh * ow + oy * ow + ox];
                }
            }
        }
        dx
    }

    fn check(dims: (usize, usize, usize, usize), k: usize, seed: u64, quantize: bool) -> Result<(), TestCaseError> {
        let mut xs = randn(&mut rng_from_seed(seed), dims, &Device::Cpu).unwrap();
        if quantize {
            // Few distinct values, so windows have tied maxima.
            xs = (xs * 1.5).unwrap().round().unwrap().clamp(-1f32, 1f32).unwrap();
        }
        let xs = Var::from_tensor(&xs).unwrap();
        let ys = max_pool2d(&xs, k).unwrap();
        let reference = xs.max_pool2d(k).unwrap();
        prop_assert!(rel_err(&ys, &reference) <= REL_TOL, "value for {dims:?}, k {k}");
        let r = randn(&mut rng_from_seed(seed ^ 7), ys.shape(), &Device::Cpu).unwrap();
        let grads = (&ys * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let expected = reference_gradient(&flat(&xs), dims, k, &flat(&r));
        let got = flat(grads.get(&xs).unwrap());
        prop_assert!(max_rel_err(&got, &expected) <= REL_TOL, "gradient for {dims:?}, k {k}");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn prop_max_pool2d_matches_candle_value_and_pytorch_gradient(
            batch in 1..=3usize, channels in 1..=4usize, h in 1..=10usize, w in 1..=10usize,
            k in 1..=4usize, seed in any::<u64>(), quantize in any::<bool>(),
        ) {
            prop_assume!(k <= h && k <= w);
            check((batch, channels, h, w), k, seed, quantize)?;
        }
    }

    #[test]
    fn candle_scales_the_max_pool_gradient_by_ties_over_k2() -> candle::Result<()> {
        // One 2×2 window with a unique maximum: ∂(max)/∂x is 1 at the maximum.
        let xs = Var::from_tensor(&Tensor::new(&[[[[1f32, 4.], [3., 0.]]]], &Device::Cpu)?)?;
        let ours = max_pool2d(&xs, 2)?.sum_all()?.backward()?;
        assert_eq!(flat(ours.get(&xs).unwrap()), [0.0, 1.0, 0.0, 0.0]);
        let candle = xs.max_pool2d(2)?.sum_all()?.backward()?;
        assert_eq!(flat(candle.get(&xs).unwrap()), [0.0, 0.25, 0.0, 0.0]);
        Ok(())
    }

    #[test]
    fn ties_go_to_the_first_maximum_and_nan_propagates() -> candle::Result<()> {
        let xs = Var::from_tensor(&Tensor::new(&[[[[1f32, 3.], [3., 0.]]]], &Device::Cpu)?)?;
        let ys = max_pool2d(&xs, 2)?;
        assert_eq!(flat(&ys), [3.0]);
        assert_eq!(flat(ys.sum_all()?.backward()?.get(&xs).unwrap()), [0.0, 1.0, 0.0, 0.0]);
        for k in [2, 3] {
            // The gradient of a window holding NaN goes to its first NaN.
            let mut values = vec![1f32; k * k];
            values[k] = f32::NAN;
            values[k + 1] = f32::NAN;
            let nan = Var::from_tensor(&Tensor::from_vec(values, (1, 1, k, k), &Device::Cpu)?)?;
            let ys = max_pool2d(&nan, k)?;
            assert!(ys.flatten_all()?.to_vec1::<f32>()?[0].is_nan());
            let grad = flat(ys.sum_all()?.backward()?.get(&nan).unwrap());
            let expected: Vec<f64> = (0..k * k).map(|i| if i == k { 1.0 } else { 0.0 }).collect();
            assert_eq!(grad, expected, "k = {k}");
        }
        Ok(())
    }

    #[test]
    fn the_scatter_gather_pair_is_differentiable() -> candle::Result<()> {
        // ⟨scatter(g), D⟩ = ⟨g, gather(D)⟩, and the gradient of the first in g is the second.
        let xs = randn(&mut rng_from_seed(1), (2, 3, 6, 4), &Device::Cpu)?;
        let ys = max_pool2d(&xs, 2)?;
        let g = Var::from_tensor(&randn(&mut rng_from_seed(2), ys.shape(), &Device::Cpu)?)?;
        let d = randn(&mut rng_from_seed(3), xs.shape(), &Device::Cpu)?;
        let op = |direction| PoolGrad {
            kernel: 2,
            direction,
            offsets: None,
        };
        let lhs = (op(Direction::Scatter).apply(&xs, &g)? * &d)?.sum_all()?;
        let expected = op(Direction::Gather).apply(&xs, &d)?;
        let rhs = (&expected * g.as_tensor())?.sum_all()?.to_scalar::<f32>()?;
        assert!((lhs.to_scalar::<f32>()? - rhs).abs() < 1e-4);
        let grad = lhs.backward()?.get(&g).unwrap().clone();
        assert!(rel_err(&grad, &expected) < 1e-6);
        Ok(())
    }

    /// Inputs above `PARALLEL_MIN` take the parallel paths.
    #[test]
    fn large_inputs_match_too() {
        check((2, 4, 200, 202), 2, 5, false).unwrap();
        check((1, 3, 300, 300), 3, 6, true).unwrap();
    }

    #[test]
    fn windows_above_16_fall_back_to_candle() -> candle::Result<()> {
        let xs = Tensor::arange(0f32, 17.0 * 17.0, &Device::Cpu)?.reshape((1, 1, 17, 17))?;
        assert_eq!(flat(&max_pool2d(&xs, 17)?), [288.0]);
        Ok(())
    }

    #[test]
    fn the_fallback_puts_the_gradient_at_the_maximum_when_k_does_not_divide() -> candle::Result<()> {
        // 35×35 falling values, k = 17 (Candle's path): four windows over
        // rows and columns 0..34, each with its maximum at its top-left
        // corner. Candle's backward alone upsamples the 2×2 gradient to
        // 35×35, so row and column 17 would read the first window's.
        let xs = (Tensor::arange(0f32, 35.0 * 35.0, &Device::Cpu)?.reshape((1, 1, 35, 35))? * -1.0)?;
        let xs = Var::from_tensor(&xs)?;
        let ys = max_pool2d(&xs, 17)?;
        assert_eq!(flat(&ys), [0.0, -17.0, -17.0 * 35.0, -(17.0 * 35.0 + 17.0)]);
        let grad = flat(ys.sum_all()?.backward()?.get(&xs).unwrap());
        let nonzero: Vec<usize> = (0..grad.len()).filter(|&i| grad[i] != 0.0).collect();
        assert_eq!(nonzero, [0, 17, 17 * 35, 17 * 35 + 17]);
        Ok(())
    }

    #[test]
    fn bad_inputs_are_errors() {
        let xs = Tensor::zeros((1, 1, 3, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool2d(&xs, 0).is_err());
        assert!(max_pool2d(&xs, 4).is_err());
        assert!(max_pool2d(&xs.flatten_all().unwrap(), 2).is_err());
    }
}
