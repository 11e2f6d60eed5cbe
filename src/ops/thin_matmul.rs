//! Products `A·B` with few rows in `A` (a classifier at batch 1–16): row-vector times matrix without packing.
//!
//! A general GEMM packs all of `B` on every call — for VGG-16's first classifier layer that is a 411 MB copy to
//! multiply one row. Here each output element is a dot product of contiguous runs (when `B`'s columns are
//! contiguous, as for a `Linear` weight used transposed) or rows of `B` are accumulated with `axpy` (when its rows
//! are contiguous); both read `B` exactly once. Outputs are split into fixed chunks, so the result does not depend on
//! the thread count.

use crate::Element;
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Rows of `A` up to which the thin path is used: a batch's classifier. Each part of `B` is read once for all rows
/// (a column for every row's dot product, four rows of `B` for every row's sum), so the cost stays one pass over `B`
/// where a general product would first pack all of it.
pub const MAX_THIN_ROWS: usize = 16;

/// Rows of `A` that always take the thin path; more (up to [`MAX_THIN_ROWS`]) only while `A` fits in L2
/// ([`MAX_SHARED_A_BYTES`]), since the dot-product layout reads all of `A` again for every column of `B`.
const ALWAYS_THIN_ROWS: usize = 4;

/// Most bytes of `A` above [`ALWAYS_THIN_ROWS`] rows (VGG-16's first classifier layer at batch 8 is 0.8 MB).
const MAX_SHARED_A_BYTES: usize = 1 << 20;

/// Output columns per parallel task of the dot-product layout (each reads whole columns of `B`).
const CHUNK: usize = 64;

/// Output columns per parallel task of the row layout: each task reads this many contiguous values from every row
/// of `B` (4 KB runs stream well; 64 values — 256 bytes — strided across hundreds of MB did not).
const ROW_CHUNK: usize = 1024;

/// `A·B`: the thin path when it applies, else ndarray's general product. Every 2-D product of the ops goes here.
///
/// The thin path skips the rows of `B` whose coefficient in `A` is zero (a one-hot gradient seed reads one row):
/// exact, signed zeros included, except that a zero coefficient times an infinity or NaN in `B` contributes nothing
/// instead of NaN. On the thin path each row of the result is computed as it would be alone: a batch gives each
/// image the bits it gets by itself.
pub(crate) fn matmul<T: Element>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>) -> Array2<T> {
    thin_matmul(a, b).unwrap_or_else(|| a.dot(b))
}

/// `A·B` when `A` has at most [`MAX_THIN_ROWS`] rows (see [`ALWAYS_THIN_ROWS`]) and `B` has contiguous rows or
/// columns; `None` otherwise.
fn thin_matmul<T: Element>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>) -> Option<Array2<T>> {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let a_bytes = m * k * std::mem::size_of::<T>();
    if m == 0 || m > MAX_THIN_ROWS || (m > ALWAYS_THIN_ROWS && a_bytes > MAX_SHARED_A_BYTES) || b.nrows() != k || n == 0
    {
        return None;
    }
    let a_rows: Vec<Vec<T>> = a.outer_iter().map(|r| r.to_vec()).collect();
    let bt = b.t();
    if let Some(cols) = bt.as_slice() {
        // Column j of B is cols[j·k .. (j + 1)·k], read once for the m dot products of output column j (laid out
        // transposed here, n × m, so that each task owns a contiguous run).
        let mut yt = vec![T::zero(); n * m];
        yt.par_chunks_mut(CHUNK * m).enumerate().for_each(|(c, chunk)| {
            for (i, outs) in chunk.chunks_mut(m).enumerate() {
                let j = c * CHUNK + i;
                let col = &cols[j * k..(j + 1) * k];
                outs.iter_mut().zip(&a_rows).for_each(|(o, row)| *o = T::dot(row, col));
            }
        });
        let yt = Array2::from_shape_vec((n, m), yt).ok()?;
        return Some(yt.reversed_axes().as_standard_layout().into_owned());
    }
    let rows = b.as_slice()?;
    // Row p of B is rows[p·n .. (p + 1)·n]: y_i = Σ_p a_ip · B_p, accumulated in order of p. Rows whose
    // coefficients are zero are skipped: a classifier's input gradient for one class (a one-hot seed) reads one row
    // of the weight instead of all of them. Adding 0·B_p to a sum that starts at +0 never changes it (signed zeros
    // included) unless B_p holds an infinity or NaN (see `matmul`).
    let mut y = Array2::<T>::zeros((m, n));
    y.axis_chunks_iter_mut(Axis(1), ROW_CHUNK).into_par_iter().enumerate().for_each(|(c, mut block)| {
        let j0 = c * ROW_CHUNK;
        let len = block.ncols();
        let b_row = |p: usize| &rows[p * n + j0..p * n + j0 + len];
        // Each output row's run of this block (rows of `y` are contiguous).
        let mut outs: Vec<&mut [T]> =
            block.rows_mut().into_iter().map(|r| r.into_slice().expect("rows of a new array are contiguous")).collect();
        let quads = k / 4 * 4;
        for p in (0..quads).step_by(4) {
            // Four rows of B, read once for every row of A.
            let b4 = [b_row(p), b_row(p + 1), b_row(p + 2), b_row(p + 3)];
            for (row, out) in a_rows.iter().zip(outs.iter_mut()) {
                let a = [row[p], row[p + 1], row[p + 2], row[p + 3]];
                if !a.iter().all(|v| v.is_zero()) {
                    T::axpy4(a, b4, out);
                }
            }
        }
        for p in quads..k {
            for (row, out) in a_rows.iter().zip(outs.iter_mut()) {
                if !row[p].is_zero() {
                    T::axpy(row[p], b_row(p), out);
                }
            }
        }
    });
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
        let tall = Array2::<f64>::zeros((MAX_THIN_ROWS + 1, 150));
        assert!(thin_matmul(&tall.view(), &b.view()).is_none());
        // Between 4 and 16 rows only while A fits in L2.
        let long = Array2::<f32>::zeros((8, MAX_SHARED_A_BYTES / 16));
        let wide = Array2::<f32>::zeros((MAX_SHARED_A_BYTES / 16, 3));
        assert!(thin_matmul(&long.view(), &wide.view()).is_none());
        assert!(thin_matmul(&long.slice(ndarray::s![..4, ..]), &wide.view()).is_some());
    }

    #[test]
    fn each_row_of_a_batch_gets_the_bits_it_gets_alone() {
        // Irrational-looking values, so that any change in the order of the sums would show in the bits.
        let a = Array2::from_shape_fn((MAX_THIN_ROWS, 1283), |(i, j)| ((i * 31 + j * 17) as f32 * 0.37).sin());
        let b = Array2::from_shape_fn((1283, 1100), |(i, j)| ((i * 13 + j * 7) as f32 * 0.11).cos());
        let bt = b.t().to_owned();
        for b in [b.view(), bt.t()] {
            let batch = thin_matmul(&a.view(), &b).unwrap();
            for (i, row) in a.outer_iter().enumerate() {
                let alone = thin_matmul(&row.insert_axis(Axis(0)), &b).unwrap();
                let (got, want) = (batch.row(i), alone.row(0));
                assert!(got.iter().zip(want).all(|(g, w)| g.to_bits() == w.to_bits()), "row {i} differs");
            }
            let general = a.dot(&b);
            assert!(batch.iter().zip(&general).all(|(x, y)| (x - y).abs() <= 1e-3 * (1.0 + y.abs())));
        }
    }
}
