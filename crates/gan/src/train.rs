//! [`Gan`] as a [`TrainableModel`]: one discriminator step, then one
//! generator step on the same generated batch (as DCGAN and PyTorch's
//! example do), each with its own Adam (groups `discriminator.` and
//! `generator.`), and the diagnostics of seed 004's failure modes.

use crate::config::GanConfig;
use crate::model::Gan;
use crate::pack::packable;
use crate::penalty::{gradient_penalty, r1_penalty};
use crate::{Error, Result};
use candle::{DType, Tensor};
use candle_nn::VarBuilder;
use deepgen_core::rng::{rand_uniform, randn};
use deepgen_core::{Metrics, Optimizers, StdRng, StepCtx, TrainableModel, WeightAverage};
use deepgen_numerics::sigmoid;

/// Index of the discriminator's optimizer group.
pub const DISCRIMINATOR: usize = 0;
/// Index of the generator's optimizer group.
pub const GENERATOR: usize = 1;

impl TrainableModel for Gan {
    type Config = GanConfig;
    type Batch = Tensor;
    const FAMILY: &'static str = "gan";
    const OPTIMIZER_GROUPS: &'static [&'static str] = &["discriminator.", "generator."];

    fn build(config: &GanConfig, vb: VarBuilder) -> deepgen_core::Result<Self> {
        Ok(Gan::new(config, vb)?)
    }

    fn config(&self) -> &GanConfig {
        Gan::config(self)
    }

    /// Returns, weighted by the batch size: `d_loss` (the discriminator's
    /// adversarial loss, penalties apart), `g_loss`, `d_real` and `d_fake`
    /// (mean `D` on real and generated samples; logits for the logistic
    /// losses, which also give `p_real`, `p_fake` = mean `σ(D)`), the global
    /// gradient norms `d_grad_norm`, `g_grad_norm`, and `gp`, `r1` when on.
    fn train_step(
        &self,
        xs: &Tensor,
        _ctx: &StepCtx,
        optimizers: &mut Optimizers,
        rng: &mut StdRng,
    ) -> deepgen_core::Result<Metrics> {
        Ok(self.step(xs, optimizers, rng)?)
    }

    /// The generator's moving average (`generator.` into `ema.`), when the
    /// config asks for one.
    fn weight_average(&self) -> Option<WeightAverage> {
        let decay = self.config().ema_decay;
        (decay > 0.0).then_some(WeightAverage {
            source: "generator.",
            target: "ema.",
            decay,
        })
    }
}

impl Gan {
    /// One discriminator and one generator update on the data batch `xs`
    /// (the samples past the last whole pack are left out).
    ///
    /// # Errors
    /// A batch smaller than one pack; Candle errors.
    pub fn step(&self, xs: &Tensor, optimizers: &mut Optimizers, rng: &mut StdRng) -> Result<Metrics> {
        let config = self.config();
        let n = packable(xs.dim(0)?, config.pack);
        if n == 0 {
            return Err(Error::invalid_display(
                "pack",
                config.pack,
                format!("a batch of {} samples holds no whole pack", xs.dim(0)?),
            ));
        }
        let real = self.to_network_space(&xs.narrow(0, 0, n)?)?;
        let z = randn(rng, (n, config.latent_dim), xs.device())?.to_dtype(xs.dtype())?;
        let fake = self.generator_forward(&z, true)?;

        // Discriminator: its loss on real and (detached) generated samples, plus penalties.
        let real_out = self.discriminate(&real, true)?;
        let fake_out = self.discriminate(&fake.detach(), true)?;
        let d_loss = config.loss.discriminator_loss(&real_out, &fake_out)?;
        let mut metrics = Metrics::new();
        let mut objective = d_loss.clone();
        if let Some(critic) = self.penalisable() {
            let (real_packed, fake_packed) = (
                crate::pack::pack(&real, config.pack)?,
                crate::pack::pack(&fake.detach(), config.pack)?,
            );
            if config.gradient_penalty > 0.0 {
                let u = rand_uniform(rng, real_packed.dim(0)?, 0.0, 1.0, xs.device())?.to_dtype(xs.dtype())?;
                let gp = gradient_penalty(critic, &real_packed, &fake_packed, &u)?;
                objective = (objective + (&gp * config.gradient_penalty)?)?;
                metrics.push("gp", scalar(&gp)?);
            }
            if config.r1 > 0.0 {
                let r1 = r1_penalty(critic, &real_packed)?;
                objective = (objective + (&r1 * (0.5 * config.r1))?)?;
                metrics.push("r1", scalar(&r1)?);
            }
        }
        optimizers.minimise_group(DISCRIMINATOR, &objective)?;
        let d_grad_norm = optimizers.get_mut(DISCRIMINATOR)?.last_grad_norm().unwrap_or(f64::NAN);

        // Generator: through the updated discriminator (held fixed), on the same samples.
        let g_loss = config.loss.generator_loss(&self.discriminate_fixed(&fake, true)?)?;
        optimizers.minimise_group(GENERATOR, &g_loss)?;
        let g_grad_norm = optimizers.get_mut(GENERATOR)?.last_grad_norm().unwrap_or(f64::NAN);

        let mut out = Metrics::new()
            .with("d_loss", scalar(&d_loss)?)
            .with("g_loss", scalar(&g_loss)?)
            .with("d_real", scalar(&real_out.mean_all()?)?)
            .with("d_fake", scalar(&fake_out.mean_all()?)?);
        if config.loss.is_logistic() {
            out.push("p_real", scalar(&sigmoid(&real_out)?.mean_all()?)?);
            out.push("p_fake", scalar(&sigmoid(&fake_out)?.mean_all()?)?);
        }
        out.push("d_grad_norm", d_grad_norm);
        out.push("g_grad_norm", g_grad_norm);
        for (name, value) in metrics.iter() {
            out.push(name, value);
        }
        Ok(out.weighted(n as f64))
    }
}

/// A scalar tensor as `f64`.
fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GanLoss;
    use candle::Device;
    use deepgen_core::optim::grad_norm;
    use deepgen_core::{AdamConfig, Checkpoint, TrainStep, Trainer, rng_from_seed};
    use deepgen_data::{Synthetic2d, tensor_to_points};

    fn small(loss: GanLoss) -> GanConfig {
        GanConfig {
            generator_hidden: vec![64, 64],
            discriminator_hidden: vec![64, 64],
            maxout: 2,
            loss,
            ..GanConfig::points(2)
        }
    }

    fn trainer(config: &GanConfig) -> Trainer<Gan> {
        let adam = AdamConfig {
            lr: 1e-3,
            beta1: 0.5,
            ..Default::default()
        };
        Trainer::new(config, adam, 0, &Device::Cpu).unwrap()
    }

    fn mmd2(gan: &Gan, seed: u64) -> f64 {
        let mut rng = rng_from_seed(seed);
        let z = deepgen_core::rng::randn(&mut rng, (500, 2), &Device::Cpu).unwrap();
        let points = tensor_to_points(&gan.generate(&z).unwrap()).unwrap();
        Synthetic2d::Ring.mmd2_to_truth(&points, &mut rng).unwrap().mmd2
    }

    /// A few hundred steps move the samples toward the ring (MMD² to the
    /// true distribution falls), for the plain loss, packing and WGAN-GP.
    #[test]
    fn training_moves_samples_toward_the_data() {
        let cases = [
            small(GanLoss::NonSaturating),
            GanConfig {
                pack: 2,
                ..small(GanLoss::NonSaturating)
            },
            GanConfig {
                gradient_penalty: 1.0,
                ..small(GanLoss::Wasserstein)
            },
        ];
        for config in cases {
            let mut trainer = trainer(&config);
            let mut rng = rng_from_seed(1);
            let before = mmd2(trainer.model(), 7);
            let mut last = Metrics::new();
            for _ in 0..400 {
                let xs = Synthetic2d::Ring.sample(64, &mut rng, &Device::Cpu).unwrap();
                let (model, optimizers) = trainer.model_and_optimizers();
                last = model.step(&xs, optimizers, &mut rng).unwrap();
            }
            let after = mmd2(trainer.model(), 7);
            assert!(after < 0.5 * before, "{config:?}: MMD² {before:.4} → {after:.4}");
            for name in ["d_loss", "g_loss", "d_real", "d_fake", "d_grad_norm", "g_grad_norm"] {
                assert!(last.get(name).is_some_and(f64::is_finite), "{name} missing: {last:?}");
            }
            assert_eq!(last.get("gp").is_some(), config.gradient_penalty > 0.0);
        }
    }

    /// Seed 004's vanishing gradient: once the discriminator rejects the
    /// generator's samples, the minimax generator loss's gradient is a
    /// small fraction of the non-saturating one's at the same parameters.
    #[test]
    fn saturating_generator_gradient_vanishes_where_non_saturating_does_not() {
        let config = small(GanLoss::NonSaturating);
        let mut trainer = trainer(&config);
        let mut rng = rng_from_seed(2);
        // Train the discriminator alone until it rejects the untrained generator's samples.
        for _ in 0..600 {
            let xs = Synthetic2d::Ring.sample(64, &mut rng, &Device::Cpu).unwrap();
            let (model, optimizers) = trainer.model_and_optimizers();
            let z = randn(&mut rng, (64, 2), &Device::Cpu).unwrap();
            let fake = model.generator_forward(&z, true).unwrap().detach();
            let loss = GanLoss::NonSaturating
                .discriminator_loss(
                    &model.discriminate(&xs, true).unwrap(),
                    &model.discriminate(&fake, true).unwrap(),
                )
                .unwrap();
            optimizers.minimise_group(DISCRIMINATOR, &loss).unwrap();
        }
        let gan = trainer.model();
        let z = randn(&mut rng, (256, 2), &Device::Cpu).unwrap();
        let fake_out = gan
            .discriminate(&gan.generator_forward(&z, true).unwrap(), true)
            .unwrap();
        let p_fake = scalar(&sigmoid(&fake_out).unwrap().mean_all().unwrap()).unwrap();
        let generator_vars: Vec<_> = deepgen_core::optim::named_vars(trainer.varmap())
            .unwrap()
            .into_iter()
            .filter(|(n, _)| n.starts_with("generator."))
            .map(|(_, v)| v)
            .collect();
        let norm = |loss: GanLoss| {
            let grads = loss.generator_loss(&fake_out).unwrap().backward().unwrap();
            grad_norm(&grads, generator_vars.iter()).unwrap()
        };
        let (saturating, non_saturating) = (norm(GanLoss::Minimax), norm(GanLoss::NonSaturating));
        eprintln!("σ(D(G(z))) = {p_fake:.4}: ‖∇G‖ minimax {saturating:.3e}, non-saturating {non_saturating:.3e}");
        assert!(
            p_fake < 0.05,
            "the discriminator should reject the samples: mean σ(D(G(z))) = {p_fake}"
        );
        assert!(
            saturating < 0.1 * non_saturating,
            "‖∇G‖ minimax {saturating:.3e} vs non-saturating {non_saturating:.3e} at σ(D) = {p_fake:.4}"
        );
    }

    /// The generator's average changes no step of training (the trained
    /// weights end bit for bit where a run without it ends), samples come
    /// from it unless asked otherwise, and a checkpoint carries it.
    #[test]
    fn the_generator_average_is_sampled_and_saved_and_changes_no_step() {
        let plain = GanConfig {
            pack: 2,
            ..small(GanLoss::NonSaturating)
        };
        let averaged = GanConfig {
            ema_decay: 0.9,
            ..plain.clone()
        };
        let train = |config: &GanConfig| {
            let mut trainer = trainer(config);
            let mut rng = rng_from_seed(3);
            for k in 0..50 {
                let xs = Synthetic2d::Ring.sample(64, &mut rng, &Device::Cpu).unwrap();
                TrainStep::train_step(&mut trainer, &xs, &StepCtx::new(1, k, 50), &mut rng).unwrap();
            }
            trainer
        };
        let (without, with) = (train(&plain), train(&averaged));
        let z = randn(&mut rng_from_seed(4), (16, 2), &Device::Cpu).unwrap();
        let samples = |gan: &Gan| gan.generate(&z).unwrap().to_vec2::<f32>().unwrap();
        assert!(!without.model().has_average() && with.model().has_average());
        let mut trained = with.model().clone();
        trained.sample_with_average(false);
        assert_eq!(samples(&trained), samples(without.model()));
        let from_average = samples(with.model());
        assert_ne!(from_average, samples(&trained));
        let names: Vec<String> = deepgen_core::optim::named_vars(with.varmap())
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(names.iter().any(|n| n == "ema.output.weight"), "{names:?}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        let mut checkpoint = Checkpoint::default();
        with.save_state(&mut checkpoint).unwrap();
        checkpoint.save(&path).unwrap();
        let (loaded, _) = deepgen_core::load_model::<Gan>(&path, &Device::Cpu).unwrap();
        assert_eq!(samples(&loaded), from_average);
    }

    #[test]
    fn a_batch_smaller_than_a_pack_is_an_error() {
        let config = GanConfig {
            pack: 4,
            ..small(GanLoss::NonSaturating)
        };
        let mut trainer = trainer(&config);
        let xs = Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap();
        let (model, optimizers) = trainer.model_and_optimizers();
        let err = model
            .step(&xs, optimizers, &mut rng_from_seed(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pack"), "{err}");
    }
}
