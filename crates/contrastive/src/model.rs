//! [`SimClr`]: the encoder `f` (`net.encoder.`, a deepgen-cnn network),
//! the projection head `g` (`net.head.`) and, when configured, the memory
//! bank of negatives (`bank.features`, kept in the checkpoint but trained
//! by no optimizer).

use crate::augment::as_images;
use crate::config::SimClrConfig;
use crate::{Error, Result};
use candle::{DType, Device, Module, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use deepgen_cnn::{Cnn, cnn};
use deepgen_core::batch_ranges;
use deepgen_core::nn::{Linear, linear};
use rand::Rng;

/// A SimCLR model.
#[derive(Debug, Clone)]
pub struct SimClr {
    config: SimClrConfig,
    image: (usize, usize, usize),
    encoder: Cnn,
    head: Vec<Linear>,
    bank: Option<Var>,
}

impl SimClr {
    /// The model of `config` under `vb`.
    ///
    /// # Errors
    /// An invalid configuration; Candle errors.
    pub fn new(config: &SimClrConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let spec = config.encoder_spec()?;
        let net = vb.pp("net");
        let encoder = cnn(&spec, net.pp("encoder"))?;
        let mut width = config.representation_dim()?;
        let mut head = Vec::with_capacity(config.projection.len());
        for (i, &out) in config.projection.iter().enumerate() {
            head.push(linear(width, out, net.pp("head").pp(i.to_string()))?);
            width = out;
        }
        let bank = if config.memory_bank_size > 0 {
            // Empty rows: the loss uses only the rows filled so far.
            let features =
                vb.pp("bank")
                    .get_with_hints((config.memory_bank_size, width), "features", Init::Const(0.0))?;
            Some(Var::from_tensor(&features)?)
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            image: config.image_shape()?,
            encoder,
            head,
            bank,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SimClrConfig {
        &self.config
    }

    /// The device of the parameters.
    pub fn device(&self) -> &Device {
        self.encoder.device()
    }

    /// The encoder `f`.
    pub fn encoder(&self) -> &Cnn {
        &self.encoder
    }

    /// `(C, H, W)` of the images it takes.
    pub fn image_shape(&self) -> (usize, usize, usize) {
        self.image
    }

    /// The representation `h = f(x)` of images `[n, C, H, W]` (or rows
    /// `[n, C·H·W]`): `[n, F]`.
    ///
    /// # Errors
    /// Shapes; Candle errors.
    pub fn represent(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(self.encoder.forward(xs)?)
    }

    /// The projection `z = g(h)`: `[n, projection.last()]`.
    ///
    /// # Errors
    /// Shapes; Candle errors.
    pub fn project(&self, h: &Tensor) -> Result<Tensor> {
        let mut z = h.clone();
        for (i, layer) in self.head.iter().enumerate() {
            z = layer.forward(&z)?;
            if i + 1 < self.head.len() {
                z = deepgen_core::ops::relu(&z)?;
            }
        }
        Ok(z)
    }

    /// Two views of each image of `images` (rows or `[n, C, H, W]`), drawn
    /// one after the other from `rng` by the configured augmentations.
    ///
    /// # Errors
    /// Shapes; Candle errors.
    pub fn views(&self, images: &Tensor, rng: &mut impl Rng) -> Result<(Tensor, Tensor)> {
        let xs = as_images(images, self.image)?;
        let first = self.config.augmentations.apply(&xs, rng)?;
        let second = self.config.augmentations.apply(&xs, rng)?;
        Ok((first, second))
    }

    /// The frozen representations `h` of `images` `[n, …]` (on any device),
    /// computed in batches of `batch_size` on the model's device: `[n, F]`
    /// on the CPU, as the probes take them.
    ///
    /// # Errors
    /// Shapes; Candle errors.
    pub fn features(&self, images: &Tensor, batch_size: usize) -> Result<Tensor> {
        let n = images.dim(0)?;
        let mut parts = Vec::new();
        for (start, len) in batch_ranges(n, batch_size) {
            let xs = images.narrow(0, start, len)?.to_device(self.device())?;
            parts.push(self.represent(&xs)?.detach().to_device(&Device::Cpu)?);
        }
        if parts.is_empty() {
            return Err(Error::shape("images", images.dims(), "[n, …] with n ≥ 1"));
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// The memory bank `[M, d]`, if configured.
    pub fn bank(&self) -> Option<&Tensor> {
        self.bank.as_deref()
    }

    /// Writes `z` `[N, d]` (detached) into the bank at rows
    /// `(offset + k) mod M`: a ring that a resumed run refills exactly as an
    /// uninterrupted one, given `offset = steps before · N`.
    ///
    /// # Errors
    /// A width other than the bank's; Candle errors.
    pub fn enqueue(&self, z: &Tensor, offset: usize) -> Result<()> {
        let Some(bank) = &self.bank else {
            return Ok(());
        };
        let (m, d) = bank.dims2()?;
        let (n, dz) = z.dims2()?;
        if dz != d {
            return Err(Error::shape("enqueued features", z.dims(), format!("[N, {d}]")));
        }
        let rows: Vec<u32> = (0..m)
            .map(|r| {
                // The last batch row written to bank row r, if any: the largest k < N with k ≡ r − offset (mod M).
                let first = (r + m - offset % m) % m;
                if first < n {
                    (m + first + m * ((n - 1 - first) / m)) as u32
                } else {
                    r as u32
                }
            })
            .collect();
        let rows = Tensor::from_vec(rows, m, bank.device())?;
        let z = z.detach().to_dtype(DType::F32)?;
        // Rows 0..M are the bank, M..M+N the batch.
        let pool = Tensor::cat(&[bank.as_tensor(), &z], 0)?;
        bank.set(&pool.index_select(&rows, 0)?)?;
        Ok(())
    }
}
