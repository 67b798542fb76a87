//! [`HvaeConfig`] and its choices, with their validation: plain serde data,
//! a TOML table in a run's `config.toml` and JSON in checkpoints (missing
//! keys keep their defaults, unknown keys are errors).

use crate::loss::{FreeBits, KlSchedule};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The nonlinearity between the hidden layers of every MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// `max(x, 0)`, through deepgen-core's one-sweep kernel: the fastest on
    /// the CPU, and what pytorch/examples' VAE uses.
    #[default]
    Relu,
    /// `tanh x`, the IWAE paper's choice (Burda et al. 2016, section 5).
    Tanh,
}

/// A two-stochastic-layer hierarchical VAE's shape and objective.
///
/// `Default` is the two-layer architecture of the IWAE paper (Burda et al.
/// 2016, section 5, after Kingma and Welling's appendix): `x → 200 → 200 →
/// z1 (100)` and `z1 → 100 → 100 → z2 (50)` for the encoders, the decoders
/// mirrored (`z2 → 100 → 100 → z1`, `z1 → 200 → 200 → x`), with ReLU instead
/// of the paper's tanh (faster on the CPU; [`Activation::Tanh`] restores
/// it), one sample per example, and the plain ELBO: no KL warm-up and no free
/// bits.
///
/// ```
/// use deepgen_hvae::{HvaeConfig, KlSchedule};
/// let config = HvaeConfig { schedule: KlSchedule::Linear { warmup: 10.0 }, free_bits: 0.25, ..Default::default() };
/// assert!(config.validate().is_ok());
/// assert!(HvaeConfig { latent2: 0, ..Default::default() }.validate().is_err());
/// // A warm-up longer than the run is allowed, and reported.
/// assert!(config.schedule_warning(5).is_some() && config.schedule_warning(10).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HvaeConfig {
    /// Flattened input size `D` (MNIST: 784 = 28 × 28).
    pub input_dim: usize,
    /// Hidden layers of `q(z1|x)`, first to last; `p(x|z1)` uses them in
    /// reverse (IWAE paper: 200, 200). Empty: the heads act on the input.
    pub hidden1: Vec<usize>,
    /// Size of the lower latent `z1` (IWAE paper: 100).
    pub latent1: usize,
    /// Hidden layers of `q(z2|z1)`; `p(z1|z2)` uses them in reverse (IWAE
    /// paper: 100, 100).
    pub hidden2: Vec<usize>,
    /// Size of the top latent `z2` (IWAE paper: 50).
    pub latent2: usize,
    /// Nonlinearity of the hidden layers (here ReLU; the IWAE paper: tanh).
    pub activation: Activation,
    /// The KL weight `β` over training (default: constant 1, the ELBO;
    /// Sønderby et al. 2016 warm up linearly over 200 epochs, Bowman et al.
    /// 2016 over a few thousand steps).
    pub schedule: KlSchedule,
    /// Free bits `λ`, nats per unit or group (0 = off; the IAF code,
    /// Kingma et al. 2016, uses 0.25 per unit).
    pub free_bits: f64,
    /// Latent units per free-bits group (1 = per unit, as in the IAF code; a
    /// group larger than a layer makes the whole layer one group).
    pub free_bits_group: usize,
    /// Samples `(z1, z2)` per example in the training objective (the ELBO
    /// with `L` samples; 1 as in pytorch/examples).
    pub n_samples: usize,
}

impl Default for HvaeConfig {
    fn default() -> Self {
        Self {
            input_dim: 784,
            hidden1: vec![200, 200],
            latent1: 100,
            hidden2: vec![100, 100],
            latent2: 50,
            activation: Activation::Relu,
            schedule: KlSchedule::Constant,
            free_bits: 0.0,
            free_bits_group: 1,
            n_samples: 1,
        }
    }
}

impl HvaeConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field and its value: a zero size
    /// (input, latent, hidden layer, free-bits group, samples), free bits
    /// negative or not finite, or a schedule out of range
    /// ([`KlSchedule::validate`]).
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("input_dim", self.input_dim),
            ("latent1", self.latent1),
            ("latent2", self.latent2),
            ("free_bits_group", self.free_bits_group),
            ("n_samples", self.n_samples),
        ] {
            if value == 0 {
                return Err(Error::invalid_display(name, 0, "must be at least 1"));
            }
        }
        for (name, sizes) in [("hidden1", &self.hidden1), ("hidden2", &self.hidden2)] {
            if sizes.contains(&0) {
                return Err(Error::invalid_display(
                    name,
                    sizes_text(sizes),
                    "every hidden layer needs at least 1 unit",
                ));
            }
        }
        FreeBits::new(self.free_bits, self.free_bits_group)?;
        self.schedule.validate()
    }

    /// The free-bits floor of the objective.
    pub fn free_bits(&self) -> FreeBits {
        FreeBits {
            lambda: self.free_bits,
            group_size: self.free_bits_group,
        }
    }

    /// A warning for a run of `epochs` epochs whose KL schedule does not reach
    /// `β = 1` by the end (a warm-up longer than the run, or a cyclical
    /// schedule that stops in a ramp): such a run is allowed, but what it
    /// optimises at the end is not the ELBO, so the CLI prints this.
    pub fn schedule_warning(&self, epochs: usize) -> Option<String> {
        self.schedule.warning(epochs)
    }
}

/// `200,200`; the empty list is the empty string.
fn sizes_text(sizes: &[usize]) -> String {
    sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
        })
    }
}

impl FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "relu" => Ok(Activation::Relu),
            "tanh" => Ok(Activation::Tanh),
            _ => Err(Error::invalid_display(
                "activation",
                format!("`{s}`"),
                "expected relu or tanh",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_round_trips_and_rejects_garbage() -> std::result::Result<(), serde_json::Error> {
        let configs = [
            HvaeConfig::default(),
            HvaeConfig {
                input_dim: 3,
                hidden1: vec![],
                latent1: 2,
                hidden2: vec![7],
                latent2: 1,
                activation: Activation::Tanh,
                schedule: KlSchedule::Cyclical { period: 4.0, ramp: 0.5 },
                free_bits: 0.25,
                free_bits_group: 5,
                n_samples: 3,
            },
            HvaeConfig {
                schedule: KlSchedule::Linear { warmup: 2.5 },
                ..Default::default()
            },
        ];
        for config in configs {
            let json = serde_json::to_string(&config)?;
            assert_eq!(serde_json::from_str::<HvaeConfig>(&json)?, config, "{json}");
        }
        for text in [
            r#"{"latent1": "x"}"#,
            r#"{"colour": "red"}"#,
            r#"{"hidden1": [200, -1]}"#,
            r#"{"activation": "sigmoid"}"#,
            r#"{"schedule": "linear"}"#,
            r#"{"schedule": "cyclical:4"}"#,
            r#"{"free_bits": "a"}"#,
        ] {
            assert!(serde_json::from_str::<HvaeConfig>(text).is_err(), "{text} parsed");
        }
        Ok(())
    }
}
