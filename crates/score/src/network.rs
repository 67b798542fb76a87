//! [`ScoreNet`]: the score network, an MLP `x ↦ s_θ(x)` or, noise-conditional,
//! `(x, σ) ↦ s_θ(x, σ)`, whose Jacobian-vector products `J v = (∂s/∂x) v`
//! are carried forward beside the values (forward-mode tangents).
//!
//! Why tangents: explicit and sliced score matching put `Tr ∇ₓs` and
//! `vᵀ(∇ₓs)v` in the loss, so the loss's gradient is a second derivative.
//! Candle's `backward` detaches the gradients it returns, so differentiating
//! a first backward pass silently gives wrong numbers. A tangent pushed
//! through the network is an ordinary forward expression — for a layer
//! `h' = φ(W h + b)`, `t' = φ'(W h + b) ⊙ (W t)` — and one ordinary backward
//! pass over it gives the exact gradient of the trace. `m` tangents cost `m`
//! extra matrix products per layer: `d` for the exact trace, one per
//! projection for the sliced losses.

use crate::{Error, Result};
use candle::{D, Module, Tensor};
use candle_nn::VarBuilder;
use deepgen_core::nn::{Linear, linear};
use deepgen_numerics::{sigmoid, softplus};

/// `x [n, d] (, ln σ) → softplus hidden layers → s [n, d]`. The
/// noise-conditional network reads `ln σ` as one more input and divides its
/// output by `σ` (NCSNv2's parametrisation: `‖∇log q_σ‖` grows as `1/σ`).
/// Softplus units keep `∇ₓs` smooth, which score matching needs.
#[derive(Debug, Clone)]
pub struct ScoreNet {
    hidden: Vec<Linear>,
    output: Linear,
    data_dim: usize,
    conditional: bool,
}

impl ScoreNet {
    /// Layers `d (+1) → hidden… → d` under `vb` (`hidden.i`, `output`).
    ///
    /// # Errors
    /// `data_dim = 0` or a zero width; Candle errors.
    pub fn new(data_dim: usize, hidden: &[usize], conditional: bool, vb: VarBuilder) -> Result<Self> {
        if data_dim == 0 {
            return Err(Error::invalid("data_dim", 0, "at least 1"));
        }
        if hidden.contains(&0) {
            return Err(Error::invalid("hidden", hidden, "every layer needs at least 1 unit"));
        }
        let mut width = data_dim + usize::from(conditional);
        let mut layers = Vec::with_capacity(hidden.len());
        for (i, &w) in hidden.iter().enumerate() {
            layers.push(linear(width, w, vb.pp(format!("hidden.{i}")))?);
            width = w;
        }
        Ok(Self {
            hidden: layers,
            output: linear(width, data_dim, vb.pp("output"))?,
            data_dim,
            conditional,
        })
    }

    /// The linear score `s(x) = A x + b` (no hidden layer), the form every
    /// Gaussian's score has (`A = −S⁻¹`, `b = S⁻¹m`): `weight` is `A [d, d]`,
    /// `bias` is `b [d]`.
    ///
    /// # Errors
    /// Shapes that are not `[d, d]` and `[d]`.
    pub fn affine(weight: Tensor, bias: Tensor) -> Result<Self> {
        let (d, d2) = weight.dims2()?;
        if d != d2 || bias.dims() != [d] {
            return Err(Error::shape("affine score", weight.dims(), "A [d, d] and b [d]"));
        }
        Ok(Self {
            hidden: Vec::new(),
            output: Linear::new(weight, bias),
            data_dim: d,
            conditional: false,
        })
    }

    /// Dimension `d` of the data.
    pub fn data_dim(&self) -> usize {
        self.data_dim
    }

    /// Whether the network reads the noise level.
    pub fn is_conditional(&self) -> bool {
        self.conditional
    }

    /// `s_θ(x, σ)` for `x [n, d]`; `sigma [n]` (one level per row) is read
    /// by a noise-conditional network and ignored otherwise.
    ///
    /// # Errors
    /// A noise-conditional network without `sigma`; shape errors.
    pub fn score(&self, x: &Tensor, sigma: Option<&Tensor>) -> Result<Tensor> {
        let mut h = self.input(x, sigma)?;
        for layer in &self.hidden {
            h = softplus(&layer.forward(&h)?)?;
        }
        let s = self.output.forward(&h)?;
        match self.sigma_column(sigma)? {
            Some(sigma) => Ok(s.broadcast_div(&sigma)?),
            None => Ok(s),
        }
    }

    /// `s_θ(x, σ)` `[n, d]` and the Jacobian-vector products
    /// `(∇ₓ s_θ(x_i, σ_i)) v_ij` `[n, m, d]` for the tangents
    /// `directions [n, m, d]` (`m` directions per row), by forward-mode
    /// differentiation; both are differentiable in θ by ordinary
    /// backpropagation.
    ///
    /// # Errors
    /// `directions` not `[n, m, d]`; as [`Self::score`].
    pub fn score_and_jvp(&self, x: &Tensor, sigma: Option<&Tensor>, directions: &Tensor) -> Result<(Tensor, Tensor)> {
        let (n, d) = self.check_points(x)?;
        let (n2, m, d2) = directions.dims3()?;
        if (n2, d2) != (n, d) {
            return Err(Error::shape("directions", directions.dims(), format!("[{n}, m, {d}]")));
        }
        let mut h = self.input(x, sigma)?;
        // Tangent of the input: the directions in x, zero in ln σ (the
        // first layer reads only its x columns).
        let mut t = directions.reshape((n * m, d))?;
        let mut x_columns_only = self.conditional;
        for layer in &self.hidden {
            let a = layer.forward(&h)?;
            let w = if x_columns_only {
                layer.weight().narrow(1, 0, d)?
            } else {
                layer.weight().clone()
            };
            x_columns_only = false;
            let slope = sigmoid(&a)?; // softplus' = σ(a)
            let width = a.dim(1)?;
            let ta = t.matmul(&w.t()?)?.reshape((n, m, width))?;
            t = ta.broadcast_mul(&slope.unsqueeze(1)?)?.reshape((n * m, width))?;
            h = softplus(&a)?;
        }
        let w = if x_columns_only {
            self.output.weight().narrow(1, 0, d)?
        } else {
            self.output.weight().clone()
        };
        let s = self.output.forward(&h)?;
        let js = t.matmul(&w.t()?)?.reshape((n, m, d))?;
        match self.sigma_column(sigma)? {
            Some(sigma) => Ok((s.broadcast_div(&sigma)?, js.broadcast_div(&sigma.unsqueeze(2)?)?)),
            None => Ok((s, js)),
        }
    }

    /// `x`, or `[x, ln σ]` for the noise-conditional network.
    fn input(&self, x: &Tensor, sigma: Option<&Tensor>) -> Result<Tensor> {
        self.check_points(x)?;
        match self.sigma_column(sigma)? {
            Some(sigma) => Ok(Tensor::cat(&[x, &sigma.log()?], 1)?),
            None => Ok(x.clone()),
        }
    }

    /// `σ` as an `[n, 1]` column for the noise-conditional network, `None`
    /// for the unconditional one.
    fn sigma_column(&self, sigma: Option<&Tensor>) -> Result<Option<Tensor>> {
        if !self.conditional {
            return Ok(None);
        }
        let sigma = sigma.ok_or_else(|| Error::invalid("sigma", "none", "a noise-conditional network needs σ"))?;
        if sigma.rank() != 1 {
            return Err(Error::shape("sigma", sigma.dims(), "[n]"));
        }
        Ok(Some(sigma.unsqueeze(D::Minus1)?))
    }

    fn check_points(&self, x: &Tensor) -> Result<(usize, usize)> {
        match x.dims() {
            &[n, d] if d == self.data_dim => Ok((n, d)),
            dims => Err(Error::shape("points", dims, format!("[n, {}]", self.data_dim))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device, Var};
    use candle_nn::VarMap;
    use proptest::prelude::*;

    fn net(conditional: bool, seed: u64) -> (VarMap, ScoreNet) {
        let varmap = VarMap::new();
        let vb = deepgen_core::seeded_var_builder(&varmap, seed, DType::F64, &Device::Cpu);
        let net = ScoreNet::new(3, &[6, 5], conditional, vb).unwrap();
        (varmap, net)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Every Jacobian-vector product equals central finite differences of
        /// the score along the direction, conditional or not.
        #[test]
        fn prop_jvp_matches_finite_differences(
            seed in 0u64..1000,
            conditional in any::<bool>(),
            x in prop::collection::vec(-2.0f64..2.0, 6),
            v in prop::collection::vec(-1.0f64..1.0, 12),
            sigma in prop::collection::vec(0.1f64..3.0, 2),
        ) {
            let (_vars, net) = net(conditional, seed);
            let dev = Device::Cpu;
            let xt = Tensor::from_slice(&x, (2, 3), &dev).unwrap();
            let vt = Tensor::from_slice(&v, (2, 2, 3), &dev).unwrap();
            let st = Tensor::from_slice(&sigma, 2, &dev).unwrap();
            let (s, jv) = net.score_and_jvp(&xt, Some(&st), &vt).unwrap();
            let plain = net.score(&xt, Some(&st)).unwrap();
            prop_assert!((s - plain).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap() < 1e-14);
            let jv = jv.to_vec3::<f64>().unwrap();
            let h = 1e-5;
            for j in 0..2 {
                let dir = vt.narrow(1, j, 1).unwrap().squeeze(1).unwrap();
                let up = net.score(&(&xt + (&dir * h).unwrap()).unwrap(), Some(&st)).unwrap();
                let down = net.score(&(&xt - (&dir * h).unwrap()).unwrap(), Some(&st)).unwrap();
                let fd = ((up - down).unwrap() / (2.0 * h)).unwrap().to_vec2::<f64>().unwrap();
                for i in 0..2 {
                    for k in 0..3 {
                        prop_assert!((fd[i][k] - jv[i][j][k]).abs() < 1e-7, "{fd:?} vs {jv:?}");
                    }
                }
            }
        }

        /// Candle's backward pass through the tangent expression gives the
        /// second derivative: `∂/∂x (vᵀ J(x) v)` by backprop equals finite
        /// differences of the forward-mode value (so the θ-gradients of the
        /// trace terms are exact, not detached).
        #[test]
        fn prop_backprop_through_jvp_is_a_true_second_derivative(
            seed in 0u64..1000,
            x in prop::collection::vec(-2.0f64..2.0, 3),
            v in prop::collection::vec(-1.0f64..1.0, 3),
        ) {
            let (_vars, net) = net(false, seed);
            let dev = Device::Cpu;
            let vt = Tensor::from_slice(&v, (1, 1, 3), &dev).unwrap();
            let quad = |x: &Tensor| -> Tensor {
                let (_, jv) = net.score_and_jvp(x, None, &vt).unwrap();
                (jv * &vt).unwrap().sum_all().unwrap()
            };
            let xv = Var::from_tensor(&Tensor::from_slice(&x, (1, 3), &dev).unwrap()).unwrap();
            let grads = quad(xv.as_tensor()).backward().unwrap();
            let g = grads.get(&xv).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let h = 1e-5;
            for k in 0..3 {
                let mut up = x.clone();
                up[k] += h;
                let mut down = x.clone();
                down[k] -= h;
                let f = |p: &Vec<f64>| quad(&Tensor::from_slice(p, (1, 3), &dev).unwrap()).to_scalar::<f64>().unwrap();
                let fd = (f(&up) - f(&down)) / (2.0 * h);
                prop_assert!((fd - g[k]).abs() < 1e-6 * (1.0 + fd.abs()), "{fd} vs {}", g[k]);
            }
        }
    }

    #[test]
    fn bad_shapes_and_a_missing_sigma_are_errors() {
        let (_vars, conditional) = net(true, 1);
        let x = Tensor::zeros((4, 3), DType::F64, &Device::Cpu).unwrap();
        assert!(conditional.score(&x, None).unwrap_err().to_string().contains("needs σ"));
        let (_vars, plain) = net(false, 1);
        let wrong = Tensor::zeros((4, 2), DType::F64, &Device::Cpu).unwrap();
        assert!(plain.score(&wrong, None).is_err());
        let dirs = Tensor::zeros((4, 1, 2), DType::F64, &Device::Cpu).unwrap();
        assert!(plain.score_and_jvp(&x, None, &dirs).is_err());
        assert!(
            ScoreNet::affine(
                Tensor::zeros((2, 3), DType::F64, &Device::Cpu).unwrap(),
                Tensor::zeros(2, DType::F64, &Device::Cpu).unwrap()
            )
            .is_err()
        );
    }
}
