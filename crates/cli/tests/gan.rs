//! End-to-end tests of `deepgen train gan`, `sample gan` and `eval gan`:
//! tiny MLPs on the 2-D ring (big batches, so an epoch is 50 steps) and the
//! DCGAN pair on a tiny synthetic data set in MNIST's file format.

mod common;

use common::{assert_fails_cleanly, assert_flag_rejected, deepgen, text, utf8, write_fake_mnist};
use std::path::Path;
use std::process::Output;

/// `deepgen train gan` on the ring with tiny networks into `run`, with `extra` flags.
fn train_ring(run: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "gan",
        "--data",
        "ring",
        "--out",
        utf8(run),
        "--epochs",
        "1",
        "--batch-size",
        "2000",
        "--lr",
        "1e-3",
        "--g-hidden",
        "16,16",
        "--d-hidden",
        "16",
        "--maxout",
        "2",
        "--device",
        "cpu",
        "--quiet",
    ];
    args.extend(extra);
    deepgen(&args)
}

#[test]
fn bad_flags_are_rejected_with_their_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    assert_flag_rejected(&train_ring(&run, &["--pack", "0"]), "--pack");
    assert_flag_rejected(&train_ring(&run, &["--gp", "-1"]), "--gp");
    assert_flag_rejected(&train_ring(&run, &["--loss", "wgan"]), "hinge");
    assert_flag_rejected(&train_ring(&run, &["--pack-input", "shared"]), "per-sample");
    assert_fails_cleanly(&train_ring(&run, &["--network", "dcgan"]), "--data ring is 2-D");
    assert_fails_cleanly(&train_ring(&run, &["--loss", "wasserstein"]), "--gp 10");
    // Penalties need the MLP discriminator; MNIST gets the DCGAN.
    let mnist = deepgen(&["train", "gan", "--r1", "1", "--out", utf8(&run), "--device", "cpu"]);
    assert_fails_cleanly(&mnist, "MLP discriminator");
    let packed = deepgen(&[
        "train",
        "gan",
        "--pack",
        "2",
        "--pack-input",
        "per-sample",
        "--out",
        utf8(&run),
        "--device",
        "cpu",
    ]);
    assert_fails_cleanly(&packed, "stacks it as channels");
    // Other families model images only.
    let vae = deepgen(&["train", "vae", "--data", "ring", "--out", utf8(&run)]);
    assert_fails_cleanly(&vae, "--data ring is a 2-D point set");
    assert!(!run.exists(), "a refused run leaves no directory");
}

/// Found while fuzzing `config.toml` (issue 18): epochs × batches per epoch
/// overflowed `usize` in `train`, a panic in a debug build ("attempt to
/// multiply with overflow") and a wrapped step count for the learning-rate
/// schedule in a release one. It is a clean error, before anything is written.
#[test]
fn epochs_beyond_counting_are_a_clean_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    let output = deepgen(&[
        "train",
        "gan",
        "--data",
        "ring",
        "--out",
        utf8(&run),
        "--epochs",
        "18446744073709551615",
        "--batch-size",
        "2000",
        "--g-hidden",
        "16",
        "--d-hidden",
        "16",
        "--maxout",
        "2",
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert_fails_cleanly(&output, "more optimizer steps than can be counted");
    assert!(!run.exists(), "a refused run leaves no directory");
}

#[test]
fn a_two_dimensional_run_trains_samples_and_evaluates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("ring");
    let output = train_ring(&run, &["--pack", "2", "--pack-input", "per-sample", "--cosine"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    for line in [
        "network = \"mlp\"",
        "pack = 2",
        "pack_input = \"per-sample\"",
        "cosine = true",
        "beta1 = 0.8",
        "data = \"ring\"",
    ] {
        assert!(config.contains(line), "`{line}` not in {config}");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    let header = metrics.lines().next().unwrap_or_default();
    for column in [
        "d_loss",
        "g_loss",
        "d_real",
        "d_fake",
        "g_grad_norm",
        "modes",
        "high_quality",
        "reverse_kl",
        "mmd2",
    ] {
        assert!(header.split(',').any(|c| c == column), "{column} not in {header}");
    }
    assert!(run.join("samples_epoch_01.png").is_file());

    let png = dir.path().join("points.png");
    let sample = deepgen(&[
        "sample",
        "gan",
        "--checkpoint",
        utf8(&run),
        "--n",
        "500",
        "--out",
        utf8(&png),
    ]);
    assert!(sample.status.success(), "{}", text(&sample.stderr));
    assert!(png.is_file());
    let idx = dir.path().join("points.idx");
    let refused = deepgen(&[
        "sample",
        "gan",
        "--checkpoint",
        utf8(&run),
        "--out",
        utf8(&png),
        "--idx",
        utf8(&idx),
    ]);
    assert_fails_cleanly(&refused, "2-D points");
    assert!(!idx.exists());

    let eval = deepgen(&["eval", "gan", "--checkpoint", utf8(&run), "--device", "cpu"]);
    let stdout = text(&eval.stdout);
    assert!(eval.status.success(), "{}", text(&eval.stderr));
    assert!(
        stdout.contains("modes") && stdout.contains("mmd2") && stdout.contains("against ring"),
        "{stdout}"
    );
    let classifier = deepgen(&[
        "eval",
        "gan",
        "--checkpoint",
        utf8(&run),
        "--classifier",
        "runs/cnn-mnist",
    ]);
    assert_fails_cleanly(&classifier, "2-D points");
    let vae = deepgen(&["eval", "vae", "--checkpoint", utf8(&run), "--device", "cpu"]);
    assert_fails_cleanly(&vae, "not a `vae`");
}

#[test]
fn a_dcgan_run_writes_images_that_read_back_as_idx() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fake_mnist(dir.path(), 64, 16);
    let run = dir.path().join("dcgan");
    let output = deepgen(&[
        "train",
        "gan",
        "--data-dir",
        utf8(dir.path()),
        "--out",
        utf8(&run),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--latent",
        "8",
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(run.join("samples_epoch_01.png").is_file());
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    assert!(
        config.contains("network = \"dcgan\"") && config.contains("beta1 = 0.5"),
        "{config}"
    );
    let idx = dir.path().join("samples.idx");
    let png = dir.path().join("samples.png");
    let sample = deepgen(&[
        "sample",
        "gan",
        "--checkpoint",
        utf8(&run),
        "--n",
        "20",
        "--out",
        utf8(&png),
        "--idx",
        utf8(&idx),
    ]);
    assert!(sample.status.success(), "{}", text(&sample.stderr));
    let images = deepgen_data::load_images(&idx).expect("IDX reads back");
    assert_eq!(images.dims(), &[20, 784]);
}
