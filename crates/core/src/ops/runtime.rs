//! Process settings for CPU training: how memory is recycled and how many
//! threads Candle's element-wise ops use. Both are read once per process, so
//! a training program applies them at the top of `main` with
//! [`prepare_cpu_training`].
//!
//! **Freed memory.** glibc's `malloc` serves every allocation above its
//! mmap threshold (at most 32 MiB) with a fresh `mmap` and returns it with
//! `munmap` on free. One `[32, 32, 120, 120]` activation of the seed CNN is
//! 59 MB, and a training step allocates a few dozen tensors that size
//! (outputs, gradients, Candle's `zeros + add` gradient accumulation), so
//! every step faulted in and zeroed about 2 GB of new pages: 15–20 % of the
//! step in the kernel (`exc_page_fault`, `clear_page_erms`, memcg
//! accounting) on the profile. [`reuse_freed_memory`] turns that off for the
//! whole process: allocations come from the heap and freed memory stays
//! there for the next step, the way PyTorch's CPU caching allocator behaves.
//! The cost is that the process keeps its peak heap until it exits.
//!
//! **Element-wise threads.** Candle 0.11 runs element-wise ops on tensors of
//! 64 Ki elements or more on its own thread pool (`BarrierPool`, sized by
//! `CANDLE_NUM_THREADS`, else the core count), whose idle workers spin
//! 25,000 times before they sleep, while matrix products run on rayon's
//! pool. On two cores the spinning worker of one pool takes the core the
//! other pool's next job needs: the 784-400-20 VAE step took 95–100 ms with
//! both pools and 16–20 ms with `CANDLE_NUM_THREADS=1` on the same machine
//! (profile: 50 % of the samples in `BarrierGuard::drop` and the workers'
//! spin loop). With one element-wise thread Candle runs those ops on the
//! calling thread; gemm and deepgen's kernels keep rayon's threads.
//!
//! **Rayon's threads.** Without `RAYON_NUM_THREADS`, Candle 0.11 works out
//! the thread count of every matrix product it runs by reading
//! `/proc/cpuinfo` (`num_cpus::get_physical`): a UNet training step, whose
//! upsampling gradient is 64 grouped convolutions, opened it 16,000 times
//! and spent 10 % of the step formatting that file in the kernel. Setting
//! the variable to rayon's own default (the available parallelism) leaves
//! the thread count as it was and skips the file.

/// Makes glibc's `malloc` serve large allocations from the heap and keep
/// freed memory for reuse (`mallopt(M_MMAP_MAX, 0)`, a 2 GiB trim threshold
/// and a 64 MiB top pad). Call it once at the start of a training program,
/// before the first tensor is allocated ([`prepare_cpu_training`] does).
///
/// Returns `true` when the settings were applied, `false` where the C
/// library is not glibc (nothing is changed there).
pub fn reuse_freed_memory() -> bool {
    imp::reuse_freed_memory()
}

/// Applies the settings of this module for a CPU training run: Candle's
/// element-wise ops on the calling thread (`CANDLE_NUM_THREADS=1`, unless the
/// variable is already set, so a user's choice wins), `RAYON_NUM_THREADS`
/// set to the available parallelism (unless set), [`flush_subnormals`]
/// and [`reuse_freed_memory`]. Returns what [`reuse_freed_memory`] returns.
///
/// Candle reads `CANDLE_NUM_THREADS` once, at its first element-wise op on a
/// large tensor, so this must run before any tensor work.
///
/// # Safety
/// It writes the process environment (`std::env::set_var`), which is only
/// sound while no other thread reads or writes it: call it first thing in
/// `main`, before spawning threads or running tensor ops.
pub unsafe fn prepare_cpu_training() -> bool {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: the caller guarantees that no other thread touches the
        // environment concurrently (see `# Safety`).
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: as above.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    flush_subnormals();
    reuse_freed_memory()
}

/// Makes this thread's SSE/AVX arithmetic treat subnormal floats as zero
/// (MXCSR's flush-to-zero and denormals-are-zero bits, x86-64 only); threads
/// created afterwards inherit the setting (`pthread_create` copies the
/// floating-point environment), so calling it first in `main` covers rayon's
/// and Candle's pools.
///
/// Adam's first moment decays by β₁ = 0.9 per step where a weight's gradient
/// vanishes (MNIST's border pixels), and reaches the subnormal range
/// (< 1.2e-38 in f32) after about 800 steps; every operation on a subnormal
/// then takes ~100 cycles. The VAE's epochs slowed from 6 s to 11–15 s from
/// the third epoch on. Values below 1.2e-38 never matter to training.
/// Returns whether the setting was applied.
pub fn flush_subnormals() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        const FLUSH_TO_ZERO: u32 = 1 << 15;
        const DENORMALS_ARE_ZERO: u32 = 1 << 6;
        let mut csr: u32 = 0;
        // SAFETY: `stmxcsr`/`ldmxcsr` read and write this thread's SSE
        // control register; setting FTZ and DAZ only changes how subnormal
        // values round, and both bits exist on every x86-64 CPU with SSE3.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
            csr |= FLUSH_TO_ZERO | DENORMALS_ARE_ZERO;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack));
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::os::raw::c_int;

    // <malloc.h>
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_TOP_PAD: c_int = -2;
    const M_MMAP_MAX: c_int = -4;

    unsafe extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }

    pub(super) fn reuse_freed_memory() -> bool {
        let set = |param, value| {
            // SAFETY: `mallopt` only changes glibc's allocator parameters; it
            // takes the allocator's own lock, so it is safe to call from any
            // thread at any time, and the values are within its documented
            // ranges (0 mmaps, thresholds up to `INT_MAX`).
            unsafe { mallopt(param, value) == 1 }
        };
        set(M_MMAP_MAX, 0) & set(M_TRIM_THRESHOLD, c_int::MAX) & set(M_TOP_PAD, 64 << 20)
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn reuse_freed_memory() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subnormals_flush_to_zero_in_this_thread_and_its_children() {
        let tiny = std::hint::black_box(1e-30f32);
        assert!(
            (tiny * 1e-10).is_subnormal(),
            "without the setting the product is subnormal"
        );
        let applied = std::thread::spawn(|| {
            let applied = super::flush_subnormals();
            let child = std::thread::spawn(|| std::hint::black_box(1e-30f32) * 1e-10)
                .join()
                .unwrap();
            (applied, std::hint::black_box(1e-30f32) * 1e-10, child)
        })
        .join()
        .unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(applied, (true, 0.0, 0.0));
        }
    }

    #[test]
    fn applies_on_glibc_and_allocation_still_works() {
        let applied = super::reuse_freed_memory();
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
        // A large allocation (above the default mmap threshold) is served and freed.
        let big = vec![1u8; 64 << 20];
        assert_eq!(big.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
    }
}
