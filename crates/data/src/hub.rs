//! MNIST and Fashion-MNIST from the Hugging Face hub (feature `hub`).
//!
//! These call `candle_datasets::vision::{mnist, fashion_mnist}::load()`, which
//! download parquet files through `hf-hub` (network, cached under
//! `~/.cache/huggingface`), and convert the result to [`Mnist`]: images
//! `[n, 784]` `f32` in `[0, 1]`, labels `[n]` `u32`. The IDX loaders
//! ([`crate::load_mnist`]) are preferred; this is a convenience for machines
//! with network access and no `cargo xtask`.

use crate::mnist::{IMAGE_PIXELS, Mnist, N_CLASSES};
use crate::{Error, Result};
use candle::{DType, Tensor};

/// Downloads MNIST (`ylecun/mnist`) from the hub.
///
/// # Errors
///
/// A Candle error wrapping the download or parquet failure;
/// [`Error::BadShape`] or [`Error::InvalidArgument`] if the data do not have
/// MNIST's shapes or labels.
pub fn load_mnist_from_hub() -> Result<Mnist> {
    convert(candle_datasets::vision::mnist::load()?)
}

/// Downloads Fashion-MNIST (`zalando-datasets/fashion_mnist`) from the hub.
///
/// # Errors
///
/// As [`load_mnist_from_hub`].
pub fn load_fashion_mnist_from_hub() -> Result<Mnist> {
    convert(candle_datasets::vision::fashion_mnist::load()?)
}

fn convert(d: candle_datasets::vision::Dataset) -> Result<Mnist> {
    let (train_images, train_labels) = split(&d.train_images, &d.train_labels)?;
    let (test_images, test_labels) = split(&d.test_images, &d.test_labels)?;
    Ok(Mnist {
        train_images,
        train_labels,
        test_images,
        test_labels,
    })
}

fn split(images: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = match images.dims() {
        [n, d] if *d == IMAGE_PIXELS => *n,
        dims => {
            return Err(Error::BadShape {
                what: "hub images",
                got: dims.to_vec(),
                expected: format!("[n, {IMAGE_PIXELS}]"),
            });
        }
    };
    if labels.dims() != [n] {
        return Err(Error::BadShape {
            what: "hub labels",
            got: labels.dims().to_vec(),
            expected: format!("[{n}]"),
        });
    }
    let labels = labels.to_dtype(DType::U32)?;
    let max = labels.max_all()?.to_scalar::<u32>()?;
    if max as usize >= N_CLASSES {
        return Err(Error::invalid("hub label", max, format!("in 0..{N_CLASSES}")));
    }
    Ok((images.to_dtype(DType::F32)?, labels))
}
