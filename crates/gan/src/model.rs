//! [`Gan`]: a generator and a discriminator built from a [`GanConfig`],
//! with the conversions between data space (what batches and pictures hold:
//! points, or images `[n, 784]` in `[0, 1]`) and network space (the DCGAN
//! works on `[n, 1, 28, 28]` in `[−1, 1]`). With `ema_decay > 0` a second
//! generator under `ema.` holds the moving average of the trained one's
//! weights (kept by core's trainer), and samples come from it.

use crate::config::{GanConfig, Network, PackInput};
use crate::dcgan::{DcganDiscriminator, DcganGenerator};
use crate::mlp::{MlpDiscriminator, MlpGenerator};
use crate::pack::pack;
use crate::{Error, Result};
use candle::{Module, ModuleT, Tensor};
use candle_nn::VarBuilder;

/// The generator of either network.
#[derive(Debug, Clone)]
enum Generator {
    Mlp(MlpGenerator),
    Dcgan(DcganGenerator),
}

/// The discriminator of either network.
#[derive(Debug, Clone)]
enum Discriminator {
    Mlp(MlpDiscriminator),
    Dcgan(DcganDiscriminator),
}

impl Generator {
    /// The generator of `config` under `vb`.
    fn new(config: &GanConfig, vb: VarBuilder) -> Result<Self> {
        Ok(match config.network {
            Network::Mlp => Generator::Mlp(MlpGenerator::new(
                config.latent_dim,
                &config.generator_hidden,
                config.data_dim,
                config.generator_batch_norm,
                config.init,
                vb,
            )?),
            Network::Dcgan => Generator::Dcgan(DcganGenerator::new(config.latent_dim, vb)?),
        })
    }

    fn forward_t(&self, z: &Tensor, train: bool) -> candle::Result<Tensor> {
        match self {
            Generator::Mlp(g) => g.forward_t(z, train),
            Generator::Dcgan(g) => g.forward_t(z, train),
        }
    }
}

/// A GAN: `G: z ↦ x` and `D: x ↦ logit` (variables under `generator.` and
/// `discriminator.`, the trainer's two optimizer groups), and the moving
/// average of `G` under `ema.` when the config keeps one.
#[derive(Debug, Clone)]
pub struct Gan {
    config: GanConfig,
    generator: Generator,
    discriminator: Discriminator,
    average: Option<Generator>,
    sample_with_average: bool,
}

impl Gan {
    /// The networks of `config` under `vb`.
    ///
    /// # Errors
    /// An invalid configuration; Candle errors.
    pub fn new(config: &GanConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        // Initial weights are drawn per variable name (core's seeded
        // builder), so adding the average changes none of the others.
        let generator = Generator::new(config, vb.pp("generator"))?;
        let d = vb.pp("discriminator");
        let discriminator = match config.network {
            Network::Mlp => Discriminator::Mlp(match config.pack_input {
                PackInput::Joint => MlpDiscriminator::new(
                    config.data_dim * config.pack,
                    &config.discriminator_hidden,
                    config.maxout,
                    config.init,
                    d,
                )?,
                PackInput::PerSample => MlpDiscriminator::per_sample(
                    config.data_dim,
                    config.pack,
                    &config.discriminator_hidden,
                    config.maxout,
                    config.init,
                    d,
                )?,
            }),
            Network::Dcgan => Discriminator::Dcgan(DcganDiscriminator::new(config.pack, d)?),
        };
        let average = if config.ema_decay > 0.0 {
            // Its variables mirror those under `generator.`, paired by name
            // by core's `WeightAverage` (see `TrainableModel::weight_average`).
            Some(Generator::new(config, vb.pp("ema"))?)
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            generator,
            discriminator,
            average,
            sample_with_average: true,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GanConfig {
        &self.config
    }

    /// Samples in data space from noise `z` `[n, latent_dim]`, with batch
    /// norm in evaluation mode (PyTorch's `G.eval()`), from the weight
    /// average when the model keeps one (see [`Gan::sample_with_average`]).
    ///
    /// # Errors
    /// A noise batch of the wrong width; Candle errors.
    pub fn generate(&self, z: &Tensor) -> Result<Tensor> {
        self.check_noise(z)?;
        let generator = match &self.average {
            Some(average) if self.sample_with_average => average,
            _ => &self.generator,
        };
        self.to_data_space(&generator.forward_t(z, false)?)
    }

    /// Whether the model keeps a moving average of the generator's weights.
    pub fn has_average(&self) -> bool {
        self.average.is_some()
    }

    /// Sample from the weight average (`true`, the default) or from the
    /// trained weights; without an average, always the trained weights.
    pub fn sample_with_average(&mut self, averaged: bool) {
        self.sample_with_average = averaged;
    }

    /// `G(z)` in network space; batch statistics when `train`.
    ///
    /// # Errors
    /// A noise batch of the wrong width; Candle errors.
    pub fn generator_forward(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        self.check_noise(z)?;
        Ok(self.generator.forward_t(z, train)?)
    }

    fn check_noise(&self, z: &Tensor) -> Result<()> {
        if z.rank() != 2 || z.dim(1)? != self.config.latent_dim {
            return Err(Error::BadShape {
                what: "noise",
                got: z.dims().to_vec(),
                expected: format!("[n, {}]", self.config.latent_dim),
            });
        }
        Ok(())
    }

    /// `D` of the packs of `xs` (network space, a multiple of the pack size
    /// of samples): `[n / pack]` logits.
    ///
    /// # Errors
    /// A batch that does not pack; Candle errors.
    pub fn discriminate(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let packed = pack(xs, self.config.pack)?;
        Ok(match &self.discriminator {
            Discriminator::Mlp(d) => d.forward(&packed)?,
            Discriminator::Dcgan(d) => d.forward_t(&packed, train)?,
        })
    }

    /// [`Gan::discriminate`] with D's parameters held fixed: the same
    /// values, and a backward pass that computes gradients for `xs` (the
    /// generator) but not for D's weights, which the generator's step does
    /// not use (PyTorch's twin computes and discards them). D's running
    /// statistics are still updated in training mode.
    ///
    /// # Errors
    /// As [`Gan::discriminate`].
    pub fn discriminate_fixed(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let packed = pack(xs, self.config.pack)?;
        Ok(match &self.discriminator {
            Discriminator::Mlp(d) => d.detached().forward(&packed)?,
            Discriminator::Dcgan(d) => d.detached().forward_t(&packed, train)?,
        })
    }

    /// The discriminator as an [`InputGradient`] (of packed inputs), for
    /// the penalties; `None` for the DCGAN.
    pub fn penalisable(&self) -> Option<&MlpDiscriminator> {
        match &self.discriminator {
            Discriminator::Mlp(d) => Some(d),
            Discriminator::Dcgan(_) => None,
        }
    }

    /// Data-space rows `[n, data_dim]` (images in `[0, 1]`) in network
    /// space (images `[n, 1, 28, 28]` in `[−1, 1]`).
    ///
    /// # Errors
    /// Rows of the wrong width; Candle errors.
    pub fn to_network_space(&self, xs: &Tensor) -> Result<Tensor> {
        if xs.rank() != 2 || xs.dim(1)? != self.config.data_dim {
            return Err(Error::BadShape {
                what: "data batch",
                got: xs.dims().to_vec(),
                expected: format!("[n, {}]", self.config.data_dim),
            });
        }
        Ok(match self.config.network {
            Network::Mlp => xs.clone(),
            Network::Dcgan => xs.affine(2.0, -1.0)?.reshape((xs.dim(0)?, 1, 28, 28))?,
        })
    }

    /// The inverse of [`Gan::to_network_space`] (images clamped to `[0, 1]`).
    ///
    /// # Errors
    /// Candle errors.
    pub fn to_data_space(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(match self.config.network {
            Network::Mlp => xs.clone(),
            Network::Dcgan => xs.affine(0.5, 0.5)?.clamp(0.0, 1.0)?.reshape((xs.dim(0)?, ()))?,
        })
    }
}
