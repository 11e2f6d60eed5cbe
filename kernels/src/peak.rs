//! The FMA peak of each SIMD level, measured: a loop of independent fused multiply-adds on register-resident
//! vectors, with enough accumulators to cover the FMA latency on every current x86 core. `benches/gemm.rs` times it
//! beside the GEMM microkernels, so that their share of the peak is a ratio of two measurements on the same
//! machine in the same run (inside a VM the clock cannot be read, so a peak from the data sheet would be a guess).

use crate::simd::SimdLevel;

/// Floating-point operations [`fma_peak_probe`] performs for `rounds` rounds on `level`.
pub fn probe_flops(level: SimdLevel, rounds: usize) -> u64 {
    let per_round: u64 = match level {
        // 16 accumulators of 16 lanes, 2 flop per lane.
        SimdLevel::Avx512 => 16 * 16 * 2,
        // 12 accumulators of 8 lanes.
        SimdLevel::Avx2 => 12 * 8 * 2,
        // 8 accumulators, one flop pair each (multiply and add as the compiler schedules them).
        _ => 8 * 2,
    };
    per_round * rounds as u64
}

/// Runs `rounds` rounds of independent FMAs on `level` (which must be supported; the portable level runs plain
/// scalar multiply-adds) and returns a value depending on all of them, so that nothing is optimized away.
pub fn fma_peak_probe(level: SimdLevel, rounds: usize, seed: f32) -> f32 {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the guard checked that this CPU runs AVX-512F.
        SimdLevel::Avx512 if level.supported() => unsafe { x86::avx512(rounds, seed) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the guard checked that this CPU runs AVX2 and FMA.
        SimdLevel::Avx2 if level.supported() => unsafe { x86::avx2(rounds, seed) },
        _ => portable(rounds, seed),
    }
}

fn portable(rounds: usize, seed: f32) -> f32 {
    let mut acc = [seed; 8];
    let (a, b) = (std::hint::black_box(0.999_999f32), std::hint::black_box(1e-7f32));
    for _ in 0..rounds {
        for v in &mut acc {
            *v = *v * a + b;
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) fn avx512(rounds: usize, seed: f32) -> f32 {
        let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm512_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm512_set1_ps(seed); 16];
        for _ in 0..rounds {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for v in acc {
            sum = _mm512_add_ps(sum, v);
        }
        _mm512_reduce_add_ps(sum)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn avx2(rounds: usize, seed: f32) -> f32 {
        let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm256_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm256_set1_ps(seed); 12];
        for _ in 0..rounds {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut sum = _mm256_setzero_ps();
        for v in acc {
            sum = _mm256_add_ps(sum, v);
        }
        let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
        let pairs = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps::<1>(pairs, pairs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::supported_levels;

    #[test]
    fn every_level_computes_the_same_recurrence() {
        // x ← x·a + b from x = 1, 100 times, in every accumulator: the levels differ only in how many run at once.
        for level in supported_levels() {
            let lanes = (probe_flops(level, 1) / 2) as f32;
            let per_lane = fma_peak_probe(level, 100, 1.0) / lanes;
            assert!((per_lane - 0.9999).abs() < 1e-3, "{level}: {per_lane}");
        }
    }
}
