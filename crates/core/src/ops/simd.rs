//! Runtime choice of the vector instructions a kernel is compiled for.
//!
//! A crate built for the default `x86_64` target may use SSE2 only: four
//! f32 lanes, and many loops left scalar. gemm picks AVX-512 at run time,
//! but the kernels here (group norm, batch norm, im2col/col2im, the
//! element-wise sweeps) were SSE2 code: the group norm's backward alone was
//! 15 % of the UNet's training step. [`vectorized`] runs a closure compiled
//! again inside a function with AVX-512 (or AVX2 + FMA) enabled, chosen by
//! the CPU the program runs on, so one binary stays portable:
//!
//! ```text
//! vectorized(#[inline(always)] || kernel(...))
//! ```
//!
//! The closure must be `#[inline(always)]` (and whatever it calls inlined
//! too, or generic) so that its body is compiled into each wrapper; work it
//! hands to rayon runs in other functions, so the call goes inside each
//! task. Results do not depend on the instruction set: Rust does not fuse
//! `a·b + c` on its own or reassociate float sums, so the wider vectors
//! compute the same operations in the same order.

/// The widest of AVX-512F and AVX2 + FMA this CPU has, detected once.
#[cfg(target_arch = "x86_64")]
fn level() -> u8 {
    use std::sync::atomic::{AtomicU8, Ordering};
    // 0: not yet detected, 1: neither, 2: AVX2 + FMA, 3: AVX-512F too.
    static LEVEL: AtomicU8 = AtomicU8::new(0);
    match LEVEL.load(Ordering::Relaxed) {
        0 => {
            let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
            let level = match (avx2, std::arch::is_x86_feature_detected!("avx512f")) {
                (true, true) => 3,
                (true, false) => 2,
                _ => 1,
            };
            LEVEL.store(level, Ordering::Relaxed);
            level
        }
        level => level,
    }
}

/// `f()`, compiled for the widest vector instructions of this CPU (see the
/// module documentation).
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: `level` found these features on the running CPU.
        3 => return unsafe { avx512(f) },
        // SAFETY: as above.
        2 => return unsafe { avx2(f) },
        _ => {}
    }
    f()
}

/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same sweep with and without the wide instructions gives the same
    /// bits (no fused multiply-adds, no reassociated sums).
    #[test]
    fn wide_and_baseline_code_agree_bit_for_bit() {
        let x: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 13.0).collect();
        let sweep = |x: &[f32]| -> (Vec<f32>, f32) {
            let y: Vec<f32> = x.iter().map(|v| v * 1.7 + 0.3 / (1.0 + v * v)).collect();
            let mut lanes = [0.0f32; 8];
            for c in y.chunks_exact(8) {
                for (a, v) in lanes.iter_mut().zip(c) {
                    *a += v * v;
                }
            }
            (y, lanes.iter().sum())
        };
        let wide = vectorized(
            #[inline(always)]
            || sweep(&x),
        );
        assert_eq!(wide, sweep(&x));
    }
}
