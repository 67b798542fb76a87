//! A branch-free `e^d` for `d ≤ 0` that the compiler vectorises: Cody–Waite
//! range reduction `d = k ln 2 + r`, a Taylor polynomial for `e^r`, and
//! `2^k` built from the exponent bits. Degree 7 keeps the relative error
//! within 1e-8 (below `f32`'s rounding, 6e-8); degree 12 is accurate to
//! `f64` rounding. Used by the logsumexp kernels and the Bernoulli
//! likelihood, where libm's scalar `exp` was the largest cost.

/// Below `e^{-708}` the result is 0: `2^k` stays a normal number, and in a
/// sum of at least 1 (logsumexp) or `1 + e` (the Bernoulli likelihood) such a
/// term cannot change the result.
const MIN_EXPONENT: f64 = -708.0;

/// Whether kernels compiled for AVX2 + FMA can run on this CPU (the
/// detection is cached by `std`); the kernels around [`exp_nonpositive`]
/// pick their `FUSED` copy with it.
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `a · b + c`, fused (one rounding) when `FUSED`.
#[inline(always)]
fn mul_add<const FUSED: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FUSED { a.mul_add(b, c) } else { a * b + c }
}

/// `e^d` for `d ≤ 0` (including `-inf`), branch-free so it vectorises.
///
/// `d = k ln 2 + r` with `k = round(d / ln 2)` and `|r| ≤ ln 2 / 2`;
/// `e^d = 2^k · e^r` with `e^r` from its Taylor polynomial of `DEGREE`.
/// Arguments below [`MIN_EXPONENT`] give 0.
#[inline(always)]
pub(crate) fn exp_nonpositive<const DEGREE: usize, const FUSED: bool>(d: f64) -> f64 {
    // Adding 1.5·2^52 rounds to an integer (ties to even) and leaves that
    // integer, in two's complement, in the low mantissa bits.
    const ROUNDER: f64 = 6_755_399_441_055_744.0;
    // ln 2 split so that `k · LN2_HI` is exact for |k| < 2^11 (fdlibm).
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let clamped = if d < MIN_EXPONENT { MIN_EXPONENT } else { d };
    let shifted = mul_add::<FUSED>(clamped, std::f64::consts::LOG2_E, ROUNDER);
    let k = shifted - ROUNDER;
    let r = mul_add::<FUSED>(-k, LN2_HI, clamped);
    let r = mul_add::<FUSED>(-k, LN2_LO, r);
    // Horner: Σ_{i ≤ DEGREE} r^i / i!.
    let mut poly = INVERSE_FACTORIALS[DEGREE];
    let mut i = DEGREE;
    while i > 0 {
        i -= 1;
        poly = mul_add::<FUSED>(poly, r, INVERSE_FACTORIALS[i]);
    }
    let k_bits = shifted.to_bits().wrapping_sub(ROUNDER.to_bits());
    // k ∈ [-1022, 0], so k + 1023 ∈ [1, 1023] is a normal exponent field.
    let two_to_k = f64::from_bits(k_bits.wrapping_add(1023) << 52);
    let value = poly * two_to_k;
    if d < MIN_EXPONENT { 0.0 } else { value }
}

/// `1/i!` for `i = 0..=16`.
const INVERSE_FACTORIALS: [f64; 17] = {
    let mut table = [1.0; 17];
    let mut factorial = 1.0;
    let mut i = 1;
    while i < 17 {
        factorial *= i as f64;
        table[i] = 1.0 / factorial;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectorisable exponential against `f64::exp` over its whole range.
    #[test]
    fn exp_nonpositive_matches_std_exp() {
        let mut d = 0.0f64;
        while d > -707.0 {
            let exact = d.exp();
            for fast in [exp_nonpositive::<12, false>(d), exp_nonpositive::<12, true>(d)] {
                let rel = ((fast - exact) / exact).abs();
                assert!(rel < 4e-16, "d = {d}: {fast} vs {exact} (rel {rel:e})");
            }
            for rough in [exp_nonpositive::<7, false>(d), exp_nonpositive::<7, true>(d)] {
                let rel = ((rough - exact) / exact).abs();
                assert!(rel < 1e-8, "d = {d}: {rough} vs {exact} (rel {rel:e})");
            }
            d -= 0.0137;
        }
    }

    #[test]
    fn exp_nonpositive_limits() {
        for exp in [
            exp_nonpositive::<12, false>,
            exp_nonpositive::<12, true>,
            exp_nonpositive::<7, false>,
        ] {
            assert_eq!(exp(0.0), 1.0);
            assert_eq!(exp(f64::NEG_INFINITY), 0.0);
            assert_eq!(exp(-709.0), 0.0);
            assert_eq!(exp(-1e300), 0.0);
        }
    }
}
