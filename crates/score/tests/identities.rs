//! SPEC §6's identities as exact tests.
//!
//! Every integrand below is a quadratic in the Gaussian variables when the
//! score is linear, and the average of a quadratic over the 2k "sigma
//! points" `m ± √k L eᵢ` (S = LLᵀ) equals its expectation under N(m, S)
//! exactly. So the crate's own losses, evaluated on those points, are the
//! exact expectations, and the identities must hold to rounding:
//!
//! - `l_F − l_ESM = ½ tr(S⁻¹)` for `q = N(m, S)` and any `s(x) = Ax + b`;
//! - `l_F,σ − l_DSM = ½ tr((S + σ²I)⁻¹) − d/(2σ²)`;
//! - the sliced losses averaged over a set of projections with
//!   `mean vvᵀ = I` equal `l_ESM` for any network.

use candle::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use deepgen_score::loss::{
    denoising_score_matching, explicit_score_matching, fisher_divergence, multi_level_denoising_score_matching,
    sliced_score_matching,
};
use deepgen_score::{NoiseLevels, ScoreNet};
use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};
use proptest::prelude::*;

const DEV: Device = Device::Cpu;

/// A random symmetric positive definite `S = B Bᵀ + 0.3 I` from `b` entries.
fn spd(d: usize, b: &[f64]) -> Mat<f64> {
    let bm = Mat::from_fn(d, d, |i, j| b[i * d + j]);
    let mut s = &bm * bm.transpose();
    for i in 0..d {
        s[(i, i)] += 0.3;
    }
    s
}

fn to_tensor(m: &Mat<f64>) -> Tensor {
    let data: Vec<f64> = (0..m.nrows())
        .flat_map(|i| (0..m.ncols()).map(move |j| m[(i, j)]))
        .collect();
    Tensor::from_vec(data, (m.nrows(), m.ncols()), &DEV).unwrap()
}

/// The 2k sigma points `[2k, k]` of N(mean, S) (k = dim).
fn sigma_points(mean: &[f64], s: &Mat<f64>) -> Tensor {
    let k = mean.len();
    let l = s.llt(Side::Lower).unwrap().L().to_owned();
    let scale = (k as f64).sqrt();
    let mut rows = Vec::with_capacity(2 * k * k);
    for sign in [1.0, -1.0] {
        for i in 0..k {
            rows.extend((0..k).map(|r| mean[r] + sign * scale * l[(r, i)]));
        }
    }
    Tensor::from_vec(rows, (2 * k, k), &DEV).unwrap()
}

fn trace_of_inverse(s: &Mat<f64>) -> f64 {
    let inv = s.llt(Side::Lower).unwrap().inverse();
    (0..s.nrows()).map(|i| inv[(i, i)]).sum()
}

/// The Gaussian's score `−S⁻¹(x − m)` at the rows of `x`.
fn gaussian_score(x: &Tensor, mean: &[f64], s: &Mat<f64>) -> Tensor {
    let inv = to_tensor(&s.llt(Side::Lower).unwrap().inverse());
    let m = Tensor::from_slice(mean, (1, mean.len()), &DEV).unwrap();
    x.broadcast_sub(&m).unwrap().matmul(&inv).unwrap().neg().unwrap()
}

fn scalar(t: Tensor) -> f64 {
    t.to_scalar::<f64>().unwrap()
}

fn affine(d: usize, a: &[f64], b: &[f64]) -> ScoreNet {
    ScoreNet::affine(
        Tensor::from_slice(&a[..d * d], (d, d), &DEV).unwrap(),
        Tensor::from_slice(&b[..d], d, &DEV).unwrap(),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `l_F − l_ESM = ½ tr(S⁻¹)`, whatever A and b.
    #[test]
    fn prop_fisher_minus_explicit_is_half_trace_of_precision(
        d in 1usize..5,
        a in prop::collection::vec(-2.0f64..2.0, 16),
        b in prop::collection::vec(-2.0f64..2.0, 4),
        bs in prop::collection::vec(-1.0f64..1.0, 16),
        mean in prop::collection::vec(-3.0f64..3.0, 4),
    ) {
        let s = spd(d, &bs);
        let net = affine(d, &a, &b);
        let x = sigma_points(&mean[..d], &s);
        let l_f = scalar(fisher_divergence(&net.score(&x, None).unwrap(), &gaussian_score(&x, &mean[..d], &s)).unwrap());
        let l_esm = scalar(explicit_score_matching(&net, &x).unwrap());
        let expected = 0.5 * trace_of_inverse(&s);
        prop_assert!((l_f - l_esm - expected).abs() < 1e-9 * (1.0 + l_f.abs()), "{l_f} − {l_esm} vs {expected}");
    }

    /// `l_F,σ − l_DSM = ½ tr((S + σ²I)⁻¹) − d/(2σ²)`, whatever A and b.
    #[test]
    fn prop_noisy_fisher_minus_denoising_is_closed_form(
        d in 1usize..4,
        a in prop::collection::vec(-2.0f64..2.0, 9),
        b in prop::collection::vec(-2.0f64..2.0, 3),
        bs in prop::collection::vec(-1.0f64..1.0, 9),
        mean in prop::collection::vec(-3.0f64..3.0, 3),
        sigma in 0.05f64..3.0,
    ) {
        let (s, m) = (spd(d, &bs), &mean[..d]);
        let net = affine(d, &a, &b);
        // l_DSM: sigma points of the joint (u, ε) ~ N(0, I_2d), x = m + L u.
        let joint = sigma_points(&vec![0.0; 2 * d], &Mat::<f64>::identity(2 * d, 2 * d));
        let l = to_tensor(&s.llt(Side::Lower).unwrap().L().to_owned());
        let mrow = Tensor::from_slice(m, (1, d), &DEV).unwrap();
        let x = joint.narrow(1, 0, d).unwrap().matmul(&l.t().unwrap()).unwrap().broadcast_add(&mrow).unwrap();
        let eps = joint.narrow(1, d, d).unwrap().contiguous().unwrap();
        let l_dsm = scalar(denoising_score_matching(&net, &x, &eps, sigma).unwrap());
        // l_F,σ: sigma points of q_σ = N(m, S + σ²I) against its score.
        let mut s_sigma = s.clone();
        for i in 0..d {
            s_sigma[(i, i)] += sigma * sigma;
        }
        let xs = sigma_points(m, &s_sigma);
        let l_fs = scalar(fisher_divergence(&net.score(&xs, None).unwrap(), &gaussian_score(&xs, m, &s_sigma)).unwrap());
        let expected = 0.5 * trace_of_inverse(&s_sigma) - d as f64 / (2.0 * sigma * sigma);
        prop_assert!(
            (l_fs - l_dsm - expected).abs() < 1e-9 * (1.0 + l_dsm.abs()),
            "{l_fs} − {l_dsm} vs {expected}"
        );
    }

    /// Sliced score matching and its variance-reduced form, averaged over
    /// all 2ᵈ Rademacher vectors or over the Gaussian's sigma points
    /// (both have mean vvᵀ = I exactly), equal the exact-trace loss for a
    /// nonlinear network.
    #[test]
    fn prop_sliced_losses_average_to_the_exact_trace_loss(
        seed in 0u64..1000, d in 1usize..5, x in prop::collection::vec(-2.0f64..2.0, 12),
    ) {
        let varmap = VarMap::new();
        let vb = deepgen_core::seeded_var_builder(&varmap, seed, DType::F64, &DEV);
        let net = ScoreNet::new(d, &[7, 5], false, vb).unwrap();
        let n = 3;
        let xt = Tensor::from_slice(&x[..n * d], (n, d), &DEV).unwrap();
        let esm = scalar(explicit_score_matching(&net, &xt).unwrap());
        let rademacher: Vec<f64> = (0..1usize << d)
            .flat_map(|bits| (0..d).map(move |j| if bits >> j & 1 == 1 { 1.0 } else { -1.0 }))
            .collect();
        let gaussian = sigma_points(&vec![0.0; d], &Mat::<f64>::identity(d, d)).flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for set in [rademacher, gaussian] {
            let m = set.len() / d;
            let v = Tensor::from_slice(&set, (1, m, d), &DEV).unwrap().broadcast_as((n, m, d)).unwrap().contiguous().unwrap();
            for vr in [false, true] {
                let ssm = scalar(sliced_score_matching(&net, &xt, &v, vr).unwrap());
                prop_assert!((ssm - esm).abs() < 1e-10 * (1.0 + esm.abs()), "vr {vr}: {ssm} vs {esm}");
            }
        }
    }
}

/// Central differences of `loss` in one entry of every variable against
/// the backward pass.
fn check_gradients(varmap: &VarMap, loss: impl Fn() -> Tensor) {
    let vars: Vec<Var> = varmap.all_vars();
    let grads = loss().backward().unwrap();
    let h = 1e-6;
    for var in &vars {
        let grad = grads
            .get(var)
            .expect("every variable has a gradient")
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let original = var.as_tensor().copy().unwrap();
        let flat = original.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let k = flat.len() / 2;
        let at = |delta: f64| {
            let mut p = flat.clone();
            p[k] += delta;
            var.set(&Tensor::from_vec(p, original.dims(), &DEV).unwrap()).unwrap();
            scalar(loss())
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        var.set(&original).unwrap();
        assert!(
            (fd - grad[k]).abs() < 1e-6 * (1.0 + fd.abs()),
            "{fd} vs {} ({:?})",
            grad[k],
            original.dims()
        );
    }
}

/// Each loss's gradient in the network's parameters equals finite
/// differences: the second derivatives through the trace terms are exact.
#[test]
fn every_loss_gradient_matches_finite_differences() {
    let mut rng = deepgen_core::rng_from_seed(5);
    let x = deepgen_core::rng::randn(&mut rng, (6, 3), &DEV)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let eps = deepgen_core::rng::randn(&mut rng, (6, 3), &DEV)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let v = deepgen_score::Projection::Gaussian
        .draw(&mut rng, 6, 2, 3, &DEV)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let net = |conditional: bool| {
        let varmap = VarMap::new();
        let vb = deepgen_core::seeded_var_builder(&varmap, 11, DType::F64, &DEV);
        let net = ScoreNet::new(3, &[8, 6], conditional, vb).unwrap();
        (varmap, net)
    };
    let (vars, plain) = net(false);
    check_gradients(&vars, || explicit_score_matching(&plain, &x).unwrap());
    check_gradients(&vars, || sliced_score_matching(&plain, &x, &v, false).unwrap());
    check_gradients(&vars, || sliced_score_matching(&plain, &x, &v, true).unwrap());
    check_gradients(&vars, || denoising_score_matching(&plain, &x, &eps, 0.5).unwrap());
    let (vars, conditional) = net(true);
    let levels = NoiseLevels::geometric(2.0, 0.1, 3).unwrap();
    let sigma = Tensor::from_vec(vec![2.0, 0.1, levels.as_slice()[1], 2.0, 0.1, 0.1], 6, &DEV).unwrap();
    check_gradients(&vars, || {
        multi_level_denoising_score_matching(&conditional, &x, &eps, &sigma).unwrap()
    });
}
