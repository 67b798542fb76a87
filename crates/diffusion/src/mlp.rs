//! A time-conditioned MLP for low-dimensional data: the timestep's
//! sinusoidal embedding goes through `Linear → SiLU` and is concatenated
//! to every hidden layer's input,
//!
//! ```text
//! e = SiLU(W_e sin-emb(t) + b_e),  h₀ = x,  h_{i+1} = SiLU(W_i [h_i, e] + b_i),  out = W_o h_L + b_o
//! ```

use crate::Result;
use crate::embedding::sinusoidal_embedding;
use candle::{Module, Tensor};
use candle_nn::VarBuilder;
use deepgen_core::nn::{Linear, linear};

/// Width of the sinusoidal embedding.
const SINUSOID_DIM: usize = 64;
/// Width of the learned time embedding.
const TIME_DIM: usize = 128;

/// The MLP denoiser.
#[derive(Debug, Clone)]
pub struct TimeMlp {
    time: Linear,
    hidden: Vec<Linear>,
    output: Linear,
}

impl TimeMlp {
    /// `data_dim → hidden… → data_dim` under `vb`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn new(data_dim: usize, hidden: &[usize], vb: VarBuilder) -> Result<Self> {
        let mut layers = Vec::with_capacity(hidden.len());
        let mut width = data_dim;
        for (i, &h) in hidden.iter().enumerate() {
            layers.push(linear(width + TIME_DIM, h, vb.pp(format!("hidden.{i}")))?);
            width = h;
        }
        Ok(Self {
            time: linear(SINUSOID_DIM, TIME_DIM, vb.pp("time"))?,
            hidden: layers,
            output: linear(width, data_dim, vb.pp("output"))?,
        })
    }

    /// The output at `x [n, d]` and timesteps `t [n]`.
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let e = self.time.forward(&sinusoidal_embedding(t, SINUSOID_DIM)?)?.silu()?;
        let mut h = x.clone();
        for layer in &self.hidden {
            h = layer.forward(&Tensor::cat(&[&h, &e], 1)?)?.silu()?;
        }
        Ok(self.output.forward(&h)?)
    }
}
