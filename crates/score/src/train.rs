//! [`ScoreModel`] as a [`TrainableModel`]: one Adam step on the configured
//! loss per batch, its noise (projections, ε, levels) drawn from the
//! trainer's seeded generator.

use crate::Result;
use crate::config::{ScoreConfig, ScoreLoss};
use crate::loss::{
    denoising_score_matching, explicit_score_matching, levels_tensor, multi_level_denoising_score_matching,
    sliced_score_matching,
};
use crate::model::ScoreModel;
use candle::Tensor;
use candle_nn::VarBuilder;
use deepgen_core::rng::randn;
use deepgen_core::{Metrics, Optimizers, StdRng, StepCtx, TrainableModel};
use rand::Rng;

impl TrainableModel for ScoreModel {
    type Config = ScoreConfig;
    type Batch = Tensor;
    const FAMILY: &'static str = "score";

    fn build(config: &ScoreConfig, vb: VarBuilder) -> deepgen_core::Result<Self> {
        Ok(ScoreModel::new(config, vb)?)
    }

    fn config(&self) -> &ScoreConfig {
        ScoreModel::config(self)
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
        let value = loss.to_dtype(candle::DType::F64)?.to_scalar::<f64>()?;
        Ok(Metrics::new().with("loss", value).weighted(xs.dim(0)? as f64))
    }
}

impl ScoreModel {
    /// The configured loss on the batch `xs [n, d]`, its noise drawn from `rng`.
    ///
    /// # Errors
    /// `xs` not `[n, d]`; Candle errors.
    pub fn loss(&self, xs: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
        let config = self.config();
        let (n, d) = xs.dims2()?;
        let noise = |rng: &mut _| -> Result<Tensor> { Ok(randn(rng, (n, d), xs.device())?.to_dtype(xs.dtype())?) };
        match config.loss {
            ScoreLoss::Esm => explicit_score_matching(self.net(), xs),
            ScoreLoss::Ssm | ScoreLoss::SsmVr => {
                let v = config.projection.draw(rng, n, config.projections, d, xs.device())?;
                sliced_score_matching(
                    self.net(),
                    xs,
                    &v.to_dtype(xs.dtype())?,
                    config.loss == ScoreLoss::SsmVr,
                )
            }
            ScoreLoss::Dsm if config.noise_conditional => {
                let levels = config.sigmas.as_slice();
                let index: Vec<usize> = (0..n).map(|_| rng.random_range(0..levels.len())).collect();
                let sigma = levels_tensor(levels, &index, xs.dtype(), xs.device())?;
                multi_level_denoising_score_matching(self.net(), xs, &noise(rng)?, &sigma)
            }
            ScoreLoss::Dsm => denoising_score_matching(self.net(), xs, &noise(rng)?, config.sigmas.largest()),
        }
    }
}
