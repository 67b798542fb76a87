//! Device selection: `--device cpu|cuda|cuda:N|metal|auto`.

use crate::{Error, Result};
use candle::Device;
use std::str::FromStr;

/// Which device a run asks for. `Auto` takes CUDA if this build and machine
/// have it, then Metal, then the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The CPU (always available).
    Cpu,
    /// The CUDA GPU with this ordinal (needs the `cuda` feature).
    Cuda(usize),
    /// The Metal GPU (needs the `metal` feature).
    Metal,
    /// The best available device.
    #[default]
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            "metal" => Ok(DeviceChoice::Metal),
            "auto" => Ok(DeviceChoice::Auto),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(ordinal)) => Ok(DeviceChoice::Cuda(ordinal)),
                _ => Err(Error::UnknownDevice(s.to_string())),
            },
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceChoice::Metal => write!(f, "metal"),
            DeviceChoice::Auto => write!(f, "auto"),
        }
    }
}

impl DeviceChoice {
    /// Opens the device.
    ///
    /// # Errors
    /// [`Error::DeviceUnavailable`] when the build lacks the feature (`cuda`,
    /// `metal`) or the machine lacks the device.
    pub fn device(self) -> Result<Device> {
        let unavailable = |reason: String| Error::DeviceUnavailable {
            device: self.to_string(),
            reason,
        };
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(ordinal) => {
                if !candle::utils::cuda_is_available() {
                    return Err(unavailable(
                        "this build has no CUDA support (rebuild with `--features cuda`)".into(),
                    ));
                }
                Device::new_cuda(ordinal).map_err(|e| unavailable(e.to_string()))
            }
            DeviceChoice::Metal => {
                if !candle::utils::metal_is_available() {
                    return Err(unavailable(
                        "this build has no Metal support (rebuild with `--features metal`)".into(),
                    ));
                }
                Device::new_metal(0).map_err(|e| unavailable(e.to_string()))
            }
            DeviceChoice::Auto => {
                if candle::utils::cuda_is_available()
                    && let Ok(device) = Device::new_cuda(0)
                {
                    return Ok(device);
                }
                if candle::utils::metal_is_available()
                    && let Ok(device) = Device::new_metal(0)
                {
                    return Ok(device);
                }
                Ok(Device::Cpu)
            }
        }
    }
}

/// Parses a device name and opens it: `select_device("cpu")`.
///
/// # Errors
/// [`Error::UnknownDevice`] for a name that is not a device, and the errors of
/// [`DeviceChoice::device`].
pub fn select_device(name: &str) -> Result<Device> {
    name.parse::<DeviceChoice>()?.device()
}

/// Bytes of memory the machine can still give (Linux: `MemAvailable` of
/// `/proc/meminfo`); `None` where it cannot be read.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_name() -> Result<()> {
        assert_eq!("cpu".parse::<DeviceChoice>()?, DeviceChoice::Cpu);
        assert_eq!("CUDA".parse::<DeviceChoice>()?, DeviceChoice::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceChoice>()?, DeviceChoice::Cuda(3));
        assert_eq!("metal".parse::<DeviceChoice>()?, DeviceChoice::Metal);
        assert_eq!("auto".parse::<DeviceChoice>()?, DeviceChoice::Auto);
        Ok(())
    }

    #[test]
    fn unknown_names_are_errors() {
        for bad in ["tpu", "cuda:x", "", "cuda:-1"] {
            let err = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(err.to_string().contains("unknown device"), "{err}");
        }
    }

    #[test]
    fn cpu_and_auto_always_open() -> Result<()> {
        assert!(select_device("cpu")?.is_cpu());
        let _ = select_device("auto")?;
        Ok(())
    }

    /// The CUDA build opens the GPU, and `auto` picks it (run with
    /// `cargo test --features cuda -- --include-ignored` on a GPU machine;
    /// CI type-checks it with `cargo xtask check-cuda`).
    #[cfg(feature = "cuda")]
    #[test]
    #[ignore = "needs an NVIDIA GPU and its driver"]
    fn cuda_build_opens_the_gpu() -> Result<()> {
        let device = select_device("cuda")?;
        assert!(device.is_cuda(), "{device:?}");
        assert!(select_device("auto")?.is_cuda());
        let ones = candle::Tensor::ones(3, candle::DType::F32, &device)?;
        assert_eq!(ones.sum_all()?.to_scalar::<f32>()?, 3.0);
        Ok(())
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_says_how_to_get_it() {
        let err = select_device("cuda").unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
