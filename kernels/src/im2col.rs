//! im2col / col2im over a range of output columns.
//!
//! A convolution over one image and one group is the product `W (C_out × K) · col (K × OH·OW)` with
//! `K = C_in·KH·KW`. Row `k = (c·KH + ky)·KW + kx` of `col` holds, for every output pixel `p = oy·OW + ox`, the input
//! value the tap `(c, ky, kx)` reads there (zero in the padding). Building `col` a tile of columns at a time keeps the
//! buffer in cache and lets independent tiles run in parallel.

use crate::Element;
use rayon::prelude::*;

/// Spatial geometry of a sliding window over one `H × W` plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

/// The range `lo..hi` of output indices `o < count` for which `o·stride + offset` lies in `0..limit`.
pub fn valid_range(count: usize, stride: usize, offset: isize, limit: usize) -> (usize, usize) {
    let stride = stride as isize;
    // Smallest o with o·stride + offset ≥ 0.
    let lo = if offset >= 0 { 0 } else { ((-offset) + stride - 1) / stride };
    // Smallest o with o·stride + offset ≥ limit.
    let hi = if (limit as isize) <= offset { 0 } else { ((limit as isize) - offset + stride - 1) / stride };
    let lo = (lo as usize).min(count);
    let hi = (hi as usize).min(count);
    (lo, hi.max(lo))
}

impl Window {
    /// Offset of tap `ky` (in input rows) relative to `oy·stride_h`.
    fn row_offset(&self, ky: usize) -> isize {
        (ky * self.dilation_h) as isize - self.pad_top as isize
    }

    fn col_offset(&self, kx: usize) -> isize {
        (kx * self.dilation_w) as isize - self.pad_left as isize
    }

    /// Calls `f(ox_lo, ox_hi, out_start, in_start)` for each run of output columns in `p0..p1` that row `oy` of tap
    /// `(ky, kx)` reads from inside the image; `out_start` is the tile column of `ox_lo`, `in_start` the plane index
    /// it reads. Consecutive `ox` read `stride_w` apart.
    fn for_each_run(&self, ky: usize, kx: usize, p0: usize, p1: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
        let (ylo, yhi) = valid_range(self.out_h, self.stride_h, self.row_offset(ky), self.in_h);
        let (xlo, xhi) = valid_range(self.out_w, self.stride_w, self.col_offset(kx), self.in_w);
        if xlo >= xhi {
            return;
        }
        let first_row = p0 / self.out_w;
        let last_row = p1.div_ceil(self.out_w);
        for oy in first_row.max(ylo)..last_row.min(yhi) {
            let row_start = oy * self.out_w;
            let lo = xlo.max(p0.saturating_sub(row_start));
            let hi = xhi.min(p1 - row_start);
            if lo >= hi {
                continue;
            }
            let iy = (oy * self.stride_h) as isize + self.row_offset(ky);
            let ix = (lo * self.stride_w) as isize + self.col_offset(kx);
            f(lo, hi, row_start + lo - p0, iy as usize * self.in_w + ix as usize);
        }
    }
}

/// Fills `col` (`channels·KH·KW` rows × `p1 − p0` columns, row-major) from `input` (`channels` planes).
pub fn im2col_tile<T: Element>(input: &[T], channels: usize, win: &Window, p0: usize, p1: usize, col: &mut [T]) {
    let width = p1 - p0;
    let plane = win.in_h * win.in_w;
    debug_assert_eq!(col.len(), channels * win.kernel_h * win.kernel_w * width);
    col.fill(T::zero());
    let mut row = 0;
    for c in 0..channels {
        let src = &input[c * plane..(c + 1) * plane];
        for ky in 0..win.kernel_h {
            for kx in 0..win.kernel_w {
                let dst = &mut col[row * width..(row + 1) * width];
                win.for_each_run(ky, kx, p0, p1, |lo, hi, out, inp| {
                    let n = hi - lo;
                    if win.stride_w == 1 {
                        dst[out..out + n].copy_from_slice(&src[inp..inp + n]);
                    } else {
                        for (i, d) in dst[out..out + n].iter_mut().enumerate() {
                            *d = src[inp + i * win.stride_w];
                        }
                    }
                });
                row += 1;
            }
        }
    }
}

/// [`im2col_tile`] written straight into the column panels the packed GEMM reads
/// ([`crate::PackedA::gemm_rows_packed`]): column `j` of row `k` goes to `out[((j / nr)·K + k)·nr + j % nr]`, the
/// last panel zero-padded. One pass, each value written once — instead of filling `col` with zeros, copying the
/// taps into it, and packing it again.
///
/// # Panics
/// If `out` is shorter than the panels.
pub fn im2col_panels(input: &[f32], channels: usize, win: &Window, p0: usize, p1: usize, nr: usize, out: &mut [f32]) {
    let width = p1 - p0;
    let k = channels * win.kernel_h * win.kernel_w;
    let padded = width.div_ceil(nr) * nr;
    assert!(out.len() >= padded * k, "im2col_panels: output too short");
    if win.stride_h == 1
        && win.stride_w == 1
        && win.out_w == win.in_w
        && input.len() >= channels * win.in_h * win.in_w
        && small_enough(win)
    {
        return same_size_panels(input, channels, win, p0, p1, nr, out);
    }
    let plane = win.in_h * win.in_w;
    // Columns a..b of row `row`, split at panel boundaries; `fill(segment, first column)` writes each piece.
    let mut write = |row: usize, a: usize, b: usize, fill: &mut dyn FnMut(&mut [f32], usize)| {
        let mut j = a;
        while j < b {
            let (panel, offset) = (j / nr, j % nr);
            let len = (nr - offset).min(b - j);
            let start = (panel * k + row) * nr + offset;
            fill(&mut out[start..start + len], j);
            j += len;
        }
    };
    let mut row = 0;
    for c in 0..channels {
        let src = &input[c * plane..(c + 1) * plane];
        for ky in 0..win.kernel_h {
            for kx in 0..win.kernel_w {
                // Runs come in increasing column order: the gaps between them (padding) are zeros.
                let mut next = 0;
                win.for_each_run(ky, kx, p0, p1, |lo, hi, at, inp| {
                    write(row, next, at, &mut |seg, _| seg.fill(0.0));
                    write(row, at, at + hi - lo, &mut |seg, j| {
                        let from = inp + (j - at) * win.stride_w;
                        if win.stride_w == 1 {
                            crate::packed_gemm::copy_short(seg, &src[from..from + seg.len()]);
                        } else {
                            for (i, d) in seg.iter_mut().enumerate() {
                                *d = src[from + i * win.stride_w];
                            }
                        }
                    });
                    next = at + hi - lo;
                });
                write(row, next, padded, &mut |seg, _| seg.fill(0.0));
                row += 1;
            }
        }
    }
}

/// [`im2col_panels`] for stride 1 with output rows as wide as input rows ("same" convolutions: 3×3 with padding
/// 1): output column `q` then reads input `q + offset(tap)`, so each panel row is one contiguous read, masked where
/// the tap falls into the padding.
fn same_size_panels(input: &[f32], channels: usize, win: &Window, p0: usize, p1: usize, nr: usize, out: &mut [f32]) {
    let (planes, taps) = phase_reads(win, 1);
    masked_panels(input, channels, planes, &taps, p0, p1, nr, out);
}

/// The source layout and the tap reads of a convolution with stride `s` over its input split into `s × s` phase
/// planes (`s = 1`: the input itself): tap `(ky, kx)` at offset `(dy, dx)` from `s·(oy, ox)` reads phase
/// `(dy mod s, dx mod s)`, shifted by the quotients.
fn phase_reads(win: &Window, s: usize) -> (Planes, Vec<TapRead>) {
    let si = s as isize;
    let taps = (0..win.kernel_h)
        .flat_map(|ky| {
            (0..win.kernel_w).map(move |kx| {
                let (dy, dx) = (win.row_offset(ky), win.col_offset(kx));
                let (a, b) = (dy.rem_euclid(si) as usize, dx.rem_euclid(si) as usize);
                TapRead { sub: a * s + b, dy: dy.div_euclid(si), dx: dx.div_euclid(si) }
            })
        })
        .collect();
    (Planes { subs: s * s, height: win.in_h / s, width: win.in_w / s }, taps)
}

/// Where one tap of the kernel reads, for every output position `(oy, ox)`: row `oy + dy`, column `ox + dx` of
/// sub-plane `sub` of the channel (zero outside it).
#[derive(Clone, Copy, Debug)]
struct TapRead {
    sub: usize,
    dy: isize,
    dx: isize,
}

/// How a channel's source is laid out: `subs` sub-planes of `height × width`, `width` equal to the output rows'.
#[derive(Clone, Copy, Debug)]
struct Planes {
    subs: usize,
    height: usize,
    width: usize,
}

per_level! {
    /// Column panels (the layout of [`im2col_panels`]) of a convolution whose taps each read a sub-plane exactly as
    /// wide as an output row: output column `q` of tap `t` reads sub-plane index `q + dy·width + dx`, one contiguous run
    /// per panel row, masked where it falls outside the sub-plane. The masks depend on the tap and the panel only.
    #[allow(clippy::too_many_arguments)]
    fn masked_panels(
        src: &[f32],
        channels: usize,
        planes: Planes,
        taps: &[TapRead],
        p0: usize,
        p1: usize,
        nr: usize,
        out: &mut [f32]
    ); simd: masked_panels_body, portable: masked_panels_body
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn masked_panels_body(
    src: &[f32],
    channels: usize,
    planes: Planes,
    taps: &[TapRead],
    p0: usize,
    p1: usize,
    nr: usize,
    out: &mut [f32],
) {
    let (t_count, sub_len) = (taps.len(), planes.height * planes.width);
    let k = channels * t_count;
    assert!(src.len() >= channels * planes.subs * sub_len, "im2col_panels: source too short");
    let mut masks = vec![0u32; t_count * nr];
    // Per tap: whether every column of the current panel reads inside the sub-plane (a plain copy).
    let mut unmasked = vec![false; t_count];
    // Output row and column of each column of the panel in i32 (the mask loop vectorizes; sizes are below 2^30,
    // see MAX_SIDE); columns past p1 get a row outside every tap's reach.
    let (mut ys, mut xs) = (vec![0i32; nr], vec![0i32; nr]);
    let (h, w) = (planes.height as u32, planes.width as u32);
    for (jp, panel) in out[..(p1 - p0).div_ceil(nr) * nr * k].chunks_exact_mut(k.max(1) * nr).enumerate() {
        let q0 = p0 + jp * nr;
        let (mut y, mut x) = ((q0 / planes.width) as i32, (q0 % planes.width) as i32);
        for (j, (py, px)) in ys.iter_mut().zip(xs.iter_mut()).enumerate() {
            (*py, *px) = if q0 + j < p1 { (y, x) } else { (i32::MIN / 2, 0) };
            x += 1;
            if x as u32 == w {
                (y, x) = (y + 1, 0);
            }
        }
        for ((tap, mask), whole) in taps.iter().zip(masks.chunks_exact_mut(nr)).zip(&mut unmasked) {
            let (dy, dx) = (tap.dy as i32, tap.dx as i32);
            let (mask, ys, xs) = (&mut mask[..nr], &ys[..nr], &xs[..nr]);
            for j in 0..nr {
                // Negative coordinates wrap to huge unsigned ones: one comparison per bound.
                let inside = (((ys[j] + dy) as u32) < h) & (((xs[j] + dx) as u32) < w);
                mask[j] = if inside { u32::MAX } else { 0 };
            }
            *whole = mask.iter().fold(u32::MAX, |all, &m| all & m) == u32::MAX;
        }
        // Rows channel by channel, tap by tap (no division per row).
        let rows = panel.chunks_exact_mut(nr);
        let row_taps = (0..channels).flat_map(|c| taps.iter().enumerate().map(move |(t, tap)| (c, t, tap)));
        for (dst, (c, t, tap)) in rows.zip(row_taps) {
            let plane = (c * planes.subs + tap.sub) * sub_len;
            let start = (plane + q0) as isize + tap.dy * planes.width as isize + tap.dx;
            let mask = &masks[t * nr..(t + 1) * nr];
            // The read may start before the source or end after it (masked columns only): then element by element.
            match usize::try_from(start).ok().filter(|&s| s + nr <= src.len()) {
                Some(s) if unmasked[t] => crate::packed_gemm::copy_short(dst, &src[s..s + nr]),
                Some(s) => {
                    for ((d, &v), &m) in dst.iter_mut().zip(&src[s..s + nr]).zip(mask) {
                        *d = f32::from_bits(v.to_bits() & m);
                    }
                }
                None => {
                    for (j, (d, &m)) in dst.iter_mut().zip(mask).enumerate() {
                        *d = if m != 0 { src[(start + j as isize) as usize] } else { 0.0 };
                    }
                }
            }
        }
    }
}

/// Every `stride_h`-th row and `stride_w`-th column of each `in_h × in_w` plane of `input`, from the first:
/// `out[c][i][j] = input[c][stride_h·i][stride_w·j]`, `out_h × out_w` per plane — the pixels a 1×1 strided, unpadded
/// convolution reads, laid out as the input of the pointwise layer it equals. Planes run side by side.
///
/// # Panics
/// If the lengths disagree or a plane of the output reaches past its input plane.
pub fn subsample(
    input: &[f32],
    (in_h, in_w): (usize, usize),
    (stride_h, stride_w): (usize, usize),
    (out_h, out_w): (usize, usize),
    out: &mut [f32],
) {
    let (in_plane, out_plane) = (in_h * in_w, out_h * out_w);
    if out_plane == 0 {
        return;
    }
    assert!(
        (out_h - 1) * stride_h < in_h && (out_w - 1) * stride_w < in_w,
        "subsample: {out_h}×{out_w} at stride {stride_h}×{stride_w} reaches past {in_h}×{in_w}"
    );
    assert_eq!(input.len() * out_plane, out.len() * in_plane, "subsample: plane counts differ");
    out.par_chunks_mut(out_plane).zip(input.par_chunks(in_plane)).for_each(|(o, x)| {
        for (i, row) in o.chunks_exact_mut(out_w).enumerate() {
            let src = &x[i * stride_h * in_w..];
            for (j, v) in row.iter_mut().enumerate() {
                *v = src[j * stride_w];
            }
        }
    });
}

/// The stride `s` of a convolution whose input can be split into `s × s` phase planes exactly as wide as its output
/// rows (stride `s` in both directions, no dilation, `H` and `W` multiples of `s`, `W / s` = the output width): the
/// stride-2 layers of ResNet and MobileNet, 7×7/2 stems included. Then [`im2col_panels_phased`] reads contiguously.
pub fn phase_split(win: &Window) -> Option<usize> {
    let s = win.stride_w;
    (s >= 2
        && win.stride_h == s
        && win.dilation_h == 1
        && win.dilation_w == 1
        && win.in_h.is_multiple_of(s)
        && win.in_w.is_multiple_of(s)
        && win.in_w / s == win.out_w
        && small_enough(win))
    .then_some(s)
}

/// Largest plane (and side, tap offset) the masked-panel paths handle: their coordinates are i32. Larger planes
/// (over 4 GiB of f32 each) take the run-by-run path.
const MAX_SIDE: usize = 1 << 30;

/// Whether every side, offset and plane of `win` is below [`MAX_SIDE`] (a plane index fits an i32 too).
fn small_enough(win: &Window) -> bool {
    [win.in_h, win.in_w, win.out_h, win.out_w, win.kernel_h, win.kernel_w, win.pad_top, win.pad_left]
        .iter()
        .all(|&v| v < MAX_SIDE)
        && win.in_h.saturating_mul(win.in_w) < MAX_SIDE
        && win.out_h.saturating_mul(win.out_w) < MAX_SIDE
        && win.dilation_h.saturating_mul(win.kernel_h) < MAX_SIDE
        && win.dilation_w.saturating_mul(win.kernel_w) < MAX_SIDE
}

per_level! {
    /// Splits each of `channels` planes of `input` into its `s × s` phases: `out[c][a][b][i][j] = input[c][s·i + a][s·j
    /// + b]`.
    ///
    /// # Panics
    /// If the lengths do not match or `s` does not divide the plane (see [`phase_split`]).
    pub fn split_phases(input: &[f32], channels: usize, in_h: usize, in_w: usize, s: usize, out: &mut [f32]);
    simd: split_phases_body, portable: split_phases_body
}

#[inline(always)]
fn split_phases_body(input: &[f32], channels: usize, in_h: usize, in_w: usize, s: usize, out: &mut [f32]) {
    assert!(s > 0 && in_h.is_multiple_of(s) && in_w.is_multiple_of(s), "split_phases: {s} does not divide the plane");
    let plane = in_h * in_w;
    assert!(input.len() >= channels * plane && out.len() >= channels * plane, "split_phases: lengths");
    let (ph, pw) = (in_h / s, in_w / s);
    if s == 2 {
        // Both column phases of a source row in one pass over its pairs (vectorized with shuffles).
        for (x, o) in input.chunks_exact(plane).zip(out.chunks_exact_mut(plane)).take(channels) {
            let (even_rows, odd_rows) = o.split_at_mut(2 * ph * pw);
            for (a, phase_pair) in [even_rows, odd_rows].into_iter().enumerate() {
                let (b0, b1) = phase_pair.split_at_mut(ph * pw);
                for (i, (d0, d1)) in b0.chunks_exact_mut(pw).zip(b1.chunks_exact_mut(pw)).enumerate() {
                    let src = &x[(2 * i + a) * in_w..(2 * i + a + 1) * in_w];
                    for ((pair, e), f) in src.chunks_exact(2).zip(d0.iter_mut()).zip(d1.iter_mut()) {
                        *e = pair[0];
                        *f = pair[1];
                    }
                }
            }
        }
        return;
    }
    for (x, o) in input.chunks_exact(plane).zip(out.chunks_exact_mut(plane)).take(channels) {
        for (phase, dst) in o.chunks_exact_mut(ph * pw).enumerate() {
            let (a, b) = (phase / s, phase % s);
            for (i, row) in dst.chunks_exact_mut(pw).enumerate() {
                let src = &x[(s * i + a) * in_w + b..];
                for (j, d) in row.iter_mut().enumerate() {
                    *d = src[s * j];
                }
            }
        }
    }
}

/// [`im2col_panels`] of a strided convolution (see [`phase_split`]) from its input split by [`split_phases`]: tap
/// `(ky, kx)` reads phase `((ky − pad_top) mod s, (kx − pad_left) mod s)`, shifted by the quotients — contiguous runs
/// as for a stride-1 "same" convolution.
///
/// # Panics
/// If the convolution does not split (see [`phase_split`]) or a buffer is too short.
#[allow(clippy::too_many_arguments)]
pub fn im2col_panels_phased(
    phased: &[f32],
    channels: usize,
    win: &Window,
    p0: usize,
    p1: usize,
    nr: usize,
    out: &mut [f32],
) {
    let s = phase_split(win).expect("im2col_panels_phased: the convolution does not split into phases");
    let k = channels * win.kernel_h * win.kernel_w;
    assert!(out.len() >= (p1 - p0).div_ceil(nr) * nr * k, "im2col_panels: output too short");
    // No dilation here (phase_split): the tap offsets are ky − pad_top, kx − pad_left.
    let (planes, taps) = phase_reads(win, s);
    masked_panels(phased, channels, planes, &taps, p0, p1, nr, out);
}

/// Adds the rows of `col` that belong to one input channel (`KH·KW` rows × `p1 − p0` columns) back into that
/// channel's gradient plane: the adjoint of [`im2col_tile`] restricted to one channel.
pub fn col2im_channel_tile<T: Element>(col: &[T], win: &Window, p0: usize, p1: usize, plane: &mut [T]) {
    // SAFETY: `plane` is borrowed exclusively for the call, with its length.
    unsafe { col2im_channel_tile_phase(col, win, p0, p1, plane.as_mut_ptr(), plane.len(), None) }
}

/// [`col2im_channel_tile`] for the taps of one stride phase only (all taps for `None`): tap `(ky, kx)` writes pixels
/// whose row is `ky·dilation_h − pad_top` and whose column is `kx·dilation_w − pad_left` modulo the strides, so the
/// taps split into `stride_h·stride_w` classes that write disjoint pixels; `phase` (`row class · stride_w + column
/// class`) picks one. Each pixel receives its additions in the same order as from [`col2im_channel_tile`].
///
/// # Safety
/// `plane` must be valid for reads and writes of `plane_len` values (the `in_h × in_w` plane), and no other thread
/// may access this phase's pixels of it (every pixel, for `None`) during the call.
pub unsafe fn col2im_channel_tile_phase<T: Element>(
    col: &[T],
    win: &Window,
    p0: usize,
    p1: usize,
    plane: *mut T,
    plane_len: usize,
    phase: Option<usize>,
) {
    assert!(plane_len >= win.in_h * win.in_w, "col2im: plane too short");
    let width = p1 - p0;
    let class = |offset: isize, stride: usize| offset.rem_euclid(stride.max(1) as isize) as usize;
    let mut row = 0;
    for ky in 0..win.kernel_h {
        for kx in 0..win.kernel_w {
            let tap_phase =
                class(win.row_offset(ky), win.stride_h) * win.stride_w + class(win.col_offset(kx), win.stride_w);
            if phase.is_none_or(|p| p == tap_phase) {
                let src = &col[row * width..(row + 1) * width];
                win.for_each_run(ky, kx, p0, p1, |lo, hi, out, inp| {
                    for i in 0..hi - lo {
                        // SAFETY: `for_each_run` gives runs that read inside the plane (index < in_h·in_w ≤
                        // plane_len, checked above); the pixel is of this tap's phase, which the caller owns.
                        unsafe { *plane.add(inp + i * win.stride_w) += src[out + i] };
                    }
                });
            }
            row += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win() -> Window {
        Window {
            in_h: 5,
            in_w: 6,
            out_h: 3,
            out_w: 3,
            kernel_h: 3,
            kernel_w: 2,
            stride_h: 2,
            stride_w: 2,
            dilation_h: 1,
            dilation_w: 2,
            pad_top: 1,
            pad_left: 0,
        }
    }

    fn reference(input: &[f64], w: &Window, c: usize, ky: usize, kx: usize, p: usize) -> f64 {
        let (oy, ox) = (p / w.out_w, p % w.out_w);
        let iy = (oy * w.stride_h + ky * w.dilation_h) as isize - w.pad_top as isize;
        let ix = (ox * w.stride_w + kx * w.dilation_w) as isize - w.pad_left as isize;
        if iy < 0 || ix < 0 || iy >= w.in_h as isize || ix >= w.in_w as isize {
            0.0
        } else {
            input[c * w.in_h * w.in_w + iy as usize * w.in_w + ix as usize]
        }
    }

    #[test]
    fn tiles_match_direct_indexing() {
        let w = win();
        let input: Vec<f64> = (0..2 * 30).map(|i| i as f64 + 1.0).collect();
        for (p0, p1) in [(0, 9), (1, 5), (4, 9), (8, 9)] {
            let mut col = vec![0.0; 2 * 6 * (p1 - p0)];
            im2col_tile(&input, 2, &w, p0, p1, &mut col);
            for c in 0..2 {
                for ky in 0..3 {
                    for kx in 0..2 {
                        let row = (c * 3 + ky) * 2 + kx;
                        for p in p0..p1 {
                            assert_eq!(col[row * (p1 - p0) + p - p0], reference(&input, &w, c, ky, kx, p));
                        }
                    }
                }
            }
        }
    }

    /// Straight into panels equals im2col then packing, for partial last panels, tiles starting mid-row, strides,
    /// dilations and padding; every slot is written (the buffer starts full of NaN).
    #[test]
    fn panels_equal_im2col_then_packing() {
        let geometries = [
            win(),
            Window { stride_w: 1, dilation_w: 1, pad_left: 1, ..win() },
            Window {
                in_h: 9,
                in_w: 11,
                out_h: 9,
                out_w: 11,
                kernel_h: 3,
                kernel_w: 3,
                stride_h: 1,
                stride_w: 1,
                pad_top: 1,
                pad_left: 1,
                dilation_w: 1,
                ..win()
            },
            // Dilated "same" convolution: the contiguous-read path with offsets of two.
            Window {
                in_h: 8,
                in_w: 10,
                out_h: 8,
                out_w: 10,
                kernel_h: 3,
                kernel_w: 3,
                stride_h: 1,
                stride_w: 1,
                pad_top: 2,
                pad_left: 2,
                dilation_h: 2,
                dilation_w: 2,
            },
            // Stride 1 but narrower output rows (no padding): the run-by-run path.
            Window {
                in_h: 6,
                in_w: 7,
                out_h: 4,
                out_w: 5,
                kernel_h: 3,
                kernel_w: 3,
                stride_h: 1,
                stride_w: 1,
                pad_top: 0,
                pad_left: 0,
                dilation_h: 1,
                dilation_w: 1,
            },
        ];
        for w in geometries {
            let input: Vec<f32> = (0..2 * w.in_h * w.in_w).map(|i| i as f32 + 1.0).collect();
            let cols = w.out_h * w.out_w;
            for nr in [4, 16] {
                for (p0, p1) in [(0, cols), (1, cols - 1), (cols / 2, cols), (cols - 1, cols)] {
                    let k = 2 * w.kernel_h * w.kernel_w;
                    let mut col = vec![0.0; k * (p1 - p0)];
                    im2col_tile(&input, 2, &w, p0, p1, &mut col);
                    let mut want = Vec::new();
                    crate::packed_gemm::pack_b(crate::gemm::MatRef::row_major(&col, k, p1 - p0), nr, &mut want);
                    let mut got = vec![f32::NAN; want.len()];
                    im2col_panels(&input, 2, &w, p0, p1, nr, &mut got);
                    assert_eq!(got.len(), (p1 - p0).div_ceil(nr) * nr * k);
                    assert!(got.iter().zip(&want).all(|(a, b)| a == b), "{w:?} nr {nr} tile {p0}..{p1}");
                }
            }
        }
    }

    /// Strided convolutions through the phase split equal im2col then packing: ResNet's 7×7/2 stem, 3×3/2 with
    /// padding 1, 1×1/2 without, stride 3, asymmetric (TF "SAME") padding.
    #[test]
    fn phased_panels_equal_im2col_then_packing() {
        let stride = |s: usize, k: usize, pad: usize, in_hw: usize| {
            let out = (in_hw + 2 * pad - k) / s + 1;
            Window {
                in_h: in_hw,
                in_w: in_hw,
                out_h: out,
                out_w: out,
                kernel_h: k,
                kernel_w: k,
                stride_h: s,
                stride_w: s,
                dilation_h: 1,
                dilation_w: 1,
                pad_top: pad,
                pad_left: pad,
            }
        };
        let geometries = [
            stride(2, 7, 3, 16),
            stride(2, 3, 1, 10),
            stride(2, 1, 0, 8),
            stride(3, 3, 1, 9),
            // TF "SAME" for 3×3/2 on an even size: no padding before, one after.
            Window { out_h: 5, out_w: 5, ..stride(2, 3, 0, 10) },
        ];
        for w in geometries {
            let s = phase_split(&w).unwrap_or_else(|| panic!("{w:?} splits"));
            let input: Vec<f32> = (0..3 * w.in_h * w.in_w).map(|i| i as f32 + 1.0).collect();
            let mut phased = vec![0.0; input.len()];
            split_phases(&input, 3, w.in_h, w.in_w, s, &mut phased);
            let cols = w.out_h * w.out_w;
            for nr in [4, 16] {
                for (p0, p1) in [(0, cols), (1, cols - 1), (cols / 2, cols), (cols - 1, cols)] {
                    let k = 3 * w.kernel_h * w.kernel_w;
                    let mut col = vec![0.0; k * (p1 - p0)];
                    im2col_tile(&input, 3, &w, p0, p1, &mut col);
                    let mut want = Vec::new();
                    crate::packed_gemm::pack_b(crate::gemm::MatRef::row_major(&col, k, p1 - p0), nr, &mut want);
                    let mut got = vec![f32::NAN; want.len()];
                    im2col_panels_phased(&phased, 3, &w, p0, p1, nr, &mut got);
                    assert!(got.iter().zip(&want).all(|(a, b)| a == b), "{w:?} nr {nr} tile {p0}..{p1}");
                }
            }
        }
        assert_eq!(phase_split(&Window { in_w: 11, ..stride(2, 3, 1, 10) }), None, "odd width");
        assert_eq!(phase_split(&stride(1, 3, 1, 10)), None, "stride 1");
    }

    #[test]
    fn subsample_keeps_every_strided_pixel_of_every_plane() {
        // Two planes of 7 × 8 at strides 3 × 2: rows 0, 3, 6 and columns 0, 2, 4, 6 of each.
        let input: Vec<f32> = (0..2 * 7 * 8).map(|i| i as f32).collect();
        let mut out = vec![f32::NAN; 2 * 3 * 4];
        subsample(&input, (7, 8), (3, 2), (3, 4), &mut out);
        for (i, &v) in out.iter().enumerate() {
            let (c, y, x) = (i / 12, i % 12 / 4, i % 4);
            assert_eq!(v, input[c * 56 + 3 * y * 8 + 2 * x], "plane {c} at ({y}, {x})");
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), y> == <x, col2im(y)> for any x, y.
        let w = win();
        let x: Vec<f64> = (0..30).map(|i| ((i * 7 % 11) as f64) - 5.0).collect();
        let (p0, p1) = (2, 8);
        let y: Vec<f64> = (0..6 * (p1 - p0)).map(|i| ((i * 5 % 13) as f64) * 0.5).collect();
        let mut col = vec![0.0; y.len()];
        im2col_tile(&x, 1, &w, p0, p1, &mut col);
        let lhs: f64 = col.iter().zip(&y).map(|(a, b)| a * b).sum();
        let mut back = vec![0.0; 30];
        col2im_channel_tile(&y, &w, p0, p1, &mut back);
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
        assert_eq!(lhs, rhs);
    }

    #[test]
    fn col2im_by_phase_adds_what_the_whole_tile_adds_bit_for_bit() {
        // Stride 2 both ways, dilation 2 across, padding above: four phase classes; and a stride-3 window.
        let stride3 = Window {
            in_h: 7,
            in_w: 8,
            out_h: 3,
            out_w: 3,
            kernel_h: 3,
            kernel_w: 3,
            stride_h: 3,
            stride_w: 3,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 1,
            pad_left: 1,
        };
        for w in [win(), stride3] {
            let (p0, p1) = (1, w.out_h * w.out_w);
            let taps = w.kernel_h * w.kernel_w;
            let y: Vec<f64> = (0..taps * (p1 - p0)).map(|i| ((i * 5 % 13) as f64) * 0.37 - 1.1).collect();
            let start: Vec<f64> = (0..w.in_h * w.in_w).map(|i| (i % 7) as f64 * 0.01).collect();
            let mut whole = start.clone();
            col2im_channel_tile(&y, &w, p0, p1, &mut whole);
            let mut phased = start.clone();
            for phase in 0..w.stride_h * w.stride_w {
                // SAFETY: `phased` holds the whole plane and nothing else touches it.
                unsafe { col2im_channel_tile_phase(&y, &w, p0, p1, phased.as_mut_ptr(), phased.len(), Some(phase)) };
            }
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&phased), bits(&whole), "{w:?}");
        }
    }

    #[test]
    fn valid_range_handles_padding_and_overhang() {
        assert_eq!(valid_range(5, 1, -2, 4), (2, 5));
        assert_eq!(valid_range(5, 2, -1, 4), (1, 3));
        assert_eq!(valid_range(3, 1, 10, 4), (0, 0));
        assert_eq!(valid_range(4, 3, 0, 7), (0, 3));
    }
}
