//! Choosing the target layer when the user names none, and which layers a CAM method can use.

use super::tokens::{layer_layout, LayerLayout, TokenOptions};
use crate::error::{Error, Result};
use crate::graph::{Graph, ValueId};

/// The default target layer with automatic token options (see [`default_layer_with`]).
pub fn default_layer(graph: &Graph<f32>, logits: &str) -> Result<String> {
    default_layer_with(graph, logits, &TokenOptions::default())
}

/// The layer a CAM method explains when none is named:
/// - in a transformer (a model with LayerNormalization and attention), the last layer-normalized value that attention
///   still reads, i.e. whose output reaches a Softmax over tokens (`encoder.layers[-1].ln_1` of a ViT,
///   `features[-1][-1].norm1` of a Swin — what pytorch-grad-cam's tutorials choose; later values reach the class
///   score through the class token or a per-token MLP only, so their patch tokens get no gradient);
/// - otherwise the last 4-D activation with spatial size > 1 that feeds `logits` (e.g. `layer4.1` of a ResNet, the
///   head activation of an EfficientNet): the deepest layer that still has a spatial map.
pub fn default_layer_with(graph: &Graph<f32>, logits: &str, opts: &TokenOptions) -> Result<String> {
    let target = graph.find(logits)?;
    let feeds = graph.leads_to(&[target]);
    let usable = |o: ValueId| feeds[o.0] && o != target && cam_layout(graph, o, opts).is_ok();
    if let Some(layer) = attention_norm(graph, &usable) {
        return Ok(graph.value(layer).name.clone());
    }
    // A segmentation's output is spatial itself: skip it and the head's class-score maps (as many channels as
    // classes), to land on the features they are made from.
    let out_shape = &graph.value(target).shape;
    let segmentation = out_shape.len() == 4 && out_shape[2] * out_shape[3] > 1;
    let class_maps = |o: ValueId| segmentation && graph.value(o).shape.get(1) == out_shape.get(1);
    let volume_input = graph.inputs().first().is_some_and(|&i| graph.value(i).shape.len() == 5);
    for node in graph.nodes().iter().rev() {
        for &o in &node.outputs {
            // A volume model's maps come from its volume layers; other models' from images or signals.
            let channels_first = match cam_layout(graph, o, opts) {
                Ok(LayerLayout::Volume { .. }) => volume_input,
                Ok(LayerLayout::ChannelsFirst | LayerLayout::Signal) => !volume_input,
                _ => false,
            };
            if feeds[o.0] && o != target && !class_maps(o) && channels_first {
                return Ok(graph.value(o).name.clone());
            }
        }
    }
    Err(Error::ModelInterface(format!("no activation with a spatial extent feeds '{logits}'; name a layer")))
}

/// The last LayerNormalization output that a Softmax over tokens (rank ≥ 3: attention weights, not class
/// probabilities) reads downstream, among the `usable` values.
fn attention_norm(graph: &Graph<f32>, usable: &dyn Fn(ValueId) -> bool) -> Option<ValueId> {
    let mut reaches_attention = vec![false; graph.values().len()];
    for node in graph.nodes().iter().rev() {
        let attention = node.op.op_type() == "Softmax" && node.outputs.iter().any(|o| graph.value(*o).shape.len() >= 3);
        if attention || node.outputs.iter().any(|o| reaches_attention[o.0]) {
            for i in &node.inputs {
                reaches_attention[i.0] = true;
            }
        }
    }
    graph
        .nodes()
        .iter()
        .rev()
        .filter(|n| n.op.op_type() == "LayerNormalization")
        .flat_map(|n| n.outputs.first().copied())
        .find(|&o| reaches_attention[o.0] && usable(o))
}

/// The model input's spatial size (`[N, C, H, W]`; a signal's is `(1, L)`), or `(0, 0)` for other inputs (a
/// volume's), whose 3-D values are then neither signals nor token grids of an inferred aspect.
fn input_hw(graph: &Graph<f32>) -> (usize, usize) {
    match graph.inputs().first().map(|&i| graph.value(i).shape.as_slice()) {
        Some([_, _, h, w]) => (*h, *w),
        _ => (0, 0),
    }
}

/// How a CAM method reads `id` as maps, or why it cannot (see [`super::tokens`]).
pub fn cam_layout(graph: &Graph<f32>, id: ValueId, opts: &TokenOptions) -> std::result::Result<LayerLayout, String> {
    layer_layout(graph, id, input_hw(graph), opts)
}

/// A value that a CAM method can use with automatic token options: `[N, C, H, W]`, channels-last `[N, H, W, C]` or
/// tokens `[N, T, C]` with more than one position, computed by a node.
pub fn is_spatial(graph: &Graph<f32>, id: ValueId) -> bool {
    cam_layout(graph, id, &TokenOptions::default()).is_ok()
}
