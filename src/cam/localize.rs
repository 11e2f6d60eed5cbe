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
    let mut label = vec![0u32; h * w];
    let mut next = 0u32;
    let mut largest: (usize, [usize; 4]) = (0, [peak[0], peak[1], peak[0], peak[1]]);
    let mut stack = Vec::new();
    for start in 0..h * w {
        if label[start] != 0 || map[[start / w, start % w]] < cut {
            continue;
        }
        next += 1;
        label[start] = next;
        stack.push(start);
        let (mut size, mut bbox) = (0usize, [usize::MAX, usize::MAX, 0, 0]);
        while let Some(p) = stack.pop() {
            let (y, x) = (p / w, p % w);
            size += 1;
            bbox = [bbox[0].min(x), bbox[1].min(y), bbox[2].max(x), bbox[3].max(y)];
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (ny, nx) = (y as i64 + dy, x as i64 + dx);
                    if ny < 0 || nx < 0 || ny >= h as i64 || nx >= w as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if label[q] == 0 && map[[ny as usize, nx as usize]] >= cut {
                        label[q] = next;
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

    #[test]
    fn empty_map_gives_whole_image() {
        let l = localize(&Array2::zeros((3, 5)));
        assert_eq!(l.bbox, [0, 0, 4, 2]);
    }
}
