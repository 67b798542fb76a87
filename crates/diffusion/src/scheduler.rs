//! The scheduler API, in diffusers' shape: configure a scheduler from a
//! schedule, `set_timesteps(S, spacing)`, then for each `t` of
//! `timesteps()` call `step(model_output, t, x_t, noise)`, which returns
//! the previous sample and the predicted x₀. Noise is an argument (`None`
//! for the deterministic samplers), as everywhere in deepgen.
//!
//! [`SamplerConfig`] names a sampler and its options as a serde struct; it
//! is stored with a model and builds its [`Scheduler`].

use crate::ddim::Ddim;
use crate::ddpm::{Ddpm, DdpmVariance};
use crate::dpm_solver::DpmSolverPlusPlus;
use crate::prediction::{PredictionType, SampleProcessing};
use crate::schedule::NoiseSchedule;
use crate::spacing::TimestepSpacing;
use crate::{Error, Result};
use candle::Tensor;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The result of one scheduler step.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// `x_{t_prev}`: the sample at the next (smaller) timestep, or the clean
    /// sample after the last step.
    pub prev_sample: Tensor,
    /// The predicted `x̂₀`, after clipping or thresholding.
    pub pred_original_sample: Tensor,
}

/// A reverse-process sampler.
pub trait Scheduler: fmt::Debug {
    /// Chooses `steps` of the training timesteps with `spacing`.
    ///
    /// # Errors
    /// `steps = 0` or `steps > T`.
    fn set_timesteps(&mut self, steps: usize, spacing: TimestepSpacing) -> Result<()>;

    /// The timesteps to visit, largest first.
    fn timesteps(&self) -> &[usize];

    /// Whether [`Scheduler::step`] needs noise.
    fn needs_noise(&self) -> bool;

    /// One reverse step from `x_t` (`sample`) given the network's output at
    /// `(x_t, t)`; `noise ~ N(0, I)` of `sample`'s shape when
    /// [`Scheduler::needs_noise`].
    ///
    /// # Errors
    /// A `t` that is not among the timesteps; missing noise; Candle errors.
    fn step(&mut self, model_output: &Tensor, t: usize, sample: &Tensor, noise: Option<&Tensor>) -> Result<StepOutput>;
}

/// What every scheduler holds: the schedule, the prediction type, the
/// processing of x̂₀ and the chosen timesteps.
#[derive(Debug, Clone)]
pub struct SchedulerState {
    /// The training schedule.
    pub schedule: NoiseSchedule,
    /// What the network predicts.
    pub prediction: PredictionType,
    /// Clipping or thresholding of x̂₀.
    pub processing: SampleProcessing,
    /// Offset of the leading spacing.
    pub steps_offset: usize,
    timesteps: Vec<usize>,
}

impl SchedulerState {
    /// A state visiting every training timestep until
    /// [`SchedulerState::set_timesteps`].
    ///
    /// # Errors
    /// Invalid processing.
    pub fn new(schedule: NoiseSchedule, prediction: PredictionType, processing: SampleProcessing) -> Result<Self> {
        processing.validate()?;
        let timesteps = (0..schedule.len()).rev().collect();
        Ok(Self {
            schedule,
            prediction,
            processing,
            steps_offset: 0,
            timesteps,
        })
    }

    /// See [`Scheduler::set_timesteps`].
    ///
    /// # Errors
    /// As [`TimestepSpacing::timesteps`].
    pub fn set_timesteps(&mut self, steps: usize, spacing: TimestepSpacing) -> Result<()> {
        let offset = if spacing == TimestepSpacing::Leading {
            self.steps_offset
        } else {
            0
        };
        self.timesteps = spacing.timesteps(self.schedule.len(), steps, offset)?;
        Ok(())
    }

    /// The chosen timesteps.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// The position of `t` and the timestep after it (`None` after the last).
    ///
    /// # Errors
    /// A `t` that is not among the timesteps.
    pub fn position(&self, t: usize) -> Result<(usize, Option<usize>)> {
        let i = self.timesteps.iter().position(|&s| s == t).ok_or_else(|| {
            Error::invalid(
                "timestep",
                t,
                format!(
                    "not among the scheduler's {} timesteps (call set_timesteps and step through timesteps())",
                    self.timesteps.len()
                ),
            )
        })?;
        Ok((i, self.timesteps.get(i + 1).copied()))
    }

    /// `(ᾱ_t, ᾱ_prev)` for the step from `t`; `ᾱ_prev = 1` after the last.
    ///
    /// # Errors
    /// As [`SchedulerState::position`].
    pub fn alpha_bars(&self, t: usize) -> Result<(f64, f64)> {
        let (_, prev) = self.position(t)?;
        let a_prev = match prev {
            Some(p) => self.schedule.alpha_bar(p)?,
            None => 1.0,
        };
        Ok((self.schedule.alpha_bar(t)?, a_prev))
    }

    /// `(x̂₀ processed, ε̂)` from the network's output.
    ///
    /// # Errors
    /// As [`PredictionType::split`].
    pub fn predict(&self, output: &Tensor, x_t: &Tensor, alpha_bar: f64) -> Result<(Tensor, Tensor)> {
        if output.dims() != x_t.dims() {
            return Err(Error::shape(
                "model output",
                output.dims(),
                format!("the sample's shape {:?}", x_t.dims()),
            ));
        }
        let (x0, eps) = self.prediction.split(output, x_t, alpha_bar)?;
        Ok((self.processing.apply(&x0)?, eps))
    }
}

/// The noise of a step that needs it, checked against the sample.
///
/// # Errors
/// No noise, or noise of another shape.
pub(crate) fn required_noise<'a>(noise: Option<&'a Tensor>, sample: &Tensor, who: &'static str) -> Result<&'a Tensor> {
    let noise = noise.ok_or_else(|| {
        Error::invalid(
            "noise",
            "None",
            format!("{who} draws noise at every step: pass N(0, I) of the sample's shape"),
        )
    })?;
    if noise.dims() != sample.dims() {
        return Err(Error::shape("noise", noise.dims(), format!("{:?}", sample.dims())));
    }
    Ok(noise)
}

/// The sampler families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// DDPM's ancestral sampler.
    Ddpm,
    /// DDIM with η (0: deterministic).
    Ddim,
    /// DPM-Solver++ (2M), multistep, data prediction.
    #[serde(rename = "dpm-solver++")]
    DpmSolverPlusPlus,
}

deepgen_core::named_choices!(SamplerKind, "sampler" {
    Ddpm => "ddpm",
    Ddim => "ddim",
    DpmSolverPlusPlus => "dpm-solver++",
});

/// A sampler and its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// Which sampler (default: ddim).
    pub kind: SamplerKind,
    /// Inference steps `S ≤ T` (default: 50).
    pub steps: usize,
    /// How the steps are spread (default: linspace, as the PyTorch twin).
    pub spacing: TimestepSpacing,
    /// DDIM's η ≥ 0 (0: deterministic, 1: DDPM's variance) (default: 0).
    pub eta: f64,
    /// DDPM's variance (default: fixed-small).
    pub variance: DdpmVariance,
    /// Clipping or thresholding of x̂₀ (default: none; images: clip to 1).
    pub processing: SampleProcessing,
    /// Offset of the leading spacing (default: 0).
    pub steps_offset: usize,
}

impl Default for SamplerConfig {
    /// DDIM, 50 linspace steps, η = 0.
    fn default() -> Self {
        Self {
            kind: SamplerKind::Ddim,
            steps: 50,
            spacing: TimestepSpacing::Linspace,
            eta: 0.0,
            variance: DdpmVariance::FixedSmall,
            processing: SampleProcessing::None,
            steps_offset: 0,
        }
    }
}

impl SamplerConfig {
    /// Checks `S ≥ 1`, `η ≥ 0` and the processing (`S ≤ T` is checked by
    /// [`SamplerConfig::scheduler`], which knows T).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`].
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::invalid("steps", 0, "a sampler takes at least one step"));
        }
        if !(self.eta >= 0.0 && self.eta.is_finite()) {
            return Err(Error::invalid(
                "eta",
                self.eta,
                "DDIM's η is ≥ 0 (0: deterministic, 1: DDPM)",
            ));
        }
        self.processing.validate()
    }

    /// The scheduler for a model trained on `schedule` to predict
    /// `prediction`, with its timesteps set.
    ///
    /// # Errors
    /// An invalid configuration; `S > T`.
    pub fn scheduler(&self, schedule: &NoiseSchedule, prediction: PredictionType) -> Result<Box<dyn Scheduler>> {
        self.validate()?;
        let mut state = SchedulerState::new(schedule.clone(), prediction, self.processing)?;
        state.steps_offset = self.steps_offset;
        let mut scheduler: Box<dyn Scheduler> = match self.kind {
            SamplerKind::Ddpm => Box::new(Ddpm::new(state, self.variance)),
            SamplerKind::Ddim => Box::new(Ddim::new(state, self.eta)?),
            SamplerKind::DpmSolverPlusPlus => Box::new(DpmSolverPlusPlus::new(state)),
        };
        scheduler.set_timesteps(self.steps, self.spacing)?;
        Ok(scheduler)
    }

    /// `ddim-50 (linspace, η = 0)`.
    pub fn label(&self) -> String {
        match self.kind {
            SamplerKind::Ddim => format!("ddim-{} ({}, η = {})", self.steps, self.spacing, self.eta),
            SamplerKind::Ddpm => format!("ddpm-{} ({}, {})", self.steps, self.spacing, self.variance),
            SamplerKind::DpmSolverPlusPlus => format!("dpm-solver++-{} ({})", self.steps, self.spacing),
        }
    }
}
