//! Localization against annotated boxes, in the image's pixels: the pointing game (Zhang et al., ECCV 2016: a hit if
//! the map's peak lies in a box, with 15 px of tolerance), energy-based pointing (Wang et al., Score-CAM: the share
//! of the map's mass inside the boxes) and the IoU of the Grad-CAM paper's localization box (the largest region
//! above 15 % of the peak) with the best-matching box.

use crate::cam::localize;
use ndarray::Array2;

/// A box `[x0, y0, x1, y1]` in image pixels (inclusive corners, as `gradcam explain` reports them).
pub type BoxXyxy = [f32; 4];

/// The pointing game's tolerance, in image pixels.
pub const POINTING_TOLERANCE: f32 = 15.0;

/// Image pixels per map pixel along x and y.
fn scale(map: &Array2<f32>, image_size: [u32; 2]) -> (f32, f32) {
    let (h, w) = map.dim();
    (image_size[0] as f32 / w.max(1) as f32, image_size[1] as f32 / h.max(1) as f32)
}

/// Whether the map's peak (its pixel's centre, in image pixels) lies within `tolerance` pixels of a box.
pub fn pointing_hit(map: &Array2<f32>, image_size: [u32; 2], boxes: &[BoxXyxy], tolerance: f32) -> bool {
    let loc = localize(map);
    let (sx, sy) = scale(map, image_size);
    let (px, py) = ((loc.peak[0] as f32 + 0.5) * sx, (loc.peak[1] as f32 + 0.5) * sy);
    boxes.iter().any(|b| {
        let dx = (b[0] - px).max(0.0).max(px - (b[2] + 1.0));
        let dy = (b[1] - py).max(0.0).max(py - (b[3] + 1.0));
        (dx * dx + dy * dy).sqrt() <= tolerance
    })
}

/// The share of the map's mass whose pixel centres (in image pixels) fall inside any box; 0 for an empty map.
pub fn energy_pointing(map: &Array2<f32>, image_size: [u32; 2], boxes: &[BoxXyxy]) -> f32 {
    let (sx, sy) = scale(map, image_size);
    let (mut inside, mut total) = (0f64, 0f64);
    for ((y, x), &v) in map.indexed_iter() {
        let v = v.max(0.0) as f64;
        total += v;
        let (cx, cy) = ((x as f32 + 0.5) * sx, (y as f32 + 0.5) * sy);
        if boxes.iter().any(|b| cx >= b[0] && cx <= b[2] + 1.0 && cy >= b[1] && cy <= b[3] + 1.0) {
            inside += v;
        }
    }
    if total > 0.0 {
        (inside / total) as f32
    } else {
        0.0
    }
}

/// Intersection over union of two boxes with inclusive pixel corners.
pub fn iou(a: BoxXyxy, b: BoxXyxy) -> f32 {
    let area = |b: BoxXyxy| (b[2] - b[0] + 1.0).max(0.0) * (b[3] - b[1] + 1.0).max(0.0);
    let inter = [a[0].max(b[0]), a[1].max(b[1]), a[2].min(b[2]), a[3].min(b[3])];
    let i = if inter[2] >= inter[0] && inter[3] >= inter[1] { area(inter) } else { 0.0 };
    let union = area(a) + area(b) - i;
    if union > 0.0 {
        i / union
    } else {
        0.0
    }
}

/// The IoU of the map's localization box (scaled to image pixels) with the box it overlaps most.
pub fn localization_iou(map: &Array2<f32>, image_size: [u32; 2], boxes: &[BoxXyxy]) -> f32 {
    let b = localize(map).bbox;
    let (sx, sy) = scale(map, image_size);
    let ours = [b[0] as f32 * sx, b[1] as f32 * sy, (b[2] + 1) as f32 * sx - 1.0, (b[3] + 1) as f32 * sy - 1.0];
    boxes.iter().map(|&g| iou(ours, g)).fold(0.0, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spot(h: usize, w: usize, y: usize, x: usize) -> Array2<f32> {
        let mut m = Array2::zeros((h, w));
        m[[y, x]] = 1.0;
        m
    }

    #[test]
    fn the_peak_hits_a_box_within_the_tolerance() {
        // A 10×10 map of a 100×100 image: the peak at map (2, 3) is image pixel centre (25, 35).
        let m = spot(10, 10, 3, 2);
        assert!(pointing_hit(&m, [100, 100], &[[20.0, 30.0, 30.0, 40.0]], 0.0));
        assert!(!pointing_hit(&m, [100, 100], &[[50.0, 50.0, 60.0, 60.0]], POINTING_TOLERANCE));
        assert!(pointing_hit(&m, [100, 100], &[[36.0, 30.0, 60.0, 40.0]], POINTING_TOLERANCE));
    }

    #[test]
    fn energy_inside_boxes_and_iou() {
        let mut m = Array2::zeros((4, 4));
        m[[0, 0]] = 3.0;
        m[[3, 3]] = 1.0;
        assert!((energy_pointing(&m, [4, 4], &[[0.0, 0.0, 1.0, 1.0]]) - 0.75).abs() < 1e-6);
        assert_eq!(energy_pointing(&Array2::zeros((2, 2)), [2, 2], &[[0.0, 0.0, 1.0, 1.0]]), 0.0);
        assert!((iou([0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 3.0, 0.0]) - 2.0 / 6.0).abs() < 1e-6);
        assert_eq!(iou([0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0]), 0.0);
        // The map's box is its top-left quarter: IoU 1 with that box in a 40×40 image.
        let mut q = Array2::zeros((4, 4));
        q.slice_mut(ndarray::s![..2, ..2]).fill(1.0);
        assert!((localization_iou(&q, [40, 40], &[[0.0, 0.0, 19.0, 19.0]]) - 1.0).abs() < 1e-6);
    }
}
