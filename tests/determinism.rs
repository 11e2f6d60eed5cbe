//! Same inputs ⇒ bit-identical outputs and gradients, across runs and across 1, 2 and 4 threads.

mod common;

use common::{one_hot, random, tiny_resnet_sized};
use gradcam::ops::{Conv, Relu};
use gradcam::{Graph, GraphBuilder, Tensor};

/// Everything one pass produces, as raw bits.
fn run(g: &Graph<f32>, wrt: &[&str], seed_len: usize, x: &Tensor<f32>, out: &str) -> Vec<Vec<u32>> {
    let plan = g.plan(&[out], wrt, &[]).unwrap();
    let acts = g.forward(&plan, vec![("input", x.clone())]).unwrap();
    let y = acts.get(out).unwrap().clone();
    let seed = if seed_len == 0 { random(y.shape(), 9) } else { one_hot(seed_len, 1) };
    let grads = acts.backward(vec![(out, seed)]).unwrap();
    let mut bits = vec![y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()];
    for w in wrt {
        bits.push(grads.get(w).unwrap().iter().map(|v| v.to_bits()).collect());
    }
    bits
}

fn on_threads<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap().install(f)
}

#[test]
fn resnet_outputs_and_gradients_are_bit_identical_across_thread_counts() {
    let g: Graph<f32> = tiny_resnet_sized(2, 24, 10, 96);
    let x = random::<f32>(&[1, 3, 96, 96], 1);
    let wrt = ["input", "layer_last", "stem.weight", "fc.weight"];
    let reference = on_threads(1, || run(&g, &wrt, 10, &x, "logits"));
    for threads in [1, 2, 4] {
        for _ in 0..2 {
            assert!(on_threads(threads, || run(&g, &wrt, 10, &x, "logits")) == reference, "{threads} threads differ");
        }
    }
}

#[test]
fn large_grouped_and_depthwise_convolutions_are_bit_identical_across_thread_counts() {
    // Several column tiles and row blocks per image, a batch of 2, groups and a depthwise layer.
    let mut b = GraphBuilder::<f32>::new();
    let x = b.input("input", &[2, 32, 41, 37]).unwrap();
    let w1 = b.constant("w1", random(&[130, 16, 3, 3], 2)).unwrap();
    let c1 = b.node("c1", Conv { pads: [1, 0, 2, 1], ..Conv::new(1, 1).groups(2) }, &[x, w1]).unwrap();
    let r = b.node("r", Relu, &[c1]).unwrap();
    let w2 = b.constant("w2", random(&[260, 1, 5, 5], 3)).unwrap();
    let c2 = b.node("c2", Conv::new(2, 2).groups(130), &[r, w2]).unwrap();
    b.output(c2);
    let g = b.build();
    let xin = random::<f32>(&[2, 32, 41, 37], 4);
    let wrt = ["input", "w1", "w2", "c1"];
    let reference = on_threads(1, || run(&g, &wrt, 0, &xin, "c2"));
    for threads in [2, 4] {
        assert!(on_threads(threads, || run(&g, &wrt, 0, &xin, "c2")) == reference, "{threads} threads differ");
    }
}

#[test]
fn strided_input_gradients_on_the_packed_kernels_are_bit_identical_across_thread_counts() {
    // Only the input's gradient is asked for, so the strided layers take the packed columns path (a 7×7/2 stem
    // and a 1×1/2 downsample, batch 2, planes large enough for several tiles and tasks).
    let mut b = GraphBuilder::<f32>::new();
    let x = b.input("input", &[2, 3, 67, 61]).unwrap();
    let w1 = b.constant("w1", random(&[24, 3, 7, 7], 5)).unwrap();
    let c1 = b.node("c1", Conv { pads: [3, 3, 3, 3], ..Conv::new(2, 2) }, &[x, w1]).unwrap();
    let r = b.node("r", Relu, &[c1]).unwrap();
    let w2 = b.constant("w2", random(&[40, 24, 1, 1], 6)).unwrap();
    let c2 = b.node("c2", Conv::new(2, 0), &[r, w2]).unwrap();
    b.output(c2);
    let g = b.build();
    let xin = random::<f32>(&[2, 3, 67, 61], 7);
    let reference = on_threads(1, || run(&g, &["input"], 0, &xin, "c2"));
    for threads in [2, 3, 4] {
        assert!(on_threads(threads, || run(&g, &["input"], 0, &xin, "c2")) == reference, "{threads} threads differ");
    }
}

/// A batch run item by item (`Graph::forward_items`, what a small model's batch on the CPU does) gives each item the
/// values a batch of that one item gives, bit for bit, stacked in the items' order, on 1, 2 and 4 threads.
#[test]
fn a_batch_run_item_by_item_equals_its_items_alone_on_any_thread_count() {
    let g: Graph<f32> = tiny_resnet_sized(2, 16, 10, 40);
    let items = 5;
    let x = random::<f32>(&[items, 3, 40, 40], 31);
    assert!(g.runs_items_apart(items) && !g.runs_items_apart(1));
    let plan = g.inference_plan(&["logits", "layer_last"]).unwrap();
    let bits = |t: &Tensor<f32>| t.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    // Each item alone, on one thread.
    let alone: Vec<Vec<Vec<u32>>> = on_threads(1, || {
        (0..items)
            .map(|i| {
                let item = x.index_axis(ndarray::Axis(0), i).insert_axis(ndarray::Axis(0)).to_owned();
                let acts = g.forward(&plan, vec![("input", item)]).unwrap();
                ["logits", "layer_last"].iter().map(|v| bits(acts.get(v).unwrap())).collect()
            })
            .collect()
    });
    for threads in [1, 2, 4] {
        let stacked = on_threads(threads, || g.forward_items(&plan, "input", &x, &["logits", "layer_last"])).unwrap();
        assert_eq!(stacked[0].shape(), [items, 10]);
        assert_eq!(stacked[1].shape()[0], items);
        for (k, value) in stacked.iter().enumerate() {
            for (i, item) in value.axis_iter(ndarray::Axis(0)).enumerate() {
                let item_bits: Vec<u32> = item.iter().map(|v| v.to_bits()).collect();
                assert!(item_bits == alone[i][k], "{threads} threads: item {i}, value {k} differs from the item alone");
            }
        }
    }
}

/// What a batch may run item by item: more than one item of a graph that takes one, whose weights are small.
#[test]
fn only_small_models_that_take_one_item_run_their_batches_item_by_item() {
    let small: Graph<f32> = tiny_resnet_sized(1, 8, 10, 16);
    assert!(small.runs_items_apart(2));
    assert!(!small.runs_items_apart(1), "one item is already one item");
    // Weights past the bound: a second input-free constant makes them so without changing what runs.
    let mut b = GraphBuilder::<f32>::new();
    let x = b.input("input", &[1, 3, 8, 8]).unwrap();
    let w = b.constant("w", random(&[4, 3, 3, 3], 5)).unwrap();
    let c = b.node("c", Conv::new(1, 1), &[x, w]).unwrap();
    b.output(c);
    let words = gradcam::graph::ITEMS_APART_MAX_WEIGHT_BYTES / 4 + 1;
    b.constant("unused", Tensor::<f32>::zeros(ndarray::IxDyn(&[words]))).unwrap();
    assert!(!b.build().runs_items_apart(2), "weights past the bound run the batch whole");
}

/// An item that fails is named: the first failing item (here the NaN in the third of four) and the batch's size,
/// with the pass's own error beneath.
#[test]
fn a_failing_item_is_named() {
    let g: Graph<f32> = tiny_resnet_sized(1, 8, 10, 16);
    let plan = g.inference_plan(&["logits"]).unwrap();
    let mut x = random::<f32>(&[4, 3, 16, 16], 9);
    x[[2, 1, 5, 5]] = f32::NAN;
    x[[3, 0, 0, 0]] = f32::NAN;
    let options = gradcam::ForwardOptions { check_finite: true, ..Default::default() };
    let err = g.forward_items_with(&plan, "input", &x, &["logits"], options).unwrap_err();
    match &err {
        gradcam::GraphError::InItem { item: 2, items: 4, source } => {
            assert!(matches!(**source, gradcam::GraphError::NonFinite { .. }), "{source}")
        }
        other => panic!("expected item 2 of 4, got {other}"),
    }
    assert!(err.to_string().starts_with("item 3 of 4: "), "the message counts from 1: {err}");
}

/// A kept value that is not one item's slice (here a weight) cannot be stacked into a batch: a typed error naming it.
#[test]
fn a_value_without_a_batch_axis_is_refused_item_by_item() {
    let g: Graph<f32> = tiny_resnet_sized(1, 8, 10, 16);
    let plan = g.inference_plan(&["logits"]).unwrap();
    let x = random::<f32>(&[3, 3, 16, 16], 7);
    let err = g.forward_items(&plan, "input", &x, &["logits", "fc.weight"]).unwrap_err();
    assert!(matches!(&err, gradcam::GraphError::NotPerItem { name, .. } if name == "fc.weight"), "{err}");
    // One item runs as it is, whatever it keeps.
    let one = random::<f32>(&[1, 3, 16, 16], 8);
    assert_eq!(g.forward_items(&plan, "input", &one, &["fc.weight"]).unwrap()[0].shape(), [10, 8]);
}
