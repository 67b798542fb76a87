//! [`ScoreModel`]: a [`ScoreNet`] built from a [`ScoreConfig`] (variables
//! under `score.`), evaluated at a noise level.

use crate::config::ScoreConfig;
use crate::network::ScoreNet;
use crate::{Error, Result};
use candle::Tensor;
use candle_nn::VarBuilder;

/// A trained or training score model.
#[derive(Debug, Clone)]
pub struct ScoreModel {
    config: ScoreConfig,
    net: ScoreNet,
}

impl ScoreModel {
    /// The network of `config` under `vb`.
    ///
    /// # Errors
    /// An invalid configuration; Candle errors.
    pub fn new(config: &ScoreConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let net = ScoreNet::new(
            config.data_dim,
            &config.hidden,
            config.noise_conditional,
            vb.pp("score"),
        )?;
        Ok(Self {
            config: config.clone(),
            net,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ScoreConfig {
        &self.config
    }

    /// The network.
    pub fn net(&self) -> &ScoreNet {
        &self.net
    }

    /// `s_θ(x, σ)` for `x [n, d]` at one level `sigma` (ignored by an
    /// unconditional network).
    ///
    /// # Errors
    /// `sigma ≤ 0` for a noise-conditional network; shape errors.
    pub fn score_at_level(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        if !self.config.noise_conditional {
            return self.net.score(x, None);
        }
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(Error::invalid(
                "sigma",
                sigma,
                "a noise-conditional network is evaluated at a positive σ (its smallest level is σ_L)",
            ));
        }
        let sigma = Tensor::full(sigma, x.dim(0)?, x.device())?.to_dtype(x.dtype())?;
        self.net.score(x, Some(&sigma))
    }
}
