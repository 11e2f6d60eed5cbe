//! Register-tile GEMM microkernels, one per SIMD level: `C[MR × NR] = clamp(init + Σ_p A[:, p] · B[p, :])`.
//!
//! `A` comes as a packed row panel (`MR` values per `p`), `B` as a packed column panel (`NR` values per `p`). Each
//! `p` broadcasts `MR` weights and multiplies them into `NR / lanes` vectors of `B`: the accumulators fill most of
//! the vector registers (24 of 32 on AVX-512, 12 of 16 on AVX2), so every loaded value feeds many FMAs.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::packed_gemm::Clamp;
use crate::simd::SimdLevel;

/// The register tile of one SIMD level.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tile {
    pub level: SimdLevel,
    pub mr: usize,
    pub nr: usize,
}

/// Rows per packed panel for `level` (1 for the portable, row-major layout).
pub(crate) fn mr(level: SimdLevel) -> usize {
    match level {
        SimdLevel::Portable => 1,
        l => tile(l).mr,
    }
}

/// The tile of a SIMD level.
///
/// # Panics
/// For the portable level, which has no microkernel, and for a level this CPU does not support.
pub(crate) fn tile(level: SimdLevel) -> Tile {
    assert!(level != SimdLevel::Portable && level.supported(), "no {level} microkernel on this CPU");
    match level {
        SimdLevel::Avx512 => Tile { level, mr: 12, nr: 32 },
        _ => Tile { level, mr: 6, nr: 16 },
    }
}

impl Tile {
    /// Runs the microkernel over `kc` steps. Accumulators start from `C` when `load`, plus `bias` when given, else
    /// from zero; `clamp` is applied before the store.
    ///
    /// # Safety
    /// `a` must be valid for `kc·mr` reads, `b` for `kc·nr`, `c` for reads and writes of an `mr × nr` block with row
    /// stride `rsc` that no other thread touches; `bias`, when given, holds at least `mr` values. The tile must come
    /// from [`tile`] (which checked that the CPU supports its level).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run(
        &self,
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        rsc: usize,
        load: bool,
        bias: Option<&[f32]>,
        clamp: Option<Clamp>,
    ) {
        if let Some(bias) = bias {
            assert!(bias.len() >= self.mr, "microkernel: bias shorter than a panel");
        }
        match self.level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: forwarded contract; tile() verified AVX-512F support.
            SimdLevel::Avx512 => unsafe { avx512::kernel_12x32(kc, a, b, c, rsc, load, bias, clamp) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: forwarded contract; tile() verified AVX2 and FMA support.
            SimdLevel::Avx2 => unsafe { avx2::kernel_6x16(kc, a, b, c, rsc, load, bias, clamp) },
            _ => unreachable!("tile() has no portable tile"),
        }
    }
}
