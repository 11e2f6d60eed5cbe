//! From raw maps to displayable ones, as pytorch-grad-cam does: ReLU, min-max scaling, bilinear resizing with
//! half-pixel centres (cv2.resize INTER_LINEAR / PyTorch `align_corners=False`), averaging over layers.

use ndarray::{Array2, Array3, Axis};

/// `(x − min) / (max − min + 1e-7)`: a flat map becomes zeros, never NaN.
pub fn minmax(x: &Array2<f32>) -> Array2<f32> {
    let min = x.iter().cloned().fold(f32::INFINITY, f32::min);
    let max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    if !min.is_finite() || !max.is_finite() {
        return Array2::zeros(x.raw_dim());
    }
    x.mapv(|v| (v - min) / (max - min + 1e-7))
}

/// Source index and weight pairs for resizing one axis with half-pixel centres, clamped at the borders: the
/// Resize op's own (ONNX `half_pixel`, linear).
fn taps(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    crate::ops::Resize::half_pixel_linear_taps(input, output)
        .into_iter()
        .map(|(i0, i1, w)| (i0, i1, w as f32))
        .collect()
}

/// Bilinear resize of a `[H, W]` map to `[out_h, out_w]`.
pub fn resize_bilinear(x: &Array2<f32>, out_h: usize, out_w: usize) -> Array2<f32> {
    let (h, w) = x.dim();
    if h == 0 || w == 0 {
        return Array2::zeros((out_h, out_w));
    }
    let (ty, tx) = (taps(h, out_h), taps(w, out_w));
    // Each source row resized across first (the `top` / `bottom` rows of every output row: the same operations,
    // computed once per source row instead of once per output pixel), then the rows blended.
    let across: Vec<Vec<f32>> = x
        .rows()
        .into_iter()
        .map(|row| tx.iter().map(|&(x0, x1, fx)| row[x0] * (1.0 - fx) + row[x1] * fx).collect())
        .collect();
    let mut out = Array2::zeros((out_h, out_w));
    for (mut dst, &(y0, y1, fy)) in out.rows_mut().into_iter().zip(&ty) {
        for ((d, &top), &bottom) in dst.iter_mut().zip(&across[y0]).zip(&across[y1]) {
            *d = top * (1.0 - fy) + bottom * fy;
        }
    }
    out
}

/// Bilinear resize of every channel of a `[C, H, W]` array.
pub fn resize_channels(x: &Array3<f32>, out_h: usize, out_w: usize) -> Array3<f32> {
    let planes: Vec<Array2<f32>> = x.axis_iter(Axis(0)).map(|p| resize_bilinear(&p.to_owned(), out_h, out_w)).collect();
    let views: Vec<_> = planes.iter().map(|p| p.view()).collect();
    ndarray::stack(Axis(0), &views).expect("equal shapes")
}

/// One layer's contribution: `resize(minmax(ReLU(raw)))` (pytorch-grad-cam's `scale_cam_image`).
pub fn scale_layer_map(raw: &Array2<f32>, out_h: usize, out_w: usize) -> Array2<f32> {
    resize_bilinear(&minmax(&raw.mapv(|v| v.max(0.0))), out_h, out_w)
}

/// Trilinear resize of a volume `[D, H, W]` (half-pixel centres: PyTorch's `interpolate(mode="trilinear",
/// align_corners=False)`, what torchcam upsamples 3-D maps with): bilinear within each slice, then linear across
/// slices.
pub fn resize_trilinear(x: &Array3<f32>, out_d: usize, out_h: usize, out_w: usize) -> Array3<f32> {
    let d = x.dim().0;
    if d == 0 || x.is_empty() {
        return Array3::zeros((out_d, out_h, out_w));
    }
    let planes: Vec<Array2<f32>> = x.axis_iter(Axis(0)).map(|p| resize_bilinear(&p.to_owned(), out_h, out_w)).collect();
    let tz = taps(d, out_d);
    let mut out = Array3::<f32>::zeros((out_d, out_h, out_w));
    for (oz, mut slice) in out.axis_iter_mut(Axis(0)).enumerate() {
        let (z0, z1, fz) = tz[oz];
        slice.assign(&(&planes[z0] * (1.0 - fz) + &planes[z1] * fz));
    }
    out
}

/// One volume layer's contribution, on maps held as stacked slices (`[d·h, w]` → `[D·H, W]`):
/// `resize_trilinear(minmax(ReLU(raw)))`.
pub fn scale_volume_map(raw: &Array2<f32>, depth: usize, out_d: usize, out_h: usize, out_w: usize) -> Array2<f32> {
    let (rows, w) = raw.dim();
    let h = rows / depth.max(1);
    let scaled = minmax(&raw.mapv(|v| v.max(0.0)));
    let volume = scaled.into_shape_with_order((depth, h, w)).expect("stacked slices");
    resize_trilinear(&volume, out_d, out_h, out_w).into_shape_with_order((out_d * out_h, out_w)).expect("same size")
}

/// The final map: ReLU, mean over layers, min-max (pytorch-grad-cam's `aggregate_multi_layers`).
pub fn aggregate(layer_maps: &[Array2<f32>]) -> Array2<f32> {
    let mut sum = Array2::<f32>::zeros(layer_maps[0].raw_dim());
    for m in layer_maps {
        sum += &m.mapv(|v| v.max(0.0));
    }
    minmax(&(sum / layer_maps.len() as f32))
}

/// A gradient image `[C, H, W]` as RGB in [0, 1] for display (pytorch-grad-cam's `deprocess_image`: centre,
/// divide by the standard deviation, ×0.1, +0.5, clip).
pub fn deprocess(x: &Array3<f32>) -> Array3<f32> {
    let n = x.len().max(1) as f32;
    let mean = x.sum() / n;
    let std = (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n).sqrt();
    x.mapv(|v| (((v - mean) / (std + 1e-5)) * 0.1 + 0.5).clamp(0.0, 1.0))
}

/// Saliency-style map of a gradient image: `max_c |x|`, min-max scaled (Simonyan et al.).
pub fn magnitude_map(x: &Array3<f32>) -> Array2<f32> {
    minmax(&x.map_axis(Axis(0), |px| px.iter().fold(0f32, |m, v| m.max(v.abs()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    #[test]
    fn trilinear_matches_bilinear_within_slices_and_interpolates_across_them() {
        // Two slices: all 0 and all 1. Doubled in depth with half-pixel centres: 0, 0.25, 0.75, 1.
        let x = Array3::from_shape_fn((2, 2, 3), |(z, _, _)| z as f32);
        let y = resize_trilinear(&x, 4, 3, 5);
        let means: Vec<f32> = y.axis_iter(Axis(0)).map(|s| s.mean().unwrap()).collect();
        assert_eq!(means, [0.0, 0.25, 0.75, 1.0]);
        // One slice: exactly the bilinear resize.
        let one = Array3::from_shape_fn((1, 3, 3), |(_, y, x)| (y * 3 + x) as f32);
        let want = resize_bilinear(&one.index_axis(Axis(0), 0).to_owned(), 5, 4);
        assert_eq!(resize_trilinear(&one, 1, 5, 4).index_axis(Axis(0), 0), want);
    }

    #[test]
    fn flat_and_negative_maps_become_zeros() {
        let flat = Array2::from_elem((3, 3), 5.0f32);
        assert!(minmax(&flat).iter().all(|&v| v == 0.0));
        let neg = Array2::from_elem((2, 2), -1.0f32);
        let m = scale_layer_map(&neg, 4, 4);
        assert!(m.iter().all(|&v| v == 0.0));
        assert!(aggregate(&[m]).iter().all(|&v| v == 0.0 && !v.is_nan()));
    }

    #[test]
    fn resize_uses_half_pixel_centres() {
        // 2 → 4: output centres map to -0.25, 0.25, 0.75, 1.25 → clamped, 0.25, 0.75, clamped.
        let x = arr2(&[[0.0f32, 1.0]]);
        let r = resize_bilinear(&x, 1, 4);
        assert_eq!(r, arr2(&[[0.0, 0.25, 0.75, 1.0]]));
        // Identity when sizes agree.
        let y = arr2(&[[1.0f32, 2.0], [3.0, 4.0]]);
        assert_eq!(resize_bilinear(&y, 2, 2), y);
    }
}
