//! End-to-end tests of `deepgen train vae`, `deepgen train ae` and
//! `deepgen eval vae`, running the built binary on a tiny synthetic data set
//! in MNIST's file format with a tiny network.

mod common;

use common::{assert_fails_cleanly, assert_flag_rejected, deepgen, text, utf8, write_fake_mnist};
use std::path::Path;
use std::process::Output;

/// `deepgen train <model>` (`vae` or `ae`) of a 784-16-2 network on the data
/// in `data` into `run`, with `extra` flags.
fn train(model: &str, data: &Path, run: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        model,
        "--data-dir",
        utf8(data),
        "--out",
        utf8(run),
        "--batch-size",
        "32",
        "--hidden",
        "16",
        "--latent",
        "2",
        "--device",
        "cpu",
    ];
    args.extend(extra);
    deepgen(&args)
}

/// The `name` column of `metrics.csv` in `run`, one value per epoch.
fn metric(run: &Path, name: &str) -> Vec<f64> {
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    let mut lines = metrics.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let i = header
        .iter()
        .position(|h| *h == name)
        .unwrap_or_else(|| panic!("no {name} in {header:?}"));
    lines
        .map(|l| l.split(',').nth(i).and_then(|v| v.parse().ok()).expect("number"))
        .collect()
}

#[test]
fn bad_flags_are_rejected_with_their_reason() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = out.path().join("run");
    let reject = |model: &str, flags: &[&str], needle: &str| {
        let mut args = vec!["train", model, "--out", utf8(&run)];
        args.extend(flags);
        assert_flag_rejected(&deepgen(&args), needle);
    };
    reject("vae", &["--latent", "0"], "'--latent <Z>': must be at least 1");
    reject("vae", &["--beta", "-1"], "-1 is not a finite number ≥ 0");
    reject("vae", &["--samples", "0"], "must be at least 1");
    reject(
        "vae",
        &["--output-bias", "mean"],
        "[possible values: marginal, pytorch]",
    );
    reject("ae", &["--sparsity", "-0.5"], "-0.5 is not a finite number ≥ 0");
    assert_flag_rejected(&deepgen(&["eval", "vae", "--k", "0"]), "'--k <K>': must be at least 1");
    assert!(!run.exists(), "a rejected command leaves no run directory");
}

#[test]
fn train_resume_and_eval_a_vae_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fake_mnist(dir.path(), 256, 64);
    let run = dir.path().join("run");

    let output = train("vae", dir.path(), &run, &["--epochs", "2"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains(r#"training {"output_bias":"marginal"}"#), "{stdout}");
    assert!(stdout.contains("epoch 1/2") && stdout.contains("epoch 2/2"), "{stdout}");

    // metrics.csv: −ELBO, its parts, per epoch; test −ELBO = recon + KL.
    for column in ["train_loss", "recon", "kl", "test_loss", "test_recon", "test_kl"] {
        assert_eq!(metric(&run, column).len(), 2, "{column}");
    }
    let (loss, recon, kl) = (
        metric(&run, "test_loss")[1],
        metric(&run, "test_recon")[1],
        metric(&run, "test_kl")[1],
    );
    assert!((loss - recon - kl).abs() < 1e-6 * loss.abs(), "{loss} ≠ {recon} + {kl}");
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    assert!(
        config.contains("family = \"vae\"") && config.contains("output_bias = \"marginal\""),
        "{config}"
    );
    for picture in [
        "reconstructions_epoch_01.png",
        "samples_epoch_02.png",
        "interpolation.png",
        "manifold.png",
        "loss_curve.png",
    ] {
        assert!(run.join(picture).is_file(), "no {picture}");
    }

    // Resuming needs the same architecture, and then continues.
    let output = train(
        "vae",
        dir.path(),
        &run,
        &["--epochs", "3", "--resume", "--decoder", "gaussian"],
    );
    assert_fails_cleanly(&output, "use the same options to resume");
    let output = train("vae", dir.path(), &run, &["--epochs", "3", "--resume"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(metric(&run, "test_loss").len(), 3);

    // The run evaluates: importance-sampled log-likelihood above the ELBO
    // (up to noise), both per image.
    let output = deepgen(&[
        "eval",
        "vae",
        "--checkpoint",
        utf8(&run),
        "--data-dir",
        utf8(dir.path()),
        "--k",
        "50",
        "--device",
        "cpu",
    ]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let value = |prefix: &str| -> f64 {
        let rest = &stdout[stdout
            .find(prefix)
            .unwrap_or_else(|| panic!("no `{prefix}` in {stdout}"))
            + prefix.len()..];
        rest.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .expect("number")
    };
    let log_px = value("test log-likelihood (importance sampling, K = 50): ");
    let elbo = value("test ELBO (one sample): ");
    assert!(log_px < 0.0 && log_px > elbo - 1.0, "log p̂(x) {log_px}, ELBO {elbo}");

    // A missing run and a file that is not a checkpoint.
    let eval = |checkpoint: &Path| {
        deepgen(&[
            "eval",
            "vae",
            "--checkpoint",
            utf8(checkpoint),
            "--data-dir",
            utf8(dir.path()),
            "--device",
            "cpu",
        ])
    };
    assert_fails_cleanly(&eval(&dir.path().join("nope")), "does not exist");
    assert_fails_cleanly(&eval(&dir.path().join("t10k-labels-idx1-ubyte")), "cannot load a VAE");
}

/// The output bias at the data's marginal against PyTorch's initialisation:
/// the same seed, weights and batches, but the first epoch starts from the
/// mean image instead of grey noise, so its training loss is lower.
#[test]
fn marginal_output_bias_starts_ahead() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fake_mnist(dir.path(), 256, 64);
    let first_epoch = |bias: &str| {
        let run = dir.path().join(bias);
        let output = train(
            "vae",
            dir.path(),
            &run,
            &["--epochs", "1", "--quiet", "--output-bias", bias],
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
        let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
        assert!(config.contains(&format!("output_bias = \"{bias}\"")), "{config}");
        metric(&run, "train_loss")[0]
    };
    let (marginal, pytorch) = (first_epoch("marginal"), first_epoch("pytorch"));
    assert!(
        marginal < pytorch,
        "first-epoch −ELBO: marginal {marginal}, pytorch {pytorch}"
    );
}

#[test]
fn autoencoders_train() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fake_mnist(dir.path(), 128, 32);
    for kind in ["plain", "linear", "sparse"] {
        let run = dir.path().join(kind);
        let output = train("ae", dir.path(), &run, &["--epochs", "2", "--kind", kind, "--quiet"]);
        assert!(output.status.success(), "{kind}: {}", text(&output.stderr));
        let loss = metric(&run, "train_loss");
        assert!(loss[1] < loss[0], "{kind}: {loss:?}");
        assert!(run.join("reconstructions_epoch_02.png").is_file(), "{kind}");
        assert!(run.join("interpolation.png").is_file(), "{kind}");
    }
}
