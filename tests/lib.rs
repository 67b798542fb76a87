//! Cross-crate integration tests of deepgen (the tests live in this folder's
//! `*.rs` files; this library holds what they share).
//!
//! Each test wires the crates the way a user does: deepgen-data supplies
//! batches, a model built from a seeded `VarBuilder` implements
//! deepgen-core's `TrainStep`, deepgen-numerics supplies the stable losses,
//! and `deepgen_core::fit` runs, checkpoints and resumes.
#![deny(missing_docs)]

use deepgen_core::candle::{Module, Tensor};
use deepgen_core::candle_nn::{self, VarBuilder};

/// A two-layer tanh MLP classifier, the smallest model that can learn the
/// two-moons boundary.
#[derive(Debug, Clone)]
pub struct MlpClassifier {
    hidden: candle_nn::Linear,
    logits: candle_nn::Linear,
}

/// Builds an [`MlpClassifier`] `input → hidden → n_classes`.
pub fn mlp_classifier(
    input: usize,
    hidden: usize,
    n_classes: usize,
    vb: VarBuilder,
) -> deepgen_core::candle::Result<MlpClassifier> {
    Ok(MlpClassifier {
        hidden: candle_nn::linear(input, hidden, vb.pp("hidden"))?,
        logits: candle_nn::linear(hidden, n_classes, vb.pp("logits"))?,
    })
}

impl Module for MlpClassifier {
    fn forward(&self, xs: &Tensor) -> deepgen_core::candle::Result<Tensor> {
        xs.apply(&self.hidden)?.tanh()?.apply(&self.logits)
    }
}
