//! [`GanConfig`]: plain serde data (a TOML table in a run's `config.toml`,
//! JSON in checkpoints; missing keys keep their defaults, unknown keys are
//! errors), with its validation.

use crate::loss::GanLoss;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Flattened size of a 28×28 image, the DCGAN pair's data.
pub const IMAGE_DIM: usize = 28 * 28;

/// Which generator and discriminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// MLPs for low-dimensional points ([`crate::mlp`]).
    Mlp,
    /// The DCGAN pair for 28×28 images ([`crate::dcgan`]).
    #[default]
    Dcgan,
}

deepgen_core::named_choices!(Network, "network" {
    Mlp => "mlp",
    Dcgan => "dcgan",
});

/// How the MLP pair's new weights and biases are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MlpInit {
    /// PyTorch's `nn.Linear` default: weights and biases `U(−1/√fan_in, 1/√fan_in)`.
    #[default]
    Pytorch,
    /// PacGAN's (its Blocks code: `IsotropicGaussian(0.02)`, `Constant(0)`):
    /// weights `N(0, 0.02²)`, biases 0.
    Pacgan,
}

deepgen_core::named_choices!(MlpInit, "init" {
    Pytorch => "pytorch",
    Pacgan => "pacgan",
});

/// How a packed MLP discriminator's first layer reads the `K` samples of a
/// pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PackInput {
    /// PacGAN's: one layer over the concatenated `K·d` values, so that every
    /// first-layer unit mixes the `K` samples before its nonlinearity.
    #[default]
    Joint,
    /// The first layer's units applied to each sample alone, with the same
    /// weights, `h_k = a(W x_k + b)`, and the next layer over the
    /// concatenation `[h_1 … h_K]`: a joint first layer whose weight is the
    /// block-diagonal `diag(W, …, W)`. Every sample is then seen at the
    /// resolution of an unpacked discriminator, and the pack's joint
    /// statistics from the second layer on.
    PerSample,
}

deepgen_core::named_choices!(PackInput, "pack input" {
    Joint => "joint",
    PerSample => "per-sample",
});

/// A GAN's networks, loss and regularisers.
///
/// `Default` is the DCGAN of `anchors/torch_dcgan_mnist.py`: 100-dim
/// latent, the non-saturating loss, no packing, no penalty.
/// [`GanConfig::points`] is the MLP pair of PacGAN's 2-D experiments.
///
/// ```
/// use deepgen_gan::{GanConfig, GanLoss};
/// assert!(GanConfig::default().validate().is_ok());
/// let wgan = GanConfig { loss: GanLoss::Wasserstein, gradient_penalty: 10.0, ..GanConfig::points(2) };
/// assert!(wgan.validate().is_ok());
/// // A penalty needs the MLP discriminator's written-out input gradient.
/// assert!(GanConfig { gradient_penalty: 10.0, ..Default::default() }.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GanConfig {
    /// The generator and discriminator.
    pub network: Network,
    /// Size of one data point (2 for the 2-D sets; 784 for the DCGAN).
    pub data_dim: usize,
    /// Size of the noise `z ~ N(0, I)` (DCGAN: 100; PacGAN's 2-D runs: 2).
    pub latent_dim: usize,
    /// MLP generator's hidden widths (PacGAN: four layers of 400 ReLU units).
    pub generator_hidden: Vec<usize>,
    /// Batch norm after each hidden layer of the MLP generator (PacGAN: yes).
    pub generator_batch_norm: bool,
    /// MLP discriminator's hidden widths (PacGAN: three layers of 200).
    pub discriminator_hidden: Vec<usize>,
    /// Linear pieces of each MLP discriminator unit: maxout with `k ≥ 2`
    /// (PacGAN: 5), leaky ReLU with 1.
    pub maxout: usize,
    /// How the MLP pair's weights start (the DCGAN's are always PyTorch's,
    /// as the anchor's).
    pub init: MlpInit,
    /// The adversarial loss.
    pub loss: GanLoss,
    /// Samples per discriminator input (PacGAN's `m`; 1: no packing).
    pub pack: usize,
    /// How the MLP discriminator's first layer reads a pack (PacGAN:
    /// [`PackInput::Joint`]); the DCGAN pair stacks a pack's images as
    /// channels and is always joint.
    pub pack_input: PackInput,
    /// Weight `λ` of the WGAN-GP penalty (0: none; Gulrajani et al.: 10).
    pub gradient_penalty: f64,
    /// Weight `γ` of the R1 penalty `γ/2 E‖∇D(x)‖²` (0: none).
    pub r1: f64,
    /// Decay `d` of a moving average of the generator's weights and batch-norm
    /// statistics, `w̄ ← d w̄ + (1 − d) w` after every step (with diffusers'
    /// warm-up, core's [`deepgen_core::WeightAverage`]); samples come from it.
    /// It changes no step of training, only what is sampled: the average
    /// smooths the oscillation of a generator trained at a constant learning
    /// rate (ProGAN, StyleGAN and BigGAN sample so). 0: none, the default.
    pub ema_decay: f64,
}

impl Default for GanConfig {
    fn default() -> Self {
        Self {
            network: Network::Dcgan,
            data_dim: IMAGE_DIM,
            latent_dim: 100,
            generator_hidden: vec![400; 4],
            generator_batch_norm: true,
            discriminator_hidden: vec![200; 3],
            maxout: 5,
            init: MlpInit::Pytorch,
            loss: GanLoss::NonSaturating,
            pack: 1,
            pack_input: PackInput::Joint,
            gradient_penalty: 0.0,
            r1: 0.0,
            ema_decay: 0.0,
        }
    }
}

impl GanConfig {
    /// PacGAN's 2-D networks for `data_dim`-dimensional points: a 2-dim
    /// latent, generator 4 × 400 ReLU with batch norm, discriminator 3 × 200 maxout with 5
    /// pieces.
    pub fn points(data_dim: usize) -> Self {
        Self {
            network: Network::Mlp,
            data_dim,
            latent_dim: 2,
            ..Default::default()
        }
    }

    /// Whether the model generates 28×28 images (rather than points).
    pub fn is_images(&self) -> bool {
        self.network == Network::Dcgan
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad value.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("data_dim", self.data_dim),
            ("latent_dim", self.latent_dim),
            ("maxout", self.maxout),
            ("pack", self.pack),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::invalid_display(name, 0, "must be at least 1"));
            }
        }
        for (name, widths) in [
            ("generator_hidden", &self.generator_hidden),
            ("discriminator_hidden", &self.discriminator_hidden),
        ] {
            if widths.contains(&0) {
                return Err(Error::invalid_display(
                    name,
                    format!("{widths:?}"),
                    "every layer needs a unit",
                ));
            }
        }
        for (name, value) in [("gradient_penalty", self.gradient_penalty), ("r1", self.r1)] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(Error::invalid_display(name, value, "a finite weight ≥ 0 (0: off)"));
            }
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(Error::invalid_display(
                "ema_decay",
                self.ema_decay,
                "must be in [0, 1) (0: no average)",
            ));
        }
        if self.network == Network::Dcgan && self.data_dim != IMAGE_DIM {
            return Err(Error::invalid_display(
                "data_dim",
                self.data_dim,
                format!("the DCGAN pair generates 28×28 images ({IMAGE_DIM} values); use network = mlp for points"),
            ));
        }
        if self.network == Network::Dcgan && self.init != MlpInit::Pytorch {
            return Err(Error::invalid_display(
                "init",
                self.init,
                "only the MLP pair has a choice of initialisation; the DCGAN pair starts as the anchor's (pytorch)",
            ));
        }
        if self.pack_input == PackInput::PerSample {
            if self.network != Network::Mlp {
                return Err(Error::invalid_display(
                    "pack_input",
                    self.pack_input,
                    "only the MLP discriminator reads a pack per sample; the DCGAN's stacks it as channels (joint)",
                ));
            }
            if self.discriminator_hidden.is_empty() {
                return Err(Error::invalid_display(
                    "pack_input",
                    self.pack_input,
                    "a per-sample first layer needs a hidden layer in the discriminator",
                ));
            }
        }
        let penalised = self.gradient_penalty > 0.0 || self.r1 > 0.0;
        if penalised && self.network != Network::Mlp {
            return Err(Error::invalid_display(
                "network",
                self.network,
                "gradient and R1 penalties need the MLP discriminator (its input gradient is written out layer \
                 by layer; the DCGAN discriminator's batch norm couples the examples of a batch)",
            ));
        }
        if self.loss == GanLoss::Wasserstein && self.gradient_penalty == 0.0 {
            return Err(Error::invalid_display(
                "loss",
                self.loss,
                "a Wasserstein critic is unbounded without a Lipschitz constraint: set gradient_penalty (--gp 10)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named() {
        let bad = [
            (
                GanConfig {
                    pack: 0,
                    ..Default::default()
                },
                "pack",
            ),
            (
                GanConfig {
                    gradient_penalty: -1.0,
                    ..GanConfig::points(2)
                },
                "gradient_penalty",
            ),
            (
                GanConfig {
                    r1: f64::NAN,
                    ..GanConfig::points(2)
                },
                "r1",
            ),
            (
                GanConfig {
                    latent_dim: 0,
                    ..Default::default()
                },
                "latent_dim",
            ),
            (
                GanConfig {
                    discriminator_hidden: vec![200, 0],
                    ..GanConfig::points(2)
                },
                "discriminator_hidden",
            ),
            (
                GanConfig {
                    data_dim: 2,
                    ..Default::default()
                },
                "data_dim",
            ),
            (
                GanConfig {
                    r1: 1.0,
                    ..Default::default()
                },
                "network",
            ),
            (
                GanConfig {
                    loss: GanLoss::Wasserstein,
                    ..GanConfig::points(2)
                },
                "loss",
            ),
            (
                GanConfig {
                    init: MlpInit::Pacgan,
                    ..Default::default()
                },
                "init",
            ),
            (
                GanConfig {
                    pack_input: PackInput::PerSample,
                    ..Default::default()
                },
                "pack_input",
            ),
            (
                GanConfig {
                    pack_input: PackInput::PerSample,
                    discriminator_hidden: vec![],
                    ..GanConfig::points(2)
                },
                "pack_input",
            ),
            (
                GanConfig {
                    ema_decay: 1.0,
                    ..Default::default()
                },
                "ema_decay",
            ),
            (
                GanConfig {
                    ema_decay: f64::NAN,
                    ..GanConfig::points(2)
                },
                "ema_decay",
            ),
        ];
        for (config, name) in bad {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn round_trips_through_json_and_rejects_unknown_keys() {
        let config = GanConfig {
            pack: 4,
            init: MlpInit::Pacgan,
            ..GanConfig::points(2)
        };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<GanConfig>(&json).unwrap(), config);
        assert!(serde_json::from_str::<GanConfig>(r#"{"packs": 4}"#).is_err());
        let partial: GanConfig = serde_json::from_str(r#"{"loss": "hinge"}"#).unwrap();
        assert_eq!(
            partial,
            GanConfig {
                loss: GanLoss::Hinge,
                ..Default::default()
            }
        );
    }
}
