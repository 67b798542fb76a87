//! End-to-end tests of `deepgen train simclr` and `eval simclr` on a tiny
//! MNIST-format set: the per-epoch probes in metrics.csv, the pictures, the
//! baselines, and the errors bad input gets.

mod common;

use common::{assert_fails_cleanly, assert_flag_rejected, deepgen, text, utf8, write_fake_mnist};
use std::path::Path;
use std::process::Output;

/// Two epochs of four batches of 16 on 64 fake images, a small encoder.
fn train(data: &Path, run: &Path, extra: &[&str]) -> Output {
    // Defaults for the flags `extra` does not give.
    let mut defaults = Vec::new();
    for (flag, value) in [
        ("--batch-size", "16"),
        ("--encoder", "INPUT-28x28x1 CONV-5-4-s2 POOL-2 FLATTEN FC-16-relu"),
    ] {
        if !extra.contains(&flag) {
            defaults.extend([flag, value]);
        }
    }
    let mut args = vec![
        "train",
        "simclr",
        "--data-dir",
        utf8(data),
        "--out",
        utf8(run),
        "--epochs",
        "2",
        "--projection",
        "16,8",
        "--device",
        "cpu",
        "--quiet",
    ];
    args.extend(defaults);
    args.extend(extra);
    deepgen(&args)
}

#[test]
fn a_run_logs_its_probes_draws_its_views_and_evaluates() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fake_mnist(dir.path(), 64, 20);
    let run = dir.path().join("simclr");
    let output = train(dir.path(), &run, &["--memory-bank", "32", "--cosine"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    let header = metrics.lines().next().unwrap_or_default();
    assert_eq!(header, "epoch,loss,linear_probe_accuracy,knn_accuracy,train_seconds");
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
    for picture in ["views.png", "loss_curve.png", "embeddings_pca.png"] {
        assert!(run.join(picture).is_file(), "{picture}");
    }
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    for line in [
        "memory_bank_size = 32",
        "kind = \"affine\"",
        "cosine = true",
        "temperature = 0.5",
        "solver = \"lbfgs\"",
    ] {
        assert!(config.contains(line), "`{line}` not in {config}");
    }
    let eval = deepgen(&[
        "eval",
        "simclr",
        "--checkpoint",
        utf8(&run),
        "--baselines",
        "--device",
        "cpu",
    ]);
    assert!(eval.status.success(), "{}", text(&eval.stderr));
    let out = text(&eval.stdout);
    for line in ["linear_probe_accuracy", "random encoder", "raw pixels", "knn_accuracy"] {
        assert!(out.contains(line), "`{line}` not in {out}");
    }
    // --resume continues to a third epoch with the run's own config.toml (bank and schedule included).
    let resumed = deepgen(&[
        "train",
        "simclr",
        "--data-dir",
        utf8(dir.path()),
        "--out",
        utf8(&run),
        "--resume",
        "--epochs",
        "3",
        "--quiet",
    ]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    assert_eq!(metrics.lines().count(), 4, "{metrics}");
    let knn_only = deepgen(&["eval", "simclr", "--checkpoint", utf8(&run), "--probe", "knn"]);
    assert!(knn_only.status.success(), "{}", text(&knn_only.stderr));
    assert!(!text(&knn_only.stdout).contains("linear_probe"));
    let anchors_probe = deepgen(&[
        "eval",
        "simclr",
        "--checkpoint",
        utf8(&run),
        "--probe",
        "linear",
        "--probe-solver",
        "adam",
    ]);
    assert!(anchors_probe.status.success(), "{}", text(&anchors_probe.stderr));
    assert!(text(&anchors_probe.stdout).contains("linear_probe_accuracy"));
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fake_mnist(dir.path(), 64, 20);
    let run = dir.path().join("bad");
    assert_flag_rejected(&train(dir.path(), &run, &["--tau", "0"]), "--tau");
    assert_flag_rejected(&train(dir.path(), &run, &["--tau", "-0.5"]), "--tau");
    assert_fails_cleanly(&train(dir.path(), &run, &["--batch-size", "1"]), "at least 2");
    assert_flag_rejected(
        &train(dir.path(), &run, &["--probe-solver", "newton"]),
        "one of lbfgs, adam",
    );
    assert_fails_cleanly(
        &train(dir.path(), &run, &["--encoder", "INPUT-28x28x1 CONV-3-8 POOL-2"]),
        "is not a vector",
    );
    assert_fails_cleanly(
        &train(dir.path(), &run, &["--encoder", "INPUT-784 FC-10"]),
        "must take images",
    );
    assert_fails_cleanly(
        &train(dir.path(), &run, &["--encoder", "INPUT-32x32x1 CONV-3-8 FLATTEN"]),
        "28×28",
    );
    assert!(!run.exists(), "a refused run leaves no directory");

    // A probe of another family's checkpoint.
    let cnn = dir.path().join("cnn");
    let trained = deepgen(&[
        "train",
        "cnn",
        "--data-dir",
        utf8(dir.path()),
        "--out",
        utf8(&cnn),
        "--epochs",
        "1",
        "--spec",
        "INPUT-28x28x1 CONV-5-2-s2 FLATTEN FC-10",
        "--quiet",
    ]);
    assert!(trained.status.success(), "{}", text(&trained.stderr));
    assert_fails_cleanly(
        &deepgen(&["eval", "simclr", "--checkpoint", utf8(&cnn)]),
        "cannot load a SimCLR model",
    );
}
