//! Products `A·B` with few rows in `A` (a classifier at batch 1–4): row-vector times matrix without packing.
//!
//! A general GEMM packs all of `B` on every call — for VGG-16's first classifier layer that is a 411 MB copy to
//! multiply one row. Here each output element is a dot product of contiguous runs (when `B`'s columns are
//! contiguous, as for a `Linear` weight used transposed) or rows of `B` are accumulated with `axpy` (when its rows
//! are contiguous); both read `B` exactly once. Outputs are split into fixed chunks, so the result does not depend on
//! the thread count.

use crate::Element;
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Rows of `A` up to which the thin path is used.
pub const MAX_THIN_ROWS: usize = 4;

/// Output columns per parallel task of the dot-product layout (each reads whole columns of `B`).
const CHUNK: usize = 64;

/// Output columns per parallel task of the row layout: each task reads this many contiguous values from every row
/// of `B` (4 KB runs stream well; 64 values — 256 bytes — strided across hundreds of MB did not).
const ROW_CHUNK: usize = 1024;

/// `A·B`: the thin path when it applies, else ndarray's general product. Every 2-D product of the ops goes here.
///
/// The thin path skips the rows of `B` whose coefficient in `A` is zero (a one-hot gradient seed reads one row):
/// exact, signed zeros included, except that a zero coefficient times an infinity or NaN in `B` contributes nothing
/// instead of NaN.
pub(crate) fn matmul<T: Element>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>) -> Array2<T> {
    thin_matmul(a, b).unwrap_or_else(|| a.dot(b))
}

/// `A·B` when `A` has at most [`MAX_THIN_ROWS`] rows and `B` has contiguous rows or columns; `None` otherwise.
fn thin_matmul<T: Element>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>) -> Option<Array2<T>> {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    if m == 0 || m > MAX_THIN_ROWS || b.nrows() != k || n == 0 {
        return None;
    }
    let a_rows: Vec<Vec<T>> = a.outer_iter().map(|r| r.to_vec()).collect();
    let bt = b.t();
    let mut y = Array2::<T>::zeros((m, n));
    if let Some(cols) = bt.as_slice() {
        // Column j of B is cols[j·k .. (j + 1)·k].
        for (row, out) in a_rows.iter().zip(y.axis_iter_mut(Axis(0))) {
            let mut out = out;
            let out = out.as_slice_mut()?;
            out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
                for (i, o) in chunk.iter_mut().enumerate() {
                    let j = c * CHUNK + i;
                    *o = T::dot(row, &cols[j * k..(j + 1) * k]);
                }
            });
        }
        return Some(y);
    }
    let rows = b.as_slice()?;
    // Row p of B is rows[p·n .. (p + 1)·n]: y_i = Σ_p a_ip · B_p, accumulated in order of p. Rows whose
    // coefficients are zero are skipped: a classifier's input gradient for one class (a one-hot seed) reads one row
    // of the weight instead of all of them. Adding 0·B_p to a sum that starts at +0 never changes it (signed zeros
    // included) unless B_p holds an infinity or NaN (see `matmul`).
    for (row, out) in a_rows.iter().zip(y.axis_iter_mut(Axis(0))) {
        let mut out = out;
        let out = out.as_slice_mut()?;
        out.par_chunks_mut(ROW_CHUNK).enumerate().for_each(|(c, chunk)| {
            let j0 = c * ROW_CHUNK;
            let len = chunk.len();
            let b_row = |p: usize| &rows[p * n + j0..p * n + j0 + len];
            let quads = row.len() / 4 * 4;
            for p in (0..quads).step_by(4) {
                let a = [row[p], row[p + 1], row[p + 2], row[p + 3]];
                if a.iter().all(|v| v.is_zero()) {
                    continue;
                }
                T::axpy4(a, [b_row(p), b_row(p + 1), b_row(p + 2), b_row(p + 3)], chunk);
            }
            for (p, &ap) in row.iter().enumerate().skip(quads) {
                if !ap.is_zero() {
                    T::axpy(ap, b_row(p), chunk);
                }
            }
        });
    }
    Some(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn equals_the_general_product_for_both_layouts() {
        let a = Array2::from_shape_fn((3, 150), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        let b = Array2::from_shape_fn((150, 130), |(i, j)| ((i * 5 + j) % 13) as f64 * 0.25 - 1.0);
        let want = a.dot(&b);
        assert_eq!(thin_matmul(&a.view(), &b.view()).unwrap(), want);
        let bt = b.t().to_owned();
        assert_eq!(thin_matmul(&a.view(), &bt.t()).unwrap(), want);
        // Zero coefficients (a one-hot row, a zero row) are skipped and give the same sums.
        let mut sparse = Array2::<f64>::zeros((3, 150));
        sparse[[0, 7]] = 2.5;
        sparse[[2, 149]] = -1.0;
        sparse[[2, 3]] = 0.5;
        assert_eq!(thin_matmul(&sparse.view(), &b.view()).unwrap(), sparse.dot(&b));
        let tall = Array2::<f64>::zeros((5, 150));
        assert!(thin_matmul(&tall.view(), &b.view()).is_none());
    }
}
