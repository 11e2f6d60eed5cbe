//! Element-wise f32 loops compiled once per SIMD level.
//!
//! The loop bodies are plain Rust that LLVM vectorizes; what changes per level is the instruction set it may use
//! (`#[target_feature]`): 512- or 256-bit vectors and fused multiply-add instead of the SSE2 baseline. The level
//! is read once per call from [`crate::simd::level`].

#[inline(always)]
fn axpy_fused(a: f32, x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = v.mul_add(a, *o);
    }
}

#[inline(always)]
fn axpy_unfused(a: f32, x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

per_level! {
    /// `y += a·x` over `min(len)` elements (fused multiply-add on the SIMD levels, `a·x` then `+` on the portable
    /// one).
    pub fn axpy(a: f32, x: &[f32], y: &mut [f32]); simd: axpy_fused, portable: axpy_unfused
}

#[inline(always)]
fn axpy4_fused(a: [f32; 4], x: [&[f32]; 4], y: &mut [f32]) {
    let n = x.iter().map(|r| r.len()).min().unwrap_or(0).min(y.len());
    let (x0, x1, x2, x3, y) = (&x[0][..n], &x[1][..n], &x[2][..n], &x[3][..n], &mut y[..n]);
    for j in 0..n {
        y[j] = x3[j].mul_add(a[3], x2[j].mul_add(a[2], x1[j].mul_add(a[1], x0[j].mul_add(a[0], y[j]))));
    }
}

#[inline(always)]
fn axpy4_unfused(a: [f32; 4], x: [&[f32]; 4], y: &mut [f32]) {
    let n = x.iter().map(|r| r.len()).min().unwrap_or(0).min(y.len());
    let (x0, x1, x2, x3, y) = (&x[0][..n], &x[1][..n], &x[2][..n], &x[3][..n], &mut y[..n]);
    for j in 0..n {
        y[j] = (((y[j] + a[0] * x0[j]) + a[1] * x1[j]) + a[2] * x2[j]) + a[3] * x3[j];
    }
}

per_level! {
    /// Four [`axpy`]s in one pass, `y += a₀·x₀`, then `+ a₁·x₁` …: the same operations in the same order as four
    /// calls (so bit-identical to them), with one load and store of `y` instead of four.
    pub fn axpy4(a: [f32; 4], x: [&[f32]; 4], y: &mut [f32]); simd: axpy4_fused, portable: axpy4_unfused
}

/// Independent partial sums: two AVX-512 vectors, four AVX2 ones.
const DOT_LANES: usize = 32;

/// `Σ x_i·y_i` in a fixed order on every level: lane `l` of 32 partial sums adds `x_i·y_i` (rounded, then added:
/// no fused multiply-add) for `i ≡ l` mod 32 in order of `i`, then a pairwise tree over the lanes.
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    dot_on(crate::simd::level(), x, y)
}

/// [`dot`] on `level`, which must be supported (the same bits on every level).
fn dot_on(level: crate::simd::SimdLevel, x: &[f32], y: &[f32]) -> f32 {
    assert!(level.supported(), "dot: {level} is not supported on this CPU");
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let whole = n / DOT_LANES * DOT_LANES;
    let mut acc = [0.0f32; DOT_LANES];
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level is supported (asserted); both slices hold `whole` values.
        crate::simd::SimdLevel::Avx512 => unsafe { dot_lanes_avx512(x, y, whole, &mut acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        crate::simd::SimdLevel::Avx2 => unsafe { dot_lanes_avx2(x, y, whole, &mut acc) },
        _ => {
            for (a, b) in x[..whole].chunks_exact(DOT_LANES).zip(y[..whole].chunks_exact(DOT_LANES)) {
                for l in 0..DOT_LANES {
                    acc[l] += a[l] * b[l];
                }
            }
        }
    }
    for (l, (a, b)) in x[whole..].iter().zip(&y[whole..]).enumerate() {
        acc[l] += a * b;
    }
    // Pairwise tree over the lanes: a fixed order.
    let mut width = DOT_LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    acc[0]
}

/// The 32 partial sums of [`dot`] over the first `whole` values, in AVX-512 registers. (Written with intrinsics:
/// LLVM vectorized the plain loop two lanes at a time, with spills, ≈ 10× slower.)
///
/// # Safety
/// AVX-512F is available; `x` and `y` hold at least `whole` values, a multiple of 32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_lanes_avx512(x: &[f32], y: &[f32], whole: usize, acc: &mut [f32; DOT_LANES]) {
    use std::arch::x86_64::*;
    debug_assert!(whole.is_multiple_of(DOT_LANES) && x.len() >= whole && y.len() >= whole);
    let (xp, yp) = (x.as_ptr(), y.as_ptr());
    let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for i in (0..whole).step_by(DOT_LANES) {
        // SAFETY: i + 32 ≤ whole ≤ both lengths (the contract).
        unsafe {
            s0 = _mm512_add_ps(s0, _mm512_mul_ps(_mm512_loadu_ps(xp.add(i)), _mm512_loadu_ps(yp.add(i))));
            s1 = _mm512_add_ps(s1, _mm512_mul_ps(_mm512_loadu_ps(xp.add(i + 16)), _mm512_loadu_ps(yp.add(i + 16))));
        }
    }
    // SAFETY: `acc` holds 32 values.
    unsafe {
        _mm512_storeu_ps(acc.as_mut_ptr(), s0);
        _mm512_storeu_ps(acc.as_mut_ptr().add(16), s1);
    }
}

/// [`dot_lanes_avx512`] in four AVX2 registers.
///
/// # Safety
/// AVX2 is available; `x` and `y` hold at least `whole` values, a multiple of 32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_lanes_avx2(x: &[f32], y: &[f32], whole: usize, acc: &mut [f32; DOT_LANES]) {
    use std::arch::x86_64::*;
    debug_assert!(whole.is_multiple_of(DOT_LANES) && x.len() >= whole && y.len() >= whole);
    let (xp, yp) = (x.as_ptr(), y.as_ptr());
    let mut s = [_mm256_setzero_ps(); 4];
    for i in (0..whole).step_by(DOT_LANES) {
        for (v, s) in s.iter_mut().enumerate() {
            // SAFETY: i + 8v + 8 ≤ whole ≤ both lengths (the contract).
            unsafe {
                let p = _mm256_mul_ps(_mm256_loadu_ps(xp.add(i + 8 * v)), _mm256_loadu_ps(yp.add(i + 8 * v)));
                *s = _mm256_add_ps(*s, p);
            }
        }
    }
    for (v, s) in s.iter().enumerate() {
        // SAFETY: `acc` holds 32 values.
        unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(8 * v), *s) };
    }
}

#[inline(always)]
fn clamp_body(lo: f32, hi: f32, x: &mut [f32]) {
    // `v < lo` and `v > hi` are false for NaN, which passes through (PyTorch's clamp).
    let clamp = crate::packed_gemm::Clamp { lo, hi };
    x.iter_mut().for_each(|v| *v = clamp.apply_fast(*v));
}

per_level! {
    /// `x ← min(max(x, lo), hi)` in place, NaN kept.
    pub fn clamp(lo: f32, hi: f32, x: &mut [f32]); simd: clamp_body, portable: clamp_body
}

#[inline(always)]
fn keep_bits_body(words: &[u64], x: &mut [f32]) {
    for (x, &word) in x.chunks_mut(64).zip(words) {
        if let Ok(x) = <&mut [f32; 64]>::try_from(&mut *x) {
            // A whole word: a fixed trip count that vectorizes.
            for (b, v) in x.iter_mut().enumerate() {
                *v = if (word >> b) & 1 == 1 { *v } else { 0.0 };
            }
        } else {
            for (b, v) in x.iter_mut().enumerate() {
                *v = if (word >> b) & 1 == 1 { *v } else { 0.0 };
            }
        }
    }
}

per_level! {
    /// `x_i ← 0` where bit `i` of `words` is clear (bit `i` being bit `i % 64` of `words[i / 64]`), over the
    /// elements that `words` covers — the backward of a clamp-like activation from its one-bit mask.
    pub fn keep_bits(words: &[u64], x: &mut [f32]); simd: keep_bits_body, portable: keep_bits_body
}

#[inline(always)]
fn interval_bits_body(ys: &[f32], lo: f32, hi: f32, words: &mut [u64]) {
    // An infinite `hi` bounds nothing (`v < ∞` is false for ∞ itself, which a ReLU passes); NaN passes neither.
    let unbounded = hi == f32::INFINITY;
    let pass = |v: f32| (v > lo) & (unbounded | (v < hi));
    for (word, ys) in words.iter_mut().zip(ys.chunks(64)) {
        *word = match <&[f32; 64]>::try_from(ys) {
            Ok(ys) => {
                // A whole word: four (AVX-512) or eight (AVX2) vector compares into lane masks, or-ed into place.
                let mut w = 0u64;
                for (b, &v) in ys.iter().enumerate() {
                    w |= u64::from(pass(v)) << b;
                }
                w
            }
            Err(_) => ys.iter().enumerate().fold(0u64, |w, (b, &v)| w | (u64::from(pass(v)) << b)),
        };
    }
}

per_level! {
    /// Bit `i` of `words` (bit `i % 64` of `words[i / 64]`) set where `lo < ys[i] < hi` (an infinite `hi` is no
    /// bound), over the elements `words` covers: the one-bit mask of a clamp-like activation, from its output.
    pub fn interval_bits(ys: &[f32], lo: f32, hi: f32, words: &mut [u64]); simd: interval_bits_body, portable: interval_bits_body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_bits_match_the_definition() {
        let n: usize = 5 * 64 + 37;
        let mut ys: Vec<f32> = (0..n).map(|i| ((i * 37) % 23) as f32 / 2.0 - 3.0).collect();
        ys[3] = f32::NAN;
        ys[70] = f32::INFINITY;
        ys[71] = f32::NEG_INFINITY;
        ys[72] = 6.0;
        ys[73] = 0.0;
        for (lo, hi) in [(0.0, f32::INFINITY), (0.0, 6.0), (-1.5, 2.0)] {
            let want: Vec<u64> = (0..n.div_ceil(64))
                .map(|w| {
                    (0..64).filter(|b| w * 64 + b < n).fold(0u64, |acc, b| {
                        let v = ys[w * 64 + b];
                        let pass = v > lo && (hi == f32::INFINITY || v < hi);
                        acc | (u64::from(pass) << b)
                    })
                })
                .collect();
            let mut got = vec![0u64; want.len()];
            interval_bits(&ys, lo, hi, &mut got);
            assert_eq!(got, want, "({lo}, {hi}) on {}", crate::simd::level());
        }
    }

    #[test]
    fn axpy4_equals_four_axpys_bit_for_bit() {
        for len in [0, 1, 7, 16, 33, 1000] {
            let rows: Vec<Vec<f32>> =
                (0..4).map(|r| (0..len).map(|i| ((i * 13 + r * 7) % 29) as f32 / 7.0 - 2.0).collect()).collect();
            let a = [0.3, -1.7, 2.5, 0.01];
            let mut want: Vec<f32> = (0..len).map(|i| i as f32 * 0.1).collect();
            let mut got = want.clone();
            for (ar, r) in a.iter().zip(&rows) {
                axpy(*ar, r, &mut want);
            }
            axpy4(a, [&rows[0], &rows[1], &rows[2], &rows[3]], &mut got);
            assert_eq!(got, want, "len {len}");
        }
    }

    #[test]
    fn dot_is_bit_identical_on_every_level() {
        for len in [0, 1, 31, 32, 33, 64, 95, 1283] {
            let x: Vec<f32> = (0..len).map(|i| (i as f32 * 0.731).sin()).collect();
            let y: Vec<f32> = (0..len).map(|i| (i as f32 * 0.377).cos() * 3.0).collect();
            let want = dot_on(crate::simd::SimdLevel::Portable, &x, &y);
            for level in crate::simd::supported_levels() {
                let got = dot_on(level, &x, &y);
                assert_eq!(got.to_bits(), want.to_bits(), "len {len} on {level}");
            }
        }
    }

    #[test]
    fn dot_matches_f64_on_every_length() {
        for len in [0, 1, 5, 31, 32, 33, 100, 1000] {
            let x: Vec<f32> = (0..len).map(|i| ((i * 37) % 17) as f32 / 8.0 - 1.0).collect();
            let y: Vec<f32> = (0..len).map(|i| ((i * 11) % 13) as f32 / 4.0 - 1.5).collect();
            let want: f64 = x.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert!((dot(&x, &y) as f64 - want).abs() < 1e-4 * (1.0 + want.abs()), "len {len}");
        }
    }

    #[test]
    fn clamp_keeps_nan_and_clamps_both_sides() {
        let mut x = [f32::NAN, -1.0, 0.5, 7.0];
        clamp(0.0, 6.0, &mut x);
        assert!(x[0].is_nan());
        assert_eq!(&x[1..], &[0.0, 0.5, 6.0]);
    }

    #[test]
    fn axpy_on_every_length_up_to_two_vectors() {
        for len in 0..40 {
            let x: Vec<f32> = (0..len).map(|i| i as f32 * 0.5).collect();
            let mut y: Vec<f32> = (0..len).map(|i| 1.0 - i as f32).collect();
            axpy(2.0, &x, &mut y);
            for (i, v) in y.iter().enumerate() {
                assert_eq!(*v, 1.0 - i as f32 + i as f32, "len {len} at {i}");
            }
        }
    }

    #[test]
    fn keep_bits_clears_the_unset_elements_on_every_level() {
        let n = 3 * 64 + 29;
        let words = [0xF0F0_0000_FFFF_1234u64, u64::MAX, 0, 0x1555_5555];
        let g: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { -(i as f32) } else { i as f32 + 0.5 }).collect();
        let want: Vec<f32> = (0..n).map(|i| if (words[i / 64] >> (i % 64)) & 1 == 1 { g[i] } else { 0.0 }).collect();
        let mut got = g.clone();
        keep_bits(&words, &mut got);
        assert_eq!(got, want, "{}", crate::simd::level());
        assert!(
            got.iter().zip(&g).any(|(a, b)| a != b) && got.iter().any(|&v| v != 0.0),
            "something kept, something cleared"
        );
    }
}
