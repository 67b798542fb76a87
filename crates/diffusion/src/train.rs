//! [`DiffusionModel`] as a [`TrainableModel`]: one Adam step on the
//! weighted denoising loss per batch, `t` and `ε` drawn from the trainer's
//! seeded generator; the trainer keeps the weight average.

use crate::Result;
use crate::config::DiffusionConfig;
use crate::loss::{add_noise, weighted_mse};
use crate::model::DiffusionModel;
use candle::{DType, Tensor};
use candle_nn::VarBuilder;
use deepgen_core::rng::randn;
use deepgen_core::{Metrics, Optimizers, StdRng, StepCtx, TrainableModel, WeightAverage};
use rand::Rng;

impl TrainableModel for DiffusionModel {
    type Config = DiffusionConfig;
    type Batch = Tensor;
    const FAMILY: &'static str = "diffusion";
    const OPTIMIZER_GROUPS: &'static [&'static str] = &["net."];

    fn build(config: &DiffusionConfig, vb: VarBuilder) -> deepgen_core::Result<Self> {
        Ok(DiffusionModel::new(config, vb)?)
    }

    fn config(&self) -> &DiffusionConfig {
        DiffusionModel::config(self)
    }

    /// Returns `loss`, weighted by the batch size.
    fn train_step(
        &self,
        xs: &Tensor,
        _ctx: &StepCtx,
        optimizers: &mut Optimizers,
        rng: &mut StdRng,
    ) -> deepgen_core::Result<Metrics> {
        let loss = self.loss(xs, rng)?;
        optimizers.minimise(&loss)?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        Ok(Metrics::new().with("loss", value).weighted(xs.dim(0)? as f64))
    }

    fn weight_average(&self) -> Option<WeightAverage> {
        Some(WeightAverage {
            source: "net.",
            target: "ema.",
            decay: self.config().ema_decay,
        })
    }
}

impl DiffusionModel {
    /// The loss on a batch `xs [n, D]` in data space, with `t ~ U{0..T−1}`
    /// and `ε ~ N(0, I)` from `rng`.
    ///
    /// # Errors
    /// A batch of the wrong width; Candle errors.
    pub fn loss(&self, xs: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
        let n = xs.dim(0)?;
        let steps: Vec<usize> = (0..n).map(|_| rng.random_range(0..self.schedule().len())).collect();
        let eps = randn(rng, xs.dims(), xs.device())?.to_dtype(xs.dtype())?;
        self.loss_with(xs, &steps, &eps)
    }

    /// The loss with the timesteps and noise given.
    ///
    /// # Errors
    /// A batch of the wrong width; a timestep past T; Candle errors.
    pub fn loss_with(&self, xs: &Tensor, steps: &[usize], eps: &Tensor) -> Result<Tensor> {
        let x0 = self.to_network_space(xs)?;
        let device = xs.device();
        let bars: Vec<f32> = steps
            .iter()
            .map(|&t| Ok(self.schedule().alpha_bar(t)? as f32))
            .collect::<Result<_>>()?;
        let weights: Vec<f32> = steps.iter().map(|&t| self.loss_weights()[t] as f32).collect();
        let alpha_bar = Tensor::from_vec(bars, steps.len(), device)?;
        let x_t = add_noise(&x0, eps, &alpha_bar)?;
        let t = Tensor::from_vec(steps.iter().map(|&t| t as f32).collect::<Vec<_>>(), steps.len(), device)?;
        let output = self.forward(&x_t, &t, false)?;
        let target = self
            .config()
            .prediction
            .target(&x0, eps, &crate::loss::per_example(&alpha_bar, &x0)?)?;
        weighted_mse(&output, &target, &Tensor::from_vec(weights, steps.len(), device)?)
    }
}
