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
        "invalid output_bias = `mean`: expected marginal or pytorch",
    );
    reject("ae", &["--sparsity", "-0.5"], "-0.5 is not a finite number ≥ 0");
    assert_flag_rejected(&deepgen(&["eval", "vae", "--k", "0"]), "'--k <K>': must be at least 1");
    assert_flag_rejected(
        &deepgen(&["eval", "vae", "--samples", "1000000000000"]),
        "more than the 100000 samples a command draws at most",
    );
    assert!(!run.exists(), "a rejected command leaves no run directory");
}

/// Sample counts whose training step cannot fit (issue 18: `--samples` and
/// `--iwae-k` at u64::MAX panicked with "capacity overflow", at 10¹² the
/// process aborted) are refused before any data is read or file written,
/// naming the flags: exit 1, no panic.
#[test]
fn training_steps_beyond_memory_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (flag, value, needle) in [
        ("--samples", "18446744073709551615", "more memory than can be addressed"),
        ("--iwae-k", "18446744073709551615", "more memory than can be addressed"),
        ("--samples", "1000000000000", "GB of memory available"),
        ("--iwae-k", "1000000000000", "GB of memory available"),
    ] {
        let run = dir.path().join(format!("{flag}{value}"));
        let output = deepgen(&["train", "vae", flag, value, "--out", utf8(&run), "--quiet"]);
        assert_fails_cleanly(&output, needle);
        assert!(
            text(&output.stderr).contains("one training step"),
            "{}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).contains("lower --samples"),
            "{}",
            text(&output.stderr)
        );
        assert!(!run.exists(), "a refused run made its folder");
    }
    let hvae = deepgen(&[
        "train",
        "hvae",
        "--eval-k",
        "1000000000000",
        "--out",
        utf8(&dir.path().join("h")),
    ]);
    assert_fails_cleanly(&hvae, "--eval-k 1000000000000: above 1000000");
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
    let eval = |checkpoint: &Path, extra: &[&str]| {
        let mut args = vec!["eval", "vae", "--checkpoint", utf8(checkpoint)];
        args.extend(["--data-dir", utf8(dir.path()), "--device", "cpu"]);
        args.extend(extra);
        deepgen(&args)
    };
    let output = eval(&run, &["--k", "50"]);
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

    // A K above one call's 10,000 samples is drawn in parts (issue 18: K at
    // 10⁹ grew memory without bound); the estimate stays a log-likelihood.
    let output = eval(&run, &["--k", "20001", "--n-test", "2"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let big_k = text(&output.stdout);
    assert!(
        big_k.contains("test log-likelihood (importance sampling, K = 20001): -"),
        "{big_k}"
    );

    // A missing run and a file that is not a checkpoint.
    assert_fails_cleanly(&eval(&dir.path().join("nope"), &[]), "does not exist");
    assert_fails_cleanly(
        &eval(&dir.path().join("t10k-labels-idx1-ubyte"), &[]),
        "cannot load a VAE",
    );
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

/// A run repeated from its own `config.toml` (and nothing else) writes a
/// byte-identical checkpoint; a config file with an unknown key, a value of
/// the wrong type or an invalid value is refused with the key and the file
/// named, and leaves no run directory.
#[test]
fn config_files_repeat_runs_and_name_their_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fake_mnist(dir.path(), 128, 32);
    let first = dir.path().join("first");
    let output = train("vae", dir.path(), &first, &["--epochs", "2", "--seed", "5", "--quiet"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let config = first.join("config.toml");
    let again = dir.path().join("again");
    let output = deepgen(&[
        "train",
        "vae",
        "--config",
        utf8(&config),
        "--out",
        utf8(&again),
        "--quiet",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let bytes = |run: &Path| std::fs::read(run.join("checkpoint.safetensors")).expect("checkpoint");
    assert!(bytes(&first) == bytes(&again), "the repeated run's checkpoint differs");
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        std::fs::read_to_string(again.join("config.toml")).expect("config")
    );
    // A flag overrides the file.
    let third = dir.path().join("third");
    let output = deepgen(&[
        "train",
        "vae",
        "--config",
        utf8(&config),
        "--out",
        utf8(&third),
        "--epochs",
        "1",
        "--quiet",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        std::fs::read_to_string(third.join("config.toml"))
            .expect("config")
            .contains("epochs = 1")
    );

    let text_of = std::fs::read_to_string(&config).expect("config");
    for (name, from, to, needle) in [
        (
            "unknown",
            "latent_dim = 2",
            "latent_dims = 2",
            "unknown field `latent_dims`",
        ),
        (
            "type",
            "latent_dim = 2",
            "latent_dim = \"two\"",
            "invalid type: string \"two\", expected usize",
        ),
        (
            "invalid",
            "latent_dim = 2",
            "latent_dim = 0",
            "invalid latent_dim = 0: must be at least 1",
        ),
        (
            "enum",
            "decoder = \"bernoulli\"",
            "decoder = \"poisson\"",
            "unknown variant `poisson`",
        ),
        (
            "family",
            "family = \"vae\"",
            "family = \"hvae\"",
            "configures a `hvae` run, not a `vae` run",
        ),
    ] {
        assert!(text_of.contains(from), "{name}: no `{from}` in {text_of}");
        let bad = dir.path().join(format!("{name}.toml"));
        std::fs::write(&bad, text_of.replace(from, to)).expect("write");
        let out = dir.path().join(format!("out-{name}"));
        let output = deepgen(&["train", "vae", "--config", utf8(&bad), "--out", utf8(&out)]);
        assert_fails_cleanly(&output, needle);
        assert_fails_cleanly(&output, utf8(&bad));
        assert!(!out.exists(), "{name}: a refused config leaves no run directory");
    }
}

/// `deepgen sample vae` writes a PNG grid and an IDX file that deepgen-data
/// reads back as uint8 28×28 images; sampling another family's run or a
/// model without a prior is a clear error.
#[test]
fn samples_are_a_png_grid_and_an_idx_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fake_mnist(dir.path(), 128, 32);
    let run = dir.path().join("run");
    let output = train("vae", dir.path(), &run, &["--epochs", "1", "--quiet"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let (png, idx) = (dir.path().join("s.png"), dir.path().join("s.idx"));
    let sample = |model: &str, run: &Path, n: &str| {
        deepgen(&[
            "sample",
            model,
            "--checkpoint",
            utf8(run),
            "--n",
            n,
            "--seed",
            "3",
            "--out",
            utf8(&png),
            "--idx",
            utf8(&idx),
            "--device",
            "cpu",
        ])
    };
    let output = sample("vae", &run, "10");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("10 samples"));
    let images = deepgen_data::read_idx(&idx, Some(0x0803)).expect("IDX");
    assert_eq!(images.dims(), &[10, 28, 28]);
    let first = std::fs::read(&idx).expect("idx");
    // The grid is a PNG; the same seed draws the same samples.
    assert_eq!(std::fs::read(&png).expect("png").get(1..4), Some(&b"PNG"[..]));
    assert!(sample("vae", &run, "10").status.success());
    assert!(std::fs::read(&idx).expect("idx") == first, "same seed, other samples");

    assert_fails_cleanly(&sample("hvae", &run, "4"), "holds a `vae` model, not a `hvae`");
    let ae = dir.path().join("ae");
    let output = train("ae", dir.path(), &ae, &["--epochs", "1", "--quiet"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_fails_cleanly(&sample("vae", &ae, "4"), "holds a `ae` model, not a `vae`");
    assert_flag_rejected(&sample("vae", &run, "0"), "must be at least 1");
}
