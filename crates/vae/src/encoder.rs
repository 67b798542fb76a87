//! The Gaussian encoder `q_φ(z|x) = N(μ_φ(x), diag σ²_φ(x))` with a
//! log-variance head.

use crate::config::{Architecture, VaeConfig};
use candle::{Module, Tensor};
use candle_nn::VarBuilder;
use deepgen_core::nn::{Conv2d, Linear, Relu, conv2d, linear};
use deepgen_numerics::DiagGaussian;

/// Channels of the two stride-2 convolutions of the convolutional networks.
pub(crate) const CONV_CHANNELS: [usize; 2] = [32, 64];

#[derive(Clone, Debug)]
enum Body {
    /// `h = relu(W x + b)` (pytorch/examples' `fc1`).
    Mlp { hidden: Linear },
    /// `x → conv 4×4/2 → relu → conv 4×4/2 → relu → flatten → fc → relu`.
    Conv {
        conv1: Conv2d,
        conv2: Conv2d,
        hidden: Linear,
        channels: usize,
        side: usize,
    },
}

/// `x ↦ (μ, log σ²)`: a body of one hidden ReLU layer (MLP) or two
/// convolutions and a hidden layer (conv), then two linear heads.
#[derive(Clone, Debug)]
pub struct Encoder {
    body: Body,
    mean: Linear,
    log_var: Linear,
}

/// Builds the encoder of `config` under `vb` (`hidden`, `mean`, `log_var`;
/// plus `conv1`, `conv2` for the convolutional one).
///
/// # Errors
/// An invalid configuration; Candle errors from the variable store.
pub fn encoder(config: &VaeConfig, vb: VarBuilder) -> crate::Result<Encoder> {
    config.validate()?;
    let (input, hidden_dim, latent) = (config.input_dim, config.hidden_dim, config.latent_dim);
    let body = match config.architecture {
        Architecture::Mlp => Body::Mlp {
            hidden: linear(input, hidden_dim, vb.pp("hidden"))?,
        },
        Architecture::Conv => {
            let side = config.image_side()?;
            let [c1, c2] = CONV_CHANNELS;
            Body::Conv {
                conv1: conv2d(config.channels, c1, 4, 2, 1, vb.pp("conv1"))?,
                conv2: conv2d(c1, c2, 4, 2, 1, vb.pp("conv2"))?,
                hidden: linear(c2 * (side / 4) * (side / 4), hidden_dim, vb.pp("hidden"))?,
                channels: config.channels,
                side,
            }
        }
    };
    Ok(Encoder {
        body,
        mean: linear(hidden_dim, latent, vb.pp("mean"))?,
        log_var: linear(hidden_dim, latent, vb.pp("log_var"))?,
    })
}

impl Encoder {
    /// From ready-made layers (an MLP encoder): `hidden` `D → H`, `mean` and
    /// `log_var` `H → Z`.
    pub fn new(hidden: Linear, mean: Linear, log_var: Linear) -> Self {
        Self {
            body: Body::Mlp { hidden },
            mean,
            log_var,
        }
    }

    /// The parameters of `q(z|x)`: `xs` `[batch, D]` → `(mean, log_var)`,
    /// each `[batch, Z]`.
    ///
    /// # Errors
    /// Candle errors, e.g. an input that is not `[batch, D]`.
    pub fn forward(&self, xs: &Tensor) -> candle::Result<(Tensor, Tensor)> {
        let (batch, _dim) = xs.dims2()?;
        let h = match &self.body {
            Body::Mlp { hidden } => xs.apply(hidden)?.apply(&Relu)?,
            Body::Conv {
                conv1,
                conv2,
                hidden,
                channels,
                side,
            } => xs
                .reshape((batch, *channels, *side, *side))?
                .apply(conv1)?
                .apply(&Relu)?
                .apply(conv2)?
                .apply(&Relu)?
                .flatten_from(1)?
                .apply(hidden)?
                .apply(&Relu)?,
        };
        Ok((h.apply(&self.mean)?, h.apply(&self.log_var)?))
    }

    /// `q(z|x)` as a distribution, `[batch, Z]`.
    ///
    /// # Errors
    /// As [`Encoder::forward`].
    pub fn posterior(&self, xs: &Tensor) -> crate::Result<DiagGaussian> {
        let (mean, log_var) = self.forward(xs)?;
        Ok(DiagGaussian::new(mean, log_var)?)
    }
}

impl Module for Encoder {
    /// The posterior mean `μ_φ(x)` (the code of a deterministic encoder).
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        Encoder::forward(self, xs).map(|(mean, _)| mean)
    }
}
