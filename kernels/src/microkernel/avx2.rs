//! The AVX2 + FMA microkernel: a 6 × 16 tile (12 accumulators in ymm registers).

use std::arch::x86_64::*;

/// The mask of the first `n ≤ 8` lanes (all bits set in a selected lane).
///
/// # Safety
/// AVX2 is available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn lane_mask(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Lanes of `m` loaded from `p`, the others zero.
///
/// # Safety
/// AVX2 is available; the lanes `m` selects are readable at `p` (the others are not accessed).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn masked_load(p: *const f32, m: __m256i) -> __m256 {
    // SAFETY: the contract above.
    unsafe { _mm256_maskload_ps(p, m) }
}

/// Stores the lanes of `v` that `m` selects at `p`.
///
/// # Safety
/// AVX2 is available; the lanes `m` selects are writable at `p` (the others are not accessed).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn masked_store(p: *mut f32, m: __m256i, v: __m256) {
    // SAFETY: the contract above.
    unsafe { _mm256_maskstore_ps(p, m, v) }
}

microkernel! {
    /// See [`super::Tile::run_panels`].
    fn kernel_6x16, feature = "avx2,fma", mr = 6, lanes = 8,
    zero = _mm256_setzero_ps, load = _mm256_loadu_ps, store = _mm256_storeu_ps, splat = _mm256_set1_ps,
    add = _mm256_add_ps, fma = _mm256_fmadd_ps, min = _mm256_min_ps, max = _mm256_max_ps
}
