//! Transposed convolution as the adjoint of convolution (seed 002, part 1).
//!
//! A convolution `y = conv(x, k)` is linear in `x`; its matrix `C_k` maps an
//! `H×W` input to an `H'×W'` output with `H' = ⌊(H + 2p − K)/s⌋ + 1`. The
//! transposed convolution is `C_kᵀ`, which is what makes the two identities
//! below hold for every `x`, `y`, `k`, stride and padding:
//!
//! - **Adjoint:** `⟨conv(x, k), y⟩ = ⟨x, conv_transposed(y, k)⟩`.
//! - **Gradient** (seed 002): for a loss `l` of `y = conv(x, k)`, the input
//!   gradient is the transposed convolution of the output gradient,
//!   `∂l/∂x = conv_transposed(∂l/∂y, k)`. In 1-D with stride 1 and no padding
//!   the seed writes it out: from `y_i = Σ_a x_{i+a−1} k_a = Σ_u x_u k_{u−i+1}`,
//!   `∂l/∂x_u = Σ_i ∂l/∂y_i · k_{u−i+1}`. In 2-D with stride `s` and padding
//!   `p` the same sum reads
//!   `∂l/∂x[c, u, v] = Σ_{f, i, j} ∂l/∂y[f, i, j] · k[f, c, u + p − i·s, v + p − j·s]`
//!   over the kernel indices that exist.
//!
//! The transposed convolution of an `H'` output has side
//! `(H' − 1)s − 2p + K`, which falls short of `H` by `(H + 2p − K) mod s`
//! (the input rows the last window never reached); that remainder is the
//! `output_padding` [`conv2d_input_grad`] adds so that the result has the
//! input's shape.
//!
//! The property tests of this module check both identities for random
//! shapes, strides and paddings against a direct implementation of the sums
//! above, and Candle's autograd against finite differences.

use crate::{Error, Result};
use candle::Tensor;

/// The gradient of a loss with respect to a convolution's input, from the
/// gradient with respect to its output (seed 002): the transposed convolution
/// of `grad_output` `[N, F, H', W']` with the same `kernel` `[F, C, K, K]`,
/// `padding` and `stride`, padded on the far side to the input's
/// `(height, width)`. This is also the adjoint `C_kᵀ` applied to `grad_output`.
///
/// ```
/// use deepgen_core::candle::{Device, Tensor};
/// // 1-D (height 1), seed 002: y = conv(x, k) with k = [1, 0, −1] and
/// // ∂l/∂y = [1, 10] gives ∂l/∂x_u = Σ_i ∂l/∂y_i k_{u−i+1} = [1, 10, −1, −10].
/// let dev = &Device::Cpu;
/// let kernel = Tensor::new(&[1f32, 0., -1.], dev)?.reshape((1, 1, 1, 3))?;
/// let grad_y = Tensor::new(&[1f32, 10.], dev)?.reshape((1, 1, 1, 2))?;
/// let grad_x = deepgen_cnn::conv2d_input_grad(&grad_y, &kernel, (1, 4), 0, 1)?;
/// assert_eq!(grad_x.flatten_all()?.to_vec1::<f32>()?, [1., 10., -1., -10.]);
/// # Ok::<(), deepgen_cnn::Error>(())
/// ```
///
/// # Errors
/// [`Error::BadShape`] when the shapes do not belong to one convolution (an
/// input of `(height, width)` with this kernel, padding and stride does not
/// give `grad_output`'s size, or the channel counts differ).
pub fn conv2d_input_grad(
    grad_output: &Tensor,
    kernel: &Tensor,
    (height, width): (usize, usize),
    padding: usize,
    stride: usize,
) -> Result<Tensor> {
    let (_, filters, out_h, out_w) = grad_output.dims4()?;
    let (kernel_filters, _, k_h, k_w) = kernel.dims4()?;
    let mismatch = |expected: String| Error::BadShape {
        what: "conv2d_input_grad output gradient",
        got: grad_output.dims().to_vec(),
        expected,
    };
    if kernel_filters != filters {
        return Err(mismatch(format!(
            "{kernel_filters} channels, one per filter of the kernel"
        )));
    }
    let out_h_expected = crate::conv_output_size(height, k_h, stride, padding);
    let out_w_expected = crate::conv_output_size(width, k_w, stride, padding);
    if out_h_expected != Some(out_h) || out_w_expected != Some(out_w) {
        return Err(mismatch(format!(
            "the output size of a {height}×{width} input under a {k_h}×{k_w} kernel, stride {stride}, padding {padding}"
        )));
    }
    // (H + 2p − K) mod s rows (and columns) were never reached by a window.
    let out_pad_h = (height + 2 * padding - k_h) % stride;
    let out_pad_w = (width + 2 * padding - k_w) % stride;
    if out_pad_h != out_pad_w {
        // Candle's transposed convolution takes one output padding for both
        // sides: pad the larger and cut the other side back.
        let pad = out_pad_h.max(out_pad_w);
        let full = deepgen_core::ops::conv_transpose2d(grad_output, kernel, padding, pad, stride, 1)?;
        return Ok(full.narrow(2, 0, height)?.narrow(3, 0, width)?);
    }
    Ok(deepgen_core::ops::conv_transpose2d(
        grad_output,
        kernel,
        padding,
        out_pad_h,
        stride,
        1,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution the adjoint is checked against (no dilation).
    fn conv2d(xs: &Tensor, kernel: &Tensor, padding: usize, stride: usize) -> candle::Result<Tensor> {
        deepgen_core::ops::conv2d(xs, kernel, padding, stride, 1)
    }
    use candle::{DType, Device, Var};
    use deepgen_core::rng::{randn, rng_from_seed};
    use proptest::prelude::*;

    /// Relative tolerance for `f32` convolutions over at most 3·5·5 = 75 terms
    /// (unit roundoff 6e-8 times the term count, with a wide margin).
    const REL_TOL: f64 = 1e-4;

    /// One random convolution problem: `x` `[n, c, h, w]`, `k` `[f, c, kh, kw]`.
    #[derive(Debug, Clone)]
    struct Case {
        n: usize,
        c: usize,
        f: usize,
        h: usize,
        w: usize,
        kh: usize,
        kw: usize,
        stride: usize,
        padding: usize,
        seed: u64,
    }

    impl Case {
        fn out_h(&self) -> usize {
            (self.h + 2 * self.padding - self.kh) / self.stride + 1
        }
        fn out_w(&self) -> usize {
            (self.w + 2 * self.padding - self.kw) / self.stride + 1
        }
        /// `x`, `k`, and a tensor `g` of the output's shape.
        fn tensors(&self, dtype: DType) -> candle::Result<(Tensor, Tensor, Tensor)> {
            let mut rng = rng_from_seed(self.seed);
            let dev = &Device::Cpu;
            let x = randn(&mut rng, (self.n, self.c, self.h, self.w), dev)?.to_dtype(dtype)?;
            let k = randn(&mut rng, (self.f, self.c, self.kh, self.kw), dev)?.to_dtype(dtype)?;
            let g = randn(&mut rng, (self.n, self.f, self.out_h(), self.out_w()), dev)?.to_dtype(dtype)?;
            Ok((x, k, g))
        }
    }

    /// Channels ≤ 3, spatial ≤ 9 (height and width drawn separately), stride
    /// ≤ 3, padding ≤ 2, a square kernel of side ≤ 5 that fits the padded
    /// input. (Candle's conv2d backward assumes square kernels: it sizes the
    /// input gradient from the kernel's height; the layers build only square
    /// ones.)
    fn arb_case() -> impl Strategy<Value = Case> {
        (
            1..=2usize,
            1..=3usize,
            1..=3usize,
            1..=9usize,
            1..=9usize,
            1..=3usize,
            0..=2usize,
        )
            .prop_flat_map(|(n, c, f, h, w, stride, padding)| {
                let max_k = (h.min(w) + 2 * padding).min(5);
                (1..=max_k, any::<u64>()).prop_map(move |(k, seed)| Case {
                    n,
                    c,
                    f,
                    h,
                    w,
                    kh: k,
                    kw: k,
                    stride,
                    padding,
                    seed,
                })
            })
    }

    fn values(t: &Tensor) -> candle::Result<Vec<f64>> {
        t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn norm(a: &[f64]) -> f64 {
        dot(a, a).sqrt()
    }

    /// `|a_i − b_i| ≤ REL_TOL · max(1, max_j |b_j|)` for every `i`.
    fn check_close(what: &str, a: &[f64], b: &[f64]) -> std::result::Result<(), TestCaseError> {
        prop_assert_eq!(a.len(), b.len(), "{}: lengths differ", what);
        let scale = b.iter().fold(1f64, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            prop_assert!(
                (x - y).abs() <= REL_TOL * scale,
                "{}: element {} is {} vs {} (scale {})",
                what,
                i,
                x,
                y,
                scale
            );
        }
        Ok(())
    }

    /// Every term of the convolution sum
    /// `y[n, f, i, j] = Σ_{c, a, b} x[n, c, i·s + a − p, j·s + b − p] · k[f, c, a, b]`
    /// whose input position lies inside the image, as the flat indices
    /// `(x, k, y)` into `x` `[n, c, h, w]`, `k` `[f, c, kh, kw]` and `y`
    /// `[n, f, oh, ow]`, in the order `n, f, i, j, c, a, b`. The three direct
    /// sums below read the same terms: each accumulates its own product.
    fn conv_terms(case: &Case, mut term: impl FnMut(usize, usize, usize)) {
        let Case {
            n,
            c,
            f,
            h,
            w,
            kh,
            kw,
            stride,
            padding,
            ..
        } = *case;
        let (oh, ow) = (case.out_h(), case.out_w());
        for ni in 0..n {
            for fi in 0..f {
                for i in 0..oh {
                    for j in 0..ow {
                        for ci in 0..c {
                            for a in 0..kh {
                                for b in 0..kw {
                                    let (u, v) = (
                                        (i * stride + a) as isize - padding as isize,
                                        (j * stride + b) as isize - padding as isize,
                                    );
                                    if u < 0 || v < 0 || u >= h as isize || v >= w as isize {
                                        continue;
                                    }
                                    term(
                                        ((ni * c + ci) * h + u as usize) * w + v as usize,
                                        ((fi * c + ci) * kh + a) * kw + b,
                                        ((ni * f + fi) * oh + i) * ow + j,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The convolution written as its sum:
    /// `y[n, f, i, j] = Σ_{c, a, b} x[n, c, i·s + a − p, j·s + b − p] · k[f, c, a, b]`.
    fn direct_conv(case: &Case, x: &[f64], k: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; case.n * case.f * case.out_h() * case.out_w()];
        conv_terms(case, |xi, ki, yi| y[yi] += x[xi] * k[ki]);
        y
    }

    /// Seed 002's gradient sum in 2-D:
    /// `∂l/∂x[n, c, u, v] = Σ_{f, i, j} g[n, f, i, j] · k[f, c, u + p − i·s, v + p − j·s]`
    /// (the kernel index `(a, b) = (u + p − i·s, v + p − j·s)` is the term's).
    fn seed_input_grad(case: &Case, g: &[f64], k: &[f64]) -> Vec<f64> {
        let mut dx = vec![0.0; case.n * case.c * case.h * case.w];
        conv_terms(case, |xi, ki, yi| dx[xi] += g[yi] * k[ki]);
        dx
    }

    /// `∂l/∂k[f, c, a, b] = Σ_{n, i, j} g[n, f, i, j] · x[n, c, i·s + a − p, j·s + b − p]`.
    fn direct_kernel_grad(case: &Case, x: &[f64], g: &[f64]) -> Vec<f64> {
        let mut dk = vec![0.0; case.f * case.c * case.kh * case.kw];
        conv_terms(case, |xi, ki, yi| dk[ki] += g[yi] * x[xi]);
        dk
    }

    /// `⟨conv(x, k), y⟩ = ⟨x, conv_transposed(y, k)⟩`, up to rounding relative
    /// to the Cauchy–Schwarz bound `‖conv(x, k)‖·‖y‖`.
    fn check_adjoint(case: &Case) -> std::result::Result<(), TestCaseError> {
        let run = || -> Result<(f64, f64, f64)> {
            let (x, k, y) = case.tensors(DType::F32)?;
            let cx = values(&conv2d(&x, &k, case.padding, case.stride)?)?;
            let ty = values(&conv2d_input_grad(&y, &k, (case.h, case.w), case.padding, case.stride)?)?;
            let (x, y) = (values(&x)?, values(&y)?);
            Ok((dot(&cx, &y), dot(&x, &ty), norm(&cx) * norm(&y) + norm(&x) * norm(&ty)))
        };
        let (lhs, rhs, bound) = run().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            (lhs - rhs).abs() <= REL_TOL * bound.max(1.0),
            "⟨conv(x,k), y⟩ = {} but ⟨x, convᵀ(y,k)⟩ = {} for {:?}",
            lhs,
            rhs,
            case
        );
        Ok(())
    }

    /// Candle's conv equals the direct sum; the gradients of
    /// `l = ⟨conv(x, k), g⟩` (so `∂l/∂y = g`) from autograd equal seed 002's
    /// sum and `conv2d_input_grad(g, k)` (input) and the correlation of `x`
    /// and `g` (kernel).
    fn check_gradients(case: &Case) -> std::result::Result<(), TestCaseError> {
        let run = || -> Result<[(Vec<f64>, Vec<f64>); 4]> {
            let (x, k, g) = case.tensors(DType::F32)?;
            let (xv, kv, gv) = (values(&x)?, values(&k)?, values(&g)?);
            let x = Var::from_tensor(&x)?;
            let k = Var::from_tensor(&k)?;
            let y = conv2d(x.as_tensor(), k.as_tensor(), case.padding, case.stride)?;
            let grads = (&y * &g)?.sum_all()?.backward()?;
            let grad_of = |v: &Var| -> Result<Vec<f64>> {
                let g = grads.get(v).ok_or_else(|| candle::Error::msg("no gradient"))?;
                Ok(values(g)?)
            };
            let transposed = conv2d_input_grad(&g, k.as_tensor(), (case.h, case.w), case.padding, case.stride)?;
            let seed_sum = seed_input_grad(case, &gv, &kv);
            Ok([
                (values(&y)?, direct_conv(case, &xv, &kv)),
                (grad_of(&x)?, seed_sum.clone()),
                (values(&transposed)?, seed_sum),
                (grad_of(&k)?, direct_kernel_grad(case, &xv, &gv)),
            ])
        };
        let results = run().map_err(|e| TestCaseError::fail(format!("{e} for {case:?}")))?;
        let names = [
            "conv vs direct sum",
            "autograd ∂l/∂x vs seed 002 sum",
            "conv2d_input_grad vs seed 002 sum",
            "autograd ∂l/∂k vs direct sum",
        ];
        for (name, (got, want)) in names.iter().zip(&results) {
            check_close(&format!("{name} for {case:?}"), got, want)?;
        }
        Ok(())
    }

    /// The `CONVT` layer's own gradients (decoders and generators train
    /// through them): for `l = ⟨convT(y, k), z⟩`, `∂l/∂y = conv(z, k)` (the
    /// adjoint read the other way) and `∂l/∂k` is the correlation of `z` and `y`.
    fn check_transposed_layer_gradients(case: &Case) -> std::result::Result<(), TestCaseError> {
        let run = || -> Result<[(Vec<f64>, Vec<f64>); 2]> {
            // Here `g` plays the transposed convolution's input and `x` its
            // output's shape (taking the padding remainder as output padding).
            let (z, k, y) = case.tensors(DType::F32)?;
            let y = Var::from_tensor(&y)?;
            let k = Var::from_tensor(&k)?;
            let out = conv2d_input_grad(
                y.as_tensor(),
                k.as_tensor(),
                (case.h, case.w),
                case.padding,
                case.stride,
            )?;
            let grads = (&out * &z)?.sum_all()?.backward()?;
            let grad_of = |v: &Var| -> Result<Vec<f64>> {
                let g = grads.get(v).ok_or_else(|| candle::Error::msg("no gradient"))?;
                Ok(values(g)?)
            };
            let (zv, yv) = (values(&z)?, values(y.as_tensor())?);
            Ok([
                (
                    grad_of(&y)?,
                    values(&conv2d(&z, k.as_tensor(), case.padding, case.stride)?)?,
                ),
                (grad_of(&k)?, direct_kernel_grad(case, &zv, &yv)),
            ])
        };
        let results = run().map_err(|e| TestCaseError::fail(format!("{e} for {case:?}")))?;
        let names = [
            "autograd ∂l/∂y of convT vs conv(z, k)",
            "autograd ∂l/∂k of convT vs direct sum",
        ];
        for (name, (got, want)) in names.iter().zip(&results) {
            check_close(&format!("{name} for {case:?}"), got, want)?;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn prop_adjoint_identity(case in arb_case()) {
            check_adjoint(&case)?;
        }

        #[test]
        fn prop_input_gradient_is_the_transposed_convolution(case in arb_case()) {
            check_gradients(&case)?;
        }

        #[test]
        fn prop_transposed_layer_gradients(case in arb_case()) {
            check_transposed_layer_gradients(&case)?;
        }
    }

    #[test]
    fn seed_002_one_dimensional_example() -> Result<()> {
        // y_i = Σ_a x_{i+a−1} k_a with x = [1, 2, 3, 4], k = [1, 0, −1]:
        // y_1 = 1 − 3 = −2, y_2 = 2 − 4 = −2. With ∂l/∂y = [1, 10],
        // ∂l/∂x_u = Σ_i ∂l/∂y_i k_{u−i+1} = [1, 10, 0·1 + 1·(−1) + 10·0, 10·(−1)] = [1, 10, −1, −10].
        let dev = &Device::Cpu;
        let x = Var::from_tensor(&Tensor::new(&[1f32, 2., 3., 4.], dev)?.reshape((1, 1, 1, 4))?)?;
        let k = Tensor::new(&[1f32, 0., -1.], dev)?.reshape((1, 1, 1, 3))?;
        let y = conv2d(x.as_tensor(), &k, 0, 1)?;
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [-2., -2.]);
        let g = Tensor::new(&[1f32, 10.], dev)?.reshape((1, 1, 1, 2))?;
        let grads = (&y * &g)?.sum_all()?.backward()?;
        let dx = grads.get(&x).ok_or_else(|| candle::Error::msg("no gradient"))?;
        assert_eq!(dx.flatten_all()?.to_vec1::<f32>()?, [1., 10., -1., -10.]);
        Ok(())
    }

    #[test]
    fn strided_transposed_convolution_closed_form() -> Result<()> {
        // 1-D, k = [1, 2], stride 2, no padding: a length-4 input gives 2
        // outputs y_i = x_{2i} + 2 x_{2i+1}. Its adjoint spreads g = [1, 10]
        // back as [g_0·1, g_0·2, g_1·1, g_1·2] = [1, 2, 10, 20]; with a
        // length-5 input the last element is never reached and gets 0 (the
        // output padding).
        let dev = &Device::Cpu;
        let k = Tensor::new(&[1f32, 2.], dev)?.reshape((1, 1, 1, 2))?;
        let g = Tensor::new(&[1f32, 10.], dev)?.reshape((1, 1, 1, 2))?;
        let dx = conv2d_input_grad(&g, &k, (1, 4), 0, 2)?;
        assert_eq!(dx.flatten_all()?.to_vec1::<f32>()?, [1., 2., 10., 20.]);
        let dx = conv2d_input_grad(&g, &k, (1, 5), 0, 2)?;
        assert_eq!(dx.flatten_all()?.to_vec1::<f32>()?, [1., 2., 10., 20., 0.]);
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_errors() -> Result<()> {
        let dev = &Device::Cpu;
        let k = Tensor::zeros((2, 1, 3, 3), DType::F32, dev)?;
        let g = Tensor::zeros((1, 2, 4, 4), DType::F32, dev)?;
        assert!(conv2d_input_grad(&g, &k, (6, 6), 0, 1).is_ok());
        let err = conv2d_input_grad(&g, &k, (7, 6), 0, 1).unwrap_err();
        assert!(matches!(err, Error::BadShape { .. }), "{err}");
        let g3 = Tensor::zeros((1, 3, 4, 4), DType::F32, dev)?;
        assert!(conv2d_input_grad(&g3, &k, (6, 6), 0, 1).is_err());
        Ok(())
    }

    /// Central differences in `f64` for a nonlinear loss
    /// `l(x, k) = Σ tanh(conv(x, k)) ⊙ g + ½‖conv(x, k)‖²` on a few fixed
    /// shapes; every partial derivative of `x` and `k` is compared.
    #[test]
    fn autograd_matches_finite_differences() -> Result<()> {
        const H: f64 = 1e-5;
        // Truncation error O(H²·l''') plus rounding O(ε/H): about 1e-9 here.
        const TOL: f64 = 1e-6;
        let cases = [
            (2, 3, 2, 5, 6, 3, 1, 0),
            (1, 2, 3, 7, 7, 3, 2, 1),
            (1, 1, 2, 8, 5, 2, 3, 2),
            (2, 2, 1, 4, 4, 4, 1, 2),
        ];
        for (seed, &(n, c, f, h, w, k_side, stride, padding)) in cases.iter().enumerate() {
            let case = Case {
                n,
                c,
                f,
                h,
                w,
                kh: k_side,
                kw: k_side,
                stride,
                padding,
                seed: seed as u64,
            };
            let (x, k, g) = case.tensors(DType::F64)?;
            let loss = |x: &Tensor, k: &Tensor| -> candle::Result<Tensor> {
                let y = conv2d(x, k, padding, stride)?;
                (y.tanh()? * &g)?.sum_all()? + (y.sqr()?.sum_all()? * 0.5)?
            };
            let xv = Var::from_tensor(&x)?;
            let kv = Var::from_tensor(&k)?;
            let grads = loss(xv.as_tensor(), kv.as_tensor())?.backward()?;
            for (which, var, base) in [("x", &xv, &x), ("k", &kv, &k)] {
                let analytic = values(grads.get(var).ok_or_else(|| candle::Error::msg("no gradient"))?)?;
                let flat = values(base)?;
                for i in 0..flat.len() {
                    let shifted = |delta: f64| -> candle::Result<f64> {
                        let mut v = flat.clone();
                        v[i] += delta;
                        let t = Tensor::from_vec(v, base.dims(), &Device::Cpu)?;
                        let l = if which == "x" { loss(&t, &k)? } else { loss(&x, &t)? };
                        l.to_scalar::<f64>()
                    };
                    let numeric = (shifted(H)? - shifted(-H)?) / (2.0 * H);
                    assert!(
                        (numeric - analytic[i]).abs() <= TOL * (1.0 + numeric.abs()),
                        "∂l/∂{which}[{i}]: autograd {} vs finite difference {numeric} for {case:?}",
                        analytic[i]
                    );
                }
            }
        }
        Ok(())
    }
}
