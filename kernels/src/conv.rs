//! 2-D convolution forward, backward-data and backward-weight by im2col + GEMM.
//!
//! Per image and group the convolution is `Y = W · col` (see [`crate::im2col`]). Work is cut into fixed tiles of
//! output columns ([`COL_TILE`]) and blocks of GEMM rows ([`MIN_TASK_ROWS`] or more) that rayon runs in parallel; each task owns
//! a disjoint block of the output (forward) or a contiguous buffer of its own (backward). Depthwise convolutions go to
//! [`crate::depthwise`], and 1×1 stride-1 unpadded ones read the input directly as the `col` matrix.

use crate::depthwise;
use crate::gemm::{gemm, gemm_to_ptr, MatMut, MatRef};
use crate::geometry::ConvGeometry;
use crate::im2col::{col2im_channel_tile_phase, im2col_tile, Window};
use crate::Element;
use rayon::prelude::*;
use std::marker::PhantomData;

/// Output columns per task. 256 columns keep a `K × 256` im2col tile within L2 for K up to ~1k (3×3 over 128
/// channels) and give a 56×56 plane 13 tiles, enough to feed every core with batch 1. Also fixes the summation
/// order independently of the thread count.
pub const COL_TILE: usize = 256;

/// Fewest GEMM rows per task. Every task packs its own copy of the shared right-hand tile; packing runs at a few
/// elements per ns against ~70 flop/ns of arithmetic, so a task of `m` rows pays about `70 / (8·m)` extra: 27 % at 32
/// rows (measured: 3×3 128→128 @28² fell from 85 % to 68 % of the bare sgemm rate), 7 % at 128.
pub const MIN_TASK_ROWS: usize = 128;

/// Upper bound on im2col elements materialised at once in backward-data (64 MiB of f32): large early layers (VGG
/// 3×3 over 64 channels at 224²) are processed in column chunks instead of one 115 MB buffer.
pub const MAX_COL_ELEMS: usize = 16 << 20;

/// Column tiles `(p0, p1)` covering `0..columns`.
pub(crate) fn tiles(columns: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..columns.div_ceil(COL_TILE)).map(move |t| (t * COL_TILE, ((t + 1) * COL_TILE).min(columns)))
}

/// GEMM rows per task for an image/group with `rows` output rows and `tiles` column tiles: whole matrices when the
/// column tiles alone give [`TARGET_TASKS`] tasks, otherwise rows are split (never below [`MIN_TASK_ROWS`]) until
/// they do. Depends only on the problem shape, never on the thread count.
pub(crate) fn rows_per_task(rows: usize, tiles: usize) -> usize {
    let splits = TARGET_TASKS.div_ceil(tiles.max(1));
    rows.div_ceil(splits).max(MIN_TASK_ROWS).min(rows.max(1))
}

/// GEMM rows per task on the packed path, where a column tile is packed once and shared by all its row blocks: the
/// reason for [`MIN_TASK_ROWS`] (a copy of the packing per task) is gone, so rows are split down to
/// [`MIN_PACKED_TASK_PANELS`] panels of `mr` rows until the tile has [`TARGET_TASKS`] tasks. Without it a
/// projection such as MobileNetV2's 576→96 on a 14² plane (one column tile, 96 rows) ran on one core.
pub(crate) fn rows_per_packed_task(rows: usize, tiles: usize, mr: usize) -> usize {
    let splits = TARGET_TASKS.div_ceil(tiles.max(1));
    let panels = rows.div_ceil(mr.max(1));
    let per_task = panels.div_ceil(splits).max(MIN_PACKED_TASK_PANELS).min(panels.max(1));
    per_task * mr.max(1)
}

/// Fewest row panels per task on the packed path. One: a layer's tile (mostly [`COL_TILE`] columns of a K-row
/// operand, see `conv_packed::column_tiles`) stays in L2 while its tasks stream it, and two-panel tasks left
/// MobileNetV2's 64-row projections at 14² with three tasks for two threads (one idle a third of the time).
pub const MIN_PACKED_TASK_PANELS: usize = 1;

/// Tasks per image and group that the tiling aims for at batch 1 (more come from the batch).
pub const TARGET_TASKS: usize = 8;

/// A raw view of the output that lets tasks write disjoint sub-matrices concurrently.
#[derive(Clone, Copy)]
pub(crate) struct DisjointOutput<'a, T> {
    ptr: *mut T,
    len: usize,
    /// The writer borrows the output mutably for as long as it lives: no one else can touch the buffer meanwhile.
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: the pointer is only dereferenced through `gemm_into` or through the blocks `block` returns, whose users
// guarantee that concurrent tasks touch disjoint elements; T itself is Send + Sync (Element requires both).
unsafe impl<T: Element> Send for DisjointOutput<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Element> Sync for DisjointOutput<'_, T> {}

/// One past the last element of a `rows × cols` block at `offset` with row stride `row_stride` (`offset` for an
/// empty block); `None` if that overflows — so a bounds check built on it cannot wrap around.
pub(crate) fn block_end(offset: usize, rows: usize, cols: usize, row_stride: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(offset);
    }
    (rows - 1).checked_mul(row_stride)?.checked_add(cols)?.checked_add(offset)
}

impl<'a, T: Element> DisjointOutput<'a, T> {
    pub(crate) fn new(out: &'a mut [T]) -> Self {
        DisjointOutput { ptr: out.as_mut_ptr(), len: out.len(), _borrow: PhantomData }
    }

    /// Pointer to the block of `rows × cols` elements at `offset` with row stride `row_stride`.
    ///
    /// # Panics
    /// If the block does not lie inside the output.
    pub(crate) fn block(&self, offset: usize, rows: usize, cols: usize, row_stride: usize) -> *mut T {
        assert!(
            block_end(offset, rows, cols, row_stride).is_some_and(|end| end <= self.len),
            "block outside the output"
        );
        self.ptr.wrapping_add(offset)
    }

    /// `out[offset + i·row_stride + j] += a · b` for the `a.rows × b.cols` block.
    ///
    /// # Safety
    /// No other thread may read or write these elements during the call.
    unsafe fn gemm_into(&self, a: MatRef<'_, T>, b: MatRef<'_, T>, offset: usize, row_stride: usize) {
        let (m, n) = (a.rows, b.cols);
        assert!(
            block_end(offset, m, n, row_stride).is_some_and(|end| end <= self.len),
            "gemm_into: block outside output"
        );
        if m == 0 || n == 0 {
            return;
        }
        // SAFETY: the output block lies inside the buffer (checked above, without overflow) and the caller
        // guarantees exclusive access to it; `gemm_to_ptr` checks the operands.
        unsafe { gemm_to_ptr(T::one(), a, b, T::one(), self.ptr.add(offset), row_stride, 1) }
    }
}

/// The GEMM's `K × (p1 − p0)` right operand for output columns `p0..p1` of one group's input `x`: a strided view of
/// `x` itself for a pointwise convolution (no copy), else the im2col tile written into `buf`.
pub(crate) fn column_tile<'a, T: Element>(
    geo: &ConvGeometry,
    win: &Window,
    x: &'a [T],
    (p0, p1): (usize, usize),
    buf: &'a mut Vec<T>,
) -> MatRef<'a, T> {
    let (k, tw) = (geo.k(), p1 - p0);
    if geo.is_pointwise() {
        return MatRef { data: &x[p0..], rows: k, cols: tw, row_stride: geo.in_plane(), col_stride: 1 };
    }
    buf.clear();
    buf.resize(k * tw, T::zero());
    im2col_tile(x, geo.in_per_group(), win, p0, p1, buf);
    MatRef::row_major(buf, k, tw)
}

/// `output ← conv(input, weight) + bias`.
pub fn conv2d_forward<T: Element>(geo: &ConvGeometry, input: &[T], weight: &[T], bias: Option<&[T]>, output: &mut [T]) {
    geo.check(input.len(), weight.len(), output.len());
    if let Some(b) = bias {
        assert_eq!(b.len(), geo.out_channels, "conv: bias length");
    }
    if geo.is_depthwise() {
        if !T::depthwise_forward(geo, input, weight, bias, output) {
            depthwise::forward(geo, input, weight, bias, output);
        }
        return;
    }
    let (cig, cog, k) = (geo.in_per_group(), geo.out_per_group(), geo.k());
    let (in_plane, out_plane) = (geo.in_plane(), geo.out_plane());
    if out_plane == 0 {
        return;
    }
    let win = geo.window();
    // Start from the bias; the GEMMs accumulate onto it.
    output.par_chunks_mut(out_plane).enumerate().for_each(|(i, plane)| {
        plane.fill(bias.map_or(T::zero(), |b| b[i % geo.out_channels]));
    });
    let col_tiles: Vec<(usize, usize)> = tiles(out_plane).collect();
    let rows = rows_per_task(cog, col_tiles.len());
    let row_blocks: Vec<usize> = (0..cog).step_by(rows).collect();
    output.par_chunks_mut(geo.out_channels * out_plane).enumerate().for_each(|(n, out_n)| {
        let out = DisjointOutput::new(out_n);
        for g in 0..geo.groups {
            let x =
                &input[(n * geo.in_channels + g * cig) * in_plane..(n * geo.in_channels + (g + 1) * cig) * in_plane];
            let w = &weight[g * cog * k..(g + 1) * cog * k];
            col_tiles.par_iter().for_each(|&(p0, p1)| {
                let mut buf = Vec::new();
                let col = column_tile(geo, &win, x, (p0, p1), &mut buf);
                row_blocks.par_iter().for_each(|&r0| {
                    let r1 = (r0 + rows).min(cog);
                    let a = MatRef::row_major(&w[r0 * k..r1 * k], r1 - r0, k);
                    // SAFETY: task (tile p0..p1, rows r0..r1) of group g is the only one writing output rows
                    // g·cog + r0.. g·cog + r1, columns p0..p1 of this image; tiles and row blocks partition them.
                    unsafe { out.gemm_into(a, col, (g * cog + r0) * out_plane + p0, out_plane) };
                });
            });
        }
    });
}

/// `grad_input ← ∂⟨grad_output, conv(x, weight)⟩/∂x` (overwrites `grad_input`).
pub fn conv2d_backward_data<T: Element>(geo: &ConvGeometry, weight: &[T], grad_output: &[T], grad_input: &mut [T]) {
    geo.check(grad_input.len(), weight.len(), grad_output.len());
    if geo.is_depthwise() && T::depthwise_backward_data(geo, weight, grad_output, grad_input) {
        return;
    }
    grad_input.fill(T::zero());
    if geo.is_depthwise() {
        return depthwise::backward_data(geo, weight, grad_output, grad_input);
    }
    let (cig, cog, k) = (geo.in_per_group(), geo.out_per_group(), geo.k());
    let (in_plane, out_plane) = (geo.in_plane(), geo.out_plane());
    let win = geo.window();
    // Columns per chunk: whole tiles, at least one, at most MAX_COL_ELEMS elements of im2col.
    let chunk_cols = ((MAX_COL_ELEMS / k.max(1)) / COL_TILE).max(1) * COL_TILE;
    grad_input.par_chunks_mut(geo.in_channels * in_plane).enumerate().for_each(|(n, dx_n)| {
        for g in 0..geo.groups {
            let w = &weight[g * cog * k..(g + 1) * cog * k];
            let dy_base = (n * geo.out_channels + g * cog) * out_plane;
            let dy = &grad_output[dy_base..dy_base + cog * out_plane];
            let dx = &mut dx_n[g * cig * in_plane..(g + 1) * cig * in_plane];
            let mut c0 = 0;
            while c0 < out_plane {
                let c1 = (c0 + chunk_cols).min(out_plane);
                let chunk_tiles: Vec<(usize, usize)> = tiles(c1 - c0).map(|(a, b)| (a + c0, b + c0)).collect();
                // dcol = Wᵀ · dY for this chunk, tile-major: tile t is a `k × tw` row-major block.
                let mut dcol = vec![T::zero(); k * (c1 - c0)];
                let task_rows = rows_per_task(k, chunk_tiles.len());
                dcol.par_chunks_mut(k * COL_TILE).zip(chunk_tiles.clone()).for_each(|(buf, (p0, p1))| {
                    let tw = p1 - p0;
                    buf.par_chunks_mut(task_rows * tw).enumerate().for_each(|(b, blk)| {
                        let rows = blk.len() / tw;
                        let r0 = b * task_rows;
                        let wt = MatRef { data: &w[r0..], rows, cols: cog, row_stride: 1, col_stride: k };
                        let g_out =
                            MatRef { data: &dy[p0..], rows: cog, cols: tw, row_stride: out_plane, col_stride: 1 };
                        gemm(T::one(), wt, g_out, T::zero(), MatMut::row_major(blk, rows, tw));
                    });
                });
                let taps = geo.kernel_h * geo.kernel_w;
                if geo.is_pointwise() {
                    dx.par_chunks_mut(in_plane).enumerate().for_each(|(c, plane)| {
                        for &(p0, p1) in &chunk_tiles {
                            let (tw, base) = (p1 - p0, k * (p0 - c0));
                            let rows = &dcol[base + c * taps * tw..base + (c + 1) * taps * tw];
                            plane[p0..p1].iter_mut().zip(rows).for_each(|(d, &s)| *d += s);
                        }
                    });
                } else {
                    // One task per channel and stride phase: the taps of one phase class write only that phase's
                    // pixels, so the tasks write disjoint pixels, each in the order of the plane-wide loop (tiles,
                    // then taps). A stem's three channels were three tasks for two threads.
                    let phases = geo.stride_h * geo.stride_w;
                    let out = DisjointOutput::new(&mut *dx);
                    (0..cig * phases).into_par_iter().for_each(|task| {
                        let (c, phase) = (task / phases, task % phases);
                        let plane = out.block(c * in_plane, 1, in_plane, in_plane);
                        for &(p0, p1) in &chunk_tiles {
                            let (tw, base) = (p1 - p0, k * (p0 - c0));
                            let rows = &dcol[base + c * taps * tw..base + (c + 1) * taps * tw];
                            // SAFETY: `plane` is channel c's plane of this image and group (checked by `block`);
                            // tasks of other channels write other planes, and tasks of this channel other phases.
                            unsafe { col2im_channel_tile_phase(rows, &win, p0, p1, plane, in_plane, Some(phase)) };
                        }
                    });
                }
                c0 = c1;
            }
        }
    });
}

/// Adds one image's columns into its input gradient: `dcol` is `k × out_plane` (row `c·taps + tap` for input
/// channel `c`, as im2col lays out one tile spanning the whole plane), `dx` is `in_channels × in_h × in_w`. For
/// ungrouped convolutions whose columns `Wᵀ·∂L/∂y` come from elsewhere (the packed kernels). One task per channel and
/// stride phase, as in [`conv2d_backward_data`]; each pixel receives its additions in tap order.
///
/// # Panics
/// If the convolution is grouped or a length disagrees with `geo`.
pub fn col2im_image<T: Element>(geo: &ConvGeometry, dcol: &[T], dx: &mut [T]) {
    assert_eq!(geo.groups, 1, "col2im_image: grouped convolution");
    let (in_plane, out_plane, taps) = (geo.in_plane(), geo.out_plane(), geo.kernel_h * geo.kernel_w);
    assert_eq!(dcol.len(), geo.k() * out_plane, "col2im_image: columns length");
    assert_eq!(dx.len(), geo.in_channels * in_plane, "col2im_image: input gradient length");
    let (win, phases) = (geo.window(), geo.stride_h * geo.stride_w);
    let out = DisjointOutput::new(dx);
    (0..geo.in_channels * phases).into_par_iter().for_each(|task| {
        let (c, phase) = (task / phases, task % phases);
        let plane = out.block(c * in_plane, 1, in_plane, in_plane);
        let rows = &dcol[c * taps * out_plane..(c + 1) * taps * out_plane];
        // SAFETY: `plane` is channel c's plane (checked by `block`); tasks of other channels write other planes,
        // and tasks of this channel other phases.
        unsafe { col2im_channel_tile_phase(rows, &win, 0, out_plane, plane, in_plane, Some(phase)) };
    });
}

/// `grad_weight ← ∂⟨grad_output, conv(input, w)⟩/∂w` summed over the batch (overwrites `grad_weight`).
pub fn conv2d_backward_weight<T: Element>(geo: &ConvGeometry, input: &[T], grad_output: &[T], grad_weight: &mut [T]) {
    geo.check(input.len(), grad_weight.len(), grad_output.len());
    grad_weight.fill(T::zero());
    if geo.is_depthwise() {
        return depthwise::backward_weight(geo, input, grad_output, grad_weight);
    }
    let (cig, cog, k) = (geo.in_per_group(), geo.out_per_group(), geo.k());
    let (in_plane, out_plane) = (geo.in_plane(), geo.out_plane());
    let win = geo.window();
    // Partial products over 4 tiles of columns each; summed in a fixed order afterwards.
    let chunk = 4 * COL_TILE;
    let chunks: Vec<(usize, usize)> =
        (0..out_plane.div_ceil(chunk)).map(|t| (t * chunk, ((t + 1) * chunk).min(out_plane))).collect();
    for (g, dw) in grad_weight.chunks_mut(cog * k).enumerate() {
        for n in 0..geo.batch {
            let x =
                &input[(n * geo.in_channels + g * cig) * in_plane..(n * geo.in_channels + (g + 1) * cig) * in_plane];
            let dy_base = (n * geo.out_channels + g * cog) * out_plane;
            let dy = &grad_output[dy_base..dy_base + cog * out_plane];
            let partials: Vec<Vec<T>> = chunks
                .par_iter()
                .map(|&(p0, p1)| {
                    let cw = p1 - p0;
                    let col_buf;
                    let col = if geo.is_pointwise() {
                        MatRef { data: &x[p0..], rows: k, cols: cw, row_stride: in_plane, col_stride: 1 }
                    } else {
                        let mut buf = vec![T::zero(); k * cw];
                        im2col_tile(x, cig, &win, p0, p1, &mut buf);
                        col_buf = buf;
                        MatRef::row_major(&col_buf, k, cw)
                    };
                    let g_out = MatRef { data: &dy[p0..], rows: cog, cols: cw, row_stride: out_plane, col_stride: 1 };
                    let mut part = vec![T::zero(); cog * k];
                    gemm(T::one(), g_out, col.t(), T::zero(), MatMut::row_major(&mut part, cog, k));
                    part
                })
                .collect();
            for part in partials {
                for (d, s) in dw.iter_mut().zip(part) {
                    *d += s;
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::simd::{supported_levels, SimdLevel};

    /// Direct 7-loop convolution used as the reference.
    fn naive(geo: &ConvGeometry, x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
        let (oh, ow) = (geo.out_h().unwrap(), geo.out_w().unwrap());
        let (cig, cog) = (geo.in_channels / geo.groups, geo.out_channels / geo.groups);
        let mut y = vec![0.0; geo.batch * geo.out_channels * oh * ow];
        for n in 0..geo.batch {
            for co in 0..geo.out_channels {
                let g = co / cog;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b[co];
                        for ci in 0..cig {
                            for ky in 0..geo.kernel_h {
                                for kx in 0..geo.kernel_w {
                                    let iy = (oy * geo.stride_h + ky * geo.dilation_h) as isize - geo.pad_top as isize;
                                    let ix = (ox * geo.stride_w + kx * geo.dilation_w) as isize - geo.pad_left as isize;
                                    if iy < 0 || ix < 0 || iy >= geo.in_h as isize || ix >= geo.in_w as isize {
                                        continue;
                                    }
                                    let c = g * cig + ci;
                                    acc += w[((co * cig + ci) * geo.kernel_h + ky) * geo.kernel_w + kx]
                                        * x[((n * geo.in_channels + c) * geo.in_h + iy as usize) * geo.in_w
                                            + ix as usize];
                                }
                            }
                        }
                        y[((n * geo.out_channels + co) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        y
    }

    fn geometries() -> Vec<ConvGeometry> {
        variants(ConvGeometry { in_h: 9, in_w: 7, ..base_3x3(4, 6, 1) })
    }

    /// `base` (a 3×3 "same" convolution with an even channel count) and its variants: strides with asymmetric pads,
    /// dilations, groups, pointwise, depthwise with and without a channel multiplier, and enough columns for several
    /// tiles with a ragged last one. Shared by every convolution kernel's tests.
    pub(crate) fn variants(base: ConvGeometry) -> Vec<ConvGeometry> {
        let c = base.in_channels;
        vec![
            base,
            ConvGeometry { stride_h: 2, stride_w: 3, pad_top: 0, pad_left: 2, pad_bottom: 1, pad_right: 0, ..base },
            ConvGeometry { dilation_h: 2, dilation_w: 3, kernel_w: 2, ..base },
            ConvGeometry { groups: 2, ..base },
            ConvGeometry { kernel_h: 1, kernel_w: 1, pad_top: 0, pad_left: 0, pad_bottom: 0, pad_right: 0, ..base },
            ConvGeometry { groups: c, out_channels: 2 * c, ..base },
            ConvGeometry { groups: c, out_channels: c, stride_h: 2, stride_w: 2, pad_top: 0, pad_left: 0, ..base },
            ConvGeometry { batch: 1, in_h: 23, in_w: 25, ..base },
        ]
    }

    fn data(len: usize, seed: usize) -> Vec<f64> {
        (0..len).map(|i| (((i * 7919 + seed * 104729) % 1000) as f64 / 500.0) - 1.0).collect()
    }

    /// Deterministic f32 test data in [−1, 1), shared by the kernels' tests.
    pub(crate) fn data_f32(len: usize, seed: usize) -> Vec<f32> {
        data(len, seed).into_iter().map(|v| v as f32).collect()
    }

    /// A 3×3, stride-1, padding-1 geometry of 11 × 9 images, batch 2: the base of the kernels' test geometries.
    pub(crate) fn base_3x3(in_channels: usize, out_channels: usize, groups: usize) -> ConvGeometry {
        ConvGeometry {
            batch: 2,
            in_channels,
            in_h: 11,
            in_w: 9,
            out_channels,
            kernel_h: 3,
            kernel_w: 3,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 1,
            pad_left: 1,
            pad_bottom: 1,
            pad_right: 1,
            groups,
        }
    }

    /// The SIMD levels this CPU runs (the portable level aside), saying so where there are none.
    pub(crate) fn simd_levels() -> Vec<SimdLevel> {
        let levels: Vec<SimdLevel> = supported_levels().into_iter().filter(|&l| l != SimdLevel::Portable).collect();
        if levels.is_empty() {
            eprintln!("skipped: this CPU has no AVX2");
        }
        levels
    }

    /// `f` run on a pool of `threads` threads (for the thread-count bit-identity tests).
    pub(crate) fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool").install(f)
    }

    #[test]
    fn forward_matches_direct_loops() {
        for geo in geometries() {
            let x = data(geo.batch * geo.in_channels * geo.in_h * geo.in_w, 1);
            let w = data(geo.out_channels * geo.k(), 2);
            let b = data(geo.out_channels, 3);
            let want = naive(&geo, &x, &w, &b);
            let mut y = vec![0.0; want.len()];
            conv2d_forward(&geo, &x, &w, Some(&b), &mut y);
            for (a, e) in y.iter().zip(&want) {
                assert!((a - e).abs() < 1e-10, "{geo:?}: {a} vs {e}");
            }
        }
    }

    #[test]
    fn backward_kernels_are_adjoint_to_forward() {
        // <conv(x, w), r> = <x, backward_data(w, r)> = <w, backward_weight(x, r)>.
        for geo in geometries() {
            let x = data(geo.batch * geo.in_channels * geo.in_h * geo.in_w, 4);
            let w = data(geo.out_channels * geo.k(), 5);
            let mut y = vec![0.0; geo.batch * geo.out_channels * geo.out_plane()];
            conv2d_forward(&geo, &x, &w, None, &mut y);
            let r = data(y.len(), 6);
            let lhs: f64 = y.iter().zip(&r).map(|(a, b)| a * b).sum();
            let mut dx = vec![0.0; x.len()];
            conv2d_backward_data(&geo, &w, &r, &mut dx);
            let via_x: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
            let mut dw = vec![0.0; w.len()];
            conv2d_backward_weight(&geo, &x, &r, &mut dw);
            let via_w: f64 = w.iter().zip(&dw).map(|(a, b)| a * b).sum();
            assert!((lhs - via_x).abs() < 1e-9 * lhs.abs().max(1.0), "{geo:?}");
            assert!((lhs - via_w).abs() < 1e-9 * lhs.abs().max(1.0), "{geo:?}");
        }
    }

    #[test]
    fn col2im_image_of_the_columns_is_the_input_gradient() {
        // Ungrouped variants (strides with asymmetric pads, dilations, pointwise, several tiles), and a stride-2
        // stem whose taps fall in every phase.
        let stem = ConvGeometry { stride_h: 2, stride_w: 2, in_h: 12, in_w: 13, ..base_3x3(3, 8, 1) };
        for geo in geometries().into_iter().filter(|g| g.groups == 1).chain([stem]) {
            let (k, out_plane, in_len) = (geo.k(), geo.out_plane(), geo.in_channels * geo.in_plane());
            let w = data(geo.out_channels * k, 7);
            let dy = data(geo.batch * geo.out_channels * out_plane, 8);
            let mut want = vec![0.0; geo.batch * in_len];
            conv2d_backward_data(&geo, &w, &dy, &mut want);
            let mut got = vec![0.0; want.len()];
            for (b, dx) in got.chunks_mut(in_len).enumerate() {
                // dcol[r][p] = Σ_co W[co][r] · dy[co][p], the product the packed kernels make.
                let dy = &dy[b * geo.out_channels * out_plane..];
                let mut dcol = vec![0.0; k * out_plane];
                for (r, row) in dcol.chunks_mut(out_plane).enumerate() {
                    for co in 0..geo.out_channels {
                        let wr = w[co * k + r];
                        row.iter_mut().zip(&dy[co * out_plane..]).for_each(|(d, &g)| *d += wr * g);
                    }
                }
                col2im_image(&geo, &dcol, dx);
            }
            for (a, e) in got.iter().zip(&want) {
                assert!((a - e).abs() < 1e-10, "{geo:?}: {a} vs {e}");
            }
        }
    }
}
