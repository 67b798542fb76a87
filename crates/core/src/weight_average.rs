//! An exponential moving average of a model's weights (Polyak averaging),
//! kept by the [`crate::Trainer`] beside the trained weights, in the same
//! `VarMap` — so the checkpoint holds it and a resumed run continues it.
//!
//! After optimizer update `k` (from 0) every averaged variable moves
//!
//! ```text
//! w̄ ← d_k w̄ + (1 − d_k) w,     d_k = min(decay, (1 + k)/(10 + k))
//! ```
//!
//! diffusers' `EMAModel` warm-up: early averages are not dominated by the
//! random initial weights (at `k = 0` the average moves 90 % of the way).

use crate::{Error, Result};
use candle::Var;
use candle_nn::VarMap;

/// Which variables are averaged into which, and how slowly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightAverage {
    /// Prefix of the trained variables (`net.`).
    pub source: &'static str,
    /// Prefix of their averages (`ema.`): every variable under it has a twin
    /// under `source`.
    pub target: &'static str,
    /// The largest decay `d` (0.9999 in diffusers; 0.999 for short runs).
    pub decay: f64,
}

impl WeightAverage {
    /// `d_k = min(decay, (1 + k)/(10 + k))` for update `k` (from 0).
    pub fn decay_at(&self, update: usize) -> f64 {
        let k = update as f64;
        self.decay.min((1.0 + k) / (10.0 + k))
    }

    /// The `(average, trained)` pairs of `varmap`, matched by name.
    ///
    /// # Errors
    /// A decay outside `[0, 1)`; an average without its trained twin, or of
    /// another shape; no average at all.
    pub fn pairs(&self, varmap: &VarMap) -> Result<Vec<(Var, Var)>> {
        if !(0.0..1.0).contains(&self.decay) {
            return Err(Error::InvalidConfig {
                name: "weight average decay",
                value: self.decay.to_string(),
                reason: "must be in [0, 1)".into(),
            });
        }
        let data = varmap.data().lock().map_err(|_| Error::InvalidConfig {
            name: "weight average",
            value: self.target.into(),
            reason: "the variables' lock is poisoned".into(),
        })?;
        let mut names: Vec<&String> = data.keys().filter(|n| n.starts_with(self.target)).collect();
        names.sort();
        let missing = |reason: String| Error::InvalidConfig {
            name: "weight average",
            value: self.target.into(),
            reason,
        };
        if names.is_empty() {
            return Err(missing(format!("the model has no variable under `{}`", self.target)));
        }
        names
            .into_iter()
            .map(|name| {
                let twin = format!("{}{}", self.source, &name[self.target.len()..]);
                let average = &data[name];
                let trained = data
                    .get(&twin)
                    .ok_or_else(|| missing(format!("`{name}` has no trained twin `{twin}`")))?;
                if average.dims() != trained.dims() {
                    return Err(missing(format!(
                        "`{name}` is {:?} but `{twin}` is {:?}",
                        average.dims(),
                        trained.dims()
                    )));
                }
                Ok((average.clone(), trained.clone()))
            })
            .collect()
    }

    /// Sets every average to its trained weight (the start of training).
    ///
    /// # Errors
    /// Candle errors.
    pub fn reset(pairs: &[(Var, Var)]) -> Result<()> {
        for (average, trained) in pairs {
            average.set(trained.as_tensor())?;
        }
        Ok(())
    }

    /// One update with decay `d`: `w̄ ← d w̄ + (1 − d) w`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn update(pairs: &[(Var, Var)], d: f64) -> Result<()> {
        for (average, trained) in pairs {
            let next = ((average.as_tensor() * d)? + (trained.as_tensor().detach() * (1.0 - d))?)?;
            average.set(&next)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_up_follows_diffusers() {
        let average = WeightAverage {
            source: "net.",
            target: "ema.",
            decay: 0.999,
        };
        assert!((average.decay_at(0) - 0.1).abs() < 1e-15);
        assert!((average.decay_at(10) - 11.0 / 20.0).abs() < 1e-15);
        assert_eq!(average.decay_at(1_000_000), 0.999);
    }

    #[test]
    fn unmatched_or_missing_averages_are_explained() -> Result<()> {
        let varmap = VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle::DType::F32, &candle::Device::Cpu);
        vb.pp("net").get_with_hints(3, "w", candle_nn::Init::Const(1.0))?;
        let average = WeightAverage {
            source: "net.",
            target: "ema.",
            decay: 0.9,
        };
        let err = average.pairs(&varmap).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("no variable under `ema.`")),
            "{err:?}"
        );
        vb.pp("ema").get_with_hints(3, "w", candle_nn::Init::Const(0.0))?;
        vb.pp("ema").get_with_hints(2, "b", candle_nn::Init::Const(0.0))?;
        let err = average.pairs(&varmap).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("no trained twin `net.b`")),
            "{err:?}"
        );
        let bad = WeightAverage { decay: 1.0, ..average };
        assert!(bad.pairs(&varmap).is_err());
        Ok(())
    }
}
