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
        /// Rows of the short tiles a last panel may run on: a third and two thirds of the tile.
        const THIRD: usize = $mr / 3;

        $(#[$doc])*
        ///
        /// Runs `panels` row panels one after another against the same `B` block (panel `i` reads `A` at
        /// `a + i·a_step`, its bias from `bias[i·mr ..]`, and writes `C` at `c + i·mr·rsc`): one call per column
        /// panel and row block instead of one per tile. `lda`: `None` for packed panels of `A`, else the row stride
        /// of row-major ones.
        ///
        /// A last panel with few rows (a third or two thirds of the tile at most: 16 output channels on a 12-row
        /// tile) runs on a tile of that height, and a block at most one vector wide on one-vector tiles, so the
        /// padding rows and columns cost no FMAs. Each output is the same sequence of operations on every tile.
        ///
        /// # Safety
        /// The CPU supports the target features; for each panel, `A` holds `kc·mr` readable values from its start
        /// (`kc` per row, `lda` apart, when row-major), `b` `2·lanes` readable values at each `b + p·ldb`,
        /// `p < kc`; `c` is a writable `panels·mr × cols` block (`1 ≤ cols ≤ 2·lanes`) with row stride `rsc` owned
        /// by this thread, less the rows past `last_rows` (`1 ≤ last_rows ≤ mr`) of the last panel, which are
        /// neither read nor written; `bias` (if any) has at least `panels·mr` values (checked by the caller,
        /// [`super::Tile::run_panels`]); `residual` (if any) is readable wherever `c` is written, at the same
        /// offsets.
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $name(
            panels: usize,
            last_rows: usize,
            cols: usize,
            kc: usize,
            a: *const f32,
            a_step: usize,
            lda: Option<usize>,
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
            // One variant (rows, vectors, packed or row-major) over `panels` panels from panel `first`.
            macro_rules! run {
                ($rows:expr, $vecs:expr, $first:expr, $panels:expr, $last_rows:expr, $b_next:expr) => {{
                    let first = $first;
                    let (a, c) = (a.add(first * a_step), c.add(first * MR * rsc));
                    let bias = bias.map(|v| &v[first * MR..]);
                    let residual = residual.map(|r| r.add(first * MR * rsc));
                    let (panels, last_rows, b_next) = ($panels, $last_rows, $b_next);
                    match lda {
                        None => kernel::<false, { $rows }, { $vecs }>(
                            panels, last_rows, cols, kc, a, a_step, 0, b, ldb, b_next, c, rsc, load, bias,
                            residual, clamp,
                        ),
                        Some(lda) => kernel::<true, { $rows }, { $vecs }>(
                            panels, last_rows, cols, kc, a, a_step, lda, b, ldb, b_next, c, rsc, load, bias,
                            residual, clamp,
                        ),
                    }
                }};
            }
            if panels == 0 {
                return;
            }
            // The last panel's tile: a third, two thirds or the whole height.
            let last_tile = super::tile_rows(last_rows, MR);
            let full = if last_tile == MR { panels } else { panels - 1 };
            // SAFETY: the contract above; each call covers panels of the caller's block (its own offsets into A,
            // C, the bias and the residual), the short tile only the last panel's first `last_rows ≤ rows` rows.
            unsafe {
                if full > 0 {
                    let last = if full == panels { last_rows } else { MR };
                    match cols > $lanes {
                        true => run!(MR, 2, 0, full, last, b_next),
                        false => run!(MR, 1, 0, full, last, b_next),
                    }
                }
                if full < panels {
                    // The next column panel is fetched while the first row panel runs: here only if it is this one.
                    let b_next = if full == 0 { b_next } else { std::ptr::null() };
                    match (last_tile == THIRD, cols > $lanes) {
                        (true, true) => run!(THIRD, 2, full, 1, last_rows, b_next),
                        (true, false) => run!(THIRD, 1, full, 1, last_rows, b_next),
                        (_, true) => run!(2 * THIRD, 2, full, 1, last_rows, b_next),
                        (_, false) => run!(2 * THIRD, 1, full, 1, last_rows, b_next),
                    }
                }
            }
        }

        /// The tile `ROWS × VECS·lanes` (`ROWS ≤ MR`) over panels laid out for `MR` rows: see the dispatcher
        /// above. Rows `ROWS ..` of each panel are not computed (callers give it only panels whose rows past `ROWS`
        /// are padding).
        ///
        /// # Safety
        /// As the dispatcher's, with `cols ≤ VECS·lanes` and `last_rows ≤ ROWS` (and every panel but the last of `ROWS = MR`
        /// rows).
        #[target_feature(enable = $feature)]
        #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
        unsafe fn kernel<const ROW_MAJOR: bool, const ROWS: usize, const VECS: usize>(
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
            // A tile narrower than its vectors (the last panel of a plane that is not a multiple of NR wide) reads
            // and writes C and the residual through lane masks; B is zero-padded past its columns.
            let whole = cols >= VECS * L;
            // `$body` for vector `h` = 0, then 1 when the tile has two: written out rather than looped, so that
            // every index into the accumulators is a constant and they stay in registers.
            macro_rules! each_vector {
                ($h:ident => $body:block) => {{
                    {
                        let $h = 0;
                        $body
                    }
                    if VECS > 1 {
                        let $h = 1;
                        $body
                    }
                }};
            }
            // SAFETY: (for the whole block) the CPU supports the target features; every pointer offset stays inside
            // the blocks described in the contract above; the masked loads and stores touch only the tile's columns.
            unsafe {
                let masks = [lane_mask(cols.min(L)), lane_mask(cols.saturating_sub(L).min(L))];
                for i in 0..panels {
                    let (a, c) = (a.add(i * a_step), c.add(i * MR * rsc));
                    // Rows of C this panel owns: all of them but in a short last panel (whose A rows are zeros).
                    let rows = if i + 1 == panels { last_rows } else { ROWS };
                    let mut acc = [[$zero(); VECS]; ROWS];
                    let residual = residual.map(|r| r.add(i * MR * rsc));
                    if let Some(res) = residual {
                        // Its rows lie a plane apart, which the hardware prefetcher does not follow: fetched while
                        // the products run.
                        for r in 0..rows {
                            $crate::packed_gemm::prefetch(res.wrapping_add(r * rsc));
                            $crate::packed_gemm::prefetch(res.wrapping_add(r * rsc + cols - 1));
                        }
                    }
                    if load {
                        for r in 0..rows {
                            each_vector!(h => {
                                acc[r][h] = load_lanes!(c.wrapping_add(r * rsc + h * L), masks[h], whole);
                            });
                        }
                    }
                    if let Some(bias) = bias {
                        for r in 0..ROWS {
                            let v = $splat(bias[i * MR + r]);
                            each_vector!(h => {
                                acc[r][h] = $add(acc[r][h], v);
                            });
                        }
                    }
                    // The next column panel, when it is read in place (rows a plane apart, too many streams for the
                    // hardware prefetcher): fetched while the first row panel runs, once.
                    let fetch_next = i == 0 && !b_next.is_null();
                    // A right operand with rows NR apart (a packed panel; or, harmlessly, a panel read in place
                    // from a plane NR wide) continues past this block in memory: the next rows of its panel, which
                    // the pixel rows read next, or the next K block. Its rows STREAM_AHEAD on are fetched while the
                    // first row panel runs (every panel of a one-panel call, as the row-panel order makes): where
                    // they come from memory (the weights of the pixel rows, read once per call) the hardware
                    // prefetcher alone left the tile waiting.
                    let stream = i == 0 && ldb == NR;
                    for p in 0..kc {
                        if stream {
                            let ahead = b.wrapping_add((p + $crate::microkernel::STREAM_AHEAD) * NR);
                            let mut line = 0;
                            while line < NR {
                                $crate::packed_gemm::prefetch(ahead.wrapping_add(line));
                                line += 16;
                            }
                        }
                        if fetch_next {
                            $crate::packed_gemm::prefetch(b_next.wrapping_add(p * ldb));
                            $crate::packed_gemm::prefetch(b_next.wrapping_add(p * ldb + NR - 1));
                        }
                        let mut bv = [$zero(); VECS];
                        each_vector!(h => {
                            bv[h] = $load(b.add(p * ldb + h * L));
                        });
                        for r in 0..ROWS {
                            // Packed: MR values per p. Row-major: row r at a + r·lda (a monomorphized variant).
                            let av = $splat(if ROW_MAJOR { *a.add(r * lda + p) } else { *a.add(p * MR + r) });
                            each_vector!(h => {
                                acc[r][h] = $fma(av, bv[h], acc[r][h]);
                            });
                        }
                    }
                    if let Some(res) = residual {
                        for r in 0..rows {
                            each_vector!(h => {
                                acc[r][h] =
                                    $add(acc[r][h], load_lanes!(res.wrapping_add(r * rsc + h * L), masks[h], whole));
                            });
                        }
                    }
                    if let Some(cl) = clamp {
                        // max(lo, x) and min(hi, x) return x when x is NaN (the second operand): NaN propagates like
                        // PyTorch.
                        let (lo, hi) = ($splat(cl.lo), $splat(cl.hi));
                        for r in 0..ROWS {
                            each_vector!(h => {
                                acc[r][h] = $min(hi, $max(lo, acc[r][h]));
                            });
                        }
                    }
                    for r in 0..rows {
                        each_vector!(h => {
                            store_lanes!(c.wrapping_add(r * rsc + h * L), masks[h], whole, acc[r][h]);
                        });
                    }
                }
            }
        }
    };
}

/// Rows of a packed right operand that the first row panel of a block fetches ahead of its reads (8 KB at 32
/// columns): on an Intel Xeon, one thread, the 7² layers of EfficientNet-Lite0 ran 11–18 % faster with it, those of
/// ResNet-50 11 %, and 24 to 160 rows all did about as well.
pub(crate) const STREAM_AHEAD: usize = 64;

/// Rows of the tile that a panel of `rows ≤ mr` rows runs on, for a tile of `mr` rows: a third, two thirds or all of
/// them (the microkernels' short tiles, and what [`Tile::cells`] counts).
const fn tile_rows(rows: usize, mr: usize) -> usize {
    let third = mr / 3;
    if rows <= third {
        third
    } else if rows <= 2 * third {
        2 * third
    } else {
        mr
    }
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
    /// Cells (rows × columns) the microkernel computes for a `rows × cols` product on this tile when the caller
    /// passes its short last row panel and narrow last column panel as they are (the packed GEMM does): whole
    /// tiles, but a last row panel of at most a third or two thirds of the rows runs on a tile that short, and a
    /// last column panel at most one vector wide on one vector. What [`crate::conv_pixel_rows::wins`] weighs.
    pub fn cells(&self, rows: usize, cols: usize) -> usize {
        let last_rows = match rows % self.mr {
            0 => 0,
            r => tile_rows(r, self.mr),
        };
        let half = self.nr / 2;
        let last_cols = match cols % self.nr {
            0 => 0,
            c if c <= half => half,
            _ => self.nr,
        };
        (rows / self.mr * self.mr + last_rows) * (cols / self.nr * self.nr + last_cols)
    }

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
    /// issued while the first row panel runs, so any address is allowed. Where `ldb = nr`, the first row panel also
    /// fetches `B`'s rows [`STREAM_AHEAD`] past the one it reads (a hint too, past the block's end as well).
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
        // One level's kernel with the caller's arguments.
        #[cfg(target_arch = "x86_64")]
        macro_rules! call {
            ($kernel:path) => {{
                $kernel(
                    panels, last_rows, cols, kc, a, a_step, lda, b, ldb, b_next, c, rsc, load, bias, residual, clamp,
                )
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
