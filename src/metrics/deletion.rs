//! Deletion and insertion (Petsiuk et al., RISE, BMVC 2018): the pixels are removed from the image (deletion: set
//! to 0 in the model's input space, RISE's zero substrate) or added to a blurred copy (insertion), most important
//! first by the map, in `steps` equal steps; the score after each step traces a curve whose area (trapezoid rule,
//! x from 0 to 1) is the metric. A faithful map has a low deletion area and a high insertion area.

use super::{check_map, Scorer};
use crate::error::{Error, Result};
use ndarray::{Array2, Array3, ArrayView3, Axis};

/// Steps when not given: each removes or adds 1 % of the pixels.
pub const DEFAULT_STEPS: usize = 100;

/// RISE's blur for the insertion substrate: a Gaussian of σ = 5 over 11 taps, zero beyond the border.
const BLUR_SIGMA: f64 = 5.0;
const BLUR_TAPS: usize = 11;

/// The two curves of one image, class and map, and their areas.
#[derive(Clone, Debug, PartialEq)]
pub struct DeletionInsertion {
    /// Scores after 0, 1, …, `steps` deletion steps.
    pub deletion_curve: Vec<f32>,
    pub insertion_curve: Vec<f32>,
    pub deletion_auc: f32,
    pub insertion_auc: f32,
}

/// The area under a curve sampled at equal steps over [0, 1] (trapezoid rule).
fn auc(curve: &[f32]) -> f32 {
    if curve.len() < 2 {
        return curve.first().copied().unwrap_or(0.0);
    }
    let inner: f64 =
        curve.iter().map(|&v| v as f64).sum::<f64>() - (curve[0] as f64 + curve[curve.len() - 1] as f64) / 2.0;
    (inner / (curve.len() - 1) as f64) as f32
}

/// Each channel blurred with a normalized Gaussian (σ = 5, 11 taps, separable, zeros beyond the border).
pub fn gaussian_blur(image: ArrayView3<'_, f32>) -> Array3<f32> {
    let half = (BLUR_TAPS / 2) as isize;
    let weights: Vec<f64> = (-half..=half).map(|d| (-(d * d) as f64 / (2.0 * BLUR_SIGMA * BLUR_SIGMA)).exp()).collect();
    let total: f64 = weights.iter().sum();
    let weights: Vec<f32> = weights.iter().map(|w| (w / total) as f32).collect();
    let rows = blur_along(image, &weights, 2);
    blur_along(rows.view(), &weights, 1)
}

/// `image` convolved with `weights` (centred) along `axis`, zeros beyond the border.
fn blur_along(image: ArrayView3<'_, f32>, weights: &[f32], axis: usize) -> Array3<f32> {
    let half = (weights.len() / 2) as isize;
    let len = image.len_of(Axis(axis)) as isize;
    Array3::from_shape_fn(image.raw_dim(), |(c, y, x)| {
        let at = if axis == 2 { x } else { y } as isize;
        let mut s = 0.0;
        for (t, &k) in weights.iter().enumerate() {
            let j = at + t as isize - half;
            if (0..len).contains(&j) {
                s += k * if axis == 2 { image[[c, y, j as usize]] } else { image[[c, j as usize, x]] };
            }
        }
        s
    })
}

/// Pixel indices (row-major) from the map's largest value to its smallest (ties: lower index first).
fn order(map: &Array2<f32>) -> Vec<usize> {
    let flat: Vec<f32> = map.iter().map(|&v| if v.is_nan() { f32::NEG_INFINITY } else { v }).collect();
    let mut idx: Vec<usize> = (0..flat.len()).collect();
    idx.sort_by(|&a, &b| flat[b].total_cmp(&flat[a]).then(a.cmp(&b)));
    idx
}

/// Deletion and insertion curves of `class` for `image` `[C, H, W]` and `map` `[H, W]`, in `steps` steps.
pub fn deletion_insertion(
    scorer: &Scorer<'_>,
    image: ArrayView3<'_, f32>,
    map: &Array2<f32>,
    class: usize,
    steps: usize,
) -> Result<DeletionInsertion> {
    check_map(image, map)?;
    if steps == 0 || steps > crate::cam::MAX_COPIES {
        return Err(Error::InvalidArgument {
            name: "steps",
            why: format!("steps must be in 1..={}, got {steps}", crate::cam::MAX_COPIES),
        });
    }
    let pixels = map.len();
    let width = map.dim().1;
    let ranked = order(map);
    // Copy k has the first ⌊k·n/steps⌋ ranked pixels changed.
    let changed = |k: usize| k * pixels / steps;
    let blurred = gaussian_blur(image);
    let curve = |from: &Array3<f32>, to: &Array3<f32>| {
        scorer.scores(steps + 1, class, |k| {
            let mut copy = from.clone();
            for &p in &ranked[..changed(k)] {
                let (y, x) = (p / width, p % width);
                for ch in 0..copy.len_of(Axis(0)) {
                    copy[[ch, y, x]] = to[[ch, y, x]];
                }
            }
            copy
        })
    };
    let original = image.to_owned();
    let deletion_curve = curve(&original, &Array3::zeros(original.raw_dim()))?;
    let insertion_curve = curve(&blurred, &original)?;
    Ok(DeletionInsertion {
        deletion_auc: auc(&deletion_curve),
        insertion_auc: auc(&insertion_curve),
        deletion_curve,
        insertion_curve,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    #[test]
    fn trapezoid_area() {
        assert!((auc(&[1.0, 0.0]) - 0.5).abs() < 1e-6);
        assert!((auc(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-6);
        assert!((auc(&[0.0, 1.0, 0.0]) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn pixels_are_ranked_from_the_largest_value() {
        assert_eq!(order(&arr2(&[[0.1, 0.9], [0.5, 0.9]])), vec![1, 3, 2, 0]);
    }

    #[test]
    fn blur_keeps_a_constant_inside_and_fades_at_the_border() {
        let img = Array3::from_elem((1, 21, 21), 1.0f32);
        let b = gaussian_blur(img.view());
        assert!((b[[0, 10, 10]] - 1.0).abs() < 1e-5);
        assert!(b[[0, 0, 0]] < 0.5 && b[[0, 0, 0]] > 0.2);
    }
}
