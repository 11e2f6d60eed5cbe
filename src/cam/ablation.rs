//! Ablation-CAM (Desai & Ramaswamy, WACV 2020), as pytorch-grad-cam 1.5.7 computes it: channel k's weight is the
//! relative drop of the class score when the layer's channel k is ablated, `w_k = (y − y_¬k) / y`. The ablated
//! channel is set to 0 when the activation's minimum is 0 (after a ReLU), else to `min − 1e7` (pytorch-grad-cam's
//! choice for layers that can be negative). No gradient. pytorch-grad-cam re-runs the whole network for each
//! channel; here only the part after the layer runs (a suffix plan fed with the layer's value and any earlier value
//! that part also reads), in batches, every class scored from the same passes.
//!
//! One difference, on layers whose minimum is not 0 only: pytorch-grad-cam re-reads the minimum of the batch it is
//! ablating after each channel it sets, so the k-th copy of a batch gets `min − k·1e7`; here every copy gets
//! `min − 1e7`. Both are far below anything a following ReLU or clamp lets through.

use super::perturb::batched_scores;
use super::target::Objective;
use crate::error::Result;
use crate::graph::Plan;
use crate::models::Model;
use ndarray::{Array2, ArrayView1, ArrayViewD, Axis};

/// What pytorch-grad-cam subtracts from the minimum of a layer that can be negative.
const ABLATION_OFFSET: f32 = 1e7;

/// The value an ablated channel is set to.
pub(crate) fn ablation_value(activation: &ArrayViewD<'_, f32>) -> f32 {
    let min = activation.iter().copied().fold(f32::INFINITY, f32::min);
    if min == 0.0 {
        0.0
    } else {
        min - ABLATION_OFFSET
    }
}

/// Each objective's score with each channel of the layer ablated in turn: `[C, objectives]`. `feeds` are the
/// suffix plan's values for one image (the layer first, channels along `channel_axis`: 0 for `[C, h, w]`, the last
/// for channels-last maps and tokens, where every token's channel is ablated as pytorch-grad-cam's
/// `AblationLayerVit` does).
pub(crate) fn ablated_scores(
    model: &Model,
    suffix: &Plan,
    feeds: &[(&str, ArrayViewD<'_, f32>)],
    channel_axis: usize,
    objectives: &[Objective],
    batch: usize,
) -> Result<Array2<f32>> {
    let layer = &feeds[0].1;
    let value = ablation_value(layer);
    let channels = layer.shape().get(channel_axis).copied().unwrap_or(0);
    batched_scores(model, suffix, feeds, channels, batch, objectives, |k, mut copy| {
        copy.index_axis_mut(Axis(channel_axis), k).fill(value);
    })
}

/// The channel weights `(y − y_¬k) / y` from the original score `y` and one objective's ablated scores (a column
/// of [`ablated_scores`]), negated for a counterfactual map.
pub(crate) fn weights(original: f32, ablated: ArrayView1<'_, f32>, sign: f32) -> Result<Vec<f32>> {
    if original == 0.0 || !original.is_finite() {
        return Err(crate::error::Error::NothingToExplain(format!(
            "Ablation-CAM divides by the class score, which is {original}: explain another class or target"
        )));
    }
    Ok(ablated.iter().map(|&y_k| sign * (original - y_k) / original).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr3;

    #[test]
    fn rectified_layers_are_ablated_to_zero_others_far_below_their_minimum() {
        let relu = arr3(&[[[0.0f32, 1.0]], [[2.0, 3.0]]]).into_dyn();
        assert_eq!(ablation_value(&relu.view()), 0.0);
        let signed = arr3(&[[[-2.0f32, 1.0]]]).into_dyn();
        assert_eq!(ablation_value(&signed.view()), -2.0 - 1e7);
    }

    #[test]
    fn weights_are_the_relative_drop() {
        let ablated = ndarray::arr1(&[1.0f32, 4.0]);
        assert_eq!(weights(2.0, ablated.view(), 1.0).unwrap(), vec![0.5, -1.0]);
        assert!(weights(0.0, ablated.view(), 1.0).is_err());
    }
}
