//! The builder: a [`Spec`] becomes a Candle module.
//!
//! Parameters live under `layers.<position>.weight` and
//! `layers.<position>.bias`, where `position` is the layer's 1-based place in
//! the spec (`INPUT` is 1), so `layers.2.weight` is the kernel of the second
//! token. A checkpoint of a different spec therefore fails to load with the
//! name of the first tensor that is missing or has the wrong shape.

use crate::layers::{Conv, ConvTranspose, avg_pool, conv, conv_activated, conv_transpose, fc, max_pool};
use crate::spec::{Activation, Dims, Layer, Spec};
use crate::{Result, ShapeTable};
use candle::{Device, Module, Tensor};
use candle_nn::VarBuilder;
use deepgen_core::nn::Linear;

/// One built layer.
#[derive(Clone, Debug)]
enum Block {
    Conv(Conv),
    ConvTranspose(ConvTranspose),
    MaxPool(usize),
    AvgPool(usize),
    Flatten,
    Fc(Linear),
}

impl Block {
    /// The layer followed by its activation.
    fn forward_activated(&self, xs: &Tensor, activation: Activation) -> candle::Result<Tensor> {
        match self {
            Block::Conv(layer) => conv_activated(layer, xs, activation),
            Block::ConvTranspose(layer) => conv_activated(layer, xs, activation),
            Block::MaxPool(k) => activation.apply(&max_pool(xs, *k)?),
            Block::AvgPool(k) => activation.apply(&avg_pool(xs, *k)?),
            Block::Flatten => activation.apply(&xs.flatten_from(1)?),
            Block::Fc(layer) => activation.apply(&layer.forward(xs)?),
        }
    }
}

/// A network built from a [`Spec`]: each layer followed by its activation.
#[derive(Clone, Debug)]
pub struct Cnn {
    spec: Spec,
    table: ShapeTable,
    blocks: Vec<(Block, Activation)>,
    device: Device,
}

/// Builds `spec` with its parameters under `vb` (see the module docs for
/// their names). The parameter count equals `spec.table()?.total_parameters()`.
///
/// ```
/// use deepgen_core::candle::{DType, Device, Module, Tensor};
/// use deepgen_core::candle_nn::VarMap;
/// let spec: deepgen_cnn::Spec = "INPUT-12x12x1 CONV-3-4 POOL-2 FLATTEN FC-10".parse()?;
/// let varmap = VarMap::new();
/// let vb = deepgen_core::seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
/// let net = deepgen_cnn::cnn(&spec, vb)?;
/// let logits = net.forward(&Tensor::zeros((2, 1, 12, 12), DType::F32, &Device::Cpu)?)?;
/// assert_eq!(logits.dims(), &[2, 10]);
/// assert_eq!(net.n_parameters(), (4 * 9 + 4) + (100 * 10 + 10));
/// # Ok::<(), deepgen_cnn::Error>(())
/// ```
///
/// # Errors
/// The errors of [`Spec::table`] for a layer that does not fit; a Candle
/// error if `vb` cannot provide a parameter (e.g. a checkpoint of another
/// architecture behind it).
pub fn cnn(spec: &Spec, vb: VarBuilder) -> Result<Cnn> {
    let table = spec.table()?;
    let device = vb.device().clone();
    let vb = vb.pp("layers");
    let mut blocks = Vec::with_capacity(spec.layers().len());
    // Row 0 of the table is the input; row i + 1 is layer i's output.
    let mut input = spec.input();
    for (index, (layer, row)) in spec.layers().iter().zip(table.rows().iter().skip(1)).enumerate() {
        let vb = vb.pp((index + 2).to_string());
        let channels = match input {
            Dims::Image { channels, .. } => channels,
            Dims::Flat(d) => d,
        };
        let block = match *layer {
            Layer::Conv(c) => Block::Conv(conv(channels, c.filters, c.kernel, c.stride, c.padding, vb)?),
            Layer::ConvTranspose(c) => {
                Block::ConvTranspose(conv_transpose(channels, c.filters, c.kernel, c.stride, c.padding, vb)?)
            }
            Layer::MaxPool { kernel } => Block::MaxPool(kernel),
            Layer::AvgPool { kernel } => Block::AvgPool(kernel),
            Layer::Flatten => Block::Flatten,
            Layer::Fc { units, .. } => Block::Fc(fc(channels, units, vb)?),
        };
        blocks.push((block, layer.activation().unwrap_or(Activation::Linear)));
        input = row.output;
    }
    Ok(Cnn {
        spec: spec.clone(),
        table,
        blocks,
        device,
    })
}

impl Cnn {
    /// The spec it was built from.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Its shape and parameter table.
    pub fn table(&self) -> &ShapeTable {
        &self.table
    }

    /// The device its parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The number of parameters (weights and biases) it holds.
    pub fn n_parameters(&self) -> usize {
        let count = |t: &Tensor| t.elem_count();
        self.blocks
            .iter()
            .map(|(block, _)| match block {
                Block::Conv(c) => count(c.weight()) + count(c.bias()),
                Block::ConvTranspose(c) => count(c.weight()) + count(c.bias()),
                Block::Fc(l) => count(l.weight()) + count(l.bias()),
                Block::MaxPool(_) | Block::AvgPool(_) | Block::Flatten => 0,
            })
            .sum()
    }

    /// Brings a batch to the layout of the spec's input: `[N, C, H, W]` for
    /// an image input (a flat `[N, C·H·W]` batch is reshaped, channel-major),
    /// `[N, D]` for a vector input (any `[N, …]` with `D` values is flattened).
    ///
    /// # Errors
    /// A Candle error naming both shapes when the values per example differ.
    pub fn prepare_input(&self, xs: &Tensor) -> candle::Result<Tensor> {
        let dims = self.spec.input();
        let per_example = dims.elem_count().unwrap_or(0);
        let n = match xs.dims() {
            [n, rest @ ..] if !rest.is_empty() && rest.iter().product::<usize>() == per_example => *n,
            _ => candle::bail!(
                "the network takes [N, {}] (INPUT-{}), got a tensor of shape {:?}",
                dims.batch_dims(0)
                    .iter()
                    .skip(1)
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                self.spec.input_token().trim_start_matches("INPUT-"),
                xs.dims()
            ),
        };
        let want = dims.batch_dims(n);
        if xs.dims() == want.as_slice() {
            Ok(xs.clone())
        } else {
            xs.reshape(want)
        }
    }

    /// The output of the layers before the last one, after their activation
    /// (e.g. the 512 features of `FC-512` in the default MNIST spec): the
    /// representation used to compare real and generated images.
    ///
    /// # Errors
    /// As [`Cnn::prepare_input`].
    pub fn features(&self, xs: &Tensor) -> candle::Result<Tensor> {
        let n_body = self.blocks.len().saturating_sub(1);
        self.run(xs, &self.blocks[..n_body])
    }

    fn run(&self, xs: &Tensor, blocks: &[(Block, Activation)]) -> candle::Result<Tensor> {
        let mut xs = self.prepare_input(xs)?;
        let mut blocks = blocks.iter().peekable();
        while let Some((block, activation)) = blocks.next() {
            xs = match (block, activation, blocks.peek()) {
                // `CONV-…-relu POOL-k`: pooled before the bias and ReLU (the
                // same numbers; see `ConvLayer::forward_relu_max_pool`).
                (Block::Conv(layer), Activation::Relu, Some((Block::MaxPool(k), Activation::Linear))) => {
                    blocks.next();
                    layer.forward_relu_max_pool(&xs, *k)?
                }
                _ => block.forward_activated(&xs, *activation)?,
            };
        }
        Ok(xs)
    }
}

/// `[N, C, H, W]` (or `[N, C·H·W]`, see [`Cnn::prepare_input`]) → the last
/// layer's output, `[N, units]` for a classifier.
impl Module for Cnn {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        self.run(xs, &self.blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use candle::{DType, Device};
    use candle_nn::VarMap;
    use deepgen_core::rng::{randn, rng_from_seed};
    use deepgen_core::seeded_var_builder;

    const SEED_SPEC: &str = "INPUT-128x128x3 CONV-9-32 POOL-2 CONV-5-64 POOL-2 CONV-5-64 POOL-2 FLATTEN FC-3";

    fn build(text: &str, seed: u64) -> Result<(Cnn, VarMap)> {
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, seed, DType::F32, &Device::Cpu);
        Ok((cnn(&Spec::parse(text)?, vb)?, varmap))
    }

    fn varmap_parameters(varmap: &VarMap) -> usize {
        varmap.all_vars().iter().map(|v| v.elem_count()).sum()
    }

    #[test]
    fn seed_network_has_the_table_parameter_count_and_maps_to_three_logits() -> Result<()> {
        let (net, varmap) = build(SEED_SPEC, 1)?;
        assert_eq!(net.n_parameters(), 189_187);
        assert_eq!(varmap_parameters(&varmap), 189_187);
        assert_eq!(net.table().total_parameters(), 189_187);
        let xs = randn(&mut rng_from_seed(2), (2, 3, 128, 128), &Device::Cpu)?;
        let logits = net.forward(&xs)?;
        assert_eq!(logits.dims(), &[2, 3]);
        assert_eq!(net.features(&xs)?.dims(), &[2, 9216]);
        Ok(())
    }

    #[test]
    fn parameter_names_follow_spec_positions() -> Result<()> {
        let (_, varmap) = build("INPUT-8x8x1 CONV-3-2 POOL-2 FLATTEN FC-4", 0)?;
        let mut names: Vec<String> = varmap
            .data()
            .lock()
            .map_err(|_| candle::Error::msg("lock"))?
            .keys()
            .cloned()
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["layers.2.bias", "layers.2.weight", "layers.5.bias", "layers.5.weight"]
        );
        Ok(())
    }

    #[test]
    fn every_layer_kind_runs_and_matches_the_table() -> Result<()> {
        let text =
            "INPUT-9x9x2 CONV-3-4-p1-tanh AVGPOOL-2 CONVT-4-3-s2-p1-lrelu POOL-3 CONV-2-5-s2-sigmoid FLATTEN FC-6 FC-2";
        let (net, varmap) = build(text, 3)?;
        assert_eq!(varmap_parameters(&varmap), net.table().total_parameters());
        let xs = randn(&mut rng_from_seed(4), (3, 2, 9, 9), &Device::Cpu)?;
        // Each layer's output shape equals its table row.
        let mut ys = net.prepare_input(&xs)?;
        for ((block, activation), row) in net.blocks.iter().zip(net.table().rows().iter().skip(1)) {
            ys = block.forward_activated(&ys, *activation)?;
            assert_eq!(ys.dims(), row.output.batch_dims(3).as_slice(), "{}", row.token);
        }
        assert_eq!(net.forward(&xs)?.dims(), &[3, 2]);
        Ok(())
    }

    #[test]
    fn flat_batches_are_reshaped_and_wrong_ones_rejected() -> Result<()> {
        let (net, _) = build("INPUT-4x4x1 CONV-3-2 FLATTEN FC-3", 5)?;
        let xs = randn(&mut rng_from_seed(6), (2, 16), &Device::Cpu)?;
        let flat = net.forward(&xs)?;
        let image = net.forward(&xs.reshape((2, 1, 4, 4))?)?;
        assert_eq!(flat.to_vec2::<f32>()?, image.to_vec2::<f32>()?);
        let err = net
            .forward(&Tensor::zeros((2, 15), DType::F32, &Device::Cpu)?)
            .unwrap_err();
        assert!(err.to_string().contains("[N, 1, 4, 4]"), "{err}");
        assert!(net.forward(&Tensor::zeros(16, DType::F32, &Device::Cpu)?).is_err());
        Ok(())
    }

    #[test]
    fn same_seed_same_network() -> Result<()> {
        let xs = randn(&mut rng_from_seed(7), (2, 1, 8, 8), &Device::Cpu)?;
        let out = |seed| -> Result<Vec<Vec<f32>>> {
            let (net, _) = build("INPUT-8x8x1 CONV-3-2 FLATTEN FC-3", seed)?;
            Ok(net.forward(&xs)?.to_vec2::<f32>()?)
        };
        assert_eq!(out(1)?, out(1)?);
        assert_ne!(out(1)?, out(2)?);
        Ok(())
    }

    #[test]
    fn a_spec_that_does_not_fit_fails_to_build() {
        let Err(err) = build("INPUT-4x4x1 CONV-5-2", 0) else {
            panic!("a 5×5 kernel on a 4×4 input built");
        };
        assert!(matches!(err, Error::LayerDoesNotFit { position: 2, .. }), "{err}");
    }
}
