//! 8-lane (AVX2) helpers of the channel-blocked kernels: an 8 × 8 transpose in registers, and the store of 8 pixels'
//! accumulators back into 8 channel rows.

use crate::packed_gemm::Clamp;
use crate::simd::SimdLevel;
use std::arch::x86_64::*;

/// f32 lanes per vector, and channels per block: 8 (256 bits).
pub(crate) const LANES: usize = 8;

/// Whether the 8-lane kernels run at `level` on this CPU: the SIMD levels, given AVX2 and FMA (what they use, which
/// a virtual machine may mask even where it reports AVX-512F).
pub(crate) fn runs_on(level: SimdLevel) -> bool {
    matches!(level, SimdLevel::Avx512 | SimdLevel::Avx2) && level.supported() && SimdLevel::Avx2.supported()
}

/// Whether 8-lane code at `level` may also use AVX-512VL's 32 vector registers (the AVX-512 level, with VL).
pub(crate) fn wide_registers(level: SimdLevel) -> bool {
    level == SimdLevel::Avx512 && level.supported() && is_x86_feature_detected!("avx512vl")
}

/// The lanes below `n` of an AVX2 mask.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn first_lanes(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Transposes 8 vectors of 8 lanes: `v[i][j] ← v[j][i]`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn transpose(v: &mut [__m256; 8]) {
    let mut t = [_mm256_setzero_ps(); 8];
    for p in 0..4 {
        t[2 * p] = _mm256_unpacklo_ps(v[2 * p], v[2 * p + 1]);
        t[2 * p + 1] = _mm256_unpackhi_ps(v[2 * p], v[2 * p + 1]);
    }
    let mut u = [_mm256_setzero_ps(); 8];
    for q in 0..2 {
        u[4 * q] = _mm256_shuffle_ps::<0x44>(t[4 * q], t[4 * q + 2]);
        u[4 * q + 1] = _mm256_shuffle_ps::<0xEE>(t[4 * q], t[4 * q + 2]);
        u[4 * q + 2] = _mm256_shuffle_ps::<0x44>(t[4 * q + 1], t[4 * q + 3]);
        u[4 * q + 3] = _mm256_shuffle_ps::<0xEE>(t[4 * q + 1], t[4 * q + 3]);
    }
    for m in 0..4 {
        v[m] = _mm256_permute2f128_ps::<0x20>(u[m], u[4 + m]);
        v[4 + m] = _mm256_permute2f128_ps::<0x31>(u[m], u[4 + m]);
    }
}

/// Clamps `L` pixels' accumulators, transposes them to channels and stores each channel's first `n` at
/// `out + l·plane`.
///
/// # Safety
/// The CPU supports the target features; `out + l·plane .. + n` are writable for every lane `l`.
///
/// Inlined into the kernels' loops: as a call it took the accumulators through memory and cleared the registers'
/// upper halves on return, 7 % of a MobileNetV2 Grad-CAM pass on one thread.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn finish(acc: &mut [__m256; LANES], clamp: Clamp, out: *mut f32, plane: usize, n: usize) {
    if !clamp.is_none() {
        let (lo, hi) = (_mm256_set1_ps(clamp.lo), _mm256_set1_ps(clamp.hi));
        // `max(lo, v)` then `min(hi, v)` pass a NaN `v` through: `Clamp::apply_fast`.
        acc.iter_mut().for_each(|a| *a = _mm256_min_ps(hi, _mm256_max_ps(lo, *a)));
    }
    transpose(acc);
    for (l, &val) in acc.iter().enumerate() {
        // SAFETY: the caller's.
        let dst = unsafe { out.add(l * plane) };
        if n == LANES {
            // SAFETY: all `L` values are the caller's to write.
            unsafe { _mm256_storeu_ps(dst, val) };
        } else {
            // SAFETY: only the first n lanes are written, the caller's.
            unsafe { _mm256_maskstore_ps(dst, first_lanes(n), val) };
        }
    }
}
