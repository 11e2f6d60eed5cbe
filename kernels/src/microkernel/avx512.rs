//! The AVX-512F microkernel: a 12 × 32 tile (24 accumulators in zmm registers).

use std::arch::x86_64::*;

microkernel! {
    /// See [`super::Tile::run_panels`].
    fn kernel_12x32, feature = "avx512f", mr = 12, lanes = 16,
    zero = _mm512_setzero_ps, load = _mm512_loadu_ps, store = _mm512_storeu_ps, splat = _mm512_set1_ps,
    add = _mm512_add_ps, fma = _mm512_fmadd_ps, min = _mm512_min_ps, max = _mm512_max_ps
}
