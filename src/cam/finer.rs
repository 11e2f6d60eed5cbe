//! Finer-CAM's target (pytorch-grad-cam's `FinerCAM` with its `FinerWeightedTarget`): explain what separates a class
//! from the classes the model finds most similar — the three whose logits lie nearest — by following the gradient
//! of `T = Σ_j p_j·(z_c − α·z_j) / (Σ_j p_j + 1e-9)` over those classes `j`, with `p = softmax(z)` (the weights
//! are differentiated too, as autograd does there).

/// How many nearest classes are compared (pytorch-grad-cam's default `comparison_categories = [1, 2, 3]`).
const COMPARED: usize = 3;

/// The weight of the comparison classes' logits (pytorch-grad-cam's default `alpha`).
const ALPHA: f64 = 1.0;

/// The classes nearest to `c` by logit, nearest first (ties by index), at most [`COMPARED`].
pub(crate) fn nearest_classes(z: &[f32], c: usize) -> Vec<usize> {
    let mut others: Vec<usize> = (0..z.len()).filter(|&j| j != c).collect();
    let gap = |j: usize| (z[j] as f64 - z[c] as f64).abs();
    others.sort_by(|&a, &b| gap(a).total_cmp(&gap(b)).then(a.cmp(&b)));
    others.truncate(COMPARED);
    others
}

/// `∂T/∂z` for class `c` of logits `z` (the seed of the backward pass).
pub(crate) fn seed(z: &[f32], c: usize) -> Vec<f32> {
    let zf: Vec<f64> = z.iter().map(|&v| v as f64).collect();
    let p = crate::tensor::softmax_row_f64(z);
    let compared = nearest_classes(z, c);
    let gap = |j: usize| zf[c] - ALPHA * zf[j];
    let n: f64 = compared.iter().map(|&j| p[j] * gap(j)).sum();
    let sum_w: f64 = compared.iter().map(|&j| p[j]).sum();
    let d = sum_w + 1e-9;
    (0..z.len())
        .map(|k| {
            let in_set = compared.contains(&k);
            // ∂p_j/∂z_k = p_j·(δ_jk − p_k).
            let dn = if in_set { p[k] * gap(k) } else { 0.0 } - p[k] * n + if k == c { sum_w } else { 0.0 }
                - if in_set { ALPHA * p[k] } else { 0.0 };
            let dd = if in_set { p[k] } else { 0.0 } - p[k] * sum_w;
            ((dn * d - n * dd) / (d * d)) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(z: &[f64], c: usize, compared: &[usize]) -> f64 {
        let top = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - top).exp()).collect();
        let total: f64 = e.iter().sum();
        let n: f64 = compared.iter().map(|&j| e[j] / total * (z[c] - ALPHA * z[j])).sum();
        let d: f64 = compared.iter().map(|&j| e[j] / total).sum::<f64>() + 1e-9;
        n / d
    }

    /// The seed is the gradient of the target: central differences in f64.
    #[test]
    fn seed_is_the_targets_gradient() {
        let z = [1.5f32, -0.25, 1.0, 2.0, 0.5, 1.25, -1.0];
        for c in [3, 0, 6] {
            let compared = nearest_classes(&z, c);
            assert_eq!(compared.len(), 3);
            assert!(!compared.contains(&c));
            let got = seed(&z, c);
            let zf: Vec<f64> = z.iter().map(|&v| v as f64).collect();
            for k in 0..z.len() {
                let h = 1e-6;
                let (mut up, mut down) = (zf.clone(), zf.clone());
                up[k] += h;
                down[k] -= h;
                let want = (target(&up, c, &compared) - target(&down, c, &compared)) / (2.0 * h);
                assert!((got[k] as f64 - want).abs() < 1e-5, "class {c}, logit {k}: {} vs {want}", got[k]);
            }
        }
        assert_eq!(nearest_classes(&z, 3), [0, 5, 2]);
    }
}
