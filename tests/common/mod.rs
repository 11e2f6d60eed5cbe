//! Helpers shared by the integration tests.
#![allow(dead_code)]

use gradcam::{Element, Tensor};
use ndarray::ArrayD;
use std::path::{Path, PathBuf};

/// Path of a file under `fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

/// Reads an f32 `.npy` fixture.
pub fn npy_f32(rel: &str) -> ArrayD<f32> {
    ndarray_npy::read_npy(fixture(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Reads an f64 `.npy` fixture.
pub fn npy_f64(rel: &str) -> ArrayD<f64> {
    ndarray_npy::read_npy(fixture(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Converts an f32 tensor to any element type.
pub fn cast<T: Element>(t: &ArrayD<f32>) -> Tensor<T> {
    t.mapv(|v| T::lit(v as f64))
}

/// Largest `|a − b| / (atol + rtol·|b|)`; ≤ 1 means "within tolerance".
pub fn worst_ratio<T: Element>(a: &Tensor<T>, b: &ArrayD<f64>, rtol: f64, atol: f64) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| (x.to_f64().unwrap() - y).abs() / (atol + rtol * y.abs()))
        .fold(0.0, f64::max)
}

/// Deterministic pseudo-random tensor with entries in [-1, 1).
pub fn random<T: Element>(shape: &[usize], seed: u64) -> Tensor<T> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Tensor::from_shape_fn(ndarray::IxDyn(shape), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        T::lit((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
    })
}

use gradcam::ops::{Add, BatchNormalization, Conv, Flatten, Gemm, GlobalAveragePool, MaxPool, PoolAttrs, Relu};
use gradcam::{Graph, GraphBuilder, ValueId};

/// Adds conv → batch-norm (→ relu) with random weights; returns the output value.
fn conv_bn(b: &mut GraphBuilder<impl Element>, name: &str, x: ValueId, cout: usize, k: usize, stride: usize, relu: bool, seed: &mut u64) -> ValueId {
    conv_bn_generic(b, name, x, cout, k, stride, relu, seed)
}

fn conv_bn_generic<T: Element>(b: &mut GraphBuilder<T>, name: &str, x: ValueId, cout: usize, k: usize, stride: usize, relu: bool, seed: &mut u64) -> ValueId {
    let cin = b.shape(x)[1];
    *seed += 1;
    let scale = (2.0 / (cin * k * k) as f64).sqrt();
    let w = random::<T>(&[cout, cin, k, k], *seed).mapv(|v| v * T::lit(scale));
    let w = b.constant(&format!("{name}.weight"), w).unwrap();
    let conv = b.node(&format!("{name}.conv"), Conv::new(stride, k / 2), &[x, w]).unwrap();
    let mut bn_params = Vec::new();
    for (p, lo) in [("gamma", 0.5), ("beta", 0.0), ("mean", 0.0), ("var", 0.8)] {
        *seed += 1;
        let v = random::<T>(&[cout], *seed).mapv(|v| T::lit(lo) + v.abs() * T::lit(0.3));
        bn_params.push(b.constant(&format!("{name}.bn.{p}"), v).unwrap());
    }
    let inputs = [conv, bn_params[0], bn_params[1], bn_params[2], bn_params[3]];
    let bn = b.node(&format!("{name}.bn"), BatchNormalization::default(), &inputs).unwrap();
    if relu {
        b.node(name, Relu, &[bn]).unwrap()
    } else {
        bn
    }
}

/// A small ResNet: stem, max-pool, `blocks` residual blocks, global pool and a linear classifier. The last block's
/// output value is named `layer_last`; logits are `logits`.
pub fn tiny_resnet<T: Element>(blocks: usize, width: usize, classes: usize) -> Graph<T> {
    tiny_resnet_sized(blocks, width, classes, 32)
}

/// [`tiny_resnet`] for `size × size` inputs.
pub fn tiny_resnet_sized<T: Element>(blocks: usize, width: usize, classes: usize, size: usize) -> Graph<T> {
    let mut seed = 100;
    let mut b = GraphBuilder::<T>::new();
    let x = b.input("input", &[1, 3, size, size]).unwrap();
    let mut h = conv_bn_generic(&mut b, "stem", x, width, 3, 2, true, &mut seed);
    h = b.node("maxpool", MaxPool(PoolAttrs::square(3, 2, 1)), &[h]).unwrap();
    for i in 0..blocks {
        let a = conv_bn(&mut b, &format!("block{i}.a"), h, width, 3, 1, true, &mut seed);
        let c = conv_bn(&mut b, &format!("block{i}.b"), a, width, 3, 1, false, &mut seed);
        let s = b.node(&format!("block{i}.add"), Add, &[c, h]).unwrap();
        let name = if i + 1 == blocks { "layer_last".to_string() } else { format!("block{i}") };
        h = b.node(&name, Relu, &[s]).unwrap();
    }
    let p = b.node("avgpool", GlobalAveragePool, &[h]).unwrap();
    let f = b.node("flatten", Flatten::default(), &[p]).unwrap();
    seed += 1;
    let w = b.constant("fc.weight", random::<T>(&[classes, width], seed)).unwrap();
    let bias = b.constant("fc.bias", random::<T>(&[classes], seed + 1)).unwrap();
    let logits = b.node("logits", Gemm::linear(), &[f, w, bias]).unwrap();
    b.output(logits);
    b.build()
}

/// A one-hot seed on `class` for logits of shape `[1, classes]`.
pub fn one_hot<T: Element>(classes: usize, class: usize) -> Tensor<T> {
    let mut t = Tensor::zeros(ndarray::IxDyn(&[1, classes]));
    t[[0, class]] = T::one();
    t
}
