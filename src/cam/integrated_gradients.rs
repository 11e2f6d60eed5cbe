//! Integrated Gradients (Sundararajan et al., ICML 2017) as Captum defines it: `(x − x') ⊙ Σ_i w_i ∂y/∂x(x' +
//! α_i (x − x'))` with Captum's default quadrature, Gauss–Legendre on [0, 1] (`steps` nodes). The baseline `x'` is a
//! black image (pixel value 0, normalized like the input). The path's points run in batches.

use super::perturb::batched_input_gradients;
use super::target::Objective;
use crate::error::Result;
use crate::graph::Plan;
use crate::models::Model;
use ndarray::{Array3, ArrayView3, Zip};

/// Path points when not given (Captum's default).
pub const DEFAULT_STEPS: usize = 50;

/// Gauss–Legendre nodes and weights on [0, 1] (`numpy.polynomial.legendre.leggauss(n)` mapped as Captum maps it:
/// `α = (1 + x)/2`, `w = w/2`), by Newton's iteration on the Legendre polynomial `P_n` in f64.
pub(crate) fn gauss_legendre(n: usize) -> Vec<(f64, f64)> {
    let mut rule = Vec::with_capacity(n);
    for i in 0..n {
        // Tricomi's first guess for the i-th root, counted from +1.
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut derivative = 1.0;
        for _ in 0..100 {
            // P_n(x) and P_n'(x) by the three-term recurrence.
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let k = k as f64;
                (p0, p1) = (p1, ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k);
            }
            let pn = if n == 0 {
                1.0
            } else if n == 1 {
                x
            } else {
                p1
            };
            let pn_1 = if n == 1 { 1.0 } else { p0 };
            derivative = n as f64 * (x * pn - pn_1) / (x * x - 1.0);
            let step = pn / derivative;
            x -= step;
            if step.abs() < 1e-15 {
                break;
            }
        }
        let w = 2.0 / ((1.0 - x * x) * derivative * derivative);
        rule.push(((1.0 + x) / 2.0, w / 2.0));
    }
    // Ascending nodes, as numpy gives them.
    rule.reverse();
    rule
}

/// The black image in the model's input space: `(0 − mean_c) / std_c` in every pixel of channel c (channels beyond
/// three reuse the statistics cyclically, as [`crate::input::Normalization::apply`] does).
pub(crate) fn black_baseline(model: &Model, shape: &[usize]) -> Array3<f32> {
    let dims = (shape[0], shape[1], shape[2]);
    if model.is_signal() || model.volume_depth().is_some() {
        // Signals and volumes are fed as they are: their "nothing" is zero (Captum's default baseline).
        return Array3::zeros(dims);
    }
    let n = &model.normalization;
    Array3::from_shape_fn(dims, |(c, _, _)| -n.mean[c % 3] / n.std[c % 3])
}

/// Integrated Gradients of each objective for one image `[C, H, W]` from `baseline`; `plan` differentiates the
/// logits with respect to the input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn integrated_gradients(
    model: &Model,
    plan: &Plan,
    image: ArrayView3<'_, f32>,
    baseline: ArrayView3<'_, f32>,
    objectives: &[Objective],
    sign: f32,
    steps: usize,
    batch: usize,
) -> Result<Vec<Array3<f32>>> {
    let rule = gauss_legendre(steps);
    let delta = &image - &baseline;
    let mut sums = vec![Array3::<f32>::zeros(image.raw_dim()); objectives.len()];
    batched_input_gradients(
        model,
        plan,
        image,
        steps,
        batch,
        objectives,
        sign,
        |k, mut copy| {
            let alpha = rule[k].0 as f32;
            Zip::from(&mut copy).and(&baseline).and(&delta).for_each(|v, &b, &d| *v = b + alpha * d);
        },
        |k, j, g| {
            let w = rule[k].1 as f32;
            Zip::from(&mut sums[j]).and(&g).for_each(|acc, &g| *acc += w * g);
        },
    )?;
    Ok(sums.into_iter().map(|s| s * &delta).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        for n in [1, 2, 5, 50] {
            let rule = gauss_legendre(n);
            assert_eq!(rule.len(), n);
            assert!(rule.windows(2).all(|w| w[0].0 < w[1].0), "ascending nodes");
            // ∫₀¹ x^k dx = 1/(k+1), exact for k ≤ 2n − 1.
            for k in 0..(2 * n).min(12) {
                let q: f64 = rule.iter().map(|&(x, w)| w * x.powi(k as i32)).sum();
                assert!((q - 1.0 / (k as f64 + 1.0)).abs() < 1e-12, "n={n} k={k}: {q}");
            }
        }
    }

    #[test]
    fn two_point_rule_matches_numpy() {
        // leggauss(2): x = ∓1/√3, w = 1.
        let rule = gauss_legendre(2);
        let x = 1.0 / 3f64.sqrt();
        assert!((rule[0].0 - (1.0 - x) / 2.0).abs() < 1e-15 && (rule[1].0 - (1.0 + x) / 2.0).abs() < 1e-15);
        assert!((rule[0].1 - 0.5).abs() < 1e-15 && (rule[1].1 - 0.5).abs() < 1e-15);
    }
}
