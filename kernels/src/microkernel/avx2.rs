//! The AVX2 + FMA microkernel: a 6 × 16 tile (12 accumulators in ymm registers).

use crate::packed_gemm::Clamp;
use std::arch::x86_64::*;

const MR: usize = 6;
const NR: usize = 16;

/// See [`super::Tile::run`].
///
/// # Safety
/// The CPU supports AVX2 and FMA; `a` holds `kc·6` readable values, `b` `kc·16`; `c` is a writable 6 × 16 block
/// with row stride `rsc` owned by this thread; `bias` (if any) has at least 6 values (checked by the caller).
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub(super) unsafe fn kernel_6x16(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    load: bool,
    bias: Option<&[f32]>,
    clamp: Option<Clamp>,
) {
    // SAFETY (whole body): every pointer offset stays inside the blocks described in the contract above.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        if load {
            for r in 0..MR {
                acc[r][0] = _mm256_loadu_ps(c.add(r * rsc));
                acc[r][1] = _mm256_loadu_ps(c.add(r * rsc + 8));
            }
        }
        if let Some(bias) = bias {
            for r in 0..MR {
                let v = _mm256_set1_ps(bias[r]);
                acc[r][0] = _mm256_add_ps(acc[r][0], v);
                acc[r][1] = _mm256_add_ps(acc[r][1], v);
            }
        }
        for p in 0..kc {
            let b0 = _mm256_loadu_ps(b.add(p * NR));
            let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
            let ap = a.add(p * MR);
            for r in 0..MR {
                let av = _mm256_set1_ps(*ap.add(r));
                acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
            }
        }
        if let Some(cl) = clamp {
            // max(lo, x) and min(hi, x) return x when x is NaN (the second operand): NaN propagates like PyTorch.
            let (lo, hi) = (_mm256_set1_ps(cl.lo), _mm256_set1_ps(cl.hi));
            for r in 0..MR {
                for h in 0..2 {
                    acc[r][h] = _mm256_min_ps(hi, _mm256_max_ps(lo, acc[r][h]));
                }
            }
        }
        for r in 0..MR {
            _mm256_storeu_ps(c.add(r * rsc), acc[r][0]);
            _mm256_storeu_ps(c.add(r * rsc + 8), acc[r][1]);
        }
    }
}
