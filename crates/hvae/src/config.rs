//! [`HvaeConfig`] and its choices, with their validation and a one-line text
//! form that checkpoints store so a run directory describes its own model.

use crate::loss::{FreeBits, KlSchedule};
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The nonlinearity between the hidden layers of every MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
#[derive(Debug, Clone, PartialEq)]
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
                return Err(Error::invalid(name, 0, "must be at least 1"));
            }
        }
        for (name, sizes) in [("hidden1", &self.hidden1), ("hidden2", &self.hidden2)] {
            if sizes.contains(&0) {
                return Err(Error::invalid(
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

    /// The one-line text form stored in checkpoints, e.g.
    /// `input_dim=784 hidden1=200,200 latent1=100 … n_samples=1`;
    /// [`HvaeConfig::parse`] reads it back.
    pub fn to_text(&self) -> String {
        format!(
            "input_dim={} hidden1={} latent1={} hidden2={} latent2={} activation={} schedule={} free_bits={} \
             free_bits_group={} n_samples={}",
            self.input_dim,
            sizes_text(&self.hidden1),
            self.latent1,
            sizes_text(&self.hidden2),
            self.latent2,
            self.activation,
            self.schedule,
            self.free_bits,
            self.free_bits_group,
            self.n_samples
        )
    }

    /// Parses [`HvaeConfig::to_text`]'s form (missing keys keep their
    /// defaults) and validates the result.
    ///
    /// # Errors
    /// [`Error::BadDescription`] for an unknown key or a value that does not
    /// parse; then as [`HvaeConfig::validate`].
    pub fn parse(text: &str) -> Result<Self> {
        let mut config = HvaeConfig::default();
        for item in text.split_whitespace() {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| Error::BadDescription(format!("`{item}` is not key=value")))?;
            let bad = |what: &str| Error::BadDescription(format!("{key} = `{value}`: {what}"));
            let count = || value.parse::<usize>().map_err(|_| bad("not a count"));
            let sizes = || parse_sizes(value).ok_or_else(|| bad("not a comma-separated list of counts"));
            match key {
                "input_dim" => config.input_dim = count()?,
                "hidden1" => config.hidden1 = sizes()?,
                "latent1" => config.latent1 = count()?,
                "hidden2" => config.hidden2 = sizes()?,
                "latent2" => config.latent2 = count()?,
                "activation" => config.activation = value.parse()?,
                "schedule" => config.schedule = value.parse()?,
                "free_bits" => config.free_bits = value.parse().map_err(|_| bad("not a number"))?,
                "free_bits_group" => config.free_bits_group = count()?,
                "n_samples" => config.n_samples = count()?,
                _ => return Err(Error::BadDescription(format!("unknown key `{key}`"))),
            }
        }
        config.validate()?;
        Ok(config)
    }
}

/// `200,200`; the empty list is the empty string.
fn sizes_text(sizes: &[usize]) -> String {
    sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

fn parse_sizes(text: &str) -> Option<Vec<usize>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',').map(|s| s.parse().ok()).collect()
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
            _ => Err(Error::invalid("activation", format!("`{s}`"), "expected relu or tanh")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() -> Result<()> {
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
            assert_eq!(HvaeConfig::parse(&config.to_text())?, config, "{}", config.to_text());
        }
        Ok(())
    }

    #[test]
    fn parse_rejects_garbage() {
        for text in [
            "latent1=x",
            "colour=red",
            "hidden1=200,,200",
            "activation=sigmoid",
            "schedule=linear",
            "schedule=cyclical:4",
            "free_bits=a",
            "latent2",
        ] {
            assert!(HvaeConfig::parse(text).is_err(), "{text} parsed");
        }
    }
}
