//! Register-tile GEMM microkernels, one per SIMD level: `C[MR × NR] = clamp(init + Σ_p A[:, p] · B[p, :] +
//! residual)`.
//!
//! `A` comes as a packed row panel (`MR` values per `p`), `B` as a packed column panel (`NR` values per `p`). Each
//! `p` broadcasts `MR` weights and multiplies them into `NR / lanes` vectors of `B`: the accumulators fill most of
//! the vector registers (24 of 32 on AVX-512, 12 of 16 on AVX2), so every loaded value feeds many FMAs.

/// Defines the microkernel of one SIMD level from the one template: an `mr × 2·lanes` tile, two vectors per row.
/// Only the tile height and the intrinsics differ between levels.
#[cfg(target_arch = "x86_64")]
macro_rules! microkernel {
    (
        $(#[$doc:meta])*
        fn $name:ident, feature = $feature:literal, mr = $mr:literal, lanes = $lanes:literal,
        zero = $zero:ident, load = $load:ident, store = $store:ident, splat = $splat:ident,
        add = $add:ident, fma = $fma:ident, min = $min:ident, max = $max:ident
    ) => {
        /// Loads and stores of a vector at `p` whose lanes in mask `m` are columns of the tile: all lanes when the
        /// tile is whole, else the masked form (masked-off lanes are neither read nor written).
        macro_rules! load_lanes {
            ($p:expr, $m:expr, $whole:expr) => {
                if $whole { $load($p) } else { masked_load($p, $m) }
            };
        }
        macro_rules! store_lanes {
            ($p:expr, $m:expr, $whole:expr, $v:expr) => {
                if $whole { $store($p, $v) } else { masked_store($p, $m, $v) }
            };
        }

        /// Rows of the tile.
        pub(super) const MR: usize = $mr;
        /// Columns of the tile: two vectors.
        pub(super) const NR: usize = 2 * $lanes;

        $(#[$doc])*
        ///
        /// Runs `panels` row panels one after another against the same `B` block (panel `i` reads `A` at
        /// `a + i·a_step`, its bias from `bias[i·mr ..]`, and writes `C` at `c + i·mr·rsc`): one call per column
        /// panel and row block instead of one per tile.
        ///
        /// # Safety
        /// The CPU supports the target features; for each panel, `A` holds `kc·mr` readable values from its start
        /// (`kc` per row, `lda` apart, when `ROW_MAJOR`), `b` `2·lanes` readable values at each `b + p·ldb`,
        /// `p < kc`; `c` is a writable `panels·mr × cols` block (`cols ≤ 2·lanes`) with row stride `rsc` owned by
        /// this thread, less the rows past `last_rows ≤ mr` of the last panel, which are neither read nor written;
        /// `bias` (if any) has at least `panels·mr` values (checked by the caller, [`super::Tile::run_panels`]);
        /// `residual` (if any) is readable wherever `c` is written, at the same offsets.
        #[target_feature(enable = $feature)]
        #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
        pub(super) unsafe fn $name<const ROW_MAJOR: bool>(
            panels: usize,
            last_rows: usize,
            cols: usize,
            kc: usize,
            a: *const f32,
            a_step: usize,
            lda: usize,
            b: *const f32,
            ldb: usize,
            b_next: *const f32,
            c: *mut f32,
            rsc: usize,
            load: bool,
            bias: Option<&[f32]>,
            residual: Option<*const f32>,
            clamp: Option<$crate::packed_gemm::Clamp>,
        ) {
            const L: usize = $lanes;
            // A tile narrower than NR (the last panel of a plane that is not a multiple of NR wide) reads and writes
            // C and the residual through lane masks; B is zero-padded past its columns.
            let whole = cols >= NR;
            // SAFETY: (for the whole block) the CPU supports the target features; every pointer offset stays inside
            // the blocks described in the contract above; the masked loads and stores touch only the tile's columns.
            unsafe {
                let masks = [lane_mask(cols.min(L)), lane_mask(cols.saturating_sub(L).min(L))];
                for i in 0..panels {
                    let (a, c) = (a.add(i * a_step), c.add(i * MR * rsc));
                    // Rows of C this panel owns: all of them but in a short last panel (whose A rows are zeros).
                    let rows = if i + 1 == panels { last_rows } else { MR };
                    let mut acc = [[$zero(); 2]; MR];
                    let residual = residual.map(|r| r.add(i * MR * rsc));
                    if let Some(res) = residual {
                        // Its rows lie a plane apart, which the hardware prefetcher does not follow: fetched while
                        // the products run.
                        for r in 0..rows {
                            $crate::packed_gemm::prefetch(res.wrapping_add(r * rsc));
                            $crate::packed_gemm::prefetch(res.wrapping_add(r * rsc + cols.min(NR) - 1));
                        }
                    }
                    if load {
                        for r in 0..rows {
                            acc[r][0] = load_lanes!(c.add(r * rsc), masks[0], whole);
                            acc[r][1] = load_lanes!(c.wrapping_add(r * rsc + L), masks[1], whole);
                        }
                    }
                    if let Some(bias) = bias {
                        for r in 0..MR {
                            let v = $splat(bias[i * MR + r]);
                            acc[r][0] = $add(acc[r][0], v);
                            acc[r][1] = $add(acc[r][1], v);
                        }
                    }
                    // The next column panel, when it is read in place (rows a plane apart, too many streams for the
                    // hardware prefetcher): fetched while the first row panel runs, once.
                    let fetch_next = i == 0 && !b_next.is_null();
                    for p in 0..kc {
                        if fetch_next {
                            $crate::packed_gemm::prefetch(b_next.wrapping_add(p * ldb));
                            $crate::packed_gemm::prefetch(b_next.wrapping_add(p * ldb + NR - 1));
                        }
                        let b0 = $load(b.add(p * ldb));
                        let b1 = $load(b.add(p * ldb + L));
                        for r in 0..MR {
                            // Packed: MR values per p. Row-major: row r at a + r·lda (a monomorphized variant).
                            let av = $splat(if ROW_MAJOR { *a.add(r * lda + p) } else { *a.add(p * MR + r) });
                            acc[r][0] = $fma(av, b0, acc[r][0]);
                            acc[r][1] = $fma(av, b1, acc[r][1]);
                        }
                    }
                    if let Some(res) = residual {
                        for r in 0..rows {
                            acc[r][0] = $add(acc[r][0], load_lanes!(res.add(r * rsc), masks[0], whole));
                            acc[r][1] = $add(acc[r][1], load_lanes!(res.wrapping_add(r * rsc + L), masks[1], whole));
                        }
                    }
                    if let Some(cl) = clamp {
                        // max(lo, x) and min(hi, x) return x when x is NaN (the second operand): NaN propagates like
                        // PyTorch.
                        let (lo, hi) = ($splat(cl.lo), $splat(cl.hi));
                        for r in 0..MR {
                            for h in 0..2 {
                                acc[r][h] = $min(hi, $max(lo, acc[r][h]));
                            }
                        }
                    }
                    for r in 0..rows {
                        store_lanes!(c.add(r * rsc), masks[0], whole, acc[r][0]);
                        store_lanes!(c.wrapping_add(r * rsc + L), masks[1], whole, acc[r][1]);
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_pixel;

use crate::packed_gemm::Clamp;
use crate::simd::SimdLevel;

/// Elements of the largest tile: the size of the on-stack buffer that partial tiles of scaled products run in.
#[cfg(target_arch = "x86_64")]
pub(crate) const MAX_TILE: usize = {
    let (a, b) = (avx512::MR * avx512::NR, avx2::MR * avx2::NR);
    if a > b {
        a
    } else {
        b
    }
};
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const MAX_TILE: usize = 0;

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
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => Tile { level, mr: avx512::MR, nr: avx512::NR },
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => Tile { level, mr: avx2::MR, nr: avx2::NR },
        _ => unreachable!("only x86-64 levels have microkernels"),
    }
}

/// The tile of a level, `None` for the portable level and levels this CPU lacks.
pub(crate) fn tile_if_supported(level: SimdLevel) -> Option<Tile> {
    (level != SimdLevel::Portable && level.supported()).then(|| tile(level))
}

/// The tile whose rows are output pixels ([`crate::conv_pixel_rows`]), on the levels that have one (AVX-512).
pub(crate) fn pixel_tile(level: SimdLevel) -> Option<Tile> {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 if level.supported() => Some(Tile { level, mr: avx512_pixel::MR, nr: avx512_pixel::NR }),
        _ => None,
    }
}

impl Tile {
    /// Runs the microkernel over `kc` steps for `panels` consecutive row panels against the same `B`: panel `i`
    /// reads `A` at `a + i·a_step` and bias `bias[i·mr ..]`, adds `residual` (the block laid out as `C`, after the
    /// products and before the clamp) and writes rows `i·mr ..` of `C` — only the first
    /// `last_rows` of the last panel, and only the first `cols` columns of each row (masked), so that a product whose
    /// height or width is not a multiple of the tile's needs no copy. Accumulators start
    /// from `C` when `load`, plus `bias` when given, else from zero; `clamp` is applied before the store.
    ///
    /// Each panel of `A` is packed (`lda` = `None`) or `mr` rows of `kc` values with row stride `lda`; `B` is `kc`
    /// rows of `nr` values with row stride `ldb` (`nr` for a packed panel, a plane's length when read in place).
    /// `b_next`, when given, is where the next column panel's rows start (same stride `ldb`): only a prefetch hint,
    /// issued while the first row panel runs, so any address is allowed.
    ///
    /// # Safety
    /// For each panel, `A` must be valid for `kc·mr` reads (packed) or for `kc` reads at each of its rows
    /// (row-major); `b` for `nr` reads at each of `b + p·ldb`, `p < kc`; `c` for reads and writes of a
    /// `panels·mr × cols` block (less the rows past `last_rows` of the last panel) with row stride `rsc` that no other
    /// thread touches, and `residual`, when given, for reads at the same offsets; `bias`, when given, holds at least
    /// `panels·mr` values. The tile must come from [`tile`] or [`pixel_tile`] (which checked that the CPU supports its
    /// level).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run_panels(
        &self,
        panels: usize,
        last_rows: usize,
        cols: usize,
        kc: usize,
        a: *const f32,
        a_step: usize,
        lda: Option<usize>,
        b: *const f32,
        ldb: usize,
        b_next: Option<*const f32>,
        c: *mut f32,
        rsc: usize,
        load: bool,
        bias: Option<&[f32]>,
        residual: Option<*const f32>,
        clamp: Option<Clamp>,
    ) {
        let b_next = b_next.unwrap_or(std::ptr::null());
        if let Some(bias) = bias {
            assert!(bias.len() >= panels * self.mr, "microkernel: bias shorter than the panels");
        }
        assert!((1..=self.mr).contains(&last_rows), "microkernel: {last_rows} rows in a panel of {}", self.mr);
        assert!(cols > 0 && cols <= self.nr, "microkernel: {cols} columns in a panel of {}", self.nr);
        // One kernel's packed (`lda` = None) or row-major variant, with the caller's arguments.
        #[cfg(target_arch = "x86_64")]
        macro_rules! call {
            ($kernel:path) => {{
                use $kernel as kernel;
                match lda {
                    None => kernel::<false>(
                        panels, last_rows, cols, kc, a, a_step, 0, b, ldb, b_next, c, rsc, load, bias, residual, clamp,
                    ),
                    Some(lda) => kernel::<true>(
                        panels, last_rows, cols, kc, a, a_step, lda, b, ldb, b_next, c, rsc, load, bias, residual,
                        clamp,
                    ),
                }
            }};
        }
        match self.level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: forwarded contract; pixel_tile() verified AVX-512F support.
            SimdLevel::Avx512 if self.mr == avx512_pixel::MR => unsafe { call!(avx512_pixel::kernel_7x32) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: forwarded contract; tile() verified AVX-512F support.
            SimdLevel::Avx512 => unsafe { call!(avx512::kernel_12x32) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: forwarded contract; tile() verified AVX2 and FMA support.
            SimdLevel::Avx2 => unsafe { call!(avx2::kernel_6x16) },
            _ => unreachable!("tile() has no portable tile"),
        }
    }
}
