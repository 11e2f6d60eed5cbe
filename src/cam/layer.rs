//! Choosing the target layer when the user names none.

use crate::error::{Error, Result};
use crate::graph::{Graph, Source, ValueId};

/// The last 4-D activation with spatial size > 1 that feeds `logits` (e.g. `layer4.1` of a ResNet, the head
/// activation of an EfficientNet): the deepest layer that still has a spatial map.
pub fn default_layer(graph: &Graph<f32>, logits: &str) -> Result<String> {
    let target = graph.find(logits)?;
    let feeds = graph.leads_to(&[target]);
    // A segmentation's output is spatial itself: skip it and the head's class-score maps (as many channels as
    // classes), to land on the features they are made from.
    let out_shape = &graph.value(target).shape;
    let segmentation = out_shape.len() == 4 && out_shape[2] * out_shape[3] > 1;
    let class_maps = |o: ValueId| segmentation && graph.value(o).shape.get(1) == out_shape.get(1);
    for node in graph.nodes().iter().rev() {
        for &o in &node.outputs {
            if feeds[o.0] && o != target && !class_maps(o) && is_spatial(graph, o) {
                return Ok(graph.value(o).name.clone());
            }
        }
    }
    Err(Error::BadRequest(format!("no 4-D activation with a spatial extent feeds '{logits}'; name a layer")))
}

/// A value that a CAM method can use: `[N, C, H, W]` with `H·W > 1`, computed by a node.
pub fn is_spatial(graph: &Graph<f32>, id: ValueId) -> bool {
    let v = graph.value(id);
    matches!(v.source, Source::Node { .. }) && v.shape.len() == 4 && v.shape[2] * v.shape[3] > 1
}
