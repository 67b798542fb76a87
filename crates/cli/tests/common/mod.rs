//! What the end-to-end tests of the `deepgen` binary share: running it,
//! checking how it fails, and a tiny synthetic data set in MNIST's file
//! format (so that no test needs a download). Each test file uses some of
//! them, hence the allowance for the others.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the built `deepgen` with `args` and waits for it.
pub fn deepgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deepgen"))
        .args(args)
        .output()
        .expect("the deepgen binary runs")
}

/// A temporary path as the `&str` an argument list takes.
pub fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Captured output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A failure with exit status `code`, `error: …` naming `needle` on stderr,
/// and no panic.
fn assert_fails_with(output: &Output, code: i32, needle: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A failure of the command: status 1 and its `error: …` naming `needle`.
pub fn assert_fails_cleanly(output: &Output, needle: &str) {
    assert_fails_with(output, 1, needle);
}

/// A flag clap rejects: status 2 and clap's `error: invalid value …` (or
/// another usage error) naming `needle`.
pub fn assert_flag_rejected(output: &Output, needle: &str) {
    assert_fails_with(output, 2, needle);
}

/// Writes the four IDX files of an MNIST-format data set to `dir`: image `i`
/// has label `i % 10` and a bright band on rows `2·label .. 2·label + 4`.
pub fn write_fake_mnist(dir: &Path, n_train: usize, n_test: usize) {
    let write = |name: &str, magic: u32, dims: &[u32], data: &[u8]| {
        let mut bytes = magic.to_be_bytes().to_vec();
        for d in dims {
            bytes.extend(d.to_be_bytes());
        }
        bytes.extend(data);
        std::fs::write(dir.join(name), bytes).expect("write IDX");
    };
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let mut pixels = vec![0u8; n * 784];
        for (i, &label) in labels.iter().enumerate() {
            for row in 2 * label as usize..2 * label as usize + 4 {
                for col in 4..24 {
                    pixels[i * 784 + row * 28 + col] = 255;
                }
            }
        }
        write(
            &format!("{prefix}-images-idx3-ubyte"),
            0x803,
            &[n as u32, 28, 28],
            &pixels,
        );
        write(&format!("{prefix}-labels-idx1-ubyte"), 0x801, &[n as u32], &labels);
    }
}
