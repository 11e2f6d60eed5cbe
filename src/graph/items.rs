//! A batch run as its items, side by side: each item is a pass of its own, and the thread pool spreads the items
//! over its threads (each item's kernels still split their work when a thread is free to take some).
//!
//! At batch 8 a MobileNet's largest activations (38.5 MB for MobileNetV2's 16 → 96 expansion at 112²) outgrow the
//! L3 cache, so a whole-batch pass reads every layer's input back from memory, and its threads meet at a barrier
//! after every layer. One item's activations (4.8 MB) stay in the cache. The price is the weights: item by item,
//! every weight is read once per item instead of once per batch. That pays while the weights stay in the cache too
//! (MobileNetV2, 14 MB: batch-8 forward 45.2 → 40.3 ms, median, 2 threads, Zen 4 with a 32 MiB L3) and costs where
//! they do not (ResNet-18, 47 MB: 142.9 → 152.6 ms), hence [`ITEMS_APART_MAX_WEIGHT_BYTES`]. The bound is a constant,
//! not the machine's cache size, so which way a batch runs — and so its results' last bits — does not depend on the
//! machine or the number of threads.
//!
//! The kernels' task shapes depend on a layer's shape only, so each item's values are those of a batch of that one
//! item, bit for bit, on any number of threads.

use super::{Graph, Plan};
use crate::error::{GraphError, GraphResult as Result};
use crate::tensor::Tensor;
use crate::Element;
use ndarray::Axis;
use rayon::prelude::*;

/// Most bytes of weights for which a batch runs as its items (see the module's doc): models whose weights fit in a
/// common L3 cache beside an item's activations.
pub const ITEMS_APART_MAX_WEIGHT_BYTES: usize = 24 << 20;

impl<T: Element> Graph<T> {
    /// Whether a batch of `batch` items is better run as its items side by side ([`Graph::forward_items`]; the
    /// explainer does the same): on the CPU (a GPU wants the whole batch), for more than one item, with one graph
    /// input, weights of at most [`ITEMS_APART_MAX_WEIGHT_BYTES`], and a graph whose every node takes one item.
    ///
    /// Items are assumed independent, as in every inference export of a CNN or a vision transformer. A graph that
    /// mixes the items of a batch (a batch-norm in training mode, a reshape that folds the batch into tokens) may
    /// still take one item; explaining such a model image by image is what an explanation of one image means.
    pub fn runs_items_apart(&self, batch: usize) -> bool {
        batch > 1
            && self.device.is_none()
            && self.inputs.len() == 1
            && self.constant_bytes() <= ITEMS_APART_MAX_WEIGHT_BYTES
            && self.accepts_batch(1)
    }

    /// The values `keep` of `plan` for the batch `x` bound to the graph's one input `input`, computed item by item,
    /// the items side by side on the thread pool, and stacked back into batches in the items' order.
    ///
    /// Each kept value must be one item's slice (a leading axis of 1 for one item), else
    /// [`GraphError::NotPerItem`]. The first failing item's error (in the items' order) is returned.
    pub fn forward_items(&self, plan: &Plan, input: &str, x: &Tensor<T>, keep: &[&str]) -> Result<Vec<Tensor<T>>> {
        if x.shape().first().is_none_or(|&n| n <= 1) {
            // Nothing to split (an input without a batch axis fails in the pass as it would anyway).
            let acts = self.forward(plan, vec![(input, x.clone())])?;
            return keep.iter().map(|&name| acts.get(name).cloned()).collect();
        }
        let per_item: Vec<Result<Vec<Tensor<T>>>> = (0..x.shape()[0])
            .into_par_iter()
            .map(|i| {
                let item = x.index_axis(Axis(0), i).insert_axis(Axis(0)).as_standard_layout().into_owned();
                let acts = self.forward(plan, vec![(input, item)])?;
                keep.iter()
                    .map(|&name| {
                        let v = acts.get(name)?;
                        match v.shape().first() {
                            Some(1) => Ok(v.clone()),
                            _ => Err(GraphError::NotPerItem { name: name.to_string(), shape: v.shape().to_vec() }),
                        }
                    })
                    .collect()
            })
            .collect();
        let per_item: Vec<Vec<Tensor<T>>> = per_item.into_iter().collect::<Result<_>>()?;
        (0..keep.len())
            .map(|k| {
                let views: Vec<_> = per_item.iter().map(|values| values[k].view()).collect();
                ndarray::concatenate(Axis(0), &views).map_err(|_| GraphError::NotPerItem {
                    name: keep[k].to_string(),
                    shape: per_item.first().map_or_else(Vec::new, |v| v[k].shape().to_vec()),
                })
            })
            .collect()
    }
}
