//! How alike two maps are: Spearman's rank correlation and SSIM (scikit-image's `structural_similarity` defaults:
//! a 7×7 uniform window, sample covariances, K1 = 0.01, K2 = 0.03, data range 1 for maps in [0, 1], averaged over the
//! pixels whose window lies inside the map).

use ndarray::Array2;

/// Ranks from 1, ties given their mean rank.
fn ranks(values: &[f32]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut r = vec![0.0; values.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && values[idx[j + 1]] == values[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f32 {
    let n = a.len().max(1) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        return 0.0;
    }
    (sab / (saa * sbb).sqrt()) as f32
}

/// Spearman's rank correlation of two maps of the same shape (0 if either is constant).
pub fn spearman(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    let (a, b): (Vec<f32>, Vec<f32>) = (a.iter().copied().collect(), b.iter().copied().collect());
    pearson(&ranks(&a), &ranks(&b))
}

/// Side of SSIM's window.
const WINDOW: usize = 7;

/// SSIM of two maps of the same shape with values in [0, 1] (1 for identical maps); maps smaller than the window
/// compare as one window.
pub fn ssim(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    let (h, w) = a.dim();
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
    use ndarray::arr2;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn spearman_of_monotone_and_reversed_maps() {
        let a = arr2(&[[0.1f32, 0.5], [0.2, 0.9]]);
        assert!((spearman(&a, &a.mapv(|v| v * v)) - 1.0).abs() < 1e-6);
        assert!((spearman(&a, &a.mapv(|v| -v)) + 1.0).abs() < 1e-6);
        assert_eq!(spearman(&a, &Array2::zeros((2, 2))), 0.0);
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
