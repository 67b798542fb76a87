//! End-to-end tests of `deepgen train score` and `sample score`: a small
//! noise-conditional network on Song & Ermon's mixture (big batches, so an
//! epoch is 50 steps; short chains), its samples on the network and on the
//! exact score, the score-field picture, and the errors bad input gets.

mod common;

use common::{assert_fails_cleanly, assert_flag_rejected, deepgen, text, utf8};
use std::path::Path;
use std::process::Output;

/// `deepgen train score` on `data` into `run`, one epoch of 50 steps, with `extra` flags.
fn train(run: &Path, data: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "score",
        "--data",
        data,
        "--out",
        utf8(run),
        "--epochs",
        "1",
        "--batch-size",
        "2000",
        "--hidden",
        "32,32",
        "--sampler-steps",
        "10",
        "--device",
        "cpu",
        "--quiet",
    ];
    args.extend(extra);
    deepgen(&args)
}

#[test]
fn bad_noise_levels_step_sizes_and_steps_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    assert_fails_cleanly(&train(&run, "mixture", &["--sigmas", "1,2"]), "strictly decrease");
    assert_fails_cleanly(&train(&run, "mixture", &["--sigmas", "1,-0.5"]), "not a positive");
    assert_flag_rejected(&train(&run, "mixture", &["--epsilon", "0"]), "--epsilon");
    assert_flag_rejected(&train(&run, "mixture", &["--epsilon", "-1"]), "--epsilon");
    assert_flag_rejected(&train(&run, "mixture", &["--sampler-steps", "0"]), "--sampler-steps");
    assert_flag_rejected(
        &train(&run, "mixture", &["--loss", "sm"]),
        "one of esm, ssm, ssm-vr, dsm",
    );
    assert_flag_rejected(&train(&run, "mixture", &["--start", "box:3"]), "--start");
    let annealed = train(&run, "mixture", &["--loss", "esm", "--sampler", "annealed"]);
    assert_fails_cleanly(&annealed, "noise-conditional");
    assert_fails_cleanly(&train(&run, "mnist", &[]), "models 2-D points");
    assert!(!run.exists(), "a refused run leaves no directory");
}

#[test]
fn a_mixture_run_trains_samples_and_draws_the_score_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("mixture");
    let output = train(&run, "mixture", &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    for line in [
        "loss = \"dsm\"",
        "noise_conditional = true",
        "kind = \"annealed\"",
        "data = \"mixture\"",
    ] {
        assert!(config.contains(line), "`{line}` not in {config}");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    let header = metrics.lines().next().unwrap_or_default();
    for column in ["loss", "fisher", "modes", "high_quality", "reverse_kl", "mmd2"] {
        assert!(header.split(',').any(|c| c == column), "{column} not in {header}");
    }
    assert!(run.join("samples_epoch_01.png").is_file());

    let (png, field) = (dir.path().join("samples.png"), dir.path().join("field.png"));
    let sample = |extra: &[&str]| {
        let mut args = vec![
            "sample",
            "score",
            "--checkpoint",
            utf8(&run),
            "--n",
            "200",
            "--out",
            utf8(&png),
        ];
        args.extend(extra);
        deepgen(&args)
    };
    let on_network = sample(&["--field", utf8(&field)]);
    assert!(on_network.status.success(), "{}", text(&on_network.stderr));
    assert!(png.is_file() && field.is_file());
    assert!(
        text(&on_network.stdout).contains("fraction per component"),
        "{}",
        text(&on_network.stdout)
    );
    let exact = sample(&["--exact", "--sampler", "langevin", "--sampler-steps", "50"]);
    assert!(exact.status.success(), "{}", text(&exact.stderr));
    assert!(
        text(&exact.stdout).contains("langevin on the exact score"),
        "{}",
        text(&exact.stdout)
    );
    assert_flag_rejected(&sample(&["--epsilon", "0"]), "--epsilon");
}

#[test]
fn a_sliced_run_on_moons_samples_by_plain_langevin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("moons");
    let output = train(&run, "moons", &["--loss", "ssm-vr"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    assert!(
        config.contains("noise_conditional = false") && config.contains("kind = \"langevin\""),
        "{config}"
    );
    let png = dir.path().join("samples.png");
    let sample = deepgen(&["sample", "score", "--checkpoint", utf8(&run), "--out", utf8(&png)]);
    assert!(sample.status.success(), "{}", text(&sample.stderr));
    let exact = deepgen(&[
        "sample",
        "score",
        "--checkpoint",
        utf8(&run),
        "--out",
        utf8(&png),
        "--exact",
    ]);
    assert_fails_cleanly(&exact, "no closed form");
}

/// Output that cannot be written (a full disk behind `> file`) is an error,
/// not an exit status 0 with the output lost.
#[test]
fn output_to_a_full_disk_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    assert!(train(&run, "mixture", &[]).status.success());
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // no /dev/full on this system
    };
    let png = dir.path().join("s.png");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_deepgen"))
        .args([
            "sample",
            "score",
            "--checkpoint",
            utf8(&run),
            "--n",
            "50",
            "--out",
            utf8(&png),
        ])
        .stdout(full)
        .output()
        .expect("deepgen runs");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("cannot write to standard output"),
        "{}",
        text(&output.stderr)
    );
}
