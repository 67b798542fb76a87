//! Divergences between discrete distributions given as `&[f64]` (in nats).
//!
//! # KL divergence (seed 001)
//!
//! `KL(P‖Q) = Σ_i P_i log(P_i / Q_i)`, with the conventions `0 log(0/q) = 0`
//! and `p log(p/0) = +∞` for `p > 0`. It is `≥ 0` with equality iff `P = Q`
//! (Gibbs' inequality), and not symmetric.
//!
//! # f-divergences
//!
//! For convex `f` with `f(1) = 0`, `D_f(P‖Q) = Σ_i Q_i f(P_i / Q_i)`; where
//! `Q_i = 0` the term is its limit `P_i f*(0)` with
//! `f*(0) = lim_{t→∞} f(t)/t` (the slope of `f` at infinity), and `0` when
//! also `P_i = 0`. Jensen's inequality gives `D_f ≥ f(1) = 0`. The variants
//! of [`FDivergence`] and their generators:
//!
//! | variant | `f(t)` | `D_f(P‖Q)` | `f*(0)` |
//! |---|---|---|---|
//! | `Kl` | `t ln t` | `Σ p ln(p/q)` | `+∞` |
//! | `ReverseKl` | `−ln t` | `Σ q ln(q/p)` = KL(Q‖P) | `0` |
//! | `TotalVariation` | `½ |t − 1|` | `½ Σ |p − q|` ∈ [0, 1] | `½` |
//! | `JensenShannon` | `½ [t ln(2t/(1+t)) + ln(2/(1+t))]` | `½ KL(P‖M) + ½ KL(Q‖M)`, `M = (P+Q)/2`, ∈ [0, ln 2] | `½ ln 2` |
//! | `TriangularDiscrimination` | `(t − 1)² / (t + 1)` | `Σ (p − q)² / (p + q)` ∈ [0, 2] | `1` |
//! | `ChiSquared` | `(t − 1)²` | `Σ (p − q)² / q` (Pearson) | `+∞` |
//! | `SquaredHellinger` | `(√t − 1)²` | `Σ (√p − √q)²` ∈ [0, 2] (no ½) | `1` |
//!
//! # The GAN link (seed 003, question 3)
//!
//! A discriminator `D` trained with a margin loss `l` on `P_d` (label +1) and
//! `P_g` (label −1) reaches the risk `R_l = −½ I_f(P_d‖P_g)` with
//! `f(t) = −inf_α [l(α) t + l(−α)]`. The three losses of the seed give
//! generators that differ from the table's by an affine term `a(t − 1) + c`,
//! which shifts the divergence by the constant `c`:
//!
//! - 0-1 loss `l(α) = 1[α ≤ 0]`: `f(t) = −min(t, 1) = ½|t − 1| − ½(t + 1)`,
//!   so `I_f = TV − 1` and `R = ½(1 − TV)`;
//! - square loss `l(α) = (1 − α)²`: `f(t) = −4t/(t + 1) = (t − 1)²/(t + 1) − (t + 1)`,
//!   so `I_f = Δ − 2` (triangular discrimination) and `R = 1 − ½Δ`;
//! - logistic loss `l(α) = log(1 + e^{−α})`: `f(t) = t ln(t/(1+t)) − ln(1+t)
//!   = 2 f_JS(t) − (t + 1) ln 2`, so `I_f = 2 JS − 2 ln 2` and `R = ln 2 − JS`.
//!
//! [`f_divergence`] evaluates any such generator; the model crate for GANs
//! builds `f` from a loss.

use crate::error::{Error, Result};

/// How far `Σ p_i` may be from 1 (relative) before the input is rejected.
pub const SUM_TOLERANCE: f64 = 1e-9;

/// Checks that `p` is a probability vector: non-empty, entries finite and
/// `≥ 0`, sum within [`SUM_TOLERANCE`] of 1.
fn validate(name: &'static str, p: &[f64]) -> Result<()> {
    let not_a_distribution = |reason: String| Error::NotADistribution { name, reason };
    if p.is_empty() {
        return Err(not_a_distribution("it is empty".to_string()));
    }
    if let Some((i, &v)) = p.iter().enumerate().find(|&(_, &v)| !v.is_finite() || v < 0.0) {
        return Err(not_a_distribution(format!(
            "entry {i} is {v}, expected a finite value >= 0"
        )));
    }
    let sum: f64 = p.iter().sum();
    if (sum - 1.0).abs() > SUM_TOLERANCE {
        return Err(not_a_distribution(format!("entries sum to {sum}, expected 1")));
    }
    Ok(())
}

fn validate_pair(op: &'static str, p: &[f64], q: &[f64]) -> Result<()> {
    if p.len() != q.len() {
        return Err(Error::LengthMismatch {
            op,
            left: p.len(),
            right: q.len(),
        });
    }
    validate("p", p)?;
    validate("q", q)
}

/// `KL(P‖Q) = Σ_i p_i ln(p_i / q_i)` in nats.
///
/// `0 ln(0/q) = 0`; `+∞` when some `p_i > 0` has `q_i = 0`.
///
/// ```
/// use deepgen_numerics::kl_divergence;
/// // KL(Bern(½) ‖ Bern(¼)) = ½ ln 2 + ½ ln(2/3).
/// let kl = kl_divergence(&[0.5, 0.5], &[0.25, 0.75])?;
/// assert!((kl - (0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln())).abs() < 1e-15);
/// assert_eq!(kl_divergence(&[0.5, 0.5], &[1.0, 0.0])?, f64::INFINITY);
/// # Ok::<(), deepgen_numerics::Error>(())
/// ```
///
/// # Errors
/// [`Error::LengthMismatch`]; [`Error::NotADistribution`] for an empty
/// slice, a negative, infinite or NaN entry, or a sum off 1 by more than
/// [`SUM_TOLERANCE`].
pub fn kl_divergence(p: &[f64], q: &[f64]) -> Result<f64> {
    validate_pair("kl_divergence", p, q)?;
    Ok(p.iter().zip(q).map(|(&pi, &qi)| kl_term(pi, qi)).sum())
}

/// Shannon entropy `H(P) = −Σ_i p_i ln p_i` in nats (`0 ln 0 = 0`).
///
/// # Errors
/// [`Error::NotADistribution`] as for [`kl_divergence`].
pub fn entropy(p: &[f64]) -> Result<f64> {
    validate("p", p)?;
    Ok(-p
        .iter()
        .map(|&pi| if pi > 0.0 { pi * pi.ln() } else { 0.0 })
        .sum::<f64>())
}

/// `p ln(p/q)` with its limits; `ln p − ln q` avoids overflow of `p/q`.
fn kl_term(p: f64, q: f64) -> f64 {
    if p == 0.0 {
        0.0
    } else if q == 0.0 {
        f64::INFINITY
    } else {
        p * (p.ln() - q.ln())
    }
}

/// `D_f(P‖Q) = Σ_i q_i f(p_i / q_i)` for a convex generator `f` with `f(1) = 0`.
///
/// `f_limit_slope = lim_{t→∞} f(t)/t` gives the terms with `q_i = 0`:
/// `p_i · f_limit_slope` (and 0 when `p_i = 0` too). `f` is evaluated at
/// `t = p_i / q_i ∈ [0, ∞)`, including `t = 0` where it must have a value
/// (possibly `+∞`).
///
/// # Errors
/// As [`kl_divergence`].
pub fn f_divergence(p: &[f64], q: &[f64], f: impl Fn(f64) -> f64, f_limit_slope: f64) -> Result<f64> {
    validate_pair("f_divergence", p, q)?;
    Ok(p.iter()
        .zip(q)
        .map(|(&pi, &qi)| {
            if qi > 0.0 {
                qi * f(pi / qi)
            } else if pi > 0.0 {
                pi * f_limit_slope
            } else {
                0.0
            }
        })
        .sum())
}

/// The f-divergences with a name; see the [module docs](self) for the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FDivergence {
    /// `KL(P‖Q)`, `f(t) = t ln t`.
    Kl,
    /// `KL(Q‖P)`, `f(t) = −ln t`.
    ReverseKl,
    /// `½ Σ |p − q|`, `f(t) = ½ |t − 1|`.
    TotalVariation,
    /// `½ KL(P‖M) + ½ KL(Q‖M)`, `M = (P + Q)/2`, `f(t) = ½ [t ln(2t/(1+t)) + ln(2/(1+t))]`.
    JensenShannon,
    /// `Σ (p − q)² / (p + q)`, `f(t) = (t − 1)² / (t + 1)`.
    TriangularDiscrimination,
    /// Pearson `Σ (p − q)² / q`, `f(t) = (t − 1)²`.
    ChiSquared,
    /// `Σ (√p − √q)²` (without the ½ some authors use), `f(t) = (√t − 1)²`.
    SquaredHellinger,
}

impl FDivergence {
    /// Every variant, for iteration.
    pub const ALL: [FDivergence; 7] = [
        FDivergence::Kl,
        FDivergence::ReverseKl,
        FDivergence::TotalVariation,
        FDivergence::JensenShannon,
        FDivergence::TriangularDiscrimination,
        FDivergence::ChiSquared,
        FDivergence::SquaredHellinger,
    ];

    /// The generator `f(t)` for `t ≥ 0`: convex, `f(1) = 0`; `f(0)` is its
    /// limit (`+∞` for reverse KL).
    pub fn generator(self, t: f64) -> f64 {
        match self {
            FDivergence::Kl => xlogy(t, t),
            FDivergence::ReverseKl => -t.ln(),
            FDivergence::TotalVariation => 0.5 * (t - 1.0).abs(),
            FDivergence::JensenShannon => 0.5 * (xlogy(t, 2.0 * t / (1.0 + t)) + (2.0 / (1.0 + t)).ln()),
            FDivergence::TriangularDiscrimination => (t - 1.0).powi(2) / (t + 1.0),
            FDivergence::ChiSquared => (t - 1.0).powi(2),
            FDivergence::SquaredHellinger => (t.sqrt() - 1.0).powi(2),
        }
    }

    /// `f*(0) = lim_{t→∞} f(t)/t`: the weight of mass where `Q = 0`.
    pub fn limit_slope(self) -> f64 {
        match self {
            FDivergence::Kl | FDivergence::ChiSquared => f64::INFINITY,
            FDivergence::ReverseKl => 0.0,
            FDivergence::TotalVariation => 0.5,
            FDivergence::JensenShannon => 0.5 * std::f64::consts::LN_2,
            FDivergence::TriangularDiscrimination | FDivergence::SquaredHellinger => 1.0,
        }
    }

    /// `D_f(P‖Q)` in nats, evaluated term by term in the closed form of the
    /// table (`q f(p/q)` simplified), so that no `p/q` overflows.
    ///
    /// # Errors
    /// As [`kl_divergence`].
    pub fn divergence(self, p: &[f64], q: &[f64]) -> Result<f64> {
        validate_pair("FDivergence::divergence", p, q)?;
        Ok(p.iter().zip(q).map(|(&pi, &qi)| self.term(pi, qi)).sum())
    }

    /// `q f(p/q)` with its limits at `p = 0` and `q = 0`.
    fn term(self, p: f64, q: f64) -> f64 {
        match self {
            FDivergence::Kl => kl_term(p, q),
            FDivergence::ReverseKl => kl_term(q, p),
            FDivergence::TotalVariation => 0.5 * (p - q).abs(),
            FDivergence::JensenShannon => {
                let m = 0.5 * (p + q);
                0.5 * (kl_term(p, m) + kl_term(q, m))
            }
            FDivergence::TriangularDiscrimination => {
                let s = p + q;
                if s > 0.0 { (p - q).powi(2) / s } else { 0.0 }
            }
            FDivergence::ChiSquared => {
                if q > 0.0 {
                    (p - q).powi(2) / q
                } else if p > 0.0 {
                    f64::INFINITY
                } else {
                    0.0
                }
            }
            FDivergence::SquaredHellinger => (p.sqrt() - q.sqrt()).powi(2),
        }
    }
}

/// `x ln y` with `0 ln y = 0` (also for `y = 0`).
fn xlogy(x: f64, y: f64) -> f64 {
    if x == 0.0 { 0.0 } else { x * y.ln() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-12;

    /// Equal within [`TOL`], or the same infinity.
    fn same(a: f64, b: f64) -> bool {
        a == b || (a - b).abs() < TOL
    }

    #[test]
    fn kl_hand_computed() {
        // KL([½, ½] ‖ [¼, ¾]) = ½ ln 2 + ½ ln(2/3).
        let expected = 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        assert!((kl_divergence(&[0.5, 0.5], &[0.25, 0.75]).unwrap() - expected).abs() < TOL);
    }

    #[test]
    fn kl_zero_log_zero_is_zero() {
        // p_0 = 0 contributes nothing even where q_0 = 0.
        let kl = kl_divergence(&[0.0, 1.0], &[0.0, 1.0]).unwrap();
        assert_eq!(kl, 0.0);
        let kl = kl_divergence(&[0.0, 1.0], &[0.5, 0.5]).unwrap();
        assert!((kl - 2f64.ln()).abs() < TOL);
    }

    #[test]
    fn kl_infinite_where_q_vanishes() {
        assert_eq!(kl_divergence(&[0.5, 0.5], &[1.0, 0.0]).unwrap(), f64::INFINITY);
    }

    #[test]
    fn kl_is_asymmetric() {
        let (p, q) = ([0.9, 0.1], [0.5, 0.5]);
        let forward = kl_divergence(&p, &q).unwrap();
        let backward = kl_divergence(&q, &p).unwrap();
        // 0.9 ln 1.8 + 0.1 ln 0.2 = 0.3681…; 0.5 ln(5/9) + 0.5 ln 5 = 0.5108…
        assert!((forward - (0.9 * 1.8f64.ln() + 0.1 * 0.2f64.ln())).abs() < TOL);
        assert!((backward - (0.5 * (5.0f64 / 9.0).ln() + 0.5 * 5f64.ln())).abs() < TOL);
        assert!((forward - backward).abs() > 0.1);
    }

    #[test]
    fn kl_zero_iff_equal() {
        let p = [0.2, 0.3, 0.5];
        assert_eq!(kl_divergence(&p, &p).unwrap(), 0.0);
        assert!(kl_divergence(&p, &[0.2, 0.31, 0.49]).unwrap() > 0.0);
    }

    #[test]
    fn kl_tiny_q_does_not_overflow() {
        // p/q = 1/1e-320 overflows f64, ln p − ln q does not.
        let q = [1e-320, 1.0 - 1e-320];
        let kl = kl_divergence(&[1.0, 0.0], &q).unwrap();
        assert!((kl - 320.0 * 10f64.ln()).abs() < 2.0, "{kl}");
        assert!(kl.is_finite());
    }

    #[test]
    fn invalid_inputs_are_clear_errors() {
        let cases: [(&[f64], &[f64], &str); 6] = [
            (&[-0.1, 1.1], &[0.5, 0.5], "entry 0 is -0.1"),
            (&[f64::NAN, 1.0], &[0.5, 0.5], "entry 0 is NaN"),
            (&[0.5, 0.5], &[0.5, f64::INFINITY], "entry 1 is inf"),
            (&[0.5, 0.6], &[0.5, 0.5], "sum to 1.1"),
            (&[], &[], "empty"),
            (&[0.5, 0.5], &[0.5, 0.5 + 1e-8], "sum to"),
        ];
        for (p, q, fragment) in cases {
            let err = kl_divergence(p, q).unwrap_err();
            assert!(matches!(err, Error::NotADistribution { .. }), "{err}");
            assert!(err.to_string().contains(fragment), "{err} should mention {fragment}");
        }
        let err = kl_divergence(&[1.0], &[0.5, 0.5]).unwrap_err();
        assert!(matches!(err, Error::LengthMismatch { left: 1, right: 2, .. }), "{err}");
        // Within the tolerance is accepted.
        assert!(kl_divergence(&[0.5, 0.5 + 1e-12], &[0.5, 0.5]).is_ok());
        for kind in FDivergence::ALL {
            assert!(kind.divergence(&[0.5, -0.5], &[0.5, 0.5]).is_err());
        }
        assert!(f_divergence(&[1.0], &[2.0], |t| t, 1.0).is_err());
    }

    #[test]
    fn entropy_hand_computed() {
        assert!((entropy(&[0.25; 4]).unwrap() - 4f64.ln()).abs() < TOL);
        assert_eq!(entropy(&[1.0, 0.0]).unwrap(), 0.0);
    }

    /// Direct formulas of the module table, written independently of the generators.
    fn direct(kind: FDivergence, p: &[f64], q: &[f64]) -> f64 {
        let pairs = p.iter().zip(q);
        match kind {
            FDivergence::Kl => kl_divergence(p, q).unwrap(),
            FDivergence::ReverseKl => kl_divergence(q, p).unwrap(),
            FDivergence::TotalVariation => 0.5 * pairs.map(|(a, b)| (a - b).abs()).sum::<f64>(),
            FDivergence::JensenShannon => {
                let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| 0.5 * (a + b)).collect();
                0.5 * kl_divergence(p, &m).unwrap() + 0.5 * kl_divergence(q, &m).unwrap()
            }
            FDivergence::TriangularDiscrimination => pairs
                .filter(|(a, b)| *a + *b > 0.0)
                .map(|(a, b)| (a - b).powi(2) / (a + b))
                .sum(),
            // Outcomes outside both supports contribute 0.
            FDivergence::ChiSquared => pairs
                .filter(|(a, b)| *a + *b > 0.0)
                .map(|(a, b)| (a - b).powi(2) / b)
                .sum(),
            FDivergence::SquaredHellinger => pairs.map(|(a, b)| (a.sqrt() - b.sqrt()).powi(2)).sum(),
        }
    }

    #[test]
    fn each_divergence_equals_direct_formula_and_generator_sum() {
        let pairs: [(&[f64], &[f64]); 4] = [
            (&[0.1, 0.2, 0.7], &[0.3, 0.3, 0.4]),
            (&[0.5, 0.5], &[0.9, 0.1]),
            (&[0.0, 0.25, 0.75], &[0.2, 0.2, 0.6]),
            (&[0.6, 0.4, 0.0], &[0.6, 0.4, 0.0]),
        ];
        for kind in FDivergence::ALL {
            for (p, q) in pairs {
                let ours = kind.divergence(p, q).unwrap();
                let direct = direct(kind, p, q);
                let generic = f_divergence(p, q, |t| kind.generator(t), kind.limit_slope()).unwrap();
                assert!(same(ours, direct), "{kind:?}: {ours} vs direct {direct}");
                assert!(same(ours, generic), "{kind:?}: {ours} vs generator {generic}");
                assert!(ours >= 0.0);
            }
        }
    }

    #[test]
    fn disjoint_supports_use_the_limit_slope() {
        // P = δ_0, Q = δ_1: D_f = f(0)·1 + f*(0)·1.
        let (p, q) = ([1.0, 0.0], [0.0, 1.0]);
        let ln2 = std::f64::consts::LN_2;
        let expected = [
            (FDivergence::Kl, f64::INFINITY),
            (FDivergence::ReverseKl, f64::INFINITY),
            (FDivergence::TotalVariation, 1.0),
            (FDivergence::JensenShannon, ln2),
            (FDivergence::TriangularDiscrimination, 2.0),
            (FDivergence::ChiSquared, f64::INFINITY),
            (FDivergence::SquaredHellinger, 2.0),
        ];
        for (kind, value) in expected {
            let ours = kind.divergence(&p, &q).unwrap();
            let generic = f_divergence(&p, &q, |t| kind.generator(t), kind.limit_slope()).unwrap();
            assert!(same(ours, value), "{kind:?}: {ours} vs {value}");
            assert!(same(generic, value), "{kind:?}: generator {generic} vs {value}");
        }
    }

    #[test]
    fn generators_are_convex_and_vanish_at_one() {
        let ts: Vec<f64> = (1..400).map(|i| i as f64 * 0.025).collect();
        for kind in FDivergence::ALL {
            assert!(
                kind.generator(1.0).abs() < 1e-15,
                "{kind:?}: f(1) = {}",
                kind.generator(1.0)
            );
            // Midpoint convexity on a grid: f((a+b)/2) ≤ (f(a) + f(b))/2.
            for w in ts.windows(3) {
                let (a, m, b) = (w[0], w[1], w[2]);
                let (fa, fm, fb) = (kind.generator(a), kind.generator(m), kind.generator(b));
                assert!(fm <= 0.5 * (fa + fb) + 1e-12, "{kind:?} not convex at {m}");
            }
            // f(t)/t approaches the limit slope.
            let slope = kind.limit_slope();
            let t = 1e12;
            let ratio = kind.generator(t) / t;
            if slope.is_finite() {
                assert!((ratio - slope).abs() < 1e-3, "{kind:?}: f(t)/t = {ratio} vs {slope}");
            } else {
                assert!(ratio > 20.0, "{kind:?}: f(t)/t = {ratio} should diverge");
            }
        }
    }

    #[test]
    fn gan_generators_are_affine_shifts() {
        // Seed 003: square loss → f(t) = −4t/(t+1) = Δ's generator − (t + 1): I_f = Δ − 2.
        let (p, q) = ([0.1, 0.6, 0.3], [0.4, 0.4, 0.2]);
        let square = f_divergence(&p, &q, |t| -4.0 * t / (t + 1.0), 0.0).unwrap();
        let delta = FDivergence::TriangularDiscrimination.divergence(&p, &q).unwrap();
        assert!((square - (delta - 2.0)).abs() < TOL);
        // Logistic loss → f(t) = t ln(t/(1+t)) − ln(1+t): I_f = 2 JS − 2 ln 2.
        let logistic = f_divergence(&p, &q, |t| xlogy(t, t / (1.0 + t)) - t.ln_1p(), 0.0).unwrap();
        let js = FDivergence::JensenShannon.divergence(&p, &q).unwrap();
        assert!((logistic - (2.0 * js - 2.0 * std::f64::consts::LN_2)).abs() < TOL);
        // 0-1 loss → f(t) = −min(t, 1): I_f = TV − 1.
        let zero_one = f_divergence(&p, &q, |t| -t.min(1.0), 0.0).unwrap();
        let tv = FDivergence::TotalVariation.divergence(&p, &q).unwrap();
        assert!((zero_one - (tv - 1.0)).abs() < TOL);
    }
}
