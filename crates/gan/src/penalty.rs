//! Penalties on the discriminator's input gradient, which training
//! differentiates once more (a second derivative):
//!
//! - WGAN-GP (Gulrajani et al. 2017): `E_x̂ (‖∇ₓD(x̂)‖₂ − 1)²` at
//!   `x̂ = u x + (1 − u) G(z)`, one `u ~ U(0, 1)` **per example** and the
//!   norm taken **per example** over all its coordinates (PyTorch-GAN's
//!   early WGAN-GP took it per pixel: its issues 5 and 20);
//! - R1 (Mescheder et al. 2018): `E_{x∼P_d} ‖∇ₓD(x)‖₂²`, usually weighted
//!   `γ/2`.
//!
//! Candle's `backward` detaches the gradients it returns unless
//! `CANDLE_GRAD_DO_NOT_DETACH` is set before the first backward pass on the
//! thread, and deepgen-core's fused layers have first-order backward
//! passes only; so the input gradient is not taken from `backward` but
//! written out in tensor ops by the discriminator ([`InputGradient`]), and
//! the penalty's parameter gradient is then an ordinary backward pass —
//! exact, and checked against finite differences in the tests. The MLP
//! discriminator implements it; the DCGAN discriminator (batch norm in
//! training mode couples the examples of a batch) does not, and
//! [`crate::GanConfig::validate`] refuses penalties with it.

use crate::{Error, Result};
use candle::Tensor;

/// Added under the square root of a norm, so that its gradient stays finite
/// at a zero input gradient.
pub const NORM_EPS: f64 = 1e-12;

/// A discriminator whose input gradient is a differentiable function of its
/// parameters.
pub trait InputGradient {
    /// `∇ₓD(x)` for each row of `x` (`D(x)` is a scalar per example), with
    /// `x`'s shape, as an expression whose own backward pass is exact.
    ///
    /// # Errors
    /// Candle errors.
    fn input_gradient(&self, x: &Tensor) -> Result<Tensor>;
}

/// Per-example `‖g_i‖₂` over all coordinates but the first: `[n]`.
fn per_example_norm(g: &Tensor) -> Result<Tensor> {
    let n = g.dim(0)?;
    Ok((g.reshape((n, ()))?.sqr()?.sum(1)? + NORM_EPS)?.sqrt()?)
}

/// The WGAN-GP penalty `mean_i (‖∇ₓD(x̂_i)‖ − 1)²` at
/// `x̂_i = u_i real_i + (1 − u_i) fake_i`; `u` `[n]` holds the per-example
/// mixing weights (draw them from `U(0, 1)`).
///
/// # Errors
/// Shapes that differ; Candle errors.
pub fn gradient_penalty(critic: &impl InputGradient, real: &Tensor, fake: &Tensor, u: &Tensor) -> Result<Tensor> {
    if real.dims() != fake.dims() || u.dims() != [real.dim(0)?] {
        return Err(Error::BadShape {
            what: "gradient_penalty",
            got: fake.dims().to_vec(),
            expected: format!(
                "fake of the real batch's shape {:?} and u of shape [{}]",
                real.dims(),
                real.dim(0)?
            ),
        });
    }
    let mut u_shape = vec![real.dim(0)?];
    u_shape.resize(real.rank(), 1);
    let u = u.reshape(u_shape)?;
    let x_hat = (real.broadcast_mul(&u)? + fake.broadcast_mul(&(1.0 - &u)?)?)?.detach();
    let norm = per_example_norm(&critic.input_gradient(&x_hat)?)?;
    Ok((norm - 1.0)?.sqr()?.mean_all()?)
}

/// The R1 penalty `mean_i ‖∇ₓD(real_i)‖²` (multiply by `γ/2`).
///
/// # Errors
/// Candle errors.
pub fn r1_penalty(critic: &impl InputGradient, real: &Tensor) -> Result<Tensor> {
    let g = critic.input_gradient(&real.detach())?;
    let n = g.dim(0)?;
    Ok(g.reshape((n, ()))?.sqr()?.sum(1)?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp::MlpDiscriminator;
    use candle::{DType, Device, Module, Var};
    use candle_nn::VarMap;
    use deepgen_core::optim::named_vars;
    use proptest::prelude::*;

    /// ∂penalty/∂θ from backprop against central differences of the penalty
    /// in every parameter of a small f64 discriminator: the check of the
    /// second derivative (the penalty is itself made of first derivatives).
    fn check_parameter_gradient(pieces: usize, seed: u64, penalty: impl Fn(&MlpDiscriminator) -> Tensor) {
        let varmap = VarMap::new();
        let vb = deepgen_core::seeded_var_builder(&varmap, seed, DType::F64, &Device::Cpu);
        let d = MlpDiscriminator::new(3, &[4, 3], pieces, crate::MlpInit::Pytorch, vb).unwrap();
        let grads = penalty(&d).backward().unwrap();
        let h = 1e-6;
        let mut checked = 0;
        for (name, var) in named_vars(&varmap).unwrap() {
            let analytic = grads
                .get(&var)
                .map(|g| g.flatten_all().unwrap().to_vec1::<f64>().unwrap());
            let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for k in 0..base.len() {
                let at = |delta: f64| {
                    let mut v = base.clone();
                    v[k] += delta;
                    var.set(&Tensor::from_slice(&v, var.shape(), &Device::Cpu).unwrap())
                        .unwrap();
                    penalty(&d).to_scalar::<f64>().unwrap()
                };
                let (plus, minus) = (at(h), at(-h));
                var.set(&Tensor::from_slice(&base, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                let fd = (plus - minus) / (2.0 * h);
                let a = analytic.as_ref().map_or(0.0, |g| g[k]);
                assert!(
                    (fd - a).abs() < 1e-5 * (1.0 + fd.abs()),
                    "{name}[{k}]: backprop {a} vs finite differences {fd}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 35, "checked {checked} parameters");
    }

    fn data(seed: u64) -> (Tensor, Tensor, Tensor) {
        let mut rng = deepgen_core::rng_from_seed(seed);
        let dev = Device::Cpu;
        let real = deepgen_core::rng::randn(&mut rng, (6, 3), &dev)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let fake = deepgen_core::rng::randn(&mut rng, (6, 3), &dev)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let u = deepgen_core::rng::rand_uniform(&mut rng, 6, 0.0, 1.0, &dev)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        (real, fake, u)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]
        #[test]
        fn prop_gradient_penalty_second_derivative_matches_finite_differences(seed in 0u64..10_000, pieces in 1usize..4) {
            let (real, fake, u) = data(seed);
            check_parameter_gradient(pieces, seed, |d| gradient_penalty(d, &real, &fake, &u).unwrap());
        }

        #[test]
        fn prop_r1_second_derivative_matches_finite_differences(seed in 0u64..10_000, pieces in 1usize..4) {
            let (real, _, _) = data(seed);
            check_parameter_gradient(pieces, seed, |d| r1_penalty(d, &real).unwrap());
        }
    }

    /// The penalty is per example: with u = 1 it is the mean over examples
    /// of (‖∇D(x_i)‖ − 1)², each norm over all of x_i's coordinates,
    /// computed here from Candle's own first-order backward pass.
    #[test]
    fn gradient_penalty_is_per_example() -> Result<()> {
        let varmap = VarMap::new();
        let vb = deepgen_core::seeded_var_builder(&varmap, 3, DType::F64, &Device::Cpu);
        let d = MlpDiscriminator::new(3, &[4], 2, crate::MlpInit::Pytorch, vb)?;
        let (real, fake, _) = data(5);
        let ones = Tensor::ones(6, DType::F64, &Device::Cpu)?;
        let ours = gradient_penalty(&d, &real, &fake, &ones)?.to_scalar::<f64>()?;
        let x = Var::from_tensor(&real)?;
        let g = d.forward(x.as_tensor())?.sum_all()?.backward()?;
        let rows = g.get(&x).expect("gradient").to_vec2::<f64>()?;
        let expected = rows
            .iter()
            .map(|r| (r.iter().map(|v| v * v).sum::<f64>().sqrt() - 1.0).powi(2))
            .sum::<f64>()
            / 6.0;
        assert!((ours - expected).abs() < 1e-10, "{ours} vs {expected}");
        assert!(gradient_penalty(&d, &real, &fake.narrow(0, 0, 5)?, &ones).is_err());
        Ok(())
    }
}
