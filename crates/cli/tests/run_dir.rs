//! A run directory belongs to one run: a second process is refused while
//! the first holds it, and a new run does not overwrite files it did not
//! write (issue 18's first two findings). The runs are tiny score models on
//! the 2-D mixture, which needs no data files.

mod common;

use common::{assert_fails_cleanly, deepgen, text, utf8, write_fake_mnist};
use std::path::Path;
use std::process::Output;

/// A tiny score run on the mixture into `run` for `epochs` epochs.
fn args<'a>(run: &'a Path, epochs: &'static str) -> Vec<&'a str> {
    vec![
        "train",
        "score",
        "--data",
        "mixture",
        "--out",
        utf8(run),
        "--epochs",
        epochs,
        "--batch-size",
        "5000",
        "--hidden",
        "8",
        "--sampler-steps",
        "2",
        "--device",
        "cpu",
        "--quiet",
    ]
}

fn train(run: &Path) -> Output {
    deepgen(&args(run, "1"))
}

#[test]
fn a_locked_run_directory_is_refused_and_free_again_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("mkdir");
    let held = deepgen_core::RunLock::acquire(&run).expect("lock");
    assert_fails_cleanly(&train(&run), "in use by another deepgen process");
    assert!(!run.join("config.toml").exists(), "the refused run wrote nothing");
    drop(held);
    let output = train(&run);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(run.join("checkpoint.safetensors").is_file());
}

#[test]
fn a_new_run_does_not_overwrite_files_it_did_not_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("mine");
    std::fs::create_dir(&run).expect("mkdir");
    std::fs::write(run.join("config.toml"), "my own notes\n").expect("write");
    std::fs::write(run.join("metrics.csv"), "a,b\n1,2\n").expect("write");
    assert_fails_cleanly(&train(&run), "already holds files (config.toml, metrics.csv)");
    assert_eq!(
        std::fs::read_to_string(run.join("config.toml")).expect("read"),
        "my own notes\n"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.csv")).expect("read"),
        "a,b\n1,2\n"
    );
}

/// Ctrl-C (SIGINT) during training stops at a step boundary with status
/// 130, names the epoch whose checkpoint is kept and prints the command that
/// resumes — which then works.
#[test]
fn ctrl_c_stops_at_a_step_boundary_and_says_how_to_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    let args = args(&run, "100000");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_deepgen"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn deepgen");
    let started = std::time::Instant::now();
    while !run.join("checkpoint.safetensors").exists() {
        assert!(started.elapsed().as_secs() < 120, "no checkpoint after two minutes");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(signalled.success());
    let output = child.wait_with_output().expect("wait");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted in epoch") && stderr.contains("is kept"),
        "{stderr}"
    );
    let hint = stderr
        .lines()
        .find(|l| l.starts_with("resume with: deepgen train score"))
        .expect("a resume line");
    assert!(hint.ends_with("--resume"), "{hint}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The resumed run continues from the kept checkpoint (here to an end that is already reached).
    let mut resumed = args.clone();
    resumed[7] = "1";
    resumed.push("--resume");
    let again = deepgen(&resumed);
    assert!(again.status.success(), "{}", text(&again.stderr));
}

/// `--resume` with another data set, batch size or learning rate is refused
/// with both values; more epochs are fine.
#[test]
fn resume_refuses_other_data_batch_size_and_learning_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    assert!(train(&run).status.success());
    // Everything else comes from the run's own config.toml.
    let resume = |extra: &[&str]| {
        let mut a = vec![
            "train",
            "score",
            "--out",
            utf8(&run),
            "--epochs",
            "2",
            "--resume",
            "--quiet",
        ];
        a.extend(extra);
        deepgen(&a)
    };
    assert_fails_cleanly(&resume(&["--data", "ring"]), "data was mixture, now ring");
    assert_fails_cleanly(&resume(&["--lr", "0.01"]), "learning rate was 0.001, now 0.01");
    assert_fails_cleanly(&resume(&["--batch-size", "100"]), "batch size was 5000, now 100");
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    assert!(
        config.contains("data = \"mixture\"") && config.contains("epochs = 1"),
        "{config}"
    );
    let more = resume(&[]);
    assert!(more.status.success(), "{}", text(&more.stderr));
    // More epochs is a change a run may make; it is recorded, not silent.
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    assert!(config.contains("history = [\"epochs 1 → 2 (--resume)\"]"), "{config}");
    // A new learning rate only with --change-lr, and then on the record.
    let mut again = args(&run, "3");
    again.extend(["--resume", "--lr", "0.0005", "--change-lr"]);
    let changed = deepgen(&again);
    assert!(changed.status.success(), "{}", text(&changed.stderr));
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    assert!(
        config.contains("\"epochs 2 → 3 (--resume)\", \"lr 0.001 → 0.0005 (--resume --change-lr)\"")
            && config.contains("lr = 0.0005"),
        "{config}"
    );
}

/// Other files of the same data set (issue 18: epochs 1–3 on one set, the
/// 4th on another, silently) are refused by the checksum `config.toml`
/// records, with both values: on `--resume`, and on a run repeated from the
/// file. The recorded files resume.
#[test]
fn other_data_files_are_refused_by_their_checksum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, other, run) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("run"));
    for (data, n_train) in [(&first, 40), (&other, 50)] {
        std::fs::create_dir_all(data).expect("mkdir");
        write_fake_mnist(data, n_train, 20);
    }
    let vae = |data: &Path, out: &Path, extra: &[&str]| {
        let mut a = vec!["train", "vae", "--data-dir", utf8(data), "--out", utf8(out), "--quiet"];
        a.extend([
            "--batch-size",
            "20",
            "--hidden",
            "8",
            "--latent",
            "2",
            "--device",
            "cpu",
        ]);
        a.extend(extra);
        deepgen(&a)
    };
    let trained = vae(&first, &run, &["--epochs", "1"]);
    assert!(trained.status.success(), "{}", text(&trained.stderr));
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    let recorded = config
        .lines()
        .find_map(|l| l.strip_prefix("data_checksum = \"fnv1a64:"))
        .unwrap_or_else(|| panic!("no data_checksum in {config}"));

    let resumed = vae(&other, &run, &["--epochs", "2", "--resume"]);
    assert_fails_cleanly(&resumed, &format!("data_checksum was fnv1a64:{}", &recorded[..16]));
    assert!(text(&resumed.stderr).contains("a run resumes on the data it began with"));
    let config_path = run.join("config.toml");
    let repeated = deepgen(&[
        "train",
        "vae",
        "--config",
        utf8(&config_path),
        "--data-dir",
        utf8(&other),
        "--out",
        utf8(&dir.path().join("again")),
        "--quiet",
    ]);
    assert_fails_cleanly(&repeated, "delete data_checksum from the file");
    assert_eq!(
        std::fs::read_to_string(run.join("config.toml")).expect("config.toml"),
        config
    );
    let same = vae(&first, &run, &["--epochs", "2", "--resume"]);
    assert!(same.status.success(), "{}", text(&same.stderr));
}

/// Model sizes beyond the machine (issue 18: `--hidden` at u64::MAX panicked
/// with "capacity overflow", at 1e12 the process aborted) are refused
/// before any allocation, naming the variable: exit 1, no panic.
#[test]
fn impossible_model_sizes_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (hidden, needle) in [
        ("18446744073709551615", "more elements than memory can address"),
        ("1000000000000", "GB of memory available"),
    ] {
        let run = dir.path().join(hidden);
        let output = deepgen(&[
            "train",
            "score",
            "--data",
            "mixture",
            "--hidden",
            hidden,
            "--out",
            utf8(&run),
            "--quiet",
        ]);
        assert_fails_cleanly(&output, needle);
        assert!(
            text(&output.stderr).contains("`score.hidden.0.weight`"),
            "{}",
            text(&output.stderr)
        );
    }
}
