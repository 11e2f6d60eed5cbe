//! Max and average pooling over NCHW planes, forward and backward.
//!
//! Max pooling records the flat in-plane index of each window's maximum, so the backward pass routes gradients
//! exactly, for any kernel, stride, padding and dilation (overlapping windows such as ResNet's 3×3/2 included).

use crate::im2col::valid_range;
use crate::simd::{level, SimdLevel};
use crate::Element;
use rayon::prelude::*;

/// Marks an output whose window covers no input pixel (possible only with `ceil_mode`).
pub const NO_ARGMAX: u32 = u32::MAX;

/// Geometry of a 2-D pooling window applied to `planes` planes of `in_h × in_w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub planes: usize,
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
    pub pad_bottom: usize,
    pub pad_right: usize,
}

impl PoolGeometry {
    fn in_plane(&self) -> usize {
        self.in_h * self.in_w
    }

    fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Input rows (or columns) `lo..hi` and tap range read by output `o` along one axis.
    fn taps(o: usize, stride: usize, dilation: usize, pad: usize, kernel: usize, len: usize) -> (usize, usize) {
        let (lo, hi) = valid_range(kernel, dilation, (o * stride) as isize - pad as isize, len);
        (lo, hi)
    }

    fn check(&self, input: usize, output: usize) {
        assert_eq!(input, self.planes * self.in_plane(), "pool: input length");
        assert_eq!(output, self.planes * self.out_plane(), "pool: output length");
    }
}

/// Tap ranges of every output row and column, computed once per call (each costs two divisions), and the run of
/// columns whose window lies wholly inside the image.
struct TapTable {
    rows: Vec<(usize, usize)>,
    cols: Vec<(usize, usize)>,
    inner: std::ops::Range<usize>,
}

impl TapTable {
    fn new(geo: &PoolGeometry) -> TapTable {
        let rows: Vec<(usize, usize)> = (0..geo.out_h)
            .map(|oy| PoolGeometry::taps(oy, geo.stride_h, geo.dilation_h, geo.pad_top, geo.kernel_h, geo.in_h))
            .collect();
        let cols: Vec<(usize, usize)> = (0..geo.out_w)
            .map(|ox| PoolGeometry::taps(ox, geo.stride_w, geo.dilation_w, geo.pad_left, geo.kernel_w, geo.in_w))
            .collect();
        let full = |&(k0, k1): &(usize, usize)| k0 == 0 && k1 == geo.kernel_w;
        let lo = cols.iter().position(full).unwrap_or(geo.out_w);
        let hi = lo + cols[lo..].iter().take_while(|c| full(c)).count();
        TapTable { rows, cols, inner: lo..hi }
    }
}

/// `a` unless `b` is greater or NaN: the running maximum in which NaN sticks (it propagates, like PyTorch).
#[inline(always)]
fn nan_max<T: Element>(a: T, b: T) -> T {
    let m = if b > a { b } else { a };
    if b.is_nan() {
        b
    } else {
        m
    }
}

/// `best[j] = max over the runs of run[j]` (NaN wins; the runs in order), in blocks
/// kept in registers and stored once; the last block overlaps the one before rather than falling back to scalar code
/// (a maximum taken twice is the same maximum).
#[inline(always)]
fn max_of_runs<T: Element>(best: &mut [T], runs: &[&[T]]) {
    let n = best.len();
    assert!(runs.iter().all(|r| r.len() >= n), "pool: run shorter than the row");
    if n >= 32 {
        max_of_runs_blocked::<T, 32>(best, runs);
    } else if n >= 8 {
        max_of_runs_blocked::<T, 8>(best, runs);
    } else {
        for (k, b) in best.iter_mut().enumerate() {
            *b = runs[1..].iter().fold(runs[0][k], |m, run| nan_max(m, run[k]));
        }
    }
}

/// [`max_of_runs`] in blocks of `B` (`n ≥ B`).
#[inline(always)]
fn max_of_runs_blocked<T: Element, const B: usize>(best: &mut [T], runs: &[&[T]]) {
    let n = best.len();
    let block = |j: usize| -> [T; B] {
        let mut acc: [T; B] = runs[0][j..j + B].try_into().expect("a block");
        for run in &runs[1..] {
            let taps: &[T; B] = run[j..j + B].try_into().expect("a block");
            for l in 0..B {
                acc[l] = nan_max(acc[l], taps[l]);
            }
        }
        acc
    };
    let mut j = 0;
    while j + B <= n {
        best[j..j + B].copy_from_slice(&block(j));
        j += B;
    }
    if j < n {
        best[n - B..].copy_from_slice(&block(n - B));
    }
}

/// Max pooling (values only: the backward pass finds the argmax again from the input, see
/// [`max_pool2d_argmax`], so a forward-only run never pays for it). NaN wins.
pub fn max_pool2d_forward<T: Element>(geo: &PoolGeometry, input: &[T], output: &mut [T]) {
    geo.check(input.len(), output.len());
    let (ip, op) = (geo.in_plane(), geo.out_plane());
    if op == 0 {
        return;
    }
    let table = TapTable::new(geo);
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn avx512<T: Element>(geo: &PoolGeometry, table: &TapTable, x: &[T], out: &mut [T]) {
        max_plane(geo, table, x, out)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn avx2<T: Element>(geo: &PoolGeometry, table: &TapTable, x: &[T], out: &mut [T]) {
        max_plane(geo, table, x, out)
    }
    let simd = level();
    output.par_chunks_mut(op).enumerate().for_each(|(p, out)| {
        let x = &input[p * ip..(p + 1) * ip];
        match simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: level() only returns levels this CPU supports.
            SimdLevel::Avx512 => unsafe { avx512(geo, &table, x, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            SimdLevel::Avx2 => unsafe { avx2(geo, &table, x, out) },
            _ => max_plane(geo, &table, x, out),
        }
    });
}

/// Window widths whose taps [`max_plane`] lists on the stack.
const STACK_TAPS: usize = 16;

/// `out[j] = run[j·stride]`.
#[inline(always)]
fn pick_every<T: Element>(out: &mut [T], run: &[T], stride: usize) {
    let n = out.len();
    match stride {
        1 => out.copy_from_slice(&run[..n]),
        2 => {
            let run = &run[..2 * n - 1];
            for j in 0..n {
                out[j] = run[2 * j];
            }
        }
        _ => out.iter_mut().zip(run.iter().step_by(stride)).for_each(|(o, &v)| *o = v),
    }
}

/// One plane of [`max_pool2d_forward`], inlined into each SIMD level's copy (the comparisons vectorize).
///
/// The maximum over a window is the maximum over its rows of the maximum over its columns, and exact in any order
/// (NaN wins whichever way it is reached), so each output row is made in two passes: the window's input rows
/// folded into one row (`column_max`, contiguous, in registers), then each output the maximum of its taps along
/// that row. Outputs whose window hangs over the left or right edge take only the taps inside.
#[inline(always)]
fn max_plane<T: Element>(geo: &PoolGeometry, table: &TapTable, x: &[T], out: &mut [T]) {
    let mut column_max: Vec<T> = vec![T::zero(); geo.in_w];
    let mut window_max: Vec<T> = vec![T::zero(); geo.in_w];
    let mut taps: Vec<&[T]> = Vec::with_capacity(geo.kernel_h.max(geo.kernel_w));
    for (oy, &(ky0, ky1)) in table.rows.iter().enumerate() {
        let out_row = &mut out[oy * geo.out_w..][..geo.out_w];
        if ky0 == ky1 {
            // A window over padding only (ceil_mode) gives 0.
            out_row.fill(T::zero());
            continue;
        }
        let row = |ky: usize| {
            let first = (oy * geo.stride_h + ky * geo.dilation_h - geo.pad_top) * geo.in_w;
            &x[first..first + geo.in_w]
        };
        taps.clear();
        taps.extend((ky0..ky1).map(row));
        max_of_runs(&mut column_max, &taps);
        let inner = table.inner.clone();
        if !inner.is_empty() {
            // Each inner output's window maximum at the window's first column (`run`), then every stride-th of them.
            let best = &mut out_row[inner.clone()];
            let first = inner.start * geo.stride_w - geo.pad_left;
            let span = (best.len() - 1) * geo.stride_w + 1;
            let run = &mut window_max[..span];
            let tap = |kx: usize| &column_max[first + kx * geo.dilation_w..][..span];
            if geo.kernel_w <= STACK_TAPS {
                let mut runs: [&[T]; STACK_TAPS] = [&[]; STACK_TAPS];
                runs.iter_mut().enumerate().take(geo.kernel_w).for_each(|(kx, r)| *r = tap(kx));
                max_of_runs(run, &runs[..geo.kernel_w]);
            } else {
                max_of_runs(run, &(0..geo.kernel_w).map(tap).collect::<Vec<_>>());
            }
            pick_every(best, run, geo.stride_w);
        }
        // The outputs whose window hangs over an edge.
        for ox in (0..inner.start).chain(inner.end..geo.out_w) {
            let (kx0, kx1) = table.cols[ox];
            let ix0 = (ox * geo.stride_w + kx0 * geo.dilation_w).wrapping_sub(geo.pad_left);
            let taps = (kx0..kx1).map(|kx| column_max[ix0 + (kx - kx0) * geo.dilation_w]);
            out_row[ox] = taps.reduce(nan_max).unwrap_or(T::zero());
        }
    }
}

/// The in-plane index of each window's maximum — the first one, or the first NaN (like PyTorch) — or
/// [`NO_ARGMAX`] for a window over padding only: where [`max_pool2d_backward`] routes the gradient.
pub fn max_pool2d_argmax<T: Element>(geo: &PoolGeometry, input: &[T], argmax: &mut [u32]) {
    geo.check(input.len(), argmax.len());
    let (ip, op) = (geo.in_plane(), geo.out_plane());
    if op == 0 {
        return;
    }
    if ip == 0 {
        // An empty plane (padding can still give it outputs): every window covers padding only.
        argmax.fill(NO_ARGMAX);
        return;
    }
    let table = TapTable::new(geo);
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn avx512<T: Element>(geo: &PoolGeometry, table: &TapTable, x: &[T], arg: &mut [u32]) {
        argmax_plane(geo, table, x, arg)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn avx2<T: Element>(geo: &PoolGeometry, table: &TapTable, x: &[T], arg: &mut [u32]) {
        argmax_plane(geo, table, x, arg)
    }
    let simd = level();
    argmax.par_chunks_mut(op).enumerate().for_each(|(p, arg)| {
        let x = &input[p * ip..(p + 1) * ip];
        match simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: level() only returns levels this CPU supports.
            SimdLevel::Avx512 => unsafe { avx512(geo, &table, x, arg) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            SimdLevel::Avx2 => unsafe { avx2(geo, &table, x, arg) },
            _ => argmax_plane(geo, &table, x, arg),
        }
    });
}

/// The first maximum of each whole window along one row (window `j` starting at column `first + j·stride`): tap by
/// tap across the row, so that the compares vectorize. `S` is the stride when it is a constant the compiler can
/// use (1, 2), or 0 for the geometry's own.
#[inline(always)]
fn row_argmax<T: Element, const S: usize>(
    geo: &PoolGeometry,
    row: &[T],
    first: usize,
    values: &mut [T],
    columns: &mut [u32],
) {
    let stride = if S == 0 { geo.stride_w } else { S };
    let n = values.len();
    let columns = &mut columns[..n];
    // Blocks of B windows in registers, stored once (an in-place select per tap became a branch and a conditional
    // store); the last block overlaps the one before rather than falling back to scalar code (it recomputes the
    // same answers).
    const B: usize = 16;
    let block = |j0: usize| -> ([T; B], [u32; B]) {
        let (mut bv, mut bc) = ([T::zero(); B], [0u32; B]);
        for l in 0..B {
            let at = first + (j0 + l) * stride;
            (bv[l], bc[l]) = (row[at], at as u32);
        }
        for kx in 1..geo.kernel_w {
            let offset = first + kx * geo.dilation_w + j0 * stride;
            let taps = &row[offset..offset + (B - 1) * stride + 1];
            for l in 0..B {
                let v = taps[l * stride];
                let d = displaces(v, bv[l]);
                bv[l] = if d { v } else { bv[l] };
                bc[l] = if d { (offset + l * stride) as u32 } else { bc[l] };
            }
        }
        (bv, bc)
    };
    if n < B {
        for j in 0..n {
            let at = first + j * stride;
            let (mut bv, mut bc) = (row[at], at as u32);
            for kx in 1..geo.kernel_w {
                let c = at + kx * geo.dilation_w;
                if displaces(row[c], bv) {
                    (bv, bc) = (row[c], c as u32);
                }
            }
            (values[j], columns[j]) = (bv, bc);
        }
        return;
    }
    let mut j = 0;
    while j < n {
        let j0 = j.min(n - B);
        let (bv, bc) = block(j0);
        values[j0..j0 + B].copy_from_slice(&bv);
        columns[j0..j0 + B].copy_from_slice(&bc);
        j = j0 + B;
    }
}

/// Whether `v` displaces `best` as a window's maximum: greater, or the first NaN.
#[inline(always)]
fn displaces<T: Element>(v: T, best: T) -> bool {
    // Non-short-circuit operators: a select, not a branch (the data decide it at random).
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// One plane of [`max_pool2d_argmax`], in two passes: each input row's first maximum over every output column's
/// taps, then each output's first maximum over its rows' results, rows in order. Keeping the first of the maximal
/// taps is associative over a row-major scan split by rows, so this is exactly the tap-by-tap scan's answer, with
/// each row's horizontal pass shared by the windows that overlap it.
#[inline(always)]
fn argmax_plane<T: Element>(geo: &PoolGeometry, table: &TapTable, x: &[T], arg: &mut [u32]) {
    let (in_w, out_w) = (geo.in_w, geo.out_w);
    // Per input row and output column: the value and the column of the row's first maximum over the column's taps
    // (columns without taps — windows over padding only — are set apart at the end).
    let mut row_value: Vec<T> = vec![T::zero(); geo.in_h * out_w];
    let mut row_column: Vec<u32> = vec![0; geo.in_h * out_w];
    for ((row, values), columns) in
        x.chunks_exact(in_w).zip(row_value.chunks_exact_mut(out_w)).zip(row_column.chunks_exact_mut(out_w))
    {
        // Whole windows tap by tap across the row (the compares vectorize), the edge windows one by one.
        let inner = table.inner.clone();
        if !inner.is_empty() {
            let first = inner.start * geo.stride_w - geo.pad_left;
            let (values, columns) = (&mut values[inner.clone()], &mut columns[inner.clone()]);
            match geo.stride_w {
                1 => row_argmax::<T, 1>(geo, row, first, values, columns),
                2 => row_argmax::<T, 2>(geo, row, first, values, columns),
                _ => row_argmax::<T, 0>(geo, row, first, values, columns),
            }
        }
        for ox in (0..inner.start).chain(inner.end..out_w) {
            let (kx0, kx1) = table.cols[ox];
            if kx0 == kx1 {
                continue;
            }
            let first = ox * geo.stride_w + kx0 * geo.dilation_w - geo.pad_left;
            let (mut bv, mut bi) = (row[first], first as u32);
            for kx in kx0 + 1..kx1 {
                let c = first + (kx - kx0) * geo.dilation_w;
                let d = displaces(row[c], bv);
                bv = if d { row[c] } else { bv };
                bi = if d { c as u32 } else { bi };
            }
            (values[ox], columns[ox]) = (bv, bi);
        }
    }
    let mut best: Vec<T> = vec![T::zero(); out_w];
    for (oy, &(ky0, ky1)) in table.rows.iter().enumerate() {
        let out = &mut arg[oy * out_w..(oy + 1) * out_w];
        if ky0 == ky1 {
            out.fill(NO_ARGMAX);
            continue;
        }
        let row_of = |ky: usize| oy * geo.stride_h + ky * geo.dilation_h - geo.pad_top;
        let r = row_of(ky0);
        best.copy_from_slice(&row_value[r * out_w..(r + 1) * out_w]);
        for (o, &c) in out.iter_mut().zip(&row_column[r * out_w..(r + 1) * out_w]) {
            *o = (r * in_w) as u32 + c;
        }
        for ky in ky0 + 1..ky1 {
            let r = row_of(ky);
            let (values, columns) = (&row_value[r * out_w..(r + 1) * out_w], &row_column[r * out_w..(r + 1) * out_w]);
            let base = (r * in_w) as u32;
            for ((o, b), (&v, &c)) in out.iter_mut().zip(best.iter_mut()).zip(values.iter().zip(columns)) {
                let d = displaces(v, *b);
                *b = if d { v } else { *b };
                *o = if d { base + c } else { *o };
            }
        }
        for (o, &(kx0, kx1)) in out.iter_mut().zip(&table.cols) {
            if kx0 == kx1 {
                *o = NO_ARGMAX;
            }
        }
    }
}

/// Routes each output gradient to its window's maximum (overwrites `grad_input`).
pub fn max_pool2d_backward<T: Element>(geo: &PoolGeometry, argmax: &[u32], grad_output: &[T], grad_input: &mut [T]) {
    geo.check(grad_input.len(), grad_output.len());
    let (ip, op) = (geo.in_plane(), geo.out_plane());
    grad_input.fill(T::zero());
    if ip == 0 {
        return;
    }
    grad_input.par_chunks_mut(ip).enumerate().for_each(|(p, dx)| {
        for (&i, &g) in argmax[p * op..(p + 1) * op].iter().zip(&grad_output[p * op..(p + 1) * op]) {
            if i != NO_ARGMAX {
                dx[i as usize] += g;
            }
        }
    });
}

/// The divisor of an average-pool window: taps inside the padded input (`count_include_pad`) or inside the image.
fn divisor(geo: &PoolGeometry, oy: usize, ox: usize, count_include_pad: bool) -> usize {
    let (ry, rx) = if count_include_pad {
        let padded_h = geo.in_h + geo.pad_top + geo.pad_bottom;
        let padded_w = geo.in_w + geo.pad_left + geo.pad_right;
        (
            PoolGeometry::taps(oy, geo.stride_h, geo.dilation_h, 0, geo.kernel_h, padded_h),
            PoolGeometry::taps(ox, geo.stride_w, geo.dilation_w, 0, geo.kernel_w, padded_w),
        )
    } else {
        (
            PoolGeometry::taps(oy, geo.stride_h, geo.dilation_h, geo.pad_top, geo.kernel_h, geo.in_h),
            PoolGeometry::taps(ox, geo.stride_w, geo.dilation_w, geo.pad_left, geo.kernel_w, geo.in_w),
        )
    };
    (ry.1 - ry.0) * (rx.1 - rx.0)
}

/// Calls `f(output index, input index)` for every tap inside the image of every window, then `g(output index,
/// divisor)`.
fn for_each_window<T: Element>(
    geo: &PoolGeometry,
    count_include_pad: bool,
    mut tap: impl FnMut(usize, usize),
    mut done: impl FnMut(usize, T),
) {
    for oy in 0..geo.out_h {
        let (ky0, ky1) = PoolGeometry::taps(oy, geo.stride_h, geo.dilation_h, geo.pad_top, geo.kernel_h, geo.in_h);
        for ox in 0..geo.out_w {
            let (kx0, kx1) = PoolGeometry::taps(ox, geo.stride_w, geo.dilation_w, geo.pad_left, geo.kernel_w, geo.in_w);
            let o = oy * geo.out_w + ox;
            for ky in ky0..ky1 {
                let iy = oy * geo.stride_h + ky * geo.dilation_h - geo.pad_top;
                for kx in kx0..kx1 {
                    tap(o, iy * geo.in_w + ox * geo.stride_w + kx * geo.dilation_w - geo.pad_left);
                }
            }
            let count = divisor(geo, oy, ox, count_include_pad);
            done(o, if count == 0 { T::zero() } else { T::one() / T::lit(count as f64) });
        }
    }
}

/// Average pooling.
pub fn avg_pool2d_forward<T: Element>(geo: &PoolGeometry, count_include_pad: bool, input: &[T], output: &mut [T]) {
    geo.check(input.len(), output.len());
    let (ip, op) = (geo.in_plane(), geo.out_plane());
    if op == 0 {
        return;
    }
    output.par_chunks_mut(op).enumerate().for_each(|(p, out)| {
        let x = &input[p * ip..(p + 1) * ip];
        out.fill(T::zero());
        let sums = std::cell::RefCell::new(out);
        for_each_window(
            geo,
            count_include_pad,
            |o, i| sums.borrow_mut()[o] += x[i],
            |o, scale: T| sums.borrow_mut()[o] *= scale,
        );
    });
}

/// Spreads each output gradient evenly over its window (overwrites `grad_input`).
pub fn avg_pool2d_backward<T: Element>(
    geo: &PoolGeometry,
    count_include_pad: bool,
    grad_output: &[T],
    grad_input: &mut [T],
) {
    geo.check(grad_input.len(), grad_output.len());
    let (ip, op) = (geo.in_plane(), geo.out_plane());
    grad_input.fill(T::zero());
    if ip == 0 || op == 0 {
        return;
    }
    grad_input.par_chunks_mut(ip).enumerate().for_each(|(p, dx)| {
        let dy = &grad_output[p * op..(p + 1) * op];
        // Scales are known only after a window's taps, so collect them first.
        let mut scale = vec![T::zero(); op];
        for_each_window(geo, count_include_pad, |_, _| {}, |o, s: T| scale[o] = s);
        for_each_window::<T>(geo, count_include_pad, |o, i| dx[i] += dy[o] * scale[o], |_, _| {});
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo() -> PoolGeometry {
        PoolGeometry {
            planes: 2,
            in_h: 5,
            in_w: 5,
            out_h: 3,
            out_w: 3,
            kernel_h: 3,
            kernel_w: 3,
            stride_h: 2,
            stride_w: 2,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 1,
            pad_left: 1,
            pad_bottom: 1,
            pad_right: 1,
        }
    }

    #[test]
    fn overlapping_max_pool_routes_gradient_to_argmax() {
        let g = geo();
        let x: Vec<f64> = (0..50).map(|i| ((i * 37) % 50) as f64).collect();
        let mut y = vec![0.0; 18];
        let mut arg = vec![0; 18];
        max_pool2d_forward(&g, &x, &mut y);
        max_pool2d_argmax(&g, &x, &mut arg);
        for p in 0..2 {
            for o in 0..9 {
                assert_eq!(y[p * 9 + o], x[p * 25 + arg[p * 9 + o] as usize]);
            }
        }
        let dy = vec![1.0; 18];
        let mut dx = vec![0.0; 50];
        max_pool2d_backward(&g, &arg, &dy, &mut dx);
        assert_eq!(dx.iter().sum::<f64>(), 18.0);
    }

    /// Every window's maximum and its first position, by brute force over the padded window (ceil-mode windows
    /// that cover no pixel give 0 and no argmax).
    #[test]
    fn max_pool_matches_brute_force_on_many_geometries() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..200 {
            let (kh, kw) = (1 + next(3), 1 + next(3));
            let (sh, sw, dh, dw) = (1 + next(3), 1 + next(3), 1 + next(2), 1 + next(2));
            // Rows up to 40 wide: the vectorized whole-window runs (and the stride-2 phase split) get long.
            let (in_h, in_w) = (1 + next(9), 1 + next(40));
            let (pt, pl, pb, pr) = (next(kh), next(kw), next(kh) + next(2), next(kw) + next(2));
            let span_h = (kh - 1) * dh + 1;
            let span_w = (kw - 1) * dw + 1;
            if in_h + pt + pb < span_h || in_w + pl + pr < span_w {
                continue;
            }
            let g = PoolGeometry {
                planes: 2,
                in_h,
                in_w,
                out_h: (in_h + pt + pb - span_h) / sh + 1,
                out_w: (in_w + pl + pr - span_w) / sw + 1,
                kernel_h: kh,
                kernel_w: kw,
                stride_h: sh,
                stride_w: sw,
                dilation_h: dh,
                dilation_w: dw,
                pad_top: pt,
                pad_left: pl,
                pad_bottom: pb,
                pad_right: pr,
            };
            // Few distinct values: ties are common, so the first-maximum rule is exercised.
            let x: Vec<f32> = (0..2 * in_h * in_w).map(|_| next(5) as f32 - 2.0).collect();
            let mut y = vec![0.0; 2 * g.out_h * g.out_w];
            let mut arg = vec![0; y.len()];
            max_pool2d_forward(&g, &x, &mut y);
            max_pool2d_argmax(&g, &x, &mut arg);
            for p in 0..2 {
                for oy in 0..g.out_h {
                    for ox in 0..g.out_w {
                        let mut want: Option<(f32, u32)> = None;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * sh + ky * dh) as isize - pt as isize;
                                let ix = (ox * sw + kx * dw) as isize - pl as isize;
                                if iy < 0 || ix < 0 || iy >= in_h as isize || ix >= in_w as isize {
                                    continue;
                                }
                                let i = iy as usize * in_w + ix as usize;
                                let v = x[p * in_h * in_w + i];
                                if want.is_none_or(|(b, _)| v > b) {
                                    want = Some((v, i as u32));
                                }
                            }
                        }
                        let o = p * g.out_h * g.out_w + oy * g.out_w + ox;
                        assert_eq!((y[o], arg[o]), want.unwrap_or((0.0, NO_ARGMAX)), "{g:?} plane {p} at ({oy}, {ox})");
                    }
                }
            }
        }
    }

    #[test]
    fn avg_pool_divisors_follow_count_include_pad() {
        let g = geo();
        let x = vec![1.0f64; 50];
        let mut y = vec![0.0; 18];
        avg_pool2d_forward(&g, false, &x, &mut y);
        assert!(y.iter().all(|&v| (v - 1.0).abs() < 1e-15));
        avg_pool2d_forward(&g, true, &x, &mut y);
        // Corner window sees 4 of 9 taps.
        assert!((y[0] - 4.0 / 9.0).abs() < 1e-15);
        assert!((y[4] - 1.0).abs() < 1e-15);
    }

    #[test]
    fn argmax_takes_the_first_nan_then_the_first_maximum_in_row_major_order() {
        // Overlapping 3×3/2 windows over planes with ties and NaNs, narrow (the scalar row path) and wide (the
        // register blocks, their overlapping last block included): the two-pass argmax equals the tap-by-tap scan.
        for in_w in [11, 41, 70] {
            let out_w = (in_w + 2 - 3) / 2 + 1;
            let g = PoolGeometry {
                planes: 1,
                in_h: 9,
                in_w,
                out_h: 5,
                out_w,
                kernel_h: 3,
                kernel_w: 3,
                stride_h: 2,
                stride_w: 2,
                dilation_h: 1,
                dilation_w: 1,
                pad_top: 1,
                pad_left: 1,
                pad_bottom: 1,
                pad_right: 1,
            };
            let x: Vec<f32> =
                (0..9 * in_w).map(|i| if i % 13 == 5 || i == 40 { f32::NAN } else { ((i * 7) % 4) as f32 }).collect();
            let mut arg = vec![0; 5 * out_w];
            max_pool2d_argmax(&g, &x, &mut arg);
            for oy in 0..5 {
                for ox in 0..out_w {
                    let mut want: Option<(f32, u32)> = None;
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = ((oy * 2 + ky) as isize - 1, (ox * 2 + kx) as isize - 1);
                            if iy < 0 || ix < 0 || iy >= 9 || ix >= in_w as isize {
                                continue;
                            }
                            let i = (iy * in_w as isize + ix) as usize;
                            if want.is_none_or(|(b, _)| displaces(x[i], b)) {
                                want = Some((x[i], i as u32));
                            }
                        }
                    }
                    assert_eq!(arg[oy * out_w + ox], want.unwrap().1, "width {in_w}, output ({oy}, {ox})");
                }
            }
        }
    }

    /// A zero-width plane that padding still gives an output: every window covers padding only.
    #[test]
    fn an_empty_plane_pools_to_zero_with_no_argmax() {
        let g = PoolGeometry {
            planes: 2,
            in_h: 3,
            in_w: 0,
            out_h: 2,
            out_w: 1,
            kernel_h: 2,
            kernel_w: 2,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 0,
            pad_left: 0,
            pad_bottom: 0,
            pad_right: 1,
        };
        let (mut y, mut arg) = (vec![f32::NAN; 4], vec![0u32; 4]);
        max_pool2d_forward(&g, &[], &mut y);
        max_pool2d_argmax::<f32>(&g, &[], &mut arg);
        assert_eq!(y, [0.0; 4]);
        assert_eq!(arg, [NO_ARGMAX; 4]);
    }

    #[test]
    fn nan_propagates_through_max_pool() {
        let g = PoolGeometry { planes: 1, ..geo() };
        let mut x = vec![0.0f32; 25];
        x[12] = f32::NAN;
        let mut y = vec![0.0; 9];
        let mut arg = vec![0; 9];
        max_pool2d_forward(&g, &x, &mut y);
        max_pool2d_argmax(&g, &x, &mut arg);
        assert!(y[4].is_nan());
        assert_eq!(arg[4], 12);
    }
}
