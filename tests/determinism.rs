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
