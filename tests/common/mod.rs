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
    a.iter().zip(b.iter()).map(|(&x, &y)| (x.to_f64().unwrap() - y).abs() / (atol + rtol * y.abs())).fold(0.0, f64::max)
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

/// Builds conv → batch-norm (→ relu) stacks with seeded random weights.
struct Net<T: Element> {
    b: GraphBuilder<T>,
    seed: u64,
}

impl<T: Element> Net<T> {
    fn next_seed(&mut self) -> u64 {
        self.seed += 1;
        self.seed
    }

    /// `k × k` conv with stride `stride` and "same" padding, batch-norm, then ReLU if `relu`.
    fn conv_bn(&mut self, name: &str, x: ValueId, (cout, k, stride): (usize, usize, usize), relu: bool) -> ValueId {
        let cin = self.b.shape(x)[1];
        let scale = (2.0 / (cin * k * k) as f64).sqrt();
        let seed = self.next_seed();
        let w = random::<T>(&[cout, cin, k, k], seed).mapv(|v| v * T::lit(scale));
        let w = self.b.constant(&format!("{name}.weight"), w).unwrap();
        let conv = self.b.node(&format!("{name}.conv"), Conv::new(stride, k / 2), &[x, w]).unwrap();
        let mut inputs = vec![conv];
        for (p, lo) in [("gamma", 0.5), ("beta", 0.0), ("mean", 0.0), ("var", 0.8)] {
            let seed = self.next_seed();
            let v = random::<T>(&[cout], seed).mapv(|v| T::lit(lo) + v.abs() * T::lit(0.3));
            inputs.push(self.b.constant(&format!("{name}.bn.{p}"), v).unwrap());
        }
        let bn = self.b.node(&format!("{name}.bn"), BatchNormalization::default(), &inputs).unwrap();
        if relu {
            self.b.node(name, Relu, &[bn]).unwrap()
        } else {
            bn
        }
    }
}

/// A small ResNet: stem, max-pool, `blocks` residual blocks, global pool and a linear classifier. The last block's
/// output value is named `layer_last`; logits are `logits`.
pub fn tiny_resnet<T: Element>(blocks: usize, width: usize, classes: usize) -> Graph<T> {
    tiny_resnet_sized(blocks, width, classes, 32)
}

/// [`tiny_resnet`] for `size × size` inputs.
pub fn tiny_resnet_sized<T: Element>(blocks: usize, width: usize, classes: usize, size: usize) -> Graph<T> {
    let mut net = Net { b: GraphBuilder::<T>::new(), seed: 100 };
    let x = net.b.input("input", &[1, 3, size, size]).unwrap();
    let mut h = net.conv_bn("stem", x, (width, 3, 2), true);
    h = net.b.node("maxpool", MaxPool(PoolAttrs::square(3, 2, 1)), &[h]).unwrap();
    for i in 0..blocks {
        let a = net.conv_bn(&format!("block{i}.a"), h, (width, 3, 1), true);
        let c = net.conv_bn(&format!("block{i}.b"), a, (width, 3, 1), false);
        let s = net.b.node(&format!("block{i}.add"), Add, &[c, h]).unwrap();
        let name = if i + 1 == blocks { "layer_last".to_string() } else { format!("block{i}") };
        h = net.b.node(&name, Relu, &[s]).unwrap();
    }
    let p = net.b.node("avgpool", GlobalAveragePool, &[h]).unwrap();
    let f = net.b.node("flatten", Flatten::default(), &[p]).unwrap();
    let seed = net.next_seed();
    let w = net.b.constant("fc.weight", random::<T>(&[classes, width], seed)).unwrap();
    let bias = net.b.constant("fc.bias", random::<T>(&[classes], seed + 1)).unwrap();
    let logits = net.b.node("logits", Gemm::linear(), &[f, w, bias]).unwrap();
    net.b.output(logits);
    net.b.build()
}

/// A one-hot seed on `class` for logits of shape `[1, classes]`.
pub fn one_hot<T: Element>(classes: usize, class: usize) -> Tensor<T> {
    let mut t = Tensor::zeros(ndarray::IxDyn(&[1, classes]));
    t[[0, class]] = T::one();
    t
}

/// The test photos side by side, cat left and espresso right, each squeezed to `side × side`.
pub fn cat_and_espresso(side: u32) -> image::RgbImage {
    use gradcam::input::decode_image;
    let cat = decode_image(&fixture("images/chelsea.png")).unwrap();
    let cup = decode_image(&fixture("images/coffee.png")).unwrap();
    let cat = image::imageops::resize(&cat, side, side, image::imageops::FilterType::Triangle);
    let cup = image::imageops::resize(&cup, side, side, image::imageops::FilterType::Triangle);
    let mut composite = image::RgbImage::new(2 * side, side);
    image::imageops::replace(&mut composite, &cat, 0, 0);
    image::imageops::replace(&mut composite, &cup, side as i64, 0);
    composite
}

/// An ONNX `ValueInfoProto` of f32 tensors with fixed `dims` (empty: shape left to inference).
pub fn onnx_value_info(name: &str, dims: &[i64]) -> gradcam::onnx::proto::ValueInfoProto {
    use gradcam::onnx::proto::{dtype, Dimension, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto};
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: dtype::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|&d| Dimension { dim_value: Some(d), dim_param: None }).collect(),
                }),
            }),
        }),
    }
}

/// An opset-17 ONNX model of the graph `node` with its `initializer`, one `input` and one output `output` (shape left
/// to inference).
pub fn onnx_model(
    node: Vec<gradcam::onnx::proto::NodeProto>,
    initializer: Vec<gradcam::onnx::proto::TensorProto>,
    input: gradcam::onnx::proto::ValueInfoProto,
    output: &str,
) -> gradcam::onnx::proto::ModelProto {
    use gradcam::onnx::proto::{GraphProto, ModelProto, OperatorSetIdProto};
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "test".into(),
        graph: Some(GraphProto {
            node,
            name: "g".into(),
            initializer,
            input: vec![input],
            output: vec![onnx_value_info(output, &[])],
        }),
    }
}

/// An ONNX node named after its one output, reading the comma-separated `inputs`.
pub fn onnx_node(
    op: &str,
    inputs: &str,
    output: &str,
    attribute: Vec<gradcam::onnx::proto::AttributeProto>,
) -> gradcam::onnx::proto::NodeProto {
    gradcam::onnx::proto::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.split(',').map(str::to_string).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

/// Pearson correlation of two equally long, non-empty sequences (the library's, with the lengths checked).
pub fn pearson(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    assert!(!a.is_empty(), "nothing to correlate");
    gradcam::attack::pearson(a, b) as f64
}

/// The largest difference relative to the reference's largest magnitude; the lengths must agree and the reference
/// must not be empty.
pub fn relative_error(ours: &[f32], want: &[f32]) -> f32 {
    assert_eq!(ours.len(), want.len(), "compared lengths");
    assert!(!want.is_empty(), "an empty reference");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    max_abs_diff(ours, want) / scale
}

/// Pairs two sequences that must be equally long: a comparison that zips a shorter (or empty) side would pass
/// without looking at the rest.
pub fn pairs<A, B>(a: A, b: B) -> std::iter::Zip<A::IntoIter, B::IntoIter>
where
    A: IntoIterator,
    B: IntoIterator,
    A::IntoIter: ExactSizeIterator,
    B::IntoIter: ExactSizeIterator,
{
    let (a, b) = (a.into_iter(), b.into_iter());
    assert_eq!(a.len(), b.len(), "compared sequences differ in length");
    a.zip(b)
}

/// Largest `|a − b|` over two equally long, non-empty sequences.
pub fn max_abs_diff<'a, 'b, A, B>(a: A, b: B) -> f32
where
    A: IntoIterator<Item = &'a f32>,
    B: IntoIterator<Item = &'b f32>,
    A::IntoIter: ExactSizeIterator,
    B::IntoIter: ExactSizeIterator,
{
    let pairs = pairs(a, b);
    assert!(pairs.len() > 0, "nothing compared");
    // Equal values differ by 0, infinities included (∞ − ∞ would be NaN).
    worst(pairs.map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() }))
}

/// The largest of non-negative errors, NaN winning (`f32::max` would drop it), so that a NaN fails every
/// `< tolerance` check; 0 for none.
pub fn worst(errors: impl Iterator<Item = f32>) -> f32 {
    errors.fold(0f32, |m, d| if d.is_nan() || d > m { d } else { m })
}
