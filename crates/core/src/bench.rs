//! The benchmarks' side of `cargo xtask bench`: every bench binary prints
//! one line per figure, `BENCH <name> <seconds> <pytorch_seconds|->`, which
//! xtask collects into `target/bench.md`. One definition of the line keeps
//! the benches and xtask's parser in step.

use std::time::Instant;

/// Prints the `BENCH` line of one figure: `seconds` for deepgen and, where
/// one exists, PyTorch's reference for the same work.
pub fn report(name: &str, seconds: f64, pytorch: Option<f64>) {
    match pytorch {
        Some(reference) => println!("BENCH {name} {seconds:.4} {reference:.3}"),
        None => println!("BENCH {name} {seconds:.4} -"),
    }
}

/// The median wall time in seconds of `runs` calls of `f`, after
/// `warm_ups` untimed calls (caches, allocator and thread pools warm).
///
/// # Errors
/// The first error `f` returns.
pub fn median_seconds<E>(warm_ups: usize, runs: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    for _ in 0..warm_ups {
        f()?;
    }
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_is_the_middle_run_and_errors_pass_through() {
        let mut calls = 0;
        let median = super::median_seconds(2, 3, || {
            calls += 1;
            Ok::<_, ()>(())
        });
        assert!(median.is_ok_and(|s| s >= 0.0));
        assert_eq!(calls, 5);
        assert_eq!(super::median_seconds(0, 3, || Err("broken")), Err("broken"));
    }
}
