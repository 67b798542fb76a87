//! [`VaeConfig`] and the choices it is made of, with their validation and a
//! one-line text form that checkpoints store so a run directory describes its
//! own model.

use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The encoder and decoder networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

/// The observation model `p_θ(x|z)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PriorKind {
    /// `N(0, I)`.
    #[default]
    Standard,
    /// `N(μ_z, σ_z² I)` with `μ_z ∈ R^Z` and one `σ_z²` learned (seed 003).
    Learned,
}

/// What training minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
#[derive(Debug, Clone, PartialEq)]
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
            return Err(Error::invalid("n_samples", 0, "at least one sample of z is needed"));
        }
        if let Objective::Iwae { k } = self.objective {
            if k == 0 {
                return Err(Error::invalid("iwae_k", 0, "at least one importance sample is needed"));
            }
            if self.beta != 1.0 {
                return Err(Error::invalid(
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
            return Err(Error::invalid(
                "input_dim",
                self.input_dim,
                format!("the convolutional VAE needs {} × s × s images", self.channels),
            ));
        }
        if side == 0 || side % 4 != 0 {
            return Err(Error::invalid(
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
        Some(&(name, _)) => Err(Error::invalid(name, 0, "must be at least 1")),
        None => Ok(()),
    }
}

/// [`Error::InvalidConfig`] unless `value` is a finite number ≥ 0 (weights
/// such as `β` and `λ`; NaN is rejected too).
pub(crate) fn check_non_negative(name: &'static str, value: f64) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(name, value, "must be a finite number ≥ 0"))
    }
}

/// One `key=value` item of a configuration's text form, with readers whose
/// errors name the item.
pub(crate) struct TextItem<'a> {
    /// The key, matched against the configuration's field names.
    pub(crate) key: &'a str,
    value: &'a str,
}

impl TextItem<'_> {
    fn bad(&self, what: &str) -> Error {
        Error::BadDescription(format!("{} = `{}`: {what}", self.key, self.value))
    }

    /// The value as a count.
    pub(crate) fn count(&self) -> Result<usize> {
        self.value.parse().map_err(|_| self.bad("not a count"))
    }

    /// The value as a number.
    pub(crate) fn number(&self) -> Result<f64> {
        self.value.parse().map_err(|_| self.bad("not a number"))
    }

    /// The value as one of an enum's text forms (see [`text_enum`]).
    pub(crate) fn choice<T: FromStr<Err = Error>>(&self) -> Result<T> {
        self.value.parse()
    }

    /// The error for a key the configuration does not have.
    pub(crate) fn unknown_key(&self) -> Error {
        Error::BadDescription(format!("unknown key `{}`", self.key))
    }
}

/// Hands every white-space separated `key=value` item of `text` to `set`, in
/// order: the reading half of every configuration's one-line text form.
///
/// # Errors
/// [`Error::BadDescription`] for an item without `=`; whatever `set` returns.
pub(crate) fn read_items(text: &str, mut set: impl FnMut(&TextItem<'_>) -> Result<()>) -> Result<()> {
    for item in text.split_whitespace() {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| Error::BadDescription(format!("`{item}` is not key=value")))?;
        set(&TextItem { key, value })?;
    }
    Ok(())
}

/// The error for a text that names none of an option's choices.
pub(crate) fn unknown(name: &'static str, value: &str, expected: &str) -> Error {
    Error::invalid(name, format!("`{value}`"), format!("expected {expected}"))
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

/// A configuration's one-line text form, which checkpoints store so that a
/// run directory describes its own model. The `text_form!` macro implements
/// it from the configuration's list of fields.
pub trait ConfigText: PartialEq + Sized {
    /// `field=value` for every field, in a fixed order, separated by spaces.
    fn to_text(&self) -> String;

    /// Reads [`ConfigText::to_text`]'s form back (missing fields keep their
    /// defaults) and validates the result.
    ///
    /// # Errors
    /// [`Error::BadDescription`] for an unknown key or a value that does not
    /// parse; [`Error::InvalidConfig`] for an invalid configuration.
    fn parse(text: &str) -> Result<Self>;
}

/// Implements a configuration's text form (as inherent `to_text` and `parse`
/// and as [`ConfigText`]) from one list of `field: reader` pairs, so that the
/// writer and the reader cannot drift apart; the reader is `count`, `number`
/// or `choice` (an enum of [`text_enum`]), and the list order is the text's.
macro_rules! text_form {
    ($ty:ident { $($field:ident: $read:ident),+ $(,)? }) => {
        impl $ty {
            /// The one-line text form stored in checkpoints: `field=value`
            /// for every field, separated by spaces; `parse` reads it back.
            pub fn to_text(&self) -> String {
                [$(format!(concat!(stringify!($field), "={}"), self.$field)),+].join(" ")
            }

            /// Parses `to_text`'s form (missing keys keep their defaults) and
            /// validates the result.
            ///
            /// # Errors
            /// [`Error::BadDescription`](crate::Error::BadDescription) for an
            /// unknown key or a value that does not parse; then as `validate`.
            pub fn parse(text: &str) -> $crate::Result<Self> {
                let mut config = Self::default();
                $crate::config::read_items(text, |item| {
                    match item.key {
                        $(stringify!($field) => config.$field = item.$read()?,)+
                        _ => return Err(item.unknown_key()),
                    }
                    Ok(())
                })?;
                config.validate()?;
                Ok(config)
            }
        }

        impl $crate::config::ConfigText for $ty {
            fn to_text(&self) -> String {
                $ty::to_text(self)
            }

            fn parse(text: &str) -> $crate::Result<Self> {
                $ty::parse(text)
            }
        }
    };
}
pub(crate) use text_form;

text_form!(VaeConfig {
    architecture: choice,
    input_dim: count,
    channels: count,
    hidden_dim: count,
    latent_dim: count,
    decoder: choice,
    prior: choice,
    beta: number,
    n_samples: count,
    objective: choice,
});

text_enum!(Architecture, "architecture", "mlp or conv", Mlp => "mlp", Conv => "conv");
text_enum!(
    DecoderKind,
    "decoder",
    "bernoulli, gaussian or gaussian-learned",
    Bernoulli => "bernoulli",
    Gaussian => "gaussian",
    GaussianLearned => "gaussian-learned",
);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() -> Result<()> {
        let config = VaeConfig {
            architecture: Architecture::Conv,
            hidden_dim: 128,
            latent_dim: 2,
            decoder: DecoderKind::GaussianLearned,
            prior: PriorKind::Learned,
            objective: Objective::Iwae { k: 5 },
            ..Default::default()
        };
        assert_eq!(VaeConfig::parse(&config.to_text())?, config);
        let beta = VaeConfig {
            beta: 0.25,
            ..Default::default()
        };
        assert_eq!(VaeConfig::parse(&beta.to_text())?, beta);
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
        assert!(VaeConfig::parse("latent_dim=x").is_err());
        assert!(VaeConfig::parse("colour=red").is_err());
        assert!("iwae:q".parse::<Objective>().is_err());
    }
}
