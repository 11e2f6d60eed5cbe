//! A volume `[D, H, W]` laid out as a montage: its slices in a near-square grid, row by row (empty cells black),
//! enlarged by a whole factor so that small slices stay visible. Volume explanations are drawn this way.

use image::{GrayImage, Luma};
use ndarray::{Array2, ArrayView3};

/// The narrowest a montage is drawn (pixels); smaller ones are enlarged by a whole factor.
pub const MIN_MONTAGE_SIDE: usize = 192;

/// `(rows, columns)` of the grid for `depth` slices.
pub fn montage_grid(depth: usize) -> (usize, usize) {
    let cols = (depth as f64).sqrt().ceil().max(1.0) as usize;
    (depth.div_ceil(cols).max(1), cols)
}

/// The whole enlargement factor for a grid `width` pixels wide.
pub fn montage_scale(width: usize) -> usize {
    MIN_MONTAGE_SIDE.div_ceil(width.max(1)).clamp(1, 16)
}

/// The slices of `volume` in the grid of [`montage_grid`], at their own size.
pub fn montage(volume: ArrayView3<'_, f32>) -> Array2<f32> {
    let (d, h, w) = volume.dim();
    let (rows, cols) = montage_grid(d);
    let mut out = Array2::<f32>::zeros((rows * h, cols * w));
    for z in 0..d {
        let (r, c) = (z / cols, z % cols);
        out.slice_mut(ndarray::s![r * h..(r + 1) * h, c * w..(c + 1) * w])
            .assign(&volume.index_axis(ndarray::Axis(0), z));
    }
    out
}

/// `grid` enlarged `scale` times by repeating pixels.
pub fn enlarge(grid: &Array2<f32>, scale: usize) -> Array2<f32> {
    let (h, w) = grid.dim();
    Array2::from_shape_fn((h * scale, w * scale), |(y, x)| grid[[y / scale, x / scale]])
}

/// A grey picture of `grid` (min-max scaled; a flat or non-finite grid is black).
pub fn grey_picture(grid: &Array2<f32>) -> GrayImage {
    let finite = grid.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let span = if hi > lo { hi - lo } else { f32::INFINITY };
    let (h, w) = grid.dim();
    GrayImage::from_fn(w as u32, h as u32, |x, y| {
        let v = grid[[y as usize, x as usize]];
        let t = if v.is_finite() { (v - lo) / span } else { 0.0 };
        Luma([super::to_byte(t * 255.0)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn slices_fill_a_near_square_grid_row_by_row() {
        assert_eq!(montage_grid(1), (1, 1));
        assert_eq!(montage_grid(8), (3, 3));
        assert_eq!(montage_grid(9), (3, 3));
        assert_eq!(montage_grid(10), (3, 4));
        let v = Array3::from_shape_fn((5, 2, 3), |(z, _, _)| z as f32 + 1.0);
        let m = montage(v.view());
        assert_eq!(m.dim(), (2 * 2, 3 * 3), "5 slices: 2 rows of 3");
        assert_eq!(m[[0, 0]], 1.0);
        assert_eq!(m[[0, 3]], 2.0, "second slice to the right");
        assert_eq!(m[[2, 0]], 4.0, "fourth slice starts the second row");
        assert_eq!(m[[3, 8]], 0.0, "the empty sixth cell is black");
        assert_eq!(enlarge(&m, 2).dim(), (8, 18));
        assert_eq!(montage_scale(48), 4);
        assert_eq!(montage_scale(1000), 1);
    }
}
