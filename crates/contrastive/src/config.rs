//! [`SimClrConfig`]: the encoder's spec, the projection head, the
//! temperature, the memory bank and the augmentation recipe.

use crate::augment::Augmentations;
use crate::{Error, Result};
use deepgen_cnn::{Dims, Spec};
use serde::{Deserialize, Serialize};

/// The anchor's encoder (`torch_simclr_mnist.py`): two 3 × 3 convolutions
/// with max pooling and a 128-unit layer, ReLU after every layer
/// (`-relu` on the last token, which is otherwise linear in the spec
/// language).
pub const DEFAULT_ENCODER: &str = "INPUT-28x28x1 CONV-3-32-p1 POOL-2 CONV-3-64-p1 POOL-2 FLATTEN FC-128-relu";

/// A SimCLR model: encoder `f` (a deepgen-cnn spec), projection head `g`,
/// NT-Xent at temperature τ.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimClrConfig {
    /// The encoder `f` in deepgen-cnn's spec language; it takes images and
    /// ends in a vector `h`. Default [`DEFAULT_ENCODER`].
    pub encoder: String,
    /// Widths of the projection head's layers after `h` (ReLU between, the
    /// last linear). Default `[128, 64]`, the anchor's 128 → 128 → 64.
    pub projection: Vec<usize>,
    /// NT-Xent's temperature τ > 0. Default 0.5 (the anchor's).
    pub temperature: f64,
    /// Negatives kept from earlier batches (lightly's `memory_bank_size`);
    /// 0, the default, contrasts within the batch only.
    pub memory_bank_size: usize,
    /// How each view is drawn. Default [`Augmentations::mnist_default`].
    pub augmentations: Augmentations,
}

impl Default for SimClrConfig {
    fn default() -> Self {
        Self {
            encoder: DEFAULT_ENCODER.to_string(),
            projection: vec![128, 64],
            temperature: 0.5,
            memory_bank_size: 0,
            augmentations: Augmentations::mnist_default(),
        }
    }
}

impl SimClrConfig {
    /// The parsed encoder spec, checked: it takes an image and ends in a
    /// vector.
    ///
    /// # Errors
    /// A spec that does not parse or fit, takes a vector, or ends in an
    /// image.
    pub fn encoder_spec(&self) -> Result<Spec> {
        let spec = Spec::parse(&self.encoder)?;
        if !matches!(spec.input(), Dims::Image { .. }) {
            return Err(Error::invalid(
                "encoder",
                &self.encoder,
                "the encoder must take images (INPUT-HxWxC): the views are warped, cropped and blurred",
            ));
        }
        let output = spec.table()?.output();
        if !matches!(output, Dims::Flat(_)) {
            return Err(Error::invalid(
                "encoder",
                &self.encoder,
                format!("its output {output} is not a vector: end the spec with FLATTEN or FC-N"),
            ));
        }
        Ok(spec)
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad value.
    pub fn validate(&self) -> Result<()> {
        self.encoder_spec()?;
        if self.projection.is_empty() || self.projection.contains(&0) {
            return Err(Error::invalid(
                "projection",
                &self.projection,
                "one or more positive widths",
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::invalid(
                "temperature",
                self.temperature,
                "τ must be a positive number",
            ));
        }
        self.augmentations.validate()
    }

    /// `(C, H, W)` of the encoder's input.
    ///
    /// # Errors
    /// As [`Self::encoder_spec`].
    pub fn image_shape(&self) -> Result<(usize, usize, usize)> {
        match self.encoder_spec()?.input() {
            Dims::Image {
                height,
                width,
                channels,
            } => Ok((channels, height, width)),
            Dims::Flat(_) => Err(Error::invalid("encoder", &self.encoder, "takes images")),
        }
    }

    /// The width of the representation `h`.
    ///
    /// # Errors
    /// As [`Self::encoder_spec`].
    pub fn representation_dim(&self) -> Result<usize> {
        match self.encoder_spec()?.table()?.output() {
            Dims::Flat(d) => Ok(d),
            other => Err(Error::invalid("encoder", other.to_string(), "ends in a vector")),
        }
    }
}
