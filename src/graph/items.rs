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

use super::{ForwardOptions, Graph, Plan, ValueId};
use crate::error::{GraphError, GraphResult as Result};
use crate::ops::{Op, Reshape};
use crate::tensor::Tensor;
use crate::Element;
use ndarray::Axis;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Most bytes of weights for which a batch runs as its items (see the module's doc): models whose weights fit in a
/// common L3 cache beside an item's activations.
pub const ITEMS_APART_MAX_WEIGHT_BYTES: usize = 24 << 20;

/// Ops that compute each item of a batch from that item alone, whatever their attributes (with the shape rule of
/// [`Graph::untie_batch_from_reshapes`], which catches a reshape, flatten, pad, resize or product that moves the batch
/// axis). Softmax and LogSoftmax qualify on any axis but the first.
const PER_ITEM_OPS: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "BatchNormalization",
    "InstanceNormalization",
    "LRN",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "AdaptiveAvgPool",
    "Relu",
    "Clip",
    "LeakyRelu",
    "Elu",
    "Selu",
    "PRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Exp",
    "Sqrt",
    "Erf",
    "Gelu",
    "Silu",
    "Softplus",
    "Abs",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Dropout",
    "Identity",
    "Gemm",
    "MatMul",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Pad",
    "Resize",
];

/// `run(i)` for the items `0..n`, side by side on the thread pool, in the items' order; the first failing item's
/// error (in the items' order) if any fails.
///
/// At most one worker per thread takes items in turn (rather than one task per item): a thread waiting inside one
/// item's kernels could otherwise pick up another whole item, so that every item of a large batch might be in flight
/// at once. Items are taken in order, so once one fails the later ones that did not start are skipped, and every
/// earlier one has run.
pub(crate) fn side_by_side<R: Send, E: Send>(
    n: usize,
    run: impl Fn(usize) -> std::result::Result<R, E> + Sync,
) -> std::result::Result<Vec<R>, E> {
    let slots: Vec<Mutex<Option<std::result::Result<R, E>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let workers = n.min(rayon::current_num_threads()).max(1);
    (0..workers).into_par_iter().for_each(|_| {
        // A panicking item stops the others from starting new items too (the panic then reaches the caller).
        let _stop_on_panic = StopOnPanic(&failed);
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            let result = super::keeper::among_items(|| run(i));
            failed.fetch_or(result.is_err(), Ordering::Relaxed);
            *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        }
    });
    let mut done = Vec::with_capacity(n);
    for slot in slots {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(r)) => done.push(r),
            Some(Err(e)) => return Err(e),
            // Items are taken in order, so an item skipped after a failure comes after the failing one, which
            // returned above.
            None => unreachable!("an item skipped before any item failed"),
        }
    }
    Ok(done)
}

/// Sets its flag if dropped while its thread panics.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

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
    /// Each kept value must follow the batch (one row per item: its first axis is 1 for one item and 2 for two),
    /// else [`GraphError::NotPerItem`]: a constant, or a value computed from constants alone, is the same for every
    /// item and has no rows to stack. The first failing item's error (in the items' order) is returned, as
    /// [`GraphError::InItem`] naming the item.
    pub fn forward_items(&self, plan: &Plan, input: &str, x: &Tensor<T>, keep: &[&str]) -> Result<Vec<Tensor<T>>> {
        self.forward_items_with(plan, input, x, keep, ForwardOptions::default())
    }

    /// [`Graph::forward_items`] with options for each item's pass (a profile is not kept).
    pub fn forward_items_with(
        &self,
        plan: &Plan,
        input: &str,
        x: &Tensor<T>,
        keep: &[&str],
        options: ForwardOptions,
    ) -> Result<Vec<Tensor<T>>> {
        let n = match x.shape().first() {
            Some(&n) if n > 1 => n,
            // Nothing to split (an input without a batch axis fails in the pass as it would anyway).
            _ => {
                let acts = self.forward_with(plan, vec![(input, x.clone())], options)?;
                return keep.iter().map(|&name| acts.get(name).cloned()).collect();
            }
        };
        let follows = self.follows_batch();
        let ids: Vec<ValueId> = keep.iter().map(|k| self.find(k)).collect::<Result<_>>()?;
        for (&name, id) in keep.iter().zip(&ids) {
            if !follows.as_ref().is_some_and(|f| f[id.0]) {
                return Err(GraphError::NotPerItem { name: name.to_string(), shape: self.values[id.0].shape.clone() });
            }
        }
        let per_item = side_by_side(n, |i| {
            let item = x.index_axis(Axis(0), i).insert_axis(Axis(0)).as_standard_layout().into_owned();
            let run = || -> Result<Vec<Tensor<T>>> {
                let acts = self.forward_with(plan, vec![(input, item)], options)?;
                keep.iter().map(|&name| acts.get(name).cloned()).collect()
            };
            run().map_err(|e| GraphError::InItem { item: i, items: n, source: Box::new(e) })
        })?;
        (0..keep.len())
            .map(|k| {
                let views: Vec<_> = per_item.iter().map(|values| values[k].view()).collect();
                ndarray::concatenate(Axis(0), &views).map_err(|_| GraphError::NotPerItem {
                    name: keep[k].to_string(),
                    shape: per_item[0][k].shape().to_vec(),
                })
            })
            .collect()
    }

    /// Per value, whether its first axis follows the batch (1 for one item, 2 for two), by the shape rules; `None`
    /// if the graph does not take both.
    fn follows_batch(&self) -> Option<Vec<bool>> {
        let (one, two) = (self.shapes_at(1, |_, _| None)?, self.shapes_at(2, |_, _| None)?);
        Some(one.iter().zip(&two).map(|(a, b)| a.first() == Some(&1) && b.first() == Some(&2)).collect())
    }

    /// Rewrites the reshapes of an image or volume model exported at a fixed batch size `B` (PyTorch's
    /// `x.view(B, -1)` is written as `Reshape` to `[B, -1]`) to copy their first dimension from their input (`[0,
    /// -1]`): the graph then takes any batch, so its batches can run as their items, and one image can be explained
    /// with it. Returns how many reshapes changed.
    ///
    /// At the traced batch every rewritten reshape gives the shape it gave, so nothing the graph computes there
    /// changes. Elsewhere the rewritten graph must compute each item from that item alone, so it is rewritten only
    /// if (all or nothing):
    /// - its one input is 4-D or 5-D (`[B, C, H, W]`, `[B, C, D, H, W]`);
    /// - every node is one of [`PER_ITEM_OPS`] (Softmax and LogSoftmax on another axis than the first);
    /// - the reshapes rewritten start with `B`, and their input's first dimension follows the batch;
    /// - with `B + 1` items, every node takes its inputs, every value computed from the input changes in its first
    ///   dimension alone (from `B` to `B + 1`: so no op moved the batch axis, folded it into another or reduced over
    ///   it), every other value keeps its shape, and every output follows the batch.
    pub(crate) fn untie_batch_from_reshapes(&mut self) -> usize {
        let [input] = self.inputs[..] else { return 0 };
        let input_shape = &self.values[input.0].shape;
        if !matches!(input_shape.len(), 4 | 5) {
            return 0;
        }
        let traced = input_shape[0];
        let per_item = |node: &super::Node<T>| {
            let any = node.op.as_ref() as &dyn std::any::Any;
            let axis = any
                .downcast_ref::<crate::ops::Softmax>()
                .map(|s| s.axis)
                .or_else(|| any.downcast_ref::<crate::ops::LogSoftmax>().map(|s| s.axis));
            match axis {
                // A negative axis counts from the end: -rank is the first axis too.
                Some(axis) => node.inputs.first().is_some_and(|x| {
                    crate::tensor::normalize_axis(axis, self.values[x.0].shape.len()).is_ok_and(|a| a != 0)
                }),
                None => PER_ITEM_OPS.contains(&node.op.op_type()),
            }
        };
        if !self.nodes.iter().all(per_item) {
            return 0;
        }
        // The values computed from the input: each must follow the batch. (Only values from constants alone may
        // keep their shape: one that stays `[K, N]` while computed from the items, say a product over them, mixes
        // the items.)
        let mut from_input = vec![false; self.values.len()];
        from_input[input.0] = true;
        for node in &self.nodes {
            if node.inputs.iter().any(|i| from_input[i.0]) {
                node.outputs.iter().for_each(|o| from_input[o.0] = true);
            }
        }
        let other = traced + 1;
        let mut untied = Vec::new();
        let shapes = self.shapes_at(other, |n, ins| {
            let node = &self.nodes[n];
            let r = (node.op.as_ref() as &dyn std::any::Any).downcast_ref::<Reshape>()?;
            let batch_first =
                self.values[node.inputs[0].0].shape.first() == Some(&traced) && ins[0].first() == Some(&other);
            if r.shape.first() != Some(&(traced as i64)) || !batch_first {
                return None;
            }
            let mut shape = r.shape.clone();
            shape[0] = 0;
            let free = Reshape { shape };
            let outs = Op::<T>::output_shapes(&free, ins);
            untied.push((n, free));
            Some(outs)
        });
        let Some(shapes) = shapes else { return 0 };
        let only_the_batch_moved = self.values.iter().zip(&shapes).zip(&from_input).all(|((v, s), &follows)| {
            let rest_equal = v.shape.len() == s.len() && v.shape.get(1..) == s.get(1..);
            let moved = rest_equal && v.shape.first() == Some(&traced) && s.first() == Some(&other);
            if follows {
                moved
            } else {
                *s == v.shape
            }
        });
        let outputs_follow = self.outputs.iter().all(|o| shapes[o.0].first() == Some(&other));
        if untied.is_empty() || !only_the_batch_moved || !outputs_follow {
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
        classifier_with(batch, tail, None)
    }

    /// [`classifier`], its logits through a softmax on `softmax_axis` if given.
    fn classifier_with(batch: usize, tail: &[Vec<i64>], softmax_axis: Option<i64>) -> Graph<f32> {
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
        let name = if softmax_axis.is_some() { "scores" } else { "logits" };
        let mut out = b.node(name, Gemm::linear(), &[h, fc]).unwrap();
        if let Some(axis) = softmax_axis {
            out = b.node("logits", crate::ops::Softmax { axis }, &[out]).unwrap();
        }
        b.output(out);
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
    fn items_side_by_side_come_back_in_order_with_the_first_error() {
        let squares = super::side_by_side(37, |i| Ok::<_, String>(i * i)).unwrap();
        assert_eq!(squares, (0..37).map(|i| i * i).collect::<Vec<_>>());
        for threads in [1, 2, 4] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let failed = pool.install(|| {
                super::side_by_side(20, |i| if i == 5 || i == 9 { Err(format!("item {i}")) } else { Ok(i) })
            });
            assert_eq!(failed, Err("item 5".to_string()), "{threads} threads: the first failing item's error");
        }
        assert!(super::side_by_side(0, Ok::<usize, ()>).unwrap().is_empty());
    }

    #[test]
    fn a_value_that_does_not_follow_the_batch_is_not_stacked() {
        let mut b = GraphBuilder::<f32>::new();
        let x = b.input("input", &[2, 3]).unwrap();
        let row = b.constant("row", Tensor::zeros(ndarray::IxDyn(&[1, 3]))).unwrap();
        let sum = b.node("sum", crate::ops::Add, &[x, row]).unwrap();
        b.output(sum);
        let g = b.build();
        let plan = g.inference_plan(&["sum"]).unwrap();
        let x = random(&mut Rng::new(5), &[4, 3]);
        assert_eq!(g.forward_items(&plan, "input", &x, &["sum"]).unwrap()[0], x, "adding zeros");
        // The constant's leading 1 is not one item's row.
        let err = g.forward_items(&plan, "input", &x, &["sum", "row"]).unwrap_err();
        assert!(matches!(&err, crate::GraphError::NotPerItem { name, .. } if name == "row"), "{err}");
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
        // The batch moved by an op that is not known to keep items apart (channels = batch = 3 here).
        let mut moved = {
            let mut b = GraphBuilder::<f32>::new();
            let x = b.input("input", &[3, 3, 6, 6]).unwrap();
            let t = b.node("swap", crate::ops::Transpose { perm: Some(vec![1, 0, 2, 3]) }, &[x]).unwrap();
            let r = b.node("reshape", Reshape { shape: vec![3, -1] }, &[t]).unwrap();
            b.output(r);
            b.build()
        };
        assert_eq!(moved.untie_batch_from_reshapes(), 0);
        // A softmax over the batch, its axis counted from the end: the items mix, the graph stays tied.
        let mut over_items = classifier_with(3, &[vec![3, -1]], Some(-2));
        assert_eq!(over_items.untie_batch_from_reshapes(), 0);
        let mut over_classes = classifier_with(3, &[vec![3, -1]], Some(-1));
        assert_eq!(over_classes.untie_batch_from_reshapes(), 1);
        // A product over the items (`Aᵀ·A` of the pooled rows: [4, 4] at any batch), added back to every row: the
        // shapes follow the batch, yet each row depends on every item.
        let mut summed = {
            let mut b = GraphBuilder::<f32>::new();
            let x = b.input("input", &[3, 3, 6, 6]).unwrap();
            let w = b.constant("w", random(&mut Rng::new(6), &[4, 3, 3, 3])).unwrap();
            let c = b.node("conv", Conv::new(1, 1), &[x, w]).unwrap();
            let p = b.node("pool", GlobalAveragePool, &[c]).unwrap();
            let rows = b.node("rows", Reshape { shape: vec![3, -1] }, &[p]).unwrap();
            let gram = b.node("gram", Gemm { trans_a: true, trans_b: false, ..Gemm::linear() }, &[rows, rows]).unwrap();
            let mixed = b.node("mixed", Gemm::linear(), &[rows, gram]).unwrap();
            b.output(mixed);
            b.build()
        };
        assert_eq!(summed.untie_batch_from_reshapes(), 0);
        // Inputs that are not images or volumes are left alone.
        let mut tokens = {
            let mut b = GraphBuilder::<f32>::new();
            let x = b.input("input", &[3, 8]).unwrap();
            let r = b.node("reshape", Reshape { shape: vec![3, 2, 4] }, &[x]).unwrap();
            b.output(r);
            b.build()
        };
        assert_eq!(tokens.untie_batch_from_reshapes(), 0);
        // A batch-agnostic graph has nothing to untie.
        let mut free = classifier(3, &[vec![0, -1]]);
        assert_eq!(free.untie_batch_from_reshapes(), 0);
        assert!(free.accepts_batch(1));
    }
}
