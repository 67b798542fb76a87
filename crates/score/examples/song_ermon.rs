//! Song & Ermon's (2019) mixture experiment (issue 15, Must show 2; SPEC §6):
//! `0.8 N((5, 5), I) + 0.2 N((−5, −5), I)`, 1,280 chains started uniformly
//! in `[−8, 8]²`. For three seeds it prints the fraction of samples nearest
//! to (5, 5) after plain Langevin (ε = 0.1, 1,000 steps) and annealed
//! Langevin (10 levels from 20 to 1, T = 100, ε = 0.1), first on the exact
//! score, then on a noise-conditional network trained by multi-level
//! denoising score matching (the default [`ScoreConfig`]).
//!
//! ```text
//! cargo run --release -p deepgen-score --example song_ermon [TRAIN_STEPS]
//! ```
//! (default 20,000 steps of batch 128, Adam 1e-3 decayed by a half cosine to 1e-5).

use deepgen_core::candle::{Device, Tensor};
use deepgen_core::rng::{randn, rng_from_seed};
use deepgen_core::{AdamConfig, LrSchedule, StepCtx, TrainableModel, Trainer};
use deepgen_score::{
    AnnealedLangevin, GaussianMixture, Langevin, NoiseLevels, SamplerConfig, SamplerKind, ScoreConfig, ScoreModel,
};

const CHAINS: usize = 1280;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let device = Device::Cpu;
    let q = GaussianMixture::song_ermon();
    let plain = Langevin::new(0.1, 1000, 0.0)?;
    let annealed = AnnealedLangevin::new(NoiseLevels::geometric(20.0, 1.0, 10)?, 100, 0.1, false)?;
    let start = SamplerConfig::default(); // U[−8, 8]²
    println!("fraction of {CHAINS} samples in the mode at (5, 5) (true weight 0.80)");
    println!("| seed | exact, Langevin | exact, annealed | trained, Langevin at σ_L | trained, annealed |");
    println!("|-----:|----------------:|----------------:|-------------------------:|------------------:|");
    let mut columns = vec![Vec::new(); 4];
    for seed in 1..=3u64 {
        let x0 = start.start_from(&randn(&mut rng_from_seed(seed), (CHAINS, 2), &device)?)?;
        let f_plain = q.component_fractions(&plain.sample(&q, &x0, &mut rng_from_seed(100 + seed))?)?[0];
        let f_annealed = q.component_fractions(&annealed.sample(&q, &x0, &mut rng_from_seed(200 + seed))?)?[0];

        let config = ScoreConfig::default();
        // A half-cosine decay to 1 % of the rate: the weights the chains
        // recover hang on the score between the modes at middle levels,
        // where constant-rate noise in the parameters shows most.
        let adam = AdamConfig {
            schedule: LrSchedule::Cosine {
                total_steps: steps,
                min_lr: 1e-5,
            },
            ..AdamConfig::default()
        };
        let mut trainer = Trainer::<ScoreModel>::new(&config, adam, seed, &device)?;
        let mut rng = rng_from_seed(300 + seed);
        for step in 0..steps {
            let xs = q.sample(128, &mut rng, &device)?;
            let (model, optimizers) = trainer.model_and_optimizers();
            model.train_step(&xs, &StepCtx::new(0, step, steps), optimizers, &mut rng)?;
        }
        let model = trainer.model();
        let e: Tensor = randn(&mut rng_from_seed(seed), (CHAINS, 2), &device)?;
        let langevin = SamplerConfig {
            kind: SamplerKind::Langevin,
            steps: 1000,
            ..SamplerConfig::default()
        };
        let t_plain = q.component_fractions(&model.draw(&langevin, &e, &mut rng_from_seed(400 + seed))?)?[0];
        let t_annealed = q.component_fractions(&model.draw(&config.sampler, &e, &mut rng_from_seed(500 + seed))?)?[0];
        println!("| {seed} | {f_plain:.3} | {f_annealed:.3} | {t_plain:.3} | {t_annealed:.3} |");
        for (c, v) in columns.iter_mut().zip([f_plain, f_annealed, t_plain, t_annealed]) {
            c.push(v);
        }
    }
    let stats: Vec<String> = columns
        .iter()
        .map(|c| {
            let mean = c.iter().sum::<f64>() / c.len() as f64;
            let sd = (c.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (c.len() - 1) as f64).sqrt();
            format!("{mean:.3} ± {sd:.3}")
        })
        .collect();
    println!("| mean ± sd | {} |", stats.join(" | "));
    Ok(())
}
