//! The AVX2 + FMA microkernel: a 6 × 16 tile (12 accumulators in ymm registers).

use std::arch::x86_64::*;

microkernel! {
    /// See [`super::Tile::run_panels`].
    fn kernel_6x16, feature = "avx2,fma", mr = 6, lanes = 8,
    zero = _mm256_setzero_ps, load = _mm256_loadu_ps, store = _mm256_storeu_ps, splat = _mm256_set1_ps,
    add = _mm256_add_ps, fma = _mm256_fmadd_ps, min = _mm256_min_ps, max = _mm256_max_ps
}
