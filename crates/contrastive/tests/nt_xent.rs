//! NT-Xent against hand computations (SPEC §8): N = 1 gives 0, equal
//! similarities give log(2N − 1), invariance to rescaling and to permuting
//! the pairs, the gradient in the similarities, finite differences, the
//! seed's printed denominator, and the memory-bank form.

use candle::{DType, Device, Tensor, Var};
use deepgen_contrastive::{cosine_similarity_matrix, nt_xent, nt_xent_from_similarity, nt_xent_with_bank};
use deepgen_core::rng::{randn, rng_from_seed};
use proptest::prelude::*;

fn f64_rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap()
}

fn cosine(u: &[f64], v: &[f64]) -> f64 {
    let dot: f64 = u.iter().zip(v).map(|(a, b)| a * b).sum();
    let norm = |x: &[f64]| x.iter().map(|a| a * a).sum::<f64>().sqrt();
    dot / (norm(u) * norm(v))
}

/// SPEC §8 literally, in the seed's order: views `z_{2k−1} = z1_k`,
/// `z_{2k} = z2_k` (0-based: 2k and 2k + 1), `ℓ_{i,j}` with the denominator
/// over `k ≠ i`, `L = (1/2N) Σ_k [ℓ_{2k−1,2k} + ℓ_{2k,2k−1}]`.
fn reference(z1: &[Vec<f64>], z2: &[Vec<f64>], tau: f64) -> f64 {
    let n = z1.len();
    let z: Vec<&Vec<f64>> = (0..2 * n)
        .map(|i| if i % 2 == 0 { &z1[i / 2] } else { &z2[i / 2] })
        .collect();
    let ell = |i: usize, j: usize| {
        let numerator = (cosine(z[i], z[j]) / tau).exp();
        let denominator: f64 = (0..2 * n)
            .filter(|&k| k != i)
            .map(|k| (cosine(z[i], z[k]) / tau).exp())
            .sum();
        -(numerator / denominator).ln()
    };
    (0..n)
        .map(|k| ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k))
        .sum::<f64>()
        / (2 * n) as f64
}

/// The seed's printed ℓ: `exp(sim(z_i, z_j)/τ)` in every denominator term.
fn seed_printed(z1: &[Vec<f64>], z2: &[Vec<f64>], tau: f64) -> f64 {
    let n = z1.len();
    let ell = |u: &[f64], v: &[f64]| {
        let e = (cosine(u, v) / tau).exp();
        -(e / ((2 * n - 1) as f64 * e)).ln()
    };
    (0..n).map(|k| ell(&z1[k], &z2[k]) + ell(&z2[k], &z1[k])).sum::<f64>() / (2 * n) as f64
}

fn views(seed: u64, n: usize, d: usize) -> (Tensor, Tensor) {
    let mut rng = rng_from_seed(seed);
    let z1 = randn(&mut rng, (n, d), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let z2 = randn(&mut rng, (n, d), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    (z1, z2)
}

fn value(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn one_image_gives_zero() {
    let (z1, z2) = views(1, 1, 5);
    assert!(value(&nt_xent(&z1, &z2, 0.5).unwrap()).abs() < 1e-12);
}

#[test]
fn the_seeds_printed_denominator_gives_a_constant_not_the_loss() {
    let (z1, z2) = views(2, 6, 4);
    let (a, b) = (f64_rows(&z1), f64_rows(&z2));
    let printed = seed_printed(&a, &b, 0.5);
    assert!(
        (printed - 11f64.ln()).abs() < 1e-12,
        "log(2N − 1) = log 11, got {printed}"
    );
    let ours = value(&nt_xent(&z1, &z2, 0.5).unwrap());
    assert!((ours - reference(&a, &b, 0.5)).abs() < 1e-12);
    assert!((ours - printed).abs() > 0.05, "ours {ours}, printed {printed}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The loss equals SPEC §8's formula evaluated in f64 in the seed's
    /// interleaved order.
    #[test]
    fn prop_nt_xent_matches_the_formula(seed in 0u64..10_000, n in 1usize..9, d in 1usize..7, tau in 0.05f64..2.0) {
        let (z1, z2) = views(seed, n, d);
        let ours = value(&nt_xent(&z1, &z2, tau).unwrap());
        let expected = reference(&f64_rows(&z1), &f64_rows(&z2), tau);
        prop_assert!((ours - expected).abs() < 1e-9 * expected.abs().max(1.0), "{ours} vs {expected}");
    }

    /// All 2N views equal: every similarity is 1 and L = log(2N − 1).
    #[test]
    fn prop_equal_similarities_give_log_2n_minus_1(n in 1usize..12, d in 1usize..6, tau in 0.05f64..3.0, seed in 0u64..1000) {
        let row = randn(&mut rng_from_seed(seed), (1, d), &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
        let z = row.broadcast_as((n, d)).unwrap().contiguous().unwrap();
        let loss = value(&nt_xent(&z, &z, tau).unwrap());
        let expected = ((2 * n - 1) as f64).ln();
        prop_assert!((loss - expected).abs() < 1e-9, "{loss} vs {expected}");
    }

    /// Rescaling each embedding by its own positive factor and permuting
    /// the pairs (the same permutation of z1 and z2) leave L unchanged.
    #[test]
    fn prop_invariant_to_rescaling_and_permuting_pairs(seed in 0u64..10_000, n in 2usize..9, d in 1usize..6, tau in 0.1f64..2.0) {
        let (z1, z2) = views(seed, n, d);
        let base = value(&nt_xent(&z1, &z2, tau).unwrap());
        let mut rng = rng_from_seed(seed + 1);
        let scales = |rng: &mut deepgen_core::StdRng| {
            let s: Vec<f64> = (0..n).map(|_| 0.01 + 100.0 * rand::Rng::random::<f64>(rng)).collect();
            Tensor::from_vec(s, (n, 1), &Device::Cpu).unwrap()
        };
        let (s1, s2) = (scales(&mut rng), scales(&mut rng));
        let scaled = value(&nt_xent(&z1.broadcast_mul(&s1).unwrap(), &z2.broadcast_mul(&s2).unwrap(), tau).unwrap());
        prop_assert!((scaled - base).abs() < 1e-9, "{scaled} vs {base}");
        let perm: Vec<u32> = deepgen_core::rng::permutation(&mut rng, n).into_iter().map(|i| i as u32).collect();
        let perm = Tensor::from_vec(perm, n, &Device::Cpu).unwrap();
        let permuted = value(&nt_xent(&z1.index_select(&perm, 0).unwrap(), &z2.index_select(&perm, 0).unwrap(), tau).unwrap());
        prop_assert!((permuted - base).abs() < 1e-9, "{permuted} vs {base}");
    }

    /// `∂L/∂s_ik = (p_ik − 1[k = j(i)]) / (2N τ)` with `p_i` the softmax of
    /// `s_ik/τ` over `k ≠ i` (so `∂ℓ_{i,j}/∂s_ik = (p_ik − 1[k = j])/τ`),
    /// and 0 on the diagonal.
    #[test]
    fn prop_gradient_in_the_similarities(seed in 0u64..10_000, n in 1usize..6, tau in 0.1f64..2.0) {
        let m = 2 * n;
        let s = randn(&mut rng_from_seed(seed), (m, m), &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap().tanh().unwrap();
        let var = Var::from_tensor(&s).unwrap();
        let grads = nt_xent_from_similarity(var.as_tensor(), tau).unwrap().backward().unwrap();
        let g = f64_rows(grads.get(&var).unwrap());
        let s = f64_rows(&s);
        for i in 0..m {
            let j = (i + n) % m;
            let z: f64 = (0..m).filter(|&k| k != i).map(|k| (s[i][k] / tau).exp()).sum();
            for k in 0..m {
                let expected = if k == i {
                    0.0
                } else {
                    let p = (s[i][k] / tau).exp() / z;
                    (p - if k == j { 1.0 } else { 0.0 }) / (m as f64 * tau)
                };
                prop_assert!((g[i][k] - expected).abs() < 1e-10, "({i}, {k}): {} vs {expected}", g[i][k]);
            }
        }
    }
}

/// Candle's gradient of L in the embeddings against central differences, in f64.
#[test]
fn gradient_matches_finite_differences() {
    let (n, d, tau) = (4, 3, 0.3);
    let (z1, z2) = views(7, n, d);
    let (v1, v2) = (Var::from_tensor(&z1).unwrap(), Var::from_tensor(&z2).unwrap());
    let grads = nt_xent(v1.as_tensor(), v2.as_tensor(), tau)
        .unwrap()
        .backward()
        .unwrap();
    let (a, b) = (f64_rows(&z1), f64_rows(&z2));
    for (which, var) in [(0, &v1), (1, &v2)] {
        let g = f64_rows(grads.get(var).unwrap());
        for r in 0..n {
            for c in 0..d {
                let h = 1e-6;
                let shifted = |delta: f64| {
                    let (mut p, mut q) = (a.clone(), b.clone());
                    if which == 0 {
                        p[r][c] += delta
                    } else {
                        q[r][c] += delta
                    }
                    reference(&p, &q, tau)
                };
                let numeric = (shifted(h) - shifted(-h)) / (2.0 * h);
                assert!(
                    (g[r][c] - numeric).abs() < 1e-7,
                    "view {which} ({r}, {c}): {} vs {numeric}",
                    g[r][c]
                );
            }
        }
    }
}

/// The memory-bank form against its formula: every anchor's denominator
/// also sums over the bank's rows; an empty bank is plain NT-Xent.
#[test]
fn memory_bank_loss_matches_its_formula() {
    let (n, d, tau) = (3, 4, 0.2);
    let (z1, z2) = views(9, n, d);
    let bank = randn(&mut rng_from_seed(10), (5, d), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let ours = value(&nt_xent_with_bank(&z1, &z2, &bank, tau).unwrap());
    let (a, b, m) = (f64_rows(&z1), f64_rows(&z2), f64_rows(&bank));
    let z: Vec<&Vec<f64>> = a.iter().chain(&b).collect();
    let expected: f64 = (0..2 * n)
        .map(|i| {
            let j = (i + n) % (2 * n);
            let positive = (cosine(z[i], z[j]) / tau).exp();
            let views: f64 = (0..2 * n)
                .filter(|&k| k != i)
                .map(|k| (cosine(z[i], z[k]) / tau).exp())
                .sum();
            let negatives: f64 = m.iter().map(|row| (cosine(z[i], row) / tau).exp()).sum();
            -(positive / (views + negatives)).ln()
        })
        .sum::<f64>()
        / (2 * n) as f64;
    assert!((ours - expected).abs() < 1e-12, "{ours} vs {expected}");
    let empty = Tensor::zeros((0, d), DType::F64, &Device::Cpu).unwrap();
    let plain = value(&nt_xent(&z1, &z2, tau).unwrap());
    assert!((value(&nt_xent_with_bank(&z1, &z2, &empty, tau).unwrap()) - plain).abs() < 1e-12);
}

#[test]
fn cosine_similarities_are_those_of_the_rows() {
    let (z, _) = views(11, 5, 3);
    let sim = f64_rows(&cosine_similarity_matrix(&z).unwrap());
    let rows = f64_rows(&z);
    for i in 0..5 {
        for k in 0..5 {
            assert!((sim[i][k] - cosine(&rows[i], &rows[k])).abs() < 1e-12);
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let (z1, z2) = views(12, 3, 2);
    for tau in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = nt_xent(&z1, &z2, tau).unwrap_err().to_string();
        assert!(err.contains("temperature"), "{err}");
    }
    let err = nt_xent(&z1, &z2.narrow(0, 0, 2).unwrap(), 0.5).unwrap_err().to_string();
    assert!(err.contains("second views"), "{err}");
    let empty = Tensor::zeros((0, 2), DType::F64, &Device::Cpu).unwrap();
    assert!(nt_xent(&empty, &empty, 0.5).is_err());
    let odd = Tensor::zeros((3, 3), DType::F64, &Device::Cpu).unwrap();
    assert!(nt_xent_from_similarity(&odd, 0.5).is_err());
    let bank = Tensor::zeros((4, 3), DType::F64, &Device::Cpu).unwrap();
    let err = nt_xent_with_bank(&z1, &z2, &bank, 0.5).unwrap_err().to_string();
    assert!(err.contains("memory bank"), "{err}");
}
