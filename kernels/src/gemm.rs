//! Safe, bounds-checked GEMM over strided matrix views.
//!
//! This is the one place where slices become raw pointers for `matrixmultiply`; every caller elsewhere goes
//! through [`gemm`], which checks that each view fits inside its slice before the unsafe call.

use crate::Element;

/// A read-only strided matrix view over a slice.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

/// A writable strided matrix view over a slice.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    pub data: &'a mut [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A dense row-major `rows × cols` view.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose of this view (no data moves).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn fits(&self) -> bool {
        fits(self.data.len(), self.rows, self.cols, self.row_stride, self.col_stride)
    }
}

impl<'a, T> MatMut<'a, T> {
    /// A dense row-major `rows × cols` view.
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        MatMut { data, rows, cols, row_stride: cols, col_stride: 1 }
    }
}

fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let last = (rows - 1).checked_mul(rs).and_then(|r| (cols - 1).checked_mul(cs).and_then(|c| r.checked_add(c)));
    matches!(last, Some(l) if l < len)
}

/// `C ← alpha·A·B + beta·C`.
///
/// # Panics
/// If the dimensions disagree or a view does not fit its slice: both are programming errors inside this crate's
/// callers (the graph layer validates user shapes before any kernel runs).
pub fn gemm<T: Element>(alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>, beta: T, c: MatMut<'_, T>) {
    assert!(a.rows == c.rows && b.cols == c.cols, "gemm: dimension mismatch");
    assert!(fits(c.data.len(), c.rows, c.cols, c.row_stride, c.col_stride), "gemm: output view exceeds its slice");
    // SAFETY: the output view was just checked to lie inside its slice, which is borrowed mutably, so no other
    // reference aliases it during the call.
    unsafe { gemm_to_ptr(alpha, a, b, beta, c.data.as_mut_ptr(), c.row_stride, c.col_stride) }
}

/// `C ← alpha·A·B + beta·C` with `C` given as a raw `a.rows × b.cols` block: the one place that calls into
/// `matrixmultiply`. Operand views are bounds-checked here.
///
/// # Safety
/// `c` must be valid for reads and writes of an `a.rows × b.cols` matrix with strides `(rsc, csc)`, and no other
/// thread may access those elements during the call.
pub(crate) unsafe fn gemm_to_ptr<T: Element>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: *mut T,
    rsc: usize,
    csc: usize,
) {
    assert!(a.cols == b.rows, "gemm: dimension mismatch");
    assert!(a.fits() && b.fits(), "gemm: operand view exceeds its slice");
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    // SAFETY: both operand views were just checked to lie inside their slices; the caller upholds the contract
    // on `c` (see above).
    unsafe {
        T::gemm_raw(
            a.rows,
            a.cols,
            b.cols,
            alpha,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            c,
            rsc as isize,
            csc as isize,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_product_with_transposed_views() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![0.0; m * n];
        gemm(1.0, MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), 0.0, MatMut::row_major(&mut c, m, n));
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-12);
        }
        // (Bᵀ Aᵀ)ᵀ = A B: compute into a transposed output view.
        let mut ct = vec![0.0; m * n];
        let out = MatMut { data: &mut ct, rows: n, cols: m, row_stride: 1, col_stride: n };
        gemm(1.0, MatRef::row_major(&b, k, n).t(), MatRef::row_major(&a, m, k).t(), 0.0, out);
        for (x, y) in ct.iter().zip(&want) {
            assert!((x - y).abs() < 1e-12);
        }
    }

    #[test]
    #[should_panic(expected = "exceeds")]
    fn rejects_views_outside_their_slice() {
        let a = vec![0.0f32; 5];
        let b = vec![0.0f32; 6];
        let mut c = vec![0.0f32; 6];
        gemm(1.0, MatRef::row_major(&a, 2, 3), MatRef::row_major(&b, 3, 2), 0.0, MatMut::row_major(&mut c, 2, 3 - 1));
    }
}
