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
        Batcher::batch(self, batch_idx).map_err(loop_error)
    }
}

/// A [`Batcher`]'s error as the training loop's: tensor errors pass
/// through, the rest are boxed whole.
fn loop_error(e: Error) -> deepgen_core::Error {
    match e {
        Error::Candle(e) => deepgen_core::Error::Candle(e),
        other => deepgen_core::Error::external(other),
    }
}

/// Batches of images only, `[batch, …]`: what generative models train on.
#[derive(Clone, Debug)]
pub struct ImageBatcher(Batcher);

impl ImageBatcher {
    /// Batches of `images` `[n, …]` on `device` (see [`Batcher::new`]).
    ///
    /// # Errors
    /// As [`Batcher::new`].
    pub fn new(images: &Tensor, config: BatcherConfig, device: &Device) -> Result<Self> {
        Ok(Self(Batcher::new(images, None, config, device)?))
    }
}

impl BatchSource for ImageBatcher {
    type Batch = Tensor;

    fn n_batches(&self) -> usize {
        self.0.n_batches()
    }

    fn start_epoch(&mut self, rng: &mut StdRng) -> deepgen_core::Result<()> {
        self.0.start_epoch(rng);
        Ok(())
    }

    fn batch(&self, batch_idx: usize) -> deepgen_core::Result<Tensor> {
        Ok(self.0.batch(batch_idx).map_err(loop_error)?.images)
    }
}

/// Batches of `(images, labels)`: what classifiers train on. The labels are
/// there by construction, so no step checks for them.
#[derive(Clone, Debug)]
pub struct LabelledBatcher(Batcher);

impl LabelledBatcher {
    /// Batches of `images` `[n, …]` with `labels` `[n]` on `device`.
    ///
    /// # Errors
    /// As [`Batcher::new`] (mismatched counts among them).
    pub fn new(images: &Tensor, labels: &Tensor, config: BatcherConfig, device: &Device) -> Result<Self> {
        Ok(Self(Batcher::new(images, Some(labels), config, device)?))
    }
}

impl BatchSource for LabelledBatcher {
    type Batch = (Tensor, Tensor);

    fn n_batches(&self) -> usize {
        self.0.n_batches()
    }

    fn start_epoch(&mut self, rng: &mut StdRng) -> deepgen_core::Result<()> {
        self.0.start_epoch(rng);
        Ok(())
    }

    fn batch(&self, batch_idx: usize) -> deepgen_core::Result<(Tensor, Tensor)> {
        let batch = self.0.batch(batch_idx).map_err(loop_error)?;
        match batch.labels {
            Some(labels) => Ok((batch.images, labels)),
            // `new` always gives the batcher labels.
            None => Err(deepgen_core::Error::external(Error::invalid(
                "labels",
                "none",
                "a labelled batcher",
            ))),
        }
    }
}

/// Two views of the same images, `(augment(x), augment(x))` with independent
/// draws: the batch of contrastive learning (SimCLR). The draws of batch `i`
/// come from `derived_rng(epoch_seed, 2^32 + i)`, so a batch is a pure
/// function of the epoch and its index, and a resumed run sees the same views.
pub struct PairBatcher<A> {
    images: ImageBatcher,
    augment: A,
    epoch_seed: u64,
}

impl<A> std::fmt::Debug for PairBatcher<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairBatcher")
            .field("images", &self.images)
            .finish_non_exhaustive()
    }
}

/// Stream offset of the augmentation draws, apart from the binarisation's.
const VIEW_STREAM: u64 = 1 << 32;

impl<A> PairBatcher<A>
where
    A: Fn(&Tensor, &mut StdRng) -> deepgen_core::Result<Tensor>,
{
    /// Pairs of views of `images` `[n, …]` on `device`, each drawn by
    /// `augment(batch, rng)`.
    ///
    /// # Errors
    /// As [`Batcher::new`].
    pub fn new(images: &Tensor, config: BatcherConfig, device: &Device, augment: A) -> Result<Self> {
        Ok(Self {
            images: ImageBatcher::new(images, config, device)?,
            augment,
            epoch_seed: 0,
        })
    }
}

impl<A> BatchSource for PairBatcher<A>
where
    A: Fn(&Tensor, &mut StdRng) -> deepgen_core::Result<Tensor>,
{
    type Batch = (Tensor, Tensor);

    fn n_batches(&self) -> usize {
        self.images.n_batches()
    }

    fn start_epoch(&mut self, rng: &mut StdRng) -> deepgen_core::Result<()> {
        self.images.start_epoch(rng)?;
        self.epoch_seed = rng.random();
        Ok(())
    }

    fn batch(&self, batch_idx: usize) -> deepgen_core::Result<(Tensor, Tensor)> {
        let xs = self.images.batch(batch_idx)?;
        let mut rng = derived_rng(self.epoch_seed, VIEW_STREAM + batch_idx as u64);
        let first = (self.augment)(&xs, &mut rng)?;
        let second = (self.augment)(&xs, &mut rng)?;
        Ok((first, second))
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

    #[test]
    fn typed_batchers_say_what_a_batch_is() -> Result<()> {
        let (xs, ys) = data(5);
        let config = BatcherConfig {
            batch_size: 2,
            ..Default::default()
        };
        let mut images = ImageBatcher::new(&xs, config.clone(), &Device::Cpu)?;
        let mut labelled = LabelledBatcher::new(&xs, &ys, config.clone(), &Device::Cpu)?;
        BatchSource::start_epoch(&mut images, &mut rng_from_seed(4))
            .map_err(|e| Error::invalid("", "", e.to_string()))?;
        BatchSource::start_epoch(&mut labelled, &mut rng_from_seed(4))
            .map_err(|e| Error::invalid("", "", e.to_string()))?;
        let only = BatchSource::batch(&images, 1).map_err(|e| Error::invalid("", "", e.to_string()))?;
        let (with, labels) = BatchSource::batch(&labelled, 1).map_err(|e| Error::invalid("", "", e.to_string()))?;
        // Same seed, same order: the images agree and the labels index them.
        assert_eq!(only.to_vec2::<f32>()?, with.to_vec2::<f32>()?);
        let first_column: Vec<f32> = with.to_vec2::<f32>()?.iter().map(|row| row[0]).collect();
        let labels: Vec<f32> = labels.to_vec1::<u32>()?.iter().map(|&l| l as f32).collect();
        assert_eq!(first_column, labels);
        Ok(())
    }

    #[test]
    fn pairs_are_two_seeded_views_of_one_batch() -> Result<()> {
        let (xs, _) = data(6);
        let config = BatcherConfig {
            batch_size: 3,
            ..Default::default()
        };
        // The "augmentation" adds one uniform draw per image.
        let augment = |x: &Tensor, rng: &mut StdRng| -> deepgen_core::Result<Tensor> {
            let shift: Vec<f32> = (0..x.dim(0)?).map(|_| rng.random::<f32>()).collect();
            let shift = Tensor::from_vec(shift, (x.dim(0)?, 1), x.device())?;
            Ok(x.broadcast_add(&shift)?)
        };
        let pairs = |seed| -> Result<(Tensor, Tensor)> {
            let mut batcher = PairBatcher::new(&xs, config.clone(), &Device::Cpu, augment)?;
            BatchSource::start_epoch(&mut batcher, &mut rng_from_seed(seed))
                .map_err(|e| Error::invalid("", "", e.to_string()))?;
            BatchSource::batch(&batcher, 1).map_err(|e| Error::invalid("", "", e.to_string()))
        };
        let (a, b) = pairs(9)?;
        let (a2, b2) = pairs(9)?;
        assert_eq!(a.to_vec2::<f32>()?, a2.to_vec2::<f32>()?);
        assert_eq!(b.to_vec2::<f32>()?, b2.to_vec2::<f32>()?);
        // Two independent views of the same images: they differ by less than 1 per entry, and not at all alike.
        let diff = (&a - &b)?.abs()?.to_vec2::<f32>()?;
        assert!(diff.iter().flatten().all(|&d| d < 1.0));
        assert!(diff.iter().flatten().any(|&d| d > 0.0));
        Ok(())
    }
}
