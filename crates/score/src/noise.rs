//! [`NoiseLevels`]: the decreasing noise scales `σ₁ > σ₂ > … > σ_L` of a
//! noise-conditional score network and of annealed Langevin dynamics
//! (NCSN: a geometric sequence, `σ_i / σ_{i+1}` constant).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Strictly decreasing, positive, finite noise levels (at least one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<f64>", into = "Vec<f64>")]
pub struct NoiseLevels(Vec<f64>);

impl NoiseLevels {
    /// The levels as given.
    ///
    /// ```
    /// use deepgen_score::NoiseLevels;
    /// assert!(NoiseLevels::new(vec![1.0, 0.5]).is_ok());
    /// assert!(NoiseLevels::new(vec![0.5, 1.0]).is_err()); // unordered
    /// assert!(NoiseLevels::new(vec![1.0, -0.5]).is_err()); // negative
    /// ```
    ///
    /// # Errors
    /// An empty list, a level that is not positive and finite, or levels
    /// that do not strictly decrease.
    pub fn new(levels: Vec<f64>) -> Result<Self> {
        if levels.is_empty() {
            return Err(Error::invalid("sigmas", &levels, "at least one noise level"));
        }
        if let Some(bad) = levels.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::invalid(
                "sigmas",
                &levels,
                format!("{bad} is not a positive, finite σ"),
            ));
        }
        if let Some(w) = levels.windows(2).find(|w| w[1] >= w[0]) {
            return Err(Error::invalid(
                "sigmas",
                &levels,
                format!(
                    "levels must strictly decrease (σ₁ > … > σ_L), but {} is followed by {}",
                    w[0], w[1]
                ),
            ));
        }
        Ok(Self(levels))
    }

    /// `levels` values from `sigma_max` down to `sigma_min`, equally spaced
    /// in `ln σ` (one level: `sigma_max` alone, which must then equal
    /// `sigma_min`).
    ///
    /// ```
    /// use deepgen_score::NoiseLevels;
    /// let s = NoiseLevels::geometric(20.0, 1.0, 10).unwrap();
    /// assert_eq!(s.len(), 10);
    /// assert!((s.as_slice()[0] - 20.0).abs() < 1e-12 && (s.smallest() - 1.0).abs() < 1e-12);
    /// ```
    ///
    /// # Errors
    /// Zero levels; `sigma_max ≤ sigma_min` with more than one level; a
    /// level that is not positive and finite.
    pub fn geometric(sigma_max: f64, sigma_min: f64, levels: usize) -> Result<Self> {
        match levels {
            0 => Err(Error::invalid("levels", 0, "at least one noise level")),
            1 if sigma_max == sigma_min => Self::new(vec![sigma_max]),
            1 => Err(Error::invalid(
                "levels",
                1,
                format!("one level cannot run from σ_max = {sigma_max} to σ_min = {sigma_min}"),
            )),
            _ => {
                if !(sigma_max > sigma_min) {
                    return Err(Error::invalid(
                        "sigma_max",
                        sigma_max,
                        format!("must exceed sigma_min = {sigma_min}"),
                    ));
                }
                let (hi, lo) = (sigma_max.ln(), sigma_min.ln());
                let last = (levels - 1) as f64;
                let mut values: Vec<f64> = (0..levels).map(|i| (hi + (lo - hi) * i as f64 / last).exp()).collect();
                // Exact end points, whatever the rounding of exp(ln σ).
                values[0] = sigma_max;
                values[levels - 1] = sigma_min;
                Self::new(values)
            }
        }
    }

    /// The levels, largest first.
    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }

    /// Number of levels `L`.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: there is at least one level.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The largest level `σ₁`.
    pub fn largest(&self) -> f64 {
        self.0[0]
    }

    /// The smallest level `σ_L`.
    pub fn smallest(&self) -> f64 {
        self.0[self.0.len() - 1]
    }
}

impl TryFrom<Vec<f64>> for NoiseLevels {
    type Error = Error;
    fn try_from(levels: Vec<f64>) -> Result<Self> {
        Self::new(levels)
    }
}

impl From<NoiseLevels> for Vec<f64> {
    fn from(levels: NoiseLevels) -> Self {
        levels.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_lists_are_refused_with_the_reason() {
        let err = NoiseLevels::new(vec![]).unwrap_err().to_string();
        assert!(err.contains("at least one"), "{err}");
        let err = NoiseLevels::new(vec![1.0, -0.1]).unwrap_err().to_string();
        assert!(err.contains("-0.1 is not a positive"), "{err}");
        let err = NoiseLevels::new(vec![0.1, 1.0]).unwrap_err().to_string();
        assert!(err.contains("strictly decrease"), "{err}");
        assert!(NoiseLevels::new(vec![1.0, 1.0]).is_err());
        assert!(NoiseLevels::new(vec![f64::NAN]).is_err());
        assert!(NoiseLevels::geometric(1.0, 2.0, 5).is_err());
        assert!(NoiseLevels::geometric(1.0, 0.5, 0).is_err());
        assert!(NoiseLevels::geometric(1.0, 0.5, 1).is_err());
        assert!(NoiseLevels::geometric(1.0, 0.0, 3).is_err());
        assert_eq!(NoiseLevels::geometric(0.3, 0.3, 1).unwrap().as_slice(), &[0.3]);
    }

    #[test]
    fn levels_round_trip_through_serde_and_refuse_bad_lists() {
        let s = NoiseLevels::geometric(2.0, 0.01, 4).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<NoiseLevels>(&json).unwrap(), s);
        assert!(serde_json::from_str::<NoiseLevels>("[0.1, 0.2]").is_err());
    }

    proptest! {
        /// Geometric levels have a constant ratio and the asked end points.
        #[test]
        fn prop_geometric_levels_have_constant_ratio(
            lo in 1e-3f64..1.0, span in 1.01f64..100.0, n in 2usize..30,
        ) {
            let s = NoiseLevels::geometric(lo * span, lo, n).unwrap();
            let v = s.as_slice();
            prop_assert_eq!(v.len(), n);
            prop_assert_eq!(v[0], lo * span);
            prop_assert_eq!(v[n - 1], lo);
            let ratio = span.powf(1.0 / (n - 1) as f64);
            for w in v.windows(2) {
                prop_assert!((w[0] / w[1] - ratio).abs() < 1e-9 * ratio);
            }
        }
    }
}
