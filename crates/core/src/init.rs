//! Seeded parameter initialisation.
//!
//! `VarBuilder::from_varmap` initialises new variables with Candle's CPU
//! generator, which cannot be seeded, so two runs with the same seed would
//! start from different weights. [`seeded_var_builder`] wraps a [`VarMap`] in
//! a backend that draws every new variable from a generator derived from the
//! run's seed and the variable's name: the same seed gives the same weights,
//! whatever order the layers are built in. The initialisation schemes are
//! Candle's ([`Init`]), so layers built this way match candle-nn's defaults
//! (PyTorch's Kaiming-uniform for linear and convolution weights).

use crate::rng::derived_rng;
use candle::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// A [`VarMap`] backend that initialises new variables from a seeded generator.
#[derive(Clone)]
pub struct SeededVarMap {
    varmap: VarMap,
    seed: u64,
}

impl std::fmt::Debug for SeededVarMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededVarMap")
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl SeededVarMap {
    /// Wraps `varmap`; new variables are drawn from streams of `seed`.
    pub fn new(varmap: VarMap, seed: u64) -> Self {
        Self { varmap, seed }
    }
}

/// FNV-1a, a stable hash of a variable's name (std's hasher is not stable
/// across releases).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Draws a tensor for `init`, exactly as [`Init::var`] does, but from `rng`.
pub fn init_tensor(
    init: Init,
    shape: &Shape,
    dtype: DType,
    device: &Device,
    rng: &mut impl Rng,
) -> candle::Result<Tensor> {
    let n = shape.elem_count();
    let uniform = |rng: &mut dyn rand::RngCore, lo: f64, up: f64| -> Vec<f64> {
        (0..n).map(|_| lo + (up - lo) * rng.random::<f64>()).collect()
    };
    let normal = |rng: &mut dyn rand::RngCore, mean: f64, std: f64| -> Vec<f64> {
        (0..n)
            .map(|_| {
                let e: f64 = StandardNormal.sample(rng);
                mean + std * e
            })
            .collect()
    };
    let values = match init {
        Init::Const(c) => vec![c; n],
        Init::Uniform { lo, up } => uniform(rng, lo, up),
        Init::Randn { mean, stdev } => normal(rng, mean, stdev),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(rng, -bound, bound)
                }
                candle_nn::init::NormalOrUniform::Normal => normal(rng, 0.0, std),
            }
        }
    };
    Tensor::from_vec(values, shape.clone(), &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle::Result<Tensor> {
        let mut data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle::Error::msg("varmap lock poisoned"))?;
        if let Some(var) = data.get(name) {
            if var.shape() != &s {
                candle::bail!("shape mismatch on {name}: {s:?} <> {:?}", var.shape())
            }
            return Ok(var.as_tensor().clone());
        }
        check_variable_size(name, &s, dtype, &data)?;
        let mut rng = derived_rng(self.seed, name_hash(name));
        let var = Var::from_tensor(&init_tensor(h, &s, dtype, dev, &mut rng)?)?;
        let tensor = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle::Result<Tensor> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle::Error::msg("varmap lock poisoned"))?;
        match data.get(name) {
            Some(var) => var.as_tensor().to_dtype(dtype)?.to_device(dev),
            None => candle::bail!("cannot find tensor {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap.data().lock().map(|d| d.contains_key(name)).unwrap_or(false)
    }
}

/// Refuses a new variable whose size overflows, or which with the model's
/// other variables would need more memory than the machine has — before a
/// byte is spent (a `--hidden` of 10¹² or `usize::MAX`, or a checkpoint's
/// configuration that says so, would otherwise abort the process or panic
/// on "capacity overflow"). Initialisation briefly holds an f64 copy, so a
/// variable counts 8 bytes per element on top of its own.
fn check_variable_size(
    name: &str,
    shape: &Shape,
    dtype: DType,
    existing: &std::collections::HashMap<String, Var>,
) -> candle::Result<()> {
    let dims = shape.dims();
    let elements = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let bytes = elements.and_then(|n| n.checked_mul(dtype.size_in_bytes() + 8));
    // `Error::Msg`, not `bail!`: a user's size is not a bug, so no backtrace.
    let Some(bytes) = bytes else {
        return Err(candle::Error::Msg(format!(
            "variable `{name}` of shape {dims:?} has more elements than memory can address"
        )));
    };
    let held: usize = existing
        .values()
        .map(|v| v.elem_count() * v.dtype().size_in_bytes())
        .sum();
    if let Some(available) = crate::device::available_memory()
        && (held as u64).saturating_add(bytes as u64) > available
    {
        return Err(candle::Error::Msg(format!(
            "variable `{name}` of shape {dims:?} needs {:.1} GB, and with the model's other variables ({:.1} GB) \
             that is more than the {:.1} GB of memory available",
            bytes as f64 / 1e9,
            held as f64 / 1e9,
            available as f64 / 1e9
        )));
    }
    Ok(())
}

/// A `VarBuilder` over `varmap` whose new variables are seeded by `seed`.
///
/// ```
/// use deepgen_core::{candle::{DType, Device}, candle_nn::{self, VarMap}};
/// let varmap = VarMap::new();
/// let vb = deepgen_core::init::seeded_var_builder(&varmap, 42, DType::F32, &Device::Cpu);
/// let layer = candle_nn::linear(4, 3, vb.pp("fc"))?;
/// assert_eq!(layer.weight().dims(), &[3, 4]);
/// # Ok::<(), candle::Error>(())
/// ```
pub fn seeded_var_builder(varmap: &VarMap, seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(SeededVarMap::new(varmap.clone(), seed)), dtype, device.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(seed: u64) -> candle::Result<Vec<f32>> {
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, seed, DType::F32, &Device::Cpu);
        let fc = candle_nn::linear(5, 7, vb.pp("fc"))?;
        fc.weight().flatten_all()?.to_vec1::<f32>()
    }

    #[test]
    fn same_seed_same_weights() -> candle::Result<()> {
        assert_eq!(build(1)?, build(1)?);
        assert_ne!(build(1)?, build(2)?);
        Ok(())
    }

    #[test]
    fn linear_init_follows_candle_schemes() -> candle::Result<()> {
        // candle-nn's linear: weight ~ N(0, 2 / fan_in) (Kaiming normal, ReLU gain),
        // bias ~ U(-1/√fan_in, 1/√fan_in). fan_in = 100, 20,000 weights.
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, 3, DType::F32, &Device::Cpu);
        let fc = candle_nn::linear(100, 200, vb.pp("fc"))?;
        let w = fc.weight().flatten_all()?.to_vec1::<f32>()?;
        let var = w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / w.len() as f64;
        // Relative standard error of a variance estimate from n draws: √(2/n) ≈ 1%.
        assert!((var / 0.02 - 1.0).abs() < 0.05, "weight variance {var}, expected 0.02");
        let b = fc.bias().map(|b| b.to_vec1::<f32>()).transpose()?.unwrap_or_default();
        assert!(b.iter().all(|&x| x.abs() <= 0.1) && b.iter().any(|&x| x.abs() > 0.05));
        Ok(())
    }

    /// Sizes that overflow or exceed the machine are refused before any
    /// allocation, naming the variable.
    #[test]
    fn impossible_sizes_are_refused() {
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, 9, DType::F32, &Device::Cpu);
        let err = candle_nn::linear(784, usize::MAX, vb.pp("fc"))
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("`fc.weight`") && e.contains("address")),
            "{err:?}"
        );
        let err = candle_nn::linear(784, 1_000_000_000_000, vb.pp("big"))
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("GB of memory available")),
            "{err:?}"
        );
        assert!(candle_nn::linear(784, 400, vb.pp("ok")).is_ok());
    }

    #[test]
    fn existing_variables_are_reused() -> candle::Result<()> {
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, 9, DType::F32, &Device::Cpu);
        let a = vb.get_with_hints((2, 2), "w", Init::Const(0.5))?;
        let b = vb.get_with_hints((2, 2), "w", Init::Const(1.5))?;
        assert_eq!(a.to_vec2::<f32>()?, b.to_vec2::<f32>()?);
        assert!(vb.get_with_hints((3, 2), "w", Init::Const(0.0)).is_err());
        Ok(())
    }
}
