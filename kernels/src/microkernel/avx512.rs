//! The AVX-512F microkernel: a 12 × 32 tile (24 accumulators in zmm registers).

use std::arch::x86_64::*;

/// The mask of the first `n ≤ 16` lanes.
///
/// # Safety
/// None needed (mask arithmetic); `unsafe` only to share the AVX2 variant's signature.
#[inline(always)]
pub(super) unsafe fn lane_mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// Lanes of `m` loaded from `p`, the others zero.
///
/// # Safety
/// AVX-512F is available; the lanes `m` selects are readable at `p` (the others are not accessed).
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn masked_load(p: *const f32, m: __mmask16) -> __m512 {
    // SAFETY: the contract above.
    unsafe { _mm512_maskz_loadu_ps(m, p) }
}

/// Stores the lanes of `v` that `m` selects at `p`.
///
/// # Safety
/// AVX-512F is available; the lanes `m` selects are writable at `p` (the others are not accessed).
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn masked_store(p: *mut f32, m: __mmask16, v: __m512) {
    // SAFETY: the contract above.
    unsafe { _mm512_mask_storeu_ps(p, m, v) }
}

microkernel! {
    /// See [`super::Tile::run_panels`].
    fn kernel_12x32, feature = "avx512f", mr = 12, lanes = 16,
    zero = _mm512_setzero_ps, load = _mm512_loadu_ps, store = _mm512_storeu_ps, splat = _mm512_set1_ps,
    add = _mm512_add_ps, fma = _mm512_fmadd_ps, min = _mm512_min_ps, max = _mm512_max_ps
}
