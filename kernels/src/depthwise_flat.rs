//! f32 depthwise convolution as one long multi-tap filter per plane, vectorized per SIMD level.
//!
//! The generic kernel in [`crate::depthwise`] updates each output row once per tap: on the 7- and 14-pixel rows of
//! MobileNet-style networks that is mostly loop overhead. Here each plane is first copied into a zero-padded
//! scratch laid out by stride phase — `scratch[col phase][row phase][row][col]` with rows `L` wide — so that tap
//! `(ky, kx)` of output `(oy, ox)` reads `scratch[base(ky, kx) + oy·L + ox]`. The whole plane then is a single
//! 1-D filter over the flat index `j = oy·L + ox`: `flat[j] = bias + Σ_t w_t · scratch[base_t + j]`, computed in
//! register blocks of [`BLOCK`] outputs with the taps innermost, and the `ow` valid columns of each row are copied
//! out (with the fused clamp). `L` is `ow` plus the kernel's reach in phase columns, so the wasted columns are few.
//!
//! The same filter computes the input gradient: it is the convolution of the zero-upsampled output gradient with
//! the flipped kernel, which the layout expresses by an upsampling factor on the source plane.
//!
//! Each output is a fixed sequence of operations (bias, then the taps in order), so results do not depend on the
//! number of threads.

#[cfg(target_arch = "x86_64")]
use crate::depthwise_blocked::{BlockedFilter, BlockedGradient};
use crate::depthwise_plane::FlatPlane;
use crate::depthwise_rows::RowFilter;
use crate::geometry::ConvGeometry;
use crate::packed_gemm::Clamp;
use crate::simd::SimdLevel;
use rayon::prelude::*;
use std::cell::RefCell;

/// Outputs computed per register block (4 AVX-512 or 8 AVX2 accumulators: enough independent FMA chains).
const BLOCK: usize = 64;

/// Outputs per parallel task (whole planes; the grouping depends only on the layer's shape).
const TASK_OUTPUTS: usize = 4 * 1024;

/// One plane's filter: where the source lands in the padded scratch and which scratch offset each tap reads.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PlaneFilter {
    src_h: usize,
    src_w: usize,
    /// Source pixel `(iy, ix)` lands at padded `(pad_top + iy·up_h, pad_left + ix·up_w)`.
    up_h: usize,
    up_w: usize,
    pad_top: usize,
    pad_left: usize,
    stride_h: usize,
    stride_w: usize,
    out_h: usize,
    out_w: usize,
    /// Rows per row phase and columns per row of the scratch.
    rows: usize,
    row_len: usize,
    /// Scratch offset of each tap, row-major over `(ky, kx)`.
    bases: Vec<usize>,
}

impl PlaneFilter {
    #[allow(clippy::too_many_arguments)]
    fn new(
        src: [usize; 2],
        up: [usize; 2],
        pad: [usize; 2],
        kernel: [usize; 2],
        dilation: [usize; 2],
        stride: [usize; 2],
        out: [usize; 2],
    ) -> PlaneFilter {
        let [sh, sw] = stride;
        let reach_h = (kernel[0] - 1) * dilation[0];
        let reach_w = (kernel[1] - 1) * dilation[1];
        let rows = out[0] + reach_h / sh;
        let row_len = out[1] + reach_w / sw;
        let mut bases = Vec::with_capacity(kernel[0] * kernel[1]);
        for ky in 0..kernel[0] {
            for kx in 0..kernel[1] {
                let (dy, dx) = (ky * dilation[0], kx * dilation[1]);
                bases.push((((dx % sw) * sh + dy % sh) * rows + dy / sh) * row_len + dx / sw);
            }
        }
        PlaneFilter {
            src_h: src[0],
            src_w: src[1],
            up_h: up[0],
            up_w: up[1],
            pad_top: pad[0],
            pad_left: pad[1],
            stride_h: sh,
            stride_w: sw,
            out_h: out[0],
            out_w: out[1],
            rows,
            row_len,
            bases,
        }
    }

    /// The forward filter of a depthwise `geo`.
    fn forward_of(geo: &ConvGeometry) -> PlaneFilter {
        PlaneFilter::new(
            [geo.in_h, geo.in_w],
            [1, 1],
            [geo.pad_top, geo.pad_left],
            [geo.kernel_h, geo.kernel_w],
            [geo.dilation_h, geo.dilation_w],
            [geo.stride_h, geo.stride_w],
            [geo.out_h().unwrap_or(0), geo.out_w().unwrap_or(0)],
        )
    }

    /// The input-gradient filter of `geo` (padding within the kernel's reach), run with the flipped kernel: the
    /// output gradient upsampled by the stride and padded so that input pixel `(iy, ix)` sees exactly the outputs
    /// whose windows covered it.
    fn backward_of(geo: &ConvGeometry) -> PlaneFilter {
        PlaneFilter::new(
            [geo.out_h().unwrap_or(0), geo.out_w().unwrap_or(0)],
            [geo.stride_h, geo.stride_w],
            [(geo.kernel_h - 1) * geo.dilation_h - geo.pad_top, (geo.kernel_w - 1) * geo.dilation_w - geo.pad_left],
            [geo.kernel_h, geo.kernel_w],
            [geo.dilation_h, geo.dilation_w],
            [1, 1],
            [geo.in_h, geo.in_w],
        )
    }

    /// Length of the flat output: whole register blocks.
    fn flat_len(&self) -> usize {
        (self.out_h * self.row_len).div_ceil(BLOCK) * BLOCK
    }

    fn scratch_len(&self) -> usize {
        let laid_out = self.stride_w * self.stride_h * self.rows * self.row_len;
        let read = self.bases.iter().max().copied().unwrap_or(0) + self.flat_len();
        laid_out.max(read)
    }

    /// Copies `src` (one `src_h × src_w` plane) into the zeroed, phase-split `scratch`.
    ///
    /// Only the cells a source pixel lands in are written: the rest (padding, slack) must already be zero.
    fn lay_out(&self, src: &[f32], scratch: &mut [f32]) {
        lay_out_per_level(self, src, scratch)
    }

    /// [`PlaneFilter::lay_out`]'s loops, compiled per SIMD level (the stride-2 column split vectorizes with
    /// shuffles; the SSE2 baseline moved one value at a time). `AVX512`: compiled into the AVX-512 copy, which splits
    /// stride-2 rows with two-source permutes ([`deinterleave_avx512`]).
    #[inline(always)]
    fn lay_out_body<const AVX512: bool>(&self, src: &[f32], scratch: &mut [f32]) {
        debug_assert!(!AVX512 || SimdLevel::Avx512.supported(), "the AVX-512 layout on a CPU without AVX-512F");
        let (sh, sw, l) = (self.stride_h, self.stride_w, self.row_len);
        for (iy, row) in src.chunks_exact(self.src_w).take(self.src_h).enumerate() {
            let r = self.pad_top + iy * self.up_h;
            if r / sh >= self.rows {
                break;
            }
            let row_base = (r % sh) * self.rows + r / sh;
            if sw == 1 && self.up_w == 1 {
                if self.pad_left < l {
                    let n = self.src_w.min(l - self.pad_left);
                    let at = row_base * l + self.pad_left;
                    scratch[at..at + n].copy_from_slice(&row[..n]);
                }
                continue;
            }
            if sw == 2 && self.up_w == 1 {
                // Source columns 2k and 2k + 1 land in the two phases at floor(c / 2): one pass over pairs that
                // LLVM vectorizes with shuffles.
                let (p, phase_rows) = (self.pad_left, sh * self.rows);
                let start = |q: usize| (q * phase_rows + row_base) * l;
                let (first_at, second_at) = (start(p % 2) + p / 2, start((p + 1) % 2) + p.div_ceil(2));
                let n = (self.src_w / 2).min(l.saturating_sub(p.div_ceil(2)));
                let (first, second) = if first_at < second_at {
                    let (lo, hi) = scratch.split_at_mut(second_at);
                    (&mut lo[first_at..first_at + n], &mut hi[..n])
                } else {
                    let (lo, hi) = scratch.split_at_mut(first_at);
                    let second = &mut lo[second_at..second_at + n];
                    (&mut hi[..n], second)
                };
                #[cfg(target_arch = "x86_64")]
                if AVX512 {
                    // SAFETY: this copy of the loop is compiled into (and only called from) the AVX-512 copy of
                    // `lay_out_per_level`, which runs only where the CPU has AVX-512F.
                    unsafe { deinterleave_avx512(&row[..2 * n], first, second) };
                }
                // (AVX512 is only ever true on x86-64.)
                if !AVX512 {
                    for ((pair, a), b) in row.chunks_exact(2).zip(first.iter_mut()).zip(second.iter_mut()) {
                        *a = pair[0];
                        *b = pair[1];
                    }
                }
                // What the paired pass left: an odd-width row's last column, or a column the other phase had no
                // room for.
                for (ix, &v) in row.iter().enumerate().skip(2 * n) {
                    let c = p + ix;
                    if c / 2 < l {
                        scratch[start(c % 2) + c / 2] = v;
                    }
                }
                continue;
            }
            if self.up_w == 1 {
                // Phase by phase: source columns pad_left + ix ≡ p (mod sw) land side by side.
                for p in 0..sw {
                    let first = (p + sw - self.pad_left % sw) % sw;
                    let at = (p * sh * self.rows + row_base) * l + (self.pad_left + first) / sw;
                    let room = (p * sh * self.rows + row_base + 1) * l - at;
                    let n = room.min((self.src_w.saturating_sub(first)).div_ceil(sw));
                    // A row narrower than the stride may have no column in this phase (n = 0).
                    let (dst, src) = (&mut scratch[at..at + n], row.get(first..).unwrap_or_default());
                    for (k, d) in dst.iter_mut().enumerate() {
                        *d = src[k * sw];
                    }
                }
                continue;
            }
            for (ix, &v) in row.iter().enumerate() {
                let c = self.pad_left + ix * self.up_w;
                if c / sw >= l {
                    break;
                }
                scratch[((c % sw) * sh * self.rows + row_base) * l + c / sw] = v;
            }
        }
    }

    /// `out ← clamp(bias + Σ_t weights[t]·tap_t(src))` for one plane, using the thread's scratch buffers.
    fn run(&self, src: &[f32], weights: &[f32], bias: f32, clamp: Clamp, out: &mut [f32], level: SimdLevel) {
        BUFFERS.with(|cell| {
            let mut guard = cell.borrow_mut();
            guard.prepare(self, self.scratch_len(), self.flat_len());
            let Buffers { scratch, flat, .. } = &mut *guard;
            let flat = &mut flat[..self.flat_len()];
            self.lay_out(src, scratch);
            taps(level, scratch, &self.bases, weights, bias, clamp, flat);
            for (dst, row) in out.chunks_exact_mut(self.out_w).zip(flat.chunks(self.row_len)) {
                dst.copy_from_slice(&row[..self.out_w]);
            }
        });
    }
}

/// [`PlaneFilter::lay_out_body`] compiled for the SIMD level in use.
fn lay_out_per_level(filter: &PlaneFilter, src: &[f32], scratch: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn avx512(filter: &PlaneFilter, src: &[f32], scratch: &mut [f32]) {
        filter.lay_out_body::<true>(src, scratch)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn avx2(filter: &PlaneFilter, src: &[f32], scratch: &mut [f32]) {
        filter.lay_out_body::<false>(src, scratch)
    }
    match crate::simd::level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: level() only returns levels this CPU supports.
        SimdLevel::Avx512 => unsafe { avx512(filter, src, scratch) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        SimdLevel::Avx2 => unsafe { avx2(filter, src, scratch) },
        _ => filter.lay_out_body::<false>(src, scratch),
    }
}

/// `even[i] = pairs[2i]`, `odd[i] = pairs[2i + 1]`: 16 pairs per two loads, two permutes and two stores, the last
/// (fewer) pairs through lane masks — a stride-2 row split into its column phases.
///
/// # Safety
/// The CPU has AVX-512F.
///
/// # Panics
/// If `even` or `odd` is shorter than half of `pairs`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn deinterleave_avx512(pairs: &[f32], even: &mut [f32], odd: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = pairs.len() / 2;
    assert!(even.len() >= n && odd.len() >= n, "deinterleave: outputs too short");
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let (src, (e, o)) = (pairs.as_ptr(), (even.as_mut_ptr(), odd.as_mut_ptr()));
    let mut i = 0;
    while i < n {
        let count = (n - i).min(16);
        // Lanes of the two source vectors (2·count values from 2i) and of the two outputs (count from i).
        let lanes = |c: usize| if c >= 16 { u16::MAX } else { ((1u32 << c) - 1) as u16 };
        let (lo, hi, out) = (lanes(2 * count), lanes((2 * count).saturating_sub(16)), lanes(count));
        // SAFETY: the masks select values 2i .. 2i + 2·count ≤ pairs.len() of `pairs` and i .. i + count ≤ n of each
        // output (checked above); masked-off lanes are not accessed (the second load's address may lie past the end
        // when its mask is empty: hence `wrapping_add`).
        unsafe {
            let a = _mm512_maskz_loadu_ps(lo, src.add(2 * i));
            let b = _mm512_maskz_loadu_ps(hi, src.wrapping_add(2 * i + 16));
            _mm512_mask_storeu_ps(e.add(i), out, _mm512_permutex2var_ps(a, evens, b));
            _mm512_mask_storeu_ps(o.add(i), out, _mm512_permutex2var_ps(a, odds, b));
        }
        i += count;
    }
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = const { RefCell::new(Buffers::new()) };
}

/// A thread's scratch plane and flat output, and the filter whose layout the scratch holds.
struct Buffers {
    scratch: Vec<f32>,
    flat: Vec<f32>,
    laid_out_for: Option<PlaneFilter>,
}

impl Buffers {
    const fn new() -> Buffers {
        Buffers { scratch: Vec::new(), flat: Vec::new(), laid_out_for: None }
    }

    /// Makes the scratch ready for `layout` (at least `scratch_len` long) and the flat output at least `flat_len`.
    ///
    /// Every plane of one layout writes the same scratch cells, so the zeros around them survive from one plane to
    /// the next: the scratch is cleared only when the layout changes — or when a read reaches further than it holds
    /// (the layout fixes where the source lands, not how far the taps read past it).
    fn prepare(&mut self, layout: &PlaneFilter, scratch_len: usize, flat_len: usize) {
        if self.laid_out_for.as_ref() != Some(layout) || self.scratch.len() < scratch_len {
            self.scratch.clear();
            self.scratch.resize(scratch_len, 0.0);
            self.laid_out_for = Some(layout.clone());
        }
        if self.flat.len() < flat_len {
            self.flat.resize(flat_len, 0.0);
        }
    }
}

#[inline(always)]
fn taps_body<const FUSED: bool>(
    scratch: &[f32],
    bases: &[usize],
    weights: &[f32],
    bias: f32,
    clamp: Clamp,
    flat: &mut [f32],
) {
    for (b, block) in flat.chunks_exact_mut(BLOCK).enumerate() {
        let j = b * BLOCK;
        let mut acc = [bias; BLOCK];
        for (&base, &w) in bases.iter().zip(weights) {
            let src = &scratch[base + j..base + j + BLOCK];
            for l in 0..BLOCK {
                acc[l] = if FUSED { src[l].mul_add(w, acc[l]) } else { acc[l] + w * src[l] };
            }
        }
        // `v < lo` and `v > hi` are false for NaN, which passes through (PyTorch's clamp).
        for (o, &v) in block.iter_mut().zip(&acc) {
            *o = clamp.apply_fast(v);
        }
    }
}

/// The tap loop compiled for `level` (fused multiply-add on the SIMD levels, multiply then add on the portable one).
fn taps(level: SimdLevel, s: &[f32], bases: &[usize], w: &[f32], bias: f32, clamp: Clamp, flat: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    fn avx512(s: &[f32], bases: &[usize], w: &[f32], bias: f32, clamp: Clamp, flat: &mut [f32]) {
        taps_body::<true>(s, bases, w, bias, clamp, flat)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn avx2(s: &[f32], bases: &[usize], w: &[f32], bias: f32, clamp: Clamp, flat: &mut [f32]) {
        taps_body::<true>(s, bases, w, bias, clamp, flat)
    }
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the guard checked that this CPU runs the level.
        SimdLevel::Avx512 if level.supported() => unsafe { avx512(s, bases, w, bias, clamp, flat) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        SimdLevel::Avx2 if level.supported() => unsafe { avx2(s, bases, w, bias, clamp, flat) },
        _ => taps_body::<false>(s, bases, w, bias, clamp, flat),
    }
}

/// Widest output row, in vectors, that runs on the row kernel ([`RowFilter`], which reads a stride-1 layer's source
/// rows in place with masked loads): on rows of at most two vectors (MobileNet's 7- and 14-pixel planes) the flat
/// kernel's two copies per row cost more than the taps. Both compute the same operations in the same order, so the
/// choice never changes a result.
const ROW_VECTORS_MAX: usize = 2;

/// Planes per parallel task for planes of `plane` outputs.
fn planes_per_task(plane: usize) -> usize {
    (TASK_OUTPUTS / plane.max(1)).max(1)
}

/// `output ← clamp(depthwise_conv(input, weight) + bias)` (`groups == in_channels`, OIHW weights) at `level`.
///
/// Layers whose channels come in whole vectors run channel-blocked ([`crate::depthwise_blocked`]), except small
/// planes that AVX-512's flat-plane kernel takes; the others plane by plane ([`forward_per_plane`]). All give the same
/// bits.
///
/// # Panics
/// If `geo` is not depthwise or a length disagrees with it (programming errors of the caller).
pub fn forward(
    geo: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    clamp: Clamp,
    output: &mut [f32],
    level: SimdLevel,
) {
    assert!(geo.is_depthwise(), "depthwise: not a depthwise geometry");
    // AVX-512's flat-plane kernel (stride-1 planes of at most 64 pixels) was faster than the blocked one on 7²
    // planes (MobileNetV2 960 @7²: 20 against 31 µs).
    #[cfg(target_arch = "x86_64")]
    if let Some(blocked) = BlockedFilter::of(geo, level).filter(|_| !FlatPlane::applies(geo, level)) {
        return blocked.run(input, weight, bias, clamp, output);
    }
    forward_per_plane(geo, input, weight, bias, clamp, output, level)
}

/// [`forward`] plane by plane (the flat, row or flat-plane kernel per plane), whatever the channel count: the
/// reference of the channel-blocked kernel, and its peer in the benchmarks.
///
/// # Panics
/// As [`forward`].
pub fn forward_per_plane(
    geo: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    clamp: Clamp,
    output: &mut [f32],
    level: SimdLevel,
) {
    assert!(geo.is_depthwise(), "depthwise: not a depthwise geometry");
    geo.check(input.len(), weight.len(), output.len());
    assert_eq!(bias.len(), geo.out_channels, "depthwise: bias length");
    let (in_plane, out_plane) = (geo.in_plane(), geo.out_plane());
    if out_plane == 0 {
        return;
    }
    let taps = geo.kernel_h * geo.kernel_w;
    let mult = geo.out_channels / geo.in_channels;
    let filter = PlaneFilter::forward_of(geo);
    let small = FlatPlane::of(geo, level);
    let rows = RowFilter::of(geo).map(|r| r.lanes(level)).filter(|l| l.rows_fit(ROW_VECTORS_MAX));
    let per_task = planes_per_task(out_plane);
    output.par_chunks_mut(out_plane * per_task).enumerate().for_each(|(task, planes)| {
        for (i, out) in planes.chunks_exact_mut(out_plane).enumerate() {
            let plane = task * per_task + i;
            let (n, co) = (plane / geo.out_channels, plane % geo.out_channels);
            let c = n * geo.in_channels + co / mult;
            let src = &input[c * in_plane..(c + 1) * in_plane];
            let w = &weight[co * taps..(co + 1) * taps];
            if let Some(small) = &small {
                small.run(src, w, bias[co], clamp, out);
            } else if !rows.as_ref().is_some_and(|r| r.run(src, w, bias[co], clamp, out)) {
                filter.run(src, w, bias[co], clamp, out, level);
            }
        }
    });
}

/// `grad_input ← ∂⟨grad_output, depthwise_conv(x, weight)⟩/∂x` (overwrites it) at `level`, or `false` (nothing
/// written) where this layout does not apply: a channel multiplier above 1, or padding wider than the kernel's
/// reach (the caller then uses the generic kernel).
///
/// # Panics
/// If `geo` is not depthwise or a length disagrees with it.
pub fn backward_data(
    geo: &ConvGeometry,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    level: SimdLevel,
) -> bool {
    assert!(geo.is_depthwise(), "depthwise: not a depthwise geometry");
    geo.check(grad_input.len(), weight.len(), grad_output.len());
    #[cfg(target_arch = "x86_64")]
    if let Some(blocked) = blocked_backward(geo, level) {
        let taps = geo.kernel_h * geo.kernel_w;
        let flipped: Vec<f32> = weight.chunks_exact(taps).flat_map(|w| w.iter().rev().copied()).collect();
        blocked.run(grad_output, &flipped, &vec![0.0; geo.in_channels], Clamp::NONE, grad_input);
        return true;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(strided) = BlockedGradient::of(geo, level) {
        strided.run(weight, grad_output, grad_input);
        return true;
    }
    backward_data_per_plane(geo, weight, grad_output, grad_input, level)
}

/// The channel-blocked kernel for the input gradient of a stride-1 layer, where it applies: that gradient is the
/// stride-1 convolution of the output gradient with the flipped kernel and the padding mirrored (`reach − pad` on
/// each side, which needs every pad within the kernel's reach), the operations of the per-plane filter.
#[cfg(target_arch = "x86_64")]
fn blocked_backward(geo: &ConvGeometry, level: SimdLevel) -> Option<BlockedFilter> {
    let reach_h = (geo.kernel_h - 1) * geo.dilation_h;
    let reach_w = (geo.kernel_w - 1) * geo.dilation_w;
    let within = geo.pad_top.max(geo.pad_bottom) <= reach_h && geo.pad_left.max(geo.pad_right) <= reach_w;
    if geo.stride_h != 1 || geo.stride_w != 1 || !within || geo.out_channels != geo.in_channels {
        return None;
    }
    let mirrored = ConvGeometry {
        in_h: geo.out_h()?,
        in_w: geo.out_w()?,
        pad_top: reach_h - geo.pad_top,
        pad_left: reach_w - geo.pad_left,
        pad_bottom: reach_h - geo.pad_bottom,
        pad_right: reach_w - geo.pad_right,
        ..*geo
    };
    let sized = mirrored.out_h() == Some(geo.in_h) && mirrored.out_w() == Some(geo.in_w);
    BlockedFilter::of(&mirrored, level).filter(|_| sized && !FlatPlane::applies(&mirrored, level))
}

/// [`backward_data`] plane by plane, whatever the channel count: the reference of the channel-blocked route.
///
/// # Panics
/// As [`backward_data`].
pub fn backward_data_per_plane(
    geo: &ConvGeometry,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    level: SimdLevel,
) -> bool {
    assert!(geo.is_depthwise(), "depthwise: not a depthwise geometry");
    geo.check(grad_input.len(), weight.len(), grad_output.len());
    let reach_h = (geo.kernel_h - 1) * geo.dilation_h;
    let reach_w = (geo.kernel_w - 1) * geo.dilation_w;
    if geo.out_channels != geo.in_channels || geo.pad_top > reach_h || geo.pad_left > reach_w {
        return false;
    }
    let (in_plane, out_plane) = (geo.in_plane(), geo.out_plane());
    if in_plane == 0 {
        return true;
    }
    if out_plane == 0 {
        grad_input.fill(0.0);
        return true;
    }
    let (kh, kw) = (geo.kernel_h, geo.kernel_w);
    let taps = kh * kw;
    // Strided layers with rows wide enough run by stride phase; the others as the flipped filter over the
    // (upsampled) output gradient, on the row kernel where their rows are narrow.
    let strided = geo.stride_h > 1 || geo.stride_w > 1;
    let phased = (strided && geo.out_w().unwrap_or(0) >= PHASED_MIN_OUT_W).then(|| PhasedBackward::of(geo));
    let filter = PlaneFilter::backward_of(geo);
    let flipped: Vec<f32> = match phased {
        Some(_) => Vec::new(),
        None => weight.chunks_exact(taps).flat_map(|w| (0..taps).map(move |t| w[taps - 1 - t])).collect(),
    };
    let rows = RowFilter::backward_of(geo).map(|r| r.lanes(level)).filter(|l| l.rows_fit(ROW_VECTORS_MAX));
    // A stride-1 "same" layer's gradient is the same kind of convolution (the padding mirrored): small planes run
    // on the flat-plane kernel.
    let same = !strided && geo.out_h() == Some(geo.in_h) && geo.out_w() == Some(geo.in_w);
    let mirrored = ConvGeometry {
        pad_top: reach_h - geo.pad_top,
        pad_left: reach_w - geo.pad_left,
        pad_bottom: reach_h.saturating_sub(geo.pad_bottom),
        pad_right: reach_w.saturating_sub(geo.pad_right),
        ..*geo
    };
    let small = same.then(|| FlatPlane::of(&mirrored, level)).flatten();
    let per_task = planes_per_task(in_plane);
    grad_input.par_chunks_mut(in_plane * per_task).enumerate().for_each(|(task, planes)| {
        for (i, dx) in planes.chunks_exact_mut(in_plane).enumerate() {
            let plane = task * per_task + i;
            let c = plane % geo.in_channels;
            let dy = &grad_output[plane * out_plane..(plane + 1) * out_plane];
            if let Some(phased) = &phased {
                phased.run(dy, &weight[c * taps..(c + 1) * taps], dx, level);
                continue;
            }
            let w = &flipped[c * taps..(c + 1) * taps];
            if let Some(small) = &small {
                small.run(dy, w, 0.0, Clamp::NONE, dx);
            } else if !rows.as_ref().is_some_and(|r| r.run(dy, w, 0.0, Clamp::NONE, dx)) {
                filter.run(dy, w, 0.0, Clamp::NONE, dx, level);
            }
        }
    });
    true
}

/// Narrowest output row whose strided input gradient runs by stride phase: below it the phases' short rows and
/// their strided scatter cost more than the skipped zero products (criterion, Zen 4 AVX-512, 2 threads: 3×3/2 at
/// 112² 555 → 275 µs, 56² 217 → 131 µs, 28² 77 → 72 µs, but 14² 84 → 110 µs). Both give the same bits.
const PHASED_MIN_OUT_W: usize = 8;

/// The input gradient of a strided depthwise layer, by stride phase. Input pixel `(iy, ix)` is reached only through
/// the taps `(ky, kx)` with `iy + pad_top − ky·dilation_h ≡ 0 (mod stride_h)` (and likewise for columns), so the
/// pixels of one phase `(iy mod stride_h, ix mod stride_w)` form a stride-1 filter of the output gradient with
/// just those taps. Together the phases run each tap once per output — instead of the whole kernel over the
/// zero-upsampled gradient (what [`PlaneFilter::backward_of`] runs at stride 1), where three quarters of the
/// products of a stride of 2 are products with zeros. The taps of each phase run in the order that filter runs
/// them (flipped), and for finite weights the products it would add with zeros add exactly nothing: the results
/// are its results (an infinite or NaN weight times those zeros made NaN there; here it does not).
struct PhasedBackward {
    /// The output gradient laid out once per plane, padded so that every phase's taps read inside it.
    layout: PlaneFilter,
    phases: Vec<Phase>,
    in_w: usize,
    stride: [usize; 2],
    scratch_len: usize,
    flat_len: usize,
}

/// One stride phase: input pixels `(ry + a·stride_h, rx + b·stride_w)`, `a < out_h`, `b < out_w`.
struct Phase {
    ry: usize,
    rx: usize,
    out_h: usize,
    out_w: usize,
    /// Scratch offset of each tap and the tap's index in the kernel (row-major), in the order they are summed.
    bases: Vec<usize>,
    kernel_taps: Vec<usize>,
}

impl PhasedBackward {
    fn of(geo: &ConvGeometry) -> PhasedBackward {
        let (sh, sw) = (geo.stride_h, geo.stride_w);
        let (oh, ow) = (geo.out_h().unwrap_or(0), geo.out_w().unwrap_or(0));
        // Output row read by phase row `a` through tap `ky`: a + q, q = (r + pad − ky·dilation) / stride.
        let offset = |r: usize, pad: usize, k: usize, d: usize, s: usize| -> Option<isize> {
            let t = (r + pad) as isize - (k * d) as isize;
            (t.rem_euclid(s as isize) == 0).then(|| t.div_euclid(s as isize))
        };
        // Per phase: (ry, rx, rows, columns) and its taps as (row offset, column offset, kernel tap).
        type Offsets = Vec<(isize, isize, usize)>;
        let mut raw: Vec<([usize; 4], Offsets)> = Vec::new();
        for ry in 0..sh.min(geo.in_h) {
            for rx in 0..sw.min(geo.in_w) {
                let mut taps = Vec::new();
                // Flipped order: the last kernel tap first, as the upsampled filter sums them.
                for t in (0..geo.kernel_h * geo.kernel_w).rev() {
                    let (ky, kx) = (t / geo.kernel_w, t % geo.kernel_w);
                    let qy = offset(ry, geo.pad_top, ky, geo.dilation_h, sh);
                    let qx = offset(rx, geo.pad_left, kx, geo.dilation_w, sw);
                    if let (Some(qy), Some(qx)) = (qy, qx) {
                        taps.push((qy, qx, t));
                    }
                }
                raw.push(([ry, rx, (geo.in_h - ry).div_ceil(sh), (geo.in_w - rx).div_ceil(sw)], taps));
            }
        }
        let all = raw.iter().flat_map(|p| p.1.iter());
        let (lo_y, lo_x) = all.clone().fold((0isize, 0isize), |(y, x), &(qy, qx, _)| (y.min(qy), x.min(qx)));
        let (hi_y, hi_x) = all.fold((0isize, 0isize), |(y, x), &(qy, qx, _)| (y.max(qy), x.max(qx)));
        let (pad_top, pad_left) = ((-lo_y) as usize, (-lo_x) as usize);
        let max_h = raw.iter().map(|p| p.0[2]).max().unwrap_or(0);
        let max_w = raw.iter().map(|p| p.0[3]).max().unwrap_or(0);
        let rows = max_h + (hi_y - lo_y) as usize;
        let row_len = max_w + (hi_x - lo_x) as usize;
        let layout = PlaneFilter {
            src_h: oh,
            src_w: ow,
            up_h: 1,
            up_w: 1,
            pad_top,
            pad_left,
            stride_h: 1,
            stride_w: 1,
            out_h: max_h,
            out_w: max_w,
            rows,
            row_len,
            bases: Vec::new(),
        };
        let phases: Vec<Phase> = raw
            .into_iter()
            .map(|([ry, rx, out_h, out_w], taps)| Phase {
                ry,
                rx,
                out_h,
                out_w,
                bases: taps
                    .iter()
                    .map(|&(qy, qx, _)| (qy + pad_top as isize) as usize * row_len + (qx + pad_left as isize) as usize)
                    .collect(),
                kernel_taps: taps.iter().map(|&(_, _, t)| t).collect(),
            })
            .collect();
        let flat_len = layout.flat_len();
        let read = phases.iter().flat_map(|p| p.bases.iter()).max().copied().unwrap_or(0) + flat_len;
        PhasedBackward {
            layout,
            phases,
            in_w: geo.in_w,
            stride: [sh, sw],
            scratch_len: (rows * row_len).max(read),
            flat_len,
        }
    }

    /// `dx ←` the input gradient of one plane from its output gradient `dy` and its kernel `weights`.
    fn run(&self, dy: &[f32], weights: &[f32], dx: &mut [f32], level: SimdLevel) {
        let [sh, sw] = self.stride;
        BUFFERS.with(|cell| {
            let mut guard = cell.borrow_mut();
            guard.prepare(&self.layout, self.scratch_len, self.flat_len);
            let Buffers { scratch, flat, .. } = &mut *guard;
            self.layout.lay_out(dy, scratch);
            let mut w = [0.0f32; 64];
            for phase in &self.phases {
                let n = phase.bases.len();
                let len = (phase.out_h * self.layout.row_len).div_ceil(BLOCK) * BLOCK;
                if n <= w.len() {
                    phase.kernel_taps.iter().zip(&mut w).for_each(|(&t, w)| *w = weights[t]);
                    taps(level, scratch, &phase.bases, &w[..n], 0.0, Clamp::NONE, &mut flat[..len]);
                } else {
                    let w: Vec<f32> = phase.kernel_taps.iter().map(|&t| weights[t]).collect();
                    taps(level, scratch, &phase.bases, &w, 0.0, Clamp::NONE, &mut flat[..len]);
                }
                for (a, row) in flat.chunks(self.layout.row_len).take(phase.out_h).enumerate() {
                    let first = (phase.ry + a * sh) * self.in_w + phase.rx;
                    let dst = dx[first..].iter_mut().step_by(sw);
                    dst.zip(&row[..phase.out_w]).for_each(|(d, &v)| *d = v);
                }
            }
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conv::tests::variants;
    use crate::conv::tests::{base_3x3, data_f32 as data, on_threads};
    use crate::depthwise;
    use crate::simd::supported_levels;

    /// The forward pass of a depthwise `geo` (multiplier 1) on the flat kernel alone, plane by plane, on AVX-512's
    /// fused multiply-add: the reference the other f32 kernels are bit-identical to.
    pub(crate) fn flat_only(geo: &ConvGeometry, x: &[f32], w: &[f32], b: &[f32], clamp: Clamp) -> Vec<f32> {
        let (filter, taps) = (PlaneFilter::forward_of(geo), geo.kernel_h * geo.kernel_w);
        let mut y = vec![0.0f32; geo.batch * geo.out_channels * geo.out_plane()];
        for (p, out) in y.chunks_mut(geo.out_plane()).enumerate() {
            let c = p % geo.out_channels;
            let src = &x[p * geo.in_plane()..(p + 1) * geo.in_plane()];
            filter.run(src, &w[c * taps..(c + 1) * taps], b[c], clamp, out, SimdLevel::Avx512);
        }
        y
    }

    /// The input gradient of a depthwise `geo` (multiplier 1) on the flat kernel alone (the flipped filter over the
    /// upsampled output gradient), plane by plane, on AVX-512's fused multiply-add.
    pub(crate) fn flat_backward_only(geo: &ConvGeometry, w: &[f32], dy: &[f32]) -> Vec<f32> {
        let (filter, taps) = (PlaneFilter::backward_of(geo), geo.kernel_h * geo.kernel_w);
        let mut dx = vec![0.0f32; geo.batch * geo.in_channels * geo.in_plane()];
        for (p, out) in dx.chunks_mut(geo.in_plane()).enumerate() {
            let c = p % geo.in_channels;
            let flipped: Vec<f32> = (0..taps).map(|t| w[c * taps + taps - 1 - t]).collect();
            let src = &dy[p * geo.out_plane()..(p + 1) * geo.out_plane()];
            filter.run(src, &flipped, 0.0, Clamp::NONE, out, SimdLevel::Avx512);
        }
        dx
    }

    /// Depthwise geometries: the shared variants of a depthwise base (strides, pads, dilations, odd sizes, batch
    /// 2), a channel multiplier, pads beyond the kernel's reach, and MobileNet's narrow planes.
    fn geometries() -> Vec<ConvGeometry> {
        let base = base_3x3(5, 5, 5);
        let mut all: Vec<ConvGeometry> = variants(base)
            .into_iter()
            .map(|g| ConvGeometry { out_channels: g.in_channels, groups: g.in_channels, ..g })
            .filter(|g| g.out_h().is_some_and(|h| h > 0) && g.out_w().is_some_and(|w| w > 0))
            .collect();
        all.push(ConvGeometry { out_channels: 10, ..base });
        all.push(ConvGeometry { pad_top: 3, pad_left: 4, pad_bottom: 0, pad_right: 2, ..base });
        all.push(ConvGeometry {
            batch: 1,
            in_h: 7,
            in_w: 7,
            kernel_h: 5,
            kernel_w: 5,
            pad_top: 2,
            pad_left: 2,
            pad_bottom: 2,
            pad_right: 2,
            ..base
        });
        all.push(ConvGeometry { in_h: 14, in_w: 14, stride_h: 2, stride_w: 2, pad_top: 0, pad_left: 0, ..base });
        // Stride-2 rows of up to 7 pairs, and of 16, 17, 20, 32 and 35 (the AVX-512 split's whole and masked blocks).
        for (pad, w) in [(0, 13), (1, 13), (2, 12), (3, 15), (1, 34), (0, 33), (2, 40), (0, 64), (1, 71)] {
            all.push(ConvGeometry { in_w: w, stride_h: 2, stride_w: 2, pad_left: pad, pad_right: pad, ..base });
        }
        all.push(ConvGeometry { in_h: 30, in_w: 1, kernel_w: 1, pad_left: 0, pad_right: 0, ..base });
        // Stride-1 rows around the row kernel's widths (two AVX2 / AVX-512 vectors) and wider: both kernels run.
        for w in [16, 17, 20, 32, 33, 40] {
            all.push(ConvGeometry { batch: 1, in_h: 4, in_w: w, ..base });
        }
        all.push(ConvGeometry {
            batch: 1,
            in_h: 9,
            in_w: 37,
            kernel_h: 5,
            kernel_w: 5,
            dilation_h: 2,
            dilation_w: 2,
            pad_top: 4,
            pad_left: 3,
            pad_bottom: 4,
            pad_right: 5,
            ..base
        });
        all
    }

    /// The row kernel and the flat kernel perform the same operations in the same order, so which one a layer gets
    /// never shows in its results: compared bit for bit on every stride-1 geometry, forward and backward.
    #[test]
    fn row_and_flat_kernels_are_bit_identical() {
        let mut compared = 0;
        for level in supported_levels().into_iter().filter(|&l| l != SimdLevel::Portable) {
            for (i, geo) in geometries().iter().enumerate() {
                let (taps, in_plane, out_plane) = (geo.k(), geo.in_plane(), geo.out_plane());
                let x = data(in_plane, i);
                let dy = data(out_plane, i + 1);
                let w = data(taps, i + 2);
                let clamp = Clamp { lo: -0.5, hi: 0.75 };
                if let Some(rows) = RowFilter::of(geo) {
                    let (mut flat, mut row) = (vec![f32::NAN; out_plane], vec![f32::NAN; out_plane]);
                    PlaneFilter::forward_of(geo).run(&x, &w, 0.25, clamp, &mut flat, level);
                    assert!(rows.lanes(level).run(&x, &w, 0.25, clamp, &mut row));
                    let same = flat.iter().zip(&row).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{level} forward {geo:?}");
                    compared += 1;
                }
                if let Some(rows) = RowFilter::backward_of(geo) {
                    let (mut flat, mut row) = (vec![f32::NAN; in_plane], vec![f32::NAN; in_plane]);
                    PlaneFilter::backward_of(geo).run(&dy, &w, 0.0, Clamp::NONE, &mut flat, level);
                    assert!(rows.lanes(level).run(&dy, &w, 0.0, Clamp::NONE, &mut row));
                    let same = flat.iter().zip(&row).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{level} backward {geo:?}");
                    compared += 1;
                }
            }
        }
        let levels = supported_levels().len() - 1;
        assert!(compared >= 20 * levels, "only {compared} comparisons");
    }

    /// A strided layer's phase-split input gradient skips exactly the products with the zeros of the upsampled
    /// gradient and sums the rest in the same order: bit for bit the upsampled filter's result.
    #[test]
    fn phase_split_gradient_equals_the_upsampled_filter_bit_for_bit() {
        let mut compared = 0;
        let base = base_3x3(3, 3, 3);
        let mut cases = geometries();
        // MobileNetV2's 3×3/2 and EfficientNet-Lite0's TF-SAME 5×5/2 (more padding after than before), and a
        // stride of 3 whose phases have no tap at all.
        cases.push(ConvGeometry { batch: 1, in_h: 16, in_w: 16, stride_h: 2, stride_w: 2, ..base });
        cases.push(ConvGeometry {
            batch: 1,
            in_h: 14,
            in_w: 14,
            kernel_h: 5,
            kernel_w: 5,
            stride_h: 2,
            stride_w: 2,
            pad_top: 1,
            pad_left: 1,
            pad_bottom: 2,
            pad_right: 2,
            ..base
        });
        cases.push(ConvGeometry {
            in_h: 10,
            in_w: 11,
            kernel_h: 1,
            kernel_w: 2,
            stride_h: 3,
            stride_w: 3,
            pad_top: 0,
            pad_left: 1,
            pad_bottom: 0,
            pad_right: 0,
            ..base
        });
        for level in supported_levels() {
            for (i, geo) in cases.iter().enumerate() {
                let fits = geo.out_channels == geo.in_channels
                    && geo.pad_top <= (geo.kernel_h - 1) * geo.dilation_h
                    && geo.pad_left <= (geo.kernel_w - 1) * geo.dilation_w;
                if !fits || (geo.stride_h == 1 && geo.stride_w == 1) {
                    continue;
                }
                let (in_plane, out_plane) = (geo.in_plane(), geo.out_plane());
                let dy = data(out_plane, i + 1);
                let w = data(geo.k(), i + 2);
                let flipped: Vec<f32> = w.iter().rev().copied().collect();
                let (mut upsampled, mut phased) = (vec![f32::NAN; in_plane], vec![f32::NAN; in_plane]);
                PlaneFilter::backward_of(geo).run(&dy, &flipped, 0.0, Clamp::NONE, &mut upsampled, level);
                PhasedBackward::of(geo).run(&dy, &w, &mut phased, level);
                let same = upsampled.iter().zip(&phased).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{level} {geo:?}");
                compared += 1;
            }
        }
        assert!(compared >= 9 * supported_levels().len(), "only {compared} comparisons");
    }

    fn close(got: &[f32], want: &[f32], taps: usize, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
            assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()) * (taps as f32).sqrt(), "{what} at {i}: {g} vs {e}");
        }
    }

    #[test]
    fn forward_matches_the_generic_kernel_on_every_level() {
        for level in supported_levels() {
            for geo in geometries() {
                let x = data(geo.batch * geo.in_channels * geo.in_plane(), 1);
                let w = data(geo.out_channels * geo.k(), 2);
                let b = data(geo.out_channels, 3);
                let mut want = vec![0.0f32; geo.batch * geo.out_channels * geo.out_plane()];
                depthwise::forward(&geo, &x, &w, Some(&b), &mut want);
                let clamp = Clamp { lo: -0.5, hi: 6.0 };
                let mut got = vec![f32::NAN; want.len()];
                forward(&geo, &x, &w, &b, clamp, &mut got, level);
                let want: Vec<f32> = want.iter().map(|&v| clamp.apply(v)).collect();
                close(&got, &want, geo.k(), &format!("{level} {geo:?}"));
            }
        }
    }

    #[test]
    fn backward_data_matches_the_generic_kernel_on_every_level() {
        let (mut ran, mut declined) = (0, 0);
        for level in supported_levels() {
            for geo in geometries() {
                let fits = geo.out_channels == geo.in_channels
                    && geo.pad_top <= (geo.kernel_h - 1) * geo.dilation_h
                    && geo.pad_left <= (geo.kernel_w - 1) * geo.dilation_w;
                let w = data(geo.out_channels * geo.k(), 4);
                let dy = data(geo.batch * geo.out_channels * geo.out_plane(), 5);
                let mut want = vec![0.0f32; geo.batch * geo.in_channels * geo.in_plane()];
                depthwise::backward_data(&geo, &w, &dy, &mut want);
                let mut got = vec![f32::NAN; want.len()];
                let took = backward_data(&geo, &w, &dy, &mut got, level);
                assert_eq!(took, fits, "{geo:?}");
                if took {
                    close(&got, &want, geo.k(), &format!("{level} {geo:?}"));
                    ran += 1;
                } else {
                    assert!(got.iter().all(|v| v.is_nan()), "declined but wrote");
                    declined += 1;
                }
            }
        }
        // The multiplier and the wide pads are declined; everything else ran.
        assert!(ran > 2 * declined && declined >= 2, "{ran} ran, {declined} declined");
    }

    #[test]
    fn avx512_row_split_matches_the_pair_loop_on_every_length() {
        if !SimdLevel::Avx512.supported() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        for n in 0..=40 {
            let pairs = data(2 * n, n);
            let (mut even, mut odd) = (vec![f32::NAN; n + 1], vec![f32::NAN; n + 1]);
            // SAFETY: the CPU has AVX-512F (checked above).
            unsafe { deinterleave_avx512(&pairs, &mut even[..n], &mut odd[..n]) };
            for i in 0..n {
                assert_eq!((even[i].to_bits(), odd[i].to_bits()), (pairs[2 * i].to_bits(), pairs[2 * i + 1].to_bits()));
            }
            assert!(even[n].is_nan() && odd[n].is_nan(), "wrote past {n} pairs");
        }
    }

    /// A row narrower than the stride leaves some stride phases without a column (it used to slice past the row).
    #[test]
    fn rows_narrower_than_the_stride() {
        for w in 1..=3 {
            let geo =
                ConvGeometry { in_w: w, kernel_w: 1, stride_w: 3, pad_left: 0, pad_right: 0, ..base_3x3(5, 5, 5) };
            let x = data(geo.batch * geo.in_channels * geo.in_plane(), 1);
            let (wt, b) = (data(geo.out_channels * geo.k(), 2), data(geo.out_channels, 3));
            let mut want = vec![0.0f32; geo.batch * geo.out_channels * geo.out_plane()];
            depthwise::forward(&geo, &x, &wt, Some(&b), &mut want);
            let dy = data(want.len(), 4);
            let mut want_dx = vec![0.0f32; x.len()];
            depthwise::backward_data(&geo, &wt, &dy, &mut want_dx);
            for level in supported_levels() {
                let mut got = vec![f32::NAN; want.len()];
                forward(&geo, &x, &wt, &b, Clamp::NONE, &mut got, level);
                close(&got, &want, geo.k(), &format!("{level} forward {geo:?}"));
                let mut dx = vec![f32::NAN; x.len()];
                assert!(backward_data(&geo, &wt, &dy, &mut dx, level));
                close(&dx, &want_dx, geo.k(), &format!("{level} backward {geo:?}"));
            }
        }
    }

    #[test]
    fn bit_identical_on_one_two_and_four_threads() {
        let geo = ConvGeometry { batch: 1, in_h: 56, in_w: 56, stride_h: 2, stride_w: 2, ..base_3x3(24, 24, 24) };
        let x = data(geo.in_channels * geo.in_plane(), 6);
        let w = data(geo.out_channels * geo.k(), 7);
        let b = vec![0.25; geo.out_channels];
        for level in supported_levels() {
            let run = |threads: usize| {
                let mut y = vec![0.0f32; geo.out_channels * geo.out_plane()];
                let mut dx = vec![0.0f32; x.len()];
                on_threads(threads, || {
                    forward(&geo, &x, &w, &b, Clamp::RELU, &mut y, level);
                    backward_data(&geo, &w, &y, &mut dx, level);
                });
                (y, dx)
            };
            let one = run(1);
            assert_eq!(one, run(2), "{level}");
            assert_eq!(one, run(4), "{level}");
        }
    }
}
