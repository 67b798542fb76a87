//! Autoencoders: the linear autoencoder learns the PCA subspace (principal
//! angles), the sparsity penalties by hand and against the Laplace density,
//! and the sparse autoencoder's codes are sparser than the plain one's.

use candle::{DType, Device, Tensor};
use deepgen_core::rng::{randn, rng_from_seed};
use deepgen_core::{AdamConfig, StepCtx, TrainStep};
use deepgen_numerics::Laplace;
use deepgen_vae::{
    AeConfig, AeKind, AeTrainer, Reconstruction, SparsityPenalty, pca_components, principal_angles, sparsity_penalty,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Largest principal angle allowed between the linear autoencoder's and
/// PCA's subspaces.
const MAX_ANGLE_DEGREES: f64 = 5.0;

/// `n` points in R^10 near a 3-D subspace: `x = m + A s + 0.05 ε` with
/// `s ~ N(0, diag(9, 4, 1))`, a random `A`, and an offset `m`.
fn low_rank_data(n: usize) -> Result<Tensor> {
    let dev = Device::Cpu;
    let mut rng = rng_from_seed(17);
    let a = randn(&mut rng, (3, 10), &dev)?;
    let s = randn(&mut rng, (n, 3), &dev)?.broadcast_mul(&Tensor::new(&[3f32, 2.0, 1.0], &dev)?)?;
    let offset = Tensor::new(&[1f32, -2.0, 0.5, 0.0, 3.0, -1.0, 0.2, 0.7, -0.4, 1.5], &dev)?;
    let noise = (randn(&mut rng, (n, 10), &dev)? * 0.05)?;
    Ok((s.matmul(&a)? + noise)?.broadcast_add(&offset)?)
}

/// A linear autoencoder `R^10 → R^3 → R^10` trained on squared error spans
/// the top-3 principal subspace (Baldi and Hornik 1989): every principal
/// angle between its decoder's column space and the top-3 eigenvectors of
/// the sample covariance (Jacobi, f64) is below 5°. Before training the
/// angles are large, so the test can fail.
#[test]
fn linear_autoencoder_spans_the_pca_subspace() -> Result<()> {
    let (n, d, k) = (512, 10, 3);
    let xs = low_rank_data(n)?;
    let data: Vec<f64> = xs.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let pca = pca_components(&data, n, d, k)?;
    let config = AeConfig {
        kind: AeKind::Linear,
        input_dim: d,
        latent_dim: k,
        ..Default::default()
    };
    let adam = AdamConfig {
        lr: 1e-2,
        ..Default::default()
    };
    let mut trainer = AeTrainer::new(&config, adam, 3, &Device::Cpu)?;
    let degrees = |t: &AeTrainer| -> Result<Vec<f64>> {
        let w = t.model().decoder_weight()?;
        Ok(principal_angles(&w, &pca, d, k)?
            .iter()
            .map(|a| a.to_degrees())
            .collect())
    };
    let before = degrees(&trainer)?;
    assert!(before.iter().any(|&a| a > 30.0), "untrained angles {before:?}");
    for _ in 0..1500 {
        trainer.train_step(&xs, &StepCtx::default(), &mut rng_from_seed(0))?;
    }
    let after = degrees(&trainer)?;
    assert!(
        after.iter().all(|&a| a < MAX_ANGLE_DEGREES),
        "principal angles {after:?} (degrees)"
    );
    Ok(())
}

#[test]
fn principal_angles_by_hand() -> Result<()> {
    // span(e₁) vs span(cos 30° e₁ + sin 30° e₂): one angle of 30°.
    let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
    let angles = principal_angles(&[1.0, 0.0, 0.0], &[c, s, 0.0], 3, 1)?;
    assert!((angles[0].to_degrees() - 30.0).abs() < 1e-9, "{angles:?}");
    // The same plane with another basis: both angles 0.
    let a = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
    let b = [1.0, 1.0, 1.0, -1.0, 0.0, 0.0];
    assert!(principal_angles(&a, &b, 3, 2)?.iter().all(|x| x.abs() < 1e-7));
    assert!(principal_angles(&a, &b, 3, 3).is_err());
    // PCA of points on the line y = 2x: the direction (1, 2)/√5.
    let line: Vec<f64> = (0..10).flat_map(|i| [i as f64, 2.0 * i as f64]).collect();
    let pc = pca_components(&line, 10, 2, 1)?;
    assert!((pc[0].abs() - 1.0 / 5f64.sqrt()).abs() < 1e-12 && (pc[1].abs() - 2.0 / 5f64.sqrt()).abs() < 1e-12);
    assert!(pca_components(&line, 10, 2, 3).is_err());
    Ok(())
}

/// L1: `λ Σ|h|`; Laplace prior: `Σ (λ|h_i| − log(λ/2))`, which is
/// `−Σ log Laplace(h_i; 0, 1/λ)` (numerics' density with `log b = −log λ`).
#[test]
fn sparsity_penalties_by_hand_and_as_laplace_density() -> Result<()> {
    let dev = Device::Cpu;
    let codes = Tensor::new(&[[0.5f64, -1.0, 0.0], [2.0, 0.25, -0.75]], &dev)?;
    let lambda = 0.5;
    let l1 = sparsity_penalty(&codes, lambda, SparsityPenalty::L1)?.to_vec1::<f64>()?;
    assert!((l1[0] - 0.75).abs() < 1e-15 && (l1[1] - 1.5).abs() < 1e-15, "{l1:?}");
    let laplace = sparsity_penalty(&codes, lambda, SparsityPenalty::LaplacePrior)?.to_vec1::<f64>()?;
    // Row 0: 0.75 − 3 log(0.25) = 0.75 + 3 ln 4.
    assert!((laplace[0] - (0.75 + 3.0 * 4f64.ln())).abs() < 1e-12, "{laplace:?}");
    let density = Laplace::new(codes.zeros_like()?, Tensor::full(-lambda.ln(), (2, 3), &dev)?)?;
    let neg_log = density.log_prob(&codes)?.neg()?.to_vec1::<f64>()?;
    for (a, b) in laplace.iter().zip(&neg_log) {
        assert!((a - b).abs() < 1e-12, "{laplace:?} vs {neg_log:?}");
    }
    Ok(())
}

/// Mostly-zero codes: the sparse autoencoder (ReLU codes, L1) ends with far
/// more exact zeros among its codes than the plain one, at a similar fit.
#[test]
fn sparse_codes_are_sparser() -> Result<()> {
    let xs = low_rank_data(256)?;
    let zero_fraction = |kind: AeKind| -> Result<(f64, f64)> {
        let config = AeConfig {
            kind,
            input_dim: 10,
            hidden_dim: 32,
            latent_dim: 16,
            sparsity: 0.2,
            reconstruction: Reconstruction::SquaredError,
            ..Default::default()
        };
        let mut trainer = AeTrainer::new(
            &config,
            AdamConfig {
                lr: 3e-3,
                ..Default::default()
            },
            5,
            &Device::Cpu,
        )?;
        let mut last = f64::NAN;
        for _ in 0..400 {
            last = trainer
                .train_step(&xs, &StepCtx::default(), &mut rng_from_seed(0))?
                .get("recon")
                .unwrap_or(f64::NAN);
        }
        let codes: Vec<f32> = trainer.model().encode(&xs)?.flatten_all()?.to_vec1()?;
        let zeros = codes.iter().filter(|&&c| c.abs() < 1e-6).count() as f64 / codes.len() as f64;
        Ok((zeros, last))
    };
    let (plain_zeros, plain_fit) = zero_fraction(AeKind::Plain)?;
    let (sparse_zeros, sparse_fit) = zero_fraction(AeKind::Sparse)?;
    assert!(
        sparse_zeros > 0.5 && sparse_zeros > plain_zeros + 0.4,
        "zeros: sparse {sparse_zeros}, plain {plain_zeros}"
    );
    assert!(sparse_fit.is_finite() && plain_fit.is_finite());
    Ok(())
}

#[test]
fn autoencoder_configs_validate_and_round_trip() -> Result<()> {
    let config = AeConfig {
        kind: AeKind::Sparse,
        penalty: SparsityPenalty::LaplacePrior,
        sparsity: 0.3,
        ..Default::default()
    };
    assert_eq!(
        serde_json::from_str::<AeConfig>(&serde_json::to_string(&config)?)?,
        config
    );
    let bad = AeConfig {
        sparsity: 0.0,
        ..config
    };
    assert!(bad.validate().is_err());
    assert!(
        AeConfig {
            latent_dim: 0,
            ..Default::default()
        }
        .validate()
        .is_err()
    );
    assert!(
        AeConfig {
            sparsity: -1.0,
            ..Default::default()
        }
        .validate()
        .is_err()
    );
    assert!("dense".parse::<AeKind>().is_err());
    Ok(())
}

#[test]
fn interpolation_and_reconstruction_shapes() -> Result<()> {
    let xs = low_rank_data(4)?;
    for kind in [AeKind::Plain, AeKind::Linear, AeKind::Sparse] {
        let config = AeConfig {
            kind,
            input_dim: 10,
            hidden_dim: 8,
            latent_dim: 3,
            reconstruction: Reconstruction::Bernoulli,
            ..Default::default()
        };
        let trainer = AeTrainer::new(&config, AdamConfig::default(), 1, &Device::Cpu)?;
        let model = trainer.model();
        assert_eq!(model.reconstruct(&xs)?.dims(), &[4, 10]);
        assert_eq!(
            model.interpolate(&xs.narrow(0, 0, 1)?, &xs.narrow(0, 1, 1)?, 6)?.dims(),
            &[6, 10]
        );
        assert_eq!(model.decoder_weight().is_ok(), kind == AeKind::Linear);
    }
    Ok(())
}
