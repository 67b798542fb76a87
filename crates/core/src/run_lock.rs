//! [`RunLock`]: a run directory belongs to one process at a time. Two runs
//! into one folder used to both finish "successfully" while one's results
//! vanished or a checkpoint came out torn; the lock makes the second one
//! stop before it writes anything.

use crate::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// The lock file inside a run directory.
pub const LOCK_FILE: &str = ".deepgen.lock";

/// An exclusive advisory lock on `<dir>/.deepgen.lock`, held until drop
/// (the operating system releases it when the process ends, however it
/// ends, so a crashed run never leaves a folder locked).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    dir: PathBuf,
}

impl RunLock {
    /// Locks `dir` (which must exist) for this process.
    ///
    /// # Errors
    /// [`Error::RunInUse`] when another process holds it; I/O errors.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self {
                _file: file,
                dir: dir.to_path_buf(),
            }),
            Err(TryLockError::WouldBlock) => Err(Error::RunInUse(dir.to_path_buf())),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second lock on a held folder is refused with a message that names
    /// it; once the first is dropped the folder can be locked again.
    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, Error::RunInUse(_)), "{err}");
        assert!(err.to_string().contains("in use by another deepgen process"), "{err}");
        drop(first);
        let again = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(again.dir(), dir.path());
        assert!(RunLock::acquire(&dir.path().join("missing")).is_err());
    }
}
