//! Products of activations with a constant weight matrix held in 16 bits (or f32): a classifier's `Linear` layer and
//! its input gradient with `--weights f16|bf16`.
//!
//! The weight matrix is read once per call, a row (or a run of a row) at a time, widened in registers
//! (`half_vector`) — never as a whole f32 copy (VGG-16's first classifier layer is 411 MB in f32). Two shapes, one per way the matrix is read:
//! - [`matmul_transposed`]: `y = x·Wᵀ` with `W` `[n, k]` (a `Linear` forward): each output is a dot product of an
//!   input row with a weight row.
//! - [`matmul`]: `y = x·W` with `W` `[r, c]` (the `Linear` input gradient, or a `MatMul` forward): each input row
//!   accumulates weight rows scaled by its values.
//!
//! Outputs are split into fixed chunks (independent of the thread count) and every sum runs in a fixed order, so
//! results are bit-identical on any number of threads for a given SIMD level.

use crate::precision::Widen;
use rayon::prelude::*;

/// Output columns per task of [`matmul_transposed`].
const DOT_CHUNK: usize = 16;
/// Output columns per task of [`matmul`] (4 KB runs of each weight row).
const ROW_CHUNK: usize = 1024;

/// `y = x·Wᵀ`: `x` is `[m, k]` row-major, `w` is `[n, k]` row-major; returns `[m, n]`.
///
/// # Panics
/// If the lengths disagree with the dimensions.
pub fn matmul_transposed<W: Widen + ?Sized>(x: &[f32], m: usize, w: &W, n: usize, k: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "stored matmul: input length");
    assert_eq!(w.count(), n * k, "stored matmul: weight length");
    // Column-major while computing ([n, m]: each task owns whole output columns), transposed at the end.
    let mut yt = vec![0.0f32; n * m];
    if m == 0 {
        return yt;
    }
    yt.par_chunks_mut(DOT_CHUNK * m).enumerate().for_each(|(c, cols)| {
        for (jj, col) in cols.chunks_exact_mut(m).enumerate() {
            let j = c * DOT_CHUNK + jj;
            // Weight row j streams from memory once; the m input rows after the first read it from cache.
            for (i, out) in col.iter_mut().enumerate() {
                *out = w.dot_range(j * k, &x[i * k..(i + 1) * k]);
            }
        }
    });
    let mut y = vec![0.0f32; m * n];
    for (j, col) in yt.chunks_exact(m).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            y[i * n + j] = v;
        }
    }
    y
}

/// `y = x·W`: `x` is `[m, r]` row-major, `w` is `[r, c]` row-major; returns `[m, c]`.
///
/// # Panics
/// If the lengths disagree with the dimensions.
pub fn matmul<W: Widen + ?Sized>(x: &[f32], m: usize, w: &W, r: usize, c: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * r, "stored matmul: input length");
    assert_eq!(w.count(), r * c, "stored matmul: weight length");
    let mut y = vec![0.0f32; m * c];
    if m == 0 || c == 0 {
        return y;
    }
    // Tasks own a run of ROW_CHUNK output columns in every row of y: gather them, fill, scatter back.
    let chunks = c.div_ceil(ROW_CHUNK);
    let parts: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|ch| {
            let (j0, len) = (ch * ROW_CHUNK, ROW_CHUNK.min(c - ch * ROW_CHUNK));
            let mut out = vec![0.0f32; m * len];
            // y_i += x_ip · W_p, in order of p: each run of a weight row is read once from memory.
            for p in 0..r {
                for (i, o) in out.chunks_exact_mut(len).enumerate() {
                    w.axpy_range(x[i * r + p], p * c + j0, o);
                }
            }
            out
        })
        .collect();
    for (ch, part) in parts.iter().enumerate() {
        let (j0, len) = (ch * ROW_CHUNK, ROW_CHUNK.min(c - ch * ROW_CHUNK));
        for (i, src) in part.chunks_exact(len).enumerate() {
            y[i * c + j0..i * c + j0 + len].copy_from_slice(src);
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::tests::data_f32 as data;
    use crate::precision::{HalfVec, Precision, Stored};

    /// `x·Wᵀ` and `x·W` in f64 with the rounded weights.
    fn reference(x: &[f32], w: &[f32], m: usize, rows: usize, cols: usize, transposed: bool) -> Vec<f64> {
        if transposed {
            let (n, k) = (rows, cols);
            (0..m)
                .flat_map(|i| (0..n).map(move |j| (i, j)))
                .map(|(i, j)| (0..k).map(|p| x[i * k + p] as f64 * w[j * k + p] as f64).sum())
                .collect()
        } else {
            let (r, c) = (rows, cols);
            (0..m)
                .flat_map(|i| (0..c).map(move |j| (i, j)))
                .map(|(i, j)| (0..r).map(|p| x[i * r + p] as f64 * w[p * c + j] as f64).sum())
                .collect()
        }
    }

    #[test]
    fn both_products_match_f64_with_the_stored_weights() {
        for &(m, rows, cols) in &[(1, 37, 1500), (3, 1030, 19), (5, 7, 2049), (2, 1, 1)] {
            let w = data(rows * cols, 3);
            for precision in [Precision::F32, Precision::F16, Precision::Bf16] {
                let stored = Stored::new(precision, w.clone());
                let effective = match &stored {
                    Stored::F32(v) => v.clone(),
                    Stored::Half(h) => h.to_f32_vec(),
                };
                // The active SIMD level (CI runs the kernel tests once per level, GRADCAM_SIMD).
                {
                    let level = crate::simd::level();
                    for transposed in [true, false] {
                        let inner = if transposed { cols } else { rows };
                        let x = data(m * inner, 4);
                        let got = if transposed {
                            matmul_transposed(&x, m, &stored, rows, cols)
                        } else {
                            matmul(&x, m, &stored, rows, cols)
                        };
                        let want = reference(&x, &effective, m, rows, cols, transposed);
                        assert_eq!(got.len(), want.len());
                        for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                            let tol = 2e-6 * (inner as f64).sqrt() * (1.0 + e.abs());
                            assert!(((g as f64) - e).abs() <= tol, "{precision} {level} t={transposed} at {i}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bit_identical_on_one_and_three_threads() {
        let (m, r, c) = (2, 300, 2500);
        let w = Stored::Half(std::sync::Arc::new(HalfVec::from_f32(Precision::F16, &data(r * c, 5)).unwrap()));
        let x = data(m * r, 6);
        let xt = data(m * c, 7);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| (matmul(&x, m, &w, r, c), matmul_transposed(&xt, m, &w, r, c)))
        };
        assert_eq!(run(1), run(3));
    }
}
