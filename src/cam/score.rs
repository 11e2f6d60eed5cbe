//! Score-CAM (Wang et al., CVPR-W 2020), as pytorch-grad-cam 1.5.7 computes it: each channel of the activation,
//! upsampled to the input size (bilinear, corners aligned) and min-max scaled to [0, 1], masks the input; the
//! channel's weight is the softmax over channels of the class score on its masked input. No gradient: one forward
//! pass per channel, run in batches; every class is scored from the same passes.

use super::perturb::batched_scores;
use super::target::Objective;
use crate::error::Result;
use crate::graph::Plan;
use crate::models::Model;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayView3, Axis};

/// Source rows (or columns) and weights of a bilinear resize with corners aligned (PyTorch's
/// `UpsamplingBilinear2d`), computed in f32 like PyTorch's CPU kernel.
fn aligned_taps(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = if output > 1 { (input as f32 - 1.0) / (output as f32 - 1.0) } else { 0.0 };
    (0..output)
        .map(|o| {
            let src = scale * o as f32;
            let i0 = (src as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// One channel as a mask at `[out_h, out_w]`: upsampled with corners aligned, then `(u − min) / (max − min + 1e-8)`.
pub(crate) fn channel_mask(plane: ArrayView2<'_, f32>, out_h: usize, out_w: usize) -> Array2<f32> {
    let (h, w) = plane.dim();
    if h == 0 || w == 0 {
        return Array2::zeros((out_h, out_w));
    }
    let (ty, tx) = (aligned_taps(h, out_h), aligned_taps(w, out_w));
    let up = Array2::from_shape_fn((out_h, out_w), |(oy, ox)| {
        let (y0, y1, fy) = ty[oy];
        let (x0, x1, fx) = tx[ox];
        (1.0 - fy) * ((1.0 - fx) * plane[[y0, x0]] + fx * plane[[y0, x1]])
            + fy * ((1.0 - fx) * plane[[y1, x0]] + fx * plane[[y1, x1]])
    });
    let min = up.iter().copied().fold(f32::INFINITY, f32::min);
    let max = up.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    up.mapv(|v| (v - min) / (max - min + 1e-8))
}

/// Each objective's score on each channel's masked input: `[C, objectives]`. `image` is one preprocessed input
/// `[3, H, W]`, `activation` the layer's value for it `[C, h, w]`; `plan` is a forward-only plan keeping the output.
pub(crate) fn masked_scores(
    model: &Model,
    plan: &Plan,
    image: ArrayView3<'_, f32>,
    activation: ArrayView3<'_, f32>,
    depths: Option<(usize, usize)>,
    objectives: &[Objective],
    batch: usize,
) -> Result<Array2<f32>> {
    let (in_h, in_w) = (image.shape()[1], image.shape()[2]);
    let image = image.into_dyn();
    let channels = activation.shape()[0];
    batched_scores(model, plan, &[(&model.input, image)], channels, batch, objectives, |k, mut copy| {
        let plane = activation.index_axis(Axis(0), k);
        let mask = match depths {
            Some((layer, input)) => volume_mask(plane, layer, input, in_h / input.max(1), in_w),
            None => channel_mask(plane, in_h, in_w),
        };
        for mut channel in copy.axis_iter_mut(Axis(0)) {
            channel *= &mask;
        }
    })
}

/// [`channel_mask`] of a volume channel held as stacked slices (`[d·h, w]` of `layer` slices): upsampled
/// trilinearly with aligned corners (the 3-D form of `UpsamplingBilinear2d`) to `input` slices of `out_h × out_w`,
/// min-max scaled, stacked again (`[input·out_h, out_w]`).
pub(crate) fn volume_mask(
    stacked: ArrayView2<'_, f32>,
    layer: usize,
    input: usize,
    out_h: usize,
    out_w: usize,
) -> Array2<f32> {
    let (rows, w) = stacked.dim();
    let h = rows / layer.max(1);
    if h == 0 || w == 0 || layer == 0 {
        return Array2::zeros((input * out_h, out_w));
    }
    let (tz, ty, tx) = (aligned_taps(layer, input), aligned_taps(h, out_h), aligned_taps(w, out_w));
    let at = |z: usize, y: usize, x: usize| stacked[[z * h + y, x]];
    let up = Array2::from_shape_fn((input * out_h, out_w), |(r, ox)| {
        let (oz, oy) = (r / out_h, r % out_h);
        let ((z0, z1, fz), (y0, y1, fy), (x0, x1, fx)) = (tz[oz], ty[oy], tx[ox]);
        let plane = |z: usize| {
            (1.0 - fy) * ((1.0 - fx) * at(z, y0, x0) + fx * at(z, y0, x1))
                + fy * ((1.0 - fx) * at(z, y1, x0) + fx * at(z, y1, x1))
        };
        (1.0 - fz) * plane(z0) + fz * plane(z1)
    });
    let min = up.iter().copied().fold(f32::INFINITY, f32::min);
    let max = up.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    up.mapv(|v| (v - min) / (max - min + 1e-8))
}

/// The channel weights from one objective's scores (a column of [`masked_scores`]): their softmax over channels
/// (negated first for a counterfactual map: the channels whose regions speak against the class).
pub(crate) fn weights(scores: ArrayView1<'_, f32>, sign: f32) -> Vec<f32> {
    let signed: Vec<f32> = scores.iter().map(|&s| sign * s).collect();
    crate::tensor::softmax_row(&signed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    #[test]
    fn masks_upsample_with_aligned_corners_and_span_zero_to_one() {
        let m = channel_mask(arr2(&[[0.0f32, 2.0], [4.0, 6.0]]).view(), 3, 3);
        // Corners are the source corners; the centre is their mean; then scaled by the range 6.
        let want = [[0.0, 1.0, 2.0], [2.0, 3.0, 4.0], [4.0, 5.0, 6.0]];
        for i in 0..3 {
            for j in 0..3 {
                assert!((m[[i, j]] - want[i][j] / 6.0).abs() < 1e-6, "{i},{j}: {}", m[[i, j]]);
            }
        }
    }

    #[test]
    fn a_flat_channel_masks_everything_out() {
        let m = channel_mask(Array2::from_elem((2, 2), 3.0f32).view(), 4, 4);
        assert!(m.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn weights_are_a_softmax_over_channels() {
        let scores = ndarray::arr1(&[1.0f32, 3.0]);
        let w = weights(scores.view(), 1.0);
        let e = (2.0f32).exp();
        assert!((w[0] - 1.0 / (1.0 + e)).abs() < 1e-6 && (w[1] - e / (1.0 + e)).abs() < 1e-6);
        let against = weights(scores.view(), -1.0);
        assert!(against[0] > against[1]);
    }
}
