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
//!
//! Both SIMD levels run 8-lane (AVX2 + FMA) vectors: on Zen 4's 256-bit datapath a 16-lane AVX-512 version was as
//! fast or slower on every MobileNetV2 and EfficientNet-Lite0 layer (BENCHMARKS.md, eleventh speed pass).

use crate::conv::DisjointOutput;
use crate::geometry::ConvGeometry;
use crate::lanes8::{finish, first_lanes, runs_on, transpose, wide_registers, LANES};
use crate::packed_gemm::Clamp;
use crate::simd::SimdLevel;
use rayon::prelude::*;
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Bytes of transposed input a band aims at: the scratch a task fills and then reads `KH·KW / (sh·sw)` times should
/// stay in L2 beside the output rows.
///
/// Measured (Zen 4, 2 threads, MobileNetV2 and EfficientNet-Lite0 layers): 32 and 64 KiB bands were up to 1.5×
/// slower on the 112² and 56² planes than 128 KiB, where the halo rows each band transposes again are few; 256 KiB
/// was no faster.
const BAND_BYTES: usize = 128 * 1024;

/// Largest scratch a task may take (a band's transposed rows): beyond it, the layer runs on the per-plane kernels.
/// Real layers need far less (MobileNets' widest: about 130 KiB); a hostile geometry cannot make every thread
/// allocate gigabytes.
const MAX_SCRATCH_BYTES: usize = 64 << 20;

/// Depthwise with multiplier 1, the channels whole vectors, a non-empty input.
fn blocks_channels(geo: &ConvGeometry) -> bool {
    let depthwise = geo.is_depthwise() && geo.out_channels == geo.in_channels;
    depthwise && geo.in_channels.is_multiple_of(LANES) && geo.in_w > 0 && geo.in_h > 0
}

/// `n` rounded up to whole vectors, `None` on overflow.
fn whole(n: usize) -> Option<usize> {
    n.checked_next_multiple_of(LANES)
}

/// Widest kernel rows whose input vectors [`BlockedFilter::rows_slid`] keeps in registers (5 × 5 layers).
const MAX_SLID_TAPS: usize = 5;

/// Largest column stride [`BlockedFilter::rows_slid`] takes: a 5 × 5 layer at stride 2 keeps 19 input vectors
/// beside 8 accumulators and a weight, in AVX-512VL's 32 registers.
const MAX_SLID_STRIDE: usize = 2;

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
    /// AVX-512VL is there (on the AVX-512 level): 8-lane code may use 32 vector registers.
    wide_registers: bool,
}

impl BlockedFilter {
    /// The filter of `geo` on `level`, or `None` where this kernel does not apply: the portable level, a channel
    /// multiplier other than 1, a channel count that is not a whole number of vectors, an empty output, or a band's
    /// scratch above [`MAX_SCRATCH_BYTES`] (sizes from a hostile model file; the per-plane kernels take those).
    pub(crate) fn of(geo: &ConvGeometry, level: SimdLevel) -> Option<BlockedFilter> {
        if !runs_on(level) || !blocks_channels(geo) {
            return None;
        }
        let (out_h, out_w) = (geo.out_h()?, geo.out_w()?);
        if out_h == 0 || out_w == 0 {
            return None;
        }
        // Rows of at least L outputs read whole vectors of outputs (the last one partly past the row, into zeros);
        // narrower rows are read pixel by pixel across rows.
        let read_outputs = if out_w >= LANES { whole(out_w)? } else { out_w };
        let tap_reach = (geo.kernel_w - 1).checked_mul(geo.dilation_w)?;
        let read = (read_outputs - 1).checked_mul(geo.stride_w)?.checked_add(tap_reach)?.checked_add(1)?;
        let cols = read.max(geo.pad_left.checked_add(whole(geo.in_w)?)?);
        let row_bytes = cols.checked_mul(LANES * std::mem::size_of::<f32>())?;
        let reach = (geo.kernel_h - 1).checked_mul(geo.dilation_h)?.checked_add(1)?;
        let rows_in_budget = (BAND_BYTES / row_bytes).saturating_sub(reach);
        let band_rows = (rows_in_budget / geo.stride_h + 1).min(out_h);
        let filter = BlockedFilter { geo: *geo, out_h, out_w, cols, band_rows, wide_registers: wide_registers(level) };
        let scratch_rows = (band_rows - 1).checked_mul(geo.stride_h)?.checked_add(reach)?;
        (scratch_rows.checked_mul(row_bytes)? <= MAX_SCRATCH_BYTES).then_some(filter)
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
        let scratch_len = self.band_in_rows(self.band_rows) * self.cols * LANES;
        let plane = self.out_h * self.out_w;
        let out = DisjointOutput::new(output);
        let blocks =
            Blocks { batch: geo.batch, channels: geo.in_channels, rows: self.out_h, band_rows: self.band_rows };
        blocks.for_each(scratch_len, weight, Some(bias), |task, scratch, weights| {
            // The task's cells: its band of rows in each of its block's channels.
            let first = (task.image * geo.in_channels + task.first_channel) * plane + task.rows.start * self.out_w;
            let out = out.block(first, LANES, task.rows.len() * self.out_w, plane);
            // SAFETY: `of` checked that the CPU runs AVX2 and FMA; the scratch and weights hold what the task reads
            // (sized above); `out` is the task's block of the output (bounds checked), which no other task writes.
            unsafe { self.task_avx2(input, weights, clamp, scratch, out, task) };
        });
    }
}

/// The input gradient of a strided depthwise layer, channel-blocked.
///
/// Input pixel `(iy, ix)` is reached only through the taps `(ky, kx)` with `iy + pad_top − ky·dh` a multiple of
/// `sh` (likewise for columns), from output-gradient pixel `((iy + pad_top − ky·dh)/sh, …)`. A band of the output
/// gradient is transposed into a scratch as in the forward pass, with zero rows and columns in front so that every
/// such index is a scratch index; then, per input row and column phase `ix mod sw`, `L` pixels of that phase (`sw`
/// apart) take the same taps, reading `L` consecutive scratch vectors. Their sums go to a row of vectors, which is
/// transposed back into the `L` channel rows. The taps run in the order of the per-plane kernels (the flipped
/// kernel's row-major order, skipping the taps that would read the zeros between upsampled pixels), from 0: the same
/// results, bit for bit, for finite weights (an infinite or NaN weight times a skipped zero would have made a NaN
/// there, as in the per-plane kernels' phase split).
#[derive(Clone, Debug)]
pub(crate) struct BlockedGradient {
    geo: ConvGeometry,
    out_h: usize,
    out_w: usize,
    /// Zero rows above and zero columns left of the output gradient in the scratch.
    pads: [usize; 2],
    /// Vectors per scratch row.
    cols: usize,
    /// Vectors in the row of sums: whole vectors of every phase's pixels.
    line: usize,
    /// Input-gradient rows per band.
    band_rows: usize,
    /// Output-gradient rows any band reads, at most (`scratch_rows` of every band).
    most_rows: usize,
    /// AVX-512VL is there (on the AVX-512 level): 8-lane code may use 32 vector registers.
    wide_registers: bool,
}

impl BlockedGradient {
    /// The blocked gradient of `geo` on `level`, or `None` where it does not apply: as [`BlockedFilter::of`], or a
    /// stride of 1 (the forward kernel takes those), or padding before the image wider than the kernel's reach.
    pub(crate) fn of(geo: &ConvGeometry, level: SimdLevel) -> Option<BlockedGradient> {
        if !runs_on(level) || !blocks_channels(geo) {
            return None;
        }
        let (out_h, out_w) = (geo.out_h()?, geo.out_w()?);
        let (sh, sw) = (geo.stride_h, geo.stride_w);
        let reach_h = (geo.kernel_h - 1).checked_mul(geo.dilation_h)?;
        let reach_w = (geo.kernel_w - 1).checked_mul(geo.dilation_w)?;
        if out_h == 0 || out_w == 0 || (sh == 1 && sw == 1) || geo.pad_top > reach_h || geo.pad_left > reach_w {
            return None;
        }
        let pads = [(reach_h - geo.pad_top).div_ceil(sh), (reach_w - geo.pad_left).div_ceil(sw)];
        // Phase 0 has the most pixels; its last vector reads furthest, through tap column 0.
        let phase_pixels = whole(geo.in_w.div_ceil(sw))?;
        let ahead_w = pads[1].checked_mul(sw)?.checked_add(geo.pad_left)?;
        let reach = (sw - 1).checked_add(ahead_w)? / sw + phase_pixels - 1;
        let cols = (reach + 1).max(pads[1].checked_add(whole(out_w)?)?);
        let line = sw.checked_mul(phase_pixels)?;
        let row_bytes = cols.checked_mul(LANES * std::mem::size_of::<f32>())?;
        // A band of r input rows reads at most (r − 1 + reach_h)/sh + 2 rows of the output gradient: the budget
        // less those 2.
        let budget_rows = (BAND_BYTES / row_bytes).saturating_sub(2);
        let band_rows = budget_rows.saturating_mul(sh).saturating_sub(reach_h).clamp(1, geo.in_h);
        let most_rows = (band_rows - 1 + reach_h) / sh + 2;
        let bytes = most_rows.checked_mul(row_bytes)?.checked_add(line.checked_mul(LANES * 4)?)?;
        let wide_registers = wide_registers(level);
        let gradient =
            BlockedGradient { geo: *geo, out_h, out_w, pads, cols, line, band_rows, most_rows, wide_registers };
        (bytes <= MAX_SCRATCH_BYTES).then_some(gradient)
    }

    /// The first padded output-gradient row and the number of rows that input rows `rows` read.
    fn scratch_rows(&self, rows: &std::ops::Range<usize>) -> (usize, usize) {
        let g = &self.geo;
        let reach_h = (g.kernel_h - 1) * g.dilation_h;
        let ahead = g.pad_top + self.pads[0] * g.stride_h;
        let first = (rows.start + ahead - reach_h) / g.stride_h;
        (first, (rows.end - 1 + ahead) / g.stride_h - first + 1)
    }

    /// `grad_input ← ∂⟨grad_output, depthwise_conv(x, weight)⟩/∂x` (overwrites it).
    ///
    /// # Panics
    /// If a length disagrees with the geometry (programming errors of the caller).
    pub(crate) fn run(&self, weight: &[f32], grad_output: &[f32], grad_input: &mut [f32]) {
        let geo = &self.geo;
        geo.check(grad_input.len(), weight.len(), grad_output.len());
        let scratch_len = (self.most_rows * self.cols + self.line) * LANES;
        let plane = geo.in_h * geo.in_w;
        let out = DisjointOutput::new(grad_input);
        let blocks = Blocks { batch: geo.batch, channels: geo.in_channels, rows: geo.in_h, band_rows: self.band_rows };
        blocks.for_each(scratch_len, weight, None, |task, scratch, weights| {
            // The task's cells: its band of rows in each of its block's channels.
            let first = (task.image * geo.in_channels + task.first_channel) * plane + task.rows.start * geo.in_w;
            let out = out.block(first, LANES, task.rows.len() * geo.in_w, plane);
            // SAFETY: `of` checked that the CPU runs AVX2 and FMA; the scratch holds the band's rows and the row of
            // sums (sized above); `out` is the task's block of the input gradient (bounds checked), which no other
            // task writes.
            unsafe { self.task_avx2(grad_output, weights, scratch, out, task) };
        });
    }
}

/// How a layer's work is cut: one task per image, block of `LANES` channels and band of `band_rows` of its `rows`
/// rows (output rows forward, input rows for the gradient) — a choice of the shape alone.
struct Blocks {
    batch: usize,
    channels: usize,
    rows: usize,
    band_rows: usize,
}

impl Blocks {
    /// Runs `run(task, scratch, weights)` for every task in parallel, with the thread's aligned scratch of
    /// `scratch_len` values and the block's weights as vectors: per tap the block's `L` weights (OIHW `weight`), then
    /// the block's `bias` if there is one.
    fn for_each(
        &self,
        scratch_len: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        run: impl Fn(&Task, &mut [f32], &[f32]) + Sync,
    ) {
        let (blocks, bands) = (self.channels / LANES, self.rows.div_ceil(self.band_rows));
        let taps = weight.len() / self.channels.max(1);
        (0..self.batch * blocks * bands).into_par_iter().for_each(|task| {
            let (image, block, band) = (task / (blocks * bands), task / bands % blocks, task % bands);
            let rows = band * self.band_rows..((band + 1) * self.band_rows).min(self.rows);
            let task = Task { image, first_channel: block * LANES, rows };
            SCRATCH.with_borrow_mut(|s| {
                let (scratch, weights) = s.prepare(scratch_len, (taps + usize::from(bias.is_some())) * LANES);
                for (t, w) in weights.chunks_exact_mut(LANES).take(taps).enumerate() {
                    for (l, w) in w.iter_mut().enumerate() {
                        *w = weight[(task.first_channel + l) * taps + t];
                    }
                }
                if let Some(bias) = bias {
                    weights[taps * LANES..].copy_from_slice(&bias[task.first_channel..][..LANES]);
                }
                run(&task, scratch, weights);
            });
        });
    }
}

/// `L` channels' planes of `h × w` in a slice: channel `l` starts at `first + l·plane`.
struct Source<'a> {
    planes: &'a [f32],
    first: usize,
    plane: usize,
    h: usize,
    w: usize,
}

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
    /// task writes the scratch cells it reads, except the gradient's row-of-sums lanes past the row's end, which
    /// are transposed with the rest but never stored.
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

/// Transposes rows `r0.. r0 + rows` of the padded planes (`pads` = zero rows above, zero columns to the left)
/// of `L` channels into `scratch[r][x][l]`, `cols` vectors a row, zeros where the padding is.
///
/// # Safety
/// The CPU supports the target features; `scratch` (aligned to a vector) holds `rows · cols` vectors, `cols`
/// is at least `pads[1]` plus the row's whole vectors, and `L` planes from `src.first` lie inside the slice.
#[target_feature(enable = "avx2,fma")]
unsafe fn fill_avx2(src: &Source, r0: usize, rows: usize, pads: [usize; 2], cols: usize, scratch: *mut f32) {
    const L: usize = LANES;
    let whole_w = src.w.div_ceil(L) * L;
    assert!(src.first + (L - 1) * src.plane + src.h * src.w <= src.planes.len());
    for r in 0..rows {
        // SAFETY: r < rows, so the row's `cols` vectors lie inside the scratch.
        let row = unsafe { scratch.add(r * cols * L) };
        let Some(iy) = (r0 + r).checked_sub(pads[0]).filter(|&iy| iy < src.h) else {
            for x in 0..cols {
                // SAFETY: x < cols, inside the row.
                unsafe { _mm256_store_ps(row.add(x * L), _mm256_setzero_ps()) };
            }
            continue;
        };
        for x in (0..pads[1]).chain(pads[1] + whole_w..cols) {
            // SAFETY: x < cols.
            unsafe { _mm256_store_ps(row.add(x * L), _mm256_setzero_ps()) };
        }
        for x0 in (0..src.w).step_by(L) {
            let n = (src.w - x0).min(L);
            let mut v: [__m256; L] = [_mm256_setzero_ps(); L];
            for (l, v) in v.iter_mut().enumerate() {
                let at = src.first + l * src.plane + iy * src.w + x0;
                // SAFETY: channel l's row iy < h, columns x0.. x0 + n ≤ w: inside the slice (asserted above).
                let ptr = unsafe { src.planes.as_ptr().add(at) };
                *v = if n == L {
                    // SAFETY: all L columns are inside the row.
                    unsafe { _mm256_loadu_ps(ptr) }
                } else {
                    // SAFETY: only the first n lanes, inside the row, are read (the rest are zero).
                    unsafe { _mm256_maskload_ps(ptr, first_lanes(n)) }
                };
            }
            transpose(&mut v);
            for (j, v) in v.iter().enumerate() {
                // SAFETY: pads[1] + x0 + j < pads[1] + whole_w ≤ cols.
                unsafe { _mm256_store_ps(row.add((pads[1] + x0 + j) * L), *v) };
            }
        }
    }
}

impl BlockedFilter {
    /// One task on `LANES`-lane vectors.
    ///
    /// # Safety
    /// The CPU supports the target features; `scratch` (aligned to a vector) holds a band's rows,
    /// `weights` a vector per tap and the biases; `out` is where the band starts in the task's first channel of the
    /// output, and the band's rows of its `L` channels (a plane apart) are writable and no other thread's.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn task_avx2(
        &self,
        input: &[f32],
        weights: &[f32],
        clamp: Clamp,
        scratch: &mut [f32],
        out: *mut f32,
        task: &Task,
    ) {
        const L: usize = LANES;
        let g = &self.geo;
        let (h, w, channels) = (g.in_h, g.in_w, g.in_channels);
        let cols = self.cols;
        let (kh, kw) = (g.kernel_h, g.kernel_w);
        let in_rows = self.band_in_rows(task.rows.len());
        assert!(in_rows * cols * L <= scratch.len() && weights.len() == (kh * kw + 1) * L);
        assert_eq!(scratch.as_ptr().align_offset(L * 4), 0, "blocked depthwise: scratch alignment");
        let s = scratch.as_mut_ptr();
        let first = (task.image * channels + task.first_channel) * h * w;
        let src = Source { planes: input, first, plane: h * w, h, w };
        let pads = [g.pad_top, g.pad_left];
        // SAFETY: the scratch holds in_rows rows of `cols` vectors (asserted above) and `cols` ≥ pad_left +
        // the row's whole vectors (`of`); `fill` checks the planes against the input.
        unsafe { fill_avx2(&src, task.rows.start * g.stride_h, in_rows, pads, cols, s) };

        // The taps: L output pixels at a time, then back to channel rows. Rows of at least L pixels go
        // vector by vector along the row; narrower rows (7² planes) take L consecutive pixels of the plane
        // across rows, so few lanes are wasted: their outputs too are contiguous in the plane.
        // SAFETY: this function's contract, and the scratch holds the band's rows (transposed above).
        unsafe {
            let slid = self.wide_registers && g.dilation_w == 1;
            match (self.out_w >= L, g.stride_w) {
                // (`wide_registers`: `of` found AVX-512F and AVX-512VL.)
                (true, 1) if slid && g.kernel_w == 3 => self.rows_slid::<1, 3>(weights, clamp, s, out, task),
                (true, 1) if slid && g.kernel_w == 5 => self.rows_slid::<1, 5>(weights, clamp, s, out, task),
                (true, 2) if slid && g.kernel_w == 3 => self.rows_slid::<2, 3>(weights, clamp, s, out, task),
                (true, 2) if slid && g.kernel_w == 5 => self.rows_slid::<2, 5>(weights, clamp, s, out, task),
                (true, 1) => self.rows_avx2::<1>(weights, clamp, s, out, task),
                (true, 2) => self.rows_avx2::<2>(weights, clamp, s, out, task),
                (true, _) => self.rows_avx2::<0>(weights, clamp, s, out, task),
                (false, _) => self.flat_avx2(weights, clamp, s, out, task),
            }
        }
    }

    /// The band's outputs row by row, `L` pixels of a row per block; a stride of `SW` columns (0: the
    /// layer's, read at run time).
    ///
    /// # Safety
    /// As [`Self::task_avx2`]; `s` holds the band's transposed rows, `out` is where the band starts in the
    /// task's first channel.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn rows_avx2<const SW: usize>(
        &self,
        weights: &[f32],
        clamp: Clamp,
        s: *const f32,
        out: *mut f32,
        task: &Task,
    ) {
        const L: usize = LANES;
        let g = &self.geo;
        let (kh, kw, cols, ow) = (g.kernel_h, g.kernel_w, self.cols, self.out_w);
        let sw = if SW == 0 { g.stride_w } else { SW };
        let plane = self.out_h * ow;
        let wv = weights.as_ptr();
        // SAFETY: the biases follow the kh·kw tap vectors (`weights` holds both).
        let bias = unsafe { _mm256_loadu_ps(wv.add(kh * kw * L)) };
        for y in 0..task.rows.len() {
            // SAFETY: band row y·sh and the taps below it lie inside the band's scratch rows.
            let base = unsafe { s.add(y * g.stride_h * cols * L) };
            for ox0 in (0..ow).step_by(L) {
                let mut acc = [bias; L];
                for ky in 0..kh {
                    for kx in 0..kw {
                        // SAFETY: tap ky·kw + kx < kh·kw.
                        let wt = unsafe { _mm256_loadu_ps(wv.add((ky * kw + kx) * L)) };
                        let tap = (ky * g.dilation_h * cols + ox0 * sw + kx * g.dilation_w) * L;
                        // SAFETY: column (ox0 + j)·sw + kx·dw < cols for j < L (`of` sizes `cols` for whole
                        // vectors of outputs), row inside the band.
                        let at = unsafe { base.add(tap) };
                        for j in 0..L {
                            // SAFETY: as above.
                            acc[j] = _mm256_fmadd_ps(wt, unsafe { _mm256_load_ps(at.add(j * sw * L)) }, acc[j]);
                        }
                    }
                }
                // SAFETY: pixels ox0.. of row y of the band in each channel: the task's own cells.
                unsafe { finish(&mut acc, clamp, out.add(y * ow + ox0), plane, (ow - ox0).min(L)) };
            }
        }
    }

    /// [`Self::rows_avx2`] for rows read at a stride of `SW` ≤ [`MAX_SLID_STRIDE`] columns with `KW` ≤
    /// [`MAX_SLID_TAPS`] taps a row one column apart, with AVX-512VL's 32 registers: tap `kx` of pixel `j` reads
    /// input vector `j·SW + kx`, which other pixels' taps read too, so each kernel row loads its `(L − 1)·SW + KW`
    /// input vectors once into registers, rather than `L · KW` vectors (at 3 × 3: 10 loads for 24, or 17 at stride
    /// 2). Each output takes the same FMAs in the same order. (With AVX2's 16 registers the inputs, accumulators
    /// and weight do not fit: [`Self::rows_avx2`] runs there.)
    ///
    /// # Safety
    /// As [`Self::rows_avx2`], with `stride_w` = `SW`, `dilation_w` 1, `kernel_w` = `KW`, and AVX-512F and
    /// AVX-512VL on the CPU.
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn rows_slid<const SW: usize, const KW: usize>(
        &self,
        weights: &[f32],
        clamp: Clamp,
        s: *const f32,
        out: *mut f32,
        task: &Task,
    ) {
        const L: usize = LANES;
        let g = &self.geo;
        debug_assert!(g.stride_w == SW && g.dilation_w == 1 && g.kernel_w == KW);
        debug_assert!(SW <= MAX_SLID_STRIDE && KW <= MAX_SLID_TAPS);
        let (kh, cols, ow) = (g.kernel_h, self.cols, self.out_w);
        let plane = self.out_h * ow;
        let wv = weights.as_ptr();
        // SAFETY: (for the whole body) the CPU supports the target features (the caller's); the loads are the
        // ones `rows_avx2` makes — columns (ox0 + j)·SW + kx < cols for j < L, kx < KW (`of` sizes `cols` for whole
        // vectors of outputs), rows inside the band — and the weights' kh·KW tap vectors and the biases after them.
        unsafe {
            let bias = _mm256_loadu_ps(wv.add(kh * KW * L));
            for y in 0..task.rows.len() {
                let base = s.add(y * g.stride_h * cols * L);
                for ox0 in (0..ow).step_by(L) {
                    let mut acc = [bias; L];
                    for ky in 0..kh {
                        let row = base.add((ky * g.dilation_h * cols + ox0 * SW) * L);
                        // The row's input vectors from ox0·SW that the block's taps read (the rest unused).
                        let x: [__m256; (L - 1) * MAX_SLID_STRIDE + MAX_SLID_TAPS] = std::array::from_fn(|c| {
                            if c < (L - 1) * SW + KW {
                                _mm256_load_ps(row.add(c * L))
                            } else {
                                _mm256_setzero_ps()
                            }
                        });
                        for kx in 0..KW {
                            let wt = _mm256_loadu_ps(wv.add((ky * KW + kx) * L));
                            for j in 0..L {
                                acc[j] = _mm256_fmadd_ps(wt, x[j * SW + kx], acc[j]);
                            }
                        }
                    }
                    finish(&mut acc, clamp, out.add(y * ow + ox0), plane, (ow - ox0).min(L));
                }
            }
        }
    }

    /// The band's outputs as one run of pixels, `L` consecutive pixels of the plane per block (across rows).
    ///
    /// # Safety
    /// As [`Self::rows_avx2`].
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn flat_avx2(&self, weights: &[f32], clamp: Clamp, s: *const f32, out: *mut f32, task: &Task) {
        const L: usize = LANES;
        let g = &self.geo;
        let (kh, kw, cols, ow) = (g.kernel_h, g.kernel_w, self.cols, self.out_w);
        let plane = self.out_h * ow;
        let wv = weights.as_ptr();
        // SAFETY: the biases follow the kh·kw tap vectors.
        let bias = unsafe { _mm256_loadu_ps(wv.add(kh * kw * L)) };
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
                    let wt = unsafe { _mm256_loadu_ps(wv.add((ky * kw + kx) * L)) };
                    let tap = (ky * g.dilation_h * cols + kx * g.dilation_w) * L;
                    for j in 0..L {
                        // SAFETY: as above.
                        acc[j] = _mm256_fmadd_ps(wt, unsafe { _mm256_load_ps(at[j].add(tap)) }, acc[j]);
                    }
                }
            }
            // SAFETY: pixels p0.. p0 + n of the band, consecutive in each channel's plane: the task's own.
            unsafe { finish(&mut acc, clamp, out.add(p0), plane, n) };
        }
    }
}

impl BlockedGradient {
    /// One task on `LANES`-lane vectors.
    ///
    /// # Safety
    /// The CPU supports the target features; `scratch` (aligned to a vector) holds the band's rows and the
    /// row of sums, `weights` a vector per tap; `out` is where the band starts in the task's first channel of the
    /// input gradient, and the band's rows of its `L` channels (a plane apart) are writable and no other thread's.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn task_avx2(&self, grad_output: &[f32], weights: &[f32], scratch: &mut [f32], out: *mut f32, task: &Task) {
        const L: usize = LANES;
        let g = &self.geo;
        let (kh, kw, sh, sw, cols) = (g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, self.cols);
        let (first_row, rows) = self.scratch_rows(&task.rows);
        assert!((rows * cols + self.line) * L <= scratch.len() && weights.len() == kh * kw * L);
        assert_eq!(scratch.as_ptr().align_offset(L * 4), 0, "blocked depthwise: scratch alignment");
        let s = scratch.as_mut_ptr();
        let plane = self.out_h * self.out_w;
        let first = (task.image * g.in_channels + task.first_channel) * plane;
        let src = Source { planes: grad_output, first, plane, h: self.out_h, w: self.out_w };
        // SAFETY: the scratch holds `rows` rows of `cols` vectors (asserted above), `cols` ≥ pads[1] + the
        // row's whole vectors (`of`); `fill` checks the planes against the output gradient.
        unsafe { fill_avx2(&src, first_row, rows, self.pads, cols, s) };
        // SAFETY: the row of sums follows the band's rows in the scratch (asserted above).
        let line = unsafe { s.add(rows * cols * L) };
        let (ahead_h, ahead_w) = (g.pad_top + self.pads[0] * sh, g.pad_left + self.pads[1] * sw);
        let wv = weights.as_ptr();
        let in_plane = g.in_h * g.in_w;
        for iy in task.rows.clone() {
            for px in 0..sw.min(g.in_w) {
                let pixels = (g.in_w - px).div_ceil(sw);
                // The phase's taps along a row are every sw-th kx from the last that lands on it: with AVX-512VL and
                // at most MAX_PHASE_TAPS of them, their input vectors are loaded once per kernel row (`phase_slid`).
                let top = (0..kw).rev().find(|&kx| (px + ahead_w - kx).is_multiple_of(sw));
                let taps = top.map_or(0, |top| top / sw + 1);
                if let (Some(top), true) = (top, self.wide_registers && g.dilation_w == 1 && taps <= MAX_PHASE_TAPS) {
                    let phase = Phase { iy, px, top, first_row, pixels };
                    // SAFETY: `of` found AVX2, FMA, AVX-512F and AVX-512VL (`runs_on`, `wide_registers`); the
                    // scratch holds the band's rows and the row of sums (asserted above), which `phase_slid` reads
                    // and writes as the loop below does; the phase has `taps` taps.
                    unsafe {
                        match taps {
                            1 => self.phase_slid::<1>(s, line, wv, &phase),
                            2 => self.phase_slid::<2>(s, line, wv, &phase),
                            _ => self.phase_slid::<3>(s, line, wv, &phase),
                        }
                    };
                    continue;
                }
                for m0 in (0..pixels).step_by(L) {
                    let mut acc = [_mm256_setzero_ps(); L];
                    for ky in (0..kh).rev() {
                        let y = iy + ahead_h - ky * g.dilation_h;
                        if !y.is_multiple_of(sh) {
                            continue;
                        }
                        // SAFETY: y / sh − first_row < rows (`scratch_rows` covers every tap of the band).
                        let tap_row = unsafe { s.add((y / sh - first_row) * cols * L) };
                        for kx in (0..kw).rev() {
                            let x = px + ahead_w - kx * g.dilation_w;
                            if !x.is_multiple_of(sw) {
                                continue;
                            }
                            // SAFETY: tap ky·kw + kx < kh·kw.
                            let wt = unsafe { _mm256_loadu_ps(wv.add((ky * kw + kx) * L)) };
                            // SAFETY: columns m0 + x/sw + j < cols for j < L (`of` sizes `cols` for whole
                            // vectors of phase 0, the longest, through tap column 0, the furthest).
                            let at = unsafe { tap_row.add((m0 + x / sw) * L) };
                            for j in 0..L {
                                // SAFETY: as above.
                                acc[j] = _mm256_fmadd_ps(wt, unsafe { _mm256_load_ps(at.add(j * L)) }, acc[j]);
                            }
                        }
                    }
                    for j in 0..L {
                        // SAFETY: px + sw·(m0 + j) < sw · (whole vectors of phase 0) = `line`.
                        unsafe { _mm256_store_ps(line.add((px + sw * (m0 + j)) * L), acc[j]) };
                    }
                }
            }
            let row = (iy - task.rows.start) * g.in_w;
            for x0 in (0..g.in_w).step_by(L) {
                // SAFETY: x0 + L ≤ whole vectors of the row ≤ `line`.
                let mut v: [__m256; L] = std::array::from_fn(|j| unsafe { _mm256_load_ps(line.add((x0 + j) * L)) });
                // SAFETY: columns x0.. of row iy in the block's L channels: the task's own cells.
                unsafe { finish(&mut v, Clamp::NONE, out.add(row + x0), in_plane, (g.in_w - x0).min(L)) };
            }
        }
    }
}

/// Most taps a row of [`BlockedGradient::phase_slid`] keeps the input vectors of in registers: a 5 × 5 kernel at
/// stride 2 gives a phase 3.
const MAX_PHASE_TAPS: usize = 3;

/// One phase of one input-gradient row: its row, its first column, the last tap column that lands on it, the band's
/// first scratch row, and its pixel count.
struct Phase {
    iy: usize,
    px: usize,
    top: usize,
    first_row: usize,
    pixels: usize,
}

impl BlockedGradient {
    /// The sums of one phase of an input-gradient row into the row of sums, as [`Self::task_avx2`]'s loop makes
    /// them, with AVX-512VL's 32 registers: the phase's `T` taps along a row (`top`, `top − sw`, …) read input
    /// vectors `m0 + c + t + j` (`c` the top tap's column, `j < L`), so each kernel row loads its `L + T − 1`
    /// vectors once rather than `L·T`. Each sum takes the same FMAs in the same order.
    ///
    /// # Safety
    /// The CPU supports the target features; `dilation_w` is 1; `s` holds the band's scratch rows and `line` the
    /// row of sums, as in [`Self::task_avx2`]; `phase` is one of that loop's phases, with `T` ≤ [`MAX_PHASE_TAPS`]
    /// taps.
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn phase_slid<const T: usize>(&self, s: *mut f32, line: *mut f32, wv: *const f32, phase: &Phase) {
        const L: usize = LANES;
        let g = &self.geo;
        let (kh, kw, sh, sw, cols) = (g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, self.cols);
        let (ahead_h, ahead_w) = (g.pad_top + self.pads[0] * sh, g.pad_left + self.pads[1] * sw);
        let Phase { iy, px, top, first_row, pixels } = *phase;
        debug_assert!(T <= MAX_PHASE_TAPS && top / sw + 1 == T, "blocked depthwise: {T} taps for tap {top}");
        // The top tap's input column: the others follow one column apart.
        let c = (px + ahead_w - top) / sw;
        // SAFETY: (for the whole body) the CPU supports the target features (the caller's); the loads are the ones
        // `task_avx2` makes — columns m0 + (px + ahead_w − kx)/sw + j < cols for every tap kx of the phase and
        // j < L, rows inside the band — and the weights' tap vectors; the stores go to the row of sums as there.
        unsafe {
            for m0 in (0..pixels).step_by(L) {
                let mut acc = [_mm256_setzero_ps(); L];
                for ky in (0..kh).rev() {
                    let y = iy + ahead_h - ky * g.dilation_h;
                    if !y.is_multiple_of(sh) {
                        continue;
                    }
                    let at = s.add(((y / sh - first_row) * cols + m0 + c) * L);
                    let x: [__m256; L + MAX_PHASE_TAPS - 1] = std::array::from_fn(|v| {
                        if v < L + T - 1 {
                            _mm256_load_ps(at.add(v * L))
                        } else {
                            _mm256_setzero_ps()
                        }
                    });
                    for t in 0..T {
                        let wt = _mm256_loadu_ps(wv.add((ky * kw + top - t * sw) * L));
                        for j in 0..L {
                            acc[j] = _mm256_fmadd_ps(wt, x[j + t], acc[j]);
                        }
                    }
                }
                for j in 0..L {
                    _mm256_store_ps(line.add((px + sw * (m0 + j)) * L), acc[j]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::tests::{base_3x3, data_f32 as data, on_threads, simd_levels, variants};
    use crate::depthwise_flat::{backward_data, backward_data_per_plane, forward_per_plane};

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
        // Asymmetric strides.
        for (sh, sw) in [(1, 2), (2, 1), (1, 3), (3, 2)] {
            all.push(ConvGeometry { stride_h: sh, stride_w: sw, pad_bottom: 2, ..with(3, 1, [1; 4], 13, 8) });
        }
        // Several bands: wide rows (about 10 bands, and the gradient's bands at stride 2), a tall plane of narrow
        // rows (the across-rows blocks, 5 bands), and rows so wide that a band is one output row.
        all.push(with(3, 2, [1; 4], 1, 8));
        all.push(ConvGeometry { in_h: 80, in_w: 400, ..with(3, 1, [1; 4], 1, 8) });
        all.push(ConvGeometry { in_h: 80, in_w: 400, ..with(3, 2, [1; 4], 1, 8) });
        all.push(ConvGeometry { in_h: 2000, in_w: 5, ..with(3, 1, [1; 4], 1, 8) });
        all.push(ConvGeometry {
            in_h: 12,
            in_w: 1500,
            kernel_h: 5,
            pad_top: 2,
            pad_bottom: 2,
            ..with(3, 1, [1; 4], 1, 8)
        });
        all.push(ConvGeometry {
            in_h: 40,
            in_w: 1500,
            kernel_h: 5,
            pad_top: 2,
            pad_bottom: 2,
            ..with(3, 2, [1; 4], 1, 8)
        });
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

    /// The input gradient takes the blocked kernels — the forward one on the mirrored geometry at stride 1, the
    /// phase-by-phase one on strided layers — and equals the per-plane kernels bit for bit.
    #[test]
    fn input_gradient_is_bit_identical_to_the_per_plane_kernels() {
        let (mut stride_one, mut strided) = (0, 0);
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
                let unit = geo.stride_h == 1 && geo.stride_w == 1;
                stride_one += usize::from(took && unit);
                strided += usize::from(BlockedGradient::of(geo, level).is_some());
                if let Some(blocked) = BlockedGradient::of(geo, level) {
                    let mut direct = vec![f32::NAN; want.len()];
                    blocked.run(&w, &dy, &mut direct);
                    assert!(direct.iter().zip(&want).all(|(g, e)| g.to_bits() == e.to_bits()), "{level} {geo:?}");
                }
            }
        }
        let levels = simd_levels().len();
        assert!(stride_one >= 40 * levels && strided >= 40 * levels, "{stride_one} stride-1, {strided} strided");
    }

    /// The kernel reads only the input planes and writes only the output: the buffers sit inside larger ones
    /// filled with NaN (a lane read outside would bring a NaN into the result, a write outside would overwrite a
    /// guard).
    #[test]
    fn reads_and_writes_nothing_outside_its_buffers() {
        for level in simd_levels() {
            for geo in geometries().iter().filter(|g| g.batch == 1) {
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
                if let Some(gradient) = BlockedGradient::of(geo, level) {
                    // The output gradient sits in the NaN-guarded buffer now, the input gradient in the other.
                    let dy = data(out_len, 8);
                    let mut padded_dy = vec![f32::NAN; out_len + 64];
                    padded_dy[32..32 + out_len].copy_from_slice(&dy);
                    let mut dx = vec![f32::NAN; in_len + 64];
                    gradient.run(&w, &padded_dy[32..32 + out_len], &mut dx[32..32 + in_len]);
                    let guards = dx[..32].iter().chain(&dx[32 + in_len..]);
                    assert!(guards.into_iter().all(|v| v.is_nan()), "{level} {geo:?}: gradient wrote outside");
                    assert!(
                        dx[32..32 + in_len].iter().all(|v| v.is_finite()),
                        "{level} {geo:?}: gradient read outside"
                    );
                }
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
                let strided = ConvGeometry { stride_h: 2, stride_w: 2, ..geo };
                let dy = data(strided.batch * strided.out_channels * strided.out_plane(), 10);
                let mut dx = vec![0.0f32; x.len()];
                on_threads(threads, || BlockedGradient::of(&strided, level).unwrap().run(&w, &dy, &mut dx));
                (y, dx)
            };
            let one = run(1);
            assert_eq!(one, run(2), "{level}");
            assert_eq!(one, run(4), "{level}");
        }
    }

    #[test]
    fn the_test_geometries_cut_into_several_bands() {
        for level in simd_levels() {
            let bands = |g: &ConvGeometry| {
                let f = BlockedFilter::of(g, level).unwrap();
                f.out_h.div_ceil(f.band_rows)
            };
            let gradient_bands =
                |g: &ConvGeometry| BlockedGradient::of(g, level).map_or(0, |f| f.geo.in_h.div_ceil(f.band_rows));
            let all = geometries();
            assert!(all.iter().any(|g| bands(g) >= 10 && g.out_w().unwrap() >= LANES));
            assert!(all.iter().any(|g| bands(g) >= 5 && g.out_w().unwrap() < LANES));
            assert!(all.iter().any(|g| BlockedFilter::of(g, level).unwrap().band_rows == 1));
            assert!(all.iter().any(|g| gradient_bands(g) >= 3));
            assert!(all.iter().any(|g| BlockedGradient::of(g, level).is_some_and(|f| f.band_rows == 1)));
        }
    }

    /// Sizes a hostile model file may declare: the blocked kernels decline them (no overflow, no huge scratch),
    /// leaving them to the per-plane kernels.
    #[test]
    fn declines_sizes_whose_scratch_would_overflow_or_be_huge() {
        let base = ConvGeometry { groups: 8, ..base_3x3(8, 8, 8) };
        for level in simd_levels() {
            // One output column whatever the stride: the forward kernel reads only its taps (and runs it right),
            // the gradient's row of sums would be `stride` vectors long.
            let stride = ConvGeometry { in_w: 8, kernel_w: 3, stride_w: 1 << 61, pad_left: 0, pad_right: 0, ..base };
            assert_eq!(stride.out_w(), Some(1));
            let x = data(stride.batch * stride.in_channels * stride.in_plane(), 1);
            let (w, b) = (data(stride.out_channels * stride.k(), 2), data(stride.out_channels, 3));
            // The same single column as a stride of 8 (the per-plane kernels' scratch grows with the stride).
            let eight = ConvGeometry { stride_w: 8, ..stride };
            let mut want = vec![0.0f32; stride.batch * stride.out_channels * stride.out_plane()];
            forward_per_plane(&eight, &x, &w, &b, Clamp::NONE, &mut want, level);
            let mut got = vec![f32::NAN; want.len()];
            BlockedFilter::of(&stride, level).unwrap().run(&x, &w, &b, Clamp::NONE, &mut got);
            assert!(got.iter().zip(&want).all(|(g, e)| g.to_bits() == e.to_bits()), "{got:?} vs {want:?}");
            assert!(BlockedGradient::of(&stride, level).is_none());
            let wide = ConvGeometry { pad_left: 1 << 40, ..base };
            assert!(BlockedFilter::of(&wide, level).is_none());
            let dilated = ConvGeometry { dilation_w: usize::MAX / 2, ..base };
            assert!(BlockedFilter::of(&dilated, level).is_none());
            let tall = ConvGeometry { kernel_h: 1 << 20, pad_top: 1 << 20, in_h: 8, ..base };
            assert!(BlockedFilter::of(&tall, level).is_none() && BlockedGradient::of(&tall, level).is_none());
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
