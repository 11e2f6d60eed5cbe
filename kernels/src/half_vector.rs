//! Dot products and `axpy` that read 16-bit weights directly: each vector of 8 or 16 weights is widened in registers
//! (F16C / AVX-512 `vcvtph2ps` for f16, a 16-bit shift for bf16) and fed to the fused multiply-add, so a classifier
//! row streams from memory once, at half the bytes of f32, without a round trip through a widened buffer.
//!
//! Sums run in a fixed order for a given SIMD level (four vector accumulators, reduced in a fixed tree, then the
//! tail in order), so results are deterministic; the portable level is the plain scalar reference.

use crate::precision::HalfVec;
use crate::simd::{self, SimdLevel};
use half::{bf16, f16};

/// `Σ x_i · w[start + i]`.
///
/// # Panics
/// If `start + x.len()` exceeds `w`.
pub fn dot(w: &HalfVec, start: usize, x: &[f32]) -> f32 {
    let end = start + x.len();
    match w {
        HalfVec::F16(v) => dot_f16(&v[start..end], x, simd::level()),
        HalfVec::Bf16(v) => dot_bf16(&v[start..end], x, simd::level()),
    }
}

/// `y_i += a · w[start + i]`.
///
/// # Panics
/// If `start + y.len()` exceeds `w`.
pub fn axpy(a: f32, w: &HalfVec, start: usize, y: &mut [f32]) {
    let end = start + y.len();
    match w {
        HalfVec::F16(v) => axpy_f16(a, &v[start..end], y, simd::level()),
        HalfVec::Bf16(v) => axpy_bf16(a, &v[start..end], y, simd::level()),
    }
}

#[cfg(target_arch = "x86_64")]
fn has_f16c() -> bool {
    is_x86_feature_detected!("f16c")
}

fn dot_f16(w: &[f16], x: &[f32], level: SimdLevel) -> f32 {
    match level {
        // SAFETY: the level is supported (simd::level only returns such levels); avx512f implies the conversion.
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { x86::dot_f16_avx512(w, x) },
        // SAFETY: AVX2 + FMA per the level, F16C checked here.
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 if has_f16c() => unsafe { x86::dot_f16_avx2(w, x) },
        _ => w.iter().zip(x).fold(0.0, |acc, (h, &v)| acc + h.to_f32_const() * v),
    }
}

fn dot_bf16(w: &[bf16], x: &[f32], level: SimdLevel) -> f32 {
    match level {
        // SAFETY: as in dot_f16.
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { x86::dot_bf16_avx512(w, x) },
        // SAFETY: AVX2 + FMA per the level.
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => unsafe { x86::dot_bf16_avx2(w, x) },
        _ => w.iter().zip(x).fold(0.0, |acc, (h, &v)| acc + h.to_f32() * v),
    }
}

fn axpy_f16(a: f32, w: &[f16], y: &mut [f32], level: SimdLevel) {
    match level {
        // SAFETY: as in dot_f16.
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { x86::axpy_f16_avx512(a, w, y) },
        // SAFETY: as in dot_f16.
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 if has_f16c() => unsafe { x86::axpy_f16_avx2(a, w, y) },
        _ => y.iter_mut().zip(w).for_each(|(o, h)| *o += a * h.to_f32_const()),
    }
}

fn axpy_bf16(a: f32, w: &[bf16], y: &mut [f32], level: SimdLevel) {
    match level {
        // SAFETY: as in dot_f16.
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { x86::axpy_bf16_avx512(a, w, y) },
        // SAFETY: as in dot_bf16.
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => unsafe { x86::axpy_bf16_avx2(a, w, y) },
        _ => y.iter_mut().zip(w).for_each(|(o, h)| *o += a * h.to_f32()),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;
    use half::{bf16, f16};

    // Both `f16` and `bf16` are `repr(transparent)` over `u16`: their slices are read as 16-bit integers.

    /// Widens 16 f16 / bf16 values at `p`.
    #[inline(always)]
    unsafe fn wide16_f16(p: *const f16) -> __m512 {
        // SAFETY: the caller guarantees 16 readable values at `p`; unaligned loads.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }

    #[inline(always)]
    unsafe fn wide16_bf16(p: *const bf16) -> __m512 {
        // SAFETY: as above; bf16 → f32 is the 16 bits moved to the top.
        unsafe {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i))))
        }
    }

    #[inline(always)]
    unsafe fn wide8_f16(p: *const f16) -> __m256 {
        // SAFETY: the caller guarantees 8 readable values at `p`.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }

    #[inline(always)]
    unsafe fn wide8_bf16(p: *const bf16) -> __m256 {
        // SAFETY: as above.
        unsafe {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i))))
        }
    }

    macro_rules! dot512 {
        ($name:ident, $t:ty, $wide:ident) => {
            /// # Safety
            /// The CPU supports AVX-512F.
            #[target_feature(enable = "avx512f")]
            pub(super) unsafe fn $name(w: &[$t], x: &[f32]) -> f32 {
                let n = w.len().min(x.len());
                let (wp, xp) = (w.as_ptr(), x.as_ptr());
                // SAFETY: (for the whole block) every offset below is < n, so inside both slices.
                unsafe {
                    let mut acc = [_mm512_setzero_ps(); 4];
                    let mut i = 0;
                    while i + 64 <= n {
                        for (k, a) in acc.iter_mut().enumerate() {
                            let o = i + 16 * k;
                            *a = _mm512_fmadd_ps($wide(wp.add(o)), _mm512_loadu_ps(xp.add(o)), *a);
                        }
                        i += 64;
                    }
                    while i + 16 <= n {
                        acc[0] = _mm512_fmadd_ps($wide(wp.add(i)), _mm512_loadu_ps(xp.add(i)), acc[0]);
                        i += 16;
                    }
                    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
                    let mut total = _mm512_reduce_add_ps(sum);
                    for j in i..n {
                        total += (*wp.add(j)).to_f32() * *xp.add(j);
                    }
                    total
                }
            }
        };
    }
    dot512!(dot_f16_avx512, f16, wide16_f16);
    dot512!(dot_bf16_avx512, bf16, wide16_bf16);

    macro_rules! dot256 {
        ($name:ident, $t:ty, $wide:ident, $features:literal) => {
            /// # Safety
            /// The CPU supports the target features.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name(w: &[$t], x: &[f32]) -> f32 {
                let n = w.len().min(x.len());
                let (wp, xp) = (w.as_ptr(), x.as_ptr());
                // SAFETY: (for the whole block) every offset below is < n, so inside both slices.
                unsafe {
                    let mut acc = [_mm256_setzero_ps(); 4];
                    let mut i = 0;
                    while i + 32 <= n {
                        for (k, a) in acc.iter_mut().enumerate() {
                            let o = i + 8 * k;
                            *a = _mm256_fmadd_ps($wide(wp.add(o)), _mm256_loadu_ps(xp.add(o)), *a);
                        }
                        i += 32;
                    }
                    while i + 8 <= n {
                        acc[0] = _mm256_fmadd_ps($wide(wp.add(i)), _mm256_loadu_ps(xp.add(i)), acc[0]);
                        i += 8;
                    }
                    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
                    let mut lanes = [0.0f32; 8];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
                    let mut total = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
                    for j in i..n {
                        total += (*wp.add(j)).to_f32() * *xp.add(j);
                    }
                    total
                }
            }
        };
    }
    dot256!(dot_f16_avx2, f16, wide8_f16, "avx2,fma,f16c");
    dot256!(dot_bf16_avx2, bf16, wide8_bf16, "avx2,fma");

    macro_rules! axpy512 {
        ($name:ident, $t:ty, $wide:ident) => {
            /// # Safety
            /// The CPU supports AVX-512F.
            #[target_feature(enable = "avx512f")]
            pub(super) unsafe fn $name(a: f32, w: &[$t], y: &mut [f32]) {
                let n = w.len().min(y.len());
                let (wp, yp) = (w.as_ptr(), y.as_mut_ptr());
                // SAFETY: (for the whole block) every offset below is < n, so inside both slices.
                unsafe {
                    let av = _mm512_set1_ps(a);
                    let mut i = 0;
                    while i + 16 <= n {
                        let v = _mm512_fmadd_ps(av, $wide(wp.add(i)), _mm512_loadu_ps(yp.add(i)));
                        _mm512_storeu_ps(yp.add(i), v);
                        i += 16;
                    }
                    for j in i..n {
                        *yp.add(j) = a.mul_add((*wp.add(j)).to_f32(), *yp.add(j));
                    }
                }
            }
        };
    }
    axpy512!(axpy_f16_avx512, f16, wide16_f16);
    axpy512!(axpy_bf16_avx512, bf16, wide16_bf16);

    macro_rules! axpy256 {
        ($name:ident, $t:ty, $wide:ident, $features:literal) => {
            /// # Safety
            /// The CPU supports the target features.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name(a: f32, w: &[$t], y: &mut [f32]) {
                let n = w.len().min(y.len());
                let (wp, yp) = (w.as_ptr(), y.as_mut_ptr());
                // SAFETY: (for the whole block) every offset below is < n, so inside both slices.
                unsafe {
                    let av = _mm256_set1_ps(a);
                    let mut i = 0;
                    while i + 8 <= n {
                        let v = _mm256_fmadd_ps(av, $wide(wp.add(i)), _mm256_loadu_ps(yp.add(i)));
                        _mm256_storeu_ps(yp.add(i), v);
                        i += 8;
                    }
                    for j in i..n {
                        *yp.add(j) = a.mul_add((*wp.add(j)).to_f32(), *yp.add(j));
                    }
                }
            }
        };
    }
    axpy256!(axpy_f16_avx2, f16, wide8_f16, "avx2,fma,f16c");
    axpy256!(axpy_bf16_avx2, bf16, wide8_bf16, "avx2,fma");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precision::Precision;
    use crate::simd::supported_levels;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    /// Every level against an f64 sum of the same 16-bit weights, on lengths around the vector widths.
    #[test]
    fn dot_and_axpy_match_f64_on_every_level_and_length() {
        for precision in [Precision::F16, Precision::Bf16] {
            for len in [0, 1, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 130, 1000] {
                let w = HalfVec::from_f32(precision, &data(len + 5, 1)).unwrap();
                let x = data(len, 2);
                let exact: Vec<f64> = (0..len).map(|i| w.get(3 + i) as f64).collect();
                let want: f64 = exact.iter().zip(&x).map(|(&a, &b)| a * b as f64).sum();
                for level in supported_levels() {
                    let got = match &w {
                        HalfVec::F16(v) => dot_f16(&v[3..3 + len], &x, level),
                        HalfVec::Bf16(v) => dot_bf16(&v[3..3 + len], &x, level),
                    };
                    let tol = 1e-6 * (len as f64 + 1.0);
                    assert!((got as f64 - want).abs() <= tol, "{precision} {level} dot len {len}: {got} vs {want}");
                    let mut y = data(len, 3);
                    let y0 = y.clone();
                    match &w {
                        HalfVec::F16(v) => axpy_f16(0.75, &v[3..3 + len], &mut y, level),
                        HalfVec::Bf16(v) => axpy_bf16(0.75, &v[3..3 + len], &mut y, level),
                    }
                    for i in 0..len {
                        let e = y0[i] as f64 + 0.75 * exact[i];
                        assert!((y[i] as f64 - e).abs() <= 1e-6, "{precision} {level} axpy len {len} at {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_public_entry_points_read_the_given_range() {
        let w = HalfVec::from_f32(Precision::F16, &[9.0, 1.0, 2.0, 3.0, 9.0]).unwrap();
        assert_eq!(dot(&w, 1, &[1.0, 1.0, 1.0]), 6.0);
        let mut y = [1.0f32; 3];
        axpy(2.0, &w, 1, &mut y);
        assert_eq!(y, [3.0, 5.0, 7.0]);
    }
}
