//! `cargo xtask test-all [CARGO_ARGS...]`: everything CI checks, in order,
//! stopping at the first failure:
//!
//! 1. `cargo fmt --all -- --check`
//! 2. `cargo clippy --workspace --all-targets --features <crate>/hub -- -D
//!    warnings`, with the `hub` feature of every crate under `crates/` that
//!    declares one (deepgen-data's optional candle-datasets path) turned on,
//!    so that one pass lints it too: a separate `cargo check -p <crate>
//!    --features hub` unified the shared dependencies' features differently
//!    and checked some 280 crates again (5–6 of a cold CI run's 22 minutes);
//! 3. `cargo test --workspace` (unit, integration, property and doc tests),
//!    with `-- --include-ignored` when `data/mnist` holds the four MNIST
//!    files, so the `#[ignore = "needs data/mnist"]` tests run too.
//!
//! Extra arguments (`cargo xtask test-all --features cuda`) go to clippy,
//! test and check. The test output is streamed while it is tallied; the run
//! ends with a summary line and then, alone on the last line,
//! `test-all: N passed, M failed`, which CI reads.

use std::{
    env, fs,
    io::{self, IsTerminal},
    path::Path,
};

use anyhow::{Context, Result, bail};

use crate::{fetch_mnist::MNIST, run_cmd, run_streaming, strip_ansi};

/// Flags of `test-all`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Extra arguments for `cargo clippy`, `cargo test` and `cargo check`,
    /// e.g. `--features cuda`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "CARGO_ARGS")]
    cargo_args: Vec<String>,
}

/// An error whose message is already printed; `main` only sets the exit code.
#[derive(Debug)]
pub struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failure already reported")
    }
}

impl std::error::Error for Reported {}

/// The optional feature whose build is checked separately.
const HUB_FEATURE: &str = "hub";

/// Runs `test-all` from the project root.
pub fn run(args: Args) -> Result<()> {
    let color = env::var_os("CARGO_TERM_COLOR")
        .is_none()
        .then(|| if io::stdout().is_terminal() { "always" } else { "never" });
    let cargo = |sub: &str| {
        let mut cmd = crate::cargo(sub);
        if let Some(color) = color {
            cmd.env("CARGO_TERM_COLOR", color);
        }
        cmd
    };
    let extra = &args.cargo_args;

    let step = |i: usize, what: &str| println!("\ntest-all [{i}/3]: {what}");

    step(1, "formatting");
    run_cmd(cargo("fmt").args(["--all", "--", "--check"]))?;

    let hub = hub_features()?;
    let with = if hub.is_empty() {
        String::new()
    } else {
        format!(", with {}", hub.join(", "))
    };
    step(2, &format!("clippy, warnings denied{with}"));
    run_cmd(
        cargo("clippy")
            .args(["--workspace", "--all-targets"])
            .args(hub.iter().flat_map(|feature| ["--features", feature]))
            .args(extra)
            .args(["--", "-D", "warnings"]),
    )?;

    let with_data = mnist_present(Path::new(MNIST.default_dest));
    step(
        3,
        if with_data {
            "tests, including ignored ones (data/mnist is present)"
        } else {
            "tests; ignored tests skipped (no data/mnist: `cargo xtask fetch-mnist` adds them)"
        },
    );
    let mut harness_args = Vec::new();
    if with_data {
        harness_args.push("--include-ignored");
        // Tests marked `needs data/fashion-mnist` run only when that data set is there too.
        if !mnist_present(Path::new("data/fashion-mnist")) {
            println!(
                "test-all: no data/fashion-mnist: skipping its tests (`cargo xtask fetch-mnist --fashion` adds them)"
            );
            harness_args.extend(["--skip", "fashion"]);
        }
    }
    // The test binaries write to a pipe (ours), so libtest would drop its colours.
    if color == Some("always") || env::var("CARGO_TERM_COLOR").is_ok_and(|c| c == "always") {
        harness_args.extend(["--color", "always"]);
    }
    let mut test = cargo("test");
    test.arg("--workspace").args(extra);
    if !harness_args.is_empty() {
        test.arg("--").args(harness_args);
    }
    let mut tally = Tally::default();
    if let Err(err) = run_streaming(&mut test, |line| tally.observe(line)) {
        // Keep the closing count line last, where CI looks for it.
        eprintln!("error: {err:#}");
        tally.print_summary(with_data);
        return Err(Reported.into());
    }

    tally.print_summary(with_data);
    if tally.failed > 0 {
        bail!("{} tests failed although cargo test succeeded", tally.failed);
    }
    Ok(())
}

/// `<crate>/hub` for every crate under `crates/` that declares the optional
/// `hub` feature: test-all's clippy pass and `check-cuda` turn them on.
pub fn hub_features() -> Result<Vec<String>> {
    Ok(crates_with_feature(Path::new("crates"), HUB_FEATURE)?
        .into_iter()
        .map(|name| format!("{name}/{HUB_FEATURE}"))
        .collect())
}

/// Whether `dir` holds the four MNIST files (gzipped or not).
fn mnist_present(dir: &Path) -> bool {
    MNIST
        .files
        .iter()
        .all(|(name, _)| dir.join(name).is_file() || dir.join(name.trim_end_matches(".gz")).is_file())
}

/// Package names of the crates in `crates_dir` whose manifest declares `feature`.
fn crates_with_feature(crates_dir: &Path, feature: &str) -> Result<Vec<String>> {
    let entries = match fs::read_dir(crates_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", crates_dir.display())),
    };
    let mut found = Vec::new();
    for entry in entries {
        let manifest = entry?.path().join("Cargo.toml");
        if let Ok(text) = fs::read_to_string(&manifest)
            && let Some(name) = declares_feature(&text, feature)
        {
            found.push(name);
        }
    }
    found.sort();
    Ok(found)
}

/// The package name if this manifest's `[features]` table has `feature`.
/// A line-based reading of TOML, enough for our manifests.
fn declares_feature(manifest: &str, feature: &str) -> Option<String> {
    let mut section = "";
    let mut name = None;
    let mut has = false;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        match section {
            "[package]" if key == "name" => {
                name = Some(value.trim().trim_matches('"').to_string());
            }
            "[features]" if key == feature => has = true,
            _ => {}
        }
    }
    name.filter(|_| has)
}

/// The outcome of one `test <name> ... <result>` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Ignored,
}

/// What one libtest line says, if it reports a test.
#[derive(Debug, PartialEq, Eq)]
struct TestLine<'a> {
    name: &'a str,
    outcome: Outcome,
    doc: bool,
    property: bool,
}

/// Parses `test <name> ... ok|FAILED|ignored[, reason]` (colour already stripped).
fn parse_test_line(line: &str) -> Option<TestLine<'_>> {
    let rest = line.strip_prefix("test ")?;
    let (name, result) = rest.rsplit_once(" ... ")?;
    let outcome = match result.split([' ', ',']).next()? {
        "ok" => Outcome::Ok,
        "FAILED" => Outcome::Failed,
        "ignored" => Outcome::Ignored,
        _ => return None,
    };
    // Doc tests are named `path/to/file.rs - item::path (line N)`, possibly
    // followed by ` - compile fail`; `#[should_panic]` adds ` - should panic`.
    let doc = name.contains(" - ") && name.contains(" (line ");
    let base = name.split(" - ").next().unwrap_or(name);
    let property = !doc && base.rsplit("::").next().is_some_and(|s| s.starts_with("prop_"));
    Some(TestLine {
        name,
        outcome,
        doc,
        property,
    })
}

/// Running counts over the output of `cargo test`.
#[derive(Debug, Default)]
struct Tally {
    passed: usize,
    failed: usize,
    ignored: usize,
    property: usize,
    doc: usize,
    failures: Vec<String>,
    /// Sum of the `passed` figures of the `test result:` lines, as a cross-check.
    reported_passed: usize,
}

impl Tally {
    fn observe(&mut self, line: &str) {
        let line = strip_ansi(line);
        if let Some(rest) = line.strip_prefix("test result: ") {
            // `test result: ok. 3 passed; 0 failed; 1 ignored; ...`
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                if words.next() == Some("passed") {
                    let n = words.next().and_then(|n| n.parse::<usize>().ok());
                    self.reported_passed += n.unwrap_or(0);
                }
            }
            return;
        }
        let Some(t) = parse_test_line(&line) else {
            return;
        };
        match t.outcome {
            Outcome::Ok => {
                self.passed += 1;
                self.property += usize::from(t.property);
                self.doc += usize::from(t.doc);
            }
            Outcome::Failed => {
                self.failed += 1;
                self.failures.push(t.name.to_string());
            }
            Outcome::Ignored => self.ignored += 1,
        }
    }

    /// The summary line, e.g. `test-all: 312 tests passed (41 property tests,
    /// 12 doc tests), 0 ignored`.
    fn summary(&self) -> String {
        let mut s = format!(
            "test-all: {} tests passed ({} property tests, {} doc tests), {} ignored",
            self.passed, self.property, self.doc, self.ignored
        );
        if self.failed > 0 {
            s += &format!(", {} failed: {}", self.failed, self.failures.join(", "));
        }
        s
    }

    /// The closing line CI reads.
    fn closing(&self) -> String {
        format!("test-all: {} passed, {} failed", self.passed, self.failed)
    }

    fn print_summary(&self, with_data: bool) {
        println!();
        if self.reported_passed != self.passed {
            println!(
                "test-all: note: counted {} `... ok` lines but the `test result:` lines \
                 add up to {} passed",
                self.passed, self.reported_passed
            );
        }
        println!(
            "test-all: mode: {}",
            if with_data {
                "with data/mnist (--include-ignored)"
            } else {
                "without data/mnist (ignored tests skipped)"
            }
        );
        println!("{}", self.summary());
        println!("{}", self.closing());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_test_lines() {
        let t = parse_test_line("test kl::tests::closed_form ... ok").unwrap();
        assert_eq!(t.name, "kl::tests::closed_form");
        assert_eq!(t.outcome, Outcome::Ok);
        assert!(!t.doc && !t.property);

        let t = parse_test_line("test a::b ... FAILED").unwrap();
        assert_eq!(t.outcome, Outcome::Failed);
        let t = parse_test_line("test mnist::loads ... ignored, needs data/mnist").unwrap();
        assert_eq!(t.outcome, Outcome::Ignored);
        let t = parse_test_line("test mnist::loads ... ignored").unwrap();
        assert_eq!(t.outcome, Outcome::Ignored);
    }

    #[test]
    fn recognises_property_and_doc_tests() {
        let t = parse_test_line("test lse::tests::prop_shift_invariance ... ok").unwrap();
        assert!(t.property && !t.doc);
        let t = parse_test_line("test prop_top_level ... ok").unwrap();
        assert!(t.property);
        let t = parse_test_line("test tests::not_prop_x ... ok").unwrap();
        assert!(!t.property);
        let t = parse_test_line("test tests::prop_panics - should panic ... ok").unwrap();
        assert!(t.property);

        let t = parse_test_line("test crates/numerics/src/lib.rs - logsumexp (line 12) ... ok").unwrap();
        assert!(t.doc && !t.property);
        let t = parse_test_line("test crates/core/src/lib.rs - prop_like::f (line 3) - compile fail ... ok").unwrap();
        assert!(t.doc && !t.property);
    }

    #[test]
    fn ignores_other_lines() {
        for line in [
            "running 3 tests",
            "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
            "test foo has been running for over 60 seconds",
            "failures:",
            "    tests::a",
            "test foo ... ",
            "",
        ] {
            assert_eq!(parse_test_line(line), None, "{line}");
        }
    }

    #[test]
    fn tallies_a_cargo_test_transcript() {
        let transcript = "\
running 4 tests
test numerics::tests::prop_lse_shift ... ok
test numerics::tests::kl_zero ... \x1b[32mok\x1b[0m
test data::tests::mnist_header ... ignored, needs data/mnist
test numerics::tests::broken ... FAILED

test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s

running 1 test
test crates/numerics/src/lib.rs - (line 5) ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.20s
";
        let mut tally = Tally::default();
        transcript.lines().for_each(|l| tally.observe(l));
        assert_eq!((tally.passed, tally.failed, tally.ignored), (3, 1, 1));
        assert_eq!((tally.property, tally.doc), (1, 1));
        assert_eq!(tally.reported_passed, 3);
        assert_eq!(
            tally.summary(),
            "test-all: 3 tests passed (1 property tests, 1 doc tests), 1 ignored, \
             1 failed: numerics::tests::broken"
        );
        assert_eq!(tally.closing(), "test-all: 3 passed, 1 failed");
    }

    #[test]
    fn finds_features_in_manifests() {
        let manifest = r#"
[package]
name = "deepgen-data"
version.workspace = true

[features]
default = []
hub = ["dep:candle-datasets"] # the optional Hugging Face path
cuda = ["deepgen-core/cuda"]

[dependencies]
candle-datasets = { workspace = true, optional = true }
"#;
        assert_eq!(declares_feature(manifest, "hub").as_deref(), Some("deepgen-data"));
        assert_eq!(declares_feature(manifest, "metal"), None);
        // `hub` as a dependency name is not a feature.
        let other = "[package]\nname = \"x\"\n[dependencies]\nhub = \"1\"\n";
        assert_eq!(declares_feature(other, "hub"), None);
    }

    #[test]
    fn finds_hub_crates_in_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        for (krate, features) in [("data", "[features]\nhub = []\n"), ("vae", "")] {
            let d = dir.path().join(krate);
            fs::create_dir(&d).unwrap();
            fs::write(
                d.join("Cargo.toml"),
                format!("[package]\nname = \"deepgen-{krate}\"\n{features}"),
            )
            .unwrap();
        }
        assert_eq!(crates_with_feature(dir.path(), "hub").unwrap(), ["deepgen-data"]);
        assert!(crates_with_feature(&dir.path().join("none"), "hub").unwrap().is_empty());
    }

    #[test]
    fn mnist_presence_accepts_gz_or_raw() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!mnist_present(dir.path()));
        for (i, (name, _)) in MNIST.files.iter().enumerate() {
            let name = if i % 2 == 0 {
                name.to_string()
            } else {
                name.replace(".gz", "")
            };
            fs::write(dir.path().join(name), b"").unwrap();
        }
        assert!(mnist_present(dir.path()));
    }
}
