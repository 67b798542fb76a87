//! [`DiffusionModel`]: the trained network (`net.`) and its weight average
//! (`ema.`, kept by core's trainer), the schedule and the loss weights of a
//! [`DiffusionConfig`]. Images live in `[0, 1]` outside the model and in
//! `[−1, 1]` inside it, as in the PyTorch twin.

use crate::config::{DiffusionConfig, Network};
use crate::mlp::TimeMlp;
use crate::sampling::{Denoiser, sample};
use crate::schedule::NoiseSchedule;
use crate::scheduler::{SamplerConfig, StepOutput};
use crate::unet::UNet;
use crate::{Error, Result};
use candle::{DType, Tensor};
use candle_nn::VarBuilder;
use rand::Rng;

/// One denoising network.
#[derive(Debug, Clone)]
enum Net {
    Mlp(TimeMlp),
    Unet(Box<UNet>),
}

impl Net {
    fn new(config: &DiffusionConfig, vb: VarBuilder) -> Result<Self> {
        Ok(match config.network {
            Network::Mlp => Net::Mlp(TimeMlp::new(config.data_dim, &config.hidden, vb)?),
            Network::Unet => Net::Unet(Box::new(UNet::new(vb)?)),
        })
    }

    /// `x [n, D]` in network space, `t [n]` → `[n, D]`.
    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        match self {
            Net::Mlp(mlp) => mlp.forward(x, t),
            Net::Unet(unet) => {
                let n = x.dim(0)?;
                Ok(unet.forward(&x.reshape((n, 1, 28, 28))?, t)?.reshape((n, ()))?)
            }
        }
    }
}

/// A diffusion model.
#[derive(Debug, Clone)]
pub struct DiffusionModel {
    config: DiffusionConfig,
    schedule: NoiseSchedule,
    weights: Vec<f64>,
    net: Net,
    ema: Net,
}

impl DiffusionModel {
    /// The model of `config` under `vb` (`net.` and `ema.`).
    ///
    /// # Errors
    /// An invalid configuration; Candle errors.
    pub fn new(config: &DiffusionConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let schedule = NoiseSchedule::new(&config.schedule)?;
        let weights = config.weighting.weights(&schedule, config.prediction)?;
        Ok(Self {
            config: config.clone(),
            net: Net::new(config, vb.pp("net"))?,
            ema: Net::new(config, vb.pp("ema"))?,
            schedule,
            weights,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DiffusionConfig {
        &self.config
    }

    /// The noise schedule.
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// `γ_t` of every timestep.
    pub fn loss_weights(&self) -> &[f64] {
        &self.weights
    }

    /// The network's output for `x_t [n, D]` (network space) at timesteps
    /// `t [n]`; the weight average's when `averaged`.
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    pub fn forward(&self, x_t: &Tensor, t: &Tensor, averaged: bool) -> Result<Tensor> {
        let d = self.config.data_dim;
        if x_t.rank() != 2 || x_t.dim(1)? != d {
            return Err(Error::shape("x_t", x_t.dims(), format!("[n, {d}]")));
        }
        let net = if averaged { &self.ema } else { &self.net };
        net.forward(x_t, t)
    }

    /// Data (`[0, 1]` images, or points) to network space.
    ///
    /// # Errors
    /// Candle errors.
    pub fn to_network_space(&self, x: &Tensor) -> Result<Tensor> {
        Ok(if self.config.is_images() {
            ((x * 2.0)? - 1.0)?
        } else {
            x.clone()
        })
    }

    /// Network space to data (images clamped into `[0, 1]`).
    ///
    /// # Errors
    /// Candle errors.
    pub fn to_data_space(&self, x: &Tensor) -> Result<Tensor> {
        Ok(if self.config.is_images() {
            ((x + 1.0)? / 2.0)?.clamp(0.0, 1.0)?
        } else {
            x.clone()
        })
    }

    /// Samples from the weight average (`true`) or from the trained weights.
    pub fn sample_with_ema(&mut self, averaged: bool) {
        self.config.sample_with_ema = averaged;
    }

    /// The network as a [`Denoiser`] (the weight average when the config
    /// says `sample_with_ema`).
    pub fn denoiser(&self) -> ModelDenoiser<'_> {
        ModelDenoiser {
            model: self,
            averaged: self.config.sample_with_ema,
        }
    }

    /// Samples in data space from `x_T [n, D]` with `sampler`, noise from
    /// `rng`; `on_step(i, t, step)` sees each step in network space.
    ///
    /// # Errors
    /// An invalid sampler (S > T); Candle errors.
    pub fn generate_with(
        &self,
        sampler: &SamplerConfig,
        x_t: &Tensor,
        rng: &mut impl Rng,
        on_step: impl FnMut(usize, usize, &StepOutput) -> Result<()>,
    ) -> Result<Tensor> {
        let mut scheduler = sampler.scheduler(&self.schedule, self.config.prediction)?;
        let x = sample(&self.denoiser(), scheduler.as_mut(), x_t, rng, on_step)?;
        self.to_data_space(&x)
    }
}

/// A [`DiffusionModel`]'s network answering for one timestep.
#[derive(Debug, Clone, Copy)]
pub struct ModelDenoiser<'a> {
    model: &'a DiffusionModel,
    averaged: bool,
}

impl Denoiser for ModelDenoiser<'_> {
    fn predict(&self, x_t: &Tensor, t: usize) -> Result<Tensor> {
        let n = x_t.dim(0)?;
        let steps = Tensor::full(t as f32, n, x_t.device())?.to_dtype(DType::F32)?;
        Ok(self.model.forward(x_t, &steps, self.averaged)?.detach())
    }
}
