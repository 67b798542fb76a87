//! The observation models `p_θ(x|z)`: Bernoulli (logits), Gaussian with unit
//! variance, Gaussian with a learned diagonal variance `σ(NN_β(z))`.

use crate::config::{Architecture, DecoderKind, OutputBias, VaeConfig};
use crate::encoder::CONV_CHANNELS;
use candle::{D, Tensor, Var};
use candle_nn::VarBuilder;
use deepgen_core::nn::{ConvTranspose2d, Linear, Relu, conv_transpose2d, linear};
use deepgen_numerics::{DiagGaussian, bce_with_logits_rows, log_sigmoid, sigmoid};

/// `½ ln 2π`.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// How far from 0 and 1 the data's pixel means are kept before their logit
/// in [`Decoder::init_output_bias`]: MNIST's border pixels are 0 in every
/// image, and `logit(10⁻³) ≈ −6.9` is a finite bias that training can move.
pub const MARGINAL_CLAMP: f64 = 1e-3;

#[derive(Clone, Debug)]
enum Body {
    /// `z → relu(fc) → fc` (pytorch/examples' `fc3`, `fc4`); `log_var` is the
    /// second output head of the learned-variance decoder.
    Mlp {
        hidden: Linear,
        out: Linear,
        log_var: Option<Linear>,
    },
    /// `z → relu(fc) → relu(fc) → reshape → relu(convT 4×4/2) → convT 4×4/2`;
    /// the learned-variance decoder's last layer has twice the channels.
    Conv {
        hidden: Linear,
        expand: Linear,
        deconv1: ConvTranspose2d,
        deconv2: ConvTranspose2d,
        channels: usize,
        side: usize,
    },
}

/// The decoder network with its observation model.
#[derive(Clone, Debug)]
pub struct Decoder {
    kind: DecoderKind,
    body: Body,
}

/// What the decoder network gives for a batch of latents.
#[derive(Clone, Debug)]
pub struct DecoderOutput {
    /// `[n, D]`: the logits of a Bernoulli decoder, the mean of a Gaussian one.
    pub loc: Tensor,
    /// `[n, D]` `log σ²` of the learned-variance Gaussian decoder.
    pub log_var: Option<Tensor>,
}

/// Builds the decoder of `config` under `vb` (`hidden`, `out`, `log_var`;
/// `hidden`, `expand`, `deconv1`, `deconv2` for the convolutional one).
///
/// # Errors
/// An invalid configuration; Candle errors from the variable store.
pub fn decoder(config: &VaeConfig, vb: VarBuilder) -> crate::Result<Decoder> {
    config.validate()?;
    let (input, hidden_dim, latent) = (config.input_dim, config.hidden_dim, config.latent_dim);
    let learned = config.decoder == DecoderKind::GaussianLearned;
    let body = match config.architecture {
        Architecture::Mlp => Body::Mlp {
            hidden: linear(latent, hidden_dim, vb.pp("hidden"))?,
            out: linear(hidden_dim, input, vb.pp("out"))?,
            log_var: learned
                .then(|| linear(hidden_dim, input, vb.pp("log_var")))
                .transpose()?,
        },
        Architecture::Conv => {
            let side = config.image_side()?;
            let [c1, c2] = CONV_CHANNELS;
            let out_channels = if learned { 2 * config.channels } else { config.channels };
            Body::Conv {
                hidden: linear(latent, hidden_dim, vb.pp("hidden"))?,
                expand: linear(hidden_dim, c2 * (side / 4) * (side / 4), vb.pp("expand"))?,
                deconv1: conv_transpose2d(c2, c1, 4, 2, 1, vb.pp("deconv1"))?,
                deconv2: conv_transpose2d(c1, out_channels, 4, 2, 1, vb.pp("deconv2"))?,
                channels: config.channels,
                side,
            }
        }
    };
    Ok(Decoder {
        kind: config.decoder,
        body,
    })
}

impl Decoder {
    /// From ready-made layers (an MLP decoder): `hidden` `Z → H`, `out`
    /// `H → D`, and for [`DecoderKind::GaussianLearned`] the `log_var` head
    /// `H → D` (ignored by the other kinds).
    pub fn new(kind: DecoderKind, hidden: Linear, out: Linear, log_var: Option<Linear>) -> Self {
        let log_var = log_var.filter(|_| kind == DecoderKind::GaussianLearned);
        Self {
            kind,
            body: Body::Mlp { hidden, out, log_var },
        }
    }

    /// The observation model.
    pub fn kind(&self) -> DecoderKind {
        self.kind
    }

    /// Runs the network: `zs` `[n, Z]` → logits or means `[n, D]` (and
    /// `log σ² = log σ(NN_β(z))` for the learned variance).
    ///
    /// # Errors
    /// Candle errors, e.g. `zs` not `[n, Z]`.
    pub fn forward(&self, zs: &Tensor) -> candle::Result<DecoderOutput> {
        let (n, _latent) = zs.dims2()?;
        let numerics = |e: deepgen_numerics::Error| candle::Error::msg(e.to_string());
        match &self.body {
            Body::Mlp { hidden, out, log_var } => {
                let h = zs.apply(hidden)?.apply(&Relu)?;
                let log_var = match log_var {
                    Some(head) => Some(log_sigmoid(&h.apply(head)?).map_err(numerics)?),
                    None => None,
                };
                Ok(DecoderOutput {
                    loc: h.apply(out)?,
                    log_var,
                })
            }
            Body::Conv {
                hidden,
                expand,
                deconv1,
                deconv2,
                channels,
                side,
            } => {
                let [_, c2] = CONV_CHANNELS;
                let ys = zs
                    .apply(hidden)?
                    .apply(&Relu)?
                    .apply(expand)?
                    .apply(&Relu)?
                    .reshape((n, c2, side / 4, side / 4))?
                    .apply(deconv1)?
                    .apply(&Relu)?
                    .apply(deconv2)?;
                if self.kind == DecoderKind::GaussianLearned {
                    let loc = ys.narrow(1, 0, *channels)?.flatten_from(1)?;
                    let head = ys.narrow(1, *channels, *channels)?.flatten_from(1)?;
                    Ok(DecoderOutput {
                        loc,
                        log_var: Some(log_sigmoid(&head).map_err(numerics)?),
                    })
                } else {
                    Ok(DecoderOutput {
                        loc: ys.flatten_from(1)?,
                        log_var: None,
                    })
                }
            }
        }
    }

    /// `−log p(x|z)` per row, in nats: targets `xs` `[m, D]` and the output
    /// for `n` latents (`m` dividing `n`; row `i` is scored against target
    /// row `i mod m`, so `K` stacked samples of a batch share its targets)
    /// → `[n]`.
    ///
    /// - Bernoulli: `Σ_j softplus(l_j) − l_j x_j` (BCE with logits, summed);
    /// - Gaussian: `½ Σ_j (x_j − μ_j)² + (D/2) ln 2π`;
    /// - learned variance: `½ Σ_j [(x_j − μ_j)²/σ_j² + log σ_j² + ln 2π]`.
    ///
    /// # Errors
    /// [`crate::Error::BadShape`] when the shapes do not fit.
    pub fn neg_log_prob(&self, xs: &Tensor, output: &DecoderOutput) -> crate::Result<Tensor> {
        let (n, d) = output.loc.dims2()?;
        let m = match *xs.dims() {
            [m, xd] if xd == d && m > 0 && n % m == 0 => m,
            _ => {
                return Err(crate::Error::BadShape {
                    what: "decoder targets",
                    got: xs.dims().to_vec(),
                    expected: format!("[m, {d}] with m dividing {n}"),
                });
            }
        };
        let stacked = |t: &Tensor| t.reshape((n / m, m, d));
        let xs = xs.to_dtype(output.loc.dtype())?;
        match (self.kind, &output.log_var) {
            (DecoderKind::Bernoulli, _) => Ok(bce_with_logits_rows(&output.loc, &xs)?),
            (DecoderKind::GaussianLearned, Some(log_var)) => {
                let gaussian = DiagGaussian::new(stacked(&output.loc)?, stacked(log_var)?)?;
                Ok(gaussian.log_prob(&xs)?.neg()?.reshape(n)?)
            }
            _ => {
                let sq = stacked(&output.loc)?.broadcast_sub(&xs)?.sqr()?.sum(D::Minus1)?;
                Ok(sq.reshape(n)?.affine(0.5, d as f64 * HALF_LN_2PI)?)
            }
        }
    }

    /// Sets the output layer's bias from the data, so that with its output
    /// weights at zero the decoder's mean is the data's per-pixel mean `x̄`:
    ///
    /// ```text
    /// Bernoulli:  b_j = log(x̄_j / (1 − x̄_j)),  x̄_j clamped to [10⁻³, 1 − 10⁻³]
    /// Gaussian:   b_j = x̄_j
    /// ```
    ///
    /// That is the maximum-likelihood model of independent pixels (Hinton's
    /// guide to training RBMs starts visible biases at these log-odds), so the
    /// first steps learn how digits differ from the mean image instead of
    /// the mean image itself. The convolutional decoder has one bias per
    /// channel: it takes the channel's mean over all its pixels. The
    /// learned-variance head keeps its initialisation. `images` `[n, D]`
    /// (flattened, as the VAE takes them) are the training data.
    ///
    /// # Errors
    /// [`crate::Error::BadShape`] when `images` is not `[n, D]` with `n ≥ 1`;
    /// [`crate::Error::InvalidConfig`] when the bias is not a trainable
    /// variable (a decoder built from plain tensors).
    pub fn init_output_bias(&self, images: &Tensor) -> crate::Result<()> {
        // The bias, and for the convolutional decoder its image channels.
        let (bias, channels) = match &self.body {
            Body::Mlp { out, .. } => (out.bias(), None),
            Body::Conv {
                deconv2,
                channels,
                side,
                ..
            } => (deconv2.bias(), Some((*channels, side * side))),
        };
        let width = bias.dim(0)?;
        let d = channels.map_or(width, |(c, pixels)| c * pixels);
        let n = match *images.dims() {
            [n, xd] if xd == d && n > 0 => n,
            _ => {
                return Err(crate::Error::BadShape {
                    what: "images for the output bias",
                    got: images.dims().to_vec(),
                    expected: format!("[n ≥ 1, {d}]"),
                });
            }
        };
        if !bias.is_variable() {
            return Err(crate::Error::invalid_display(
                "output bias",
                "a plain tensor",
                "a decoder built from plain tensors has no variable to initialise",
            ));
        }
        let images = images.to_dtype(bias.dtype())?.to_device(bias.device())?;
        let pixel_mean = match channels {
            None => images.mean(0)?,
            Some((c, pixels)) => images.reshape((n, c, pixels))?.mean(2)?.mean(0)?,
        };
        let loc = match self.kind {
            DecoderKind::Bernoulli => {
                let p = pixel_mean.clamp(MARGINAL_CLAMP, 1.0 - MARGINAL_CLAMP)?;
                (p.log()? - p.affine(-1.0, 1.0)?.log()?)?
            }
            DecoderKind::Gaussian | DecoderKind::GaussianLearned => pixel_mean,
        };
        let value = match loc.dim(0)? {
            len if len == width => loc,
            len => Tensor::cat(&[&loc, &bias.narrow(0, len, width - len)?.copy()?], 0)?,
        };
        Ok(Var::from_tensor(bias)?.set(&value)?)
    }

    /// Starts the output bias as `start` says: the data's marginal
    /// ([`Self::init_output_bias`] on `images`) or nn.Linear's
    /// `U(±1/√fan_in)`, which the decoder was built with (left as it is).
    ///
    /// # Errors
    /// Those of [`Self::init_output_bias`] for [`OutputBias::Marginal`].
    pub fn start_output_bias(&self, start: OutputBias, images: &Tensor) -> crate::Result<()> {
        match start {
            OutputBias::Marginal => self.init_output_bias(images),
            OutputBias::Pytorch => Ok(()),
        }
    }

    /// `E[x|z]`, what pictures show: `σ(logits)` or the Gaussian mean.
    ///
    /// # Errors
    /// Candle errors only.
    pub fn mean(&self, output: &DecoderOutput) -> crate::Result<Tensor> {
        match self.kind {
            DecoderKind::Bernoulli => Ok(sigmoid(&output.loc)?),
            DecoderKind::Gaussian | DecoderKind::GaussianLearned => Ok(output.loc.clone()),
        }
    }
}
