//! SPEC §7's identities, each against an independent computation:
//! q_σ's marginals (the Gaussian lemma by recursion in f64, and Monte
//! Carlo), its per-step KL against the closed-form weight γ_t, DDPM's
//! weight at η = 1, DDIM inversion, and every sampler on Gaussian data
//! whose optimal noise predictor is known exactly.

use candle::{DType, Device, Tensor};
use deepgen_core::rng::{randn, rng_from_seed};
use deepgen_diffusion::gaussian::column_moments;
use deepgen_diffusion::{
    BetaSchedule, DdpmVariance, Denoiser, GaussianDenoiser, NoiseSchedule, NonMarkovianProcess, PredictionType,
    SampleProcessing, SamplerConfig, SamplerKind, ScheduleConfig, SchedulerState, TimestepSpacing, ddim, sample,
};
use proptest::prelude::*;

/// A short random schedule: T betas in [1e-3, 0.3].
fn short_schedule(betas: &[f64]) -> NoiseSchedule {
    NoiseSchedule::from_betas(betas.to_vec()).unwrap()
}

/// σ_t = u_t √(1 − ᾱ_{t−1}) for fractions u_t ∈ [0, 1].
fn sigmas(schedule: &NoiseSchedule, fractions: &[f64]) -> Vec<f64> {
    fractions
        .iter()
        .enumerate()
        .map(|(t, u)| u * (1.0 - schedule.alpha_bar_prev(t).unwrap()).sqrt())
        .collect()
}

fn tensor(rows: usize, cols: usize, seed: u64) -> Tensor {
    randn(&mut rng_from_seed(seed), (rows, cols), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The Gaussian lemma by recursion: starting from
    /// `x_{T−1} ~ N(√ᾱ_{T−1} x₀, 1 − ᾱ_{T−1})`, each step of q_σ maps
    /// `(m, v)` to `(√ᾱ_{t−1} x₀ + k_t (m − √ᾱ_t x₀), σ_t² + k_t² v)`; the
    /// result must be `(√ᾱ_{t−1} x₀, 1 − ᾱ_{t−1})` at every t, whatever σ.
    #[test]
    fn prop_q_sigma_marginals_by_the_gaussian_lemma(
        betas in prop::collection::vec(1e-3f64..0.3, 2..12),
        fractions in prop::collection::vec(0.0f64..=1.0, 12),
        x0 in -3.0f64..3.0,
    ) {
        let schedule = short_schedule(&betas);
        let n = schedule.len();
        let process = NonMarkovianProcess::new(schedule.clone(), sigmas(&schedule, &fractions[..n])).unwrap();
        let a = |t: usize| schedule.alpha_bar(t).unwrap();
        let (mut m, mut v) = (a(n - 1).sqrt() * x0, 1.0 - a(n - 1));
        for t in (1..n).rev() {
            let (k, s) = (process.k(t).unwrap(), process.sigma(t).unwrap());
            m = a(t - 1).sqrt() * x0 + k * (m - a(t).sqrt() * x0);
            v = s * s + k * k * v;
            prop_assert!((m - a(t - 1).sqrt() * x0).abs() < 1e-12, "mean at t = {}", t - 1);
            prop_assert!((v - (1.0 - a(t - 1))).abs() < 1e-12, "variance at t = {}: {v}", t - 1);
        }
    }

    /// The per-step KL, computed as the KL of the two Gaussians' means,
    /// equals `γ_t ‖ε − ε_θ‖²` with SPEC §7's weight, for random σ,
    /// x₀, ε and ε_θ.
    #[test]
    fn prop_step_kl_is_gamma_times_the_noise_error(
        betas in prop::collection::vec(1e-3f64..0.3, 3..10),
        fractions in prop::collection::vec(0.05f64..=1.0, 10),
        seed in 0u64..1000,
    ) {
        let schedule = short_schedule(&betas);
        let n = schedule.len();
        let process = NonMarkovianProcess::new(schedule.clone(), sigmas(&schedule, &fractions[..n])).unwrap();
        let (x0, eps, eps_theta) = (tensor(4, 3, seed), tensor(4, 3, seed + 1), tensor(4, 3, seed + 2));
        for t in 1..n {
            let a = schedule.alpha_bar(t).unwrap();
            let x_t = ((&x0 * a.sqrt()).unwrap() + (&eps * (1.0 - a).sqrt()).unwrap()).unwrap();
            let kl = to_vec(&process.step_kl(t, &x_t, &x0, &eps_theta).unwrap());
            let err = to_vec(&(&eps - &eps_theta).unwrap().sqr().unwrap().sum(1).unwrap());
            let gamma = process.kl_weight(t).unwrap();
            for (k, e) in kl.iter().zip(&err) {
                prop_assert!((k - gamma * e).abs() <= 1e-9 * (1.0 + k.abs()), "t = {t}: KL {k} vs γ‖ε − ε_θ‖² {}", gamma * e);
            }
        }
    }

    /// At η = 1, γ_t is DDPM's `β_t²/(2σ_t² α_t (1 − ᾱ_t))`.
    #[test]
    fn prop_eta_one_gives_ddpm_weights(betas in prop::collection::vec(1e-3f64..0.3, 3..12)) {
        let schedule = short_schedule(&betas);
        let process = NonMarkovianProcess::ddim(schedule.clone(), 1.0).unwrap();
        for t in 1..schedule.len() {
            let (b, a) = (schedule.beta(t).unwrap(), schedule.alpha_bar(t).unwrap());
            let s = process.sigma(t).unwrap();
            // η = 1 is DDPM's posterior variance β̃_t.
            let posterior = (1.0 - schedule.alpha_bar_prev(t).unwrap()) / (1.0 - a) * b;
            prop_assert!((s * s - posterior).abs() < 1e-14);
            let ddpm = b * b / (2.0 * s * s * (1.0 - b) * (1.0 - a));
            let gamma = process.kl_weight(t).unwrap();
            prop_assert!((gamma - ddpm).abs() <= 1e-9 * ddpm, "t = {t}: γ {gamma} vs DDPM {ddpm}");
        }
    }
}

/// Monte Carlo: 20,000 trajectories of q_σ on a 6-step schedule with
/// random σ's; at every t the sample mean and variance of x_t match
/// `√ᾱ_t x₀` and `1 − ᾱ_t` within 4 standard errors.
#[test]
fn q_sigma_trajectories_have_the_marginals() {
    let schedule = short_schedule(&[0.05, 0.1, 0.15, 0.2, 0.25, 0.3]);
    let process =
        NonMarkovianProcess::new(schedule.clone(), sigmas(&schedule, &[0.0, 0.9, 0.3, 1.0, 0.5, 0.7])).unwrap();
    let n = 20_000;
    let x0 = Tensor::full(1.5f64, (n, 1), &Device::Cpu).unwrap();
    let mut rng = rng_from_seed(7);
    let noises: Vec<Tensor> = (0..schedule.len())
        .map(|_| {
            randn(&mut rng, (n, 1), &Device::Cpu)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
        })
        .collect();
    let path = process.sample_trajectory(&x0, &noises).unwrap();
    for (t, x_t) in path.iter().take(schedule.len()).enumerate() {
        let (mean, std) = column_moments(x_t).unwrap();
        let a = schedule.alpha_bar(t).unwrap();
        let se = ((1.0 - a) / n as f64).sqrt();
        assert!((mean[0] - a.sqrt() * 1.5).abs() < 4.0 * se, "t = {t}: mean {}", mean[0]);
        let var = std[0] * std[0];
        let var_se = (1.0 - a) * (2.0 / n as f64).sqrt();
        assert!((var - (1.0 - a)).abs() < 4.0 * var_se, "t = {t}: variance {var}");
    }
    assert_eq!(to_vec(&path[schedule.len()]), to_vec(&x0));
}

#[test]
fn q_sigma_refuses_sigmas_beyond_their_bound() {
    let schedule = short_schedule(&[0.1, 0.2, 0.3]);
    let bound = (1.0 - schedule.alpha_bar_prev(2).unwrap()).sqrt();
    let err = NonMarkovianProcess::new(schedule.clone(), vec![0.0, 0.1, bound * 1.01])
        .err()
        .map(|e| e.to_string());
    assert!(err.as_deref().is_some_and(|e| e.contains("σ_2²")), "{err:?}");
    assert!(NonMarkovianProcess::new(schedule.clone(), vec![0.0, -0.1, 0.0]).is_err());
    assert!(NonMarkovianProcess::ddim(schedule.clone(), -0.5).is_err());
    let deterministic = NonMarkovianProcess::ddim(schedule, 0.0).unwrap();
    assert!(deterministic.kl_weight(1).is_err(), "η = 0 has no KL weight");
}

fn gaussian(prediction: PredictionType) -> GaussianDenoiser {
    let schedule = NoiseSchedule::new(&ScheduleConfig::default()).unwrap();
    GaussianDenoiser::new(vec![1.0, -2.0], 0.5, schedule, prediction).unwrap()
}

/// DDIM inversion with the exact ε of Gaussian data: x₀ → x_T → x₀ returns
/// the data up to the discretisation error, which shrinks like 1/steps;
/// and the inverted noise of Gaussian data is standard normal.
#[test]
fn ddim_inversion_round_trip() {
    let denoiser = gaussian(PredictionType::Epsilon);
    let schedule = NoiseSchedule::new(&ScheduleConfig::default()).unwrap();
    let state = SchedulerState::new(schedule.clone(), PredictionType::Epsilon, SampleProcessing::None).unwrap();
    let x0 = (tensor(2000, 2, 3) * 0.5)
        .unwrap()
        .broadcast_add(&Tensor::new(&[[1.0f64, -2.0]], &Device::Cpu).unwrap())
        .unwrap();
    let mut errors = Vec::new();
    for steps in [20, 200] {
        let config = SamplerConfig {
            kind: SamplerKind::Ddim,
            steps,
            spacing: TimestepSpacing::Leading,
            ..SamplerConfig::default()
        };
        let mut scheduler = config.scheduler(&schedule, PredictionType::Epsilon).unwrap();
        let mut up = scheduler.timesteps().to_vec();
        up.reverse();
        let x_t = ddim::invert(&denoiser, &state, &x0, &up).unwrap();
        let back = sample(&denoiser, scheduler.as_mut(), &x_t, &mut rng_from_seed(0), |_, _, _| {
            Ok(())
        })
        .unwrap();
        let err = (&back - &x0)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        errors.push(err);
        let (mean, std) = column_moments(&x_t).unwrap();
        eprintln!("{steps} steps: round trip {err:.2e}, inverted noise mean {mean:?} std {std:?}");
        if steps == 200 {
            for j in 0..2 {
                assert!(
                    mean[j].abs() < 0.1 && (std[j] - 1.0).abs() < 0.1,
                    "inverted noise {mean:?} {std:?}"
                );
            }
        }
    }
    // The inversion evaluates ε at the start of each step and the sampler at
    // its end: a first-order method, whose error falls with the step size.
    assert!(errors[1] < 0.1, "round trip error with 200 steps: {}", errors[1]);
    assert!(
        errors[1] < 0.2 * errors[0],
        "error does not shrink like 1/steps: {errors:?}"
    );
}

/// Every sampler, on the exact predictor of N((1, −2), 0.5² I) and under
/// every prediction type, draws samples with that mean and standard
/// deviation (4,000 samples; within 0.05).
#[test]
fn every_sampler_draws_gaussian_data() {
    let configs = [
        (SamplerKind::Ddpm, 1000, 0.0, DdpmVariance::FixedSmall),
        (SamplerKind::Ddpm, 100, 0.0, DdpmVariance::FixedLarge),
        (SamplerKind::Ddim, 200, 0.0, DdpmVariance::FixedSmall),
        // At η = 1 a few large steps under-disperse (x̂₀ = E[x₀|x_t] drops
        // Var[x₀|x_t] from the step's variance); 500 steps do not.
        (SamplerKind::Ddim, 500, 1.0, DdpmVariance::FixedSmall),
        (SamplerKind::DpmSolverPlusPlus, 50, 0.0, DdpmVariance::FixedSmall),
    ];
    // (Few-step ODE samplers under-disperse here: their last step returns
    // x̂₀ = E[x₀ | x_t], whose spread is below the data's. DDIM-10 draws a
    // standard deviation of 0.36, DPM-Solver++-10 0.40, DDIM-1000 0.49;
    // `dpm_solver_beats_ddim_at_ten_steps` compares them to the ODE.)
    for prediction in PredictionType::ALL {
        let denoiser = gaussian(prediction);
        let schedule = NoiseSchedule::new(&ScheduleConfig::default()).unwrap();
        for (kind, steps, eta, variance) in configs {
            let config = SamplerConfig {
                kind,
                steps,
                eta,
                variance,
                spacing: TimestepSpacing::Trailing,
                ..SamplerConfig::default()
            };
            let mut scheduler = config.scheduler(&schedule, prediction).unwrap();
            let mut rng = rng_from_seed(11);
            let x_t = randn(&mut rng, (4000, 2), &Device::Cpu).unwrap();
            let x = sample(&denoiser, scheduler.as_mut(), &x_t, &mut rng, |_, _, _| Ok(())).unwrap();
            let (mean, std) = column_moments(&x).unwrap();
            let label = format!("{} with {prediction}", config.label());
            assert!(
                (mean[0] - 1.0).abs() < 0.05 && (mean[1] + 2.0).abs() < 0.05,
                "{label}: mean {mean:?}"
            );
            assert!(std.iter().all(|s| (s - 0.5).abs() < 0.05), "{label}: std {std:?}");
        }
    }
}

/// DPM-Solver++ is second order: with the exact predictor its 10-step
/// samples from fixed noise are closer to a 1000-step DDIM's (the ODE's
/// solution) than 10-step DDIM's (first order) are.
#[test]
fn dpm_solver_beats_ddim_at_ten_steps() {
    let denoiser = gaussian(PredictionType::Epsilon);
    let schedule = NoiseSchedule::new(&ScheduleConfig {
        beta_schedule: BetaSchedule::Cosine,
        ..ScheduleConfig::default()
    })
    .unwrap();
    let denoiser = GaussianDenoiser::new(
        denoiser.mean().to_vec(),
        denoiser.std(),
        schedule.clone(),
        PredictionType::Epsilon,
    )
    .unwrap();
    let x_t = tensor(500, 2, 5).to_dtype(DType::F32).unwrap();
    let run = |kind, steps| {
        let config = SamplerConfig {
            kind,
            steps,
            spacing: TimestepSpacing::Trailing,
            ..SamplerConfig::default()
        };
        let mut scheduler = config.scheduler(&schedule, PredictionType::Epsilon).unwrap();
        sample(&denoiser, scheduler.as_mut(), &x_t, &mut rng_from_seed(0), |_, _, _| {
            Ok(())
        })
        .unwrap()
    };
    let exact = run(SamplerKind::Ddim, 1000);
    let gap = |x: &Tensor| {
        (x - &exact)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let (ddim10, dpm10) = (
        gap(&run(SamplerKind::Ddim, 10)),
        gap(&run(SamplerKind::DpmSolverPlusPlus, 10)),
    );
    assert!(dpm10 < 0.5 * ddim10, "DPM-Solver++ {dpm10} vs DDIM {ddim10}");
}

/// Bad input says what is wrong.
#[test]
fn bad_sampler_input_is_refused() {
    let schedule = NoiseSchedule::new(&ScheduleConfig::default()).unwrap();
    let err = |config: SamplerConfig| {
        config
            .scheduler(&schedule, PredictionType::Epsilon)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(
        err(SamplerConfig {
            steps: 1001,
            ..SamplerConfig::default()
        })
        .contains("between 1 and T = 1000")
    );
    assert!(
        err(SamplerConfig {
            steps: 0,
            ..SamplerConfig::default()
        })
        .contains("at least one step")
    );
    assert!(
        err(SamplerConfig {
            eta: -0.1,
            ..SamplerConfig::default()
        })
        .contains("η")
    );
    assert!("euler".parse::<SamplerKind>().is_err());
    assert!("uniform".parse::<TimestepSpacing>().is_err());

    // A step at a timestep the scheduler does not visit, or without its noise.
    let mut ddpm = SamplerConfig {
        kind: SamplerKind::Ddpm,
        steps: 10,
        ..SamplerConfig::default()
    }
    .scheduler(&schedule, PredictionType::Epsilon)
    .unwrap();
    let x = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
    let e = ddpm.step(&x, 500, &x, Some(&x)).err().map(|e| e.to_string());
    assert!(e.as_deref().is_some_and(|e| e.contains("not among")), "{e:?}");
    let first = ddpm.timesteps()[0];
    let e = ddpm.step(&x, first, &x, None).err().map(|e| e.to_string());
    assert!(e.as_deref().is_some_and(|e| e.contains("draws noise")), "{e:?}");
    let wide = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(ddpm.step(&wide, first, &x, Some(&x)).is_err());

    let denoiser = gaussian(PredictionType::Epsilon);
    assert!(denoiser.predict(&wide, 10).is_err());
}

/// diffusers issues 9261 and 12633: a step goes to the next timestep of the
/// list, whatever the spacing. DDPM's coefficients at t = 999 under
/// linspace spacing (S = 10) use ᾱ_888, not ᾱ_899 (999 − T/S); under
/// trailing spacing the last step goes from 99 to the clean data (ᾱ = 1),
/// not to −1; and DDIM's first step under trailing spacing with S = 50
/// lands exactly on the noising of its x̂₀ at t = 979.
#[test]
fn steps_go_to_the_next_listed_timestep() {
    let schedule = NoiseSchedule::new(&ScheduleConfig::default()).unwrap();
    let state = |spacing, steps| {
        let mut s = SchedulerState::new(schedule.clone(), PredictionType::Epsilon, SampleProcessing::None).unwrap();
        s.set_timesteps(steps, spacing).unwrap();
        s
    };
    let linspace = state(TimestepSpacing::Linspace, 10);
    assert_eq!(linspace.position(999).unwrap(), (0, Some(888)));
    let (a, a_prev) = linspace.alpha_bars(999).unwrap();
    assert_eq!(
        (a, a_prev),
        (schedule.alpha_bar(999).unwrap(), schedule.alpha_bar(888).unwrap())
    );
    let trailing = state(TimestepSpacing::Trailing, 10);
    assert_eq!(trailing.position(99).unwrap(), (9, None));
    assert_eq!(trailing.alpha_bars(99).unwrap().1, 1.0);

    // A DDIM step (η = 0) from x_999 with output ε̂ lands on √ᾱ_979 x̂₀ + √(1 − ᾱ_979) ε̂.
    let mut ddim = SamplerConfig {
        spacing: TimestepSpacing::Trailing,
        ..SamplerConfig::default()
    }
    .scheduler(&schedule, PredictionType::Epsilon)
    .unwrap();
    assert_eq!(&ddim.timesteps()[..2], [999, 979]);
    let (x, eps) = (tensor(3, 2, 1), tensor(3, 2, 2));
    let out = ddim.step(&eps, 999, &x, None).unwrap();
    let a979 = schedule.alpha_bar(979).unwrap();
    let want = ((&out.pred_original_sample * a979.sqrt()).unwrap() + (&eps * (1.0 - a979).sqrt()).unwrap()).unwrap();
    let gap = (out.prev_sample - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(gap < 1e-12, "{gap}");
}
