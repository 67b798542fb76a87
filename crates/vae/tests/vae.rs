//! The VAE: closed-form KL against Monte Carlo, the loss as a pure function
//! with hand-computed values, the IWAE bound against the ELBO, pictures'
//! tensors, training, checkpoints and clear errors.

use candle::{D, DType, Device, Module, Tensor};
use candle_nn::VarMap;
use deepgen_core::nn::Linear;
use deepgen_core::rng::{rand_uniform, randn, rng_from_seed};
use deepgen_core::train::{CHECKPOINT_FILE, EpochRecord, TrainConfig, TrainStep, fit};
use deepgen_core::{AdamConfig, BatchSource, StdRng, StepCtx, seeded_var_builder};
use deepgen_numerics::DiagGaussian;
use deepgen_vae::{
    AeConfig, AeTrainer, Architecture, Decoder, DecoderKind, Encoder, Objective, Prior, PriorKind, Vae, VaeConfig,
    VaeTrainer, load_vae, vae,
};
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Seed of the case generator unless `PROPTEST_RNG_SEED` sets one.
const PROPTEST_SEED: u64 = 0x5eed_0000_0000_0004;
/// Relative tolerance of f32 comparisons of a few dozen summed terms.
const F32_REL_TOL: f64 = 1e-5;

fn small(latent_dim: usize) -> VaeConfig {
    VaeConfig {
        input_dim: 16,
        hidden_dim: 12,
        latent_dim,
        ..Default::default()
    }
}

fn build(config: &VaeConfig, seed: u64) -> Result<(Vae, VarMap)> {
    let varmap = VarMap::new();
    let model = vae(config, seeded_var_builder(&varmap, seed, DType::F32, &Device::Cpu))?;
    Ok((model, varmap))
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

fn uniform(seed: u64, shape: (usize, usize)) -> Result<Tensor> {
    Ok(rand_uniform(&mut rng_from_seed(seed), shape, 0.0, 1.0, &Device::Cpu)?)
}

/// `KL(q ‖ p)` in closed form against the Monte Carlo mean of
/// `log q(z) − log p(z)` over 200,000 draws, for the standard and a learned
/// prior, within 5 standard errors.
#[test]
fn kl_closed_form_matches_monte_carlo() -> Result<()> {
    let dev = Device::Cpu;
    let q = DiagGaussian::new(
        Tensor::new(&[[0.5f64, -1.0, 0.2]], &dev)?,
        Tensor::new(&[[-0.5f64, 0.3, -2.0]], &dev)?,
    )?;
    let learned = Prior::learned(Tensor::new(&[0.3f64, -0.2, 0.1], &dev)?, Tensor::new(&[0.4f64], &dev)?)?;
    let standard = Prior::standard(3, DType::F64, &dev);
    let n = 200_000;
    let eps = randn(&mut rng_from_seed(5), (n, 1, 3), &dev)?.to_dtype(DType::F64)?;
    let zs = q.rsample(&eps)?;
    for prior in [standard, learned] {
        let closed = scalar(&prior.kl(&q)?.sum_all()?)?;
        let log_ratio = (q.log_prob(&zs)? - prior.log_prob(&zs)?)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let mean = log_ratio.iter().sum::<f64>() / n as f64;
        let sd = (log_ratio.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        assert!(
            (mean - closed).abs() < 5.0 * sd / (n as f64).sqrt(),
            "{:?} prior: MC {mean} vs closed form {closed}",
            prior.kind()
        );
    }
    Ok(())
}

/// A VAE built from hand-made layers: encoder `μ = x W_μᵀ`, `log σ² = 0`;
/// decoder weights zero so the logits are the output bias `c`. Then, for
/// each example, `recon = Σ_j softplus(c_j) − c_j x_j` whatever `z` is, and
/// `KL = ½ ‖μ‖²`.
#[test]
fn loss_matches_hand_computation() -> Result<()> {
    let dev = Device::Cpu;
    let zeros = |r: usize, c: usize| Tensor::zeros((r, c), DType::F32, &dev);
    // D = 3, H = 2, Z = 2. Hidden h = relu(x Iᵀ[:2]) = (x₀, x₁).
    let hidden = Linear::new(
        Tensor::new(&[[1f32, 0.0, 0.0], [0.0, 1.0, 0.0]], &dev)?,
        Tensor::zeros(2, DType::F32, &dev)?,
    );
    let mean = Linear::new(
        Tensor::new(&[[2f32, 0.0], [0.0, -1.0]], &dev)?,
        Tensor::zeros(2, DType::F32, &dev)?,
    );
    let log_var = Linear::new(zeros(2, 2)?, Tensor::zeros(2, DType::F32, &dev)?);
    let encoder = Encoder::new(hidden, mean, log_var);
    let c = [0.5f32, -1.0, 2.0];
    let decoder = Decoder::new(
        DecoderKind::Bernoulli,
        Linear::new(zeros(2, 2)?, Tensor::zeros(2, DType::F32, &dev)?),
        Linear::new(zeros(3, 2)?, Tensor::new(&c, &dev)?),
        None,
    );
    let config = VaeConfig {
        input_dim: 3,
        hidden_dim: 2,
        latent_dim: 2,
        beta: 2.0,
        ..Default::default()
    };
    let model = Vae::new(config, encoder, decoder, Prior::standard(2, DType::F32, &dev))?;
    let x = [[0.2f32, 0.7, 1.0], [1.0, 0.0, 0.5]];
    let xs = Tensor::new(&x, &dev)?;
    let eps = randn(&mut rng_from_seed(1), (2, 2), &dev)?;
    let loss = model.loss(&xs, &eps)?;
    let softplus = |v: f64| (1.0 + v.exp()).ln();
    let recon: f64 = x
        .iter()
        .map(|row| {
            row.iter()
                .zip(&c)
                .map(|(&x, &c)| softplus(c as f64) - c as f64 * x as f64)
                .sum::<f64>()
        })
        .sum::<f64>()
        / 2.0;
    // μ = (2 x₀, −x₁): row 0 (0.4, −0.7), row 1 (2, 0); KL = ½ ‖μ‖².
    let kl = 0.5 * ((0.16 + 0.49) + 4.0) / 2.0;
    let close = |a: f64, b: f64| (a - b).abs() <= F32_REL_TOL * b.abs().max(1.0);
    assert!(
        close(scalar(&loss.recon)?, recon),
        "recon {} vs {recon}",
        scalar(&loss.recon)?
    );
    assert!(close(scalar(&loss.kl)?, kl), "kl {} vs {kl}", scalar(&loss.kl)?);
    // β = 2 weights the KL in the total.
    assert!(close(scalar(&loss.total)?, recon + 2.0 * kl));
    // A pure function: the same noise gives the same numbers.
    assert_eq!(scalar(&model.loss(&xs, &eps)?.total)?, scalar(&loss.total)?);
    Ok(())
}

/// Unit-variance Gaussian: `−log p(x|z) = ½ Σ (x − μ)² + (D/2) ln 2π`;
/// learned variance: the diagonal Gaussian density with `log σ² = log σ(h) < 0`.
#[test]
fn gaussian_decoders_are_true_densities() -> Result<()> {
    let dev = Device::Cpu;
    for kind in [DecoderKind::Gaussian, DecoderKind::GaussianLearned] {
        let config = VaeConfig {
            decoder: kind,
            ..small(2)
        };
        let (model, _vars) = build(&config, 3)?;
        let zs = randn(&mut rng_from_seed(2), (4, 2), &dev)?;
        let out = model.decode(&zs)?;
        let xs = uniform(4, (4, 16))?;
        let nll = model.decoder().neg_log_prob(&xs, &out)?.to_vec1::<f32>()?;
        let expected: Vec<f32> = match &out.log_var {
            None => {
                let sq = (&xs - &out.loc)?.sqr()?.sum(D::Minus1)?.to_vec1::<f32>()?;
                sq.iter()
                    .map(|s| 0.5 * s + 8.0 * (2.0 * std::f32::consts::PI).ln())
                    .collect()
            }
            Some(log_var) => {
                assert!(log_var.max_all()?.to_scalar::<f32>()? < 0.0, "σ² = sigmoid(·) < 1");
                let g = DiagGaussian::new(out.loc.clone(), log_var.clone())?;
                g.log_prob(&xs)?.neg()?.to_vec1::<f32>()?
            }
        };
        for (a, b) in nll.iter().zip(&expected) {
            assert!(
                (a - b).abs() < 1e-4 * b.abs().max(1.0),
                "{kind}: {nll:?} vs {expected:?}"
            );
        }
    }
    Ok(())
}

/// For the same `K` samples, `log((1/K) Σ_k w_k) ≥ (1/K) Σ_k log w_k`
/// (Jensen), so the IWAE loss is at most the Monte Carlo negative ELBO of
/// those samples, `recon + mean(log q(z) − log p(z))`.
fn check_iwae_bounds(seed: u64, k: usize) -> std::result::Result<(), TestCaseError> {
    let run = || -> Result<(f64, f64)> {
        let (model, _vars) = build(
            &VaeConfig {
                prior: PriorKind::Learned,
                ..small(3)
            },
            seed,
        )?;
        let xs = uniform(seed, (5, 16))?;
        let eps = randn(&mut rng_from_seed(seed), (k, 5, 3), &Device::Cpu)?;
        let loss = model.iwae_loss(&xs, &eps)?;
        let q = model.posterior(&xs)?;
        let zs = q.rsample(&eps)?;
        let log_ratio = (q.log_prob(&zs)? - model.prior().log_prob(&zs)?)?.mean_all()?;
        Ok((scalar(&loss.total)?, scalar(&loss.recon)? + scalar(&log_ratio)?))
    };
    let (iwae, mc_neg_elbo) = run().map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(
        iwae <= mc_neg_elbo + 1e-5 * mc_neg_elbo.abs(),
        "−L_K = {iwae} > −ELBO = {mc_neg_elbo}"
    );
    Ok(())
}

proptest! {
    #![proptest_config({
        let mut c = ProptestConfig { cases: 24, ..ProptestConfig::default() };
        if c.rng_seed == RngSeed::Random { c.rng_seed = RngSeed::Fixed(PROPTEST_SEED); }
        c
    })]

    #[test]
    fn prop_iwae_bound_is_above_the_elbo(seed in any::<u64>(), k in 2usize..12) {
        check_iwae_bounds(seed, k)?;
    }

    #[test]
    fn prop_kl_is_non_negative_and_zero_at_the_prior(
        mean in prop::collection::vec(-3.0f64..3.0, 4),
        log_var in prop::collection::vec(-4.0f64..2.0, 4),
    ) {
        let dev = Device::Cpu;
        let q = DiagGaussian::new(Tensor::new(mean.as_slice(), &dev).and_then(|t| t.reshape((1, 4))).map_err(|e| TestCaseError::fail(e.to_string()))?,
            Tensor::new(log_var.as_slice(), &dev).and_then(|t| t.reshape((1, 4))).map_err(|e| TestCaseError::fail(e.to_string()))?)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let prior = Prior::standard(4, DType::F64, &dev);
        let kl = prior.kl(&q).and_then(|t| Ok(t.to_vec1::<f64>()?)).map_err(|e| TestCaseError::fail(e.to_string()))?[0];
        // −½ Σ (1 + lv − μ² − e^lv) by hand.
        let by_hand: f64 = mean.iter().zip(&log_var).map(|(m, lv)| -0.5 * (1.0 + lv - m * m - lv.exp())).sum();
        prop_assert!(kl >= 0.0 && (kl - by_hand).abs() < 1e-12 * by_hand.max(1.0), "{kl} vs {by_hand}");
    }
}

/// With `K = 1` and the same noise, `iwae_loss` is `recon + log q − log p`
/// at the sample, whose expectation is the ELBO: check the identity
/// `iwae₁ = recon + (log q(z) − log p(z))` exactly.
#[test]
fn iwae_with_one_sample_is_the_single_sample_elbo() -> Result<()> {
    let (model, _vars) = build(&small(3), 9)?;
    let xs = uniform(9, (4, 16))?;
    let eps = randn(&mut rng_from_seed(9), (1, 4, 3), &Device::Cpu)?;
    let loss = model.iwae_loss(&xs, &eps)?;
    let q = model.posterior(&xs)?;
    let zs = q.rsample(&eps)?;
    let log_ratio = (q.log_prob(&zs)? - model.prior().log_prob(&zs)?)?.mean_all()?;
    let expected = scalar(&loss.recon)? + scalar(&log_ratio)?;
    assert!(
        (scalar(&loss.total)? - expected).abs() < 1e-4,
        "{} vs {expected}",
        scalar(&loss.total)?
    );
    Ok(())
}

/// Estimators on a trained-from-scratch model: the importance estimate lies
/// above the ELBO on average and `k = 0` is an error.
#[test]
fn estimators_order_and_errors() -> Result<()> {
    let (model, _vars) = build(&small(2), 10)?;
    let xs = uniform(10, (8, 16))?;
    let mut rng = rng_from_seed(10);
    let ll = model.importance_log_likelihood(&xs, 200, &mut rng)?.mean_all()?;
    let neg_elbo = model.mean_loss(&xs, 8, &mut rng)?.negative_elbo;
    assert!(
        scalar(&ll)? > -neg_elbo - 0.5,
        "log p̂ = {} vs ELBO {}",
        scalar(&ll)?,
        -neg_elbo
    );
    let naive = model.naive_log_likelihood(&xs, 200, &mut rng)?;
    assert_eq!(naive.dims(), &[8]);
    let err = model
        .importance_log_likelihood(&xs, 0, &mut rng)
        .err()
        .map(|e| e.to_string());
    assert_eq!(err.as_deref(), Some("invalid k = 0: at least one sample is needed"));
    assert!(
        model
            .loss(&uniform(1, (2, 15))?, &randn(&mut rng, (2, 2), &Device::Cpu)?)
            .is_err()
    );
    Ok(())
}

#[test]
fn pictures_have_the_right_shapes() -> Result<()> {
    let (model, _vars) = build(&small(2), 11)?;
    let xs = uniform(11, (3, 16))?;
    let rec = model.reconstruct(&xs)?;
    assert_eq!(rec.dims(), &[3, 16]);
    let (lo, hi) = (rec.min_all()?.to_scalar::<f32>()?, rec.max_all()?.to_scalar::<f32>()?);
    assert!(lo >= 0.0 && hi <= 1.0, "Bernoulli means in [0, 1]");
    let path = model.interpolate(&xs.narrow(0, 0, 1)?, &xs.narrow(0, 1, 1)?, 5)?;
    assert_eq!(path.dims(), &[5, 16]);
    // The ends are the reconstructions of the two inputs.
    let ends = (path.narrow(0, 0, 1)? - rec.narrow(0, 0, 1)?)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    let ends_b = (path.narrow(0, 4, 1)? - rec.narrow(0, 1, 1)?)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    assert!(ends < 1e-6 && ends_b < 1e-6);
    assert_eq!(model.manifold(4)?.dims(), &[16, 16]);
    assert_eq!(
        model
            .generate(&randn(&mut rng_from_seed(1), (6, 2), &Device::Cpu)?)?
            .dims(),
        &[6, 16]
    );
    let (model3, _v) = build(&small(3), 11)?;
    assert!(model3.manifold(4).is_err());
    assert!(
        model
            .interpolate(&xs.narrow(0, 0, 1)?, &xs.narrow(0, 1, 1)?, 1)
            .is_err()
    );
    // Φ⁻¹ at known points.
    assert!((deepgen_vae::normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-8);
    assert!(deepgen_vae::normal_quantile(0.5).abs() < 1e-12);
    Ok(())
}

/// Batches of a tensor, for the tests' training runs.
struct Rows {
    xs: Tensor,
    batch_size: usize,
}

impl BatchSource for Rows {
    type Batch = Tensor;
    fn n_batches(&self) -> usize {
        self.xs.dim(0).unwrap_or(0).div_ceil(self.batch_size)
    }
    fn start_epoch(&mut self, _rng: &mut StdRng) -> deepgen_core::Result<()> {
        Ok(())
    }
    fn batch(&self, batch_idx: usize) -> deepgen_core::Result<Tensor> {
        let n = self.xs.dim(0)?;
        let start = batch_idx * self.batch_size;
        Ok(self.xs.narrow(0, start, self.batch_size.min(n - start))?)
    }
}

/// Trains `step` on the rows of `xs` in batches of `batch_size`, as `run` says.
fn fit_rows(
    run: &TrainConfig,
    step: &mut impl TrainStep<Batch = Tensor>,
    xs: &Tensor,
    batch_size: usize,
) -> deepgen_core::Result<Vec<EpochRecord>> {
    let mut rows = Rows {
        xs: xs.clone(),
        batch_size,
    };
    fit(run, step, &mut rows, |_, _| Ok(()))
}

/// Two clusters of binary-ish 16-pixel images.
fn toy_data(n: usize) -> Result<Tensor> {
    let rows: Vec<f32> = (0..n)
        .flat_map(|i| (0..16).map(move |j| if (j < 8) == (i % 2 == 0) { 0.95 } else { 0.05 }))
        .collect();
    Ok(Tensor::from_vec(rows, (n, 16), &Device::Cpu)?)
}

#[test]
fn every_variant_trains() -> Result<()> {
    let xs = toy_data(64)?;
    let variants = [
        VaeConfig { ..small(2) },
        VaeConfig {
            decoder: DecoderKind::Gaussian,
            ..small(2)
        },
        VaeConfig {
            decoder: DecoderKind::GaussianLearned,
            prior: PriorKind::Learned,
            ..small(2)
        },
        VaeConfig {
            objective: Objective::Iwae { k: 4 },
            ..small(2)
        },
        VaeConfig {
            n_samples: 3,
            beta: 0.5,
            ..small(2)
        },
    ];
    for config in variants {
        let adam = AdamConfig {
            lr: 1e-2,
            ..Default::default()
        };
        let mut trainer = VaeTrainer::new(&config, adam, 1, &Device::Cpu)?;
        let first = scalar(
            &trainer
                .model()
                .loss(&xs, &randn(&mut rng_from_seed(3), (64, 2), &Device::Cpu)?)?
                .total,
        )?;
        let run = TrainConfig {
            epochs: 15,
            progress: false,
            ..Default::default()
        };
        fit_rows(&run, &mut trainer, &xs, 16)?;
        let last = scalar(
            &trainer
                .model()
                .loss(&xs, &randn(&mut rng_from_seed(3), (64, 2), &Device::Cpu)?)?
                .total,
        )?;
        assert!(last < first - 1.0, "{config:?}: loss {first} → {last}");
    }
    Ok(())
}

#[test]
fn conv_vae_runs_forward_and_backward() -> Result<()> {
    let config = VaeConfig {
        architecture: Architecture::Conv,
        input_dim: 64,
        hidden_dim: 16,
        latent_dim: 2,
        ..Default::default()
    };
    for decoder in [DecoderKind::Bernoulli, DecoderKind::GaussianLearned] {
        let config = VaeConfig {
            decoder,
            ..config.clone()
        };
        let mut trainer = VaeTrainer::new(&config, AdamConfig::default(), 1, &Device::Cpu)?;
        let xs = uniform(2, (3, 64))?;
        let metrics = trainer.train_step(&xs, &StepCtx::default(), &mut rng_from_seed(1))?;
        assert!(metrics.get("train_loss").is_some_and(f64::is_finite));
        assert_eq!(trainer.model().reconstruct(&xs)?.dims(), &[3, 64]);
        let (mean, _) = trainer.model().encoder().forward(&xs)?;
        assert_eq!(mean.dims(), &[3, 2]);
        assert_eq!(Module::forward(trainer.model().encoder(), &xs)?.dims(), &[3, 2]);
    }
    Ok(())
}

/// A run's checkpoint rebuilds the same model; another model's checkpoint,
/// a missing file and a resume with other options are clear errors.
#[test]
fn checkpoints_describe_their_model() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let xs = toy_data(32)?;
    let config = small(2);
    let mut trainer = VaeTrainer::new(&config, AdamConfig::default(), 1, &Device::Cpu)?;
    let run = TrainConfig {
        epochs: 1,
        run_dir: Some(dir.path().to_path_buf()),
        progress: false,
        ..Default::default()
    };
    fit_rows(&run, &mut trainer, &xs, 8)?;
    let path = dir.path().join(CHECKPOINT_FILE);
    let (loaded, _vars) = load_vae(&path, &Device::Cpu)?;
    assert_eq!(loaded.config(), &config);
    let eps = randn(&mut rng_from_seed(1), (32, 2), &Device::Cpu)?;
    assert_eq!(
        scalar(&loaded.loss(&xs, &eps)?.total)?,
        scalar(&trainer.model().loss(&xs, &eps)?.total)?
    );

    // Resuming with another latent size names both configurations.
    let mut other = VaeTrainer::new(&small(3), AdamConfig::default(), 1, &Device::Cpu)?;
    let resume = TrainConfig {
        epochs: 2,
        resume: true,
        ..run.clone()
    };
    let err = fit_rows(&resume, &mut other, &xs, 8).err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains(r#""latent_dim":2"#) && e.contains(r#""latent_dim":3"#)),
        "{err:?}"
    );

    // An autoencoder's checkpoint is not a VAE.
    let ae_dir = tempfile::tempdir()?;
    let ae_config = AeConfig {
        input_dim: 16,
        hidden_dim: 8,
        latent_dim: 2,
        ..Default::default()
    };
    let mut ae = AeTrainer::new(&ae_config, AdamConfig::default(), 1, &Device::Cpu)?;
    let ae_run = TrainConfig {
        run_dir: Some(ae_dir.path().to_path_buf()),
        ..run
    };
    fit_rows(&ae_run, &mut ae, &xs, 8)?;
    let err = load_vae(&ae_dir.path().join(CHECKPOINT_FILE), &Device::Cpu)
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("holds a `ae` model, not a `vae`")),
        "{err:?}"
    );
    let missing = load_vae(&dir.path().join("nope.safetensors"), &Device::Cpu)
        .err()
        .map(|e| e.to_string());
    assert!(
        missing.as_deref().is_some_and(|e| e.contains("nope.safetensors")),
        "{missing:?}"
    );
    Ok(())
}

#[test]
fn invalid_configurations_are_errors() {
    let message = |c: VaeConfig| {
        VaeTrainer::new(&c, AdamConfig::default(), 0, &Device::Cpu)
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(
        message(VaeConfig {
            latent_dim: 0,
            ..Default::default()
        })
        .as_deref(),
        Some("invalid latent_dim = 0: must be at least 1")
    );
    assert_eq!(
        message(VaeConfig {
            beta: -1.0,
            ..Default::default()
        })
        .as_deref(),
        Some("invalid beta = -1: must be a finite number ≥ 0")
    );
}
