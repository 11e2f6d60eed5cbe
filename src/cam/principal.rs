//! The first principal component of a layer's activations, projected back onto its pixels: Eigen-CAM (Muhammad &
//! Yeasin) and Eigen-Grad-CAM, as pytorch-grad-cam's `get_2d_projection` computes it — pixels as samples, channels
//! as features, centred per channel, projected onto the first right singular vector (SVD in f64 by `nalgebra`).
//!
//! One difference, on purpose: a singular vector's sign is arbitrary (pytorch-grad-cam returns whatever its LAPACK
//! call gives, so its map may come out inverted and then vanish under the final ReLU). Here the sign is chosen so
//! that the map correlates positively with the activations' channel sum `Σ_k A_k` (for Eigen-Grad-CAM too): where
//! the layer is active is positive.

use ndarray::{Array2, ArrayView3};

/// The projection `[H, W]` of `a` (`[C, H, W]`) onto its first principal component, signed to correlate positively
/// with `Σ_k activations_k` (`activations` shaped like `a`). Non-finite values count as 0 (pytorch-grad-cam zeroes
/// NaN). An empty layer, or one whose values are all equal, gives zeros.
pub(crate) fn principal_projection(a: ArrayView3<'_, f32>, activations: ArrayView3<'_, f32>) -> Array2<f32> {
    let (c, h, w) = a.dim();
    let n = h * w;
    let mut out = Array2::zeros((h, w));
    if c == 0 || n == 0 {
        return out;
    }
    // Channel k at pixel p of a `[C, H, W]` layer, non-finite values as 0.
    let at = |t: &ArrayView3<'_, f32>, k: usize, p: usize| {
        let v = t[[k, p / w, p % w]];
        if v.is_finite() {
            v as f64
        } else {
            0.0
        }
    };
    let mut x = nalgebra::DMatrix::<f64>::from_fn(n, c, |p, k| at(&a, k, p));
    for mut column in x.column_iter_mut() {
        let mean = column.mean();
        column.add_scalar_mut(-mean);
    }
    // Right singular vectors only; nalgebra does not sort the singular values.
    let svd = x.clone().svd(false, true);
    let Some(v_t) = svd.v_t.as_ref() else {
        return out;
    };
    let top = (0..svd.singular_values.len())
        .max_by(|&i, &j| svd.singular_values[i].total_cmp(&svd.singular_values[j]).then(j.cmp(&i)))
        .unwrap_or(0);
    if svd.singular_values.get(top).is_none_or(|&s| s <= 0.0) {
        return out;
    }
    let projection = &x * v_t.row(top).transpose();
    let channel_sum = (0..n).map(|p| (0..c).map(|k| at(&activations, k, p)).sum::<f64>());
    let agreement: f64 = projection.iter().zip(channel_sum).map(|(a, b)| a * b).sum();
    let sign = if agreement < 0.0 { -1.0 } else { 1.0 };
    for (o, &v) in out.iter_mut().zip(projection.iter()) {
        *o = (sign * v) as f32;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    /// A layer whose pixels vary along one direction of channel space: the projection recovers that variation
    /// exactly (up to the direction's length), signed like the channel sum.
    #[test]
    fn a_rank_one_layer_projects_onto_its_pattern() {
        let pattern = [3.0f32, -1.0, 0.5, 2.0, -2.5, 1.0];
        let direction = [0.6f32, 0.8, 0.0];
        let a = Array3::from_shape_fn((3, 2, 3), |(k, i, j)| 5.0 + direction[k] * pattern[i * 3 + j]);
        let p = principal_projection(a.view(), a.view());
        let mean = pattern.iter().sum::<f32>() / 6.0;
        // ‖direction‖ = 1: the projection is the centred pattern.
        for (got, want) in p.iter().zip(pattern.iter().map(|v| v - mean)) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        // Negating the channels' variation flips the pattern but the sign rule follows the channel sum.
        let b = Array3::from_shape_fn((3, 2, 3), |(k, i, j)| 5.0 - direction[k] * pattern[i * 3 + j]);
        let q = principal_projection(b.view(), b.view());
        let sum_b: Vec<f32> = (0..6).map(|p| (0..3).map(|k| b[[k, p / 3, p % 3]]).sum()).collect();
        let dot: f32 = q.iter().zip(&sum_b).map(|(x, y)| x * y).sum();
        assert!(dot > 0.0);
    }

    #[test]
    fn empty_constant_and_nan_layers_give_finite_maps() {
        assert_eq!(
            principal_projection(Array3::<f32>::zeros((0, 2, 2)).view(), Array3::<f32>::zeros((0, 2, 2)).view()),
            Array2::<f32>::zeros((2, 2))
        );
        assert_eq!(
            principal_projection(
                Array3::from_elem((4, 3, 3), 2.0f32).view(),
                Array3::from_elem((4, 3, 3), 2.0f32).view()
            ),
            Array2::<f32>::zeros((3, 3))
        );
        let mut a = Array3::from_shape_fn((2, 2, 2), |(k, i, j)| (k + 2 * i + j) as f32);
        a[[0, 0, 0]] = f32::NAN;
        assert!(principal_projection(a.view(), a.view()).iter().all(|v| v.is_finite()));
    }
}
