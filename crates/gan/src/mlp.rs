//! The MLP pair for 2-D (and any low-dimensional) data, after PacGAN's
//! experiments: a ReLU generator and a maxout (or leaky-ReLU) discriminator
//! whose input gradient is written out layer by layer
//! ([`MlpDiscriminator::input_gradient`]), so that penalties on it
//! differentiate exactly.

use crate::config::MlpInit;
use crate::penalty::InputGradient;
use crate::{Error, Result};
use candle::{Module, ModuleT, Tensor};
use candle_nn::{Init, VarBuilder};
use deepgen_core::nn::{BatchNorm, Linear, linear_with_init, pytorch_uniform};
use deepgen_core::ops::Activation;

/// Slope of the leaky ReLU for `x < 0` (DCGAN's 0.2).
pub const LEAKY_SLOPE: f64 = 0.2;

/// `z → h₁ → … → x`: hidden layers `Linear → [BatchNorm] → ReLU` (PacGAN's
/// generator has batch norm), a linear output.
#[derive(Debug, Clone)]
pub struct MlpGenerator {
    hidden: Vec<Linear>,
    norms: Option<Vec<BatchNorm>>,
    output: Linear,
}

impl MlpGenerator {
    /// Layers `latent_dim → hidden… → out_dim` under `vb` (`hidden.i`,
    /// `norm.i` when `batch_norm`, `output`), their weights drawn as `init`
    /// says.
    ///
    /// # Errors
    /// Candle errors.
    pub fn new(
        latent_dim: usize,
        hidden: &[usize],
        out_dim: usize,
        batch_norm: bool,
        init: MlpInit,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (layers, last) = stack(latent_dim, hidden, 1, 1, init, &vb)?;
        let norms = if batch_norm {
            let norms = hidden
                .iter()
                .enumerate()
                .map(|(i, &w)| deepgen_core::nn::batch_norm(w, vb.pp(format!("norm.{i}"))))
                .collect::<candle::Result<Vec<_>>>()?;
            Some(norms)
        } else {
            None
        };
        Ok(Self {
            hidden: layers,
            norms,
            output: layer(last, out_dim, init, vb.pp("output"))?,
        })
    }
}

impl ModuleT for MlpGenerator {
    /// Batch statistics when `train` (running ones updated), the running
    /// statistics otherwise.
    fn forward_t(&self, z: &Tensor, train: bool) -> candle::Result<Tensor> {
        let mut h = z.clone();
        for (i, layer) in self.hidden.iter().enumerate() {
            h = layer.forward(&h)?;
            h = match &self.norms {
                Some(norms) => norms[i].forward_act(&h, train, Activation::Relu)?,
                None => deepgen_core::ops::relu(&h)?,
            };
        }
        self.output.forward(&h)
    }
}

/// `x → D(x)`: hidden layers of maxout units (`pieces` linear pieces each;
/// 1 piece: leaky ReLU), a linear scalar output. Built by
/// [`MlpDiscriminator::per_sample`], the first layer reads each `d`-value
/// sample of a pack alone and the second the concatenation of their units.
#[derive(Debug, Clone)]
pub struct MlpDiscriminator {
    hidden: Vec<Linear>,
    pieces: usize,
    /// `Some(d)`: the first layer's rows are single `d`-value samples.
    sample_dim: Option<usize>,
    output: Linear,
}

impl MlpDiscriminator {
    /// Layers `in_dim → hidden… → 1` under `vb`, their weights drawn as
    /// `init` says; a maxout layer of `h` units holds `h · pieces` linear
    /// units.
    ///
    /// # Errors
    /// `pieces = 0`; Candle errors.
    pub fn new(in_dim: usize, hidden: &[usize], pieces: usize, init: MlpInit, vb: VarBuilder) -> Result<Self> {
        Self::build(in_dim, None, 1, hidden, pieces, init, vb)
    }

    /// A discriminator of packs of `pack` samples of `sample_dim` values
    /// whose first layer (`sample_dim → hidden[0]` units) reads every sample
    /// alone with the same weights, its `pack · hidden[0]` outputs feeding
    /// the rest ([`crate::PackInput::PerSample`]); the same variable names
    /// as [`MlpDiscriminator::new`].
    ///
    /// # Errors
    /// `pieces`, `pack` or `sample_dim` 0, no hidden layer; Candle errors.
    pub fn per_sample(
        sample_dim: usize,
        pack: usize,
        hidden: &[usize],
        pieces: usize,
        init: MlpInit,
        vb: VarBuilder,
    ) -> Result<Self> {
        if hidden.is_empty() || pack == 0 || sample_dim == 0 {
            return Err(Error::invalid_display(
                "pack_input",
                crate::PackInput::PerSample,
                "a per-sample first layer needs a hidden layer, a pack and a sample size of at least 1",
            ));
        }
        Self::build(sample_dim, Some(sample_dim), pack, hidden, pieces, init, vb)
    }

    /// The layers of [`MlpDiscriminator::new`] (`copies` 1) and
    /// [`MlpDiscriminator::per_sample`] (`copies` = the pack).
    fn build(
        in_dim: usize,
        sample_dim: Option<usize>,
        copies: usize,
        hidden: &[usize],
        pieces: usize,
        init: MlpInit,
        vb: VarBuilder,
    ) -> Result<Self> {
        if pieces == 0 {
            return Err(Error::invalid_display("maxout", 0, "at least 1 piece (1: leaky ReLU)"));
        }
        let (layers, last) = stack(in_dim, hidden, copies, pieces, init, &vb)?;
        Ok(Self {
            hidden: layers,
            pieces,
            sample_dim,
            output: layer(last, 1, init, vb.pp("output"))?,
        })
    }

    /// The first layer's rows: the packs `[n, K·d]`, or with a per-sample
    /// first layer their samples `[n·K, d]`.
    fn first_rows(&self, x: &Tensor) -> candle::Result<Tensor> {
        match self.sample_dim {
            Some(d) => x.reshape(((), d)),
            None => Ok(x.clone()),
        }
    }

    /// After the first layer: the units of a pack's samples side by side,
    /// `[n·K, h] → [n, K·h]` (nothing to do for a joint first layer).
    fn join_samples(&self, h: Tensor, n: usize) -> candle::Result<Tensor> {
        match self.sample_dim {
            Some(_) => h.reshape((n, ())),
            None => Ok(h),
        }
    }

    /// The same discriminator with parameters that take no gradient (the
    /// generator's step).
    pub fn detached(&self) -> Self {
        Self {
            hidden: self.hidden.iter().map(Linear::detached).collect(),
            pieces: self.pieces,
            sample_dim: self.sample_dim,
            output: self.output.detached(),
        }
    }

    /// The activations of every hidden layer and the slope each unit's
    /// output has in its pre-activation (the mask of the input gradient):
    /// for leaky ReLU `1` or `0.2` `[n, h]`, for maxout a one-hot of the
    /// winning piece `[n, h, k]`.
    fn hidden_forward(&self, x: &Tensor) -> candle::Result<(Tensor, Vec<Tensor>)> {
        let n = x.dim(0)?;
        let mut h = self.first_rows(x)?;
        let mut masks = Vec::with_capacity(self.hidden.len());
        for (i, layer) in self.hidden.iter().enumerate() {
            let a = layer.forward(&h)?;
            if self.pieces == 1 {
                let mask = a.ge(0.0)?.to_dtype(a.dtype())?.affine(1.0 - LEAKY_SLOPE, LEAKY_SLOPE)?;
                h = (&a * &mask)?;
                masks.push(mask);
            } else {
                let (n, hk) = a.dims2()?;
                let a = a.reshape((n, hk / self.pieces, self.pieces))?;
                let max = a.max_keepdim(2)?;
                masks.push(a.broadcast_eq(&max.detach())?.to_dtype(a.dtype())?);
                h = max.squeeze(2)?;
            }
            if i == 0 {
                h = self.join_samples(h, n)?;
            }
        }
        Ok((h, masks))
    }
}

impl Module for MlpDiscriminator {
    /// `x [n, d] → D(x) [n]`, each hidden layer's units one op
    /// (`core::ops::maxout`, `core::ops::leaky_relu`) whose backward writes
    /// the gradient once, rather than the masks of
    /// [`InputGradient::input_gradient`] composed from Candle's ops.
    fn forward(&self, x: &Tensor) -> candle::Result<Tensor> {
        let n = x.dim(0)?;
        let mut h = self.first_rows(x)?;
        for (i, layer) in self.hidden.iter().enumerate() {
            let a = layer.forward(&h)?;
            h = if self.pieces == 1 {
                deepgen_core::ops::leaky_relu(&a, LEAKY_SLOPE)?
            } else {
                deepgen_core::ops::maxout(&a, self.pieces)?
            };
            if i == 0 {
                h = self.join_samples(h, n)?;
            }
        }
        self.output.forward(&h)?.squeeze(1)
    }
}

impl InputGradient for MlpDiscriminator {
    /// `∇ₓD(x)` row by row, by the chain rule written in tensor ops:
    /// `δ_L = w_out`, `δ_{l−1} = (δ_l ⊙ m_l) W_l` with `m_l` the slope mask
    /// of layer `l` (for maxout, `δ_l` spread onto the winning piece). The
    /// masks are piecewise constant in the parameters, so differentiating
    /// this expression by ordinary backpropagation gives the exact second
    /// derivative that a gradient penalty needs (Candle's `backward` detaches
    /// gradients, so differentiating its output would not).
    fn input_gradient(&self, x: &Tensor) -> Result<Tensor> {
        let (_, masks) = self.hidden_forward(&x.detach())?;
        let n = x.dim(0)?;
        let w_out = self.output.weight();
        let mut delta = w_out.broadcast_as((n, w_out.dim(1)?))?;
        for (i, (layer, mask)) in self.hidden.iter().zip(&masks).enumerate().rev() {
            let mask = mask.detach();
            let rows = mask.dim(0)?;
            if i == 0 {
                // Per sample: the pack's `[n, K·h]` back onto its samples' rows.
                delta = delta.reshape((rows, ()))?;
            }
            let spread = if self.pieces == 1 {
                (delta * mask)?
            } else {
                let (_, h, k) = mask.dims3()?;
                delta.unsqueeze(2)?.broadcast_mul(&mask)?.reshape((rows, h * k))?
            };
            delta = spread.matmul(layer.weight())?;
        }
        Ok(delta.reshape((n, ()))?)
    }
}

/// Hidden layers `in_dim → widths[0]·pieces → …` named `hidden.i`, the
/// first one's output read `copies` at a time by the second (a per-sample
/// first layer: `copies` = the pack); returns them and the width after the
/// last (the input width if there is none).
fn stack(
    in_dim: usize,
    widths: &[usize],
    copies: usize,
    pieces: usize,
    init: MlpInit,
    vb: &VarBuilder,
) -> Result<(Vec<Linear>, usize)> {
    let mut layers = Vec::with_capacity(widths.len());
    let mut width = in_dim;
    for (i, &w) in widths.iter().enumerate() {
        layers.push(layer(width, w * pieces, init, vb.pp(format!("hidden.{i}")))?);
        width = if i == 0 { copies * w } else { w };
    }
    Ok((layers, width))
}

/// One linear layer `in_dim → out_dim` initialised as `init` says.
fn layer(in_dim: usize, out_dim: usize, init: MlpInit, vb: VarBuilder) -> candle::Result<Linear> {
    let (weight, bias) = match init {
        MlpInit::Pytorch => (pytorch_uniform(in_dim), pytorch_uniform(in_dim)),
        MlpInit::Pacgan => (Init::Randn { mean: 0.0, stdev: 0.02 }, Init::Const(0.0)),
    };
    linear_with_init(in_dim, out_dim, weight, bias, vb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device, Var};
    use candle_nn::VarMap;
    use proptest::prelude::*;

    /// A discriminator of 3-value inputs (hidden widths `[5, 4][..depth]`),
    /// or with `per_sample` of packs of two 3-value samples (6 values) whose
    /// first layer reads each sample alone.
    fn discriminator(pieces: usize, seed: u64, depth: usize, per_sample: bool) -> (VarMap, MlpDiscriminator) {
        let varmap = VarMap::new();
        let vb = deepgen_core::seeded_var_builder(&varmap, seed, DType::F64, &Device::Cpu);
        let hidden = &[5, 4][..depth];
        let d = if per_sample {
            MlpDiscriminator::per_sample(3, 2, hidden, pieces, MlpInit::Pytorch, vb).unwrap()
        } else {
            MlpDiscriminator::new(3, hidden, pieces, MlpInit::Pytorch, vb).unwrap()
        };
        (varmap, d)
    }

    /// The value of variable `name` as a flat `f64` vector.
    fn values(varmap: &VarMap, name: &str) -> Vec<f64> {
        let data = varmap.data().lock().unwrap();
        data[name].as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap()
    }

    /// Sets variable `name` to `v`.
    fn assign(varmap: &VarMap, name: &str, v: &[f64]) {
        let data = varmap.data().lock().unwrap();
        let var = &data[name];
        var.set(&Tensor::from_slice(v, var.dims(), &Device::Cpu).unwrap())
            .unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// The written-out input gradient equals Candle's backward pass and
        /// central finite differences of D, for leaky-ReLU and maxout units,
        /// one or two hidden layers, joint and per-sample first layers.
        #[test]
        fn prop_input_gradient_matches_backprop_and_finite_differences(
            seed in 0u64..1000,
            pieces in 1usize..4,
            depth in 1usize..3,
            per_sample in any::<bool>(),
            x in prop::collection::vec(-2.0f64..2.0, 12),
        ) {
            let (_vars, d) = discriminator(pieces, seed, depth, per_sample);
            let width = if per_sample { 6 } else { 3 };
            let x = &x[..2 * width];
            let dev = Device::Cpu;
            let xv = Var::from_tensor(&Tensor::from_slice(x, (2, width), &dev).unwrap()).unwrap();
            let ours = d.input_gradient(xv.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
            let grads = d.forward(xv.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            let candle = grads.get(&xv).unwrap().to_vec2::<f64>().unwrap();
            let h = 1e-6;
            for i in 0..2 {
                for j in 0..width {
                    prop_assert!((ours[i][j] - candle[i][j]).abs() < 1e-10, "{ours:?} vs {candle:?}");
                    let at = |delta: f64| {
                        let mut y = x.to_vec();
                        y[width * i + j] += delta;
                        let t = Tensor::from_slice(&y, (2, width), &dev).unwrap();
                        d.forward(&t).unwrap().to_vec1::<f64>().unwrap()[i]
                    };
                    let fd = (at(h) - at(-h)) / (2.0 * h);
                    // A kink within h of x makes the difference one-sided; skip those rare points.
                    if (fd - ours[i][j]).abs() > 1e-5 {
                        let (left, right) = ((at(0.0) - at(-h)) / h, (at(h) - at(0.0)) / h);
                        prop_assert!((left - right).abs() > 1e-4, "no kink, yet fd {fd} vs {}", ours[i][j]);
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// A per-sample first layer is the joint first layer whose weight is
        /// block-diagonal, `diag(W, …, W)`, and whose bias repeats `b`: both
        /// discriminators give the same `D` on random packs (f64, packs of
        /// 1–4 samples of 1–3 values, leaky ReLU and maxout).
        #[test]
        fn prop_per_sample_input_is_a_block_diagonal_joint_layer(
            seed in 0u64..1000,
            pieces in 1usize..4,
            pack in 1usize..5,
            dim in 1usize..4,
            depth in 1usize..3,
            x in prop::collection::vec(-3.0f64..3.0, 3 * 4 * 3),
        ) {
            let hidden = &[5, 4][..depth];
            let dev = Device::Cpu;
            let per_vars = VarMap::new();
            let vb = deepgen_core::seeded_var_builder(&per_vars, seed, DType::F64, &dev);
            let per = MlpDiscriminator::per_sample(dim, pack, hidden, pieces, MlpInit::Pytorch, vb).unwrap();
            let joint_vars = VarMap::new();
            let vb = deepgen_core::seeded_var_builder(&joint_vars, seed + 1, DType::F64, &dev);
            // Its first layer has the per-sample layer's units once per sample.
            let mut widths = hidden.to_vec();
            widths[0] *= pack;
            let joint = MlpDiscriminator::new(pack * dim, &widths, pieces, MlpInit::Pytorch, vb).unwrap();
            // The joint first layer: W on the diagonal, `units` rows per sample.
            let (w, b) = (values(&per_vars, "hidden.0.weight"), values(&per_vars, "hidden.0.bias"));
            let units = hidden[0] * pieces;
            let mut block = vec![0.0; pack * units * pack * dim];
            for k in 0..pack {
                for r in 0..units {
                    for c in 0..dim {
                        block[(k * units + r) * pack * dim + k * dim + c] = w[r * dim + c];
                    }
                }
            }
            assign(&joint_vars, "hidden.0.weight", &block);
            assign(&joint_vars, "hidden.0.bias", &b.repeat(pack));
            let rest = (1..depth).map(|i| format!("hidden.{i}")).chain(["output".to_string()]);
            for name in rest {
                for part in ["weight", "bias"] {
                    let name = format!("{name}.{part}");
                    assign(&joint_vars, &name, &values(&per_vars, &name));
                }
            }
            let packs = Tensor::from_slice(&x[..3 * pack * dim], (3, pack * dim), &dev).unwrap();
            let ours = per.forward(&packs).unwrap().to_vec1::<f64>().unwrap();
            let theirs = joint.forward(&packs).unwrap().to_vec1::<f64>().unwrap();
            for (a, b) in ours.iter().zip(&theirs) {
                prop_assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "{ours:?} vs {theirs:?}");
            }
            let (ga, gb) = (per.input_gradient(&packs).unwrap(), joint.input_gradient(&packs).unwrap());
            let diff = (ga - gb).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
            prop_assert!(diff < 1e-12, "input gradients differ by {diff}");
        }
    }

    /// PacGAN's initialisation: weights `N(0, 0.02²)` (sample mean and sd of
    /// the 8,000 weights of a 2 → 4000 layer within four standard errors),
    /// biases exactly 0; PyTorch's stays inside `±1/√fan_in`.
    #[test]
    fn pacgan_init_draws_small_gaussian_weights_and_zero_biases() -> Result<()> {
        let varmap = VarMap::new();
        let vb = deepgen_core::seeded_var_builder(&varmap, 3, DType::F64, &Device::Cpu);
        let d = MlpDiscriminator::new(2, &[800], 5, MlpInit::Pacgan, vb.pp("d"))?;
        let w = d.hidden[0].weight().flatten_all()?.to_vec1::<f64>()?;
        let n = w.len() as f64;
        let mean = w.iter().sum::<f64>() / n;
        let sd = (w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        assert!(mean.abs() < 4.0 * 0.02 / n.sqrt(), "mean {mean}");
        assert!((sd - 0.02).abs() < 4.0 * 0.02 / (2.0 * n).sqrt(), "sd {sd}");
        assert!(
            d.hidden[0]
                .bias()
                .flatten_all()?
                .to_vec1::<f64>()?
                .iter()
                .all(|&b| b == 0.0)
        );
        let g = MlpGenerator::new(2, &[800], 2, true, MlpInit::Pytorch, vb.pp("g"))?;
        let w = g.hidden[0].weight().flatten_all()?.to_vec1::<f64>()?;
        let bound = 1.0 / 2f64.sqrt();
        assert!(w.iter().all(|v| v.abs() <= bound) && w.iter().any(|v| v.abs() > 0.9 * bound));
        Ok(())
    }

    #[test]
    fn shapes() -> Result<()> {
        let varmap = VarMap::new();
        let vb = deepgen_core::seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
        let g = MlpGenerator::new(2, &[8, 8], 2, true, MlpInit::Pytorch, vb.pp("g"))?;
        let d = MlpDiscriminator::new(4, &[6], 5, MlpInit::Pytorch, vb.pp("d"))?;
        let z = Tensor::zeros((10, 2), DType::F32, &Device::Cpu)?;
        assert_eq!(g.forward_t(&z, true)?.dims(), &[10, 2]);
        assert_eq!(g.forward_t(&z, false)?.dims(), &[10, 2]);
        let x = Tensor::zeros((5, 4), DType::F32, &Device::Cpu)?;
        assert_eq!(d.forward(&x)?.dims(), &[5]);
        assert_eq!(d.input_gradient(&x)?.dims(), &[5, 4]);
        assert!(MlpDiscriminator::new(4, &[6], 0, MlpInit::Pytorch, vb.pp("e")).is_err());
        let per = MlpDiscriminator::per_sample(2, 4, &[6, 3], 5, MlpInit::Pytorch, vb.pp("p"))?;
        let packs = Tensor::zeros((5, 8), DType::F32, &Device::Cpu)?;
        assert_eq!(per.forward(&packs)?.dims(), &[5]);
        assert_eq!(per.input_gradient(&packs)?.dims(), &[5, 8]);
        assert_eq!(per.hidden[1].weight().dims(), &[15, 24]);
        assert!(MlpDiscriminator::per_sample(2, 4, &[], 5, MlpInit::Pytorch, vb.pp("q")).is_err());
        Ok(())
    }
}
