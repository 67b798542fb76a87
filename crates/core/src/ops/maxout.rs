//! Maxout units (Goodfellow et al., 2013; PacGAN's discriminators): the
//! largest of each group of `k` consecutive values along the last
//! dimension, with a backward pass that writes the gradient to the winning
//! piece.
//!
//! ```text
//! y[…, u] = max_{0 ≤ p < k} x[…, u·k + p]
//! ∂x[…, u·k + p] = ∂y[…, u] if p = p*(u) else 0,   p*(u) = the first p with x[…, u·k + p] = y[…, u]
//! ```
//!
//! Composed from Candle's ops (`reshape`, `max_keepdim`) the forward pass
//! is one sweep, but the backward is four full-size tensors (`broadcast_as`,
//! `eq`, `to_dtype`, the product) and a zero-filled gradient that Candle's
//! backward adds into; in PacGAN's 2-D discriminator that was a fifth of a
//! training step. Here the three maps — `Maxout`, `Scatter` (∂y onto the
//! winning pieces) and `Gather` (the winning pieces' values of another
//! tensor) — are each other's derivatives in the second argument and
//! piecewise constant in the first, so the set is closed under
//! differentiation (gradient penalties differentiate through it).
//!
//! At a tie the first piece wins and takes the whole gradient (a
//! subgradient, as PyTorch's `max(dim)` backward); Candle's composition
//! gives it to every tied piece.

use super::{CpuForward, PARALLEL_MIN, fast_path, for_each_chunk, map_floats};
use candle::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, WithDType, bail};

/// `[…, h·k] → […, h]`: the largest of each group of `k`.
#[derive(Clone, Copy, Debug)]
struct Maxout {
    k: usize,
}

/// `(x [… , h·k], g […, h]) → […, h·k]`: `g` written at each group's winner
/// in `x`, zeros elsewhere.
#[derive(Clone, Copy, Debug)]
struct Scatter {
    k: usize,
}

/// `(x [… , h·k], v [… , h·k]) → […, h]`: `v` read at each group's winner in
/// `x`.
#[derive(Clone, Copy, Debug)]
struct Gather {
    k: usize,
}

/// Units per rayon task.
const CHUNK: usize = 1 << 13;

/// The index of the first largest value of `group` (`0` when all are NaN
/// or the first is).
#[inline(always)]
fn winner<T: WithDType>(group: &[T]) -> usize {
    let mut best = 0;
    for (p, &v) in group.iter().enumerate().skip(1) {
        if v > group[best] {
            best = p;
        }
    }
    best
}

/// `out[u] = f(index of the winner of group u of x)` for every unit `u`.
fn per_unit<T: WithDType, U: WithDType>(x: &[T], k: usize, f: impl Fn(usize) -> U + Sync + Send) -> Vec<U> {
    let units = x.len() / k;
    let mut out = vec![U::zero(); units];
    for_each_chunk(
        &mut out,
        CHUNK,
        x.len() >= PARALLEL_MIN,
        #[inline(always)]
        |c, out| {
            let start = c * CHUNK;
            for (i, o) in out.iter_mut().enumerate() {
                let u = start + i;
                *o = f(u * k + winner(&x[u * k..(u + 1) * k]));
            }
        },
    );
    out
}

/// `g` spread onto the winners of `x`'s groups.
fn scatter<T: WithDType>(x: &[T], g: &[T], k: usize) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    for_each_chunk(
        &mut out,
        CHUNK * k,
        x.len() >= PARALLEL_MIN,
        #[inline(always)]
        |c, out| {
            let first = c * CHUNK;
            for (i, group) in out.chunks_exact_mut(k).enumerate() {
                let u = first + i;
                group[winner(&x[u * k..(u + 1) * k])] = g[u];
            }
        },
    );
    out
}

/// The shape with the last dimension divided by `k`, checked.
fn grouped_shape(op: &str, shape: &Shape, k: usize) -> candle::Result<Shape> {
    let mut dims = shape.dims().to_vec();
    match dims.last_mut() {
        Some(last) if k > 0 && last.is_multiple_of(k) => *last /= k,
        _ => bail!("{op}: the last dimension of {shape:?} is not a multiple of {k} pieces"),
    }
    Ok(Shape::from(dims))
}

impl CustomOp1 for Maxout {
    fn name(&self) -> &'static str {
        "deepgen-maxout"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CpuForward {
        let shape = grouped_shape(self.name(), layout.shape(), self.k)?;
        let k = self.k;
        let out = map_floats!(self.name(), |x = (storage, layout)| per_unit(x, k, |w| x[w]));
        Ok((out, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle::Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2(&grad_res.contiguous()?, Scatter { k: self.k })?))
    }
}

impl CustomOp2 for Scatter {
    fn name(&self) -> &'static str {
        "deepgen-maxout-scatter"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CpuForward {
        if grouped_shape(self.name(), l1.shape(), self.k)? != *l2.shape() {
            bail!("{}: gradient {:?} for input {:?}", self.name(), l2.shape(), l1.shape())
        }
        let k = self.k;
        let out = map_floats!(self.name(), |x = (s1, l1), g = (s2, l2)| scatter(x, g, k));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(&self, arg1: &Tensor, _arg2: &Tensor, _res: &Tensor, grad_res: &Tensor) -> ScatterGrads {
        let gathered = arg1.apply_op2(&grad_res.contiguous()?, Gather { k: self.k })?;
        Ok((None, Some(gathered)))
    }
}

impl CustomOp2 for Gather {
    fn name(&self) -> &'static str {
        "deepgen-maxout-gather"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CpuForward {
        if l1.shape() != l2.shape() {
            bail!("{}: values {:?} for input {:?}", self.name(), l2.shape(), l1.shape())
        }
        let shape = grouped_shape(self.name(), l1.shape(), self.k)?;
        let k = self.k;
        let out = map_floats!(self.name(), |x = (s1, l1), v = (s2, l2)| per_unit(x, k, |w| v[w]));
        Ok((out, shape))
    }

    fn bwd(&self, arg1: &Tensor, _arg2: &Tensor, _res: &Tensor, grad_res: &Tensor) -> ScatterGrads {
        let spread = arg1.apply_op2(&grad_res.contiguous()?, Scatter { k: self.k })?;
        Ok((None, Some(spread)))
    }
}

/// The gradients of a two-operand op.
type ScatterGrads = candle::Result<(Option<Tensor>, Option<Tensor>)>;

/// Maxout over the last dimension of `xs` (`[…, h·pieces] → […, h]`): each
/// output is the largest of `pieces` consecutive inputs.
///
/// On the CPU in `f32`/`f64` one sweep each way (the gradient goes to the
/// first largest piece); otherwise Candle's `reshape` + `max_keepdim`.
///
/// # Errors
/// A last dimension that is not a multiple of `pieces`, `pieces = 0`, a
/// 0-D tensor; Candle's errors on its path.
pub fn maxout(xs: &Tensor, pieces: usize) -> candle::Result<Tensor> {
    let grouped = grouped_shape("maxout", xs.shape(), pieces)?;
    if !fast_path(&[xs]) {
        let mut dims = grouped.dims().to_vec();
        dims.push(pieces);
        return xs.reshape(dims)?.max(candle::D::Minus1);
    }
    xs.contiguous()?.apply_op1(Maxout { k: pieces })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{flat, max_rel_err};
    use crate::rng::{randn, rng_from_seed};
    use candle::{DType, Device, Var};
    use proptest::prelude::*;

    /// `Σ r ⊙ maxout(x)` and its gradient by the definition, in f64.
    fn reference(x: &[f64], r: &[f64], k: usize) -> (Vec<f64>, Vec<f64>) {
        let mut y = Vec::new();
        let mut dx = vec![0.0; x.len()];
        for (u, group) in x.chunks_exact(k).enumerate() {
            let (mut best, mut p_best) = (f64::NEG_INFINITY, 0);
            for (p, &v) in group.iter().enumerate() {
                if v > best {
                    (best, p_best) = (v, p);
                }
            }
            y.push(best);
            dx[u * k + p_best] = r[u];
        }
        (y, dx)
    }

    fn check(rows: usize, units: usize, k: usize, seed: u64, dtype: DType) -> Result<(), TestCaseError> {
        let device = Device::Cpu;
        let x = randn(&mut rng_from_seed(seed), (rows, units * k), &device)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let x = Var::from_tensor(&x).unwrap();
        let y = maxout(&x, k).unwrap();
        prop_assert_eq!(y.dims(), &[rows, units]);
        let r = randn(&mut rng_from_seed(seed ^ 11), (rows, units), &device)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let (y_ref, dx_ref) = reference(&flat(&x), &flat(&r), k);
        prop_assert_eq!(flat(&y), y_ref);
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        prop_assert_eq!(flat(grads.get(&x).unwrap()), dx_ref.clone());
        // Candle's composition agrees (random values have no ties).
        let candle = x.reshape((rows, units, k)).unwrap().max(2).unwrap();
        prop_assert!(max_rel_err(&flat(&candle), &flat(&y)) == 0.0);
        let candle_grads = (&candle * &r).unwrap().sum_all().unwrap().backward().unwrap();
        prop_assert!(max_rel_err(&flat(candle_grads.get(&x).unwrap()), &dx_ref) == 0.0);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Value and gradient equal the definition and Candle's composition
        /// for random shapes and piece counts, f32 and f64.
        #[test]
        fn prop_maxout_matches_definition_and_candle(
            rows in 1usize..9,
            units in 1usize..40,
            k in 1usize..7,
            seed in 0u64..10_000,
            f64_ in any::<bool>(),
        ) {
            check(rows, units, k, seed, if f64_ { DType::F64 } else { DType::F32 })?;
        }
    }

    /// Large enough for the parallel path.
    #[test]
    fn large_inputs_take_the_parallel_path() -> Result<(), TestCaseError> {
        check(64, 1 << 12, 5, 3, DType::F32)
    }

    /// The backward pass is differentiable: the second derivative of
    /// `Σ c ⊙ ∂/∂x Σ r ⊙ maxout(x)` in `r` is `c` read at the winners (the
    /// path a gradient penalty takes), checked against the definition.
    #[test]
    fn the_scatter_differentiates_into_a_gather() -> candle::Result<()> {
        let device = Device::Cpu;
        let x = randn(&mut rng_from_seed(1), (3, 12), &device)?;
        let r = Var::from_tensor(&randn(&mut rng_from_seed(2), (3, 4), &device)?)?;
        let c = randn(&mut rng_from_seed(3), (3, 12), &device)?;
        let spread = x.apply_op2(r.as_tensor(), Scatter { k: 3 })?;
        let inner = (spread * &c)?.sum_all()?;
        let grads = inner.backward()?;
        let got = flat(grads.get(&r).expect("r takes a gradient"));
        let xs = flat(&x);
        let cs = flat(&c);
        let expected: Vec<f64> = xs
            .chunks_exact(3)
            .enumerate()
            .map(|(u, g)| cs[u * 3 + winner(g)])
            .collect();
        assert_eq!(got, expected);
        // And the gather differentiates back into the scatter.
        let v = Var::from_tensor(&c)?;
        let picked = x.apply_op2(v.as_tensor(), Gather { k: 3 })?;
        assert_eq!(flat(&picked), expected);
        let back = (picked * r.as_tensor())?.sum_all()?.backward()?;
        let spread_r = flat(&x.apply_op2(r.as_tensor(), Scatter { k: 3 })?);
        assert_eq!(flat(back.get(&v).expect("v takes a gradient")), spread_r);
        Ok(())
    }

    /// Ties go to the first piece, which takes the whole gradient.
    #[test]
    fn ties_go_to_the_first_piece() -> candle::Result<()> {
        let x = Var::from_tensor(&Tensor::new(&[[3f32, 3., 1., 2.]], &Device::Cpu)?)?;
        let y = maxout(&x, 2)?;
        assert_eq!(y.to_vec2::<f32>()?, [[3., 2.]]);
        let grads = y.sum_all()?.backward()?;
        assert_eq!(grads.get(&x).expect("gradient").to_vec2::<f32>()?, [[1., 0., 0., 1.]]);
        Ok(())
    }

    #[test]
    fn bad_piece_counts_are_refused() {
        let x = Tensor::zeros((2, 6), DType::F32, &Device::Cpu).unwrap();
        assert!(maxout(&x, 4).is_err());
        assert!(maxout(&x, 0).is_err());
        let scalar = Tensor::new(1f32, &Device::Cpu).unwrap();
        assert!(maxout(&scalar, 1).is_err());
        assert_eq!(maxout(&x, 6).unwrap().dims(), &[2, 1]);
    }
}
