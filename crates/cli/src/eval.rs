//! Evaluation: the importance-sampled test log-likelihood (with a progress
//! bar) and the ELBO of the latent-variable models, and the one evaluator of
//! generated images ([`Judge`]: a trained classifier run against a reference
//! set), which `deepgen eval samples` runs on any IDX file and every
//! family's `eval` runs on its own samples.

use crate::args::{DataArg, at_least_one, sample_count};
use crate::run::{EVAL_BATCH, checkpoint_file, load_dataset, open_device, say};
use crate::sample::draw_samples;
use anyhow::{Context, Result, bail};
use clap::Args;
use deepgen_cnn::{Evaluator, ImageScores, Reference};
use deepgen_core::candle::{DType, Device, Tensor};
use deepgen_core::rng::derived_rng;
use deepgen_core::trainer::config_json;
use deepgen_core::{DeviceChoice, Metrics, StdRng, batch_ranges, load_model, progress_bar};
use deepgen_core::{Generative, LikelihoodModel};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Flags of `deepgen eval <model>` of a [`LikelihoodModel`] `M`: its run,
/// the likelihood flags and the sample scores'.
#[derive(Debug, Args)]
pub struct LikelihoodCommandArgs<M: LikelihoodModel> {
    /// Run directory of `deepgen train <model>` (or its checkpoint file) [default: runs/<model>-mnist].
    // The help and the default name `M`'s family; not `default_value_t`,
    // whose value clap keeps in a static that every `M` would share.
    #[arg(
        long,
        value_name = "DIR",
        help = format!("Run directory of `deepgen train {}` (or its checkpoint file)", M::FAMILY),
        default_value = format!("runs/{}-mnist", M::FAMILY)
    )]
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub eval: LikelihoodEvalArgs,
    #[command(flatten)]
    pub scores: SampleScoreArgs,
    #[arg(skip)]
    model: PhantomData<M>,
}

/// `deepgen eval <model>` of a [`LikelihoodModel`]: the importance-sampled
/// test log-likelihood and the ELBO of the trained run, then the scores of
/// its prior samples.
///
/// # Errors
/// A run that is not `M`'s; missing data; the model's errors.
pub fn eval_likelihood<M: LikelihoodModel>(args: &LikelihoodCommandArgs<M>) -> Result<()> {
    let path = checkpoint_file(&args.checkpoint, M::FAMILY)?;
    let device = open_device(args.eval.device)?;
    let (model, _vars) = load_model::<M>(&path, &device)
        .with_context(|| format!("cannot load a {} from `{}`", M::NAME, path.display()))?;
    let description = format!("{} {}", M::NAME, config_json(model.config())?);
    let eval = args.eval.start(&path, &description, &device)?;
    eval.log_likelihood(|xs, k, rng| Ok(model.importance_log_likelihood(xs, k, rng)?))?;
    let (elbo, parts) = model.elbo(eval.images(), EVAL_BATCH, &mut eval.elbo_rng())?;
    eval.say_elbo(elbo, &parts);
    eval.score_samples(&model, &args.scores, &device)
}

/// Importance samples per call of a model's estimator in `eval`: a larger
/// `--k` is drawn in parts of this many.
pub const SAMPLES_PER_CALL: usize = 10_000;

/// The `K`-sample estimates `log p̂` of `rows` rows from calls
/// `estimate(k_j)` of at most [`SAMPLES_PER_CALL`] samples each, which
/// together draw `K`: `log p̂ = logsumexp_j(log p̂_j + ln k_j) − ln K`. One
/// call's estimates are returned as they are.
///
/// # Errors
/// `estimate`'s.
fn split_log_mean(k: usize, rows: usize, mut estimate: impl FnMut(usize) -> Result<Vec<f64>>) -> Result<Vec<f64>> {
    if k <= SAMPLES_PER_CALL {
        return estimate(k);
    }
    let mut log_sum = vec![f64::NEG_INFINITY; rows];
    let mut drawn = 0;
    while drawn < k {
        let k_j = SAMPLES_PER_CALL.min(k - drawn);
        for (acc, l) in log_sum.iter_mut().zip(estimate(k_j)?) {
            *acc = log_add_exp(*acc, l + (k_j as f64).ln());
        }
        drawn += k_j;
    }
    Ok(log_sum.into_iter().map(|l| l - (k as f64).ln()).collect())
}

/// `ln(eᵃ + eᵇ)`, exact for `a = −∞`.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// Flags every `deepgen eval <model>` of a latent-variable model shares
/// (`#[command(flatten)]` them after the model's `--checkpoint`).
#[derive(Debug, Clone, Args)]
pub struct LikelihoodEvalArgs {
    /// Importance samples per test image.
    #[arg(long, value_name = "K", default_value_t = 1000, value_parser = at_least_one)]
    pub k: usize,
    /// Data set whose test split is evaluated.
    #[arg(long, value_enum, default_value_t = DataArg::Mnist)]
    pub data: DataArg,
    /// Folder with the four IDX files [default: data/mnist or data/fashion-mnist].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Evaluate only the first N test images [default: all].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub n_test: Option<usize>,
    /// Test images per batch.
    #[arg(long, value_name = "B", default_value_t = 100, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Seed of the importance samples.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Device: cpu, cuda, cuda:N, metal or auto.
    #[arg(long, value_name = "D", default_value = "auto")]
    pub device: DeviceChoice,
}

/// A running `deepgen eval <model>`: the test images on the device and the
/// lines it prints.
#[derive(Debug)]
pub struct LikelihoodEval<'a> {
    args: &'a LikelihoodEvalArgs,
    images: Tensor,
    started: Instant,
}

impl LikelihoodEvalArgs {
    /// Loads the first `--n-test` test images onto `device` and prints what
    /// is evaluated: the checkpoint `path`, the `model`, the data and `K`.
    ///
    /// # Errors
    /// As [`load_dataset`].
    pub fn start(&self, path: &Path, model: &str, device: &Device) -> Result<LikelihoodEval<'_>> {
        let dataset = self.data.require_images()?;
        let data = load_dataset(dataset, &self.data.dir(self.data_dir.as_deref()))?;
        let n = self.n_test.map_or(data.n_test(), |n| n.min(data.n_test()));
        let images = data.test_images.narrow(0, 0, n)?.to_device(device)?;
        say(&format!(
            "`{}`: {model}; {dataset} test set, {n} images, K = {} importance samples each",
            path.display(),
            self.k
        ));
        Ok(LikelihoodEval {
            args: self,
            images,
            started: Instant::now(),
        })
    }
}

impl LikelihoodEval<'_> {
    /// The test images.
    pub fn images(&self) -> &Tensor {
        &self.images
    }

    /// Prints the mean importance-sampled `log p(x)` over the test images,
    /// with a progress bar: `estimate(xs, k, rng)` gives the estimate per
    /// row of a batch `xs`. A `K` above [`SAMPLES_PER_CALL`] is drawn that
    /// many at a time, so that the bar moves within a batch and memory does
    /// not grow with `K`: `log p̂ = logsumexp_j(log p̂_j + ln k_j) − ln K`.
    ///
    /// # Errors
    /// The estimator's errors.
    pub fn log_likelihood(
        &self,
        mut estimate: impl FnMut(&Tensor, usize, &mut StdRng) -> Result<Tensor>,
    ) -> Result<()> {
        let (n, k) = (self.images.dim(0)?, self.args.k);
        let calls_per_batch = k.div_ceil(SAMPLES_PER_CALL);
        let bar = progress_bar(n as u64 * calls_per_batch as u64, "log p(x)", true);
        let mut rng = derived_rng(self.args.seed, 0);
        let mut sum_ll = 0f64;
        for (start, len) in batch_ranges(n, self.args.batch_size) {
            let xs = self.images.narrow(0, start, len)?;
            let ll = split_log_mean(k, len, |k_j| {
                let ll = estimate(&xs, k_j, &mut rng)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                bar.inc(len as u64);
                Ok(ll)
            })?;
            sum_ll += ll.iter().sum::<f64>();
            bar.set_message(format!("mean {:.3}", sum_ll / (start + len) as f64));
        }
        bar.finish_and_clear();
        say(&format!(
            "test log-likelihood (importance sampling, K = {k}): {:.4} nats per image  ({:.1} s)",
            sum_ll / n.max(1) as f64,
            self.started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// The generator of the ELBO's draws (another stream than the
    /// importance samples').
    pub fn elbo_rng(&self) -> StdRng {
        derived_rng(self.args.seed, 1)
    }

    /// Prints the ELBO line: `elbo` and its `parts` (`recon 80.1000, KL 25.3000`).
    pub fn say_elbo(&self, elbo: f64, parts: &Metrics) {
        let parts = parts
            .iter()
            .map(|(name, v)| format!("{name} {v:.4}"))
            .collect::<Vec<_>>()
            .join(", ");
        say(&format!(
            "test ELBO (one sample): {elbo:.4} nats per image ({parts}); total {:.1} s",
            self.started.elapsed().as_secs_f64()
        ));
    }
}

/// Flags that choose the judge of generated images: a trained classifier
/// run and the reference set.
#[derive(Debug, Clone, Args)]
pub struct JudgeArgs {
    /// Run directory of the classifier (`deepgen train cnn`) [default: runs/cnn-<data>].
    #[arg(long, value_name = "DIR")]
    pub classifier: Option<PathBuf>,
    /// Reference images as an IDX file [default: the data set's test split].
    #[arg(long, value_name = "FILE.idx")]
    pub reference: Option<PathBuf>,
}

/// Flags of `deepgen eval samples`.
#[derive(Debug, Clone, Args)]
pub struct SampleEvalArgs {
    /// The images to score: an IDX file in MNIST's format (uint8 28×28, raw or .gz), written by any program.
    #[arg(long, value_name = "FILE.idx")]
    pub images: PathBuf,
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// Data set whose test split is the reference (and whose classifier judges).
    #[arg(long, value_enum, default_value_t = DataArg::Mnist)]
    pub data: DataArg,
    /// Folder with the four IDX files [default: data/mnist or data/fashion-mnist].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Device: cpu, cuda, cuda:N, metal or auto.
    #[arg(long, value_name = "D", default_value = "auto")]
    pub device: DeviceChoice,
}

/// A classifier run and its reference features, ready to score image sets.
#[derive(Debug)]
pub struct Judge {
    evaluator: Evaluator,
    reference: Reference,
    classifier: PathBuf,
    reference_name: String,
}

impl JudgeArgs {
    /// Loads the classifier and computes the reference features.
    ///
    /// # Errors
    /// A missing classifier run (the message says how to train one), a
    /// reference file that is not IDX images, data that cannot be loaded.
    pub fn judge(&self, data: DataArg, data_dir: Option<&Path>, device: &Device) -> Result<Judge> {
        let dataset = data.require_images()?;
        let classifier = self
            .classifier
            .clone()
            .unwrap_or_else(|| Path::new("runs").join(format!("cnn-{}", dataset.name())));
        if !classifier.exists() {
            bail!(
                "no classifier at `{}`: train one with `deepgen train cnn --data {} --out {}` (about 5 minutes on two cores), or name one with --classifier",
                classifier.display(),
                dataset.name(),
                classifier.display()
            );
        }
        let evaluator = Evaluator::load(&classifier, device)
            .with_context(|| format!("cannot load the classifier `{}`", classifier.display()))?;
        let (images, reference_name) = match &self.reference {
            Some(path) => (read_images(path)?, format!("`{}`", path.display())),
            None => {
                let test = load_dataset(dataset, &data.dir(data_dir))?.test_images;
                (test, format!("the {dataset} test set"))
            }
        };
        let reference = evaluator.reference(&images.to_device(device)?)?;
        Ok(Judge {
            evaluator,
            reference,
            classifier,
            reference_name,
        })
    }
}

impl Judge {
    /// Scores `images` `[n, 784]` and prints the figures.
    ///
    /// # Errors
    /// Images that do not fit the classifier; too few of them.
    pub fn score_and_say(&self, what: &str, images: &Tensor) -> Result<ImageScores> {
        let started = Instant::now();
        let scores = self.evaluator.score(images, &self.reference)?;
        say(&format!(
            "{what}: {} images against {} ({} images), judged by `{}`",
            scores.n_images,
            self.reference_name,
            scores.n_reference,
            self.classifier.display()
        ));
        say(&format!(
            "FCD {:.3}  precision {:.4}  recall {:.4}  class KL to uniform {:.4} nats  mean confidence {:.4}  ({:.1} s)",
            scores.fcd,
            scores.precision,
            scores.recall,
            scores.class_kl_to_uniform,
            scores.mean_confidence,
            started.elapsed().as_secs_f64()
        ));
        let histogram: Vec<String> = scores
            .class_histogram
            .iter()
            .enumerate()
            .map(|(class, count)| format!("{class}: {count}"))
            .collect();
        say(&format!("predicted classes: {}", histogram.join(", ")));
        Ok(scores)
    }
}

/// Reads IDX images, naming the file in the error.
fn read_images(path: &Path) -> Result<Tensor> {
    deepgen_data::load_images(path).with_context(|| format!("cannot read images from `{}`", path.display()))
}

/// `deepgen eval samples`: scores an IDX file of images with the one
/// evaluator.
///
/// # Errors
/// A file that is not MNIST-format IDX images; a missing classifier.
pub fn eval_samples(args: &SampleEvalArgs) -> Result<()> {
    let images = read_images(&args.images)?;
    let device = open_device(args.device)?;
    let judge = args.judge.judge(args.data, args.data_dir.as_deref(), &device)?;
    judge.score_and_say(&format!("`{}`", args.images.display()), &images.to_device(&device)?)?;
    Ok(())
}

/// Flags of the sample scores every generative family's `eval` prints.
#[derive(Debug, Clone, Args)]
pub struct SampleScoreArgs {
    /// Prior samples to score with the classifier (0: none).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = sample_count)]
    pub samples: usize,
    #[command(flatten)]
    pub judge: JudgeArgs,
}

impl LikelihoodEval<'_> {
    /// Scores `scores.samples` prior samples of `model` (drawn with the
    /// evaluation's seed) with the one evaluator, as `deepgen eval samples`
    /// would score them from an IDX file; without a classifier run, says how
    /// to make one and skips.
    ///
    /// # Errors
    /// The model's and the evaluator's errors.
    pub fn score_samples(&self, model: &impl Generative, scores: &SampleScoreArgs, device: &Device) -> Result<()> {
        if scores.samples == 0 {
            return Ok(());
        }
        let judge = match scores
            .judge
            .judge(self.args.data, self.args.data_dir.as_deref(), device)
        {
            Ok(judge) => judge,
            Err(e) if scores.judge.classifier.is_none() => {
                say(&format!("sample scores skipped: {e:#}"));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let Some(images) = draw_samples(model, scores.samples, self.args.seed, device)? else {
            return Ok(());
        };
        judge.score_and_say(&format!("prior samples (seed {})", self.args.seed), &images)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `log (1/n) Σ exp(wᵢ)` in f64, by the book.
    fn log_mean_exp(w: &[f64]) -> f64 {
        let m = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        m + (w.iter().map(|x| (x - m).exp()).sum::<f64>() / w.len() as f64).ln()
    }

    /// A `K` drawn in parts gives the estimate of all `K` samples at once,
    /// and a `K` of one call is passed through untouched.
    #[test]
    fn a_split_k_gives_the_estimate_of_all_its_samples() -> Result<()> {
        let rows = 3;
        let weight = |row: usize, i: usize| ((i * 7 + row) as f64 * 0.013).sin() * 30.0 - 90.0;
        for k in [1, SAMPLES_PER_CALL, 2 * SAMPLES_PER_CALL + 123] {
            let mut next = 0;
            let mut calls = Vec::new();
            let split = split_log_mean(k, rows, |k_j| {
                calls.push(k_j);
                let part = (0..rows)
                    .map(|r| log_mean_exp(&(next..next + k_j).map(|i| weight(r, i)).collect::<Vec<_>>()))
                    .collect();
                next += k_j;
                Ok(part)
            })?;
            assert_eq!(calls.iter().sum::<usize>(), k);
            assert!(calls.iter().all(|&c| c <= SAMPLES_PER_CALL), "{calls:?}");
            for (r, got) in split.iter().enumerate() {
                let all = log_mean_exp(&(0..k).map(|i| weight(r, i)).collect::<Vec<_>>());
                assert!((got - all).abs() < 1e-9, "K = {k}, row {r}: {got} vs {all}");
                if calls.len() == 1 {
                    assert_eq!(*got, all);
                }
            }
        }
        Ok(())
    }
}
