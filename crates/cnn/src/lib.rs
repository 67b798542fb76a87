//! deepgen-cnn: convolutional networks written as one line of text.
//!
//! - [`spec`]: the layer-spec language of seed 000 (`INPUT-128x128x3
//!   CONV-9-32 POOL-2 … FLATTEN FC-3`), extended with strides, padding,
//!   average pooling, transposed convolutions and activation suffixes;
//!   [`Spec`] parses it and prints it back in canonical form.
//! - [`shape`]: [`Spec::table`], the [`ShapeTable`] of output dims, weights
//!   and biases per layer with totals, printed in seed 000's layout.
//! - [`model`]: [`cnn`] builds a [`Cnn`] (a Candle [`Module`](candle::Module))
//!   from a spec and a `VarBuilder`; its parameter count is the table's.
//! - [`layers`]: the [`Conv`] and [`ConvTranspose`] layers and pooling.
//! - [`transposed`]: transposed convolution as the adjoint of convolution,
//!   [`conv2d_input_grad`], and the property tests of seed 002's identities.
//! - [`classifier`]: the MNIST classifier ([`Cnn`] as a core
//!   `TrainableModel`, [`Classifier`] its trainer) and the [`Evaluator`]
//!   that loads a trained run to judge generated digits.
//! - [`image_metrics`]: the one evaluator of generated images: Fréchet
//!   classifier distance, k-NN precision and recall in the classifier's
//!   penultimate features, the predicted-class histogram, its KL to uniform
//!   and the mean confidence ([`Evaluator::score`]).
//!
//! **Design.** A network is data (a [`Spec`]) before it is a module, so that
//! the CLI can print its table without building it, a run directory can
//! store it as one line of text, and a checkpoint can be checked against it.
//! Shapes are computed once, on the host, by [`Spec::table`]; the builder
//! trusts the table, so a spec that does not fit fails with a message naming
//! the layer before any tensor is allocated. Every convolution runs through
//! one private function in [`layers`], which calls deepgen-core's
//! [`ops`](deepgen_core::ops) (im2col + gemm on the CPU, Candle elsewhere);
//! pooling, ReLU and biases use core's ops too. Candle 0.11's own CPU
//! backward passes made the seed network's training step about 25 times
//! slower than PyTorch's, and its max-pooling gradient is scaled by `1/k²`
//! (see [`max_pool`]).
//!
//! # The math
//!
//! **Convolution** (seed 000: `CONV-K-N` is `N` filters of `K×K`, stride 1,
//! padding 0). On an `H×W×C` input, stride `s` and zero padding `p`,
//! `y[f, i, j] = b_f + Σ_{c,a,b} x[c, i·s + a − p, j·s + b − p] · k[f, c, a, b]`
//! with output side `⌊(H + 2p − K)/s⌋ + 1` and `C·K·K·N` weights plus `N`
//! biases. Pooling `POOL-K` has stride `K` and output `⌊H/K⌋`. For the seed
//! network the table is 120×120×32 (7,776 weights, 32 biases), 60×60×32,
//! 56×56×64 (51,200, 64), 28×28×64, 24×24×64 (102,400, 64), 12×12×64,
//! FLATTEN 9216, FC-3 (27,648, 3): 189,187 parameters in all.
//!
//! **Transposed convolution** (seed 002). Convolution is linear in `x`, say
//! `y = C_k x`; the transposed convolution is `C_kᵀ`, with output side
//! `(H − 1)·s − 2p + K`. It is characterised by the adjoint identity
//! `⟨conv(x, k), y⟩ = ⟨x, conv_transposed(y, k)⟩`, and it is the backward
//! pass of convolution: `∂l/∂x = conv_transposed(∂l/∂y, k)`, which in the
//! seed's 1-D notation is `∂l/∂x_u = Σ_i ∂l/∂y_i · k_{u−i+1}`.
//!
//! **Classifier.** Cross-entropy `−log softmax(logits)[label]`, averaged over
//! the batch, minimised with Adam.
#![deny(missing_docs)]

pub mod classifier;
pub mod error;
pub mod image_metrics;
pub mod layers;
pub mod model;
pub mod shape;
pub mod spec;
pub mod transposed;

pub use classifier::{Classifier, DEFAULT_MNIST_SPEC, EVAL_BATCH, Evaluation, Evaluator, cross_entropy_and_correct};
pub use error::{Error, Result};
pub use image_metrics::{ImageScores, PR_NEIGHBOURS, Reference};
pub use layers::{Conv, ConvTranspose, avg_pool, conv, conv_activated, conv_transpose, fc, max_pool};
pub use model::{Cnn, cnn};
pub use shape::{LayerShape, ShapeTable, conv_output_size, conv_transpose_output_size};
pub use spec::{Activation, ConvSpec, Dims, LEAKY_RELU_SLOPE, Layer, Spec};
pub use transposed::conv2d_input_grad;
