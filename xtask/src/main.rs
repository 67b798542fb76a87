//! Project automation for the deepgen workspace, run as `cargo xtask <command>`
//! (the alias lives in `.cargo/config.toml`).
//!
//! - `cargo xtask test-all`: formatting check, clippy with warnings denied
//!   (the optional `hub` feature on), every test of the workspace (property
//!   tests and doc tests included; the `#[ignore = "needs data/mnist"]` tests
//!   too when `data/mnist` is there). The last line of its output
//!   is `test-all: N passed, M failed`.
//! - `cargo xtask fetch-mnist [--fashion] [--from DIR] [--dest DIR]`: gets
//!   the four MNIST (or Fashion-MNIST) files, verified by MD5.
//! - `cargo xtask bench [--filter NAME]`: runs the `[[bench]]` targets and
//!   writes their `BENCH` lines as a table to `target/bench.md`.
//! - `cargo xtask check-cuda [--venv DIR] [--compute-cap N]`: clippy over
//!   every crate and target with `--features cuda`, with `nvcc` from NVIDIA's
//!   Python wheels in a cached virtual environment (no GPU, no toolkit).
//!
//! This crate depends on no deepgen crate and not on Candle: it is the first
//! thing CI compiles, so it must build quickly; its only dependencies are
//! anyhow, clap, md-5 and ureq. Every command runs from the project root
//! (see [`project_root`]).

mod bench;
mod check_cuda;
mod fetch_mnist;
mod test_all;

use std::{
    env,
    ffi::OsStr,
    io::{self, Read, Write},
    path::{Path, PathBuf},
    process::{Command, ExitCode, ExitStatus, Stdio},
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Command-line flags of `cargo xtask`.
#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Project automation for the deepgen workspace."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// The subcommands; each one is a module with a `run` function.
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check formatting, run clippy with warnings denied, run every test.
    TestAll(test_all::Args),
    /// Get the four MNIST (or Fashion-MNIST) files, verified by MD5.
    FetchMnist(fetch_mnist::Args),
    /// Run the benchmarks and write a table to target/bench.md.
    Bench(bench::Args),
    /// Type-check every crate with --features cuda, with NVIDIA's compiler from pip (no GPU needed).
    CheckCuda(check_cuda::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is::<test_all::Reported>() => ExitCode::FAILURE,
        Err(err) if err.is::<check_cuda::NoWheels>() => {
            eprintln!("error: {err}");
            ExitCode::from(check_cuda::NoWheels::EXIT_CODE)
        }
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    // Paths given on the command line are relative to where the user typed
    // the command, so remember that directory before moving to the root.
    let user_dir = env::current_dir().context("cannot read the current directory")?;
    let root = project_root();
    env::set_current_dir(&root).with_context(|| format!("cannot change to the project root {}", root.display()))?;
    match cli.command {
        Cmd::TestAll(args) => test_all::run(args),
        Cmd::FetchMnist(args) => fetch_mnist::run(args, &user_dir, &root),
        Cmd::Bench(args) => bench::run(args),
        Cmd::CheckCuda(args) => check_cuda::run(args),
    }
}

/// The workspace root: the parent of this crate's manifest directory, as
/// `cargo run` gives it at run time. The compile-time value is only the
/// fallback: cargo does not rebuild xtask when the checkout moves, so a
/// target directory shared between clones (CI's cache) holds a binary whose
/// compile-time path may belong to another clone.
pub fn project_root() -> PathBuf {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), Path::to_path_buf)
}

/// `cargo <sub>` with the variables that `cargo run` set for xtask removed.
///
/// `cargo run` gives xtask `CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME` and the
/// like. A nested cargo would pass them on, and build scripts that watch them
/// (ring's does) would then rebuild on every switch between `cargo xtask ...`
/// and a plain `cargo build` sharing the target directory.
fn cargo(sub: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(sub);
    for (key, _) in env::vars_os() {
        if key.to_str().is_some_and(is_cargo_run_var) {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Whether `cargo run` sets this variable for the program it runs (as it
/// does for a crate being compiled), rather than the user.
fn is_cargo_run_var(key: &str) -> bool {
    const EXACT: [&str; 6] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "OUT_DIR",
    ];
    EXACT.contains(&key) || key.starts_with("CARGO_PKG_")
}

/// Renders a command the way a user would type it, for `$ ...` lines.
fn display_cmd(cmd: &Command) -> String {
    let quote = |s: &OsStr| {
        let s = s.to_string_lossy();
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c)) {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints `$ <command>`, runs it with inherited output and fails unless it succeeds.
fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = display_cmd(cmd);
    println!("$ {shown}");
    let status = cmd.status().with_context(|| format!("cannot start `{shown}`"))?;
    check_status(&shown, status)
}

/// Turns a non-zero exit status into an error naming the command.
fn check_status(shown: &str, status: ExitStatus) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("`{shown}` failed ({status})")
    }
}

/// Prints `$ <command>` and runs it, copying its stdout to ours as it arrives
/// (stderr is inherited) and handing every complete stdout line to `on_line`.
fn run_streaming(cmd: &mut Command, mut on_line: impl FnMut(&str)) -> Result<()> {
    let shown = display_cmd(cmd);
    println!("$ {shown}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let mut pipe = child.stdout.take().expect("stdout is piped");
    let mut out = io::stdout();
    let mut buf = [0u8; 8192];
    let mut line = Vec::new();
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading the output of `{shown}`")),
        };
        // Echo raw bytes at once so partial lines (`test x ... `) show live.
        out.write_all(&buf[..n])?;
        out.flush()?;
        for &b in &buf[..n] {
            if b == b'\n' {
                on_line(String::from_utf8_lossy(&line).trim_end_matches('\r'));
                line.clear();
            } else {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        on_line(String::from_utf8_lossy(&line).trim_end_matches('\r'));
    }
    let status = child.wait()?;
    check_status(&shown, status)
}

/// Removes ANSI colour escapes (`ESC [ ... letter`) so coloured output parses.
fn strip_ansi(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\x1b') {
        return s.into();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(project_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }

    #[test]
    fn commands_display_as_typed() {
        let mut cmd = Command::new("cargo");
        cmd.args(["test", "--workspace", "--", "--include-ignored", "a b"]);
        assert_eq!(display_cmd(&cmd), "cargo test --workspace -- --include-ignored 'a b'");
    }

    #[test]
    fn nested_cargo_drops_cargo_run_variables() {
        assert!(is_cargo_run_var("CARGO_MANIFEST_DIR"));
        assert!(is_cargo_run_var("CARGO_PKG_VERSION_MAJOR"));
        assert!(!is_cargo_run_var("CARGO_TARGET_DIR"));
        assert!(!is_cargo_run_var("CARGO_TERM_COLOR"));
        assert!(!is_cargo_run_var("CARGO_HOME"));
        // `cargo test` runs this binary with CARGO_MANIFEST_DIR set, as
        // `cargo run` runs xtask.
        let removed: Vec<_> = cargo("test")
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(removed.iter().all(|k| is_cargo_run_var(k)), "{removed:?}");
        if env::var_os("CARGO_MANIFEST_DIR").is_some() {
            assert!(removed.iter().any(|k| k == "CARGO_MANIFEST_DIR"), "{removed:?}");
        }
    }

    #[test]
    fn ansi_escapes_are_stripped() {
        assert_eq!(strip_ansi("test a ... \x1b[32mok\x1b[0m"), "test a ... ok");
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
