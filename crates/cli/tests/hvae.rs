//! End-to-end tests of `deepgen train hvae` and `deepgen eval hvae`, running
//! the built binary on a tiny synthetic data set in MNIST's file format with
//! a tiny network, so that every run takes well under a second.

mod common;

use common::{assert_fails_cleanly, assert_flag_rejected, deepgen, text, utf8, write_fake_mnist};
use std::path::Path;
use std::process::Output;

/// A hierarchical VAE small enough to train in a blink: 784-16-8 / 8-4.
const TINY: [&str; 10] = [
    "--z1",
    "4",
    "--z2",
    "2",
    "--hidden1",
    "16",
    "--hidden1",
    "8",
    "--hidden2",
    "4",
];

/// `deepgen train hvae` of the tiny model on the data in `data` into `run`,
/// with `extra` flags.
fn train(data: &Path, run: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "hvae",
        "--data-dir",
        utf8(data),
        "--out",
        utf8(run),
        "--batch-size",
        "32",
        "--device",
        "cpu",
    ];
    args.extend(TINY);
    args.extend(extra);
    deepgen(&args)
}

/// `deepgen eval hvae` of the run or checkpoint `checkpoint` on the data in
/// `data`, with `extra` flags.
fn eval(checkpoint: &Path, data: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "eval",
        "hvae",
        "--checkpoint",
        utf8(checkpoint),
        "--data-dir",
        utf8(data),
        "--device",
        "cpu",
    ];
    args.extend(extra);
    deepgen(&args)
}

#[test]
fn bad_flags_are_rejected_with_their_reason() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = out.path().join("run");
    let reject = |flags: &[&str], needle: &str| {
        let mut args = vec!["train", "hvae", "--out", utf8(&run)];
        args.extend(flags);
        assert_flag_rejected(&deepgen(&args), needle);
    };
    reject(&["--free-bits", "-1"], "-1 is not a finite number ≥ 0");
    reject(&["--z2", "0"], "'--z2 <D2>': must be at least 1");
    reject(&["--z1", "x"], "`x` is not a whole number");
    reject(&["--hidden1", "200,,200"], "--hidden1");
    reject(&["--hidden2", "0"], "must be at least 1");
    reject(&["--warmup", "-3"], "-3 is not a finite number ≥ 0");
    reject(&["--cyclical", "0"], "`0` is not a positive number");
    reject(&["--warmup", "2", "--cyclical", "4"], "cannot be used with");
    reject(&["--free-bits-group", "0"], "must be at least 1");
    reject(&["--eval-k", "0"], "must be at least 1");
    assert_flag_rejected(&deepgen(&["eval", "hvae", "--k", "0"]), "must be at least 1");
    assert!(!run.exists(), "a rejected command leaves no run directory");
}

#[test]
fn missing_data_and_runs_are_explained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    let output = train(&dir.path().join("nowhere"), &run, &[]);
    assert_fails_cleanly(&output, "cargo xtask fetch-mnist");
    assert!(!run.exists(), "a failed start leaves no run directory");
    assert_fails_cleanly(&eval(&run, dir.path(), &[]), "deepgen train hvae --out");
    // A file that is not a checkpoint.
    write_fake_mnist(dir.path(), 20, 10);
    let file = dir.path().join("t10k-labels-idx1-ubyte");
    assert_fails_cleanly(&eval(&file, dir.path(), &[]), "cannot load a hierarchical VAE");
}

#[test]
fn train_resume_and_eval_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fake_mnist(dir.path(), 320, 100);
    let run = dir.path().join("run");

    // A warm-up longer than the run is allowed, with the crate's warning.
    let output = train(dir.path(), &run, &["--epochs", "2", "--warmup", "3", "--eval-k", "4"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("warning: the KL warm-up lasts 3 epochs but the run has 2"),
        "{stderr}"
    );
    assert!(stdout.contains("epoch 1/2") && stdout.contains("epoch 2/2"), "{stdout}");

    // The run directory: metrics with the per-layer columns, one row per
    // epoch, β rising with the warm-up; the checkpoint; the config; the
    // VAE's pictures.
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    let lines: Vec<&str> = metrics.lines().collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    for column in [
        "train_loss",
        "test_loss",
        "kl1",
        "kl2",
        "active_units1",
        "active_units2",
        "beta",
        "test_log_px",
    ] {
        assert!(header.contains(&column), "no {column} in {}", lines[0]);
    }
    assert_eq!(lines.len(), 3, "{metrics}");
    let column = |row: usize, name: &str| -> f64 {
        let i = header.iter().position(|h| *h == name).expect("column");
        lines[row]
            .split(',')
            .nth(i)
            .and_then(|v| v.parse().ok())
            .expect("number")
    };
    assert!(
        column(1, "beta") < column(2, "beta") && column(2, "beta") < 1.0,
        "{metrics}"
    );
    // Importance sampling bounds log p(x) more tightly than the ELBO.
    assert!(column(2, "test_log_px") > -column(2, "test_loss") - 1.0, "{metrics}");
    assert!(run.join("checkpoint.safetensors").is_file());
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    for entry in [
        "family = \"hvae\"",
        "[training]\neval_k = 4",
        "hidden1 = [16, 8]\nlatent1 = 4\nhidden2 = [4]\nlatent2 = 2",
        "schedule = \"linear:3\"",
        "epochs = 2",
    ] {
        assert!(config.contains(entry), "no `{entry}` in {config}");
    }
    for picture in [
        "reconstructions_epoch_01.png",
        "samples_epoch_02.png",
        "loss_curve.png",
        "interpolation.png",
    ] {
        assert!(run.join(picture).is_file(), "no {picture}");
    }

    // Training again into the same directory needs --resume; resuming takes
    // the run's own config.toml, and a flag that changes the model is refused.
    assert_fails_cleanly(
        &train(dir.path(), &run, &["--epochs", "3", "--warmup", "3"]),
        "--resume",
    );
    let output = train(dir.path(), &run, &["--epochs", "3", "--warmup", "1", "--resume"]);
    assert_fails_cleanly(&output, "use the same options to resume");
    let output = train(dir.path(), &run, &["--epochs", "3", "--resume"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "the warm-up ends with the run: {stderr}");
    assert!(
        stdout.contains("epoch 3/3") && !stdout.contains("epoch 2/3"),
        "{stdout}"
    );
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    assert_eq!(metrics.lines().count(), 4, "{metrics}");

    // The trained run evaluates: log-likelihood and ELBO per image.
    let output = eval(&run, dir.path(), &["--k", "20", "--n-test", "30"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("30 images, K = 20"), "{stdout}");
    assert!(
        stdout.contains("test log-likelihood (importance sampling, K = 20): -"),
        "{stdout}"
    );
    assert!(
        stdout.contains("test ELBO (one sample): -") && stdout.contains("KL2"),
        "{stdout}"
    );
}

#[test]
fn eval_refuses_a_checkpoint_of_another_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fake_mnist(dir.path(), 64, 20);
    let run = dir.path().join("vae");
    let output = deepgen(&[
        "train",
        "vae",
        "--data-dir",
        utf8(dir.path()),
        "--out",
        utf8(&run),
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--latent",
        "2",
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_fails_cleanly(&eval(&run, dir.path(), &[]), "it holds a `vae` model, not a `hvae`");
}
