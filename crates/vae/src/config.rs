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
        for (name, value) in [
            ("input_dim", self.input_dim),
            ("hidden_dim", self.hidden_dim),
            ("latent_dim", self.latent_dim),
            ("channels", self.channels),
        ] {
            if value == 0 {
                return Err(Error::invalid(name, 0, "must be at least 1"));
            }
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return Err(Error::invalid("beta", self.beta, "must be a finite number ≥ 0"));
        }
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

    /// The one-line text form stored in checkpoints, e.g.
    /// `architecture=mlp input_dim=784 … objective=elbo`; [`VaeConfig::parse`]
    /// reads it back.
    pub fn to_text(&self) -> String {
        format!(
            "architecture={} input_dim={} channels={} hidden_dim={} latent_dim={} decoder={} prior={} beta={} \
             n_samples={} objective={}",
            self.architecture,
            self.input_dim,
            self.channels,
            self.hidden_dim,
            self.latent_dim,
            self.decoder,
            self.prior,
            self.beta,
            self.n_samples,
            self.objective
        )
    }

    /// Parses [`VaeConfig::to_text`]'s form (missing keys keep their
    /// defaults) and validates the result.
    ///
    /// # Errors
    /// [`Error::BadDescription`] for an unknown key or a value that does not
    /// parse; then as [`VaeConfig::validate`].
    pub fn parse(text: &str) -> Result<Self> {
        let mut config = VaeConfig::default();
        for item in text.split_whitespace() {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| Error::BadDescription(format!("`{item}` is not key=value")))?;
            let bad = |what: &str| Error::BadDescription(format!("{key} = `{value}`: {what}"));
            let count = || value.parse::<usize>().map_err(|_| bad("not a count"));
            match key {
                "architecture" => config.architecture = value.parse()?,
                "input_dim" => config.input_dim = count()?,
                "channels" => config.channels = count()?,
                "hidden_dim" => config.hidden_dim = count()?,
                "latent_dim" => config.latent_dim = count()?,
                "decoder" => config.decoder = value.parse()?,
                "prior" => config.prior = value.parse()?,
                "beta" => config.beta = value.parse().map_err(|_| bad("not a number"))?,
                "n_samples" => config.n_samples = count()?,
                "objective" => config.objective = value.parse()?,
                _ => return Err(Error::BadDescription(format!("unknown key `{key}`"))),
            }
        }
        config.validate()?;
        Ok(config)
    }
}

fn unknown(name: &'static str, value: &str, expected: &str) -> Error {
    Error::invalid(name, format!("`{value}`"), format!("expected {expected}"))
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Architecture::Mlp => "mlp",
            Architecture::Conv => "conv",
        })
    }
}

impl FromStr for Architecture {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mlp" => Ok(Architecture::Mlp),
            "conv" => Ok(Architecture::Conv),
            _ => Err(unknown("architecture", s, "mlp or conv")),
        }
    }
}

impl fmt::Display for DecoderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecoderKind::Bernoulli => "bernoulli",
            DecoderKind::Gaussian => "gaussian",
            DecoderKind::GaussianLearned => "gaussian-learned",
        })
    }
}

impl FromStr for DecoderKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bernoulli" => Ok(DecoderKind::Bernoulli),
            "gaussian" => Ok(DecoderKind::Gaussian),
            "gaussian-learned" => Ok(DecoderKind::GaussianLearned),
            _ => Err(unknown("decoder", s, "bernoulli, gaussian or gaussian-learned")),
        }
    }
}

impl fmt::Display for PriorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PriorKind::Standard => "standard",
            PriorKind::Learned => "learned",
        })
    }
}

impl FromStr for PriorKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "standard" => Ok(PriorKind::Standard),
            "learned" => Ok(PriorKind::Learned),
            _ => Err(unknown("prior", s, "standard or learned")),
        }
    }
}

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
