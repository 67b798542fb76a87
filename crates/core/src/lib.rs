//! deepgen-core: the ground every deepgen model crate stands on.
//!
//! - [`candle`] and [`candle_nn`] re-exported, with the `cuda` and `metal`
//!   features that every model crate forwards here;
//! - [`device`]: `cpu | cuda | metal | auto` selection;
//! - [`rng`]: seeded noise drawn on the host (Candle's CPU generator cannot be
//!   seeded), so the same seed gives the same run;
//! - [`checkpoint`]: safetensors checkpoints written to a temporary name and
//!   renamed, so a crash never leaves a half-written file;
//! - [`ops`]: fast CPU kernels as Candle custom ops: convolution and
//!   transposed convolution as im2col/col2im + gemm with fast backward
//!   passes, max pooling, ReLU and per-channel bias with one-sweep backward
//!   passes (Candle's own are up to 20× slower on two cores, and its max-pool
//!   gradient is scaled wrongly), falling back to Candle's ops on CUDA and
//!   Metal; and [`prepare_cpu_training`], the process settings a training
//!   program applies first (memory reuse, one element-wise thread for Candle);
//! - [`nn`]: layers initialised as PyTorch does (fused linear layer,
//!   convolutions on the fast ops), the blocks every model is built from;
//! - [`optim`]: Adam/AdamW and SGD with momentum, updating each parameter in
//!   place in one fused sweep on the CPU, with state that is checkpointed,
//!   gradient clipping by global norm and learning-rate schedules (candle-nn
//!   has none of these);
//! - [`train`]: the one training loop (epochs × batches, progress bar,
//!   metrics CSV, NaN/inf guard, resume) that every model drives through its
//!   [`train::TrainStep`], handing each step its position ([`StepCtx`]), and
//!   [`batch_ranges`], the batches an evaluation walks a test set in;
//! - [`trainer`]: [`Trainer`], the one `TrainStep` of every model family (a
//!   [`TrainableModel`] with its variables, one Adam per optimizer group,
//!   self-describing checkpoints) and [`load_model`] from a run directory;
//! - [`weight_average`]: the moving average of the weights a trainer keeps
//!   for models that sample with it (diffusion);
//! - [`generative`]: [`Generative`] and [`LikelihoodModel`], what a trained
//!   model offers its users (samples from noise, reconstructions, the
//!   likelihood), implemented by each family in its own crate;
//! - [`family_error!`]: the error type of every model crate, written once;
//! - [`named_choices!`]: the names of an enum's choices (`ALL`, `name`,
//!   `Display`, `FromStr`), written once;
//! - [`progress`]: the one progress-bar style;
//! - [`alloc_watch`]: the largest allocation of a closure, for the parsers'
//!   fuzz tests.
#![deny(missing_docs)]

pub use candle;
pub use candle_nn;

pub mod alloc_watch;
pub mod bench;
pub mod checkpoint;
pub mod device;
pub mod error;
pub mod family_error;
pub mod generative;
pub mod init;
pub mod interrupt;
pub mod named_choices;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod progress;
pub mod rng;
pub mod run_lock;
pub mod train;
pub mod trainer;
pub mod weight_average;

pub use checkpoint::Checkpoint;
pub use device::{DeviceChoice, select_device};
pub use error::{Error, Result};
pub use generative::{Generative, LikelihoodModel};
pub use init::seeded_var_builder;
pub use ops::{prepare_cpu_training, reuse_freed_memory};
pub use optim::{Adam, AdamConfig, LrSchedule, Sgd, SgdConfig, clip_grad_norm};
pub use progress::progress_bar;
pub use rng::{StdRng, derived_rng, rng_from_seed};
pub use run_lock::RunLock;
pub use train::{
    BatchSource, EpochRecord, Metrics, StepCtx, TrainConfig, TrainStep, batch_ranges, fit, nonempty_batch_ranges,
};
pub use trainer::{Optimizers, TrainableModel, Trainer, load_model};
pub use weight_average::WeightAverage;
