//! `cargo xtask bench [--filter NAME]`: runs `cargo bench --workspace
//! --bench '*'` (every `[[bench]]` target, `harness = false`, built with the
//! `bench` profile, and no unit tests), streams their output, and collects
//! the lines
//!
//! ```text
//! BENCH <name> <seconds> <pytorch_seconds_or_->
//! ```
//!
//! that each bench binary prints (the reference is the PyTorch figure on the
//! same machine with 2 threads, or `-`). They become a markdown table in
//! `target/bench.md` (under `CARGO_TARGET_DIR` when set), which is printed
//! too. `--filter NAME` is passed to the bench binaries as their first free
//! argument (libtest's convention, so they may skip other work) and the
//! table keeps only the benchmarks whose name contains NAME.

use std::{
    env, fs,
    path::PathBuf,
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};

use crate::{run_streaming, strip_ansi};

/// Flags of `bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only benchmarks whose name contains NAME.
    #[arg(long, value_name = "NAME")]
    filter: Option<String>,
}

/// One `BENCH` line.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    name: String,
    /// Seconds as printed, and parsed.
    seconds: (String, f64),
    /// The PyTorch reference as printed and parsed, if any.
    reference: Option<(String, f64)>,
}

/// Runs `bench` from the project root.
pub fn run(args: Args) -> Result<()> {
    // `--benches` alone would also run every lib and bin target's unit tests
    // in bench mode; `--bench '*'` selects the [[bench]] targets only.
    if !has_bench_targets()? {
        println!("bench: the workspace has no [[bench]] targets, nothing to run");
        return Ok(());
    }
    let mut cmd = crate::cargo("bench");
    cmd.args(["--workspace", "--bench", "*"]);
    if let Some(filter) = &args.filter {
        cmd.args(["--", filter]);
    }
    let mut records = Vec::new();
    run_streaming(&mut cmd, |line| {
        if let Some(r) = parse_bench_line(&strip_ansi(line)) {
            records.push(r);
        }
    })?;
    if let Some(filter) = &args.filter {
        records.retain(|r| r.name.contains(filter.as_str()));
    }
    println!();
    if records.is_empty() {
        println!("bench: no `BENCH <name> <seconds> <reference>` lines were printed; no table written");
        return Ok(());
    }
    let header = format!(
        "Benchmarks of deepgen, {} (UTC), nproc {}, commit {}",
        today_utc(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        git_commit().unwrap_or_else(|| "unknown".into())
    );
    let table = render_table(&header, &records);
    let target = env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    fs::create_dir_all(&target).with_context(|| format!("cannot create {}", target.display()))?;
    let path = target.join("bench.md");
    fs::write(&path, &table).with_context(|| format!("cannot write {}", path.display()))?;
    print!("{table}");
    let plural = if records.len() == 1 { "" } else { "s" };
    println!(
        "bench: {} benchmark{plural} written to {}",
        records.len(),
        path.display()
    );
    Ok(())
}

/// Whether any workspace member has a `[[bench]]` target (`cargo bench
/// --bench '*'` fails when none has).
fn has_bench_targets() -> Result<bool> {
    let out = crate::cargo("metadata")
        .args(["--no-deps", "--format-version", "1"])
        .output()
        .context("cannot run `cargo metadata`")?;
    if !out.status.success() {
        anyhow::bail!("`cargo metadata` failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    // The JSON is compact; a bench target is `"kind":["bench"]`.
    Ok(String::from_utf8_lossy(&out.stdout).contains(r#""kind":["bench"]"#))
}

/// Parses `BENCH <name> <seconds> <reference_or_->`; anything else is `None`.
fn parse_bench_line(line: &str) -> Option<Record> {
    let mut words = line.split_whitespace();
    if words.next()? != "BENCH" {
        return None;
    }
    let name = words.next()?;
    let number = |w: &str| {
        w.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .map(|x| (w.to_string(), x))
    };
    let seconds = number(words.next()?)?;
    let reference = match words.next()? {
        "-" => None,
        w => Some(number(w)?),
    };
    if words.next().is_some() {
        return None;
    }
    Some(Record {
        name: name.to_string(),
        seconds,
        reference,
    })
}

/// The markdown document: the header line, a blank line and the table.
fn render_table(header: &str, records: &[Record]) -> String {
    let mut out = format!(
        "{header}\n\n\
         | benchmark | deepgen (s) | PyTorch 2 threads (s) | ratio deepgen/PyTorch |\n\
         |---|---:|---:|---:|\n"
    );
    for r in records {
        let (reference, ratio) = match &r.reference {
            Some((shown, x)) if *x > 0.0 => (shown.as_str(), format!("{:.2}", r.seconds.1 / x)),
            Some((shown, _)) => (shown.as_str(), "-".to_string()),
            None => ("-", "-".to_string()),
        };
        out += &format!("| {} | {} | {reference} | {ratio} |\n", r.name, r.seconds.0);
    }
    out
}

/// Today's date in UTC as `YYYY-MM-DD`.
fn today_utc() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Converts days since 1970-01-01 to a (year, month, day) of the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The short commit hash, with `-dirty` if tracked files changed; `None`
/// outside a git checkout or without git.
fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut hash = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if dirty {
        hash += "-dirty";
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_lines() {
        let r = parse_bench_line("BENCH vae_epoch 12.5 20.0").unwrap();
        assert_eq!(r.name, "vae_epoch");
        assert_eq!(r.seconds, ("12.5".to_string(), 12.5));
        assert_eq!(r.reference, Some(("20.0".to_string(), 20.0)));

        let r = parse_bench_line("BENCH conv2d_fwd 1.2e-3 -").unwrap();
        assert_eq!(r.seconds.1, 1.2e-3);
        assert_eq!(r.reference, None);
    }

    #[test]
    fn rejects_other_lines() {
        for line in [
            "",
            "Running benches/vae.rs",
            "BENCH",
            "BENCH only_name",
            "BENCH x 1.0",
            "BENCH x abc -",
            "BENCH x 1.0 abc",
            "BENCH x -1.0 -",
            "BENCH x NaN -",
            "BENCH x 1.0 2.0 extra",
            "BENCHMARK x 1.0 -",
            "  BENCH x 1.0 -x",
        ] {
            assert_eq!(parse_bench_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn renders_a_markdown_table() {
        let records: Vec<_> = ["BENCH vae_epoch 30.0 20.0", "BENCH ddim_50 1.5 -", "BENCH z 1 0"]
            .iter()
            .map(|l| parse_bench_line(l).unwrap())
            .collect();
        let table = render_table("Benchmarks, 2025-01-01 (UTC), nproc 2, commit abc", &records);
        assert_eq!(
            table,
            "Benchmarks, 2025-01-01 (UTC), nproc 2, commit abc\n\
             \n\
             | benchmark | deepgen (s) | PyTorch 2 threads (s) | ratio deepgen/PyTorch |\n\
             |---|---:|---:|---:|\n\
             | vae_epoch | 30.0 | 20.0 | 1.50 |\n\
             | ddim_50 | 1.5 | - | - |\n\
             | z | 1 | 0 | - |\n"
        );
    }

    #[test]
    fn dates_from_day_numbers() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2000-02-29: 30 years (7 leap days) and 59 days past New Year 2000.
        assert_eq!(civil_from_days(10_957 + 59), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(today_utc().len(), 10);
    }
}
