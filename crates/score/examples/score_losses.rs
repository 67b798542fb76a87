//! The four score-matching losses side by side (issue 15, Must show 3): on
//! `0.8 N(μ, I) + 0.2 N(−μ, I)` in d = 2, 8, 32, 128 dimensions
//! ([`GaussianMixture::two_modes`]), each loss trains the same
//! unconditional MLP (two softplus layers of 128) for the same steps; the
//! table gives the Fisher divergence of the trained score to the true score
//! on 2,000 held-out samples, that divergence relative to the zero score's
//! (`E ½‖∇log q‖²`), and the seconds per training step.
//!
//! ```text
//! cargo run --release -p deepgen-score --example score_losses [STEPS] [DIMS]
//! ```
//! (defaults: 2000 steps; dims `2,8,32,128`).

use deepgen_core::candle::{DType, Device, Tensor};
use deepgen_core::rng::rng_from_seed;
use deepgen_core::{AdamConfig, StepCtx, TrainableModel, Trainer};
use deepgen_score::loss::fisher_divergence;
use deepgen_score::{
    GaussianMixture, NoiseLevels, SamplerConfig, SamplerKind, ScoreConfig, ScoreField, ScoreLoss, ScoreModel,
};
use std::time::Instant;

/// The single level of denoising score matching: small enough that
/// `∇log q_σ` is close to `∇log q` (components of unit variance).
const DSM_SIGMA: f64 = 0.1;
const BATCH: usize = 128;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let steps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let dims: Vec<usize> = match args.next() {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![2, 8, 32, 128],
    };
    let device = Device::Cpu;
    println!("{steps} steps of batch {BATCH}, Adam 1e-3, MLP 128-128 softplus; DSM at σ = {DSM_SIGMA}");
    println!("|   d | loss   | Fisher (held-out) | relative to s = 0 | s/step |");
    println!("|----:|--------|------------------:|------------------:|-------:|");
    for &d in &dims {
        let q = GaussianMixture::two_modes(d);
        let held_out = q.sample(2000, &mut rng_from_seed(1_000 + d as u64), &device)?;
        let truth = q.score(&held_out)?;
        let zero = fisher_divergence(&truth.zeros_like()?, &truth)?.to_scalar::<f32>()? as f64;
        for loss in ScoreLoss::ALL {
            let config = ScoreConfig {
                data_dim: d,
                loss,
                sigmas: NoiseLevels::new(vec![DSM_SIGMA])?,
                noise_conditional: false,
                sampler: SamplerConfig {
                    kind: SamplerKind::Langevin,
                    ..SamplerConfig::default()
                },
                ..ScoreConfig::default()
            };
            let mut trainer = Trainer::<ScoreModel>::new(&config, AdamConfig::default(), 0, &device)?;
            let mut rng = rng_from_seed(d as u64);
            let train = q.sample(20_000, &mut rng, &device)?;
            let start = Instant::now();
            for step in 0..steps {
                let from = (step * BATCH) % (20_000 - BATCH);
                let xs = train.narrow(0, from, BATCH)?;
                let (model, optimizers) = trainer.model_and_optimizers();
                model.train_step(&xs, &StepCtx::new(0, step, steps), optimizers, &mut rng)?;
            }
            let per_step = start.elapsed().as_secs_f64() / steps as f64;
            let s: Tensor = trainer.model().score(&held_out, 0.0)?;
            let fisher = fisher_divergence(&s, &truth)?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            println!(
                "| {d:>3} | {:<6} | {fisher:>17.4} | {:>17.4} | {per_step:>6.4} |",
                loss.name(),
                fisher / zero
            );
        }
    }
    Ok(())
}
