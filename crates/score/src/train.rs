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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SamplerKind;
    use crate::loss::fisher_divergence;
    use crate::mixture::GaussianMixture;
    use crate::noise::NoiseLevels;
    use crate::sampler::ScoreField;
    use candle::Device;
    use deepgen_core::rng::rng_from_seed;
    use deepgen_core::{AdamConfig, Trainer};

    fn fisher(model: &ScoreModel, q: &GaussianMixture, x: &Tensor, sigma: f64) -> f64 {
        let truth = q.noised(sigma).unwrap().score(x).unwrap();
        let s = model.score(x, sigma).unwrap();
        fisher_divergence(&s, &truth).unwrap().to_scalar::<f32>().unwrap() as f64
    }

    /// Every loss, trained for a few hundred steps, brings the network's
    /// score closer to the true one (the Fisher divergence on held-out
    /// points falls by more than half) — the objectives differ from it by a
    /// constant only.
    #[test]
    fn every_loss_lowers_the_fisher_divergence_to_the_true_score() {
        let q = GaussianMixture::new(
            vec![0.5, 0.5],
            vec![vec![2.0, 0.0], vec![-2.0, 0.0]],
            vec![vec![1.0; 2]; 2],
        )
        .unwrap();
        let held_out = q.sample(500, &mut rng_from_seed(99), &Device::Cpu).unwrap();
        for loss in ScoreLoss::ALL {
            let (sigmas, conditional) = match loss {
                ScoreLoss::Dsm => (NoiseLevels::geometric(1.0, 0.1, 3).unwrap(), true),
                _ => (NoiseLevels::new(vec![0.1]).unwrap(), false),
            };
            let config = ScoreConfig {
                hidden: vec![32, 32],
                loss,
                sigmas,
                noise_conditional: conditional,
                sampler: crate::config::SamplerConfig {
                    kind: if conditional {
                        SamplerKind::Annealed
                    } else {
                        SamplerKind::Langevin
                    },
                    ..Default::default()
                },
                ..ScoreConfig::default()
            };
            let adam = AdamConfig {
                lr: 3e-3,
                ..AdamConfig::default()
            };
            let mut trainer = Trainer::<ScoreModel>::new(&config, adam, 1, &Device::Cpu).unwrap();
            // DSM's network is judged at its smallest level against q_σ there.
            let sigma = if conditional { 0.1 } else { 0.0 };
            let before = fisher(trainer.model(), &q, &held_out, sigma);
            let mut rng = rng_from_seed(2);
            for _ in 0..300 {
                let xs = q.sample(128, &mut rng, &Device::Cpu).unwrap();
                let (model, optimizers) = trainer.model_and_optimizers();
                model
                    .train_step(&xs, &StepCtx::new(0, 0, 1), optimizers, &mut rng)
                    .unwrap();
            }
            let after = fisher(trainer.model(), &q, &held_out, sigma);
            assert!(
                after < 0.5 * before,
                "{loss}: Fisher divergence {before:.4} → {after:.4}"
            );
            // A chain on the network's score keeps no graph (it would hold
            // every step's activations).
            let e = randn(&mut rng, (4, 2), &Device::Cpu).unwrap();
            let x = trainer.model().draw(&config.sampler, &e, &mut rng).unwrap();
            assert!(!x.track_op(), "{loss}: samples carry the network's graph");
        }
    }
}
