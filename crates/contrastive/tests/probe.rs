//! The linear probe's logistic regression against a computation of its own
//! objective in plain f64 loops: the L-BFGS solution is a stationary point
//! of `J(W, b) = (1/n) Σ_i CE(softmax(W x_i + b), y_i) + ‖W‖²/(2Cn)` (which,
//! `J` being convex, makes it the minimiser), no random step lowers `J`,
//! and it beats the anchor's Adam probe on `J`. The loops' gradient is
//! itself checked by central differences.

use candle::{Device, Tensor};
use deepgen_contrastive::{Labelled, LinearProbe, ProbeConfig, ProbeSolver};
use deepgen_core::rng::{randn, rng_from_seed};
use proptest::prelude::*;
use rand::Rng;

/// A classification problem in f64: standardised features (the probe's
/// standardisation, recomputed here) and labels.
struct Problem {
    xs: Vec<Vec<f64>>,
    ys: Vec<usize>,
    classes: usize,
    c: f64,
}

impl Problem {
    /// `n` points of `classes` overlapping Gaussian clusters in `f`
    /// dimensions (centres `spread`·N(0, I), unit noise): not separable, so
    /// the unregularised optimum is finite too.
    fn sample(n: usize, f: usize, classes: usize, spread: f64, seed: u64) -> (Tensor, Tensor) {
        let mut rng = rng_from_seed(seed);
        let centres = (randn(&mut rng, (classes, f), &Device::Cpu).unwrap() * spread).unwrap();
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..classes as u32)).collect();
        let idx = Tensor::from_vec(labels, n, &Device::Cpu).unwrap();
        let xs = (centres.index_select(&idx, 0).unwrap() + randn(&mut rng, (n, f), &Device::Cpu).unwrap()).unwrap();
        (xs, idx)
    }

    fn new(features: &Tensor, labels: &Tensor, classes: usize, c: f64) -> Self {
        let raw: Vec<Vec<f64>> = features
            .to_vec2::<f32>()
            .unwrap()
            .into_iter()
            .map(|r| r.into_iter().map(f64::from).collect())
            .collect();
        let (n, f) = (raw.len(), raw[0].len());
        let mean: Vec<f64> = (0..f)
            .map(|j| raw.iter().map(|r| r[j]).sum::<f64>() / n as f64)
            .collect();
        let sd: Vec<f64> = (0..f)
            .map(|j| (raw.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt())
            .collect();
        let xs = raw
            .iter()
            .map(|r| (0..f).map(|j| (r[j] - mean[j]) / (sd[j] + 1e-6)).collect())
            .collect();
        let ys = labels
            .to_vec1::<u32>()
            .unwrap()
            .into_iter()
            .map(|y| y as usize)
            .collect();
        Self { xs, ys, classes, c }
    }

    /// `J` and its gradient (`[W row-major F×K, b K]`) by loops over the examples.
    fn objective(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let (n, f, k) = (self.xs.len(), self.xs[0].len(), self.classes);
        let penalty = 1.0 / (self.c * n as f64);
        let mut cost = 0.0;
        let mut grad = vec![0.0; f * k + k];
        for (x, &y) in self.xs.iter().zip(&self.ys) {
            let logits: Vec<f64> = (0..k)
                .map(|c| p[f * k + c] + (0..f).map(|j| x[j] * p[j * k + c]).sum::<f64>())
                .collect();
            let top = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let log_z = top + logits.iter().map(|l| (l - top).exp()).sum::<f64>().ln();
            cost += (log_z - logits[y]) / n as f64;
            for c in 0..k {
                let r = ((logits[c] - log_z).exp() - f64::from(u8::from(c == y))) / n as f64;
                for j in 0..f {
                    grad[j * k + c] += x[j] * r;
                }
                grad[f * k + c] += r;
            }
        }
        for i in 0..f * k {
            cost += 0.5 * penalty * p[i] * p[i];
            grad[i] += penalty * p[i];
        }
        (cost, grad)
    }
}

fn parameters(probe: &LinearProbe) -> Vec<f64> {
    let mut p: Vec<f64> = probe
        .weight()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    p.extend(probe.bias().to_vec1::<f32>().unwrap().into_iter().map(f64::from));
    p
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[test]
fn the_test_objectives_gradient_matches_central_differences() {
    let (xs, ys) = Problem::sample(40, 3, 3, 1.0, 1);
    let problem = Problem::new(&xs, &ys, 3, 0.5);
    let mut rng = rng_from_seed(2);
    let p: Vec<f64> = (0..12).map(|_| rng.random_range(-1.0..1.0)).collect();
    let (_, grad) = problem.objective(&p);
    for i in 0..p.len() {
        let h = 1e-6;
        let (mut up, mut down) = (p.clone(), p.clone());
        up[i] += h;
        down[i] -= h;
        let numeric = (problem.objective(&up).0 - problem.objective(&down).0) / (2.0 * h);
        assert!(
            (numeric - grad[i]).abs() < 1e-7,
            "∂J/∂p[{i}] {} against {numeric}",
            grad[i]
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// The L-BFGS probe's `(W, b)` is where `J`'s gradient vanishes, and
    /// random steps around it only raise `J`.
    #[test]
    fn prop_the_lbfgs_probe_minimises_the_regularised_cross_entropy(
        seed in 0u64..1000,
        f in 2usize..6,
        classes in 2usize..5,
        c in prop_oneof![Just(1.0), Just(0.01), Just(100.0)],
    ) {
        let (xs, ys) = Problem::sample(200, f, classes, 1.5, seed);
        let config = ProbeConfig { c, ..ProbeConfig::default() };
        let train = Labelled { features: &xs, labels: &ys };
        let probe = LinearProbe::fit(train, classes, &config, &Device::Cpu).unwrap();
        let problem = Problem::new(&xs, &ys, classes, c);
        let p = parameters(&probe);
        let (cost, grad) = problem.objective(&p);
        // f32 storage of (W, b) leaves a gradient of order 1e-7·|p|.
        prop_assert!(norm(&grad) < 1e-5 * (1.0 + norm(&p)), "‖∇J‖ = {} at J = {cost}", norm(&grad));
        let mut rng = rng_from_seed(seed + 1);
        for _ in 0..20 {
            let step: Vec<f64> = p.iter().map(|v| v + 1e-2 * rng.random_range(-1.0..1.0)).collect();
            prop_assert!(problem.objective(&step).0 >= cost - 1e-12);
        }
    }
}

#[test]
fn the_anchors_adam_probe_stops_above_the_optimum() {
    // 80 steps of 512 at a constant 1e-2 from PyTorch's initialisation.
    let (xs, ys) = Problem::sample(2000, 8, 5, 1.0, 7);
    let train = Labelled {
        features: &xs,
        labels: &ys,
    };
    let problem = Problem::new(&xs, &ys, 5, 1.0);
    let solved = LinearProbe::fit(train, 5, &ProbeConfig::default(), &Device::Cpu).unwrap();
    let anchor = LinearProbe::fit(train, 5, &ProbeConfig::anchor(), &Device::Cpu).unwrap();
    let (optimum, _) = problem.objective(&parameters(&solved));
    let (adam, adam_grad) = problem.objective(&parameters(&anchor));
    assert!(adam > optimum, "Adam's J {adam} against L-BFGS's {optimum}");
    assert!(norm(&adam_grad) > 1e-4, "‖∇J‖ at Adam's end {}", norm(&adam_grad));
}

#[test]
fn bad_probe_settings_are_refused() {
    let (xs, ys) = Problem::sample(20, 2, 2, 1.0, 3);
    let train = Labelled {
        features: &xs,
        labels: &ys,
    };
    for (config, what) in [
        (
            ProbeConfig {
                c: 0.0,
                ..ProbeConfig::default()
            },
            "probe c",
        ),
        (
            ProbeConfig {
                c: f64::NAN,
                ..ProbeConfig::default()
            },
            "probe c",
        ),
        (
            ProbeConfig {
                tolerance: -1.0,
                ..ProbeConfig::default()
            },
            "probe tolerance",
        ),
        (
            ProbeConfig {
                max_iterations: 0,
                ..ProbeConfig::default()
            },
            "probe max_iterations",
        ),
        (
            ProbeConfig {
                epochs: 0,
                ..ProbeConfig::anchor()
            },
            "probe",
        ),
        (
            ProbeConfig {
                lr: 0.0,
                ..ProbeConfig::anchor()
            },
            "probe lr",
        ),
    ] {
        let message = LinearProbe::fit(train, 2, &config, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with(&format!("invalid {what} =")), "{message}");
    }
    let message = LinearProbe::fit(train, 1, &ProbeConfig::default(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(message.contains("largest label"), "{message}");
    let message = "newton".parse::<ProbeSolver>().unwrap_err().to_string();
    assert!(message.contains("one of lbfgs, adam"), "{message}");
}
