//! How alike two maps are: Spearman's rank correlation and SSIM (scikit-image's `structural_similarity` defaults:
//! a 7×7 uniform window, sample covariances, K1 = 0.01, K2 = 0.03, data range 1 for maps in [0, 1], averaged over the
//! pixels whose window lies inside the map).

use ndarray::Array2;

/// Pearson correlation of two equally long series (0 when either is constant or empty, or their lengths differ).
pub fn pearson(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len() as f64;
    if n == 0.0 || a.len() != b.len() {
        return 0.0;
    }
    let (ma, mb) = (a.iter().map(|&v| v as f64).sum::<f64>() / n, b.iter().map(|&v| v as f64).sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        (sab / (saa * sbb).sqrt()) as f32
    }
}

/// Ranks from 0, ties sharing their average rank (exact in f32 up to 2^24 values).
fn ranks(v: &[f32]) -> Vec<f32> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0f32; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f32 / 2.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (Pearson of average ranks; 0 if either series is constant). Maps compare as their
/// values in row-major order.
pub fn spearman(a: &[f32], b: &[f32]) -> f32 {
    pearson(&ranks(a), &ranks(b))
}

/// Side of SSIM's window.
const WINDOW: usize = 7;

/// SSIM of two maps of the same shape with values in [0, 1] (1 for identical maps); maps smaller than the window
/// compare as one window. Maps of different shapes, or empty ones, give 0.
pub fn ssim(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    let (h, w) = a.dim();
    if a.dim() != b.dim() || h == 0 || w == 0 {
        return 0.0;
    }
    let win = WINDOW.min(h).min(w).max(1);
    let np = (win * win) as f64;
    let cov_norm = if np > 1.0 { np / (np - 1.0) } else { 1.0 };
    let (c1, c2) = ((0.01f64).powi(2), (0.03f64).powi(2));
    let mut total = 0.0;
    let mut count = 0usize;
    for y in 0..=h - win {
        for x in 0..=w - win {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for dy in 0..win {
                for dx in 0..win {
                    let (p, q) = (a[[y + dy, x + dx]] as f64, b[[y + dy, x + dx]] as f64);
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let (ua, ub) = (sa / np, sb / np);
            let va = cov_norm * (saa / np - ua * ua);
            let vb = cov_norm * (sbb / np - ub * ub);
            let vab = cov_norm * (sab / np - ua * ub);
            total += ((2.0 * ua * ub + c1) * (2.0 * vab + c2)) / ((ua * ua + ub * ub + c1) * (va + vb + c2));
            count += 1;
        }
    }
    (total / count.max(1) as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlations_of_known_series() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&a, &[2.0, 4.0, 6.0, 8.0]) - 1.0).abs() < 1e-6);
        assert!((pearson(&a, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-6);
        // Monotone but not linear: Spearman 1, Pearson < 1.
        let b = [1.0, 10.0, 100.0, 1000.0];
        assert!((spearman(&a, &b) - 1.0).abs() < 1e-6 && pearson(&a, &b) < 0.99);
        assert!((spearman(&a, &[-1.0, -2.0, -3.0, -4.0]) + 1.0).abs() < 1e-6);
        assert_eq!(ranks(&[3.0, 1.0, 3.0]), vec![1.5, 0.0, 1.5]);
        assert_eq!(pearson(&a, &[1.0; 4]), 0.0);
    }

    /// Against scikit-image 0.26's `structural_similarity(a, b, data_range=1)` for a = (i·7 + j·3) mod 10 / 10 and
    /// b = its transpose on 9×9 (the value below comes from that call).
    #[test]
    fn ssim_matches_scikit_image() {
        let a = Array2::from_shape_fn((9, 9), |(i, j)| ((i * 7 + j * 3) % 10) as f32 / 10.0);
        let b = a.t().to_owned();
        assert!((ssim(&a, &a) - 1.0).abs() < 1e-6);
        let want = SKIMAGE_SSIM;
        assert!((ssim(&a, &b) - want).abs() < 1e-5, "ssim {} vs scikit-image {want}", ssim(&a, &b));
    }

    const SKIMAGE_SSIM: f32 = -0.335_683_67;
}
