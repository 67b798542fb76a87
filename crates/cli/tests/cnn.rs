//! End-to-end tests of `deepgen cnn summary`, `deepgen train cnn` and
//! `deepgen eval cnn`, running the built binary on a tiny synthetic data set
//! in MNIST's file format (so they need no download).

mod common;

use common::{assert_fails_cleanly, assert_flag_rejected, deepgen, text, utf8, write_fake_mnist};

const SEED_SPEC: &str = "INPUT-128x128x3 CONV-9-32 POOL-2 CONV-5-64 POOL-2 CONV-5-64 POOL-2 FLATTEN FC-3";
/// Small enough to train in a second: 4×4 average pooling, then 10 logits.
const TINY_SPEC: &str = "INPUT-28x28x1 AVGPOOL-4 FLATTEN FC-10";

#[test]
fn summary_prints_seed_000s_table() {
    let output = deepgen(&["cnn", "summary", SEED_SPEC]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    // The library's tests pin the table's text (deepgen-cnn's
    // `seed_table_prints_in_the_seed_layout`); here: the CLI prints exactly
    // that table, ending with the seed's total.
    let table = deepgen_cnn::Spec::parse(SEED_SPEC)
        .and_then(|spec| spec.table())
        .expect("the seed spec has a table");
    let stdout = text(&output.stdout);
    assert_eq!(stdout, format!("{table}\n"));
    assert!(
        stdout.ends_with("\nParameters in all: 189,187 (weights 189,024 + biases 163)\n"),
        "{stdout}"
    );
}

#[test]
fn bad_specs_fail_with_the_token_and_its_position() {
    let output = deepgen(&["cnn", "summary", "INPUT-28x28x1 CONV-5-32 POOOL-2 FLATTEN FC-10"]);
    assert_fails_cleanly(&output, "token 3 `POOOL-2` (at character 25): unknown layer");
    assert!(text(&output.stderr).contains("\n                          ^^^^^^^\n"));
    let output = deepgen(&["cnn", "summary", "INPUT-8x8x1 FLATTEN CONV-3-4"]);
    assert_fails_cleanly(&output, "layer 3 `CONV-3-4` does not fit");
    assert_fails_cleanly(&deepgen(&["cnn", "summary", ""]), "the spec is empty");
    // A flag clap rejects: status 2 and clap's message, still no panic.
    assert_flag_rejected(&deepgen(&["train", "cnn", "--batch-size", "0"]), "--batch-size");
}

#[test]
fn missing_data_says_how_to_fetch_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("nowhere");
    let out = dir.path().join("run");
    let output = deepgen(&["train", "cnn", "--data-dir", utf8(&data), "--out", utf8(&out)]);
    assert_fails_cleanly(&output, "cargo xtask fetch-mnist");
    assert!(!out.exists(), "a failed start leaves no run directory");
}

#[test]
fn train_resume_and_eval_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fake_mnist(dir.path(), 320, 100);
    let data = utf8(dir.path());
    let run = dir.path().join("run");
    let run_str = utf8(&run);
    // `deepgen train cnn` on the fake data into the run directory, with
    // `extra` flags (the spec, --resume).
    let train = |epochs: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "cnn",
            "--data-dir",
            data,
            "--out",
            run_str,
            "--epochs",
            epochs,
            "--batch-size",
            "32",
            "--lr",
            "0.01",
            "--device",
            "cpu",
        ];
        args.extend(extra);
        deepgen(&args)
    };

    let output = train("2", &["--spec", TINY_SPEC]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("epoch 1/2") && stdout.contains("epoch 2/2"), "{stdout}");
    assert!(stdout.contains("test_accuracy"), "{stdout}");

    // The run directory: metrics with a header and one row per epoch, the
    // checkpoint, the spec and the config.
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    let lines: Vec<&str> = metrics.lines().collect();
    assert_eq!(
        lines[0],
        "epoch,train_loss,train_accuracy,test_loss,test_accuracy,train_seconds"
    );
    assert_eq!(lines.len(), 3, "{metrics}");
    assert!(run.join("checkpoint.safetensors").is_file());
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    assert!(config.contains(&format!("spec = \"{TINY_SPEC}\"")), "{config}");
    assert!(config.contains("lr = 0.01") && config.contains("seed = 0"), "{config}");

    // The bands are linearly separable: two epochs get well above chance (0.1).
    let accuracy: f64 = lines[2]
        .split(',')
        .nth(4)
        .and_then(|a| a.parse().ok())
        .expect("accuracy");
    assert!(accuracy > 0.5, "{metrics}");

    // Training again into the same directory needs --resume.
    assert_fails_cleanly(&train("3", &["--spec", TINY_SPEC]), "--resume");
    // Resuming with another spec is refused.
    let output = train("3", &["--spec", "INPUT-784 FC-10", "--resume"]);
    assert_fails_cleanly(&output, "use the same options to resume");
    // Resuming continues at epoch 3 without --spec.
    let output = train("3", &["--resume"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains("epoch 3/3") && !stdout.contains("epoch 2/3"),
        "{stdout}"
    );
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    assert_eq!(metrics.lines().count(), 4, "{metrics}");

    // The trained run evaluates.
    let output = deepgen(&["eval", "cnn", "--run", run_str, "--data-dir", data, "--device", "cpu"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains("test_accuracy") && stdout.contains("predicted classes: 0: "),
        "{stdout}"
    );

    // Evaluating something that is not a CNN run is a clear error.
    let output = deepgen(&["eval", "cnn", "--run", data, "--data-dir", data, "--device", "cpu"]);
    assert_fails_cleanly(&output, "does not exist");
}
