//! FullGrad (Srinivas & Fleuret, NeurIPS 2019) as pytorch-grad-cam 1.5.7 computes it: the input-gradient term
//! `|∂y/∂x ⊙ x|` plus, for every layer with a bias (a convolution with a bias, a batch-norm), the bias-gradient term
//! `|b_k · ∂y/∂z_k|` of each channel k of its output z; each channel min-max scaled and resized to the input, all
//! summed, then min-max scaled. Target layers do not apply: every bias layer on the way to the logits counts.
//!
//! The channels of a layer are scaled at the layer's resolution and summed before one resize (bilinear resizing is
//! linear, so this is pytorch-grad-cam's per-channel resize up to rounding), which keeps the cost of a deep network
//! to one resize per layer.

use super::postprocess::{minmax, resize_bilinear};
use crate::graph::{Graph, ValueId};
use crate::ops::Fusable;
use ndarray::{Array1, Array2, ArrayView3, Axis, Zip};

/// A layer whose output FullGrad reads: the value, and the bias each of its channels gets.
#[derive(Clone, Debug)]
pub(crate) struct BiasLayer {
    pub output: String,
    pub bias: Array1<f32>,
}

/// Every 4-D output of a convolution with a constant bias or of a batch-norm with constant statistics that leads to
/// `logits`, in graph order. A batch-norm's bias is `β − μ·γ/√(σ² + ε)` (its offset once written as a scale and a
/// shift).
pub(crate) fn bias_layers(g: &Graph<f32>, logits: ValueId) -> Vec<BiasLayer> {
    let leads = g.leads_to(&[logits]);
    let constant = |id: ValueId| g.constant_value(id).map(|c| c.iter().copied().collect::<Vec<f32>>());
    let mut layers = Vec::new();
    for node in g.nodes() {
        let [out] = node.outputs[..] else { continue };
        if !leads[out.0] || g.value(out).shape.len() != 4 {
            continue;
        }
        let channels = g.value(out).shape[1];
        let bias = match node.op.fusion() {
            Some(Fusable::Conv(_)) if node.inputs.len() == 3 => constant(node.inputs[2]),
            Some(Fusable::BatchNorm { epsilon }) if node.inputs.len() == 5 => {
                match (
                    constant(node.inputs[1]),
                    constant(node.inputs[2]),
                    constant(node.inputs[3]),
                    constant(node.inputs[4]),
                ) {
                    (Some(scale), Some(shift), Some(mean), Some(var)) => Some(
                        (0..scale.len())
                            .map(|k| {
                                let s = scale[k] as f64 / (var[k] as f64 + epsilon).sqrt();
                                (shift[k] as f64 - mean[k] as f64 * s) as f32
                            })
                            .collect(),
                    ),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(bias) = bias.filter(|b| b.len() == channels) {
            layers.push(BiasLayer { output: g.value(out).name.clone(), bias: Array1::from(bias) });
        }
    }
    layers
}

/// The sum over channels of each channel min-max scaled (pytorch-grad-cam's `scale_cam_image` per channel).
fn scaled_channel_sum(terms: ArrayView3<'_, f32>) -> Array2<f32> {
    let mut sum = Array2::<f32>::zeros((terms.shape()[1], terms.shape()[2]));
    for plane in terms.axis_iter(Axis(0)) {
        sum += &minmax(&plane.to_owned());
    }
    sum
}

/// The FullGrad map before its final scaling, `[H, W]`: `x` and `gx` the image and its gradient `[C, H, W]`; `layers`
/// each bias layer's bias and output gradient `[C_l, h, w]`.
pub(crate) fn raw_map<'a>(
    x: ArrayView3<'_, f32>,
    gx: ArrayView3<'_, f32>,
    layers: impl Iterator<Item = (&'a Array1<f32>, ArrayView3<'a, f32>)>,
) -> Array2<f32> {
    let (h, w) = (x.shape()[1], x.shape()[2]);
    let mut input_term = gx.to_owned();
    Zip::from(&mut input_term).and(&x).for_each(|g, &x| *g = (*g * x).abs());
    let mut total = scaled_channel_sum(input_term.view());
    for (bias, grad) in layers {
        let mut terms = grad.to_owned();
        for (mut plane, &b) in terms.axis_iter_mut(Axis(0)).zip(bias) {
            plane.mapv_inplace(|g| (b * g).abs());
        }
        let layer_sum = scaled_channel_sum(terms.view());
        total += &resize_bilinear(&layer_sum, h, w);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, Array3};

    #[test]
    fn each_channel_counts_once_whatever_its_scale() {
        // Two input channels, one 100× the other: after per-channel scaling they weigh the same.
        let x = Array3::from_shape_fn((2, 1, 2), |(c, _, j)| if c == 0 { j as f32 } else { 100.0 * j as f32 });
        let gx = Array3::from_elem((2, 1, 2), 1.0f32);
        let map = raw_map(x.view(), gx.view(), std::iter::empty());
        assert!((map[[0, 1]] - 2.0).abs() < 1e-5 && map[[0, 0]].abs() < 1e-6);
        // A bias layer at half resolution adds its scaled map, resized.
        let bias = arr1(&[2.0f32]);
        let g = Array3::from_shape_fn((1, 1, 1), |_| -3.0f32);
        let with = raw_map(x.view(), gx.view(), std::iter::once((&bias, g.view())));
        // A single value scales to 0 (flat map), so nothing is added.
        assert_eq!(with, map);
    }
}
