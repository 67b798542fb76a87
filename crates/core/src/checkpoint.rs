//! Checkpoints: named tensors plus string metadata in one safetensors file,
//! written to a temporary name, flushed and renamed so that a crash or a full
//! disk never leaves a half-written checkpoint under the final name.

use crate::{Error, Result};
use candle::{Device, Tensor};
use candle_nn::VarMap;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The safetensors metadata key that holds a deepgen checkpoint's metadata
/// as one JSON object (other safetensors files' metadata is read as it is).
pub const METADATA_KEY: &str = "deepgen";

/// The tensors and metadata of a checkpoint file.
#[derive(Debug, Default, Clone)]
pub struct Checkpoint {
    /// Named tensors (parameters, optimizer moments, …).
    pub tensors: BTreeMap<String, Tensor>,
    /// Free-form string metadata (epoch, seed, configuration, …).
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Adds every variable of `varmap`, under `prefix` + its name.
    pub fn add_varmap(&mut self, prefix: &str, varmap: &VarMap) -> Result<()> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| candle::Error::msg("varmap lock poisoned"))?;
        for (name, var) in data.iter() {
            self.tensors.insert(format!("{prefix}{name}"), var.as_tensor().clone());
        }
        Ok(())
    }

    /// Sets every variable of `varmap` from the tensor stored under `prefix` +
    /// its name.
    ///
    /// # Errors
    /// A missing tensor, one of another shape, or one whose dtype Candle
    /// cannot convert to the variable's is an [`Error::Checkpoint`] naming it
    /// (e.g. a checkpoint of another architecture); then no variable has
    /// changed.
    pub fn load_varmap(&self, prefix: &str, varmap: &VarMap, path: &Path) -> Result<()> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| candle::Error::msg("varmap lock poisoned"))?;
        // Check and convert everything first so that a wrong checkpoint
        // changes nothing.
        let mut values = Vec::with_capacity(data.len());
        for (name, var) in data.iter() {
            let key = format!("{prefix}{name}");
            let stored = self.tensors.get(&key).ok_or_else(|| Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!("no tensor `{key}` (is it a checkpoint of another model?)"),
            })?;
            if stored.dims() != var.dims() {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    reason: format!(
                        "tensor `{key}` has shape {:?}, the model expects {:?}",
                        stored.dims(),
                        var.dims()
                    ),
                });
            }
            values.push((var, converted(stored, &key, var.as_tensor(), path)?));
        }
        for (var, value) in values {
            var.set(&value)?;
        }
        Ok(())
    }

    /// The metadata value `key` parsed as `T`.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] if it is missing or does not parse.
    pub fn metadata_value<T: std::str::FromStr>(&self, key: &str, path: &Path) -> Result<T> {
        let raw = self.metadata.get(key).ok_or_else(|| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("metadata `{key}` is missing"),
        })?;
        raw.parse().map_err(|_| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("metadata `{key}` = `{raw}` does not parse"),
        })
    }

    /// Writes the checkpoint atomically: to `<path>.tmp`, flushed to disk, then
    /// renamed over `path`. Any checkpoint saves, an empty one included, and
    /// [`Checkpoint::load`] reads it back.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors: Vec<(&String, Tensor)> = self
            .tensors
            .iter()
            .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?)))
            .collect::<candle::Result<_>>()?;
        // No metadata is `None`, not an empty map: for an empty map and no
        // tensors, safetensors 0.8 tells serde_json the header has 0 entries,
        // so it writes `{}` and then the `__metadata__` entry after it, a
        // header that no reader (its own included) accepts.
        // All entries travel as one JSON object under one key: safetensors
        // takes a `HashMap`, whose order (and so the file's bytes) would
        // differ from run to run; a one-entry map and a `BTreeMap`'s JSON do
        // not, so identical runs write identical checkpoints.
        let metadata = if self.metadata.is_empty() {
            None
        } else {
            let json = serde_json::to_string(&self.metadata).map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!("cannot serialise its metadata: {e}"),
            })?;
            Some(HashMap::from([(METADATA_KEY.to_string(), json)]))
        };
        let bytes = safetensors::serialize(tensors, metadata).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("cannot serialise: {e}"),
        })?;
        write_atomic(path, &bytes)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`] (or any safetensors
    /// file) onto `device`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read, [`Error::Checkpoint`] if it is
    /// not a valid safetensors file or declares a tensor whose dimensions
    /// multiply past `usize` (even one with no elements).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read checkpoint", path, e))?;
        let invalid = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| invalid(format!("not a safetensors file: {e}")))?;
        // safetensors checks that each tensor's elements fit its bytes, but a
        // tensor with no elements may still declare dimensions like
        // `[0, 2^23, 2^41]`, whose strides Candle computes with unchecked
        // products (a panic in debug builds, wrapped strides in release).
        let tensors: BTreeMap<String, _> = header.tensors().into_iter().collect();
        for (name, info) in &tensors {
            let laid_out = info
                .shape
                .iter()
                .filter(|&&d| d != 0)
                .try_fold(1usize, |product, &d| product.checked_mul(d));
            if laid_out.is_none() {
                return Err(invalid(format!(
                    "tensor `{name}` has shape {:?}, whose nonzero dimensions multiply past {}",
                    info.shape,
                    usize::MAX
                )));
            }
        }
        let raw = header.metadata().clone().unwrap_or_default();
        let metadata = match raw.get(METADATA_KEY) {
            Some(json) if raw.len() == 1 => serde_json::from_str(json).map_err(|e| {
                invalid(format!(
                    "its `{METADATA_KEY}` metadata is not a JSON object of strings: {e}"
                ))
            })?,
            _ => raw.into_iter().collect(),
        };
        let tensors = candle::safetensors::load_buffer(&bytes, device)
            .map_err(|e| invalid(format!("cannot read tensors: {e}")))?
            .into_iter()
            .collect();
        Ok(Self { tensors, metadata })
    }
}

/// `stored`, the checkpoint's tensor `key`, in the dtype and on the device
/// of `like`.
///
/// # Errors
/// [`Error::Checkpoint`] naming the tensor when Candle cannot convert it (a
/// dtype safetensors stores but Candle cannot compute with, such as
/// `F8_E8M0`) or move it.
pub(crate) fn converted(stored: &Tensor, key: &str, like: &Tensor, path: &Path) -> Result<Tensor> {
    stored
        .to_dtype(like.dtype())
        .and_then(|t| t.to_device(like.device()))
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!(
                "tensor `{key}` ({:?}) cannot be loaded as {:?} on {:?}: {e}",
                stored.dtype(),
                like.dtype(),
                like.device().location()
            ),
        })
}

/// The temporary name a file is written under before it is renamed into
/// place: `<name>.<pid>.<n>.tmp`, new for every call, so that two writers
/// (two processes, or two threads of one) never share a temporary file —
/// with one fixed name, two runs into one folder tore each other's
/// checkpoints.
pub fn temporary_path(path: &Path) -> PathBuf {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Whether `path` is a temporary file of [`write_atomic`] (any writer's).
pub fn is_temporary(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "tmp")
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, `fsync`, then `rename` (atomic on POSIX file systems). On error
/// the temporary file is removed and any old `path` is left untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("write", path, e));
    }
    Ok(())
}

/// Saves every variable of `varmap` to `path` atomically (safetensors, with
/// `metadata`).
pub fn save_varmap(varmap: &VarMap, metadata: &[(&str, String)], path: &Path) -> Result<()> {
    let mut checkpoint = Checkpoint::default();
    checkpoint.add_varmap("", varmap)?;
    checkpoint.metadata = metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    checkpoint.save(path)
}

/// Loads every variable of `varmap` from `path`, checking names and shapes
/// first; returns the checkpoint's metadata.
pub fn load_varmap(varmap: &VarMap, path: &Path) -> Result<BTreeMap<String, String>> {
    let device = varmap
        .all_vars()
        .first()
        .map(|v| v.device().clone())
        .unwrap_or(Device::Cpu);
    let checkpoint = Checkpoint::load(path, &device)?;
    checkpoint.load_varmap("", varmap, path)?;
    Ok(checkpoint.metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::seeded_var_builder;
    use candle::DType;

    fn model(varmap: &VarMap, seed: u64, hidden: usize) -> Result<()> {
        let vb = seeded_var_builder(varmap, seed, DType::F32, &Device::Cpu);
        candle_nn::linear(3, hidden, vb.pp("fc"))?;
        Ok(())
    }

    #[test]
    fn round_trip_with_metadata() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
        let path = dir.path().join("model.safetensors");
        let (saved, loaded) = (VarMap::new(), VarMap::new());
        model(&saved, 1, 4)?;
        model(&loaded, 2, 4)?;
        save_varmap(&saved, &[("epoch", "3".into())], &path)?;
        let metadata = load_varmap(&loaded, &path)?;
        assert_eq!(metadata.get("epoch").map(String::as_str), Some("3"));
        let w = |m: &VarMap| {
            m.data().lock().unwrap()["fc.weight"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(w(&saved), w(&loaded));
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| is_temporary(&e.path()))
            .collect();
        assert!(left.is_empty(), "no temporary file is left behind: {left:?}");
        Ok(())
    }

    #[test]
    fn other_architecture_is_a_clear_error_and_changes_nothing() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
        let path = dir.path().join("model.safetensors");
        let (saved, other) = (VarMap::new(), VarMap::new());
        model(&saved, 1, 4)?;
        model(&other, 2, 5)?;
        save_varmap(&saved, &[], &path)?;
        let before = other.data().lock().unwrap()["fc.weight"]
            .flatten_all()?
            .to_vec1::<f32>()?;
        let err = load_varmap(&other, &path).unwrap_err().to_string();
        assert!(err.contains("fc.bias") || err.contains("fc.weight"), "{err}");
        assert!(err.contains("shape"), "{err}");
        let after = other.data().lock().unwrap()["fc.weight"]
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(before, after);
        Ok(())
    }

    /// A checkpoint with nothing in it (a step with no state) saves and loads
    /// back empty; so does one with metadata only.
    #[test]
    fn empty_checkpoint_round_trips() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
        let path = dir.path().join("empty.safetensors");
        Checkpoint::default().save(&path)?;
        let loaded = Checkpoint::load(&path, &Device::Cpu)?;
        assert!(loaded.tensors.is_empty() && loaded.metadata.is_empty(), "{loaded:?}");

        let mut only_metadata = Checkpoint::default();
        only_metadata.metadata.insert("epoch".into(), "2".into());
        only_metadata.save(&path)?;
        let loaded = Checkpoint::load(&path, &Device::Cpu)?;
        assert!(loaded.tensors.is_empty());
        assert_eq!(loaded.metadata, only_metadata.metadata);
        Ok(())
    }

    #[test]
    fn garbage_file_is_an_error_not_a_panic() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
        let path = dir.path().join("garbage.safetensors");
        std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\xffnot json").map_err(|e| Error::io("write", &path, e))?;
        let err = Checkpoint::load(&path, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("garbage.safetensors"), "{err}");
        let missing = Checkpoint::load(&dir.path().join("missing"), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("missing"), "{missing}");
        Ok(())
    }

    /// Found by `tests/fuzz_checkpoint.rs`: a tensor with no elements whose
    /// other dimensions multiply past `usize` passed safetensors' checks and
    /// made Candle's stride computation panic ("attempt to multiply with
    /// overflow"); it is a checkpoint error naming the tensor.
    #[test]
    fn empty_tensor_with_overflowing_dims_is_an_error_not_a_panic() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
        let path = dir.path().join("overflow.safetensors");
        for shape in [
            "[0,8388608,2199023255552]",
            "[4294967296,0,4294967296]",
            "[0,18446744073709551615,2]",
        ] {
            let json = format!(r#"{{"fc.weight":{{"dtype":"F32","shape":{shape},"data_offsets":[0,0]}}}}"#);
            let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(json.as_bytes());
            std::fs::write(&path, bytes).map_err(|e| Error::io("write", &path, e))?;
            let err = Checkpoint::load(&path, &Device::Cpu).unwrap_err().to_string();
            assert!(
                err.contains("overflow.safetensors") && err.contains("`fc.weight`"),
                "{err}"
            );
            assert!(err.contains("multiply past"), "{err}");
        }
        // Empty tensors whose dimensions do fit still load.
        let json = r#"{"e":{"dtype":"F32","shape":[0,3,4],"data_offsets":[0,0]}}"#;
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(json.as_bytes());
        std::fs::write(&path, bytes).map_err(|e| Error::io("write", &path, e))?;
        let loaded = Checkpoint::load(&path, &Device::Cpu)?;
        assert_eq!(loaded.tensors["e"].dims(), &[0, 3, 4]);
        Ok(())
    }

    /// Found by `tests/fuzz_checkpoint.rs`: a tensor stored in a dtype Candle
    /// only carries (`F8_E8M0`) failed in `to_dtype` with Candle's bare
    /// "unsupported dtype F8E8M0 for op to_dtype", naming neither file nor
    /// tensor, after the variables before it had been overwritten. It is a
    /// checkpoint error naming both, and nothing changes.
    #[test]
    fn unconvertible_dtype_is_an_error_naming_the_tensor_and_changes_nothing() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
        let path = dir.path().join("e8m0.safetensors");
        // `fc.bias` (read first) is a valid F32 tensor; `fc.weight` is F8_E8M0.
        let json = r#"{"fc.bias":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"fc.weight":{"dtype":"F8_E8M0","shape":[4,3],"data_offsets":[16,28]}}"#;
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(json.as_bytes());
        bytes.extend_from_slice(&[0; 28]);
        std::fs::write(&path, bytes).map_err(|e| Error::io("write", &path, e))?;
        let varmap = VarMap::new();
        model(&varmap, 1, 4)?;
        let values = |m: &VarMap| -> Vec<Vec<f32>> {
            let data = m.data().lock().unwrap();
            let mut names: Vec<_> = data.keys().cloned().collect();
            names.sort();
            names
                .iter()
                .map(|n| data[n].flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .collect()
        };
        let before = values(&varmap);
        let err = load_varmap(&varmap, &path).unwrap_err().to_string();
        assert!(err.contains("e8m0.safetensors") && err.contains("`fc.weight`"), "{err}");
        assert!(err.contains("F8E8M0"), "{err}");
        assert_eq!(values(&varmap), before);
        Ok(())
    }

    #[test]
    fn failed_write_leaves_old_contents_and_no_temporary_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
        let path = dir.path().join("ckpt");
        // A non-empty directory under the final name makes the rename fail.
        std::fs::create_dir(&path).map_err(|e| Error::io("mkdir", &path, e))?;
        std::fs::write(path.join("old"), b"old").map_err(|e| Error::io("write", &path, e))?;
        assert!(write_atomic(&path, b"new").is_err());
        assert_eq!(
            std::fs::read(path.join("old")).map_err(|e| Error::io("read", &path, e))?,
            b"old"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .map_err(|e| Error::io("ls", &path, e))?
            .collect();
        assert_eq!(names.len(), 1, "only the directory is left: {names:?}");
        Ok(())
    }

    /// Every call names a new temporary file, all of them recognised as such.
    #[test]
    fn temporary_names_are_unique_per_write() {
        let path = Path::new("run/checkpoint.safetensors");
        let (a, b) = (temporary_path(path), temporary_path(path));
        assert_ne!(a, b);
        assert!(is_temporary(&a) && is_temporary(&b) && !is_temporary(path));
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("checkpoint.safetensors.{}.", std::process::id())),
            "{name}"
        );
    }
}
