//! The Bernoulli log-likelihood `−log p(x|l)` per row as one fused pass (a
//! Bernoulli decoder's reconstruction term: every model with one uses it).
//!
//! `−log Bern(x; σ(l)) = Σ_j softplus(l_j) − l_j x_j
//!  = Σ_j max(l_j, 0) − l_j x_j + log1p(e^{−|l_j|})`,
//! the binary cross-entropy with logits summed over the pixels (nats). Its
//! gradient is `∂/∂l_j = σ(l_j) − x_j` and `∂/∂x_j = −l_j`.
//!
//! [`bce_with_logits_elementwise`] computes the same
//! numbers with about fifteen tensor ops (its `log1p` guards tiny arguments
//! with masks), each a pass over `[batch, 784]` plus an allocation, and as
//! many again backwards. On the CPU this op does one pass forward and one
//! backward; on other devices and dtypes it calls the tensor-op version. The
//! tests below check that the two agree in value and gradient.

use crate::error::{Error, Result};
use crate::fast_exp::{exp_nonpositive, has_avx2_fma};
use crate::stable::bce_with_logits_elementwise;
use candle::{CpuStorage, CustomOp2, CustomOp3, D, DType, Layout, Shape, Tensor, WithDType};

/// `Σ_j BCE(l_ij, x_ij)` per row: `logits` `[n, d]` → `[n]`, nats.
///
/// `targets` is `[m, d]` with `m` dividing `n`; row `i` of the logits is
/// scored against target row `i mod m`, so `K` stacked samples of a batch
/// share the batch's targets without copying them `K` times. Targets are
/// probabilities in `[0, 1]` (grey levels are fine), cast to the logits'
/// dtype. Finite for every finite logit.
///
/// # Errors
/// Shapes that are not rank 2 (a Candle error), or
/// [`Error::InvalidArgument`] for targets that differ in `d` or whose row
/// count does not divide the logits'.
pub fn bce_with_logits_rows(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, d) = logits.dims2()?;
    let m = match *targets.dims() {
        [m, td] if td == d && m > 0 && n % m == 0 => m,
        [0, td] if td == d && n == 0 => 0,
        _ => {
            return Err(Error::InvalidArgument {
                op: "bce_with_logits_rows",
                reason: format!(
                    "targets of shape {:?} do not fit logits {:?}: expected [m, {d}] with m dividing {n}",
                    targets.dims(),
                    logits.dims()
                ),
            });
        }
    };
    let targets = targets.to_dtype(logits.dtype())?;
    if logits.device().is_cpu() && matches!(logits.dtype(), DType::F32 | DType::F64) {
        Ok(logits.contiguous()?.apply_op2(&targets.contiguous()?, BceRows)?)
    } else if m == n {
        Ok(bce_with_logits_elementwise(logits, &targets)?.sum(D::Minus1)?)
    } else {
        let logits = logits.reshape((n / m, m, d))?;
        let targets = targets.unsqueeze(0)?.broadcast_as((n / m, m, d))?.contiguous()?;
        Ok(bce_with_logits_elementwise(&logits, &targets)?
            .sum(D::Minus1)?
            .reshape(n)?)
    }
}

/// The fused forward pass: `[n, d] × [m, d] → [n]`.
struct BceRows;

fn slices<'a, T>(storage: &'a [T], layout: &Layout) -> candle::Result<&'a [T]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle::bail!("bce: operands must be contiguous")
    };
    storage
        .get(start..end)
        .ok_or_else(|| candle::Error::msg("bce: layout outside the storage"))
}

/// Below this many elements a kernel runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 16;

/// Runs `f(first_row, rows_of_out)` over `out` (`rows` rows of `width`
/// values) split into one band per thread.
fn for_row_bands<T: Send>(out: &mut [T], rows: usize, width: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    use rayon::prelude::*;
    // Rayon's pool, where the gemm of the layers around this op runs: no
    // thread is started per call.
    let threads = rayon::current_num_threads().max(1);
    if threads == 1 || rows < 2 || rows * width.max(1) < PARALLEL_MIN {
        f(0, out);
        return;
    }
    let band = rows.div_ceil(threads);
    out.par_chunks_mut(band * width.max(1))
        .enumerate()
        .for_each(|(i, chunk)| f(i * band, chunk));
}

/// Terms per partial product in [`row_bce`]: each factor `1 + e^{−|l|}` is
/// at most 2, so a product of 512 stays below `2^512`, far inside `f64`.
const PRODUCT_SPAN: usize = 512;

/// One row's `Σ_j max(l_j, 0) − l_j t_j + log1p(e^{−|l_j|})`.
///
/// The logarithms are summed as the logarithm of a product,
/// `Σ_j log(1 + e_j) = log Π_j (1 + e_j)`, with one `ln` per [`LANES`]
/// running products over each [`PRODUCT_SPAN`] pixels instead of one
/// `log1p` per pixel (which was the largest cost of the forward pass), and
/// `e_j` from the vectorised [`exp_nonpositive`]. In `f64` a product of 64
/// factors has a relative error near 1e-14, and forming `1 + e` rounds away
/// at most 1e-16 per pixel, so the row sum (about 100 nats for MNIST) is
/// exact to far below `f32`'s resolution.
#[inline(always)]
fn row_bce_impl<T: Float, const FUSED: bool>(l: &[T], t: &[T]) -> f64 {
    let (mut linear, mut log_sum) = (0f64, 0f64);
    for (l, t) in l.chunks(PRODUCT_SPAN).zip(t.chunks(PRODUCT_SPAN)) {
        let (mut lin, mut product) = ([0f64; LANES], [1f64; LANES]);
        let (l_lanes, t_lanes) = (l.chunks_exact(LANES), t.chunks_exact(LANES));
        let (l_rest, t_rest) = (l_lanes.remainder(), t_lanes.remainder());
        for (l, t) in l_lanes.zip(t_lanes) {
            for j in 0..LANES {
                lin[j] += l[j].linear_part(t[j]);
                product[j] *= 1.0 + l[j].exp_neg_abs::<FUSED>();
            }
        }
        let mut rest = 1f64;
        for (&l, &t) in l_rest.iter().zip(t_rest) {
            linear += l.linear_part(t);
            rest *= 1.0 + l.exp_neg_abs::<FUSED>();
        }
        linear += lin.iter().sum::<f64>();
        log_sum += product.iter().map(|p| p.ln()).sum::<f64>() + rest.ln();
    }
    linear + log_sum
}

/// `o_j = (σ(l_j) − t_j) g` over one row.
#[inline(always)]
fn row_grad_impl<T: Float, const FUSED: bool>(o: &mut [T], l: &[T], t: &[T], g: T) {
    for ((o, &l), &t) in o.iter_mut().zip(l).zip(t) {
        *o = l.bce_grad::<FUSED>(t, g);
    }
}

/// [`row_bce_impl`] compiled for AVX2 + FMA (4 `f64` lanes, fused
/// multiply-adds; the default x86-64 target has only SSE2).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_bce_avx2_fma<T: Float>(l: &[T], t: &[T]) -> f64 {
    row_bce_impl::<T, true>(l, t)
}

/// [`row_grad_impl`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_grad_avx2_fma<T: Float>(o: &mut [T], l: &[T], t: &[T], g: T) {
    row_grad_impl::<T, true>(o, l, t, g)
}

/// One row's binary cross-entropy, with AVX2 and FMA where available.
fn row_bce<T: Float>(l: &[T], t: &[T]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the running CPU supports AVX2 and FMA, checked just above.
        return unsafe { row_bce_avx2_fma(l, t) };
    }
    row_bce_impl::<T, false>(l, t)
}

/// One row's logits gradient, with AVX2 and FMA where available.
fn row_grad<T: Float>(o: &mut [T], l: &[T], t: &[T], g: T) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the running CPU supports AVX2 and FMA, checked just above.
        return unsafe { row_grad_avx2_fma(o, l, t, g) };
    }
    row_grad_impl::<T, false>(o, l, t, g)
}

fn bce_rows<T: Float>(logits: &[T], targets: &[T], n: usize, m: usize, d: usize) -> Vec<T> {
    let mut out = vec![T::zero(); n];
    for_row_bands(&mut out, n, 1, |first, band| {
        for (r, o) in band.iter_mut().enumerate() {
            let i = first + r;
            let (Some(l), Some(t)) = (
                logits.get(i * d..(i + 1) * d),
                targets.get((i % m) * d..(i % m + 1) * d),
            ) else {
                continue;
            };
            *o = T::from_f64(row_bce(l, t));
        }
    });
    out
}

/// Running products (and `ln`s) per [`PRODUCT_SPAN`] pixels in
/// [`row_bce_impl`]; a multiple of every SIMD width.
const LANES: usize = 8;

/// The two kernels for `f32` and `f64`; both compute in `f64` (the
/// exponential and the row sums) and round once.
trait Float: WithDType + Send + Sync {
    /// `max(l, 0) − l t`, the linear part of the BCE.
    fn linear_part(self, t: Self) -> f64;
    /// `e^{−|l|} ≤ 1`, the argument of the BCE's `log1p`, by
    /// [`exp_nonpositive`] of degree 7 (`f32`) or 12 (`f64`).
    fn exp_neg_abs<const FUSED: bool>(self) -> f64;
    /// `(σ(l) − t) g`, with `σ` computed from `e^{−|l|}` (no overflow):
    /// `σ(l) = 1/(1 + e)` for `l ≥ 0`, `e/(1 + e)` below.
    #[inline(always)]
    fn bce_grad<const FUSED: bool>(self, t: Self, g: Self) -> Self {
        let e = self.exp_neg_abs::<FUSED>();
        let numerator = if self.to_f64() >= 0.0 { 1.0 } else { e };
        Self::from_f64((numerator / (1.0 + e) - t.to_f64()) * g.to_f64())
    }
}

macro_rules! impl_float {
    ($t:ty, $degree:literal) => {
        impl Float for $t {
            #[inline(always)]
            fn linear_part(self, t: Self) -> f64 {
                let (l, t) = (self as f64, t as f64);
                l.max(0.0) - l * t
            }
            #[inline(always)]
            fn exp_neg_abs<const FUSED: bool>(self) -> f64 {
                exp_nonpositive::<$degree, FUSED>(-(self as f64).abs())
            }
        }
    };
}
impl_float!(f32, 7);
impl_float!(f64, 12);

/// What a custom op's CPU forward pass returns: the result's storage and
/// shape (named, as in deepgen-core's ops, so that `cpu_fwd` fits on a line).
type CpuForward = candle::Result<(CpuStorage, Shape)>;

/// Runs a kernel written once for `f32` and `f64` (closures cannot be
/// generic, so the body is expanded for each type): binds each `$x` to the
/// contiguous elements of CPU operand `($s, $l)`, all of one float dtype,
/// and wraps the `Vec` that `$body` returns as the result's storage. Other
/// dtypes are an error naming `$op`.
macro_rules! map_floats {
    ($op:literal, |$($x:ident = ($s:ident, $l:ident)),+| $body:expr) => {
        match ($($s,)+) {
            ($(CpuStorage::F32($x),)+) => {
                $(let $x = slices($x, $l)?;)+
                CpuStorage::F32($body)
            }
            ($(CpuStorage::F64($x),)+) => {
                $(let $x = slices($x, $l)?;)+
                CpuStorage::F64($body)
            }
            _ => candle::bail!(concat!($op, ": f32 or f64 operands of one dtype expected")),
        }
    };
}

/// `(n, m, d)` of logits `[n, d]` and targets `[m, d]`, `m` dividing `n`.
fn check_pair(l1: &Layout, l2: &Layout) -> candle::Result<(usize, usize, usize)> {
    let (n, d) = l1.shape().dims2()?;
    let (m, td) = l2.shape().dims2()?;
    if td != d || (m == 0 && n > 0) || (m > 0 && n % m != 0) {
        candle::bail!("bce: logits {:?} and targets {:?} do not fit", l1.dims(), l2.dims())
    }
    Ok((n, m.max(1), d))
}

impl CustomOp2 for BceRows {
    fn name(&self) -> &'static str {
        "deepgen-bce-rows"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CpuForward {
        let (n, m, d) = check_pair(l1, l2)?;
        let out = map_floats!("bce", |l = (s1, l1), t = (s2, l2)| bce_rows(l, t, n, m, d));
        Ok((out, Shape::from(n)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_res = grad_res.contiguous()?;
        // Tracked, so that differentiating the gradient again (with
        // CANDLE_GRAD_DO_NOT_DETACH) fails loudly instead of giving zero.
        let grad_logits = logits.apply_op3(targets, &grad_res, BceLogitsGrad)?;
        // ∂/∂x_kj = −Σ_{i ≡ k mod m} l_ij g_i, only when the targets are
        // differentiated.
        let grad_targets = if targets.track_op() {
            let (n, d) = logits.dims2()?;
            let m = targets.dim(0)?.max(1);
            let per_row = logits.broadcast_mul(&grad_res.unsqueeze(1)?)?.neg()?;
            Some(per_row.reshape((n / m, m, d))?.sum(0)?)
        } else {
            None
        };
        Ok((Some(grad_logits), grad_targets))
    }
}

/// `(σ(l_ij) − x_ij) · g_i`, the logits' gradient, in one pass.
struct BceLogitsGrad;

fn logits_grad<T: Float>(logits: &[T], targets: &[T], grad: &[T], n: usize, m: usize, d: usize) -> Vec<T> {
    let mut out = vec![T::zero(); n * d];
    for_row_bands(&mut out, n, d, |first, band| {
        for (r, o) in band.chunks_exact_mut(d.max(1)).enumerate() {
            let i = first + r;
            let (Some(l), Some(t), Some(&g)) = (
                logits.get(i * d..(i + 1) * d),
                targets.get((i % m) * d..(i % m + 1) * d),
                grad.get(i),
            ) else {
                continue;
            };
            row_grad(o, l, t, g);
        }
    });
    out
}

impl CustomOp3 for BceLogitsGrad {
    fn name(&self) -> &'static str {
        "deepgen-bce-rows-grad"
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
        let (n, m, d) = check_pair(l1, l2)?;
        if l3.shape().dims() != [n] {
            candle::bail!("bce grad: expected [{n}] row gradients, got {:?}", l3.dims())
        }
        let out = map_floats!("bce grad", |l = (s1, l1), t = (s2, l2), g = (s3, l3)| {
            logits_grad(l, t, g, n, m, d)
        });
        Ok((out, Shape::from((n, d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{gaussian_noise, uniform_noise};
    use candle::{Device, Var};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Targets uniform in `[0, 1]`, `[n, d]`.
    fn unit_uniform(rng: &mut StdRng, n: usize, d: usize, dev: &Device) -> Result<Tensor> {
        Ok(uniform_noise(rng, n, d, dev)?.affine(0.5, 0.5)?)
    }

    /// Matches the tensor-op version, value and gradient, including
    /// logits far in the tails (±200, where σ rounds to 0 or 1 in f32) and
    /// grey-level targets.
    #[test]
    fn fused_matches_tensor_ops() -> Result<()> {
        let dev = Device::Cpu;
        let logits: Vec<f32> = vec![-200.0, -20.0, -1.5, -1e-3, 0.0, 0.7, 3.0, 25.0, 200.0, 1.0, -2.0, 0.25];
        let targets: Vec<f32> = vec![0.0, 1.0, 0.3, 0.5, 1.0, 0.0, 0.9, 0.1, 1.0, 0.0, 1.0, 0.5];
        let l = Var::from_vec(logits, (3, 4), &dev)?;
        let t = Tensor::from_vec(targets, (3, 4), &dev)?;
        // A row weighting so that the incoming gradient differs per row.
        let w = Tensor::new(&[1f32, -2.0, 0.5], &dev)?;

        let ours = bce_with_logits_rows(l.as_tensor(), &t)?;
        let theirs = bce_with_logits_elementwise(l.as_tensor(), &t)?.sum(D::Minus1)?;
        let (a, b) = (ours.to_vec1::<f32>()?, theirs.to_vec1::<f32>()?);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{a:?} vs {b:?}");
        }
        // Row 0 by hand: softplus(l) − l t per pixel:
        // 0 + 0 (l = −200, t = 0) → ≈0; softplus(−20) − (−20) ≈ 20;
        // softplus(−1.5) + 0.45 = 0.2014 + 0.45; softplus(−0.001) + 0.0005 = 0.69265.
        assert!(
            (a[0] - (20.0 + 0.201_413 + 0.45 + 0.692_647 + 0.0005)).abs() < 1e-4,
            "{}",
            a[0]
        );

        let g_ours = (ours * &w)?.sum_all()?.backward()?;
        let g_theirs = (theirs * &w)?.sum_all()?.backward()?;
        let grad = |g: &candle::backprop::GradStore| -> Result<Vec<f32>> {
            Ok(g.get(&l)
                .ok_or_else(|| candle::Error::msg("no gradient"))?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        let (ga, gb) = (grad(&g_ours)?, grad(&g_theirs)?);
        for (x, y) in ga.iter().zip(&gb) {
            assert!((x - y).abs() <= 1e-6, "{ga:?} vs {gb:?}");
        }
        Ok(())
    }

    /// A row longer than one partial product (1,500 pixels), logits up to
    /// ±30, against the per-pixel `f64` sum of `softplus(l) − l t`.
    #[test]
    fn long_rows_match_an_f64_reference() -> Result<()> {
        let dev = Device::Cpu;
        let mut rng = StdRng::seed_from_u64(3);
        let l = (gaussian_noise(&mut rng, 2, 1500, &dev)? * 10.0)?.clamp(-30f32, 30f32)?;
        let t = unit_uniform(&mut rng, 2, 1500, &dev)?;
        let ours = bce_with_logits_rows(&l, &t)?.to_vec1::<f32>()?;
        let (lv, tv) = (l.to_vec2::<f32>()?, t.to_vec2::<f32>()?);
        for (row, got) in ours.iter().enumerate() {
            let reference: f64 = lv[row]
                .iter()
                .zip(&tv[row])
                .map(|(&l, &t)| {
                    let (l, t) = (l as f64, t as f64);
                    l.max(0.0) - l * t + (-l.abs()).exp().ln_1p()
                })
                .sum();
            assert!(
                (*got as f64 - reference).abs() <= 2e-7 * reference,
                "{got} vs {reference}"
            );
        }
        Ok(())
    }

    /// The portable kernels (SSE2, no fused multiply-adds) agree with the
    /// dispatched ones (AVX2 + FMA where the CPU has them), value and
    /// gradient, over rows with and without a ragged tail.
    #[test]
    fn portable_and_dispatched_kernels_agree() -> Result<()> {
        let mut rng = StdRng::seed_from_u64(5);
        for d in [1, 7, 8, 513, 1500] {
            let l = (gaussian_noise(&mut rng, 1, d, &Device::Cpu)? * 8.0)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let t = unit_uniform(&mut rng, 1, d, &Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let (portable, dispatched) = (row_bce_impl::<f32, false>(&l, &t), row_bce(&l, &t));
            assert!((portable - dispatched).abs() <= 1e-12 * portable.abs(), "d = {d}");
            let (mut a, mut b) = (vec![0f32; d], vec![0f32; d]);
            row_grad_impl::<f32, false>(&mut a, &l, &t, 0.7);
            row_grad(&mut b, &l, &t, 0.7);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-7, "d = {d}: {x} vs {y}");
            }
        }
        Ok(())
    }

    #[test]
    fn target_gradient_is_minus_the_logit() -> Result<()> {
        let dev = Device::Cpu;
        let l = Tensor::new(&[[0.5f64, -2.0]], &dev)?;
        let t = Var::new(&[[0.25f64, 0.75]], &dev)?;
        let grads = bce_with_logits_rows(&l, t.as_tensor())?.sum_all()?.backward()?;
        let g = grads.get(&t).map(|g| g.to_vec2::<f64>()).transpose()?;
        assert_eq!(g, Some(vec![vec![-0.5, 2.0]]));
        Ok(())
    }

    /// Targets with `m` rows score logits row `i` against row `i mod m`,
    /// in value and gradients, exactly as the explicitly repeated targets do;
    /// large enough (2 × 40,000 elements) to run on several threads.
    #[test]
    fn repeated_targets_equal_explicit_repeats() -> Result<()> {
        let dev = Device::Cpu;
        let mut rng = StdRng::seed_from_u64(7);
        let (k, m, d) = (4, 5, 8_000);
        let l = Var::from_tensor(&(gaussian_noise(&mut rng, k * m, d, &dev)? * 3.0)?)?;
        let t = Var::from_tensor(&unit_uniform(&mut rng, m, d, &dev)?)?;
        let repeated = t
            .as_tensor()
            .unsqueeze(0)?
            .broadcast_as((k, m, d))?
            .reshape((k * m, d))?;
        let w = gaussian_noise(&mut rng, 1, k * m, &dev)?.flatten_all()?;
        let a = bce_with_logits_rows(l.as_tensor(), t.as_tensor())?;
        let b = bce_with_logits_rows(l.as_tensor(), &repeated)?;
        let c = bce_with_logits_elementwise(l.as_tensor(), &repeated)?.sum(D::Minus1)?;
        let max_diff = |x: &Tensor, y: &Tensor| -> Result<f32> { Ok((x - y)?.abs()?.max_all()?.to_scalar()?) };
        assert!(max_diff(&a, &b)? == 0.0);
        let scale = c.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(max_diff(&a, &c)? <= 1e-5 * scale, "vs numerics: {}", max_diff(&a, &c)?);
        let ga = (&a * &w)?.sum_all()?.backward()?;
        let gc = (&c * &w)?.sum_all()?.backward()?;
        for var in [&l, &t] {
            let (Some(x), Some(y)) = (ga.get(var), gc.get(var)) else {
                panic!("missing gradient")
            };
            let scale = y.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
            assert!(
                max_diff(x, y)? <= 1e-5 * scale,
                "gradient differs by {}",
                max_diff(x, y)?
            );
        }
        assert!(bce_with_logits_rows(l.as_tensor(), &t.as_tensor().narrow(0, 0, 3)?).is_err());
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_errors() -> Result<()> {
        let dev = Device::Cpu;
        let l = Tensor::zeros((2, 3), DType::F32, &dev)?;
        let err = bce_with_logits_rows(&l, &Tensor::zeros((3, 2), DType::F32, &dev)?).map(|_| ());
        assert!(
            matches!(&err, Err(Error::InvalidArgument { reason, .. }) if reason.contains("[3, 2]")),
            "{err:?}"
        );
        assert!(bce_with_logits_rows(&l.flatten_all()?, &l.flatten_all()?).is_err());
        Ok(())
    }
}
