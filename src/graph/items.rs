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
use crate::ops::{Op, Reshape};
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

    /// Rewrites the reshapes of an export traced at a fixed batch size `B` (PyTorch's `x.view(B, -1)` is written as
    /// `Reshape` to `[B, -1]`) to copy their first dimension from their input (`[0, -1]`), where that dimension is
    /// the batch: the graph then takes any batch, so its batches can run as their items, and one image can be
    /// explained with it. Returns how many reshapes changed.
    ///
    /// At the traced batch every rewritten reshape gives the shape it gave, so nothing the graph computes there
    /// changes. A reshape is rewritten only where its target starts with `B` and its input's first dimension is the
    /// batch (it is `B` at the traced batch and follows the input to `B + 1`), and only if the whole graph then takes
    /// `B + 1` items and keeps one output row per item; otherwise nothing changes (a reshape that folds the batch
    /// into another axis, e.g. `[B·197, 768]`, keeps the graph tied to `B`).
    pub(crate) fn untie_batch_from_reshapes(&mut self) -> usize {
        let [input] = self.inputs[..] else { return 0 };
        let Some(&traced) = self.values[input.0].shape.first() else { return 0 };
        let other = traced + 1;
        let mut shapes: Vec<Vec<usize>> = self.values.iter().map(|v| v.shape.clone()).collect();
        shapes[input.0][0] = other;
        let mut untied = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            let ins: Vec<&[usize]> = node.inputs.iter().map(|i| shapes[i.0].as_slice()).collect();
            let reshape = (node.op.as_ref() as &dyn std::any::Any).downcast_ref::<Reshape>();
            let batch_first = |i: usize| {
                self.values[node.inputs[i].0].shape.first() == Some(&traced) && ins[i].first() == Some(&other)
            };
            let outs = match reshape {
                Some(r) if r.shape.first() == Some(&(traced as i64)) && batch_first(0) => {
                    let mut shape = r.shape.clone();
                    shape[0] = 0;
                    let free = Reshape { shape };
                    let outs = Op::<T>::output_shapes(&free, &ins);
                    untied.push((n, free));
                    outs
                }
                _ => node.op.output_shapes(&ins),
            };
            let Ok(outs) = outs else { return 0 };
            for (o, s) in node.outputs.iter().zip(outs) {
                shapes[o.0] = s;
            }
        }
        if !self.outputs.iter().all(|o| shapes[o.0].first() == Some(&other)) {
            return 0;
        }
        for (n, free) in &untied {
            self.nodes[*n].op = Box::new(free.clone());
        }
        untied.len()
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::testing::Rng;
    use crate::ops::{Conv, Gemm, GlobalAveragePool, Relu, Reshape};
    use crate::{Graph, GraphBuilder, Tensor};

    fn random(rng: &mut Rng, shape: &[usize]) -> Tensor<f32> {
        rng.tensor(shape, -1.0, 1.0).mapv(|v| v as f32)
    }

    /// `[batch, 3, 6, 6]` → conv → relu → pool → the reshapes `tail` → a product with `[5, 4]`: the logits.
    fn classifier(batch: usize, tail: &[Vec<i64>]) -> Graph<f32> {
        let mut rng = Rng::new(3);
        let mut b = GraphBuilder::<f32>::new();
        let x = b.input("input", &[batch, 3, 6, 6]).unwrap();
        let w = b.constant("w", random(&mut rng, &[4, 3, 3, 3])).unwrap();
        let c = b.node("conv", Conv::new(1, 1), &[x, w]).unwrap();
        let r = b.node("relu", Relu, &[c]).unwrap();
        let mut h = b.node("pool", GlobalAveragePool, &[r]).unwrap();
        for (i, shape) in tail.iter().enumerate() {
            h = b.node(&format!("reshape{i}"), Reshape { shape: shape.clone() }, &[h]).unwrap();
        }
        let fc = b.constant("fc", random(&mut rng, &[5, 4])).unwrap();
        let logits = b.node("logits", Gemm::linear(), &[h, fc]).unwrap();
        b.output(logits);
        b.build()
    }

    fn logits(g: &Graph<f32>, x: &Tensor<f32>) -> Vec<u32> {
        let plan = g.inference_plan(&["logits"]).unwrap();
        let acts = g.forward(&plan, vec![("input", x.clone())]).unwrap();
        acts.get("logits").unwrap().iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn a_reshape_that_spells_the_batch_out_is_untied_and_computes_the_same() {
        let x = random(&mut Rng::new(4), &[3, 3, 6, 6]);
        let traced = classifier(3, &[vec![3, -1]]);
        assert!(!traced.accepts_batch(1) && !traced.accepts_batch(4));
        let mut untied = classifier(3, &[vec![3, -1]]);
        assert_eq!(untied.untie_batch_from_reshapes(), 1);
        assert!(untied.accepts_batch(1) && untied.accepts_batch(3) && untied.accepts_batch(7));
        assert_eq!(logits(&untied, &x), logits(&traced, &x), "the traced batch computes what it computed");
        // Each image alone now gets its own row of that batch.
        let rows = logits(&untied, &x);
        for i in 0..3 {
            let item = x.index_axis(ndarray::Axis(0), i).insert_axis(ndarray::Axis(0)).to_owned();
            assert_eq!(logits(&untied, &item), rows[i * 5..(i + 1) * 5], "image {i}");
        }
    }

    #[test]
    fn reshapes_that_mix_the_items_keep_the_graph_tied() {
        // The batch folded into one row: its first entry is not the batch.
        let mut folded = classifier(3, &[vec![1, -1], vec![3, -1]]);
        assert_eq!(folded.untie_batch_from_reshapes(), 0);
        // A first reshape that could be untied, then one that folds the batch: nothing changes.
        let mut mixed = classifier(3, &[vec![3, -1], vec![1, 12], vec![3, 4]]);
        assert_eq!(mixed.untie_batch_from_reshapes(), 0);
        assert!(!mixed.accepts_batch(1));
        // A batch-agnostic graph has nothing to untie.
        let mut free = classifier(3, &[vec![0, -1]]);
        assert_eq!(free.untie_batch_from_reshapes(), 0);
        assert!(free.accepts_batch(1));
    }
}
