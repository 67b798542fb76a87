//! `cargo xtask check-cuda`: type-checks every crate, with all its targets,
//! against the CUDA build (`--features cuda`) on a machine without a GPU or
//! a CUDA toolkit.
//!
//! Candle's CUDA backend compiles its kernels to PTX with `nvcc` in a build
//! script, so even `cargo check` needs NVIDIA's compiler. NVIDIA publishes
//! it on the Python package index, so this command keeps a virtual
//! environment with pinned wheels in a cache folder outside the repository
//! ([`CUDA_WHEELS`]), made once (the only step that needs the network) and
//! reused after, and puts its `nvcc` first on `PATH` for
//! `cargo clippy --workspace --all-targets --features cuda -- -D warnings`.
//! A type error or a warning in a `#[cfg(feature = "cuda")]` path fails it.
//!
//! Pitfalls this avoids: the CUDA 12 wheels hold no `nvcc`; CUDA 13.5 is
//! newer than what cudarc 0.19 (Cargo.lock) supports; without
//! `CUDA_COMPUTE_CAP` candle-kernels' build script asks `nvidia-smi` for the
//! GPU's and fails; it compiles its kernels on half the cores unless
//! `CUDAFORGE_THREADS` says more (all of them here). Each new combination of packages and features rebuilds
//! the PTX (most of a cold run), so the check is one cargo call over the
//! whole workspace.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::run_cmd;

/// The wheels of NVIDIA's compiler, its headers and the CUDA runtime
/// headers, pinned: CUDA 13.4 (13.5 is newer than cudarc 0.19 knows).
pub const CUDA_WHEELS: [&str; 5] = [
    "nvidia-cuda-nvcc==13.4.92",
    "nvidia-cuda-crt==13.4.92",
    "nvidia-cuda-runtime==13.4.92",
    "nvidia-nvvm==13.4.92",
    "nvidia-cuda-cccl==13.3.4.3.1",
];

/// Written into the environment last, listing [`CUDA_WHEELS`]: a folder
/// without it (an install that failed half-way) or with another list is
/// made again.
const MARKER: &str = "deepgen-cuda-wheels.txt";

/// The wheels could not be installed (no network, most often): `cargo xtask
/// check-cuda` exits with [`NoWheels::EXIT_CODE`] so that CI can tell it
/// from a failed check.
#[derive(Debug)]
pub struct NoWheels(String);

impl NoWheels {
    /// The exit code of `check-cuda` when the wheels cannot be had.
    pub const EXIT_CODE: u8 = 3;
}

impl std::fmt::Display for NoWheels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoWheels {}

/// Flags of `check-cuda`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder of the Python environment with the CUDA wheels [default:
    /// $DEEPGEN_CUDA_VENV, else $XDG_CACHE_HOME/deepgen/cuda-13.4 or
    /// ~/.cache/deepgen/cuda-13.4].
    #[arg(long, value_name = "DIR")]
    venv: Option<PathBuf>,
    /// Compute capability the PTX is built for (candle-kernels'
    /// `CUDA_COMPUTE_CAP`; 90 is the H100/H200) [default: 90, or
    /// $CUDA_COMPUTE_CAP].
    #[arg(long, value_name = "N")]
    compute_cap: Option<u32>,
}

/// Runs `check-cuda` from the project root.
pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let venv = match args.venv {
        Some(dir) => dir,
        None => default_venv()?,
    };
    let compute_cap = match args.compute_cap {
        Some(cap) => cap.to_string(),
        None => env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into()),
    };

    println!("\ncheck-cuda [1/2]: NVIDIA's compiler from the Python package index");
    let part = Instant::now();
    let nvcc_bin = ensure_venv(&venv)?;
    let nvcc = nvcc_bin.join("nvcc");
    let version = Command::new(&nvcc)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run `{}`", nvcc.display()))?;
    let release = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find(|l| l.contains("release"))
        .unwrap_or("(no version line)")
        .trim()
        .to_string();
    println!(
        "check-cuda: {} ({release}) ready in {:.0} s",
        nvcc.display(),
        part.elapsed().as_secs_f64()
    );

    println!("\ncheck-cuda [2/2]: every crate and target type-checked with --features cuda (sm_{compute_cap})");
    let part = Instant::now();
    // candle-kernels' build script runs nvcc on half the cores unless told.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let path =
        env::join_paths(std::iter::once(nvcc_bin).chain(env::split_paths(&env::var_os("PATH").unwrap_or_default())))
            .context("the CUDA wheels' folder cannot go on PATH")?;
    // The features of test-all's clippy pass plus cuda: the dependencies it
    // checked are reused, only what cuda changes is checked again.
    let hub = crate::test_all::hub_features()?;
    run_cmd(
        crate::cargo("clippy")
            .args(["--workspace", "--all-targets", "--features", "cuda"])
            .args(hub.iter().flat_map(|feature| ["--features", feature]))
            .args(["--", "-D", "warnings"])
            .env("PATH", path)
            .env("CUDA_COMPUTE_CAP", &compute_cap)
            .env("CUDAFORGE_THREADS", cores.to_string()),
    )?;
    println!(
        "check-cuda: clippy with --features cuda took {:.0} s; all done in {:.0} s",
        part.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `$DEEPGEN_CUDA_VENV`, else `cuda-13.4` in deepgen's cache folder.
fn default_venv() -> Result<PathBuf> {
    if let Some(dir) = env::var_os("DEEPGEN_CUDA_VENV") {
        return Ok(dir.into());
    }
    let cache = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set; pass --venv DIR")?;
    Ok(cache.join("deepgen").join("cuda-13.4"))
}

/// The folder with `nvcc` of the environment at `venv`, made first (with
/// pip, by package name) unless a complete one with [`CUDA_WHEELS`] is there.
fn ensure_venv(venv: &Path) -> Result<PathBuf> {
    let wanted = CUDA_WHEELS.join("\n") + "\n";
    let marker = venv.join(MARKER);
    if fs::read_to_string(&marker).is_ok_and(|listed| listed == wanted)
        && let Some(bin) = find_nvcc_bin(venv)
    {
        println!("check-cuda: reusing {}", venv.display());
        return Ok(bin);
    }
    if venv.exists() {
        println!(
            "check-cuda: {} is incomplete or holds other wheels; making it again",
            venv.display()
        );
        fs::remove_dir_all(venv).with_context(|| format!("cannot remove {}", venv.display()))?;
    }
    if let Some(parent) = venv.parent() {
        fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    println!("check-cuda: making {} (about 370 MB of wheels)", venv.display());
    run_cmd(Command::new("python3").args(["-m", "venv"]).arg(venv))
        .context("cannot make a Python virtual environment (python3 with its venv module is needed)")?;
    let python = venv.join("bin").join("python");
    let install = run_cmd(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(CUDA_WHEELS),
    );
    if let Err(err) = install {
        return Err(NoWheels(format!(
            "{err:#}: pip could not install NVIDIA's CUDA wheels into {}; the first run needs the Python package \
             index (pypi.org) to be reachable, later runs reuse the folder",
            venv.display()
        ))
        .into());
    }
    let Some(bin) = find_nvcc_bin(venv) else {
        bail!(
            "the wheels were installed into {} but hold no bin/nvcc under site-packages/nvidia/cu13",
            venv.display()
        );
    };
    fs::write(&marker, wanted).with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(bin)
}

/// `lib/python3.X/site-packages/nvidia/cu13/bin` of `venv`, if it holds `nvcc`.
fn find_nvcc_bin(venv: &Path) -> Option<PathBuf> {
    fs::read_dir(venv.join("lib"))
        .ok()?
        .flatten()
        .map(|python| python.path().join("site-packages/nvidia/cu13/bin"))
        .find(|bin| bin.join("nvcc").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvcc_is_found_under_any_python_version() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find_nvcc_bin(dir.path()), None);
        let bin = dir.path().join("lib/python3.12/site-packages/nvidia/cu13/bin");
        fs::create_dir_all(&bin).unwrap();
        assert_eq!(find_nvcc_bin(dir.path()), None, "a folder without nvcc");
        fs::write(bin.join("nvcc"), "").unwrap();
        assert_eq!(find_nvcc_bin(dir.path()), Some(bin));
    }
}
