//! The AVX-512F microkernel for products whose rows are output pixels (see [`crate::conv_pixel_rows`]): a 7 × 32
//! tile (14 accumulators), so that a 7² plane is seven whole panels.

use super::avx512::{lane_mask, masked_load, masked_store};
use std::arch::x86_64::*;

microkernel! {
    /// See [`super::Tile::run_panels`].
    fn kernel_7x32, feature = "avx512f", mr = 7, lanes = 16,
    zero = _mm512_setzero_ps, load = _mm512_loadu_ps, store = _mm512_storeu_ps, splat = _mm512_set1_ps,
    add = _mm512_add_ps, fma = _mm512_fmadd_ps, min = _mm512_min_ps, max = _mm512_max_ps
}
