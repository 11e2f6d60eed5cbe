//! f32 depthwise convolution in a channel-blocked layout, made band by band from the NCHW input.
//!
//! The per-plane kernels ([`crate::depthwise_flat`] and the row and flat-plane kernels it picks) run each channel as
//! a filter over its own plane. On small planes their per-plane set-up (a padded copy, masks, short rows) costs more
//! than the taps, and strided layers need a copy per stride phase. onnxruntime keeps its activations channel-blocked
//! (NCHWc) instead, where every tap of `L` channels is one aligned vector. This kernel gets that layout locally:
//!
//! - `L` channels (one vector) go together. A band of input rows is transposed in registers (`L × L` blocks) into a
//!   zero-padded scratch `[row][column][L]`, small enough to stay in L1/L2;
//! - output pixel `(oy, ox)` reads tap `(ky, kx)` as the vector at scratch row `oy·sh + ky·dh` (band-relative),
//!   column `ox·sw + kx·dw`: one aligned load, whatever the stride, dilation or padding;
//! - `L` neighbouring output pixels accumulate in `L` registers (independent FMA chains), are clamped, transposed
//!   back in registers and stored to the `L` output rows, masked at a row's end.
//!
//! Every output is `bias`, then `+ w_t · x_t` for the taps in row-major order by fused multiply-add (padding reads
//! as 0), then the clamp: the operations of the per-plane kernels' SIMD levels, so the results are bit-identical to
//! theirs. The tasks (image, channel block, band of output rows) depend only on the layer's shape.

use crate::geometry::ConvGeometry;
use crate::packed_gemm::Clamp;
use crate::simd::SimdLevel;
use rayon::prelude::*;
use std::cell::RefCell;

/// Bytes of transposed input a band aims at: the scratch a task fills and then reads `KH·KW / (sh·sw)` times should
/// stay in L2 beside the output rows.
///
/// Measured (Zen 4, 2 threads, MobileNetV2 and EfficientNet-Lite0 layers): 32 and 64 KiB bands were up to 1.5×
/// slower on the 112² and 56² planes than 128 KiB, where the halo rows each band transposes again are few; 256 KiB
/// was no faster.
const BAND_BYTES: usize = 128 * 1024;

/// Channels per vector: 8 f32 (256 bits).
const LANES: usize = 8;

/// Where the scratch starts: vectors of `L` f32 on a cache line boundary are aligned loads.
const ALIGN_BYTES: usize = 64;

/// One layer's blocked filter: its geometry and how it is cut into tasks.
#[derive(Clone, Debug)]
pub(crate) struct BlockedFilter {
    geo: ConvGeometry,
    out_h: usize,
    out_w: usize,
    /// Pixels per scratch row: the padded columns every tap of every output vector reads (whole vectors of
    /// outputs, so the last partial vector reads zeros, not past the row), at least the transposed input's whole
    /// vectors.
    cols: usize,
    /// Output rows per band.
    band_rows: usize,
}

impl BlockedFilter {
    /// The filter of `geo` on `level`, or `None` where this kernel does not apply: the portable level, a channel
    /// multiplier other than 1, a channel count that is not a whole number of vectors, or an empty output.
    pub(crate) fn of(geo: &ConvGeometry, level: SimdLevel) -> Option<BlockedFilter> {
        // Both SIMD levels run 8-lane (AVX2 + FMA) vectors: on Zen 4's 256-bit datapath a 16-lane version was as
        // fast or slower on every MobileNet and EfficientNet-Lite layer (BENCHMARKS.md, eleventh speed pass).
        let simd = matches!(level, SimdLevel::Avx512 | SimdLevel::Avx2) && level.supported();
        if !(simd && cfg!(target_arch = "x86_64")) {
            return None;
        }
        let lanes = LANES;
        let depthwise = geo.is_depthwise() && geo.out_channels == geo.in_channels;
        if !depthwise || !geo.in_channels.is_multiple_of(lanes) || geo.in_w == 0 || geo.in_h == 0 {
            return None;
        }
        let (out_h, out_w) = (geo.out_h()?, geo.out_w()?);
        if out_h == 0 || out_w == 0 || geo.kernel_h == 0 || geo.kernel_w == 0 {
            return None;
        }
        let whole = |n: usize| n.div_ceil(lanes) * lanes;
        let read = (whole(out_w) - 1) * geo.stride_w + (geo.kernel_w - 1) * geo.dilation_w + 1;
        let cols = read.max(geo.pad_left + whole(geo.in_w));
        let row_bytes = cols * lanes * std::mem::size_of::<f32>();
        let reach = (geo.kernel_h - 1) * geo.dilation_h + 1;
        let rows_in_budget = (BAND_BYTES / row_bytes.max(1)).saturating_sub(reach);
        let band_rows = (rows_in_budget / geo.stride_h.max(1) + 1).min(out_h);
        Some(BlockedFilter { geo: *geo, out_h, out_w, cols, band_rows })
    }

    /// Scratch rows of a band of `rows` output rows.
    fn band_in_rows(&self, rows: usize) -> usize {
        (rows - 1) * self.geo.stride_h + (self.geo.kernel_h - 1) * self.geo.dilation_h + 1
    }

    /// `output ← clamp(depthwise_conv(input, weight) + bias)`.
    ///
    /// # Panics
    /// If a length disagrees with the geometry (programming errors of the caller).
    pub(crate) fn run(&self, input: &[f32], weight: &[f32], bias: &[f32], clamp: Clamp, output: &mut [f32]) {
        let geo = &self.geo;
        geo.check(input.len(), weight.len(), output.len());
        assert_eq!(bias.len(), geo.out_channels, "depthwise: bias length");
        let blocks = geo.in_channels / LANES;
        let bands = self.out_h.div_ceil(self.band_rows);
        let out = SharedOut(output.as_mut_ptr());
        (0..geo.batch * blocks * bands).into_par_iter().for_each(|task| {
            let (image, block, band) = (task / (blocks * bands), task / bands % blocks, task % bands);
            let rows = band * self.band_rows..((band + 1) * self.band_rows).min(self.out_h);
            let task = Task { image, first_channel: block * LANES, rows };
            SCRATCH.with_borrow_mut(|s| {
                let taps = geo.kernel_h * geo.kernel_w;
                let scratch_len = self.band_in_rows(self.band_rows) * self.cols * LANES;
                let (scratch, weights) = s.prepare(scratch_len, (taps + 1) * LANES);
                // Per tap a vector of the block's weights, then the block's biases.
                for (t, w) in weights.chunks_exact_mut(LANES).take(taps).enumerate() {
                    for (l, w) in w.iter_mut().enumerate() {
                        *w = weight[(task.first_channel + l) * taps + t];
                    }
                }
                weights[taps * LANES..].copy_from_slice(&bias[task.first_channel..][..LANES]);
                let out = &out;
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `of` chose a level whose CPU runs AVX2 and FMA; the scratch and weights hold what the task
                // reads (sized above); the task writes only its own block's rows of its image, which no other task
                // writes, inside `output` (its length was checked against the geometry).
                unsafe {
                    self.task_avx2(input, weights, clamp, scratch, out.0, &task)
                };
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("BlockedFilter::of accepts x86-64 SIMD levels only: {:?}", (out.0, clamp, scratch));
            });
        });
    }
}

/// The output, written by disjoint tasks.
struct SharedOut(*mut f32);
// SAFETY: every task writes a disjoint set of elements (its image's block of channels, its band of rows).
unsafe impl Sync for SharedOut {}

/// One task: a block of `L` channels of one image, a band of output rows.
struct Task {
    image: usize,
    first_channel: usize,
    rows: std::ops::Range<usize>,
}

/// A thread's scratch and the block's weight vectors, reused across tasks and calls.
struct Scratch {
    data: Vec<f32>,
    weights: Vec<f32>,
}

impl Scratch {
    /// An aligned scratch of `len` values and a weights buffer of `weights` values. Old contents are left: every
    /// task writes all the scratch cells it reads.
    fn prepare(&mut self, len: usize, weights: usize) -> (&mut [f32], &mut [f32]) {
        let spare = ALIGN_BYTES / std::mem::size_of::<f32>();
        if self.data.len() < len + spare {
            self.data.resize(len + spare, 0.0);
        }
        self.weights.resize(weights, 0.0);
        let skip = self.data.as_ptr().align_offset(ALIGN_BYTES).min(spare);
        (&mut self.data[skip..skip + len], &mut self.weights[..])
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch { data: Vec::new(), weights: Vec::new() }) };
}

/// Defines one level's task from the one template; the vector width, the `L × L` transpose and the masked memory
/// operations differ.
#[cfg(target_arch = "x86_64")]
macro_rules! blocked_task {
    (
        fn $name:ident, rows = $rows:ident, flat = $flat:ident, finish = $finish:ident, feature = $feature:literal,
        lanes = $lanes:literal, vector = $v:ty,
        transpose = $transpose:ident, zero = $zero:ident, splat = $splat:ident, load = $load:ident,
        store = $store:ident, loadu = $loadu:ident, storeu = $storeu:ident, fma = $fma:ident, min = $min:ident,
        max = $max:ident,
        masked_load = |$ln:ident, $lptr:ident| $masked_load:expr,
        masked_store = |$sn:ident, $sdst:ident, $sval:ident| $masked_store:expr
    ) => {
        /// Clamps `L` pixels' accumulators, transposes them to channels and stores each channel's first `n` at
        /// `out + l·plane`.
        ///
        /// # Safety
        /// The CPU supports the target features; `out + l·plane .. + n` are writable for every lane `l`.
        #[target_feature(enable = $feature)]
        unsafe fn $finish(acc: &mut [$v; $lanes], clamp: Clamp, out: *mut f32, plane: usize, n: usize) {
            if !clamp.is_none() {
                let (lo, hi) = ($splat(clamp.lo), $splat(clamp.hi));
                // `max(lo, v)` then `min(hi, v)` pass a NaN `v` through: `Clamp::apply_fast`.
                acc.iter_mut().for_each(|a| *a = $min(hi, $max(lo, *a)));
            }
            $transpose(acc);
            for (l, &$sval) in acc.iter().enumerate() {
                // SAFETY: the caller's.
                let $sdst = unsafe { out.add(l * plane) };
                let $sn = n;
                if n == $lanes {
                    // SAFETY: all `L` values are the caller's to write.
                    unsafe { $storeu($sdst, $sval) };
                } else {
                    // SAFETY: only the first n lanes are written, the caller's.
                    unsafe { $masked_store };
                }
            }
        }

        impl BlockedFilter {
            /// One task on `$lanes`-lane vectors.
            ///
            /// # Safety
            /// The CPU supports the target features; `scratch` (aligned to a vector) holds a band's rows,
            /// `weights` a vector per tap and the biases; `out` is the layer's output, which the task's cells are
            /// inside of and no other thread writes.
            #[target_feature(enable = $feature)]
            #[allow(clippy::needless_range_loop)]
            unsafe fn $name(
                &self,
                input: &[f32],
                weights: &[f32],
                clamp: Clamp,
                scratch: &mut [f32],
                out: *mut f32,
                task: &Task,
            ) {
                const L: usize = $lanes;
                let g = &self.geo;
                let (h, w, channels) = (g.in_h, g.in_w, g.in_channels);
                let (oh, ow, cols) = (self.out_h, self.out_w, self.cols);
                let (kh, kw) = (g.kernel_h, g.kernel_w);
                let in_rows = self.band_in_rows(task.rows.len());
                assert!(in_rows * cols * L <= scratch.len() && weights.len() == (kh * kw + 1) * L);
                assert_eq!(scratch.as_ptr().align_offset(L * 4), 0, "blocked depthwise: scratch alignment");
                let plane = |c: usize| ((task.image * channels + task.first_channel + c) * h) * w;
                assert!(plane(L - 1) + h * w <= input.len());
                let s = scratch.as_mut_ptr();
                let whole_w = w.div_ceil(L) * L;

                // The band's input rows, transposed: scratch[r][x][l] = input[channel l][row][x − pad_left].
                for r in 0..in_rows {
                    // SAFETY: r < in_rows, so the row's `cols` vectors lie inside the scratch (asserted above).
                    let row = unsafe { s.add(r * cols * L) };
                    let inside = (task.rows.start * g.stride_h + r).checked_sub(g.pad_top).filter(|&iy| iy < h);
                    let Some(iy) = inside else {
                        for x in 0..cols {
                            // SAFETY: x < cols, inside the row.
                            unsafe { $store(row.add(x * L), $zero()) };
                        }
                        continue;
                    };
                    for x in (0..g.pad_left).chain(g.pad_left + whole_w..cols) {
                        // SAFETY: x < cols (pad_left + whole_w ≤ cols by `of`).
                        unsafe { $store(row.add(x * L), $zero()) };
                    }
                    for x0 in (0..w).step_by(L) {
                        let n = (w - x0).min(L);
                        let mut v: [$v; L] = [$zero(); L];
                        for l in 0..L {
                            // SAFETY: channel l's row iy, columns x0.. x0 + n, inside its plane (asserted above).
                            let $lptr = unsafe { input.as_ptr().add(plane(l) + iy * w + x0) };
                            let $ln = n;
                            v[l] = if n == L {
                                // SAFETY: all L columns are inside the row.
                                unsafe { $loadu($lptr) }
                            } else {
                                // SAFETY: only the first n lanes, inside the row, are read (the rest are zero).
                                unsafe { $masked_load }
                            };
                        }
                        $transpose(&mut v);
                        for j in 0..L {
                            // SAFETY: pad_left + x0 + j < pad_left + whole_w ≤ cols.
                            unsafe { $store(row.add((g.pad_left + x0 + j) * L), v[j]) };
                        }
                    }
                }

                // The taps: L output pixels at a time, then back to channel rows. Rows of at least L pixels go
                // vector by vector along the row; narrower rows (7² planes) take L consecutive pixels of the plane
                // across rows, so few lanes are wasted: their outputs too are contiguous in the plane.
                let first = ((task.image * channels + task.first_channel) * oh + task.rows.start) * ow;
                // SAFETY: `out + first` is the band's first pixel in the task's first channel, inside the output;
                // the rest is this function's contract, and the scratch holds the band's rows (transposed above).
                unsafe {
                    let out = out.add(first);
                    match (ow >= L, g.stride_w) {
                        (true, 1) => self.$rows::<1>(weights, clamp, s, out, task),
                        (true, 2) => self.$rows::<2>(weights, clamp, s, out, task),
                        (true, _) => self.$rows::<0>(weights, clamp, s, out, task),
                        (false, _) => self.$flat(weights, clamp, s, out, task),
                    }
                }
            }

            /// The band's outputs row by row, `L` pixels of a row per block; a stride of `SW` columns (0: the
            /// layer's, read at run time).
            ///
            /// # Safety
            /// As [`Self::$name`]; `s` holds the band's transposed rows, `out` is where the band starts in the
            /// task's first channel.
            #[target_feature(enable = $feature)]
            #[allow(clippy::needless_range_loop)]
            unsafe fn $rows<const SW: usize>(
                &self,
                weights: &[f32],
                clamp: Clamp,
                s: *const f32,
                out: *mut f32,
                task: &Task,
            ) {
                const L: usize = $lanes;
                let g = &self.geo;
                let (kh, kw, cols, ow) = (g.kernel_h, g.kernel_w, self.cols, self.out_w);
                let sw = if SW == 0 { g.stride_w } else { SW };
                let plane = self.out_h * ow;
                let wv = weights.as_ptr();
                // SAFETY: the biases follow the kh·kw tap vectors (`weights` holds both).
                let bias = unsafe { $loadu(wv.add(kh * kw * L)) };
                for y in 0..task.rows.len() {
                    // SAFETY: band row y·sh and the taps below it lie inside the band's scratch rows.
                    let base = unsafe { s.add(y * g.stride_h * cols * L) };
                    for ox0 in (0..ow).step_by(L) {
                        let mut acc = [bias; L];
                        for ky in 0..kh {
                            for kx in 0..kw {
                                // SAFETY: tap ky·kw + kx < kh·kw.
                                let wt = unsafe { $loadu(wv.add((ky * kw + kx) * L)) };
                                let tap = (ky * g.dilation_h * cols + ox0 * sw + kx * g.dilation_w) * L;
                                // SAFETY: column (ox0 + j)·sw + kx·dw < cols for j < L (`of` sizes `cols` for whole
                                // vectors of outputs), row inside the band.
                                let at = unsafe { base.add(tap) };
                                for j in 0..L {
                                    // SAFETY: as above.
                                    acc[j] = $fma(wt, unsafe { $load(at.add(j * sw * L)) }, acc[j]);
                                }
                            }
                        }
                        // SAFETY: pixels ox0.. of row y of the band in each channel: the task's own cells.
                        unsafe { $finish(&mut acc, clamp, out.add(y * ow + ox0), plane, (ow - ox0).min(L)) };
                    }
                }
            }

            /// The band's outputs as one run of pixels, `L` consecutive pixels of the plane per block (across rows).
            ///
            /// # Safety
            /// As [`Self::$rows`].
            #[target_feature(enable = $feature)]
            #[allow(clippy::needless_range_loop)]
            unsafe fn $flat(&self, weights: &[f32], clamp: Clamp, s: *const f32, out: *mut f32, task: &Task) {
                const L: usize = $lanes;
                let g = &self.geo;
                let (kh, kw, cols, ow) = (g.kernel_h, g.kernel_w, self.cols, self.out_w);
                let plane = self.out_h * ow;
                let wv = weights.as_ptr();
                // SAFETY: the biases follow the kh·kw tap vectors.
                let bias = unsafe { $loadu(wv.add(kh * kw * L)) };
                let pixels = task.rows.len() * ow;
                for p0 in (0..pixels).step_by(L) {
                    let n = (pixels - p0).min(L);
                    // Scratch position of tap (0, 0) per lane; lanes past the band's end repeat its last pixel.
                    let at: [*const f32; L] = std::array::from_fn(|j| {
                        let p = p0 + j.min(n - 1);
                        // SAFETY: pixel p of the band: its row and column, and the taps after them, lie inside
                        // the band's scratch.
                        unsafe { s.add(((p / ow) * g.stride_h * cols + (p % ow) * g.stride_w) * L) }
                    });
                    let mut acc = [bias; L];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            // SAFETY: tap ky·kw + kx < kh·kw.
                            let wt = unsafe { $loadu(wv.add((ky * kw + kx) * L)) };
                            let tap = (ky * g.dilation_h * cols + kx * g.dilation_w) * L;
                            for j in 0..L {
                                // SAFETY: as above.
                                acc[j] = $fma(wt, unsafe { $load(at[j].add(tap)) }, acc[j]);
                            }
                        }
                    }
                    // SAFETY: pixels p0.. p0 + n of the band, consecutive in each channel's plane: the task's own.
                    unsafe { $finish(&mut acc, clamp, out.add(p0), plane, n) };
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Transposes 8 vectors of 8 lanes: `v[i][j] ← v[j][i]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn transpose8(v: &mut [__m256; 8]) {
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

/// The lanes below `n` of an AVX2 mask.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn first_lanes8(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

#[cfg(target_arch = "x86_64")]
blocked_task! {
    fn task_avx2, rows = rows_avx2, flat = flat_avx2, finish = finish_avx2, feature = "avx2,fma", lanes = 8, vector = __m256, transpose = transpose8,
    zero = _mm256_setzero_ps, splat = _mm256_set1_ps, load = _mm256_load_ps, store = _mm256_store_ps,
    loadu = _mm256_loadu_ps, storeu = _mm256_storeu_ps, fma = _mm256_fmadd_ps, min = _mm256_min_ps,
    max = _mm256_max_ps,
    masked_load = |n, ptr| _mm256_maskload_ps(ptr, first_lanes8(n)),
    masked_store = |n, dst, val| _mm256_maskstore_ps(dst, first_lanes8(n), val)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::tests::{base_3x3, data_f32 as data, on_threads, variants};
    use crate::depthwise_flat::{backward_data, backward_data_per_plane, forward_per_plane};
    use crate::simd::supported_levels;

    fn simd_levels() -> Vec<SimdLevel> {
        let levels: Vec<SimdLevel> = supported_levels().into_iter().filter(|&l| l != SimdLevel::Portable).collect();
        if levels.is_empty() {
            eprintln!("skipped: this CPU has no AVX2");
        }
        levels
    }

    /// Depthwise geometries with whole vectors of channels: the shared variants (strides, pads, dilations, odd sizes,
    /// batch 2), rows of 1 to 40 pixels around the vector width (the row and the across-rows blocks), strides 2 and
    /// 3, 1×1 to 7×7 kernels, pads beyond the reach and none, and MobileNet's and EfficientNet-Lite's planes.
    fn geometries() -> Vec<ConvGeometry> {
        let base = ConvGeometry { groups: 8, ..base_3x3(8, 8, 8) };
        let mut all: Vec<ConvGeometry> = variants(base)
            .into_iter()
            .map(|g| ConvGeometry { out_channels: g.in_channels, groups: g.in_channels, ..g })
            .collect();
        for w in 1..=40 {
            all.push(ConvGeometry { batch: 1, in_h: 3 + w % 4, in_w: w, ..base });
            all.push(ConvGeometry { batch: 1, in_h: 5, in_w: w, stride_h: 2, stride_w: 2, ..base });
        }
        let with = |k: usize, s: usize, pad: [usize; 4], h: usize, c: usize| ConvGeometry {
            batch: 1,
            in_channels: c,
            out_channels: c,
            groups: c,
            in_h: h,
            in_w: h,
            kernel_h: k,
            kernel_w: k,
            stride_h: s,
            stride_w: s,
            pad_top: pad[0],
            pad_left: pad[1],
            pad_bottom: pad[2],
            pad_right: pad[3],
            ..base
        };
        all.extend([
            with(1, 1, [0; 4], 9, 16),
            with(5, 1, [2; 4], 14, 16),
            with(5, 2, [1, 1, 2, 2], 14, 24),
            with(7, 1, [3; 4], 10, 8),
            with(3, 3, [1, 0, 2, 1], 17, 8),
            with(3, 1, [3, 4, 0, 2], 6, 8),
            with(3, 1, [0; 4], 6, 8),
            with(3, 1, [1; 4], 7, 32),
            with(3, 2, [1; 4], 56, 16),
            with(3, 1, [1; 4], 56, 16),
        ]);
        all.push(ConvGeometry { dilation_h: 2, dilation_w: 3, pad_top: 2, pad_right: 3, ..with(3, 1, [1; 4], 13, 8) });
        all.push(ConvGeometry { in_w: 150, ..with(3, 1, [1; 4], 3, 8) });
        all.retain(|g| g.out_h().is_some_and(|h| h > 0) && g.out_w().is_some_and(|w| w > 0));
        all
    }

    /// The blocked kernel performs each output's operations in the per-plane kernels' order, so it equals them bit
    /// for bit: on every geometry, both clamps, and each SIMD level.
    #[test]
    fn forward_is_bit_identical_to_the_per_plane_kernels() {
        let mut compared = 0;
        for level in simd_levels() {
            for (i, geo) in geometries().iter().enumerate() {
                let blocked = BlockedFilter::of(geo, level).expect("whole vectors of channels");
                let x = data(geo.batch * geo.in_channels * geo.in_plane(), i);
                let w = data(geo.out_channels * geo.k(), i + 1);
                let b = data(geo.out_channels, i + 2);
                for clamp in [Clamp::NONE, Clamp { lo: -0.25, hi: 0.5 }] {
                    let mut want = vec![f32::NAN; geo.batch * geo.out_channels * geo.out_plane()];
                    forward_per_plane(geo, &x, &w, &b, clamp, &mut want, level);
                    let mut got = vec![f32::NAN; want.len()];
                    blocked.run(&x, &w, &b, clamp, &mut got);
                    let same = got.iter().zip(&want).all(|(g, e)| g.to_bits() == e.to_bits());
                    assert!(same, "{level} {geo:?} {clamp:?}");
                    compared += 1;
                }
            }
        }
        assert!(compared >= 150 * simd_levels().len(), "only {compared} comparisons");
    }

    /// The stride-1 input gradient takes the blocked kernel (the mirrored geometry) and equals the per-plane one.
    #[test]
    fn stride_one_input_gradient_is_bit_identical_to_the_per_plane_kernels() {
        let mut blocked = 0;
        for level in simd_levels() {
            for (i, geo) in geometries().iter().enumerate() {
                let w = data(geo.out_channels * geo.k(), i + 3);
                let dy = data(geo.batch * geo.out_channels * geo.out_plane(), i + 4);
                let mut want = vec![f32::NAN; geo.batch * geo.in_channels * geo.in_plane()];
                let took = backward_data_per_plane(geo, &w, &dy, &mut want, level);
                let mut got = vec![f32::NAN; want.len()];
                assert_eq!(backward_data(geo, &w, &dy, &mut got, level), took, "{geo:?}");
                let same = got.iter().zip(&want).all(|(g, e)| g.to_bits() == e.to_bits());
                assert!(same, "{level} {geo:?}");
                blocked += usize::from(took && geo.stride_h == 1 && geo.stride_w == 1);
            }
        }
        assert!(blocked >= 40 * simd_levels().len(), "only {blocked} stride-1 gradients");
    }

    /// The kernel reads only the input planes and writes only the output: the buffers sit inside larger ones
    /// filled with NaN (a lane read outside would bring a NaN into the result, a write outside would overwrite a
    /// guard).
    #[test]
    fn reads_and_writes_nothing_outside_its_buffers() {
        for level in simd_levels() {
            for geo in geometries().iter().filter(|g| g.batch == 1).take(30) {
                let (in_len, out_len) = (geo.in_channels * geo.in_plane(), geo.out_channels * geo.out_plane());
                let x = data(in_len, 5);
                let (w, b) = (data(geo.out_channels * geo.k(), 6), data(geo.out_channels, 7));
                let mut padded_in = vec![f32::NAN; in_len + 64];
                padded_in[32..32 + in_len].copy_from_slice(&x);
                let mut out = vec![f32::NAN; out_len + 64];
                BlockedFilter::of(geo, level).unwrap().run(
                    &padded_in[32..32 + in_len],
                    &w,
                    &b,
                    Clamp::NONE,
                    &mut out[32..32 + out_len],
                );
                assert!(
                    out[..32].iter().chain(&out[32 + out_len..]).all(|v| v.is_nan()),
                    "{level} {geo:?}: wrote outside"
                );
                assert!(out[32..32 + out_len].iter().all(|v| v.is_finite()), "{level} {geo:?}: read outside");
            }
        }
    }

    #[test]
    fn bit_identical_on_one_two_and_four_threads() {
        let geo = ConvGeometry { batch: 2, in_h: 30, in_w: 29, ..base_3x3(24, 24, 24) };
        let x = data(geo.batch * geo.in_channels * geo.in_plane(), 8);
        let (w, b) = (data(geo.out_channels * geo.k(), 9), vec![0.25; geo.out_channels]);
        for level in simd_levels() {
            let run = |threads: usize| {
                let mut y = vec![0.0f32; geo.batch * geo.out_channels * geo.out_plane()];
                on_threads(threads, || BlockedFilter::of(&geo, level).unwrap().run(&x, &w, &b, Clamp::RELU, &mut y));
                y
            };
            let one = run(1);
            assert_eq!(one, run(2), "{level}");
            assert_eq!(one, run(4), "{level}");
        }
    }

    #[test]
    fn declines_what_it_does_not_cover() {
        let base = base_3x3(8, 8, 8);
        for level in simd_levels() {
            assert!(BlockedFilter::of(&base, level).is_some());
            assert!(BlockedFilter::of(&ConvGeometry { out_channels: 16, ..base }, level).is_none(), "multiplier 2");
            let odd = ConvGeometry { in_channels: 12, out_channels: 12, groups: 12, ..base };
            assert!(BlockedFilter::of(&odd, level).is_none(), "12 channels");
            assert!(BlockedFilter::of(&ConvGeometry { in_h: 0, ..base }, level).is_none(), "empty");
        }
        assert!(BlockedFilter::of(&base, SimdLevel::Portable).is_none());
    }
}
