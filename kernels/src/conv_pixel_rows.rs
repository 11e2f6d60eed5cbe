//! Convolutions on small planes as the transposed product: output pixels on the microkernel's rows, output channels
//! along its vectors.
//!
//! The packed GEMM ([`crate::conv_packed`]) puts output channels on the tile's 12 rows and pixels along its two
//! 16-lane vectors, so a 7² plane (the last stage of ResNets and MobileNets) fills 49 of 64 columns. Transposed, a
//! 7-row tile covers 49 pixels in seven whole panels, and 512 channels are 16 whole column panels ([`wins`] says
//! where that pays). The products land in a pixel-major scratch that the epilogue writes out channel-major, adding
//! the residual and clamping on the way.
//!
//! Every output is the same sequence of operations as on the packed path — `0 + bias`, the products over `K` in
//! order (in blocks of [`KC`], through memory between blocks), the residual, the clamp — so the two give the same
//! bits and either may run. The split into tasks depends only on the layer's shape.

use crate::conv::TARGET_TASKS;
use crate::gemm::MatRef;
use crate::geometry::ConvGeometry;
use crate::im2col::im2col_panels;
use crate::microkernel::{pixel_tile, Tile};
use crate::packed_gemm::{pack_b_into, Clamp, KC};
use crate::simd::SimdLevel;
use rayon::prelude::*;
use std::cell::RefCell;

thread_local! {
    /// The image's pixel panels (`A`) and the pixel-major products, reused across calls on this thread.
    static BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Most bytes of pixel panels (`A`) packed at once: images beyond it run in further chunks.
const MAX_PANEL_BYTES: usize = 4 << 20;

/// Whether the transposed product computes fewer tile cells than the packed one for `geo` on `level` (by more than
/// 5 %), on a plane of at most 10² pixels, with at least 128 products per output. Only ungrouped layers, and only
/// where the level has the pixel tile (AVX-512). Measured on Zen 4, 2 threads (criterion `conv`, `mobilenet`), packed
/// against pixel rows: at 7², 3×3 512→512 1.86 → 1.41 ms, 1×1 2048→512 0.76 → 0.52 ms, 960→320 263 → 166 µs,
/// 960→160 153 → 98 µs, 320→1280 311 → 279 µs, 160→960 106 → 97 µs, 192→1152 165 → 160 µs; 64→384 lost
/// (20 → 33 µs: too few products to pay for packing the pixels). At 14² the two paths tie (1×1 1024→256) or the
/// packed one wins (576→96, 96→576); at 28² the packed one wins by 20–40 %.
pub fn wins(geo: &ConvGeometry, level: SimdLevel) -> bool {
    const MAX_PLANE: usize = 100;
    const MIN_K: usize = 128;
    let Some(px) = pixel_tile(level) else { return false };
    let Some(ch) = crate::microkernel::tile_if_supported(level) else { return false };
    let (pixels, channels) = (geo.out_plane(), geo.out_channels);
    if geo.groups != 1 || pixels == 0 || pixels > MAX_PLANE || channels == 0 || geo.k() < MIN_K {
        return false;
    }
    // The pixel rows run whole panels (each image padded to them), the packed tiles a short last one.
    let transposed = px.cells(pixels.div_ceil(px.mr) * px.mr, channels);
    let packed = ch.cells(channels, pixels);
    transposed * 20 < packed * 19
}

/// An ungrouped convolution's weights packed as the right operand of the transposed product: column panels of
/// `nr` output channels, `K` values each (zero-padded past the last channel), and the bias.
#[derive(Clone, Debug)]
pub struct PixelRowWeights {
    tile: Tile,
    k: usize,
    out_channels: usize,
    panels: Vec<f32>,
    bias: Vec<f32>,
}

impl PixelRowWeights {
    /// Packs OIHW `weight` (`out_channels × k`) and `bias` for `level`, or `None` where the level has no pixel tile.
    ///
    /// # Panics
    /// If the lengths disagree.
    pub fn new(level: SimdLevel, weight: &[f32], bias: Option<&[f32]>, out_channels: usize, k: usize) -> Option<Self> {
        let tile = pixel_tile(level)?;
        assert_eq!(weight.len(), out_channels * k, "pixel rows: weight length");
        let bias = bias.map_or_else(|| vec![0.0; out_channels], <[f32]>::to_vec);
        assert_eq!(bias.len(), out_channels, "pixel rows: bias length");
        let mut panels = vec![0.0; out_channels.div_ceil(tile.nr) * k * tile.nr];
        // Wᵀ: row p of the right operand is input position p of every output channel.
        let wt = MatRef { data: weight, rows: k, cols: out_channels, row_stride: 1, col_stride: k };
        if k > 0 && out_channels > 0 {
            pack_b_into(wt, tile.nr, &mut panels);
        }
        Some(PixelRowWeights { tile, k, out_channels, panels, bias })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        (self.panels.len() + self.bias.len()) * 4
    }
}

/// `output ← clamp(conv(input, weights) + bias + residual)` for an ungrouped `geo` (the caller checked that the
/// weights fit it).
///
/// # Panics
/// If a length disagrees with `geo`.
pub(crate) fn forward(
    geo: &ConvGeometry,
    input: &[f32],
    weights: &PixelRowWeights,
    clamp: Clamp,
    residual: Option<&[f32]>,
    output: &mut [f32],
) {
    let (pixels, channels, k) = (geo.out_plane(), geo.out_channels, geo.k());
    assert!(geo.groups == 1 && channels == weights.out_channels && k == weights.k, "pixel rows: weights do not fit");
    geo.check(input.len(), channels * k, output.len());
    if let Some(r) = residual {
        assert_eq!(r.len(), output.len(), "pixel rows: residual length");
    }
    if pixels == 0 || channels == 0 {
        return;
    }
    let Tile { mr, nr, .. } = weights.tile;
    let (pixel_panels, channel_panels) = (pixels.div_ceil(mr), channels.div_ceil(nr));
    // Each image's pixels take whole panels (rows past the plane are zero in A and ignored in the products), so the
    // images of a chunk are one tall product: every block of weights is read once per chunk, not once per image.
    let rows_per_image = pixel_panels * mr;
    let images_per_chunk = (MAX_PANEL_BYTES / (rows_per_image * k * 4).max(1)).clamp(1, geo.batch.max(1));
    // One column panel per task unless there are many: two panels a task left 10-panel layers (320 channels) with
    // five tasks for two threads. Layers with fewer panels than TARGET_TASKS split their rows of pixels too (960→160
    // at 7²: five panels, five tasks, had one thread idle for a fifth of the layer). The layer's shape alone decides
    // the split (which orders nothing: each output's sum is its own).
    let per_task = channel_panels.div_ceil(4 * TARGET_TASKS).max(1);
    let channel_tasks = channel_panels.div_ceil(per_task);
    let (in_image, out_image) = (geo.in_channels * geo.in_plane(), channels * pixels);
    // Row stride of the products: kept off multiples of 4 KB, or a wide layer's rows (2048 channels: 8 KB) would all
    // fall in one L1 set.
    let stride = match channels.next_multiple_of(16) {
        s if (s * 4).is_multiple_of(4096) => s + 16,
        s => s,
    };
    let win = geo.window();
    // The channel-major write in 8 × 8 transposes (`write_channel_major`) where AVX2 runs: it was a scalar scatter,
    // one store per output a plane apart.
    #[cfg(target_arch = "x86_64")]
    let simd_epilogue = crate::lanes8::runs_on(weights.tile.level);
    for (chunk, out) in output.chunks_mut(images_per_chunk * out_image).enumerate() {
        let (n0, images) = (chunk * images_per_chunk, out.len() / out_image);
        let row_panels = images * pixel_panels;
        let row_splits = TARGET_TASKS.div_ceil(channel_tasks).min(row_panels).max(1);
        let panels_per_split = row_panels.div_ceil(row_splits);
        let tasks: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = (0..channel_panels)
            .step_by(per_task)
            .flat_map(|j| {
                let columns = j..(j + per_task).min(channel_panels);
                (0..row_panels)
                    .step_by(panels_per_split)
                    .map(move |i| (columns.clone(), i * mr..(i + panels_per_split).min(row_panels) * mr))
            })
            .collect();
        // This thread's buffers, taken for the call and put back after it: a worker waiting in the parallel loops
        // below may run another pass's job that comes here too (it then allocates its own).
        let (mut a, mut products) = BUFFERS.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
        {
            // A: the images' im2col columns (pixels) packed in panels of mr (none when k is 0: bias only).
            a.resize(images * rows_per_image * k, 0.0);
            let pointwise = geo.is_pointwise();
            a.par_chunks_mut((mr * k).max(1)).enumerate().for_each(|(i, panel)| {
                let (n, p0) = (n0 + i / pixel_panels, i % pixel_panels * mr);
                let x = &input[n * in_image..(n + 1) * in_image];
                let p1 = (p0 + mr).min(pixels);
                if pointwise {
                    // A 1×1 layer's rows are its input channels: a run of the panel's pixels from each plane.
                    for (dst, plane) in panel.chunks_exact_mut(mr).zip(x.chunks_exact(pixels)) {
                        crate::packed_gemm::copy_short(&mut dst[..p1 - p0], &plane[p0..p1]);
                        dst[p1 - p0..].fill(0.0);
                    }
                } else {
                    im2col_panels(x, geo.in_channels, &win, p0, p1, mr, panel);
                }
            });
            products.resize(images * rows_per_image * stride, 0.0);
            let c = crate::conv::DisjointOutput::new(&mut products[..]);
            let o = crate::conv::DisjointOutput::new(out);
            let a = &a[..];
            // Each task: its block of the pixel-major products (from 0 + bias, then the products over K), then the
            // same block of the channel-major output — while the products are still in its cache.
            tasks.par_iter().for_each(|(panels, row_range)| {
                let (r0, rows) = (row_range.start, row_range.len());
                let (ch0, ch1) = (panels.start * nr, (panels.end * nr).min(channels));
                let block = c.block(r0 * stride + ch0, rows, ch1 - ch0, stride);
                for r in 0..rows {
                    // SAFETY: this task alone touches rows r0.. r0 + rows, columns ch0..ch1 of the products (the
                    // tasks partition them), a block `block` checked to lie inside them.
                    let row = unsafe { std::slice::from_raw_parts_mut(block.add(r * stride), ch1 - ch0) };
                    // The packed path's accumulators start from zero and add the bias (or nothing, and a zero bias
                    // adds +0 to +0: the same bits).
                    row.iter_mut().zip(&weights.bias[ch0..ch1]).for_each(|(v, &b)| *v = 0.0 + b);
                }
                let mut kb = 0;
                while kb < k {
                    let kc = KC.min(k - kb);
                    for jp in panels.clone() {
                        let cols = nr.min(channels - jp * nr);
                        let block = c.block(r0 * stride + jp * nr, rows, cols, stride);
                        let b = &weights.panels[(jp * k + kb) * nr..(jp * k + kb + kc) * nr];
                        // SAFETY: as above, this task alone writes this block of the products, checked to lie
                        // inside them; `a` holds kc·mr values from kb·mr in each of its row panels (k·mr apart,
                        // the task's from r0 / mr); `b` holds kc rows of nr values; the tile's level is supported
                        // (pixel_tile checked it).
                        unsafe {
                            weights.tile.run_panels(
                                rows / mr,
                                mr,
                                cols,
                                kc,
                                a[(r0 / mr * k + kb) * mr..].as_ptr(),
                                k * mr,
                                None,
                                b.as_ptr(),
                                nr,
                                None,
                                block,
                                stride,
                                true,
                                None,
                                None,
                                None,
                            )
                        };
                    }
                    kb += kc;
                }
                // Channel-major output: the products, then the residual, then the clamp (the packed epilogue's
                // order), for the task's pixels of each image its rows cover.
                let (first, last) = (r0 / rows_per_image, (r0 + rows - 1) / rows_per_image);
                for img in first..=last {
                    let image_rows = img * rows_per_image;
                    let p_lo = r0.max(image_rows) - image_rows;
                    let p_hi = ((r0 + rows).min(image_rows + rows_per_image) - image_rows).min(pixels);
                    if p_lo >= p_hi {
                        continue;
                    }
                    let at0 = img * out_image + ch0 * pixels;
                    let planes = o.block(at0, ch1 - ch0, pixels, pixels);
                    let res = residual.map(|r| &r[(n0 * out_image + at0)..][..(ch1 - ch0) * pixels]);
                    #[cfg(target_arch = "x86_64")]
                    if simd_epilogue {
                        let first = (image_rows + p_lo) * stride + ch0;
                        // Channels ch0 .. round8(ch1) of the products: ch1 is a multiple of nr unless it is the layer's
                        // last channel, past which (within `stride`) no task writes.
                        let rows = c.block(first, p_hi - p_lo, (ch1 - ch0).next_multiple_of(8), stride);
                        let out = ChannelMajor { planes, pixels, first: p_lo, residual: res.map(<[f32]>::as_ptr) };
                        // SAFETY: `simd_epilogue` checked AVX2 and FMA; this task wrote the products it reads (rows
                        // p_lo..p_hi of this image, channels ch0..ch1; the columns past ch1 up to a whole vector
                        // are padding no task writes), a block `block` checked to lie inside them; it alone writes
                        // channels ch0..ch1 of those pixels in `planes` (checked above), and the residual has the
                        // output's layout.
                        unsafe { write_channel_major(rows, stride, p_hi - p_lo, ch1 - ch0, &out, clamp) };
                        continue;
                    }
                    for p in p_lo..p_hi {
                        let row = (image_rows + p) * stride;
                        // SAFETY: this task wrote these products (columns ch0..ch1 of its rows) and alone
                        // touches them.
                        let products = unsafe { products_row(&c, row + ch0, ch1 - ch0) };
                        for (j, &v) in products.iter().enumerate() {
                            let at = j * pixels + p;
                            let v = res.map_or(v, |r| v + r[at]);
                            // SAFETY: this task alone writes channels ch0..ch1 of pixels p_lo..p_hi of this image
                            // (tasks partition channels and rows of pixels), inside `planes` (checked above).
                            unsafe { *planes.add(at) = clamp.apply_fast(v) };
                        }
                    }
                }
            });
        }
        BUFFERS.with(|cell| *cell.borrow_mut() = (a, products));
    }
}

/// Where [`write_channel_major`] writes: channel `j`'s pixel `first + q` at `planes + j·pixels + first + q`, after
/// adding the residual at the same offset from `residual`.
#[cfg(target_arch = "x86_64")]
struct ChannelMajor {
    planes: *mut f32,
    pixels: usize,
    first: usize,
    residual: Option<*const f32>,
}

/// The pixel-major products `rows × channels` (row stride `stride`) written channel-major (see [`ChannelMajor`]):
/// 8 pixels × 8 channels transposed in registers, then per channel the residual and the clamp — the scalar loop's
/// operations in its order — and one store of up to 8 pixels.
///
/// # Safety
/// The CPU supports AVX2 and FMA; `products` is readable for `rows` rows of `channels` rounded up to 8 values;
/// `out.planes` is writable, and `out.residual` readable, at `j·pixels + out.first + q` for `j < channels`,
/// `q < rows`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn write_channel_major(
    products: *const f32,
    stride: usize,
    rows: usize,
    channels: usize,
    out: &ChannelMajor,
    clamp: Clamp,
) {
    use crate::lanes8::{first_lanes, transpose, LANES as L};
    use std::arch::x86_64::*;
    let (lo, hi) = (_mm256_set1_ps(clamp.lo), _mm256_set1_ps(clamp.hi));
    for q0 in (0..rows).step_by(L) {
        let n = (rows - q0).min(L);
        let mask = first_lanes(n);
        for j0 in (0..channels).step_by(L) {
            let mut v: [__m256; L] = std::array::from_fn(|r| {
                if r < n {
                    // SAFETY: row q0 + r < rows, values j0 .. j0 + 8 ≤ channels rounded up to 8 (the contract).
                    unsafe { _mm256_loadu_ps(products.add((q0 + r) * stride + j0)) }
                } else {
                    _mm256_setzero_ps()
                }
            });
            transpose(&mut v);
            for (j, &x) in v.iter().enumerate().take(channels - j0) {
                let at = (j0 + j) * out.pixels + out.first + q0;
                let mut x = x;
                if let Some(r) = out.residual {
                    // SAFETY: channel j0 + j < channels, pixels q0 .. q0 + n: the contract's offsets.
                    let add = unsafe {
                        if n == L {
                            _mm256_loadu_ps(r.add(at))
                        } else {
                            _mm256_maskload_ps(r.add(at), mask)
                        }
                    };
                    x = _mm256_add_ps(x, add);
                }
                // max(lo, x) then min(hi, x) pass a NaN x through, as `Clamp::apply_fast` does.
                x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
                // SAFETY: as above, for `planes`.
                unsafe {
                    if n == L {
                        _mm256_storeu_ps(out.planes.add(at), x)
                    } else {
                        _mm256_maskstore_ps(out.planes.add(at), mask, x)
                    }
                }
            }
        }
    }
}

/// `len` products from `at`, read by the task that wrote them.
///
/// # Safety
/// No other thread may write these `len` values while the returned slice lives (the calling task owns them).
///
/// # Panics
/// If they do not lie inside the products.
unsafe fn products_row<'a>(c: &'a crate::conv::DisjointOutput<'_, f32>, at: usize, len: usize) -> &'a [f32] {
    let p = c.block(at, 1, len, len);
    // SAFETY: the block lies inside the products (checked by `block`); the caller owns it (the contract).
    unsafe { std::slice::from_raw_parts(p, len) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::tests::{base_3x3, data_f32 as data, on_threads};
    use crate::conv_packed::{conv2d_forward_packed, conv2d_forward_packed_residual, PackedConv};
    use crate::simd::supported_levels;

    /// Small planes: ResNet's and MobileNet's last stage (7²), a strided layer, 1×1 layers, channel counts
    /// that are not a multiple of a column panel, a plane not a multiple of the tile's rows, batches run as one
    /// product and in chunks.
    fn geometries() -> Vec<ConvGeometry> {
        let g = |cin: usize, cout: usize, k: usize, side: usize, stride: usize, batch: usize| ConvGeometry {
            batch,
            in_channels: cin,
            out_channels: cout,
            in_h: side,
            in_w: side,
            kernel_h: k,
            kernel_w: k,
            stride_h: stride,
            stride_w: stride,
            pad_top: k / 2,
            pad_left: k / 2,
            pad_bottom: k / 2,
            pad_right: k / 2,
            ..base_3x3(1, 1, 1)
        };
        vec![
            g(48, 90, 3, 7, 1, 1),
            g(64, 64, 3, 14, 2, 2),
            g(400, 96, 1, 7, 1, 1),
            g(400, 64, 1, 9, 1, 2),
            // 1×1 at stride 2 on an odd plane, 40 channels (through `conv2d_forward_packed`, its pixels are
            // gathered first: see `conv_packed`).
            g(400, 40, 1, 13, 2, 2),
            g(48, 64, 3, 10, 1, 1),
            g(48, 64, 3, 5, 1, 3),
            // 5.3 MB of pixel panels per image: one image per chunk.
            g(3000, 32, 3, 7, 1, 2),
            // 1.8 MB per image: chunks of two images, then one.
            g(1000, 32, 3, 7, 1, 3),
            // Nine channel panels (no pixel-row split), and 33 (two panels a task).
            g(160, 288, 1, 7, 1, 2),
            g(128, 1056, 1, 5, 1, 1),
        ]
    }

    #[test]
    fn bit_identical_to_the_packed_path_with_and_without_bias_clamp_and_residual() {
        let Some(level) = supported_levels().into_iter().find(|&l| pixel_tile(l).is_some()) else {
            eprintln!("skipped: no SIMD level with a pixel tile on this CPU (AVX-512)");
            return;
        };
        let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        for (i, geo) in geometries().iter().enumerate() {
            assert!(wins(geo, level), "{geo:?} should take the pixel rows");
            let x = data(geo.batch * geo.in_channels * geo.in_plane(), i);
            let (w, b) = (data(geo.out_channels * geo.k(), i + 1), data(geo.out_channels, i + 2));
            let len = geo.batch * geo.out_channels * geo.out_plane();
            let residual = data(len, i + 3);
            let (kernel, (co, ci)) = ([geo.kernel_h, geo.kernel_w], (geo.out_channels, geo.in_channels));
            // With a bias (a folded batch-norm) and without (the input gradient's transposed convolutions).
            for bias in [Some(&b[..]), None] {
                let packed = PackedConv::new(level, &w, bias, co, ci, kernel, 1);
                let rows = PackedConv::pixel_rows(level, &w, bias, co, ci, kernel).expect("AVX-512 has the tile");
                let clamp = Clamp { lo: -0.5, hi: 0.75 };
                let (mut want, mut got) = (vec![f32::NAN; len], vec![f32::NAN; len]);
                conv2d_forward_packed(geo, &x, &packed, clamp, &mut want);
                conv2d_forward_packed(geo, &x, &rows, clamp, &mut got);
                assert!(same(&want, &got), "{geo:?}, bias {}", bias.is_some());
                conv2d_forward_packed_residual(geo, &x, &packed, Clamp::RELU, &residual, &mut want);
                conv2d_forward_packed_residual(geo, &x, &rows, Clamp::RELU, &residual, &mut got);
                assert!(same(&want, &got), "{geo:?} with residual, bias {}", bias.is_some());
            }
        }
    }

    #[test]
    fn bit_identical_on_one_two_and_four_threads() {
        let Some(level) = supported_levels().into_iter().find(|&l| pixel_tile(l).is_some()) else {
            eprintln!("skipped: no SIMD level with a pixel tile on this CPU (AVX-512)");
            return;
        };
        for (i, geo) in geometries().iter().enumerate() {
            let x = data(geo.batch * geo.in_channels * geo.in_plane(), i);
            let (w, b) = (data(geo.out_channels * geo.k(), i + 1), data(geo.out_channels, i + 2));
            let rows = PixelRowWeights::new(level, &w, Some(&b), geo.out_channels, geo.k()).unwrap();
            let run = |threads| {
                let mut y = vec![0.0f32; geo.batch * geo.out_channels * geo.out_plane()];
                // With a residual and a clamp: the epilogue runs in the tasks too.
                let (res, clamp) = (data(y.len(), i + 3), Clamp { lo: 0.0, hi: 6.0 });
                on_threads(threads, || forward(geo, &x, &rows, clamp, Some(&res), &mut y));
                y.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
            };
            let one = run(1);
            assert!(run(2) == one && run(4) == one, "{geo:?}");
        }
    }

    #[test]
    fn chosen_for_small_ragged_planes_only() {
        let g7 = ConvGeometry { in_channels: 512, out_channels: 512, in_h: 7, in_w: 7, ..base_3x3(1, 1, 1) };
        assert!(!wins(&g7, SimdLevel::Portable) && pixel_tile(SimdLevel::Portable).is_none(), "AVX-512 only");
        assert!(PixelRowWeights::new(SimdLevel::Portable, &[0.0; 4], None, 2, 2).is_none());
        let Some(level) = supported_levels().into_iter().find(|&l| pixel_tile(l).is_some()) else {
            eprintln!("skipped: no SIMD level with a pixel tile on this CPU (AVX-512)");
            return;
        };
        let g = |c: usize, side: usize| ConvGeometry {
            in_channels: c,
            out_channels: c,
            in_h: side,
            in_w: side,
            ..base_3x3(1, 1, 1)
        };
        assert!(wins(&g(512, 7), level) && wins(&g(2048, 7), level));
        assert!(!wins(&g(256, 14), level) && !wins(&g(64, 56), level), "larger planes stay on the packed tiles");
        assert!(!wins(&ConvGeometry { groups: 512, ..g(512, 7) }, level), "grouped layers stay");
        let short = ConvGeometry {
            kernel_h: 1,
            kernel_w: 1,
            pad_top: 0,
            pad_left: 0,
            pad_bottom: 0,
            pad_right: 0,
            in_channels: 64,
            out_channels: 384,
            ..g(1, 7)
        };
        assert!(!wins(&short, level), "products of 64 stay on the packed tiles");
        assert!(wins(&ConvGeometry { in_channels: 160, out_channels: 960, ..short }, level), "products of 160 do not");
    }
}
