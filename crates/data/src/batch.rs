//! Seeded shuffling and batching for the core training loop.
//!
//! [`Batcher`] implements [`deepgen_core::train::BatchSource`]. The data stay
//! on the CPU; each batch is gathered there (`index_select` with the shuffled
//! indices, or a contiguous `narrow` without shuffling) and copied to the
//! target device, so a GPU holds one batch at a time.
//!
//! Determinism: `start_epoch` draws the epoch's permutation and one `u64`
//! epoch seed from the epoch generator. Dynamic binarisation of batch `i` then
//! uses `derived_rng(epoch_seed, i)`, so [`Batcher::batch`] takes `&self`, gives
//! the same batch however often and in whatever order it is called, and a
//! resumed run sees exactly the batches of an uninterrupted one.

use crate::binarize::binarize_stochastic;
use crate::{Error, Result};
use candle::{Device, Tensor};
use deepgen_core::rng::{StdRng, derived_rng, permutation};
use deepgen_core::train::BatchSource;
use rand::Rng;

/// How a [`Batcher`] cuts an epoch into batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatcherConfig {
    /// Examples per batch; must be positive. Default 64, the batch size of
    /// Candle's `mnist-training` example.
    pub batch_size: usize,
    /// Draw a new random order every epoch. Default `true` (training); use
    /// `false` for evaluation.
    pub shuffle: bool,
    /// Drop the last batch when it is smaller than `batch_size`. Default
    /// `false`, as in PyTorch's `DataLoader`.
    pub drop_last: bool,
    /// Replace each image by a fresh `Bernoulli(x)` draw every time it is
    /// batched (dynamic binarisation, Burda et al. 2016). Default `false`.
    pub dynamic_binarization: bool,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig {
            batch_size: 64,
            shuffle: true,
            drop_last: false,
            dynamic_binarization: false,
        }
    }
}

/// One batch: `images` with the leading dimension cut to the batch, and the
/// matching labels when the batcher has them.
#[derive(Clone, Debug)]
pub struct Batch {
    /// `[batch, …]`, the source's trailing dimensions, on the target device.
    pub images: Tensor,
    /// `[batch, …]` labels on the target device, if any.
    pub labels: Option<Tensor>,
}

/// Cuts a data set into (optionally shuffled, optionally binarised) batches.
///
/// The inherent methods (`n_batches`, `start_epoch`, `batch`) are those of
/// [`BatchSource`], which the training loop calls; they take any [`Rng`] and
/// return this crate's errors.
///
/// ```
/// use candle::{Device, Tensor};
/// use deepgen_core::rng::rng_from_seed;
/// use deepgen_data::{Batcher, BatcherConfig};
///
/// // Five examples [2i, 2i + 1], labels i.
/// let xs = Tensor::arange(0f32, 10.0, &Device::Cpu)?.reshape((5, 2))?;
/// let ys = Tensor::arange(0u32, 5, &Device::Cpu)?;
/// let config = BatcherConfig { batch_size: 2, ..Default::default() };
/// let mut batcher = Batcher::new(&xs, Some(&ys), config, &Device::Cpu)?;
/// assert_eq!(batcher.n_batches(), 3); // 2 + 2 + 1
///
/// batcher.start_epoch(&mut rng_from_seed(0)); // a new seeded order
/// let first = batcher.batch(0)?;
/// assert_eq!(first.images.dims(), &[2, 2]);
/// let ids = first.labels.unwrap().to_vec1::<u32>()?;
/// let order = batcher.order();
/// assert_eq!(ids, [order[0] as u32, order[1] as u32]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Batcher {
    images: Tensor,
    labels: Option<Tensor>,
    config: BatcherConfig,
    device: Device,
    n_examples: usize,
    /// The current epoch's order; `None` means the natural order.
    order: Option<Vec<u32>>,
    epoch_seed: u64,
}

impl Batcher {
    /// A batcher over `images` (`[n, …]`) and optional `labels` (`[n, …]`),
    /// producing batches on `device`. The data are copied to the CPU once.
    ///
    /// Until the first `start_epoch` the order is the natural one and the
    /// binarisation seed is 0.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for `batch_size == 0`, an empty data set, or
    /// `drop_last` with fewer examples than one batch; [`Error::BadShape`]
    /// for a rank-0 tensor or labels whose length differs from the images'.
    pub fn new(images: &Tensor, labels: Option<&Tensor>, config: BatcherConfig, device: &Device) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::invalid("batch_size", 0, "must be at least 1"));
        }
        let n_examples = leading_dim(images, "batcher images")?;
        if n_examples == 0 {
            return Err(Error::invalid("images", "[0, …]", "the data set is empty"));
        }
        if u32::try_from(n_examples).is_err() {
            return Err(Error::invalid("images", n_examples, "at most u32::MAX examples"));
        }
        if let Some(labels) = labels {
            let n_labels = leading_dim(labels, "batcher labels")?;
            if n_labels != n_examples {
                return Err(Error::BadShape {
                    what: "batcher labels",
                    got: labels.dims().to_vec(),
                    expected: format!("[{n_examples}, …] to match the images"),
                });
            }
        }
        if config.drop_last && config.batch_size > n_examples {
            return Err(Error::invalid(
                "batch_size",
                config.batch_size,
                format!("with drop_last, {n_examples} examples make no full batch"),
            ));
        }
        Ok(Batcher {
            images: images.to_device(&Device::Cpu)?,
            labels: labels.map(|l| l.to_device(&Device::Cpu)).transpose()?,
            config,
            device: device.clone(),
            n_examples,
            order: None,
            epoch_seed: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BatcherConfig {
        &self.config
    }

    /// Number of examples in the data set.
    pub fn n_examples(&self) -> usize {
        self.n_examples
    }

    /// The device batches are copied to.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The example indices of the current epoch, in batch order.
    pub fn order(&self) -> Vec<usize> {
        match &self.order {
            Some(order) => order.iter().map(|&i| i as usize).collect(),
            None => (0..self.n_examples).collect(),
        }
    }

    /// `n_batches = ⌈n / batch_size⌉`, or `⌊n / batch_size⌋` with `drop_last`.
    pub fn n_batches(&self) -> usize {
        let (n, b) = (self.n_examples, self.config.batch_size);
        if self.config.drop_last { n / b } else { n.div_ceil(b) }
    }

    /// Prepares an epoch: with `shuffle`, a uniformly random order drawn from
    /// `rng`; always a fresh binarisation seed.
    pub fn start_epoch(&mut self, rng: &mut impl Rng) {
        if self.config.shuffle {
            let order = permutation(rng, self.n_examples);
            // `new` checked that every index fits in u32.
            self.order = Some(order.into_iter().map(|i| i as u32).collect());
        }
        self.epoch_seed = rng.random();
    }

    /// Batch `batch_idx` of the current epoch (`batch_idx < n_batches()`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an index out of range; a Candle error if
    /// gathering or copying fails.
    pub fn batch(&self, batch_idx: usize) -> Result<Batch> {
        let n_batches = self.n_batches();
        if batch_idx >= n_batches {
            return Err(Error::invalid(
                "batch_idx",
                batch_idx,
                format!("an epoch has {n_batches} batches"),
            ));
        }
        let start = batch_idx * self.config.batch_size;
        let len = self.config.batch_size.min(self.n_examples - start);
        let gather = |xs: &Tensor| -> Result<Tensor> {
            let part = match &self.order {
                Some(order) => {
                    let idx = order.get(start..start + len).unwrap_or_default();
                    let idx = Tensor::from_slice(idx, len, &Device::Cpu)?;
                    xs.index_select(&idx, 0)?
                }
                None => xs.narrow(0, start, len)?,
            };
            Ok(part.to_device(&self.device)?)
        };
        let mut images = gather(&self.images)?;
        if self.config.dynamic_binarization {
            let mut rng = derived_rng(self.epoch_seed, batch_idx as u64);
            images = binarize_stochastic(&images, &mut rng)?;
        }
        let labels = self.labels.as_ref().map(gather).transpose()?;
        Ok(Batch { images, labels })
    }
}

fn leading_dim(xs: &Tensor, what: &'static str) -> Result<usize> {
    xs.dims().first().copied().ok_or_else(|| Error::BadShape {
        what,
        got: Vec::new(),
        expected: "[n, …] with at least one dimension".into(),
    })
}

impl BatchSource for Batcher {
    type Batch = Batch;

    fn n_batches(&self) -> usize {
        Batcher::n_batches(self)
    }

    fn start_epoch(&mut self, rng: &mut StdRng) -> deepgen_core::Result<()> {
        Batcher::start_epoch(self, rng);
        Ok(())
    }

    fn batch(&self, batch_idx: usize) -> deepgen_core::Result<Batch> {
        Batcher::batch(self, batch_idx).map_err(|e| match e {
            Error::Candle(e) => deepgen_core::Error::Candle(e),
            other => deepgen_core::Error::external(other),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::DType;
    use deepgen_core::rng::rng_from_seed;

    /// `n` examples of 3 features where example `i` is `[i, i, i]`, labels `i`.
    fn data(n: usize) -> (Tensor, Tensor) {
        let xs = Tensor::arange(0u32, n as u32, &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .unsqueeze(1)
            .unwrap()
            .repeat((1, 3))
            .unwrap();
        let ys = Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap();
        (xs, ys)
    }

    fn config(batch_size: usize, shuffle: bool, drop_last: bool) -> BatcherConfig {
        BatcherConfig {
            batch_size,
            shuffle,
            drop_last,
            dynamic_binarization: false,
        }
    }

    /// The example ids of one epoch, read back from the batches' labels, after
    /// checking each image matches its label.
    fn epoch(b: &Batcher) -> Vec<u32> {
        let mut seen = Vec::new();
        for i in 0..b.n_batches() {
            let batch = b.batch(i).unwrap();
            let labels = batch.labels.unwrap().to_vec1::<u32>().unwrap();
            let images = batch.images.to_vec2::<f32>().unwrap();
            for (l, row) in labels.iter().zip(&images) {
                assert_eq!(row, &vec![*l as f32; 3]);
            }
            seen.extend(labels);
        }
        seen
    }

    #[test]
    fn every_example_once_per_epoch() {
        let (xs, ys) = data(23);
        for shuffle in [false, true] {
            let mut b = Batcher::new(&xs, Some(&ys), config(5, shuffle, false), &Device::Cpu).unwrap();
            assert_eq!(b.n_batches(), 5);
            for seed in 0..3 {
                b.start_epoch(&mut rng_from_seed(seed));
                let mut seen = epoch(&b);
                assert_eq!(seen.len(), 23);
                if !shuffle {
                    assert_eq!(seen, (0..23).collect::<Vec<_>>());
                }
                seen.sort_unstable();
                assert_eq!(seen, (0..23).collect::<Vec<_>>());
            }
            // The last batch holds the remainder.
            assert_eq!(b.batch(4).unwrap().images.dims(), &[3, 3]);
        }
    }

    #[test]
    fn same_seed_same_order_different_seed_different_order() {
        let (xs, ys) = data(50);
        let mut b = Batcher::new(&xs, Some(&ys), config(8, true, false), &Device::Cpu).unwrap();
        b.start_epoch(&mut rng_from_seed(1));
        let first = epoch(&b);
        assert_eq!(b.order().iter().map(|&i| i as u32).collect::<Vec<_>>(), first);
        b.start_epoch(&mut rng_from_seed(1));
        assert_eq!(epoch(&b), first);
        b.start_epoch(&mut rng_from_seed(2));
        assert_ne!(epoch(&b), first);
        // Shuffled means not the natural order (probability 1/50! otherwise).
        assert_ne!(first, (0..50).collect::<Vec<_>>());
        // Consecutive epochs from one generator differ.
        let mut rng = rng_from_seed(3);
        b.start_epoch(&mut rng);
        let e1 = epoch(&b);
        b.start_epoch(&mut rng);
        assert_ne!(epoch(&b), e1);
    }

    #[test]
    fn drop_last_counts() {
        let (xs, _) = data(23);
        let n = |bs, drop| {
            Batcher::new(&xs, None, config(bs, true, drop), &Device::Cpu)
                .unwrap()
                .n_batches()
        };
        assert_eq!(n(5, false), 5);
        assert_eq!(n(5, true), 4);
        assert_eq!(n(23, true), 1);
        assert_eq!(n(1, true), 23);
        assert_eq!(n(100, false), 1);
        let mut b = Batcher::new(&xs, None, config(5, true, true), &Device::Cpu).unwrap();
        b.start_epoch(&mut rng_from_seed(0));
        let sizes: Vec<usize> = (0..b.n_batches())
            .map(|i| b.batch(i).unwrap().images.dims()[0])
            .collect();
        assert_eq!(sizes, vec![5; 4]);
        assert!(b.batch(4).is_err());
        // With drop_last, a batch larger than the data set leaves nothing.
        assert!(Batcher::new(&xs, None, config(24, true, true), &Device::Cpu).is_err());
    }

    #[test]
    fn invalid_construction() {
        let (xs, ys) = data(10);
        let err = Batcher::new(&xs, None, config(0, true, false), &Device::Cpu).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { name: "batch_size", .. }),
            "{err}"
        );
        let short = ys.narrow(0, 0, 9).unwrap();
        let err = Batcher::new(&xs, Some(&short), BatcherConfig::default(), &Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::BadShape { .. }), "{err}");
        let empty = xs.narrow(0, 0, 0).unwrap();
        assert!(Batcher::new(&empty, None, BatcherConfig::default(), &Device::Cpu).is_err());
        let scalar = Tensor::new(1f32, &Device::Cpu).unwrap();
        assert!(Batcher::new(&scalar, None, BatcherConfig::default(), &Device::Cpu).is_err());
    }

    #[test]
    fn out_of_range_batch_through_the_trait() {
        let (xs, _) = data(10);
        let b = Batcher::new(&xs, None, config(4, false, false), &Device::Cpu).unwrap();
        assert!(BatchSource::batch(&b, 2).is_ok());
        let err = BatchSource::batch(&b, 3).unwrap_err();
        assert!(err.to_string().contains("3 batches"), "{err}");
    }

    #[test]
    fn dynamic_binarization_is_fresh_per_epoch_and_repeatable() {
        // 200 examples of 16 pixels at 0.5: each batch draws new bits.
        let xs = Tensor::full(0.5f32, (200, 16), &Device::Cpu).unwrap();
        let cfg = BatcherConfig {
            batch_size: 50,
            shuffle: false,
            drop_last: false,
            dynamic_binarization: true,
        };
        let mut b = Batcher::new(&xs, None, cfg, &Device::Cpu).unwrap();
        let bits = |b: &Batcher, i| b.batch(i).unwrap().images.to_vec2::<f32>().unwrap();
        let mut rng = rng_from_seed(9);
        b.start_epoch(&mut rng);
        let a0 = bits(&b, 0);
        assert!(a0.iter().flatten().all(|&v| v == 0.0 || v == 1.0));
        // Same batch twice in one epoch: identical (deterministic `&self`).
        assert_eq!(bits(&b, 0), a0);
        // Different batches of one epoch, and the same batch next epoch, differ.
        assert_ne!(bits(&b, 1), a0);
        b.start_epoch(&mut rng);
        assert_ne!(bits(&b, 0), a0);
        // Replaying the epoch generator reproduces the bits.
        let mut replay = Batcher::new(&xs, None, b.config().clone(), &Device::Cpu).unwrap();
        replay.start_epoch(&mut rng_from_seed(9));
        assert_eq!(bits(&replay, 0), a0);
        // About half the bits are ones: 800 bits, sd 14.1; allow 5 sd.
        let ones: f32 = a0.iter().flatten().sum();
        assert!((ones - 400.0).abs() < 71.0, "{ones}");
    }
}
