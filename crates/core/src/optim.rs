//! Optimizers whose state is checkpointed by name, gradient clipping by
//! global norm and learning-rate schedules — the parts candle-nn lacks
//! (SPEC §11: it has SGD without momentum and AdamW only, no clipping, no
//! schedules).
//!
//! [`Adam`] follows candle-nn's `AdamW` update exactly (`weight_decay = 0`
//! gives Adam), so its numbers match Candle's and PyTorch's:
//!
//! ```text
//! m ← β₁ m + (1 − β₁) g            v ← β₂ v + (1 − β₂) g²
//! θ ← θ (1 − η λ) − η · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
//! ```
//!
//! On the CPU both optimizers update each parameter and its state in place,
//! in one fused sweep that allocates nothing (candle-nn's `AdamW` runs about
//! ten allocating tensor ops per parameter); the same arithmetic in the same
//! order keeps the numbers candle-nn's. Gradient clipping is folded into that
//! sweep: the global norm is read straight from the gradients' storage and
//! the clipping factor multiplies each gradient as it is read, so the
//! [`GradStore`] is left as it was. On CUDA and Metal (and for half-precision
//! parameters) the same update runs as tensor ops.

use crate::checkpoint::{Checkpoint, converted};
use crate::ops::inplace::{self, AdamStep, SgdStep};
use crate::{Error, Result};
use candle::backprop::GradStore;
use candle::{Tensor, Var};
use candle_nn::VarMap;
use std::path::Path;

/// A learning-rate schedule as a function of the optimizer step `t`
/// (0 for the first update), like PyTorch's schedulers stepped once per
/// optimizer step.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LrSchedule {
    /// `η_t = η`.
    #[default]
    Constant,
    /// `η_t = η · γ^⌊t / step_size⌋` (PyTorch `StepLR`).
    Step {
        /// Steps between decays.
        step_size: usize,
        /// Multiplicative decay.
        gamma: f64,
    },
    /// `η_t = η_min + (η − η_min)(1 + cos(π min(t, T)/T))/2` (PyTorch
    /// `CosineAnnealingLR` without restarts, held at `η_min` after `T`).
    Cosine {
        /// `T`, the number of steps of the half cosine.
        total_steps: usize,
        /// `η_min`.
        min_lr: f64,
    },
}

impl LrSchedule {
    /// The learning rate at step `t` for base rate `base_lr`.
    pub fn lr_at(&self, base_lr: f64, t: usize) -> f64 {
        match *self {
            LrSchedule::Constant => base_lr,
            LrSchedule::Step { step_size, gamma } => base_lr * gamma.powi((t / step_size.max(1)) as i32),
            LrSchedule::Cosine { total_steps, min_lr } => {
                let progress = t.min(total_steps) as f64 / total_steps.max(1) as f64;
                min_lr + (base_lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }

    /// Checks the schedule's parameters.
    pub fn validate(&self) -> Result<()> {
        match *self {
            LrSchedule::Step { step_size: 0, .. } => Err(invalid("step_size", "0", "must be at least 1")),
            LrSchedule::Step { gamma, .. } if !(gamma > 0.0 && gamma.is_finite()) => {
                Err(invalid("gamma", gamma, "must be positive and finite"))
            }
            LrSchedule::Cosine { total_steps: 0, .. } => Err(invalid("total_steps", "0", "must be at least 1")),
            LrSchedule::Cosine { min_lr, .. } if !(min_lr >= 0.0 && min_lr.is_finite()) => {
                Err(invalid("min_lr", min_lr, "must be non-negative and finite"))
            }
            _ => Ok(()),
        }
    }
}

fn invalid(name: &'static str, value: impl std::fmt::Display, reason: &str) -> Error {
    Error::InvalidConfig {
        name,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Scales the gradients of `vars` in place so that their global L2 norm is
/// at most `max_norm` (PyTorch `clip_grad_norm_`: factor
/// `max_norm / (‖g‖ + 1e-6)` when `‖g‖ > max_norm`). Returns the norm
/// before clipping. Variables without a gradient are skipped.
pub fn clip_grad_norm<'a>(
    grads: &mut GradStore,
    vars: impl IntoIterator<Item = &'a Var>,
    max_norm: f64,
) -> Result<f64> {
    let vars: Vec<&Var> = vars.into_iter().collect();
    let total = grad_norm(grads, vars.iter().copied())?;
    if total > max_norm {
        let scale = max_norm / (total + 1e-6);
        for var in vars {
            if let Some(g) = grads.get(var) {
                let clipped = (g * scale)?;
                grads.insert(var, clipped);
            }
        }
    }
    Ok(total)
}

/// The global L2 norm `√(Σ_p ‖∇_p‖²)` of the gradients of `vars`, summed in
/// `f64` (read directly from contiguous CPU gradients).
pub fn grad_norm<'a>(grads: &GradStore, vars: impl IntoIterator<Item = &'a Var>) -> Result<f64> {
    let mut sum_sq = 0f64;
    for var in vars {
        if let Some(g) = grads.get(var) {
            sum_sq += sum_of_squares(g)?;
        }
    }
    Ok(sum_sq.sqrt())
}

/// `‖g‖²` in `f64`.
fn sum_of_squares(g: &Tensor) -> Result<f64> {
    Ok(match inplace::sum_of_squares(g) {
        Some(s) => s,
        None => g.to_dtype(candle::DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?,
    })
}

/// The factor `max_norm / (‖g‖ + 1e-6)` that [`clip_grad_norm`] scales by,
/// or 1 when no clipping is asked for or needed.
fn clip_factor(norm: f64, max_norm: Option<f64>) -> f64 {
    match max_norm {
        Some(max_norm) if norm > max_norm => max_norm / (norm + 1e-6),
        _ => 1.0,
    }
}

/// Collects `varmap`'s float variables sorted by name, so that optimizer state
/// has stable names for checkpoints.
pub fn named_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle::Error::msg("varmap lock poisoned"))?;
    let mut vars: Vec<(String, Var)> = data
        .iter()
        .filter(|(_, v)| v.dtype().is_float())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(vars)
}

/// Configuration of [`Adam`]; defaults are PyTorch's `Adam` (and candle-nn's
/// `ParamsAdamW` with `weight_decay = 0`).
#[derive(Debug, Clone, PartialEq)]
pub struct AdamConfig {
    /// Base learning rate η (PyTorch default 1e-3).
    pub lr: f64,
    /// β₁ (0.9).
    pub beta1: f64,
    /// β₂ (0.999).
    pub beta2: f64,
    /// ε (1e-8).
    pub eps: f64,
    /// Decoupled weight decay λ (0 = Adam; AdamW's default is 0.01).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value before each step.
    pub max_grad_norm: Option<f64>,
    /// Learning-rate schedule over optimizer steps.
    pub schedule: LrSchedule,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: None,
            schedule: LrSchedule::Constant,
        }
    }
}

impl AdamConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(invalid("lr", self.lr, "must be positive and finite"));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(invalid(name, b, "must lie in [0, 1)"));
            }
        }
        if !(self.eps > 0.0) {
            return Err(invalid("eps", self.eps, "must be positive"));
        }
        if !(self.weight_decay >= 0.0) {
            return Err(invalid("weight_decay", self.weight_decay, "must be non-negative"));
        }
        if let Some(c) = self.max_grad_norm
            && !(c > 0.0)
        {
            return Err(invalid("max_grad_norm", c, "must be positive"));
        }
        self.schedule.validate()
    }
}

#[derive(Debug)]
struct AdamParam {
    name: String,
    var: Var,
    first_moment: Var,
    second_moment: Var,
}

impl AdamParam {
    /// The update of [`Adam::step`] as tensor ops, for devices and dtypes the
    /// fused CPU kernel does not handle (CUDA, Metal, half precision).
    fn tensor_step(&self, g: &Tensor, s: &AdamStep) -> Result<()> {
        let g = if s.grad_scale == 1.0 {
            g.clone()
        } else {
            (g * s.grad_scale)?
        };
        let m = ((self.first_moment.as_tensor() * s.beta1)? + (&g * (1.0 - s.beta1))?)?;
        let v = ((self.second_moment.as_tensor() * s.beta2)? + (g.sqr()? * (1.0 - s.beta2))?)?;
        let scale_m = 1.0 / (1.0 - s.beta1.powi(s.t));
        let scale_v = 1.0 / (1.0 - s.beta2.powi(s.t));
        let update = ((&m * scale_m)? / ((&v * scale_v)?.sqrt()? + s.eps)?)?;
        let decayed = if s.weight_decay == 0.0 {
            self.var.as_tensor().clone()
        } else {
            (self.var.as_tensor() * (1.0 - s.lr * s.weight_decay))?
        };
        self.var.set(&(decayed - (update * s.lr)?)?)?;
        self.first_moment.set(&m)?;
        self.second_moment.set(&v)?;
        Ok(())
    }
}

/// Adam / AdamW with named, checkpointable state.
#[derive(Debug)]
pub struct Adam {
    params: Vec<AdamParam>,
    step_t: usize,
    config: AdamConfig,
    last_grad_norm: Option<f64>,
}

impl Adam {
    /// Optimises every float variable of `varmap`.
    pub fn new(varmap: &VarMap, config: AdamConfig) -> Result<Self> {
        Self::from_named_vars(named_vars(varmap)?, config)
    }

    /// Optimises the given named variables.
    pub fn from_named_vars(vars: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        config.validate()?;
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                Ok(AdamParam {
                    first_moment: Var::zeros(var.shape(), var.dtype(), var.device())?,
                    second_moment: Var::zeros(var.shape(), var.dtype(), var.device())?,
                    name,
                    var,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            params,
            step_t: 0,
            config,
            last_grad_norm: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// Number of updates done so far.
    pub fn step_count(&self) -> usize {
        self.step_t
    }

    /// The learning rate the next update will use (after the schedule).
    pub fn learning_rate(&self) -> f64 {
        self.config.schedule.lr_at(self.config.lr, self.step_t)
    }

    /// Sets the base learning rate (the schedule scales it).
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// The global gradient norm seen by the last step (before clipping).
    pub fn last_grad_norm(&self) -> Option<f64> {
        self.last_grad_norm
    }

    /// `loss.backward()` then [`Adam::step`].
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let mut grads = loss.backward()?;
        self.step(&mut grads)
    }

    /// One update from `grads`, with the gradients clipped to
    /// `max_grad_norm` first if configured (the clipping factor is applied
    /// inside the update; `grads` itself is not modified).
    pub fn step(&mut self, grads: &mut GradStore) -> Result<()> {
        self.step_impl(grads, true)
    }

    /// [`Adam::step`], with the fused kernel allowed or not (tests compare the two).
    fn step_impl(&mut self, grads: &GradStore, fused: bool) -> Result<()> {
        // Clipping needs the norm before the update; otherwise the fused
        // kernels sum the squares in the same sweep as the update.
        let clip_norm = match self.config.max_grad_norm {
            Some(_) => Some(grad_norm(grads, self.params.iter().map(|p| &p.var))?),
            None => None,
        };
        let grad_scale = clip_norm.map_or(1.0, |norm| clip_factor(norm, self.config.max_grad_norm));
        let lr = self.learning_rate();
        self.step_t += 1;
        let step = AdamStep {
            lr,
            beta1: self.config.beta1,
            beta2: self.config.beta2,
            eps: self.config.eps,
            weight_decay: self.config.weight_decay,
            t: self.step_t as i32,
            grad_scale,
        };
        let mut sum_sq = 0f64;
        for p in &self.params {
            let Some(g) = grads.get(&p.var) else { continue };
            let (theta, m, v) = (
                p.var.as_tensor(),
                p.first_moment.as_tensor(),
                p.second_moment.as_tensor(),
            );
            let fused_sum_sq = if fused {
                inplace::adam_in_place(theta, m, v, g, &step)?
            } else {
                None
            };
            match fused_sum_sq {
                Some(s) => sum_sq += s,
                None => {
                    if clip_norm.is_none() {
                        sum_sq += sum_of_squares(g)?;
                    }
                    p.tensor_step(g, &step)?;
                }
            }
        }
        self.last_grad_norm = Some(clip_norm.unwrap_or(sum_sq.sqrt()));
        Ok(())
    }

    /// Adds the optimizer state to `checkpoint` under `prefix`
    /// (`<prefix>m.<name>`, `<prefix>v.<name>`, metadata `<prefix>step`).
    pub fn save_state(&self, prefix: &str, checkpoint: &mut Checkpoint) {
        for p in &self.params {
            checkpoint
                .tensors
                .insert(format!("{prefix}m.{}", p.name), p.first_moment.as_tensor().clone());
            checkpoint
                .tensors
                .insert(format!("{prefix}v.{}", p.name), p.second_moment.as_tensor().clone());
        }
        checkpoint
            .metadata
            .insert(format!("{prefix}step"), self.step_t.to_string());
    }

    /// Restores the state saved by [`Adam::save_state`].
    pub fn load_state(&mut self, prefix: &str, checkpoint: &Checkpoint, path: &Path) -> Result<()> {
        let step_t = checkpoint.metadata_value::<usize>(&format!("{prefix}step"), path)?;
        // Check and convert everything first so that a wrong checkpoint
        // changes nothing.
        let mut values = Vec::with_capacity(2 * self.params.len());
        for p in &self.params {
            for (kind, moment) in [("m", &p.first_moment), ("v", &p.second_moment)] {
                let key = format!("{prefix}{kind}.{}", p.name);
                let stored = checkpoint.tensors.get(&key).ok_or_else(|| Error::Checkpoint {
                    path: path.to_path_buf(),
                    reason: format!("no optimizer state `{key}`"),
                })?;
                if stored.dims() != moment.dims() {
                    return Err(Error::Checkpoint {
                        path: path.to_path_buf(),
                        reason: format!(
                            "optimizer state `{key}` has shape {:?}, expected {:?}",
                            stored.dims(),
                            moment.dims()
                        ),
                    });
                }
                values.push((moment, converted(stored, &key, moment.as_tensor(), path)?));
            }
        }
        for (moment, value) in values {
            moment.set(&value)?;
        }
        self.step_t = step_t;
        Ok(())
    }
}

/// The update of [`Sgd::step`] as tensor ops (CUDA, Metal, half precision).
fn sgd_tensor_step(var: &Var, buffer: Option<&Var>, g: &Tensor, s: &SgdStep) -> Result<()> {
    let g = if s.grad_scale == 1.0 {
        g.clone()
    } else {
        (g * s.grad_scale)?
    };
    let g = if s.weight_decay == 0.0 {
        g
    } else {
        (g + (var.as_tensor() * s.weight_decay)?)?
    };
    let direction = match buffer {
        None => g,
        Some(buffer) => {
            let b = if s.first {
                g.clone()
            } else {
                ((buffer.as_tensor() * s.momentum)? + &g)?
            };
            buffer.set(&b)?;
            if s.nesterov { (g + (b * s.momentum)?)? } else { b }
        }
    };
    var.set(&(var.as_tensor() - (direction * s.lr)?)?)?;
    Ok(())
}

/// Configuration of [`Sgd`]; defaults are PyTorch's `SGD` with lr 0.01.
#[derive(Debug, Clone, PartialEq)]
pub struct SgdConfig {
    /// Learning rate η.
    pub lr: f64,
    /// Momentum μ (0 = plain SGD).
    pub momentum: f64,
    /// L2 weight decay added to the gradient (PyTorch's coupled form).
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Clip the global gradient norm to this value before each step.
    pub max_grad_norm: Option<f64>,
    /// Learning-rate schedule over optimizer steps.
    pub schedule: LrSchedule,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            max_grad_norm: None,
            schedule: LrSchedule::Constant,
        }
    }
}

/// SGD with (Nesterov) momentum, PyTorch's update:
/// `b ← μ b + g` (`b = g` at the first step), `θ ← θ − η (g + μ b)` with
/// Nesterov, else `θ ← θ − η b`.
#[derive(Debug)]
pub struct Sgd {
    params: Vec<(String, Var, Var)>,
    step_t: usize,
    config: SgdConfig,
}

impl Sgd {
    /// Optimises every float variable of `varmap`.
    pub fn new(varmap: &VarMap, config: SgdConfig) -> Result<Self> {
        if !(config.lr > 0.0 && config.lr.is_finite()) {
            return Err(invalid("lr", config.lr, "must be positive and finite"));
        }
        if !(0.0..1.0).contains(&config.momentum) {
            return Err(invalid("momentum", config.momentum, "must lie in [0, 1)"));
        }
        config.schedule.validate()?;
        let params = named_vars(varmap)?
            .into_iter()
            .map(|(name, var)| Ok((name, Var::zeros(var.shape(), var.dtype(), var.device())?, var)))
            .map(|r: Result<_>| r.map(|(n, b, v)| (n, v, b)))
            .collect::<Result<_>>()?;
        Ok(Self {
            params,
            step_t: 0,
            config,
        })
    }

    /// `loss.backward()` then [`Sgd::step`].
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let mut grads = loss.backward()?;
        self.step(&mut grads)
    }

    /// One update from `grads`, clipped to `max_grad_norm` first if
    /// configured (inside the update; `grads` itself is not modified).
    pub fn step(&mut self, grads: &mut GradStore) -> Result<()> {
        self.step_impl(grads, true)
    }

    /// [`Sgd::step`], with the fused kernel allowed or not (tests compare the two).
    fn step_impl(&mut self, grads: &GradStore, fused: bool) -> Result<()> {
        let grad_scale = match self.config.max_grad_norm {
            Some(_) => clip_factor(
                grad_norm(grads, self.params.iter().map(|p| &p.1))?,
                self.config.max_grad_norm,
            ),
            None => 1.0,
        };
        let step = SgdStep {
            lr: self.config.schedule.lr_at(self.config.lr, self.step_t),
            momentum: self.config.momentum,
            weight_decay: self.config.weight_decay,
            nesterov: self.config.nesterov,
            first: self.step_t == 0,
            grad_scale,
        };
        for (_, var, buffer) in &self.params {
            let Some(g) = grads.get(var) else { continue };
            let buffer = (step.momentum != 0.0).then_some(buffer);
            if !(fused && inplace::sgd_in_place(var.as_tensor(), buffer.map(|b| b.as_tensor()), g, &step)?) {
                sgd_tensor_step(var, buffer, g, &step)?;
            }
        }
        self.step_t += 1;
        Ok(())
    }

    /// Adds the momentum buffers to `checkpoint` under `prefix`.
    pub fn save_state(&self, prefix: &str, checkpoint: &mut Checkpoint) {
        for (name, _, buffer) in &self.params {
            checkpoint
                .tensors
                .insert(format!("{prefix}momentum.{name}"), buffer.as_tensor().clone());
        }
        checkpoint
            .metadata
            .insert(format!("{prefix}step"), self.step_t.to_string());
    }

    /// Restores the state saved by [`Sgd::save_state`].
    pub fn load_state(&mut self, prefix: &str, checkpoint: &Checkpoint, path: &Path) -> Result<()> {
        let step_t = checkpoint.metadata_value::<usize>(&format!("{prefix}step"), path)?;
        let mut values = Vec::with_capacity(self.params.len());
        for (name, _, buffer) in &self.params {
            let key = format!("{prefix}momentum.{name}");
            match checkpoint.tensors.get(&key) {
                Some(stored) if stored.dims() == buffer.dims() => {
                    values.push((buffer, converted(stored, &key, buffer.as_tensor(), path)?));
                }
                _ => {
                    return Err(Error::Checkpoint {
                        path: path.to_path_buf(),
                        reason: format!("bad or missing optimizer state `{key}`"),
                    });
                }
            }
        }
        for (buffer, value) in values {
            buffer.set(&value)?;
        }
        self.step_t = step_t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::seeded_var_builder;
    use crate::ops::test_util;
    use crate::rng::{randn, rng_from_seed};
    use candle::{DType, Device, Module};
    use candle_nn::Optimizer;

    /// A small regression problem: loss(θ) of a 6→4→1 MLP on fixed data.
    fn loss(model: &(candle_nn::Linear, candle_nn::Linear), xs: &Tensor, ys: &Tensor) -> candle::Result<Tensor> {
        let h = model.0.forward(xs)?.tanh()?;
        (model.1.forward(&h)? - ys)?.sqr()?.mean_all()
    }

    /// The model and data of [`loss`] in `dtype`, drawn from `seed`.
    fn setup_in(seed: u64, dtype: DType) -> Result<(VarMap, (candle_nn::Linear, candle_nn::Linear), Tensor, Tensor)> {
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, seed, dtype, &Device::Cpu);
        let model = (
            candle_nn::linear(6, 4, vb.pp("a"))?,
            candle_nn::linear(4, 1, vb.pp("b"))?,
        );
        let mut rng = rng_from_seed(seed);
        let xs = randn(&mut rng, (32, 6), &Device::Cpu)?.to_dtype(dtype)?;
        let ys = randn(&mut rng, (32, 1), &Device::Cpu)?.to_dtype(dtype)?;
        Ok((varmap, model, xs, ys))
    }

    fn setup(seed: u64) -> Result<(VarMap, (candle_nn::Linear, candle_nn::Linear), Tensor, Tensor)> {
        setup_in(seed, DType::F32)
    }

    /// Adam at learning rate `lr`, the defaults otherwise, on `varmap`.
    fn adam_at(varmap: &VarMap, lr: f64) -> Result<Adam> {
        Adam::new(
            varmap,
            AdamConfig {
                lr,
                ..Default::default()
            },
        )
    }

    /// `max |a − b|` over the elements.
    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f64, f64::max)
    }

    /// Every variable's elements, in name order, as `f64`.
    fn flat(varmap: &VarMap) -> Vec<f64> {
        named_vars(varmap)
            .unwrap()
            .iter()
            .flat_map(|(_, v)| test_util::flat(v))
            .collect()
    }

    /// A fresh `VarMap` with one variable `theta` of `len` elements equal to
    /// `value`, and SGD with learning rate `lr` and `momentum` on it.
    fn sgd_on_constant(len: usize, value: f64, dtype: DType, lr: f64, momentum: f64) -> Result<(VarMap, Tensor, Sgd)> {
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, 0, dtype, &Device::Cpu);
        let theta = vb.get_with_hints(len, "theta", candle_nn::Init::Const(value))?;
        let config = SgdConfig {
            lr,
            momentum,
            ..Default::default()
        };
        let opt = Sgd::new(&varmap, config)?;
        Ok((varmap, theta, opt))
    }

    /// Two one-element f64 variables `a = b = 1` and the gradient (3, 4) of
    /// `3a + 4b`, whose norm is 5.
    fn pair_with_gradient_3_4() -> Result<(VarMap, Tensor, Tensor, GradStore)> {
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, 0, DType::F64, &Device::Cpu);
        let a = vb.get_with_hints(1, "a", candle_nn::Init::Const(1.0))?;
        let b = vb.get_with_hints(1, "b", candle_nn::Init::Const(1.0))?;
        let grads = ((&a * 3.0)? + (&b * 4.0)?)?.sum_all()?.backward()?;
        Ok((varmap, a, b, grads))
    }

    #[test]
    fn adam_follows_candle_adamw_for_100_steps() -> Result<()> {
        for weight_decay in [0.0, 0.01] {
            let (ours_map, ours_model, xs, ys) = setup(5)?;
            let (ref_map, ref_model, _, _) = setup(5)?;
            let mut ours = Adam::new(
                &ours_map,
                AdamConfig {
                    lr: 3e-3,
                    weight_decay,
                    ..Default::default()
                },
            )?;
            let params = candle_nn::ParamsAdamW {
                lr: 3e-3,
                weight_decay,
                ..Default::default()
            };
            let mut reference = candle_nn::AdamW::new(ref_map.all_vars(), params)?;
            for _ in 0..100 {
                ours.backward_step(&loss(&ours_model, &xs, &ys)?)?;
                reference.backward_step(&loss(&ref_model, &xs, &ys)?)?;
            }
            let max_diff = max_abs_diff(&flat(&ours_map), &flat(&ref_map));
            assert!(max_diff < 1e-5, "weight_decay {weight_decay}: max |Δθ| = {max_diff}");
        }
        Ok(())
    }

    /// The fused CPU kernel against the tensor-op path (what CUDA and Metal
    /// run), with weight decay, a schedule and clipping that triggers, in f32
    /// and f64.
    #[test]
    fn fused_adam_matches_the_tensor_path() -> Result<()> {
        for dtype in [DType::F32, DType::F64] {
            let run = |fused: bool| -> Result<Vec<f64>> {
                let (varmap, model, xs, ys) = setup_in(3, dtype)?;
                let config = AdamConfig {
                    lr: 1e-2,
                    weight_decay: 0.05,
                    max_grad_norm: Some(0.05),
                    schedule: LrSchedule::Step {
                        step_size: 7,
                        gamma: 0.5,
                    },
                    ..Default::default()
                };
                let mut opt = Adam::new(&varmap, config)?;
                for _ in 0..30 {
                    let grads = loss(&model, &xs, &ys)?.backward()?;
                    opt.step_impl(&grads, fused)?;
                }
                assert!(opt.last_grad_norm().is_some_and(|n| n > 0.05), "clipping must trigger");
                Ok(flat(&varmap))
            };
            let max_diff = max_abs_diff(&run(true)?, &run(false)?);
            let tol = if dtype == DType::F32 { 1e-6 } else { 1e-14 };
            assert!(max_diff <= tol, "{dtype:?}: max |Δθ| = {max_diff}");
        }
        Ok(())
    }

    /// Without clipping the fused kernel sums ‖g‖² in the update's sweep;
    /// the norm it reports is the one `grad_norm` computes.
    #[test]
    fn last_grad_norm_is_the_global_norm() -> Result<()> {
        let (varmap, model, xs, ys) = setup(6)?;
        let mut opt = Adam::new(&varmap, AdamConfig::default())?;
        let mut grads = loss(&model, &xs, &ys)?.backward()?;
        let vars = named_vars(&varmap)?;
        let expected = grad_norm(&grads, vars.iter().map(|(_, v)| v))?;
        opt.step(&mut grads)?;
        let got = opt.last_grad_norm().unwrap_or(f64::NAN);
        assert!((got - expected).abs() <= 1e-12 * expected, "{got} vs {expected}");
        Ok(())
    }

    /// A gradient that shares its parameter's storage (a `GradStore` entry
    /// set to `θ.detach()`) is copied before the in-place update rather than
    /// read while θ is written: SGD at η = 0.5 halves θ.
    #[test]
    fn a_gradient_aliasing_its_parameter_is_copied_first() -> Result<()> {
        let (varmap, theta, mut opt) = sgd_on_constant(3, 2.0, DType::F32, 0.5, 0.0)?;
        let mut grads = theta.sum_all()?.backward()?;
        grads.insert(&theta, theta.detach());
        opt.step(&mut grads)?;
        assert_eq!(named_vars(&varmap)?[0].1.to_vec1::<f32>()?, [1.0, 1.0, 1.0]);
        Ok(())
    }

    /// Clipping happens inside the update and leaves the gradients alone:
    /// gradient (3, 4) has norm 5; clipped to 1 and applied with plain SGD at
    /// η = 1 it moves θ = (1, 1) by (0.6, 0.8)·5/(5 + 1e-6).
    #[test]
    fn clipping_is_applied_inside_the_step() -> Result<()> {
        let (varmap, a, _, mut grads) = pair_with_gradient_3_4()?;
        let mut opt = Sgd::new(
            &varmap,
            SgdConfig {
                lr: 1.0,
                max_grad_norm: Some(1.0),
                ..Default::default()
            },
        )?;
        opt.step(&mut grads)?;
        let scale = 1.0 / (5.0 + 1e-6);
        let vars = named_vars(&varmap)?;
        assert!((vars[0].1.to_vec1::<f64>()?[0] - (1.0 - 3.0 * scale)).abs() < 1e-12);
        assert!((vars[1].1.to_vec1::<f64>()?[0] - (1.0 - 4.0 * scale)).abs() < 1e-12);
        assert_eq!(grads.get(&a).unwrap().to_vec1::<f64>()?, [3.0]);
        Ok(())
    }

    /// PyTorch's `SGD` by its documented formula, in f64, against both the
    /// fused kernel and the tensor path, with and without Nesterov and with
    /// coupled weight decay:
    /// `g' = g + λθ; b = g'` (first step) or `b = μb + g'`;
    /// `θ ← θ − η(g' + μb)` (Nesterov) or `θ ← θ − ηb`.
    #[test]
    fn sgd_momentum_follows_the_pytorch_formula() -> Result<()> {
        // f(θ) = Σ c_i θ_i² / 2 has gradient c ⊙ θ.
        let c = [0.5, 1.0, 2.0, 4.0];
        for nesterov in [false, true] {
            let (lr, momentum, weight_decay) = (0.05, 0.9, 0.01);
            let mut theta = [1.0f64, -2.0, 0.5, 3.0];
            let mut buffer = [0.0f64; 4];
            for t in 0..10 {
                for i in 0..4 {
                    let g = c[i] * theta[i] + weight_decay * theta[i];
                    buffer[i] = if t == 0 { g } else { momentum * buffer[i] + g };
                    let direction = if nesterov { g + momentum * buffer[i] } else { buffer[i] };
                    theta[i] -= lr * direction;
                }
            }
            for fused in [true, false] {
                let varmap = VarMap::new();
                let vb = seeded_var_builder(&varmap, 0, DType::F64, &Device::Cpu);
                let init = Tensor::new(&[1.0f64, -2.0, 0.5, 3.0], &Device::Cpu)?;
                let x = vb.get_with_hints(4, "x", candle_nn::Init::Const(0.0))?;
                named_vars(&varmap)?[0].1.set(&init)?;
                let coefficients = Tensor::new(&c, &Device::Cpu)?;
                let mut opt = Sgd::new(
                    &varmap,
                    SgdConfig {
                        lr,
                        momentum,
                        weight_decay,
                        nesterov,
                        ..Default::default()
                    },
                )?;
                for _ in 0..10 {
                    let grads = ((x.sqr()? * &coefficients)?.sum_all()? * 0.5)?.backward()?;
                    opt.step_impl(&grads, fused)?;
                }
                let got = named_vars(&varmap)?[0].1.to_vec1::<f64>()?;
                for (g, e) in got.iter().zip(&theta) {
                    assert!(
                        (g - e).abs() < 1e-12,
                        "nesterov {nesterov}, fused {fused}: {got:?} vs {theta:?}"
                    );
                }
            }
        }
        Ok(())
    }

    /// Half-precision parameters take the tensor path (as on CUDA and Metal)
    /// and still follow the f32 run to half precision.
    #[test]
    fn half_precision_parameters_use_the_tensor_path() -> Result<()> {
        let run = |dtype: DType| -> Result<Vec<f32>> {
            let varmap = VarMap::new();
            let vb = seeded_var_builder(&varmap, 4, dtype, &Device::Cpu);
            let w = vb.get_with_hints(8, "w", candle_nn::Init::Const(0.5))?;
            // No target equals the start 0.5: a zero gradient gives 0/(0 + ε) with ε = 1e-8
            // rounding to 0 in f16, NaN (candle-nn's AdamW does the same).
            let target = Tensor::new(&[1f32, -1., 2., 0., 0.4, -0.5, 1.5, 0.25], &Device::Cpu)?.to_dtype(dtype)?;
            let mut opt = adam_at(&varmap, 1e-2)?;
            for _ in 0..20 {
                opt.backward_step(&(&w - &target)?.sqr()?.sum_all()?)?;
            }
            Ok(named_vars(&varmap)?[0].1.to_dtype(DType::F32)?.to_vec1::<f32>()?)
        };
        let (half, full) = (run(DType::F16)?, run(DType::F32)?);
        for (h, f) in half.iter().zip(&full) {
            assert!((h - f).abs() < 1e-2, "{half:?} vs {full:?}");
        }
        Ok(())
    }

    #[test]
    fn adam_reduces_the_loss() -> Result<()> {
        let (varmap, model, xs, ys) = setup(1)?;
        let mut opt = adam_at(&varmap, 1e-2)?;
        let first = loss(&model, &xs, &ys)?.to_scalar::<f32>()?;
        for _ in 0..200 {
            opt.backward_step(&loss(&model, &xs, &ys)?)?;
        }
        let last = loss(&model, &xs, &ys)?.to_scalar::<f32>()?;
        assert!(last < 0.7 * first, "{first} -> {last}");
        Ok(())
    }

    #[test]
    fn sgd_momentum_matches_hand_computation() -> Result<()> {
        // f(θ) = θ²/2 has gradient θ. With θ₀ = 1, μ = 0.9, η = 0.1:
        // b₁ = 1, θ₁ = 0.9; b₂ = 0.9·1 + 0.9 = 1.8, θ₂ = 0.9 − 0.18 = 0.72.
        let (varmap, theta, mut opt) = sgd_on_constant(1, 1.0, DType::F64, 0.1, 0.9)?;
        for _ in 0..2 {
            opt.backward_step(&(theta.sqr()? * 0.5)?.sum_all()?)?;
        }
        let value = named_vars(&varmap)?[0].1.to_vec1::<f64>()?[0];
        assert!((value - 0.72).abs() < 1e-12, "{value}");
        Ok(())
    }

    #[test]
    fn clipping_scales_to_max_norm() -> Result<()> {
        // Gradient of Σ 3θ + 4φ is (3, 4) with norm 5; clipped to 1 it becomes (0.6, 0.8).
        let (varmap, a, b, mut grads) = pair_with_gradient_3_4()?;
        let vars = named_vars(&varmap)?;
        let norm = clip_grad_norm(&mut grads, vars.iter().map(|(_, v)| v), 1.0)?;
        assert!((norm - 5.0).abs() < 1e-12);
        let ga = grads.get(&a).unwrap().to_vec1::<f64>()?[0];
        let gb = grads.get(&b).unwrap().to_vec1::<f64>()?[0];
        assert!((ga - 0.6).abs() < 1e-6 && (gb - 0.8).abs() < 1e-6, "{ga} {gb}");
        Ok(())
    }

    #[test]
    fn schedules_follow_their_formulas() {
        let step = LrSchedule::Step {
            step_size: 10,
            gamma: 0.5,
        };
        assert_eq!(step.lr_at(1.0, 9), 1.0);
        assert_eq!(step.lr_at(1.0, 10), 0.5);
        assert_eq!(step.lr_at(1.0, 25), 0.25);
        let cosine = LrSchedule::Cosine {
            total_steps: 100,
            min_lr: 0.1,
        };
        assert!((cosine.lr_at(1.0, 0) - 1.0).abs() < 1e-12);
        assert!((cosine.lr_at(1.0, 50) - 0.55).abs() < 1e-12);
        assert!((cosine.lr_at(1.0, 100) - 0.1).abs() < 1e-12);
        assert!((cosine.lr_at(1.0, 1000) - 0.1).abs() < 1e-12);
        assert_eq!(LrSchedule::Constant.lr_at(0.3, 12345), 0.3);
    }

    #[test]
    fn bad_configs_are_errors() {
        let varmap = VarMap::new();
        for cfg in [
            AdamConfig {
                lr: -1.0,
                ..Default::default()
            },
            AdamConfig {
                beta1: 1.0,
                ..Default::default()
            },
            AdamConfig {
                max_grad_norm: Some(0.0),
                ..Default::default()
            },
            AdamConfig {
                schedule: LrSchedule::Step {
                    step_size: 0,
                    gamma: 0.5,
                },
                ..Default::default()
            },
        ] {
            assert!(Adam::new(&varmap, cfg).is_err());
        }
    }

    #[test]
    fn adam_state_round_trips() -> Result<()> {
        let (varmap, model, xs, ys) = setup(2)?;
        let mut opt = Adam::new(&varmap, AdamConfig::default())?;
        opt.backward_step(&loss(&model, &xs, &ys)?)?;
        let mut ck = Checkpoint::default();
        opt.save_state("optim.", &mut ck);
        let mut fresh = Adam::new(&varmap, AdamConfig::default())?;
        fresh.load_state("optim.", &ck, Path::new("mem"))?;
        assert_eq!(fresh.step_count(), 1);
        let mut empty = Checkpoint::default();
        empty.metadata.insert("optim.step".into(), "1".into());
        assert!(fresh.load_state("optim.", &empty, Path::new("mem")).is_err());
        Ok(())
    }
}
