//! A run directory belongs to one run: a second process is refused while
//! the first holds it, and a new run does not overwrite files it did not
//! write (issue 18's first two findings). The runs are tiny score models on
//! the 2-D mixture, which needs no data files.

mod common;

use common::{assert_fails_cleanly, deepgen, text, utf8};
use std::path::Path;
use std::process::Output;

fn train(run: &Path) -> Output {
    deepgen(&[
        "train",
        "score",
        "--data",
        "mixture",
        "--out",
        utf8(run),
        "--epochs",
        "1",
        "--batch-size",
        "5000",
        "--hidden",
        "8",
        "--sampler-steps",
        "2",
        "--device",
        "cpu",
        "--quiet",
    ])
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
