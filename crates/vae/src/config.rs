//! [`VaeConfig`] and the choices it is made of, with their validation. Every
//! configuration is plain serde data: a run's `config.toml` holds it as a
//! TOML table and checkpoints as JSON (missing keys keep their defaults,
//! unknown keys are errors); every choice enum is also `FromStr`/`Display`
//! in its kebab-case name, which the CLI parses flags with.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The encoder and decoder networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// One hidden ReLU layer each way: `D → H → (μ, log σ²)`, `Z → H → D`
    /// (pytorch/examples' `fc1`, `fc21`, `fc22`, `fc3`, `fc4`).
    #[default]
    Mlp,
    /// Two stride-2 `4×4` convolutions (32 and 64 channels) and a hidden
    /// layer of `H` units; the decoder mirrors them with transposed
    /// convolutions. Needs square images whose side is a multiple of 4.
    Conv,
}

/// How the decoder's output bias starts before training (a training
/// choice, not part of the model: `[training] output_bias` of a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputBias {
    /// The training data's per-pixel log-odds (Bernoulli) or mean
    /// (Gaussian): [`crate::Decoder::init_output_bias`].
    #[default]
    Marginal,
    /// nn.Linear's `U(±1/√fan_in)`, as pytorch/examples.
    Pytorch,
}

/// The observation model `p_θ(x|z)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecoderKind {
    /// Independent Bernoulli pixels with logits `NN(z)`; `−log p(x|z)` is the
    /// binary cross-entropy summed over pixels, also for grey levels in
    /// `[0, 1]` (pytorch/examples).
    #[default]
    Bernoulli,
    /// `N(NN(z), I)`: `−log p(x|z) = ½ Σ (x − μ)² + (D/2) ln 2π` (seed 002,
    /// with the constant kept so that it is a true log-density).
    Gaussian,
    /// `N(NN_α(z), diag σ(NN_β(z)))`: the variance is a sigmoid of a second
    /// head (seed 003).
    GaussianLearned,
}

/// The prior `p(z)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriorKind {
    /// `N(0, I)`.
    #[default]
    Standard,
    /// `N(μ_z, σ_z² I)` with `μ_z ∈ R^Z` and one `σ_z²` learned (seed 003).
    Learned,
}

/// What training minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Objective {
    /// `−ELBO_β = E_q[−log p(x|z)] + β KL(q‖p)`, the expectation over
    /// `n_samples` draws.
    #[default]
    Elbo,
    /// The importance-weighted bound of Burda et al. with `k` samples,
    /// `−E[log (1/k) Σ_i p(x, z_i)/q(z_i|x)]`.
    Iwae {
        /// Number of importance samples `k ≥ 1` (`k = 1` is the ELBO).
        k: usize,
    },
}

/// A VAE's shape and objective. `Default` is the pytorch/examples VAE:
/// 784-400-20 MLP with ReLU, Bernoulli decoder, `N(0, I)` prior, `β = 1`,
/// one sample of `z` per example.
///
/// ```
/// use deepgen_vae::{DecoderKind, VaeConfig};
/// let config = VaeConfig { latent_dim: 2, decoder: DecoderKind::Gaussian, ..Default::default() };
/// assert!(config.validate().is_ok());
/// assert!(VaeConfig { latent_dim: 0, ..Default::default() }.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaeConfig {
    /// MLP or convolutional networks (pytorch/examples: MLP).
    pub architecture: Architecture,
    /// Flattened input size `D` (MNIST: 784 = 28 × 28).
    pub input_dim: usize,
    /// Image channels, used by the convolutional architecture to see the
    /// input as `channels × side × side` (MNIST: 1).
    pub channels: usize,
    /// Hidden units `H` (pytorch/examples: 400).
    pub hidden_dim: usize,
    /// Latent size `Z` (pytorch/examples: 20).
    pub latent_dim: usize,
    /// Observation model (pytorch/examples: Bernoulli).
    pub decoder: DecoderKind,
    /// Prior (pytorch/examples: `N(0, I)`).
    pub prior: PriorKind,
    /// Weight `β` of the KL term (1 is the ELBO; Higgins et al.'s β-VAE
    /// uses `β > 1`).
    pub beta: f64,
    /// Samples `L` of `z` per example for the reconstruction term
    /// (pytorch/examples: 1).
    pub n_samples: usize,
    /// ELBO or IWAE (pytorch/examples: ELBO).
    pub objective: Objective,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self {
            architecture: Architecture::Mlp,
            input_dim: 784,
            channels: 1,
            hidden_dim: 400,
            latent_dim: 20,
            decoder: DecoderKind::Bernoulli,
            prior: PriorKind::Standard,
            beta: 1.0,
            n_samples: 1,
            objective: Objective::Elbo,
        }
    }
}

impl VaeConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field and its value: a zero size,
    /// `β` negative or not finite, `n_samples = 0`, IWAE with `k = 0` or with
    /// `β ≠ 1`, or (convolutional) an input that is not `channels × s × s`
    /// with `s` a multiple of 4.
    pub fn validate(&self) -> Result<()> {
        check_sizes(&[
            ("input_dim", self.input_dim),
            ("hidden_dim", self.hidden_dim),
            ("latent_dim", self.latent_dim),
            ("channels", self.channels),
        ])?;
        check_non_negative("beta", self.beta)?;
        if self.n_samples == 0 {
            return Err(Error::invalid_display(
                "n_samples",
                0,
                "at least one sample of z is needed",
            ));
        }
        if let Objective::Iwae { k } = self.objective {
            if k == 0 {
                return Err(Error::invalid_display(
                    "iwae_k",
                    0,
                    "at least one importance sample is needed",
                ));
            }
            if self.beta != 1.0 {
                return Err(Error::invalid_display(
                    "beta",
                    self.beta,
                    "the IWAE objective has no β; use β = 1",
                ));
            }
        }
        if self.architecture == Architecture::Conv {
            self.image_side()?;
        }
        Ok(())
    }

    /// A rough upper estimate of the bytes one training step on `batch`
    /// examples holds: `S · batch` rows (`S` = `n_samples`, or IWAE's `k`)
    /// of the noise, latent and hidden activations and decoder outputs, with
    /// their gradients, as `f32`. `None` when it overflows — far beyond any
    /// machine. A caller compares it with the memory it has before the first
    /// step, so that `n_samples = 10¹²` is a clear error, not an abort.
    pub fn step_bytes(&self, batch: usize) -> Option<u64> {
        let samples = match self.objective {
            Objective::Elbo => self.n_samples,
            Objective::Iwae { k } => k,
        } as u64;
        let (input, hidden, latent) = (self.input_dim as u64, self.hidden_dim as u64, self.latent_dim as u64);
        // Feature maps of the two stride-2 convolutions (32 and 64 channels).
        let conv = match self.architecture {
            Architecture::Mlp => 0,
            Architecture::Conv => (input / self.channels.max(1) as u64).checked_mul(32 / 4 + 64 / 16)?,
        };
        let per_row = input.checked_mul(4)?.checked_add(hidden.checked_mul(3)?)?;
        let per_row = per_row
            .checked_add(latent.checked_mul(4)?)?
            .checked_add(conv.checked_mul(3)?)?;
        // Forward values and their gradients, 4 bytes each.
        samples.checked_mul(batch as u64)?.checked_mul(per_row)?.checked_mul(8)
    }

    /// The side `s` of the `channels × s × s` images of the convolutional
    /// architecture.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `input_dim` is not `channels · s²` with
    /// `s` a positive multiple of 4.
    pub fn image_side(&self) -> Result<usize> {
        let pixels = self.input_dim / self.channels.max(1);
        let side = (pixels as f64).sqrt().round() as usize;
        if self.channels == 0 || pixels * self.channels != self.input_dim || side * side != pixels {
            return Err(Error::invalid_display(
                "input_dim",
                self.input_dim,
                format!("the convolutional VAE needs {} × s × s images", self.channels),
            ));
        }
        if side == 0 || !side.is_multiple_of(4) {
            return Err(Error::invalid_display(
                "input_dim",
                self.input_dim,
                format!("the convolutional VAE needs an image side divisible by 4, not {side}"),
            ));
        }
        Ok(side)
    }
}

/// [`Error::InvalidConfig`] for the first of the named sizes that is zero.
pub(crate) fn check_sizes(sizes: &[(&'static str, usize)]) -> Result<()> {
    match sizes.iter().find(|(_, value)| *value == 0) {
        Some(&(name, _)) => Err(Error::invalid_display(name, 0, "must be at least 1")),
        None => Ok(()),
    }
}

/// [`Error::InvalidConfig`] unless `value` is a finite number ≥ 0 (weights
/// such as `β` and `λ`; NaN is rejected too).
pub(crate) fn check_non_negative(name: &'static str, value: f64) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid_display(name, value, "must be a finite number ≥ 0"))
    }
}

/// The error for a text that names none of an option's choices.
pub(crate) fn unknown(name: &'static str, value: &str, expected: &str) -> Error {
    Error::invalid_display(name, format!("`{value}`"), format!("expected {expected}"))
}

/// Implements `Display` and `FromStr` for an enum of configuration choices
/// from one table of `Variant => "text"` pairs, so that a text form and its
/// parser cannot drift apart. `$name` names the option in errors, and
/// `$expected` says what it accepts.
macro_rules! text_enum {
    ($ty:ident, $name:literal, $expected:literal, $($variant:ident => $text:literal),+ $(,)?) => {
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(match self { $($ty::$variant => $text),+ })
            }
        }
        impl ::std::str::FromStr for $ty {
            type Err = $crate::Error;
            fn from_str(s: &str) -> $crate::Result<Self> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err($crate::config::unknown($name, s, $expected)),
                }
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(Architecture, "architecture", "mlp or conv", Mlp => "mlp", Conv => "conv");
text_enum!(
    DecoderKind,
    "decoder",
    "bernoulli, gaussian or gaussian-learned",
    Bernoulli => "bernoulli",
    Gaussian => "gaussian",
    GaussianLearned => "gaussian-learned",
);
text_enum!(OutputBias, "output_bias", "marginal or pytorch", Marginal => "marginal", Pytorch => "pytorch");
text_enum!(PriorKind, "prior", "standard or learned", Standard => "standard", Learned => "learned");

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Objective::Elbo => f.write_str("elbo"),
            Objective::Iwae { k } => write!(f, "iwae:{k}"),
        }
    }
}

impl FromStr for Objective {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once(':') {
            None if s == "elbo" => Ok(Objective::Elbo),
            Some(("iwae", k)) => k
                .parse()
                .map(|k| Objective::Iwae { k })
                .map_err(|_| unknown("objective", s, "elbo or iwae:K with K a count")),
            _ => Err(unknown("objective", s, "elbo or iwae:K")),
        }
    }
}

/// The objective is `"elbo"` or `"iwae:K"` in files, as on the command line.
impl TryFrom<String> for Objective {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Objective> for String {
    fn from(objective: Objective) -> String {
        objective.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The step estimate by hand for pytorch/examples' VAE, and `None` where
    /// it overflows.
    #[test]
    fn step_bytes_counts_rows_of_activations() {
        let vae = VaeConfig::default();
        // 128 rows × (4·784 + 3·400 + 4·20) floats × 8 bytes.
        assert_eq!(vae.step_bytes(128), Some(128 * (4 * 784 + 3 * 400 + 4 * 20) * 8));
        let five = VaeConfig {
            n_samples: 5,
            ..vae.clone()
        };
        assert_eq!(five.step_bytes(128), vae.step_bytes(5 * 128));
        let iwae = VaeConfig {
            objective: Objective::Iwae { k: 50 },
            ..vae.clone()
        };
        assert_eq!(iwae.step_bytes(2), vae.step_bytes(100));
        let conv = VaeConfig {
            architecture: Architecture::Conv,
            ..vae.clone()
        };
        assert!(conv.step_bytes(1) > vae.step_bytes(1));
        assert_eq!(
            VaeConfig {
                n_samples: usize::MAX,
                ..vae
            }
            .step_bytes(128),
            None
        );
    }

    #[test]
    fn serde_round_trips_and_rejects_unknown_keys() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let config = VaeConfig {
            architecture: Architecture::Conv,
            hidden_dim: 128,
            latent_dim: 2,
            decoder: DecoderKind::GaussianLearned,
            prior: PriorKind::Learned,
            objective: Objective::Iwae { k: 5 },
            beta: 1.0,
            ..Default::default()
        };
        let json = serde_json::to_string(&config)?;
        assert!(
            json.contains(r#""objective":"iwae:5""#) && json.contains(r#""decoder":"gaussian-learned""#),
            "{json}"
        );
        let back: VaeConfig = serde_json::from_str(&json)?;
        assert_eq!(back, config);
        let partial: VaeConfig = serde_json::from_str(r#"{"latent_dim": 2}"#)?;
        assert_eq!(
            partial,
            VaeConfig {
                latent_dim: 2,
                ..Default::default()
            }
        );
        let unknown = serde_json::from_str::<VaeConfig>(r#"{"colour": "red"}"#)
            .err()
            .map(|e| e.to_string());
        assert!(
            unknown.as_deref().is_some_and(|e| e.contains("unknown field `colour`")),
            "{unknown:?}"
        );
        let bad = serde_json::from_str::<VaeConfig>(r#"{"objective": "iwae:q"}"#)
            .err()
            .map(|e| e.to_string());
        assert!(bad.as_deref().is_some_and(|e| e.contains("iwae:K")), "{bad:?}");
        Ok(())
    }

    #[test]
    fn bad_values_name_themselves() {
        let message = |c: VaeConfig| c.validate().map_err(|e| e.to_string()).err().unwrap_or_default();
        assert_eq!(
            message(VaeConfig {
                latent_dim: 0,
                ..Default::default()
            }),
            "invalid latent_dim = 0: must be at least 1"
        );
        assert!(
            message(VaeConfig {
                beta: -1.0,
                ..Default::default()
            })
            .starts_with("invalid beta = -1")
        );
        assert!(
            message(VaeConfig {
                beta: f64::NAN,
                ..Default::default()
            })
            .starts_with("invalid beta = NaN")
        );
        let iwae0 = VaeConfig {
            objective: Objective::Iwae { k: 0 },
            ..Default::default()
        };
        assert!(message(iwae0).starts_with("invalid iwae_k = 0"));
        let conv = |input_dim| VaeConfig {
            architecture: Architecture::Conv,
            input_dim,
            ..Default::default()
        };
        assert!(message(conv(783)).contains("1 × s × s"));
        assert!(message(conv(100)).contains("divisible by 4"));
        assert!(conv(784).validate().is_ok());
        assert!("iwae:q".parse::<Objective>().is_err());
    }
}
