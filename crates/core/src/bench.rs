//! The benchmarks' side of `cargo xtask bench`: every bench binary prints
//! one line per figure, `BENCH <name> <seconds> <pytorch_seconds|->`, which
//! xtask collects into `target/bench.md`. One definition of the line keeps
//! the benches and xtask's parser in step.

use std::time::Instant;

/// The workloads a bench binary runs: those whose name contains its first
/// free argument (`cargo bench --bench NAME -- FILTER`; cargo itself passes
/// `--bench`), or all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workloads {
    filter: Option<String>,
}

impl Workloads {
    /// The selection the program's arguments make.
    pub fn from_args() -> Self {
        Self::new(std::env::args().skip(1))
    }

    /// The selection `args` (the arguments after the program's name) make.
    pub fn new(args: impl IntoIterator<Item = String>) -> Self {
        Self {
            filter: args.into_iter().find(|a| !a.starts_with('-')),
        }
    }

    /// Whether the workload `name` runs.
    pub fn selected(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }
}

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
    fn the_first_free_argument_selects_workloads() {
        let args = |a: &[&str]| super::Workloads::new(a.iter().map(|s| s.to_string()));
        let some = args(&["--bench", "step"]);
        assert!(some.selected("dcgan_step_b64") && !some.selected("unet_forward"));
        assert!(args(&["--bench"]).selected("anything"));
    }

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
