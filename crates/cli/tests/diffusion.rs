//! End-to-end tests of `deepgen train diffusion`, `sample diffusion` and
//! `eval diffusion`: a small MLP on the ring (big batches, short samplers),
//! every sampler on its checkpoint, the trajectory pictures, the UNet on a
//! tiny MNIST-format set, and the errors bad input gets.

mod common;

use common::{assert_fails_cleanly, assert_flag_rejected, deepgen, text, utf8, write_fake_mnist};
use std::path::Path;
use std::process::Output;

/// `deepgen train diffusion` on 2-D `data` into `run`: one epoch of 50 steps.
fn train_points(run: &Path, data: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "diffusion",
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
        "--steps",
        "10",
        "--device",
        "cpu",
        "--quiet",
    ];
    args.extend(extra);
    deepgen(&args)
}

#[test]
fn bad_schedules_samplers_and_steps_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    // Ten sampler steps of five timesteps.
    assert_fails_cleanly(&train_points(&run, "ring", &["--timesteps", "5"]), "at most T = 5");
    assert_fails_cleanly(&train_points(&run, "ring", &["--eta", "-0.5"]), "η");
    assert_fails_cleanly(
        &train_points(&run, "ring", &["--sampler", "dpm-solver++", "--eta", "1"]),
        "--eta 1 is DDIM's",
    );
    assert_fails_cleanly(&train_points(&run, "ring", &["--beta-end", "1.5"]), "(0, 1)");
    assert_fails_cleanly(&train_points(&run, "ring", &["--zero-snr"]), "use v or sample");
    assert_fails_cleanly(&train_points(&run, "ring", &["--network", "unet"]), "use mlp");
    assert_flag_rejected(
        &train_points(&run, "ring", &["--sampler", "euler"]),
        "one of ddpm, ddim, dpm-solver++",
    );
    assert_flag_rejected(
        &train_points(&run, "ring", &["--spacing", "uniform"]),
        "leading, trailing",
    );
    assert_flag_rejected(&train_points(&run, "ring", &["--timesteps", "0"]), "--timesteps");
    assert_flag_rejected(&train_points(&run, "ring", &["--weighting", "min-snr:0"]), "γ must be");
    assert!(!run.exists(), "a refused run leaves no directory");
}

#[test]
fn a_ring_run_samples_with_every_sampler() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("ring");
    let output = train_points(&run, "ring", &["--prediction", "v", "--weighting", "min-snr:5"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    for line in [
        "prediction = \"v\"",
        "kind = \"min-snr\"",
        "steps = 10",
        "data = \"ring\"",
    ] {
        assert!(config.contains(line), "`{line}` not in {config}");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    let header = metrics.lines().next().unwrap_or_default();
    for column in ["loss", "modes", "high_quality", "mmd2"] {
        assert!(header.split(',').any(|c| c == column), "{column} not in {header}");
    }

    for sampler in [
        &["--sampler", "ddpm", "--steps", "20"][..],
        &["--sampler", "ddim", "--eta", "1", "--weights", "trained"],
        &["--sampler", "dpm-solver++", "--steps", "5"],
    ] {
        let mut args = vec!["eval", "diffusion", "--checkpoint", utf8(&run), "--samples", "300"];
        args.extend(sampler);
        let eval = deepgen(&args);
        let stdout = text(&eval.stdout);
        assert!(eval.status.success(), "{sampler:?}: {}", text(&eval.stderr));
        assert!(stdout.contains("mmd2") && stdout.contains("s per 1,000"), "{stdout}");
    }
    let (png, path) = (dir.path().join("samples.png"), dir.path().join("trajectory.png"));
    let sample = deepgen(&[
        "sample",
        "diffusion",
        "--checkpoint",
        utf8(&run),
        "--n",
        "200",
        "--out",
        utf8(&png),
        "--trajectory",
        utf8(&path),
        "--spacing",
        "trailing",
    ]);
    assert!(sample.status.success(), "{}", text(&sample.stderr));
    assert!(png.is_file() && path.is_file());
    assert!(
        text(&sample.stdout).contains("ddim-10 (trailing"),
        "{}",
        text(&sample.stdout)
    );

    // A step count beyond T at sampling time, and another family's run.
    let too_many = deepgen(&["eval", "diffusion", "--checkpoint", utf8(&run), "--steps", "1001"]);
    assert_fails_cleanly(&too_many, "at most T = 1000");
    let huge = deepgen(&[
        "eval",
        "diffusion",
        "--checkpoint",
        utf8(&run),
        "--samples",
        "1000000000",
    ]);
    assert_fails_cleanly(&huge, "more than 100000 samples");
    let score_run = dir.path().join("score");
    let score = deepgen(&[
        "train",
        "score",
        "--data",
        "ring",
        "--out",
        utf8(&score_run),
        "--epochs",
        "1",
        "--batch-size",
        "5000",
        "--hidden",
        "8",
        "--sampler-steps",
        "2",
        "--quiet",
    ]);
    assert!(score.status.success(), "{}", text(&score.stderr));
    let wrong = deepgen(&[
        "sample",
        "diffusion",
        "--checkpoint",
        utf8(&score_run),
        "--out",
        utf8(&png),
    ]);
    assert_fails_cleanly(&wrong, "holds a `score` model, not a `diffusion`");
}

#[test]
fn a_unet_run_writes_images_and_a_trajectory() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fake_mnist(dir.path(), 32, 8);
    let run = dir.path().join("unet");
    let output = deepgen(&[
        "train",
        "diffusion",
        "--data-dir",
        utf8(dir.path()),
        "--out",
        utf8(&run),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(run.join("samples_epoch_01.png").is_file());
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    assert!(
        config.contains("network = \"unet\"") && config.contains("range = 1.0"),
        "{config}"
    );
    let (idx, png, path) = (
        dir.path().join("samples.idx"),
        dir.path().join("samples.png"),
        dir.path().join("trajectory.png"),
    );
    let sample = deepgen(&[
        "sample",
        "diffusion",
        "--checkpoint",
        utf8(&run),
        "--n",
        "4",
        "--out",
        utf8(&png),
        "--idx",
        utf8(&idx),
        "--trajectory",
        utf8(&path),
        "--sampler",
        "dpm-solver++",
        "--steps",
        "3",
    ]);
    assert!(sample.status.success(), "{}", text(&sample.stderr));
    let images = deepgen_data::load_images(&idx).expect("IDX reads back");
    assert_eq!(images.dims(), &[4, 784]);
    assert!(path.is_file());
}
