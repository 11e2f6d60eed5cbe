//! Convolutions with few input channels — the RGB stems (3 → 32 at 3×3/2, 3 → 64 at 7×7/2) — as a direct kernel that
//! keeps output channels in the vector lanes.
//!
//! As im2col + GEMM, a stem's product has only `K = C_in·KH·KW` = 27 or 147 rows, gathered from strided input columns
//! and packed on every call, for a few dozen output channels. On one Zen 4 thread those layers ran at 1.45–1.6×
//! onnxruntime's time (BENCHMARKS.md, eleventh speed pass). Here output pixel `(oy, ox)` is
//! `bias + Σ_{c, ky, kx} w[:, c, ky, kx] · x[c, oy·sh + ky·dh − pad_top, ox·sw + kx·dw − pad_left]`, computed straight
//! from zero-padded copies of the input rows: each input value is broadcast once and multiplied into two weight
//! vectors of output channels (8 channels each with AVX2, 16 at the AVX-512 level where the channels fill whole
//! vectors), for 6 neighbouring pixels at a time (12 accumulators). A row's outputs collect pixel-major in a scratch
//! row, which is transposed back into the channel rows with the clamp applied.
//!
//! Each output is `0 + bias`, then the taps by fused multiply-add in the order `(c, ky, kx)` — the order of the
//! packed GEMM's `K`, across its `K` blocks too — with padding read as 0, then the clamp: the packed GEMM's
//! operations, so the results are bit-identical to that path (up to the payload of a NaN, which an FMA may take from
//! either NaN operand). Tasks are bands of 4 output rows by chunks of 256 columns, so the scratch stays small
//! whatever the size.

use crate::conv::DisjointOutput;
use crate::geometry::ConvGeometry;
use crate::lanes8::{finish, runs_on, LANES};
use crate::packed_gemm::Clamp;
use crate::simd::SimdLevel;
use rayon::prelude::*;
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Most input channels this kernel takes: with more, `K` is large enough for the packed GEMM.
const MAX_IN_CHANNELS: usize = 4;

/// Output pixels per register block.
const PIXELS: usize = 6;

/// Output-channel vectors per register block.
const BLOCKS: usize = 2;

/// Output rows per task: enough tasks to balance a 112-row stem on a few threads, few enough that each task's
/// padded input rows are reused by several output rows.
const TASK_ROWS: usize = 4;

/// Output columns per task: a task's scratch (padded input rows, a row of outputs) stays small whatever the width —
/// 112- and 224-pixel rows are one chunk.
const TASK_COLS: usize = 256;

/// A convolution's weights laid out for this kernel: per vector of 8 or 16 output channels, per tap `(c, ky, kx)`,
/// the vector's weights; and the bias (zeros where there is none).
#[derive(Clone, Debug)]
pub(crate) struct BroadcastWeights {
    out_channels: usize,
    in_channels: usize,
    kernel: [usize; 2],
    /// Output channels per vector: 16 where [`wide_vectors`] says so, else 8.
    lanes: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// Whether the kernel runs on vectors of 16 output channels: at the AVX-512 level, for whole 16-channel vectors.
/// Each FMA then does twice the work for the same broadcast and loop, so cores with 512-bit FMA units (Intel's)
/// run it at up to twice the 8-lane kernel's rate, and cores that split them in two halves (Zen 4) do the same work
/// in half the instructions.
fn wide_vectors(level: SimdLevel, out_channels: usize) -> bool {
    level == SimdLevel::Avx512 && level.supported() && out_channels.is_multiple_of(2 * LANES)
}

impl BroadcastWeights {
    /// Lays out OIHW `weight` for `level`, or `None` where this kernel does not apply: a level without AVX2 and FMA,
    /// groups, more than [`MAX_IN_CHANNELS`] input channels, or output channels that are not whole vectors.
    pub(crate) fn new(
        level: SimdLevel,
        weight: &[f32],
        bias: Option<&[f32]>,
        out_channels: usize,
        in_channels: usize,
        kernel: [usize; 2],
        groups: usize,
    ) -> Option<BroadcastWeights> {
        let fits = groups == 1 && (1..=MAX_IN_CHANNELS).contains(&in_channels) && out_channels.is_multiple_of(LANES);
        if !(runs_on(level) && fits && out_channels > 0) {
            return None;
        }
        let taps = in_channels * kernel[0] * kernel[1];
        assert_eq!(weight.len(), out_channels * taps, "broadcast conv: weight length");
        let lanes = if wide_vectors(level, out_channels) { 2 * LANES } else { LANES };
        assert!(bias.is_none_or(|b| b.len() == out_channels), "broadcast conv: bias length");
        let mut weights = vec![0.0; weight.len()];
        for (o, w) in weight.chunks_exact(taps).enumerate() {
            let (block, lane) = (o / lanes, o % lanes);
            for (t, &v) in w.iter().enumerate() {
                weights[(block * taps + t) * lanes + lane] = v;
            }
        }
        let bias = bias.map_or_else(|| vec![0.0; out_channels], <[f32]>::to_vec);
        Some(BroadcastWeights { out_channels, in_channels, kernel, lanes, weights, bias })
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        (self.weights.len() + self.bias.len()) * std::mem::size_of::<f32>()
    }
}

/// Sizes of one layer's run.
struct Plan {
    out_h: usize,
    out_w: usize,
    /// Values per padded input row of a chunk of [`TASK_COLS`] output columns.
    padded_w: usize,
    /// Padded input rows a task of [`TASK_ROWS`] output rows reads.
    task_in_rows: usize,
}

impl Plan {
    /// `None` where a size overflows (no buffer has such a size: the caller's length check fails first).
    fn of(geo: &ConvGeometry) -> Option<Plan> {
        let (out_h, out_w) = (geo.out_h()?, geo.out_w()?);
        let reach_w = (geo.kernel_w - 1).checked_mul(geo.dilation_w)?;
        let reach_h = (geo.kernel_h - 1).checked_mul(geo.dilation_h)?;
        let cols = TASK_COLS.min(out_w).max(1);
        let padded_w = (cols - 1).checked_mul(geo.stride_w)?.checked_add(reach_w)?.checked_add(1)?;
        let task_in_rows = (TASK_ROWS - 1).checked_mul(geo.stride_h)?.checked_add(reach_h)?.checked_add(1)?;
        geo.in_channels.checked_mul(task_in_rows)?.checked_mul(padded_w)?;
        Some(Plan { out_h, out_w, padded_w, task_in_rows })
    }
}

/// One task's part of the output: a band of rows, a chunk of columns.
struct Part {
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
}

thread_local! {
    /// A task's padded input rows and row of outputs, reused across tasks and calls.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `output ← clamp(conv(input, weights) + bias)`.
///
/// # Panics
/// If the weights do not fit `geo` or a length disagrees with it (programming errors of the caller).
pub(crate) fn forward(geo: &ConvGeometry, input: &[f32], weights: &BroadcastWeights, clamp: Clamp, output: &mut [f32]) {
    assert!(
        geo.groups == 1
            && geo.in_channels == weights.in_channels
            && geo.out_channels == weights.out_channels
            && [geo.kernel_h, geo.kernel_w] == weights.kernel,
        "broadcast conv: weights do not fit {geo:?}"
    );
    geo.check(input.len(), weights.weights.len(), output.len());
    let plan = Plan::of(geo).expect("sizes of existing buffers do not overflow");
    let out_plane = plan.out_h * plan.out_w;
    if out_plane == 0 {
        return;
    }
    let (bands, chunks) = (plan.out_h.div_ceil(TASK_ROWS), plan.out_w.div_ceil(TASK_COLS));
    let in_image = geo.in_channels * geo.in_h * geo.in_w;
    output.par_chunks_mut(weights.out_channels * out_plane).enumerate().for_each(|(image, out)| {
        let x = &input[image * in_image..(image + 1) * in_image];
        let out = DisjointOutput::new(out);
        (0..bands * chunks).into_par_iter().for_each(|task| {
            let (band, chunk) = (task / chunks, task % chunks);
            let part = Part {
                rows: band * TASK_ROWS..((band + 1) * TASK_ROWS).min(plan.out_h),
                cols: chunk * TASK_COLS..((chunk + 1) * TASK_COLS).min(plan.out_w),
            };
            SCRATCH.with_borrow_mut(|(padded, line)| {
                padded.resize(geo.in_channels * plan.task_in_rows * plan.padded_w, 0.0);
                line.resize(TASK_COLS.min(plan.out_w).next_multiple_of(LANES) * weights.out_channels, 0.0);
                pad_rows(geo, &plan, x, &part, padded);
                // The part's cells: its rows × columns in every channel (the block spans each channel's rows).
                let first = part.rows.start * plan.out_w + part.cols.start;
                let span = (part.rows.len() - 1) * plan.out_w + part.cols.len();
                let out = out.block(first, weights.out_channels, span, out_plane);
                // SAFETY: `new` checked that the CPU runs AVX2 and FMA; `padded` holds the part's rows (made
                // above), `line` a chunk of a row of outputs; `out` is the part's block of this image's output
                // (bounds checked), which no other task writes.
                unsafe {
                    if weights.lanes == LANES {
                        part_avx2(geo, &plan, weights, clamp, padded, line, out, &part)
                    } else {
                        // `wide_vectors` checked that the CPU runs AVX-512F.
                        part_avx512(geo, &plan, weights, clamp, padded, line, out, &part)
                    }
                };
            });
        });
    });
}

/// Copies the input that `part` reads into `padded` (`[c][row][padded_w]`: the part's first output row and column
/// read row 0, column 0), with zeros for the padding and for rows and columns outside the image.
fn pad_rows(geo: &ConvGeometry, plan: &Plan, x: &[f32], part: &Part, padded: &mut [f32]) {
    // Padded column j holds input column first_col + j − pad_left.
    let first_col = part.cols.start * geo.stride_w;
    let from = geo.pad_left.saturating_sub(first_col).min(plan.padded_w);
    // A chunk may start past the input's last column (wide right padding): nothing to copy then.
    let skip = first_col.saturating_sub(geo.pad_left).min(geo.in_w);
    let n = geo.in_w.saturating_sub(skip).min(plan.padded_w - from);
    for (i, row) in padded.chunks_exact_mut(plan.padded_w).enumerate() {
        let (c, r) = (i / plan.task_in_rows, i % plan.task_in_rows);
        row.fill(0.0);
        let padded_row = part.rows.start * geo.stride_h + r;
        let Some(iy) = padded_row.checked_sub(geo.pad_top).filter(|&iy| iy < geo.in_h) else { continue };
        let src = &x[(c * geo.in_h + iy) * geo.in_w..][..geo.in_w];
        row[from..from + n].copy_from_slice(&src[skip..skip + n]);
    }
}

/// Generates one SIMD width's kernel: `$part` (one part of the output: pixels in register blocks into the row of
/// outputs, then back to the channel rows) and `$block` (one register block), for vectors of `$lanes` output
/// channels. The two widths perform the same operations on every output.
macro_rules! broadcast_kernel {
    (
        $part:ident, $block:ident, feature = $feature:literal, vector = $v:ty, lanes = $lanes:expr,
        zero = $zero:path, load = $load:path, splat = $splat:path, add = $add:path, fma = $fma:path,
        store = $store:path
    ) => {
        /// One part of the output, with vectors of this width's channels.
        ///
        /// # Safety
        /// The CPU supports the target features; `padded` holds the part's padded input rows (`pad_rows`), `line`
        /// at least `whole(part columns)·C_out` values; `out` is the part's first cell in channel 0 of this image's
        /// output (`C_out` planes of `out_h × out_w`), and the part's cells in every channel are writable and no
        /// other thread's; the weights are laid out for vectors of this width.
        #[target_feature(enable = $feature)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $part(
            geo: &ConvGeometry,
            plan: &Plan,
            weights: &BroadcastWeights,
            clamp: Clamp,
            padded: &[f32],
            line: &mut [f32],
            out: *mut f32,
            part: &Part,
        ) {
            assert_eq!(weights.lanes, $lanes, "broadcast conv: weights laid out for another width");
            let blocks = weights.out_channels / $lanes;
            let width = part.cols.len();
            assert!(line.len() >= width.next_multiple_of(LANES) * weights.out_channels);
            assert!(padded.len() >= geo.in_channels * plan.task_in_rows * plan.padded_w);
            assert!(part.rows.len() <= TASK_ROWS && width <= TASK_COLS && part.cols.end <= plan.out_w);
            for oy in part.rows.clone() {
                let first_row = (oy - part.rows.start) * geo.stride_h;
                let mut ox = 0;
                while ox < width {
                    let n = (width - ox).min(PIXELS);
                    for b in (0..blocks).step_by(BLOCKS) {
                        let at = Block { first_row, ox, b };
                        // SAFETY: pixels ox.. ox + n of the part's row and vectors b.. of the channels: inside the
                        // padded rows (`Plan::of` sizes them for every output of a part, asserted above) and the
                        // row of outputs.
                        unsafe {
                            match (n, blocks - b >= BLOCKS) {
                                (6, true) => $block::<6, 2>(geo, plan, weights, padded, line, at),
                                (5, true) => $block::<5, 2>(geo, plan, weights, padded, line, at),
                                (4, true) => $block::<4, 2>(geo, plan, weights, padded, line, at),
                                (3, true) => $block::<3, 2>(geo, plan, weights, padded, line, at),
                                (2, true) => $block::<2, 2>(geo, plan, weights, padded, line, at),
                                (_, true) => $block::<1, 2>(geo, plan, weights, padded, line, at),
                                (6, false) => $block::<6, 1>(geo, plan, weights, padded, line, at),
                                (5, false) => $block::<5, 1>(geo, plan, weights, padded, line, at),
                                (4, false) => $block::<4, 1>(geo, plan, weights, padded, line, at),
                                (3, false) => $block::<3, 1>(geo, plan, weights, padded, line, at),
                                (2, false) => $block::<2, 1>(geo, plan, weights, padded, line, at),
                                (_, false) => $block::<1, 1>(geo, plan, weights, padded, line, at),
                            }
                        }
                    }
                    ox += n;
                }
                // SAFETY: the row of outputs holds the part's row oy (computed above); the contract on `out`.
                unsafe { write_row(plan, weights.out_channels, clamp, line, out, oy, part) };
            }
        }

        /// `P` pixels of one output row, output-channel vectors `b.. b + B`, into the row of outputs.
        ///
        /// # Safety
        /// As the part's; `ox + P` is within the part's columns, `b + B ≤ C_out / lanes`, and `first_row` is the
        /// band row of an output row of the part.
        #[target_feature(enable = $feature)]
        #[inline]
        #[allow(clippy::needless_range_loop)]
        unsafe fn $block<const P: usize, const B: usize>(
            geo: &ConvGeometry,
            plan: &Plan,
            weights: &BroadcastWeights,
            padded: &[f32],
            line: &mut [f32],
            Block { first_row, ox, b }: Block,
        ) {
            const L: usize = $lanes;
            let (kh, kw) = (geo.kernel_h, geo.kernel_w);
            let taps = geo.in_channels * kh * kw;
            let w = weights.weights.as_ptr();
            let mut acc: [[$v; B]; P] = [[$zero(); B]; P];
            for j in 0..B {
                // SAFETY: b + j < C_out / L, so its L biases exist (`BroadcastWeights::new` checked the length).
                let bias = unsafe { $load(weights.bias.as_ptr().add((b + j) * L)) };
                // 0 + bias, as the GEMM's epilogue-first bias.
                acc.iter_mut().for_each(|a| a[j] = $add(a[j], bias));
            }
            let x = padded.as_ptr();
            for c in 0..geo.in_channels {
                for ky in 0..kh {
                    let row = (c * plan.task_in_rows + first_row + ky * geo.dilation_h) * plan.padded_w;
                    for kx in 0..kw {
                        let t = (c * kh + ky) * kw + kx;
                        // SAFETY: vector b + j of tap t lies inside the weights (b + B ≤ C_out / L, t < taps).
                        let wv: [$v; B] = std::array::from_fn(|j| unsafe { $load(w.add(((b + j) * taps + t) * L)) });
                        let col = ox * geo.stride_w + kx * geo.dilation_w;
                        for p in 0..P {
                            // SAFETY: the row and column of an output's tap: inside the padded rows.
                            let xv = $splat(unsafe { *x.add(row + col + p * geo.stride_w) });
                            for j in 0..B {
                                acc[p][j] = $fma(wv[j], xv, acc[p][j]);
                            }
                        }
                    }
                }
            }
            for p in 0..P {
                for j in 0..B {
                    let at = (ox + p) * weights.out_channels + (b + j) * L;
                    // SAFETY: pixel ox + p of the part and vector b + j: inside the row of outputs.
                    unsafe { $store(line.as_mut_ptr().add(at), acc[p][j]) };
                }
            }
        }
    };
}

broadcast_kernel!(
    part_avx2,
    block_avx2,
    feature = "avx2,fma",
    vector = __m256,
    lanes = 8,
    zero = _mm256_setzero_ps,
    load = _mm256_loadu_ps,
    splat = _mm256_set1_ps,
    add = _mm256_add_ps,
    fma = _mm256_fmadd_ps,
    store = _mm256_storeu_ps
);

broadcast_kernel!(
    part_avx512,
    block_avx512,
    feature = "avx2,fma,avx512f",
    vector = __m512,
    lanes = 16,
    zero = _mm512_setzero_ps,
    load = _mm512_loadu_ps,
    splat = _mm512_set1_ps,
    add = _mm512_add_ps,
    fma = _mm512_fmadd_ps,
    store = _mm512_storeu_ps
);

/// Output row `oy` of a part from the row of outputs (pixel-major) back to the channel rows, 8 pixels × 8 channels
/// at a time, with the clamp.
///
/// # Safety
/// The CPU supports AVX2 and FMA; `line` holds the row's `whole(part columns)·C_out` outputs; `out` as in
/// [`part_avx2`].
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn write_row(
    plan: &Plan,
    out_channels: usize,
    clamp: Clamp,
    line: &[f32],
    out: *mut f32,
    oy: usize,
    part: &Part,
) {
    let out_plane = plan.out_h * plan.out_w;
    let width = part.cols.len();
    assert!(line.len() >= width.next_multiple_of(LANES) * out_channels);
    for b in 0..out_channels / LANES {
        for x0 in (0..width).step_by(LANES) {
            let at = |j: usize| (x0 + j) * out_channels + b * LANES;
            // SAFETY: x0 + j < whole(width): inside the row of outputs (asserted above).
            let mut v: [__m256; LANES] = std::array::from_fn(|j| unsafe { _mm256_loadu_ps(line[at(j)..].as_ptr()) });
            let dst = b * LANES * out_plane + (oy - part.rows.start) * plan.out_w + x0;
            // SAFETY: channels b·8.. b·8 + 8, row oy, the part's columns from x0: this task's own cells.
            unsafe { finish(&mut v, clamp, out.add(dst), out_plane, (width - x0).min(LANES)) };
        }
    }
}

/// Where a register block starts: its band row in the padded rows, its first pixel in the part, its first vector
/// of output channels.
#[derive(Clone, Copy)]
struct Block {
    first_row: usize,
    ox: usize,
    b: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::tests::{base_3x3, data_f32 as data, simd_levels};
    use crate::conv_packed::{conv2d_forward_packed, conv2d_forward_packed_residual, PackedConv};

    /// Stems and their relatives: 1–4 input channels; 8–64 output channels (whole and odd numbers of 16-channel
    /// pairs); 1×1 to 7×7 kernels (K up to 147, past the GEMM's K block of 128); strides 1–3, also asymmetric;
    /// dilation; asymmetric pads and pads past the kernel; rows of 1 to 20 pixels around the 6-pixel block; batch 2;
    /// bands of 4 rows and a last short one.
    fn geometries() -> Vec<ConvGeometry> {
        let base = base_3x3(3, 32, 1);
        let mut all = vec![
            base,
            ConvGeometry { stride_h: 2, stride_w: 2, in_h: 15, in_w: 17, ..base },
            ConvGeometry {
                in_channels: 3,
                out_channels: 64,
                kernel_h: 7,
                kernel_w: 7,
                stride_h: 2,
                stride_w: 2,
                in_h: 20,
                in_w: 22,
                pad_top: 3,
                pad_left: 3,
                pad_bottom: 3,
                pad_right: 3,
                ..base
            },
            ConvGeometry {
                in_channels: 1,
                out_channels: 8,
                kernel_h: 5,
                kernel_w: 5,
                pad_top: 2,
                pad_left: 2,
                pad_bottom: 2,
                pad_right: 2,
                ..base
            },
            ConvGeometry {
                in_channels: 4,
                out_channels: 24,
                kernel_h: 1,
                kernel_w: 1,
                pad_top: 0,
                pad_left: 0,
                pad_bottom: 0,
                pad_right: 0,
                ..base
            },
            ConvGeometry {
                in_channels: 2,
                out_channels: 40,
                stride_h: 1,
                stride_w: 3,
                pad_top: 0,
                pad_left: 2,
                pad_bottom: 1,
                pad_right: 0,
                ..base
            },
            ConvGeometry {
                in_channels: 3,
                out_channels: 16,
                dilation_h: 2,
                dilation_w: 3,
                pad_top: 4,
                pad_left: 5,
                ..base
            },
            ConvGeometry { in_channels: 3, out_channels: 16, stride_h: 3, stride_w: 2, in_h: 30, in_w: 9, ..base },
            ConvGeometry {
                batch: 1,
                in_channels: 3,
                out_channels: 32,
                in_h: 224,
                in_w: 224,
                stride_h: 2,
                stride_w: 2,
                pad_top: 0,
                pad_left: 0,
                pad_bottom: 1,
                pad_right: 1,
                ..base
            },
        ];
        for w in 1..=20 {
            all.push(ConvGeometry { batch: 1, in_h: 9, in_w: w, ..base });
        }
        // One input row; non-square kernels; bottom and right pads past the kernel; a row stride past the kernel;
        // rows of several 256-column chunks (one with a short last chunk, one strided).
        all.push(ConvGeometry { batch: 1, in_h: 1, in_w: 13, pad_top: 1, pad_bottom: 1, ..base });
        all.push(ConvGeometry {
            in_channels: 2,
            out_channels: 16,
            kernel_h: 1,
            kernel_w: 7,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 3,
            pad_right: 3,
            ..base
        });
        all.push(ConvGeometry {
            in_channels: 3,
            out_channels: 8,
            kernel_h: 7,
            kernel_w: 1,
            pad_top: 3,
            pad_bottom: 3,
            pad_left: 0,
            pad_right: 0,
            ..base
        });
        all.push(ConvGeometry { in_channels: 3, out_channels: 16, pad_bottom: 5, pad_right: 6, ..base });
        all.push(ConvGeometry { in_channels: 3, out_channels: 16, stride_h: 4, in_h: 19, ..base });
        all.push(ConvGeometry { batch: 1, in_h: 5, in_w: 600, ..base });
        all.push(ConvGeometry { batch: 1, in_h: 6, in_w: 1100, stride_h: 2, stride_w: 2, ..base });
        // 48 channels: at 16 lanes a pair of vectors, then one.
        all.push(ConvGeometry { out_channels: 48, stride_h: 2, stride_w: 2, in_h: 15, in_w: 17, ..base });
        // Right padding so wide that the later chunks read only padding.
        all.push(ConvGeometry { batch: 1, in_h: 3, in_w: 8, pad_right: 600, ..base });
        all.retain(|g| g.out_h().is_some_and(|h| h > 0) && g.out_w().is_some_and(|w| w > 0));
        all
    }

    fn weights_of(geo: &ConvGeometry, seed: usize) -> (Vec<f32>, Vec<f32>) {
        (data(geo.out_channels * geo.k(), seed), data(geo.out_channels, seed + 1))
    }

    /// The direct kernel performs the packed GEMM's operations in its order, so the two agree bit for bit: every
    /// geometry, with and without bias, with and without a clamp, on each SIMD level.
    #[test]
    fn bit_identical_to_the_packed_gemm() {
        let mut compared = 0;
        for level in simd_levels() {
            for (i, geo) in geometries().iter().enumerate() {
                let x = data(geo.batch * geo.in_channels * geo.in_plane(), i);
                let (w, b) = weights_of(geo, i + 1);
                let kernel = [geo.kernel_h, geo.kernel_w];
                for bias in [Some(&b[..]), None] {
                    let direct = PackedConv::new(level, &w, bias, geo.out_channels, geo.in_channels, kernel, 1);
                    assert!(direct.is_broadcast(), "{geo:?}");
                    let gemm = PackedConv::new_gemm(level, &w, bias, geo.out_channels, geo.in_channels, kernel);
                    for clamp in [Clamp::NONE, Clamp { lo: 0.0, hi: 0.75 }] {
                        let n = geo.batch * geo.out_channels * geo.out_plane();
                        let (mut want, mut got) = (vec![f32::NAN; n], vec![f32::NAN; n]);
                        conv2d_forward_packed(geo, &x, &gemm, clamp, &mut want);
                        conv2d_forward_packed(geo, &x, &direct, clamp, &mut got);
                        let same = got.iter().zip(&want).all(|(g, e)| g.to_bits() == e.to_bits());
                        assert!(same, "{level} {geo:?} bias {} {clamp:?}", bias.is_some());
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared >= 100 * simd_levels().len(), "only {compared} comparisons");
    }

    /// A residual joins after the product, as the GEMM's epilogue adds it: the same bits.
    #[test]
    fn residual_as_the_packed_gemm() {
        let geo = geometries()[1];
        let x = data(geo.batch * geo.in_channels * geo.in_plane(), 3);
        let (w, b) = weights_of(&geo, 4);
        let res = data(geo.batch * geo.out_channels * geo.out_plane(), 5);
        for level in simd_levels() {
            let kernel = [geo.kernel_h, geo.kernel_w];
            let direct = PackedConv::new(level, &w, Some(&b), geo.out_channels, geo.in_channels, kernel, 1);
            let gemm = PackedConv::new_gemm(level, &w, Some(&b), geo.out_channels, geo.in_channels, kernel);
            let (mut want, mut got) = (vec![0.0; res.len()], vec![0.0; res.len()]);
            conv2d_forward_packed_residual(&geo, &x, &gemm, Clamp::RELU, &res, &mut want);
            conv2d_forward_packed_residual(&geo, &x, &direct, Clamp::RELU, &res, &mut got);
            assert!(got.iter().zip(&want).all(|(g, e)| g.to_bits() == e.to_bits()), "{level}");
        }
    }

    /// Reads only the input and writes only the output: both sit inside NaN-filled buffers.
    #[test]
    fn reads_and_writes_nothing_outside_its_buffers() {
        for level in simd_levels() {
            for geo in geometries().iter() {
                let in_len = geo.batch * geo.in_channels * geo.in_plane();
                let out_len = geo.batch * geo.out_channels * geo.out_plane();
                let (w, b) = weights_of(geo, 6);
                let direct = PackedConv::new(
                    level,
                    &w,
                    Some(&b),
                    geo.out_channels,
                    geo.in_channels,
                    [geo.kernel_h, geo.kernel_w],
                    1,
                );
                let mut x = vec![f32::NAN; in_len + 64];
                x[32..32 + in_len].copy_from_slice(&data(in_len, 7));
                let mut y = vec![f32::NAN; out_len + 64];
                let clamp = Clamp { lo: -0.5, hi: 0.5 };
                conv2d_forward_packed(geo, &x[32..32 + in_len], &direct, clamp, &mut y[32..32 + out_len]);
                assert!(y[..32].iter().chain(&y[32 + out_len..]).all(|v| v.is_nan()), "{level} {geo:?}: wrote outside");
                assert!(y[32..32 + out_len].iter().all(|v| v.is_finite()), "{level} {geo:?}: read outside");
            }
        }
    }

    #[test]
    fn bit_identical_on_one_two_and_four_threads() {
        let stem = geometries()[2];
        assert!(
            PackedConv::new(SimdLevel::Avx2, &data(stem.out_channels * stem.k(), 1), None, 64, 3, [7, 7], 1)
                .is_broadcast()
                || !SimdLevel::Avx2.supported()
        );
        crate::conv_packed::tests::bit_identical_on_threads(stem);
    }

    #[test]
    fn applies_to_few_input_channels_and_whole_vectors_only() {
        let w = data(64 * 5 * 9, 1);
        for level in simd_levels() {
            assert!(BroadcastWeights::new(level, &w[..32 * 27], None, 32, 3, [3, 3], 1).is_some());
            assert!(BroadcastWeights::new(level, &w[..12 * 27], None, 12, 3, [3, 3], 1).is_none(), "12 outputs");
            assert!(BroadcastWeights::new(level, &w[..32 * 45], None, 32, 5, [3, 3], 1).is_none(), "5 inputs");
            assert!(BroadcastWeights::new(level, &w[..32 * 9], None, 32, 1, [3, 3], 3).is_none(), "groups");
        }
        assert!(BroadcastWeights::new(SimdLevel::Portable, &w[..32 * 27], None, 32, 3, [3, 3], 1).is_none());
        // A stride only a hostile file declares: one output column, read as such (no overflow).
        let strided = ConvGeometry { stride_w: 1 << 62, in_w: 8, pad_left: 0, pad_right: 0, ..base_3x3(3, 32, 1) };
        assert!(Plan::of(&strided).is_some_and(|p| p.out_w == 1 && p.padded_w == 3));
    }

    /// Whole 16-channel vectors run 16 lanes wide at the AVX-512 level; other counts, and the AVX2 level, 8.
    #[test]
    fn vectors_of_sixteen_channels_where_they_fit() {
        let w = data(48 * 27, 1);
        let lanes =
            |level, out: usize| BroadcastWeights::new(level, &w[..out * 27], None, out, 3, [3, 3], 1).map(|b| b.lanes);
        if SimdLevel::Avx512.supported() && runs_on(SimdLevel::Avx512) {
            assert_eq!(lanes(SimdLevel::Avx512, 32), Some(16));
            assert_eq!(lanes(SimdLevel::Avx512, 48), Some(16));
            assert_eq!(lanes(SimdLevel::Avx512, 24), Some(8));
        }
        if runs_on(SimdLevel::Avx2) {
            assert_eq!(lanes(SimdLevel::Avx2, 32), Some(8));
        }
    }

    /// Non-finite inputs and weights give the GEMM's results: the same bits, or NaN where it has NaN (whose payload
    /// an FMA may take from either operand).
    #[test]
    fn non_finite_values_as_the_packed_gemm() {
        let geo = geometries()[1];
        let mut x = data(geo.batch * geo.in_channels * geo.in_plane(), 11);
        let (mut w, b) = weights_of(&geo, 12);
        for (i, v) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 1e30].into_iter().enumerate() {
            x[7 + 13 * i] = v;
            w[3 + 29 * i] = v;
        }
        for level in simd_levels() {
            let kernel = [geo.kernel_h, geo.kernel_w];
            let direct = PackedConv::new(level, &w, Some(&b), geo.out_channels, geo.in_channels, kernel, 1);
            let gemm = PackedConv::new_gemm(level, &w, Some(&b), geo.out_channels, geo.in_channels, kernel);
            for clamp in [Clamp::NONE, Clamp::RELU] {
                let n = geo.batch * geo.out_channels * geo.out_plane();
                let (mut want, mut got) = (vec![0.0; n], vec![0.0; n]);
                conv2d_forward_packed(&geo, &x, &gemm, clamp, &mut want);
                conv2d_forward_packed(&geo, &x, &direct, clamp, &mut got);
                let same = got.iter().zip(&want).all(|(g, e)| g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()));
                assert!(same, "{level} {clamp:?}");
                assert!(want.iter().any(|v| v.is_nan()) && want.iter().any(|v| v.is_infinite()), "{level}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "bias length")]
    fn a_bias_of_another_length_is_refused() {
        if let Some(level) = simd_levels().first() {
            let w = data(32 * 27, 1);
            PackedConv::new(*level, &w, Some(&w[..1]), 32, 3, [3, 3], 1);
        } else {
            panic!("bias length (skipped: no AVX2)");
        }
    }

    /// An output whose size overflows matches no buffer (a wrapped size would have let the kernel write past it).
    #[test]
    #[should_panic(expected = "output length")]
    fn an_output_size_that_overflows_is_refused() {
        let geo = ConvGeometry {
            batch: 1,
            in_channels: 1,
            out_channels: 8,
            in_h: 1,
            in_w: 1,
            kernel_h: 1,
            kernel_w: 1,
            pad_top: 1 << 63,
            pad_left: 0,
            pad_bottom: 0,
            pad_right: 0,
            ..base_3x3(1, 8, 1)
        };
        let level = simd_levels().first().copied().unwrap_or(SimdLevel::Portable);
        let w = data(8, 1);
        let direct = PackedConv::new(level, &w, None, 8, 1, [1, 1], 1);
        let mut y = vec![0.0; 8];
        conv2d_forward_packed(&geo, &[1.0], &direct, Clamp::NONE, &mut y);
    }
}
