//! The classification view of a GAN (seed 003, question 3; SPEC §5): the
//! best discriminator under a margin loss reaches minus half an f-divergence
//! between the data and the generator.
//!
//! Samples carry the label `y = +1` when drawn from the data `P_d` and `−1`
//! when drawn from the generator `P_g`, each with probability ½, so
//! `P = ½P_d + ½P_g`. A discriminator returns a margin `α = D(x) ∈ ℝ`
//! (positive reads "real"); a margin loss `l ≥ 0` gives the risk
//!
//! `R_l(D) = ½ Σ_x [l(D(x)) p_d(x) + l(−D(x)) p_g(x)]`.
//!
//! Minimising each term over `α` with `t = p_d/p_g`,
//! `inf_α [l(α) p_d + l(−α) p_g] = p_g inf_α [l(α) t + l(−α)] = −p_g f(t)` with
//! `f(t) = −inf_α [l(α) t + l(−α)]`, so `min_D R_l(D) = −½ I_f(P_d‖P_g)`,
//! `I_f = Σ p_g f(p_d/p_g)`. As a supremum of the affine maps
//! `t ↦ −l(α) t − l(−α)`, whose slopes `−l(α)` are `≤ 0`, `f` is convex and
//! non-increasing. The four losses of [`MarginLoss`]:
//!
//! | loss | `l(α)` | `D*` | `f(t)` | `f(1)` | `min R_l` |
//! |---|---|---|---|---|---|
//! | 0-1 | `1[α ≤ 0]` | `sign(p_d − p_g)` | `−min(t, 1)` | `−1` | `½ Σ min(p_d, p_g) = ½(1 − TV)` |
//! | square | `(1 − α)²` | `(t − 1)/(t + 1)` | `−4t/(t + 1)` | `−2` | `1 − ½Δ` |
//! | logistic | `ln(1 + e^{−α})` | `ln t` | `t ln t − (t + 1) ln(t + 1)` | `−2 ln 2` | `ln 2 − JS` |
//! | hinge | `max(0, 1 − α)` | `sign(p_d − p_g)` | `−2 min(t, 1)` | `−2` | `Σ min(p_d, p_g) = 1 − TV` |
//!
//! with `TV = ½ Σ |p_d − p_g|`, `Δ = Σ (p_d − p_g)²/(p_d + p_g)` (triangular
//! discrimination) and `JS = ½ KL(P_d‖M) + ½ KL(P_g‖M)`, `M = ½(P_d + P_g)`.
//! Because `f(1) ≠ 0`, `I_f` is a divergence only up to an affine change of
//! `f` (`I_f = TV − 1`, `Δ − 2`, `2 JS − 2 ln 2`, `2 TV − 2`); see
//! [`deepgen_numerics::divergence`]. The 0-1 and hinge generators are flat
//! for `t ≥ 1`, and hinge gives twice the 0-1 generator: both lead to total
//! variation (Nguyen, Wainwright & Jordan, "On surrogate loss functions and
//! f-divergences", Ann. Statist. 2009).
//!
//! Where `p_g = 0` the term of `I_f` is `p_d · lim_{t→∞} f(t)/t`, which is 0
//! for all four losses; every term is evaluated in the homogeneous form
//! [`MarginLoss::perspective`] `= p_g f(p_d/p_g)`, so no ratio overflows.
//!
//! **Minimax cross-check.** With `D = sigmoid(a)`, Goodfellow's value
//! `V(D) = E_d ln D + E_g ln(1 − D)` equals `−2 R_log(a)`; its maximiser is
//! `D = p_d/(p_d + p_g)`, where `V = −ln 4 + 2 JS` ([`minimax_value`]).
//!
//! **Numeric `f`.** [`numeric_pointwise_minimum`] minimises
//! `l(α) p_d + l(−α) p_g` for any margin loss, convex or not: a grid of
//! [`NUMERIC_GRID_POINTS`] points on a symmetric bracket, then golden-section
//! search between the best grid point's neighbours (see its docs for the
//! bracket and the accuracy).
//!
//! **Where the seed is wrong** (SPEC §10): it prints the 0-1 optimum as
//! `sign(p_g − p_d)` (reversed: that `D` errs on the larger class and reaches
//! `½(1 + TV)`), reads the logistic optimum as `log(p_d/p_d)` (it is
//! `log(p_d/p_g)`), leaves its `f` blank, and writes the square-loss risk as
//! `R = 1 − I_f` (it is `−½ I_f`).

use deepgen_numerics::divergence::SUM_TOLERANCE;

use crate::error::{Error, Result};

/// Number of grid points of [`numeric_pointwise_minimum`] on its bracket
/// (odd, so that `α = 0` is one of them).
pub const NUMERIC_GRID_POINTS: usize = 4097;

/// Half-width of the bracket of [`numeric_pointwise_minimum`] when
/// `ln(p_d/p_g)` is 0 or infinite; it grows by `2 |ln(p_d/p_g)|` otherwise.
/// At `α = ±64` the logistic loss is `ln(1 + e^{−64}) ≈ 1.6·10⁻²⁸`, so an
/// infimum at infinity is missed by less than that.
pub const NUMERIC_BRACKET: f64 = 64.0;

/// Golden-section search stops when its interval is shorter than this times
/// `1 + |α|`.
const GOLDEN_REL_TOL: f64 = 1e-13;

/// Upper bound on golden-section iterations (each shrinks the interval by
/// 0.618; about 60 reach [`GOLDEN_REL_TOL`] from a grid cell).
const GOLDEN_MAX_ITERATIONS: usize = 200;

/// `(√5 − 1)/2`, the golden-section shrink factor.
const INV_PHI: f64 = 0.618_033_988_749_894_8;

/// A margin loss `l(α)` of a discriminator that outputs `α ∈ ℝ` for the
/// label `+1` (real); the label `−1` (generated) pays `l(−α)`. See the
/// [module docs](self) for the table of optima and generators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MarginLoss {
    /// The 0-1 loss `1[α ≤ 0]` (a margin of exactly 0 counts as an error).
    ZeroOne,
    /// The square loss `(1 − α)²` (least-squares GAN with targets ±1).
    Square,
    /// The logistic loss `ln(1 + e^{−α})` (the minimax GAN on logits).
    Logistic,
    /// The hinge loss `max(0, 1 − α)`.
    Hinge,
}

/// The result of [`numeric_pointwise_minimum`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PointwiseMinimum {
    /// The best margin found.
    pub alpha: f64,
    /// The objective `l(α) p_d + l(−α) p_g` there.
    pub value: f64,
}

impl MarginLoss {
    /// Every variant, for iteration.
    pub const ALL: [MarginLoss; 4] = [
        MarginLoss::ZeroOne,
        MarginLoss::Square,
        MarginLoss::Logistic,
        MarginLoss::Hinge,
    ];

    /// `l(α)`; `α = ±∞` give the limits (`+∞` for the square loss at both,
    /// for logistic and hinge at `−∞`), NaN gives NaN.
    pub fn value(self, alpha: f64) -> f64 {
        if alpha.is_nan() {
            return f64::NAN;
        }
        match self {
            MarginLoss::ZeroOne => {
                if alpha <= 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            MarginLoss::Square => (1.0 - alpha).powi(2),
            MarginLoss::Logistic => softplus(-alpha),
            MarginLoss::Hinge => (1.0 - alpha).max(0.0),
        }
    }

    /// The closed-form minimiser `D*` of `l(α) p_d + l(−α) p_g` over `α`, for
    /// weights `p_d, p_g ≥ 0` (NaN when one is negative or NaN).
    ///
    /// - 0-1: `sign(p_d − p_g)` with ties (also `p_d = p_g = 0`) sent to `+1`:
    ///   `α = 0` pays `l(0) = 1` for both labels, so `sign(0) = 0` would not
    ///   be optimal; every `α > 0` (`p_d ≥ p_g`) or `α < 0` is.
    /// - square: `(p_d − p_g)/(p_d + p_g) = (t − 1)/(t + 1)`, 0 when both are 0.
    /// - logistic: `ln p_d − ln p_g = ln t`, `+∞` when `p_g = 0 < p_d`, `−∞`
    ///   when `p_d = 0 < p_g` (the infimum is reached only in the limit), 0
    ///   when both are 0.
    /// - hinge: `+1` when `p_d > p_g`, `−1` when `p_d < p_g` (unique
    ///   minimisers), 0 at a tie, where all of `[−1, 1]` is optimal.
    pub fn optimal_margin(self, p_d: f64, p_g: f64) -> f64 {
        if !(p_d >= 0.0 && p_g >= 0.0) {
            return f64::NAN;
        }
        match self {
            MarginLoss::ZeroOne => {
                if p_d >= p_g {
                    1.0
                } else {
                    -1.0
                }
            }
            MarginLoss::Square => {
                let sum = p_d + p_g;
                if sum > 0.0 { (p_d - p_g) / sum } else { 0.0 }
            }
            MarginLoss::Logistic => {
                if p_d == p_g {
                    0.0
                } else {
                    p_d.ln() - p_g.ln()
                }
            }
            MarginLoss::Hinge => {
                if p_d > p_g {
                    1.0
                } else if p_d < p_g {
                    -1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// The closed-form generator `f(t) = −inf_α [l(α) t + l(−α)]` for
    /// `t ∈ [0, ∞]` (NaN for negative or NaN `t`):
    /// 0-1 `−min(t, 1)`, square `−4t/(t + 1)`, logistic
    /// `t ln t − (t + 1) ln(t + 1)` (`0` at `t = 0`, `−∞` at `t = ∞`), hinge
    /// `−2 min(t, 1)`. Convex and non-increasing; `f(0) = 0` for all four.
    pub fn generator(self, t: f64) -> f64 {
        if !(t >= 0.0) {
            return f64::NAN;
        }
        match self {
            MarginLoss::ZeroOne => -t.min(1.0),
            MarginLoss::Square => {
                if t <= 1.0 {
                    -4.0 * t / (t + 1.0)
                } else {
                    -4.0 / (1.0 + 1.0 / t)
                }
            }
            MarginLoss::Logistic => {
                if t == 0.0 {
                    0.0
                } else if t == f64::INFINITY {
                    f64::NEG_INFINITY
                } else if t < 1.0 {
                    // t ln t − (t + 1) ln(1 + t) = −[t (ln(1 + t) − ln t) + ln(1 + t)].
                    -(t * (t.ln_1p() - t.ln()) + t.ln_1p())
                } else {
                    // The same with ln(1 + t) − ln t = ln(1 + 1/t), no cancellation.
                    -(t * (1.0 / t).ln_1p() + t.ln_1p())
                }
            }
            MarginLoss::Hinge => -2.0 * t.min(1.0),
        }
    }

    /// The perspective `p_g f(p_d/p_g) = −inf_α [l(α) p_d + l(−α) p_g]`, the
    /// term of `I_f` at one atom, in a form without the ratio: 0-1
    /// `−min(p_d, p_g)`, square `−4 p_d p_g/(p_d + p_g)`, logistic
    /// `p_d ln(p_d/(p_d + p_g)) + p_g ln(p_g/(p_d + p_g))`, hinge
    /// `−2 min(p_d, p_g)`. At `p_g = 0` it is the limit
    /// `p_d lim_{t→∞} f(t)/t = 0`; 0 also when both are 0. NaN for a negative
    /// or NaN weight.
    pub fn perspective(self, p_d: f64, p_g: f64) -> f64 {
        if !(p_d >= 0.0 && p_g >= 0.0) {
            return f64::NAN;
        }
        let sum = p_d + p_g;
        match self {
            MarginLoss::ZeroOne => -p_d.min(p_g),
            MarginLoss::Square => {
                if sum > 0.0 {
                    -4.0 * p_d * p_g / sum
                } else {
                    0.0
                }
            }
            MarginLoss::Logistic => xlogy(p_d, p_d / sum) + xlogy(p_g, p_g / sum),
            MarginLoss::Hinge => -2.0 * p_d.min(p_g),
        }
    }

    /// `f(t)` computed by [`numeric_pointwise_minimum`] of
    /// `l(α) t + l(−α)`, negated: a check on [`MarginLoss::generator`]. `t`
    /// must be finite and `≥ 0` (NaN otherwise).
    pub fn numeric_generator(self, t: f64) -> f64 {
        if !(t >= 0.0 && t.is_finite()) {
            return f64::NAN;
        }
        -numeric_pointwise_minimum(|alpha| self.value(alpha), t, 1.0).value
    }

    /// The minimiser of `l(α) p_d + l(−α) p_g` found by
    /// [`numeric_pointwise_minimum`]: a check on
    /// [`MarginLoss::optimal_margin`]. Where the infimum is only reached at
    /// infinity (logistic with `p_d = 0` or `p_g = 0`) it is a bracket edge;
    /// where the minimiser is not unique (0-1, hinge at a tie) it is one of
    /// them. NaN for a negative, infinite or NaN weight.
    pub fn numeric_optimal_margin(self, p_d: f64, p_g: f64) -> f64 {
        if !(p_d >= 0.0 && p_g >= 0.0 && p_d.is_finite() && p_g.is_finite()) {
            return f64::NAN;
        }
        numeric_pointwise_minimum(|alpha| self.value(alpha), p_d, p_g).alpha
    }
}

/// Minimises `g(α) = l(α) p_d + l(−α) p_g` over `α` for any margin loss `l`
/// (convex or not), with `0 · l = 0` for a zero weight.
///
/// The bracket is `[−B, B]` with `B = 64 + 2 |ln(p_d/p_g)|`
/// ([`NUMERIC_BRACKET`]; `B = 64` when a weight is 0), so it holds the
/// logistic minimiser `ln(p_d/p_g)` with room to spare. `g` is evaluated on
/// [`NUMERIC_GRID_POINTS`] evenly spaced points (spacing `h = 2B/4096`), then
/// golden-section search runs on `[α_i − h, α_i + h]` around the best grid
/// point `α_i` until that interval is shorter than `10⁻¹³ (1 + |α|)`; the
/// best point evaluated is returned.
///
/// Accuracy: for a convex `l` the minimiser lies in `[α_i − h, α_i + h]`, so
/// the value is exact up to rounding (the margin to about `√ε` relative where
/// `g'' > 0`, exactly at a kink such as the hinge's). For a non-convex `l` the
/// grid must see every basin: fine for the 0-1 loss (any `α > 0` and any
/// `α < 0` are optimal), but a dip narrower than `h` can be missed. An
/// infimum approached only as `α → ±∞` is returned at the bracket edge. The
/// weights should be finite and `≥ 0`, and `l` finite on the bracket.
pub fn numeric_pointwise_minimum(loss: impl Fn(f64) -> f64, p_d: f64, p_g: f64) -> PointwiseMinimum {
    let weighted = |weight: f64, value: f64| if weight == 0.0 { 0.0 } else { weight * value };
    let objective = |alpha: f64| weighted(p_d, loss(alpha)) + weighted(p_g, loss(-alpha));
    let log_ratio = p_d.ln() - p_g.ln();
    let half_width = if log_ratio.is_finite() {
        NUMERIC_BRACKET + 2.0 * log_ratio.abs()
    } else {
        NUMERIC_BRACKET
    };
    let intervals = (NUMERIC_GRID_POINTS - 1) as f64;
    let step = 2.0 * half_width / intervals;
    let grid_point = |i: usize| -half_width + 2.0 * half_width * (i as f64 / intervals);

    let mut best = PointwiseMinimum {
        alpha: -half_width,
        value: f64::INFINITY,
    };
    let consider = |alpha: f64, value: f64, best: &mut PointwiseMinimum| {
        if value < best.value {
            *best = PointwiseMinimum { alpha, value };
        }
    };
    for i in 0..NUMERIC_GRID_POINTS {
        let alpha = grid_point(i);
        consider(alpha, objective(alpha), &mut best);
    }

    // Golden-section search between the best grid point's neighbours.
    let mut lo = (best.alpha - step).max(-half_width);
    let mut hi = (best.alpha + step).min(half_width);
    let mut left = hi - INV_PHI * (hi - lo);
    let mut right = lo + INV_PHI * (hi - lo);
    let mut g_left = objective(left);
    let mut g_right = objective(right);
    consider(left, g_left, &mut best);
    consider(right, g_right, &mut best);
    for _ in 0..GOLDEN_MAX_ITERATIONS {
        if hi - lo <= GOLDEN_REL_TOL * (1.0 + lo.abs().max(hi.abs())) {
            break;
        }
        if g_left <= g_right {
            hi = right;
            right = left;
            g_right = g_left;
            left = hi - INV_PHI * (hi - lo);
            g_left = objective(left);
            consider(left, g_left, &mut best);
        } else {
            lo = left;
            left = right;
            g_left = g_right;
            right = lo + INV_PHI * (hi - lo);
            g_right = objective(right);
            consider(right, g_right, &mut best);
        }
    }
    let middle = 0.5 * (lo + hi);
    consider(middle, objective(middle), &mut best);
    best
}

/// The risk `R_l(D) = ½ Σ_x [l(D(x)) p_d(x) + l(−D(x)) p_g(x)]` of the
/// margins `d` (one per atom) on the discrete distributions `p_d` (label
/// +1) and `p_g` (label −1), in the loss's units (nats for logistic).
///
/// A term with zero weight is 0 whatever the loss (so the logistic
/// `D* = ±∞` of [`optimal_margins`] is accepted); `+∞` when a positive
/// weight meets an infinite loss.
///
/// ```
/// use deepgen_gan::divergence::{MarginLoss, margin_risk, optimal_margins, optimal_risk};
/// let (p_d, p_g) = ([0.7, 0.2, 0.1], [0.1, 0.3, 0.6]);
/// let d_star = optimal_margins(MarginLoss::ZeroOne, &p_d, &p_g)?;
/// assert_eq!(d_star, vec![1.0, -1.0, -1.0]);
/// // ½ Σ min(p_d, p_g) = ½ (0.1 + 0.2 + 0.1) = 0.2 = ½ (1 − TV), TV = 0.6.
/// let risk = margin_risk(MarginLoss::ZeroOne, &d_star, &p_d, &p_g)?;
/// assert!((risk - 0.2).abs() < 1e-15);
/// assert!((optimal_risk(MarginLoss::ZeroOne, &p_d, &p_g)? - risk).abs() < 1e-15);
/// # Ok::<(), deepgen_gan::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidConfig`] when `p_d` or `p_g` is not a distribution
/// (empty, an entry negative or not finite, a sum off 1 by more than
/// [`SUM_TOLERANCE`]), when the lengths differ, or when `d` has a NaN.
pub fn margin_risk(loss: MarginLoss, d: &[f64], p_d: &[f64], p_g: &[f64]) -> Result<f64> {
    validate_pair(p_d, p_g)?;
    validate_same_length("d", d, p_d)?;
    if let Some((i, v)) = d.iter().enumerate().find(|&(_, v)| v.is_nan()) {
        return Err(Error::invalid_display(
            "d",
            format!("entry {i} = {v}"),
            "expected margins that are not NaN",
        ));
    }
    let weighted = |weight: f64, value: f64| if weight == 0.0 { 0.0 } else { weight * value };
    let sum: f64 = d
        .iter()
        .zip(p_d.iter().zip(p_g))
        .map(|(&alpha, (&pd, &pg))| weighted(pd, loss.value(alpha)) + weighted(pg, loss.value(-alpha)))
        .sum();
    Ok(0.5 * sum)
}

/// The closed-form optimal margins `D*(x) = loss.optimal_margin(p_d(x),
/// p_g(x))` ([`MarginLoss::optimal_margin`] has the conventions at ties and
/// zeros).
///
/// # Errors
/// As [`margin_risk`], for `p_d` and `p_g`.
pub fn optimal_margins(loss: MarginLoss, p_d: &[f64], p_g: &[f64]) -> Result<Vec<f64>> {
    validate_pair(p_d, p_g)?;
    Ok(p_d
        .iter()
        .zip(p_g)
        .map(|(&pd, &pg)| loss.optimal_margin(pd, pg))
        .collect())
}

/// `I_f(P_d‖P_g) = Σ p_g f(p_d/p_g)` with the loss's generator `f`, summed as
/// [`MarginLoss::perspective`] terms (the `p_g = 0` terms are
/// `p_d lim f(t)/t = 0`). It equals `TV − 1`, `Δ − 2`, `2 JS − 2 ln 2` and
/// `2 TV − 2` for 0-1, square, logistic and hinge.
///
/// # Errors
/// As [`margin_risk`], for `p_d` and `p_g`.
pub fn f_divergence_of(loss: MarginLoss, p_d: &[f64], p_g: &[f64]) -> Result<f64> {
    validate_pair(p_d, p_g)?;
    Ok(p_d.iter().zip(p_g).map(|(&pd, &pg)| loss.perspective(pd, pg)).sum())
}

/// The optimal risk `min_D R_l(D) = −½ I_f(P_d‖P_g)`: `½(1 − TV)`,
/// `1 − ½Δ`, `ln 2 − JS` and `1 − TV` for 0-1, square, logistic and hinge.
///
/// # Errors
/// As [`margin_risk`], for `p_d` and `p_g`.
pub fn optimal_risk(loss: MarginLoss, p_d: &[f64], p_g: &[f64]) -> Result<f64> {
    Ok(-0.5 * f_divergence_of(loss, p_d, p_g)?)
}

/// Goodfellow's minimax value `V(D) = Σ p_d ln D + Σ p_g ln(1 − D)` (nats)
/// for discriminator probabilities `d_prob ∈ [0, 1]`, one per atom; a term
/// with zero weight is 0, and `−∞` comes back when a positive weight meets
/// `ln 0`. With `d_prob = sigmoid(a)`, `V = −2 R_log(a)`; the maximum,
/// at [`optimal_minimax_discriminator`], is `−ln 4 + 2 JS(P_d‖P_g)`.
///
/// # Errors
/// As [`margin_risk`], for `p_d` and `p_g`; also when `d_prob` has another
/// length or an entry outside `[0, 1]` (NaN included).
pub fn minimax_value(d_prob: &[f64], p_d: &[f64], p_g: &[f64]) -> Result<f64> {
    validate_pair(p_d, p_g)?;
    validate_same_length("d_prob", d_prob, p_d)?;
    if let Some((i, v)) = d_prob.iter().enumerate().find(|&(_, &v)| !(0.0..=1.0).contains(&v)) {
        return Err(Error::invalid_display(
            "d_prob",
            format!("entry {i} = {v}"),
            "expected probabilities in [0, 1]",
        ));
    }
    let weighted = |weight: f64, value: f64| if weight == 0.0 { 0.0 } else { weight * value };
    Ok(d_prob
        .iter()
        .zip(p_d.iter().zip(p_g))
        .map(|(&d, (&pd, &pg))| weighted(pd, d.ln()) + weighted(pg, (-d).ln_1p()))
        .sum())
}

/// The maximiser of [`minimax_value`], `D*(x) = p_d(x)/(p_d(x) + p_g(x))`
/// (`½` where both are 0).
///
/// # Errors
/// As [`margin_risk`], for `p_d` and `p_g`.
pub fn optimal_minimax_discriminator(p_d: &[f64], p_g: &[f64]) -> Result<Vec<f64>> {
    validate_pair(p_d, p_g)?;
    Ok(p_d
        .iter()
        .zip(p_g)
        .map(|(&pd, &pg)| if pd + pg > 0.0 { pd / (pd + pg) } else { 0.5 })
        .collect())
}

/// `ln(1 + e^x)` without overflow; `+∞` at `x = +∞`, 0 at `−∞`.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// `x ln y` with `0 ln y = 0` (also for `y = 0` or NaN).
fn xlogy(x: f64, y: f64) -> f64 {
    if x == 0.0 { 0.0 } else { x * y.ln() }
}

/// Checks that `p` is a probability vector: non-empty, entries finite and
/// `≥ 0`, sum within [`SUM_TOLERANCE`] of 1.
fn validate_distribution(name: &'static str, p: &[f64]) -> Result<()> {
    if p.is_empty() {
        return Err(Error::invalid_display(name, "[]", "expected a non-empty distribution"));
    }
    if let Some((i, v)) = p.iter().enumerate().find(|&(_, &v)| !(v.is_finite() && v >= 0.0)) {
        return Err(Error::invalid_display(
            name,
            format!("entry {i} = {v}"),
            "expected finite entries >= 0",
        ));
    }
    let sum: f64 = p.iter().sum();
    if !((sum - 1.0).abs() <= SUM_TOLERANCE) {
        return Err(Error::invalid_display(
            name,
            format!("sum {sum}"),
            format!("expected entries summing to 1 within {SUM_TOLERANCE:e}"),
        ));
    }
    Ok(())
}

/// Checks that `values` has as many entries as `p_d`.
fn validate_same_length(name: &'static str, values: &[f64], p_d: &[f64]) -> Result<()> {
    if values.len() != p_d.len() {
        return Err(Error::invalid_display(
            name,
            format!("length {}", values.len()),
            format!("expected length {} (that of p_d)", p_d.len()),
        ));
    }
    Ok(())
}

/// Checks `p_d` and `p_g`: distributions of the same length.
fn validate_pair(p_d: &[f64], p_g: &[f64]) -> Result<()> {
    validate_same_length("p_g", p_g, p_d)?;
    validate_distribution("p_d", p_d)?;
    validate_distribution("p_g", p_g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_numerics::FDivergence;
    use proptest::prelude::*;
    use proptest::test_runner::{RngSeed, TestCaseError};

    /// Relative tolerance of closed-form identities.
    const CLOSED_FORM_REL_TOL: f64 = 1e-9;
    /// Absolute tolerance of closed-form identities (results near 0).
    const CLOSED_FORM_ABS_TOL: f64 = 1e-12;
    /// Relative (and absolute) tolerance of numeric minimisation against a
    /// closed form.
    const NUMERIC_TOL: f64 = 1e-6;
    /// Slack for convexity and monotonicity checks on a grid of `f`.
    const SHAPE_TOL: f64 = 1e-12;

    /// Seed of the case generator unless `PROPTEST_RNG_SEED` sets one.
    const PROPTEST_SEED: u64 = 0x5eed_0003_0000_6a11;

    fn config() -> ProptestConfig {
        let mut config = ProptestConfig::default();
        if config.rng_seed == RngSeed::Random {
            config.rng_seed = RngSeed::Fixed(PROPTEST_SEED);
        }
        config
    }

    fn fail(e: impl std::fmt::Display) -> TestCaseError {
        TestCaseError::fail(e.to_string())
    }

    fn close(got: f64, expected: f64, rel: f64, abs: f64) -> bool {
        (got - expected).abs() <= rel * expected.abs() + abs
    }

    fn normalise(weights: &[f64]) -> Vec<f64> {
        let sum: f64 = weights.iter().sum();
        weights.iter().map(|w| w / sum).collect()
    }

    /// Two distributions on 2–12 atoms with strictly positive weights.
    fn positive_pair() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
        (2usize..=12).prop_flat_map(|n| {
            (
                prop::collection::vec(0.01f64..1.0, n).prop_map(|w| normalise(&w)),
                prop::collection::vec(0.01f64..1.0, n).prop_map(|w| normalise(&w)),
            )
        })
    }

    /// Two distributions on 2–12 atoms where about a third of the weights are
    /// 0 (each keeps at least one positive weight), so disjoint supports occur.
    fn pair_with_zeros() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
        let weights = |n: usize| {
            prop::collection::vec((0.01f64..1.0, prop::bool::weighted(0.35)), n).prop_map(|pairs| {
                let mut w: Vec<f64> = pairs.iter().map(|&(v, zero)| if zero { 0.0 } else { v }).collect();
                if w.iter().all(|&v| v == 0.0) {
                    w[0] = 1.0;
                }
                normalise(&w)
            })
        };
        (2usize..=12).prop_flat_map(move |n| (weights(n), weights(n)))
    }

    /// Pair of distributions and a vector of margins of the same length.
    fn pair_and_margins() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, Vec<f64>)> {
        prop_oneof![positive_pair(), pair_with_zeros()].prop_flat_map(|(p_d, p_g)| {
            let n = p_d.len();
            (Just(p_d), Just(p_g), prop::collection::vec(-20.0f64..20.0, n))
        })
    }

    fn tv(p_d: &[f64], p_g: &[f64]) -> std::result::Result<f64, TestCaseError> {
        FDivergence::TotalVariation.divergence(p_d, p_g).map_err(fail)
    }

    /// Checks 1: the numeric pointwise minimiser against the closed form.
    fn check_pointwise_optimum(loss: MarginLoss, p_d: f64, p_g: f64) -> std::result::Result<(), TestCaseError> {
        let objective = |alpha: f64| loss.value(alpha) * p_d + loss.value(-alpha) * p_g;
        let closed = loss.optimal_margin(p_d, p_g);
        let numeric = loss.numeric_optimal_margin(p_d, p_g);
        // The optimal value is −perspective; both minimisers must reach it.
        let best = -loss.perspective(p_d, p_g);
        prop_assert!(close(objective(closed), best, CLOSED_FORM_REL_TOL, CLOSED_FORM_ABS_TOL));
        prop_assert!(
            close(objective(numeric), best, NUMERIC_TOL, NUMERIC_TOL),
            "{loss:?}: objective {} at numeric {numeric}, optimum {best}",
            objective(numeric)
        );
        match loss {
            // Unique minimisers: the margins themselves agree.
            MarginLoss::Square | MarginLoss::Logistic => {
                prop_assert!(
                    close(numeric, closed, NUMERIC_TOL, NUMERIC_TOL),
                    "{loss:?}: numeric {numeric}, closed form {closed}"
                );
            }
            // Hinge: ±1 is the unique minimiser off ties.
            MarginLoss::Hinge if p_d != p_g => {
                prop_assert!(close(numeric, closed, NUMERIC_TOL, NUMERIC_TOL));
            }
            // 0-1: every margin of the right sign is optimal.
            MarginLoss::ZeroOne if p_d != p_g => {
                prop_assert!(numeric.signum() == closed.signum() && numeric != 0.0);
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks 4: `R_l(D*) = −½ I_f` and the closed forms from deepgen-numerics.
    fn check_optimal_risk(p_d: &[f64], p_g: &[f64]) -> std::result::Result<(), TestCaseError> {
        let tv = tv(p_d, p_g)?;
        let js = FDivergence::JensenShannon.divergence(p_d, p_g).map_err(fail)?;
        let delta = FDivergence::TriangularDiscrimination
            .divergence(p_d, p_g)
            .map_err(fail)?;
        for loss in MarginLoss::ALL {
            let d_star = optimal_margins(loss, p_d, p_g).map_err(fail)?;
            let at_optimum = margin_risk(loss, &d_star, p_d, p_g).map_err(fail)?;
            let i_f = f_divergence_of(loss, p_d, p_g).map_err(fail)?;
            let optimum = optimal_risk(loss, p_d, p_g).map_err(fail)?;
            prop_assert!(close(at_optimum, -0.5 * i_f, CLOSED_FORM_REL_TOL, CLOSED_FORM_ABS_TOL));
            prop_assert!(close(optimum, at_optimum, CLOSED_FORM_REL_TOL, CLOSED_FORM_ABS_TOL));
            let expected = match loss {
                MarginLoss::ZeroOne => 0.5 * (1.0 - tv),
                MarginLoss::Square => 1.0 - 0.5 * delta,
                MarginLoss::Logistic => std::f64::consts::LN_2 - js,
                MarginLoss::Hinge => 1.0 - tv,
            };
            prop_assert!(
                close(at_optimum, expected, CLOSED_FORM_REL_TOL, CLOSED_FORM_ABS_TOL),
                "{loss:?}: R(D*) = {at_optimum}, closed form {expected}"
            );
            // I_f through the generator and deepgen-numerics' f_divergence
            // (limit slope 0), an independent sum.
            let via_generator = deepgen_numerics::f_divergence(p_d, p_g, |t| loss.generator(t), 0.0).map_err(fail)?;
            prop_assert!(close(i_f, via_generator, CLOSED_FORM_REL_TOL, CLOSED_FORM_ABS_TOL));
        }
        Ok(())
    }

    /// Checks 5: no margins beat the optimum.
    fn check_no_better_discriminator(p_d: &[f64], p_g: &[f64], d: &[f64]) -> std::result::Result<(), TestCaseError> {
        for loss in MarginLoss::ALL {
            let risk = margin_risk(loss, d, p_d, p_g).map_err(fail)?;
            let optimum = optimal_risk(loss, p_d, p_g).map_err(fail)?;
            prop_assert!(
                risk >= optimum - CLOSED_FORM_REL_TOL * optimum.abs() - CLOSED_FORM_ABS_TOL,
                "{loss:?}: R(D) = {risk} < R(D*) = {optimum}"
            );
        }
        Ok(())
    }

    /// Checks 6: the minimax value and its link to the logistic risk.
    fn check_minimax(p_d: &[f64], p_g: &[f64], logits: &[f64]) -> std::result::Result<(), TestCaseError> {
        let js = FDivergence::JensenShannon.divergence(p_d, p_g).map_err(fail)?;
        let d_opt = optimal_minimax_discriminator(p_d, p_g).map_err(fail)?;
        let v_opt = minimax_value(&d_opt, p_d, p_g).map_err(fail)?;
        let expected = -4f64.ln() + 2.0 * js;
        prop_assert!(
            close(v_opt, expected, CLOSED_FORM_REL_TOL, CLOSED_FORM_ABS_TOL),
            "V* = {v_opt}, {expected}"
        );
        let d_prob: Vec<f64> = logits.iter().map(|&a| 1.0 / (1.0 + (-a).exp())).collect();
        let v = minimax_value(&d_prob, p_d, p_g).map_err(fail)?;
        let r_log = margin_risk(MarginLoss::Logistic, logits, p_d, p_g).map_err(fail)?;
        prop_assert!(
            close(v, -2.0 * r_log, CLOSED_FORM_REL_TOL, CLOSED_FORM_ABS_TOL),
            "V = {v}, R_log = {r_log}"
        );
        prop_assert!(v <= v_opt + CLOSED_FORM_ABS_TOL);
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn prop_numeric_pointwise_optimum_matches_closed_form(p_d in 1e-3f64..1.0, p_g in 1e-3f64..1.0) {
            for loss in MarginLoss::ALL {
                check_pointwise_optimum(loss, p_d, p_g)?;
            }
        }

        #[test]
        fn prop_numeric_generator_matches_closed_form(t in 1e-9f64..=50.0) {
            for loss in MarginLoss::ALL {
                let (numeric, closed) = (loss.numeric_generator(t), loss.generator(t));
                prop_assert!(
                    close(numeric, closed, NUMERIC_TOL, NUMERIC_TOL),
                    "{loss:?}: f({t}) numeric {numeric}, closed form {closed}"
                );
            }
        }

        #[test]
        fn prop_generator_is_convex_and_non_increasing(a in 0.0f64..60.0, b in 0.0f64..60.0, w in 0.0f64..=1.0) {
            let (lo, hi) = (a.min(b), a.max(b));
            let mid = w * lo + (1.0 - w) * hi;
            for loss in MarginLoss::ALL {
                let (f_lo, f_mid, f_hi) = (loss.generator(lo), loss.generator(mid), loss.generator(hi));
                let chord = w * f_lo + (1.0 - w) * f_hi;
                prop_assert!(f_mid <= chord + SHAPE_TOL * (1.0 + chord.abs()), "{loss:?}: not convex at {mid}");
                prop_assert!(f_hi <= f_mid + SHAPE_TOL && f_mid <= f_lo + SHAPE_TOL, "{loss:?}: increasing");
            }
        }

        #[test]
        fn prop_optimal_risk_is_minus_half_i_f_positive((p_d, p_g) in positive_pair()) {
            check_optimal_risk(&p_d, &p_g)?;
        }

        #[test]
        fn prop_optimal_risk_is_minus_half_i_f_with_zeros((p_d, p_g) in pair_with_zeros()) {
            check_optimal_risk(&p_d, &p_g)?;
        }

        #[test]
        fn prop_any_discriminator_is_no_better((p_d, p_g, d) in pair_and_margins()) {
            check_no_better_discriminator(&p_d, &p_g, &d)?;
        }

        #[test]
        fn prop_perturbed_optimum_is_no_better(
            (p_d, p_g, noise) in positive_pair().prop_flat_map(|(p_d, p_g)| {
                let n = p_d.len();
                (Just(p_d), Just(p_g), prop::collection::vec(-0.1f64..0.1, n))
            })
        ) {
            // Near D* the risk grows (for the 0-1 and hinge losses it may stay flat).
            for loss in MarginLoss::ALL {
                let d: Vec<f64> = optimal_margins(loss, &p_d, &p_g)
                    .map_err(fail)?
                    .iter()
                    .zip(&noise)
                    .map(|(a, e)| a + e)
                    .collect();
                let risk = margin_risk(loss, &d, &p_d, &p_g).map_err(fail)?;
                let optimum = optimal_risk(loss, &p_d, &p_g).map_err(fail)?;
                prop_assert!(risk >= optimum - CLOSED_FORM_REL_TOL * optimum.abs() - CLOSED_FORM_ABS_TOL);
            }
        }

        #[test]
        fn prop_minimax_value((p_d, p_g, logits) in pair_and_margins()) {
            // A probability carries 1 − D to about 1e-16 absolute, so |a| ≤ 10
            // (1 − sigmoid(10) ≈ 4.5e-5) keeps ln(1 − D) within 1e-11.
            let logits: Vec<f64> = logits.iter().map(|a| 0.5 * a).collect();
            check_minimax(&p_d, &p_g, &logits)?;
        }

        #[test]
        fn prop_zero_one_seed_sign_is_worse((p_d, p_g) in positive_pair()) {
            // sign(p_g − p_d) errs on the larger class at every atom: ½ Σ max = ½(1 + TV).
            let seed: Vec<f64> = p_d.iter().zip(&p_g).map(|(d, g)| if g > d { 1.0 } else { -1.0 }).collect();
            let seed_risk = margin_risk(MarginLoss::ZeroOne, &seed, &p_d, &p_g).map_err(fail)?;
            let tv = tv(&p_d, &p_g)?;
            prop_assert!(close(seed_risk, 0.5 * (1.0 + tv), CLOSED_FORM_REL_TOL, CLOSED_FORM_ABS_TOL));
            let optimum = optimal_risk(MarginLoss::ZeroOne, &p_d, &p_g).map_err(fail)?;
            prop_assert!(seed_risk >= optimum);
        }
    }

    #[test]
    fn closed_form_generators_at_known_points() {
        // f(0) = 0 for all four; f(1) = −1, −2, −2 ln 2, −2.
        let at_one = [-1.0, -2.0, -2.0 * std::f64::consts::LN_2, -2.0];
        for (loss, f1) in MarginLoss::ALL.into_iter().zip(at_one) {
            assert_eq!(loss.generator(0.0), 0.0, "{loss:?}");
            assert!((loss.generator(1.0) - f1).abs() < 1e-15, "{loss:?}");
            assert!(loss.generator(-1.0).is_nan() && loss.generator(f64::NAN).is_nan());
        }
        // Square at t = 3: −4·3/4 = −3; logistic at t = 3: 3 ln 3 − 4 ln 4.
        assert!((MarginLoss::Square.generator(3.0) + 3.0).abs() < 1e-15);
        let logistic_3 = 3.0 * 3f64.ln() - 4.0 * 4f64.ln();
        assert!((MarginLoss::Logistic.generator(3.0) - logistic_3).abs() < 1e-14);
        // Limits at t = ∞: −1, −4, −∞, −2.
        assert_eq!(MarginLoss::ZeroOne.generator(f64::INFINITY), -1.0);
        assert_eq!(MarginLoss::Square.generator(f64::INFINITY), -4.0);
        assert_eq!(MarginLoss::Logistic.generator(f64::INFINITY), f64::NEG_INFINITY);
        assert_eq!(MarginLoss::Hinge.generator(f64::INFINITY), -2.0);
        // Subnormal t: logistic f(t) ≈ t ln t − t, finite and tiny.
        let tiny = MarginLoss::Logistic.generator(1e-310);
        assert!(tiny.is_finite() && tiny < 0.0 && tiny > -1e-306);
    }

    #[test]
    fn numeric_generator_at_zero_and_large_t() {
        for loss in MarginLoss::ALL {
            // t = 0: inf_α l(−α) = 0 (for logistic only in the limit α → −∞).
            assert!(loss.numeric_generator(0.0).abs() < 1e-20, "{loss:?}");
            for t in [1e3, 1e8, 1e15] {
                let (numeric, closed) = (loss.numeric_generator(t), loss.generator(t));
                assert!(
                    close(numeric, closed, NUMERIC_TOL, NUMERIC_TOL),
                    "{loss:?} f({t}): {numeric} vs {closed}"
                );
            }
            for t in [1e-12, 1e-100] {
                let (numeric, closed) = (loss.numeric_generator(t), loss.generator(t));
                assert!(
                    close(numeric, closed, NUMERIC_TOL, 1e-15),
                    "{loss:?} f({t}): {numeric} vs {closed}"
                );
            }
            assert!(loss.numeric_generator(-1.0).is_nan() && loss.numeric_generator(f64::INFINITY).is_nan());
        }
    }

    #[test]
    fn generators_are_convex_and_non_increasing_on_a_grid() {
        let h = 0.01;
        let grid: Vec<f64> = (0..=5000).map(|i| i as f64 * h).collect();
        for loss in MarginLoss::ALL {
            let f: Vec<f64> = grid.iter().map(|&t| loss.generator(t)).collect();
            for w in f.windows(3) {
                assert!(
                    w[0] - 2.0 * w[1] + w[2] >= -SHAPE_TOL,
                    "{loss:?}: second difference < 0"
                );
                assert!(w[1] <= w[0] + SHAPE_TOL, "{loss:?}: increasing");
            }
            // The numeric generator too, on a coarser grid (errors ~1e-12 ≪ h² f'').
            let coarse: Vec<f64> = (0..=200)
                .map(|i| i as f64 * 0.25)
                .map(|t| loss.numeric_generator(t))
                .collect();
            for w in coarse.windows(3) {
                assert!(w[0] - 2.0 * w[1] + w[2] >= -1e-9, "{loss:?}: numeric f not convex");
                assert!(w[1] <= w[0] + 1e-9, "{loss:?}: numeric f increasing");
            }
        }
    }

    #[test]
    fn zero_one_and_hinge_generators_are_flat_beyond_one() {
        // SPEC §5: the 0-1 f is convex and non-increasing but not strictly
        // decreasing: f(t) = −1 for every t ≥ 1 (hinge: −2).
        for t in [1.0, 1.5, 2.0, 10.0, 1e6] {
            assert_eq!(MarginLoss::ZeroOne.generator(t), -1.0);
            assert_eq!(MarginLoss::Hinge.generator(t), -2.0);
            assert!((MarginLoss::ZeroOne.numeric_generator(t) + 1.0).abs() < 1e-15);
        }
        // The strictly convex ones keep decreasing.
        assert!(MarginLoss::Square.generator(2.0) < MarginLoss::Square.generator(1.0));
        assert!(MarginLoss::Logistic.generator(2.0) < MarginLoss::Logistic.generator(1.0));
    }

    #[test]
    fn seed_zero_one_optimum_is_reversed() {
        // SPEC §10: the seed prints D* = sign(p_g − p_d). Here
        // ½ Σ min(p_d, p_g) = ½ (0.1 + 0.2 + 0.1) = 0.2 for sign(p_d − p_g), and
        // ½ Σ max(p_d, p_g) = ½ (0.7 + 0.3 + 0.6) = 0.8 for the seed's sign.
        let (p_d, p_g) = ([0.7, 0.2, 0.1], [0.1, 0.3, 0.6]);
        let correct: Vec<f64> = p_d
            .iter()
            .zip(&p_g)
            .map(|(d, g): (&f64, &f64)| (d - g).signum())
            .collect();
        let seed: Vec<f64> = p_d
            .iter()
            .zip(&p_g)
            .map(|(d, g): (&f64, &f64)| (g - d).signum())
            .collect();
        let r_correct = margin_risk(MarginLoss::ZeroOne, &correct, &p_d, &p_g).unwrap();
        let r_seed = margin_risk(MarginLoss::ZeroOne, &seed, &p_d, &p_g).unwrap();
        assert!((r_correct - 0.2).abs() < 1e-15 && (r_seed - 0.8).abs() < 1e-15);
        assert!(r_seed > r_correct);
        assert_eq!(correct, optimal_margins(MarginLoss::ZeroOne, &p_d, &p_g).unwrap());
    }

    #[test]
    fn seed_square_loss_risk_is_minus_half_i_f() {
        // SPEC §10: the seed's R = 1 − I_f disagrees with R = −½ I_f. Bernoulli
        // pair (0.8, 0.2) vs (0.2, 0.8): Δ = 2·0.36/1 = 0.72, I_f = Δ − 2 = −1.28,
        // R = 0.64 = 1 − ½Δ, while 1 − I_f = 2.28 exceeds the risk of D = 0 (1).
        let (p_d, p_g) = ([0.8, 0.2], [0.2, 0.8]);
        let i_f = f_divergence_of(MarginLoss::Square, &p_d, &p_g).unwrap();
        assert!((i_f + 1.28).abs() < 1e-12);
        let d_star = optimal_margins(MarginLoss::Square, &p_d, &p_g).unwrap();
        let risk = margin_risk(MarginLoss::Square, &d_star, &p_d, &p_g).unwrap();
        assert!((risk - 0.64).abs() < 1e-12);
        assert!((1.0 - i_f - risk).abs() > 1.0);
    }

    #[test]
    fn zero_one_tie_needs_a_nonzero_margin() {
        // With l(α) = 1[α ≤ 0], α = 0 pays for both labels: at p_d = p_g the
        // literal sign(0) = 0 has risk p (not p/2), so ties go to +1.
        let (p_d, p_g) = ([0.5, 0.5], [0.5, 0.5]);
        let zero = margin_risk(MarginLoss::ZeroOne, &[0.0, 0.0], &p_d, &p_g).unwrap();
        let d_star = optimal_margins(MarginLoss::ZeroOne, &p_d, &p_g).unwrap();
        assert_eq!(d_star, vec![1.0, 1.0]);
        let best = margin_risk(MarginLoss::ZeroOne, &d_star, &p_d, &p_g).unwrap();
        assert_eq!((zero, best), (1.0, 0.5));
    }

    #[test]
    fn logistic_optimum_is_infinite_off_the_common_support() {
        let (p_d, p_g) = ([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]);
        let d_star = optimal_margins(MarginLoss::Logistic, &p_d, &p_g).unwrap();
        assert_eq!(d_star, vec![f64::INFINITY, 0.0, f64::NEG_INFINITY]);
        // Only the shared atom costs: ½ (0.5 ln 2 + 0.5 ln 2) = ½ ln 2 = ln 2 − JS, JS = ½ ln 2.
        let risk = margin_risk(MarginLoss::Logistic, &d_star, &p_d, &p_g).unwrap();
        assert!((risk - 0.5 * std::f64::consts::LN_2).abs() < 1e-15);
        // Disjoint supports: R = 0 for every loss but 0-1's flat ½(1 − 1) = 0 too.
        let (p_d, p_g) = ([1.0, 0.0], [0.0, 1.0]);
        for loss in MarginLoss::ALL {
            assert_eq!(optimal_risk(loss, &p_d, &p_g).unwrap(), 0.0, "{loss:?}");
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let ok = [0.5, 0.5];
        let bad: [(&[f64], &[f64]); 7] = [
            (&[0.5, 0.5], &[1.0]),
            (&[], &[]),
            (&[1.5, -0.5], &ok),
            (&ok, &[0.5, 0.6]),
            (&[f64::NAN, 1.0], &ok),
            (&ok, &[f64::INFINITY, 0.0]),
            (&[0.3, 0.3], &ok),
        ];
        for (p_d, p_g) in bad {
            let d = vec![0.0; p_d.len()];
            let prob = vec![0.5; p_d.len()];
            for loss in MarginLoss::ALL {
                assert!(matches!(
                    margin_risk(loss, &d, p_d, p_g),
                    Err(Error::InvalidConfig { .. })
                ));
                assert!(optimal_risk(loss, p_d, p_g).is_err());
                assert!(f_divergence_of(loss, p_d, p_g).is_err());
                assert!(optimal_margins(loss, p_d, p_g).is_err());
            }
            assert!(minimax_value(&prob, p_d, p_g).is_err());
            assert!(optimal_minimax_discriminator(p_d, p_g).is_err());
        }
        // Margins and probabilities: wrong length, NaN, outside [0, 1].
        assert!(margin_risk(MarginLoss::Square, &[0.0], &ok, &ok).is_err());
        assert!(margin_risk(MarginLoss::Square, &[0.0, f64::NAN], &ok, &ok).is_err());
        assert!(minimax_value(&[0.5], &ok, &ok).is_err());
        assert!(minimax_value(&[0.5, 1.5], &ok, &ok).is_err());
        assert!(minimax_value(&[0.5, f64::NAN], &ok, &ok).is_err());
        let message = margin_risk(MarginLoss::Square, &[0.0, 0.0], &ok, &[0.5, 0.6])
            .unwrap_err()
            .to_string();
        assert!(message.contains("p_g") && message.contains("sum"), "{message}");
        // Scalar methods answer NaN rather than panic.
        assert!(MarginLoss::Logistic.optimal_margin(-1.0, 0.5).is_nan());
        assert!(MarginLoss::Square.perspective(f64::NAN, 0.5).is_nan());
        assert!(MarginLoss::Hinge.numeric_optimal_margin(f64::INFINITY, 0.5).is_nan());
        assert!(MarginLoss::ZeroOne.value(f64::NAN).is_nan());
    }
}
