//! The prior `p(z)`: `N(0, I)`, or the learnable `N(μ_z, σ_z² I)` of seed 003.

use crate::config::{PriorKind, VaeConfig};
use candle::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};
use deepgen_numerics::DiagGaussian;

/// `N(0, I)` or `N(μ_z, σ_z² I)` over `Z` dims.
#[derive(Clone, Debug)]
pub struct Prior {
    /// `(μ_z [Z], log σ_z² [1])` when learned.
    learned: Option<(Tensor, Tensor)>,
    latent_dim: usize,
    dtype: DType,
    device: Device,
}

/// Builds the prior of `config`; a learned prior has variables `mean` `[Z]`
/// and `log_var` `[1]` under `vb`, initialised to 0 (so training starts from
/// `N(0, I)`).
///
/// # Errors
/// Candle errors from the variable store.
pub fn prior(config: &VaeConfig, vb: VarBuilder) -> crate::Result<Prior> {
    let learned = match config.prior {
        PriorKind::Standard => None,
        PriorKind::Learned => Some((
            vb.get_with_hints(config.latent_dim, "mean", Init::Const(0.0))?,
            vb.get_with_hints(1, "log_var", Init::Const(0.0))?,
        )),
    };
    Ok(Prior {
        learned,
        latent_dim: config.latent_dim,
        dtype: vb.dtype(),
        device: vb.device().clone(),
    })
}

impl Prior {
    /// `N(0, I)` over `latent_dim` dims.
    pub fn standard(latent_dim: usize, dtype: DType, device: &Device) -> Self {
        Self {
            learned: None,
            latent_dim,
            dtype,
            device: device.clone(),
        }
    }

    /// `N(μ_z, σ_z² I)` from ready-made `mean` `[Z]` and `log_var` `[1]`.
    ///
    /// # Errors
    /// [`crate::Error::BadShape`] for other shapes.
    pub fn learned(mean: Tensor, log_var: Tensor) -> crate::Result<Self> {
        let latent_dim = mean.dims1()?;
        if log_var.dims() != [1] {
            return Err(crate::Error::BadShape {
                what: "prior log_var",
                got: log_var.dims().to_vec(),
                expected: "[1] (one σ_z² for every dim)".into(),
            });
        }
        Ok(Self {
            dtype: mean.dtype(),
            device: mean.device().clone(),
            learned: Some((mean, log_var)),
            latent_dim,
        })
    }

    /// Which prior.
    pub fn kind(&self) -> PriorKind {
        match self.learned {
            Some(_) => PriorKind::Learned,
            None => PriorKind::Standard,
        }
    }

    /// The number of latent dims `Z`.
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    /// The prior as a `[1, Z]` diagonal Gaussian (it broadcasts over batches
    /// and samples).
    ///
    /// # Errors
    /// Candle errors only.
    pub fn distribution(&self) -> crate::Result<DiagGaussian> {
        let z = self.latent_dim;
        match &self.learned {
            None => Ok(DiagGaussian::standard_normal((1, z), self.dtype, &self.device)?),
            Some((mean, log_var)) => Ok(DiagGaussian::new(
                mean.reshape((1, z))?,
                log_var.reshape((1, 1))?.broadcast_as((1, z))?,
            )?),
        }
    }

    /// `KL(q ‖ p)` in closed form, per row of `q` (`[batch, Z]` → `[batch]`):
    /// `−½ Σ (1 + log σ² − μ² − σ²)` for `N(0, I)` (seed 002), the general
    /// diagonal-Gaussian formula for the learned prior.
    ///
    /// # Errors
    /// Candle errors when `q` does not have `Z` dims.
    pub fn kl(&self, q: &DiagGaussian) -> crate::Result<Tensor> {
        match &self.learned {
            None => Ok(q.kl_standard_normal()?),
            Some(_) => Ok(q.kl(&self.distribution()?)?),
        }
    }

    /// `log p(z)` summed over the last dim: `[.., Z]` → `[..]`.
    ///
    /// # Errors
    /// Candle errors when `zs` does not end in `Z`.
    pub fn log_prob(&self, zs: &Tensor) -> crate::Result<Tensor> {
        Ok(self.distribution()?.log_prob(zs)?)
    }

    /// `z = μ_z + σ_z ε` for standard-normal noise `eps` `[.., Z]`.
    ///
    /// # Errors
    /// Candle errors when `eps` does not end in `Z`.
    pub fn sample(&self, eps: &Tensor) -> crate::Result<Tensor> {
        match &self.learned {
            None => Ok(eps.to_dtype(self.dtype)?),
            Some(_) => Ok(self.distribution()?.rsample(eps)?),
        }
    }
}
