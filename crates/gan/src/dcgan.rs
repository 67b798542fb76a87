//! The DCGAN pair for 28×28 images, layer for layer the one of
//! `anchors/torch_dcgan_mnist.py` (PyTorch's default initialisation):
//!
//! ```text
//! G: Linear(100, 128·7·7) → [128, 7, 7] → BatchNorm → ReLU
//!    → ConvTranspose(128, 64, 4, 2, 1) → BatchNorm → ReLU → ConvTranspose(64, 1, 4, 2, 1) → tanh
//! D: Conv(1, 64, 4, 2, 1) → LeakyReLU(0.2) → Conv(64, 128, 4, 2, 1) → BatchNorm → LeakyReLU(0.2)
//!    → flatten → Linear(128·7·7, 1)
//! ```
//!
//! Batch norm normalises by the batch's statistics in training and by its
//! running statistics (momentum 0.1, unbiased variance: PyTorch's rule) in
//! evaluation; the running statistics are variables of the model, so they
//! are saved in the checkpoint. With packing, D's first convolution reads
//! `K` channels.

use crate::Result;
use candle::{ModuleT, Tensor};
use candle_nn::VarBuilder;
use deepgen_core::nn::{BatchNorm, Conv2d, ConvTranspose2d, Linear, batch_norm, conv_transpose2d, conv2d, linear};
use deepgen_core::ops::Activation;

/// Channels of G's first feature map (and D's last).
const WIDE: usize = 128;
/// Channels of G's second feature map (and D's first).
const NARROW: usize = 64;
/// Side of the smallest feature map.
const SIDE: usize = 7;
/// D's leaky ReLU.
const LEAKY: Activation = Activation::LeakyRelu(0.2);

/// DCGAN's generator: `z [n, latent] → images [n, 1, 28, 28]` in `[−1, 1]`.
#[derive(Debug, Clone)]
pub struct DcganGenerator {
    project: Linear,
    bn0: BatchNorm,
    up1: ConvTranspose2d,
    bn1: BatchNorm,
    up2: ConvTranspose2d,
}

impl DcganGenerator {
    /// The generator under `vb`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn new(latent_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            project: linear(latent_dim, WIDE * SIDE * SIDE, vb.pp("project"))?,
            bn0: batch_norm(WIDE, vb.pp("bn0"))?,
            up1: conv_transpose2d(WIDE, NARROW, 4, 2, 1, vb.pp("up1"))?,
            bn1: batch_norm(NARROW, vb.pp("bn1"))?,
            up2: conv_transpose2d(NARROW, 1, 4, 2, 1, vb.pp("up2"))?,
        })
    }
}

impl ModuleT for DcganGenerator {
    /// Batch statistics when `train` (and the running ones updated), the
    /// running statistics otherwise.
    fn forward_t(&self, z: &Tensor, train: bool) -> candle::Result<Tensor> {
        let n = z.dim(0)?;
        let h = candle::Module::forward(&self.project, z)?.reshape((n, WIDE, SIDE, SIDE))?;
        let h = self.bn0.forward_act(&h, train, Activation::Relu)?;
        let h = candle::Module::forward(&self.up1, &h)?;
        let h = self.bn1.forward_act(&h, train, Activation::Relu)?;
        candle::Module::forward(&self.up2, &h)?.tanh()
    }
}

/// DCGAN's discriminator: images `[n, K, 28, 28]` (`K` packed images) → logits `[n]`.
#[derive(Debug, Clone)]
pub struct DcganDiscriminator {
    down1: Conv2d,
    down2: Conv2d,
    bn2: BatchNorm,
    output: Linear,
}

impl DcganDiscriminator {
    /// The discriminator of packs of `pack` images under `vb`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn new(pack: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            down1: conv2d(pack, NARROW, 4, 2, 1, vb.pp("down1"))?,
            down2: conv2d(NARROW, WIDE, 4, 2, 1, vb.pp("down2"))?,
            bn2: batch_norm(WIDE, vb.pp("bn2"))?,
            output: linear(WIDE * SIDE * SIDE, 1, vb.pp("output"))?,
        })
    }

    /// The same discriminator with parameters that take no gradient (the
    /// generator's step); the running statistics are shared.
    pub fn detached(&self) -> Self {
        Self {
            down1: self.down1.detached(),
            down2: self.down2.detached(),
            bn2: self.bn2.detached(),
            output: self.output.detached(),
        }
    }
}

impl ModuleT for DcganDiscriminator {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle::Result<Tensor> {
        let h = self.down1.forward_act(x, LEAKY)?;
        let h = candle::Module::forward(&self.down2, &h)?;
        let h = self.bn2.forward_act(&h, train, LEAKY)?;
        candle::Module::forward(&self.output, &h.flatten_from(1)?)?.squeeze(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};
    use candle_nn::VarMap;

    /// The pair has the anchor's parameter counts: G 766,017 (weights
    /// and biases; batch norm's affine parameters included, its running
    /// statistics not), D 138,817 + 256 running statistics.
    #[test]
    fn shapes_and_parameter_counts_match_the_anchor() -> Result<()> {
        let varmap = VarMap::new();
        let vb = deepgen_core::seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
        let g = DcganGenerator::new(100, vb.pp("generator"))?;
        let d = DcganDiscriminator::new(1, vb.pp("discriminator"))?;
        let z = Tensor::zeros((4, 100), DType::F32, &Device::Cpu)?;
        let x = g.forward_t(&z, true)?;
        assert_eq!(x.dims(), &[4, 1, 28, 28]);
        assert_eq!(d.forward_t(&x, true)?.dims(), &[4]);
        let count = |prefix: &str| -> usize {
            varmap
                .data()
                .lock()
                .unwrap()
                .iter()
                .filter(|(n, _)| n.starts_with(prefix) && !n.contains("running_"))
                .map(|(_, v)| v.elem_count())
                .sum()
        };
        // PyTorch: sum(p.numel() for p in G.parameters()), the same for D.
        let g_expected = 100 * 6272 + 6272 + 2 * 128 + 128 * 64 * 16 + 64 + 2 * 64 + 64 * 16 + 1;
        let d_expected = 64 * 16 + 64 + 64 * 128 * 16 + 128 + 2 * 128 + 6272 + 1;
        assert_eq!(count("generator."), g_expected);
        assert_eq!(count("discriminator."), d_expected);
        Ok(())
    }
}
