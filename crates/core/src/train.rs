//! The one training loop every deepgen model uses.
//!
//! A model crate implements [`TrainStep`] (one optimisation step on a batch,
//! an end-of-epoch evaluation, and its checkpoint state); data comes from a
//! [`BatchSource`]; [`fit`] runs epochs × batches with a progress bar, writes
//! `metrics.csv` (one row per epoch) and `checkpoint.safetensors` (atomically,
//! after every epoch), stops with [`Error::NonFinite`] on a NaN or infinite
//! metric or parameter while keeping the last good checkpoint (and says which), and resumes
//! from the checkpoint.
//!
//! Randomness: epoch `e` draws from `derived_rng(seed, 2e)` (shuffling, noise
//! of every step) and its evaluation from `derived_rng(seed, 2e + 1)`, so a
//! resumed run draws exactly what an uninterrupted one does.

use crate::checkpoint::{Checkpoint, temporary_path, write_atomic};
use crate::progress::progress_bar;
use crate::rng::derived_rng;
use crate::{Error, Result};
use rand::rngs::StdRng;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The checkpoint file inside a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The metrics file inside a run directory.
pub const METRICS_FILE: &str = "metrics.csv";
const EPOCH_KEY: &str = "deepgen.epochs_completed";
const SEED_KEY: &str = "deepgen.seed";

/// Where the training loop gets its batches from.
///
/// `start_epoch` is called once before every epoch with that epoch's seeded
/// generator (shuffle there); batches are then fetched by index, so the loop
/// knows the epoch length for its progress bar.
pub trait BatchSource {
    /// What one batch is (a tensor, or a tensor with labels).
    type Batch;
    /// The number of batches in one epoch.
    fn n_batches(&self) -> usize;
    /// Prepares the next epoch (e.g. draws a new shuffled order from `rng`).
    fn start_epoch(&mut self, rng: &mut StdRng) -> Result<()>;
    /// The `batch_idx`-th batch of the current epoch, `batch_idx < n_batches()`.
    fn batch(&self, batch_idx: usize) -> Result<Self::Batch>;
}

/// The row ranges `(start, len)` that cover `0..n` in order, in batches of
/// `batch_size` rows (the last one shorter when `batch_size` does not divide
/// `n`); none for `n = 0`. Evaluations walk a test set with it, taking
/// `xs.narrow(0, start, len)`. A `batch_size` of 0 counts as 1 (callers
/// that must reject it use [`nonempty_batch_ranges`]).
pub fn batch_ranges(n: usize, batch_size: usize) -> impl Iterator<Item = (usize, usize)> {
    let batch_size = batch_size.max(1);
    (0..n)
        .step_by(batch_size)
        .map(move |start| (start, batch_size.min(n - start)))
}

/// [`batch_ranges`] for a mean over the rows, which needs a positive batch
/// size and at least one row: otherwise the error
/// `invalid("batch_size", batch_size, "need a positive batch size and data")`,
/// where `invalid` is the calling crate's constructor of its invalid-value
/// error (e.g. `Error::invalid`).
///
/// # Errors
/// `invalid`'s error for `batch_size = 0` or `n = 0`.
pub fn nonempty_batch_ranges<E>(
    n: usize,
    batch_size: usize,
    invalid: impl FnOnce(&'static str, usize, &'static str) -> E,
) -> std::result::Result<impl Iterator<Item = (usize, usize)>, E> {
    if batch_size == 0 || n == 0 {
        return Err(invalid("batch_size", batch_size, "need a positive batch size and data"));
    }
    Ok(batch_ranges(n, batch_size))
}

/// Named scalars in column order, from one step or one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    values: Vec<(String, f64)>,
    weight: Option<f64>,
}

impl Metrics {
    /// No metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name = value` (builder style).
    pub fn with(mut self, name: impl Into<String>, value: f64) -> Self {
        self.push(name, value);
        self
    }

    /// Adds `name = value`, replacing an earlier value of the same name.
    pub fn push(&mut self, name: impl Into<String>, value: f64) {
        let name = name.into();
        match self.values.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.values.push((name, value)),
        }
    }

    /// The weight of a step's metrics in the epoch mean (e.g. its batch size;
    /// every step weighs 1 when unset).
    pub fn weighted(mut self, weight: f64) -> Self {
        self.weight = Some(weight);
        self
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// `(name, value)` pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.values.iter().map(|(n, v)| (n.as_str(), *v))
    }

    /// Whether there are no metrics.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn first_non_finite(&self) -> Option<(&str, f64)> {
        self.iter().find(|(_, v)| !v.is_finite())
    }
}

/// Running weighted means of step metrics over an epoch.
#[derive(Debug, Default)]
struct MetricMeans {
    sums: Vec<(String, f64, f64)>,
}

impl MetricMeans {
    fn add(&mut self, metrics: &Metrics) {
        let w = metrics.weight.unwrap_or(1.0);
        for (name, value) in metrics.iter() {
            match self.sums.iter_mut().find(|(n, _, _)| n == name) {
                Some(slot) => {
                    slot.1 += w * value;
                    slot.2 += w;
                }
                None => self.sums.push((name.to_string(), w * value, w)),
            }
        }
    }

    fn means(&self) -> Metrics {
        let mut m = Metrics::new();
        for (name, sum, weight) in &self.sums {
            m.push(name.clone(), sum / weight);
        }
        m
    }
}

/// Where a training step stands in the run: the loop hands it to every step
/// so that schedules (KL warm-up, learning rate, EMA decay) are functions of
/// the position, not counters kept by each model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepCtx {
    /// The epoch, counted from 1.
    pub epoch: usize,
    /// The batch within the epoch, counted from 0.
    pub batch_idx: usize,
    /// Batches per epoch.
    pub n_batches: usize,
    /// Steps before this one in the whole run: `(epoch − 1) · n_batches + batch_idx`.
    pub global_step: usize,
}

impl StepCtx {
    /// The position of batch `batch_idx` of epoch `epoch` (from 1) in epochs
    /// of `n_batches` batches.
    pub fn new(epoch: usize, batch_idx: usize, n_batches: usize) -> Self {
        Self {
            epoch,
            batch_idx,
            n_batches,
            global_step: epoch.saturating_sub(1) * n_batches + batch_idx,
        }
    }

    /// Epochs completed once this step is done, fractional within an epoch:
    /// `(epoch − 1) + (batch_idx + 1) / n_batches`, so that the last step of
    /// epoch `e` is at exactly `e`.
    pub fn progress_after(&self) -> f64 {
        let within = (self.batch_idx + 1).min(self.n_batches.max(1)) as f64 / self.n_batches.max(1) as f64;
        self.epoch.saturating_sub(1) as f64 + within
    }
}

impl Default for StepCtx {
    /// The first step of a one-batch epoch.
    fn default() -> Self {
        Self::new(1, 0, 1)
    }
}

/// One model's side of training.
pub trait TrainStep {
    /// The batch type this step consumes.
    type Batch;

    /// One optimisation step on `batch` at position `ctx`; returns named
    /// scalars for the metrics log (e.g. `train_loss`). All noise comes from
    /// `rng`.
    fn train_step(&mut self, batch: &Self::Batch, ctx: &StepCtx, rng: &mut StdRng) -> Result<Metrics>;

    /// Called after every epoch (`epoch` counts from 1): evaluation metrics
    /// (e.g. `test_loss`, `test_accuracy`) and pictures. None by default.
    fn end_epoch(&mut self, epoch: usize, rng: &mut StdRng) -> Result<Metrics> {
        let _ = (epoch, rng);
        Ok(Metrics::new())
    }

    /// Adds everything a resumed run needs (parameters, optimizer state) to
    /// `checkpoint`.
    fn save_state(&self, checkpoint: &mut Checkpoint) -> Result<()>;

    /// Restores what [`TrainStep::save_state`] saved.
    fn load_state(&mut self, checkpoint: &Checkpoint, path: &Path) -> Result<()>;
}

/// How to run [`fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Total number of epochs of the run (a resumed run continues up to it).
    pub epochs: usize,
    /// The run's seed; every random draw derives from it.
    pub seed: u64,
    /// Where `metrics.csv` and `checkpoint.safetensors` go (`None`: nowhere).
    pub run_dir: Option<PathBuf>,
    /// Continue from the checkpoint in `run_dir`.
    pub resume: bool,
    /// Draw a progress bar (only when stderr is a terminal).
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            seed: 0,
            run_dir: None,
            resume: false,
            progress: true,
        }
    }
}

/// What one epoch produced.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    /// The epoch, counted from 1.
    pub epoch: usize,
    /// Weighted means of the step metrics over the epoch.
    pub train: Metrics,
    /// The end-of-epoch metrics.
    pub eval: Metrics,
    /// Wall-clock seconds of the epoch's training steps (evaluation excluded).
    pub train_seconds: f64,
}

impl EpochRecord {
    /// The CSV header: `epoch`, the train and eval metric names, `train_seconds`.
    pub fn csv_header(&self) -> String {
        let names = self.train.iter().chain(self.eval.iter()).map(|(n, _)| n.to_string());
        std::iter::once("epoch".to_string())
            .chain(names)
            .chain(std::iter::once("train_seconds".into()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The CSV row matching [`EpochRecord::csv_header`].
    pub fn csv_row(&self) -> String {
        let values = self.train.iter().chain(self.eval.iter()).map(|(_, v)| format!("{v}"));
        std::iter::once(self.epoch.to_string())
            .chain(values)
            .chain(std::iter::once(format!("{:.3}", self.train_seconds)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Preflight: a file can be created (and removed) in the run directory
/// `dir`, so that a folder that cannot take the checkpoint fails before
/// the first epoch instead of after it.
fn check_writable(dir: &Path) -> Result<()> {
    let probe = temporary_path(&dir.join(".deepgen-write-check"));
    std::fs::write(&probe, b"").map_err(|e| Error::io("write in run directory", dir, e))?;
    std::fs::remove_file(&probe).map_err(|e| Error::io("remove", &probe, e))
}

/// The metrics CSV of a run, rewritten atomically after each epoch.
#[derive(Debug)]
struct MetricsLog {
    path: PathBuf,
    header: Option<String>,
    rows: Vec<String>,
}

impl MetricsLog {
    /// Opens the log; when resuming after `epochs_completed` epochs, keeps the
    /// rows of those epochs only (later rows belong to a run that crashed).
    fn open(path: PathBuf, epochs_completed: Option<usize>) -> Result<Self> {
        let mut log = MetricsLog {
            path,
            header: None,
            rows: Vec::new(),
        };
        let Some(done) = epochs_completed else { return Ok(log) };
        let text = match std::fs::read_to_string(&log.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(log),
            Err(e) => return Err(Error::io("read metrics", &log.path, e)),
        };
        let mut lines = text.lines();
        log.header = lines.next().map(str::to_string);
        let columns = log.header.as_deref().map_or(0, |h| h.split(',').count());
        if log
            .header
            .as_deref()
            .is_some_and(|h| !h.starts_with("epoch,") || columns < 2)
        {
            return Err(log.garbled(1, "the header is not `epoch,…`"));
        }
        for (i, row) in lines.enumerate() {
            let fields: Vec<&str> = row.split(',').collect();
            let epoch = fields[0].parse::<usize>();
            if fields.len() != columns || epoch.is_err() || fields[1..].iter().any(|v| v.parse::<f64>().is_err()) {
                return Err(log.garbled(
                    i + 2,
                    &format!("`{row}` is not an epoch number and {} values", columns - 1),
                ));
            }
            if epoch.is_ok_and(|e| e <= done) {
                log.rows.push(row.to_string());
            }
        }
        // Rewritten now (without the rows of epochs after the checkpoint):
        // a folder that cannot be written fails here, not after an epoch.
        if log.header.is_some() {
            log.write()?;
        }
        Ok(log)
    }

    /// The error for line `line` of a metrics file that is not one.
    fn garbled(&self, line: usize, why: &str) -> Error {
        Error::RunFile {
            path: self.path.clone(),
            reason: format!(
                "line {line}: {why}; it is not a deepgen metrics file (restore it, or start a new run in another folder)"
            ),
        }
    }

    /// The header and the rows, written atomically.
    fn write(&self) -> Result<()> {
        let mut text = self.header.clone().unwrap_or_default();
        for row in &self.rows {
            text.push('\n');
            text.push_str(row);
        }
        text.push('\n');
        write_atomic(&self.path, text.as_bytes())
    }

    fn append(&mut self, record: &EpochRecord) -> Result<()> {
        let header = record.csv_header();
        match &self.header {
            Some(existing) if *existing != header => {
                return Err(Error::InvalidConfig {
                    name: "metrics",
                    value: header,
                    reason: format!(
                        "the columns differ from those already in `{}`: {existing}",
                        self.path.display()
                    ),
                });
            }
            Some(_) => {}
            None => self.header = Some(header),
        }
        self.rows.push(record.csv_row());
        self.write()
    }
}

fn check_finite(metrics: &Metrics, epoch: usize, batch: String, kept: Option<usize>) -> Result<()> {
    match metrics.first_non_finite() {
        Some((name, value)) => Err(Error::NonFinite {
            metric: name.to_string(),
            value,
            epoch,
            batch,
            kept,
        }),
        None => Ok(()),
    }
}

fn check_state_finite(checkpoint: &Checkpoint, epoch: usize, kept: Option<usize>) -> Result<()> {
    for (name, tensor) in &checkpoint.tensors {
        if !tensor.dtype().is_float() {
            continue;
        }
        let total = tensor
            .to_dtype(candle::DType::F64)?
            .abs()?
            .sum_all()?
            .to_scalar::<f64>()?;
        if !total.is_finite() {
            return Err(Error::NonFinite {
                metric: format!("parameter {name}"),
                value: total,
                epoch,
                batch: "end".into(),
                kept,
            });
        }
    }
    Ok(())
}

/// Trains `step` on `data` for `config.epochs` epochs; `on_epoch` sees every
/// finished epoch and the step after it (the CLI prints a line and draws
/// pictures there). Returns the records of the epochs run in this call.
///
/// # Errors
/// - [`Error::NonFinite`] when a metric or parameter becomes NaN or infinite;
///   the checkpoint of the last good epoch stays in `run_dir`.
/// - [`Error::NothingToResume`] when `resume` is set but `run_dir` has no
///   checkpoint; [`Error::InvalidConfig`] when the checkpoint's seed differs
///   from `config.seed`.
/// - Whatever the step, the data source or the file system returns.
pub fn fit<S, D>(
    config: &TrainConfig,
    step: &mut S,
    data: &mut D,
    mut on_epoch: impl FnMut(&EpochRecord, &S) -> Result<()>,
) -> Result<Vec<EpochRecord>>
where
    S: TrainStep,
    D: BatchSource<Batch = S::Batch>,
{
    if let Some(dir) = &config.run_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create run directory", dir, e))?;
        check_writable(dir)?;
    }
    let checkpoint_path = config.run_dir.as_ref().map(|d| d.join(CHECKPOINT_FILE));
    let mut start_epoch = 0;
    if config.resume {
        let path = checkpoint_path.clone().ok_or_else(|| Error::InvalidConfig {
            name: "resume",
            value: "true".into(),
            reason: "resuming needs a run directory".into(),
        })?;
        if !path.exists() {
            return Err(Error::NothingToResume(path));
        }
        let checkpoint = Checkpoint::load(&path, &candle::Device::Cpu)?;
        let seed: u64 = checkpoint.metadata_value(SEED_KEY, &path)?;
        if seed != config.seed {
            return Err(Error::InvalidConfig {
                name: "seed",
                value: config.seed.to_string(),
                reason: format!(
                    "the checkpoint `{}` was trained with seed {seed}; resume with the same seed",
                    path.display()
                ),
            });
        }
        start_epoch = checkpoint.metadata_value(EPOCH_KEY, &path)?;
        step.load_state(&checkpoint, &path)?;
    }
    let mut log = match &config.run_dir {
        Some(dir) => Some(MetricsLog::open(
            dir.join(METRICS_FILE),
            config.resume.then_some(start_epoch),
        )?),
        None => None,
    };

    let mut records = Vec::new();
    let _active = crate::interrupt::ActiveTraining::start();
    let mut kept = (checkpoint_path.is_some() && start_epoch > 0).then_some(start_epoch);
    for epoch_idx in start_epoch..config.epochs {
        let epoch = epoch_idx + 1;
        let mut rng = derived_rng(config.seed, 2 * epoch_idx as u64);
        data.start_epoch(&mut rng)?;
        let n_batches = data.n_batches();
        let bar = progress_bar(
            n_batches as u64,
            &format!(
                "epoch {epoch:>w$}/{}",
                config.epochs,
                w = config.epochs.to_string().len()
            ),
            config.progress,
        );
        let mut means = MetricMeans::default();
        let started = Instant::now();
        for batch_idx in 0..n_batches {
            if crate::interrupt::take_stop_request() {
                bar.finish_and_clear();
                return Err(Error::Interrupted { epoch, kept });
            }
            let batch = data.batch(batch_idx)?;
            let ctx = StepCtx::new(epoch, batch_idx, n_batches);
            let metrics = step.train_step(&batch, &ctx, &mut rng)?;
            check_finite(&metrics, epoch, batch_idx.to_string(), kept)?;
            means.add(&metrics);
            if let Some((name, value)) = means.means().iter().next() {
                bar.set_message(format!("{name} {value:.4}"));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let train_seconds = started.elapsed().as_secs_f64();
        let eval = step.end_epoch(epoch, &mut derived_rng(config.seed, 2 * epoch_idx as u64 + 1))?;
        check_finite(&eval, epoch, "end of epoch".into(), kept)?;
        let record = EpochRecord {
            epoch,
            train: means.means(),
            eval,
            train_seconds,
        };

        if let (Some(path), Some(log)) = (&checkpoint_path, log.as_mut()) {
            let mut checkpoint = Checkpoint::default();
            step.save_state(&mut checkpoint)?;
            check_state_finite(&checkpoint, epoch, kept)?;
            checkpoint.metadata.insert(EPOCH_KEY.into(), epoch.to_string());
            checkpoint.metadata.insert(SEED_KEY.into(), config.seed.to_string());
            // Metrics first: a crash between the two writes makes the resumed
            // run redo (and rewrite) this epoch rather than lose its row.
            log.append(&record)?;
            checkpoint.save(path)?;
            kept = Some(epoch);
        }
        on_epoch(&record, step)?;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ranges_cover_the_rows_in_order() {
        let ranges: Vec<_> = batch_ranges(10, 4).collect();
        assert_eq!(ranges, [(0, 4), (4, 4), (8, 2)]);
        assert_eq!(batch_ranges(8, 4).collect::<Vec<_>>(), [(0, 4), (4, 4)]);
        assert_eq!(batch_ranges(3, 100).collect::<Vec<_>>(), [(0, 3)]);
        assert_eq!(batch_ranges(0, 4).count(), 0);
        assert_eq!(batch_ranges(0, 0).count(), 0);
    }

    #[test]
    fn nonempty_batch_ranges_need_rows_and_a_batch_size() {
        let invalid = |name: &'static str, value: usize, reason: &'static str| format!("{name} = {value}: {reason}");
        let ranges: Vec<_> = nonempty_batch_ranges(5, 2, invalid).expect("valid").collect();
        assert_eq!(ranges, [(0, 2), (2, 2), (4, 1)]);
        for (n, batch_size) in [(0, 2), (5, 0), (0, 0)] {
            let err = nonempty_batch_ranges(n, batch_size, invalid).err();
            assert_eq!(
                err,
                Some(format!(
                    "batch_size = {batch_size}: need a positive batch size and data"
                ))
            );
        }
    }
}
