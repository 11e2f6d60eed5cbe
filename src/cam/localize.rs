//! Weakly-supervised localization (Grad-CAM paper §4.1): threshold the map at 15 % of its maximum, keep the largest
//! 8-connected component, report its bounding box; plus the peak.

use ndarray::Array2;

/// Where a map points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Localization {
    /// `(x, y)` of the maximum (first in row-major order on ties).
    pub peak: [usize; 2],
    /// `[x0, y0, x1, y1]`, inclusive, of the largest 8-connected component above the threshold.
    pub bbox: [usize; 4],
}

/// Fraction of the maximum above which pixels count as "on".
pub const THRESHOLD: f32 = 0.15;

/// Localizes a `[H, W]` map. An all-zero map gives the whole image as box and `(0, 0)` as peak.
pub fn localize(map: &Array2<f32>) -> Localization {
    let (h, w) = map.dim();
    let mut peak = [0, 0];
    let mut best = f32::NEG_INFINITY;
    for ((y, x), &v) in map.indexed_iter() {
        if v > best {
            best = v;
            peak = [x, y];
        }
    }
    if h == 0 || w == 0 || best <= 0.0 || !best.is_finite() {
        return Localization { peak, bbox: [0, 0, w.saturating_sub(1), h.saturating_sub(1)] };
    }
    let cut = THRESHOLD * best;
    // Pixels a region can still take (at or above the cut, not yet taken), on a grid with a border of one pixel
    // that none can take: a pixel's eight neighbours are fixed offsets, with no bounds to check.
    let stride = w + 2;
    let mut open = vec![false; (h + 2) * stride];
    for (y, row) in map.outer_iter().enumerate() {
        let out = &mut open[(y + 1) * stride + 1..][..w];
        out.iter_mut().zip(row).for_each(|(o, &v)| *o = v >= cut);
    }
    let neighbours = [stride + 1, stride, stride - 1, 1];
    let mut largest: (usize, [usize; 4]) = (0, [peak[0], peak[1], peak[0], peak[1]]);
    let mut stack = Vec::new();
    for (start, &v) in map.iter().enumerate() {
        let at = (start / w + 1) * stride + start % w + 1;
        // A NaN pixel is neither below the cut nor at or above it: it seeds a region (which grows into its open
        // neighbours) but is never reached from one.
        if !open[at] && !v.is_nan() {
            continue;
        }
        open[at] = false;
        stack.push(at);
        let (mut size, mut bbox) = (0usize, [usize::MAX, usize::MAX, 0, 0]);
        while let Some(p) = stack.pop() {
            let (y, x) = (p / stride - 1, p % stride - 1);
            size += 1;
            bbox = [bbox[0].min(x), bbox[1].min(y), bbox[2].max(x), bbox[3].max(y)];
            for d in neighbours {
                for q in [p - d, p + d] {
                    if open[q] {
                        open[q] = false;
                        stack.push(q);
                    }
                }
            }
        }
        if size > largest.0 {
            largest = (size, bbox);
        }
    }
    Localization { peak, bbox: largest.1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_largest_eight_connected_blob() {
        let mut m = Array2::<f32>::zeros((6, 8));
        m[[0, 0]] = 1.0; // small blob holding the peak
        for (y, x) in [(2, 3), (3, 4), (4, 5), (4, 6)] {
            m[[y, x]] = 0.5; // diagonal chain: one 8-connected component
        }
        m[[5, 0]] = 0.1; // below 15 % of the peak
        let l = localize(&m);
        assert_eq!(l.peak, [0, 0]);
        assert_eq!(l.bbox, [3, 2, 6, 4]);
    }

    /// The definition, pixel by pixel: labels grown from each unlabelled pixel not below the cut, in row-major order.
    fn reference(map: &Array2<f32>) -> [usize; 4] {
        let (h, w) = map.dim();
        let best = map.iter().fold(f32::NEG_INFINITY, |b, &v| if v > b { v } else { b });
        let cut = THRESHOLD * best;
        let mut label = Array2::<u32>::zeros((h, w));
        let (mut next, mut largest) = (0, (0, [0; 4]));
        for y0 in 0..h {
            for x0 in 0..w {
                if label[[y0, x0]] != 0 || map[[y0, x0]] < cut {
                    continue;
                }
                next += 1;
                label[[y0, x0]] = next;
                let (mut todo, mut size, mut bbox) = (vec![(y0, x0)], 0, [usize::MAX, usize::MAX, 0, 0]);
                while let Some((y, x)) = todo.pop() {
                    size += 1;
                    bbox = [bbox[0].min(x), bbox[1].min(y), bbox[2].max(x), bbox[3].max(y)];
                    for ny in y.saturating_sub(1)..(y + 2).min(h) {
                        for nx in x.saturating_sub(1)..(x + 2).min(w) {
                            if label[[ny, nx]] == 0 && map[[ny, nx]] >= cut {
                                label[[ny, nx]] = next;
                                todo.push((ny, nx));
                            }
                        }
                    }
                }
                if size > largest.0 {
                    largest = (size, bbox);
                }
            }
        }
        largest.1
    }

    #[test]
    fn boxes_equal_the_pixel_by_pixel_definition() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        for case in 0..300 {
            let (h, w) = (1 + case % 13, 1 + case / 13 % 17);
            // Sparse spots (many small regions, ties between equal sizes), with a NaN now and then.
            let mut map = Array2::from_shape_fn((h, w), |_| if next() < 0.6 { 0.0 } else { next() });
            if case % 7 == 0 {
                map[[case % h, case % w]] = f32::NAN;
            }
            map[[h / 2, w / 2]] = 1.0;
            assert_eq!(localize(&map).bbox, reference(&map), "case {case}: {map:?}");
        }
    }

    #[test]
    fn empty_map_gives_whole_image() {
        let l = localize(&Array2::zeros((3, 5)));
        assert_eq!(l.bbox, [0, 0, 4, 2]);
    }
}
