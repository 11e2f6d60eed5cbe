//! ONNX exports traced at a fixed batch (PyTorch writes `x.view(B, -1)` as `Reshape` to `[B, -1]`): the importer
//! unties the batch from such reshapes, so the model takes one image or any batch, and computes at its traced batch
//! exactly what it computed.

mod common;

use gradcam::onnx::proto::*;
use gradcam::{Graph, Tensor};
use ndarray::Axis;
use prost::Message;

const BATCH: usize = 3;

/// `x: [3, 3, 8, 8]` → Conv 3→4 (3×3, pad 1) → Relu → GlobalAveragePool → `head` → Gemm with `[5, 4]`: the logits.
fn classifier(head: NodeProto, extra: Vec<TensorProto>) -> Vec<u8> {
    let floats = |name: &str, dims: Vec<i64>, seed: usize| {
        let len = dims.iter().product::<i64>() as usize;
        let float_data = (0..len).map(|i| (((i + seed) * 37 % 19) as f32 - 9.0) / 20.0).collect();
        TensorProto { name: name.into(), dims, data_type: dtype::FLOAT, float_data, ..Default::default() }
    };
    let node = common::onnx_node;
    let pads = AttributeProto { name: "pads".into(), r#type: 7, ints: vec![1, 1, 1, 1], ..Default::default() };
    let trans_b = AttributeProto { name: "transB".into(), r#type: 2, i: 1, ..Default::default() };
    let mut initializer = vec![floats("w", vec![4, 3, 3, 3], 0), floats("fc", vec![5, 4], 7)];
    initializer.extend(extra);
    let nodes = vec![
        node("Conv", "x,w", "conv", vec![pads]),
        node("Relu", "conv", "relu", vec![]),
        node("GlobalAveragePool", "relu", "pool", vec![]),
        head,
        node("Gemm", "flat,fc", "logits", vec![trans_b]),
    ];
    common::onnx_model(nodes, initializer, common::onnx_value_info("x", &[BATCH as i64, 3, 8, 8]), "logits")
        .encode_to_vec()
}

/// The shape operand of a `Reshape` of the pooled `[B, 4, 1, 1]` values.
fn shape_tensor(dims: Vec<i64>) -> TensorProto {
    TensorProto { name: "shape".into(), dims: vec![2], data_type: dtype::INT64, int64_data: dims, ..Default::default() }
}

fn load(bytes: &[u8], name: &str) -> Graph<f32> {
    let path = std::env::temp_dir().join(format!("gradcam-fixed-batch-{}-{name}.onnx", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let graph = gradcam::onnx::load(&path).unwrap().graph;
    let _ = std::fs::remove_file(&path);
    graph
}

fn logits(g: &Graph<f32>, x: Tensor<f32>) -> Tensor<f32> {
    let plan = g.inference_plan(&["logits"]).unwrap();
    g.forward(&plan, vec![("x", x)]).unwrap().get("logits").unwrap().clone()
}

#[test]
fn an_export_traced_at_a_fixed_batch_takes_any_batch_and_computes_the_same() {
    let reshape = common::onnx_node("Reshape", "pool,shape", "flat", vec![]);
    let traced = load(&classifier(reshape, vec![shape_tensor(vec![BATCH as i64, -1])]), "traced");
    let flatten = common::onnx_node("Flatten", "pool", "flat", vec![]);
    let agnostic = load(&classifier(flatten, vec![]), "agnostic");
    assert!(traced.accepts_batch(1) && traced.accepts_batch(BATCH) && traced.accepts_batch(8));
    let x: Tensor<f32> = common::random(&[BATCH, 3, 8, 8], 11);
    let whole = logits(&traced, x.clone());
    assert_eq!(whole, logits(&agnostic, x.clone()), "the traced batch computes what a Flatten export computes");
    for (i, item) in x.axis_iter(Axis(0)).enumerate() {
        let alone = logits(&traced, item.insert_axis(Axis(0)).to_owned());
        assert_eq!(alone.index_axis(Axis(0), 0), whole.index_axis(Axis(0), i), "image {i} alone");
    }
}

/// `allowzero = 1` (opset 14): a shape without zeros means what it means without the attribute; a 0 would ask for
/// an empty dimension (not "copy the input's"), which the importer refuses with a clear error.
#[test]
fn reshape_allowzero_is_honoured_or_refused() {
    let allowzero = AttributeProto { name: "allowzero".into(), r#type: 2, i: 1, ..Default::default() };
    let reshape = common::onnx_node("Reshape", "pool,shape", "flat", vec![allowzero.clone()]);
    let with_attr = load(&classifier(reshape, vec![shape_tensor(vec![BATCH as i64, -1])]), "allowzero");
    let flatten = common::onnx_node("Flatten", "pool", "flat", vec![]);
    let agnostic = load(&classifier(flatten, vec![]), "allowzero-flatten");
    let x: Tensor<f32> = common::random(&[BATCH, 3, 8, 8], 5);
    assert_eq!(logits(&with_attr, x.clone()), logits(&agnostic, x));

    let reshape = common::onnx_node("Reshape", "pool,shape", "flat", vec![allowzero]);
    let path = std::env::temp_dir().join(format!("gradcam-allowzero-zero-{}.onnx", std::process::id()));
    std::fs::write(&path, classifier(reshape, vec![shape_tensor(vec![0, -1])])).unwrap();
    let Err(err) = gradcam::onnx::load(&path) else { panic!("a 0 with allowzero=1 is refused") };
    let err = err.to_string();
    let _ = std::fs::remove_file(&path);
    assert!(err.contains("allowzero") && err.contains("Reshape"), "{err}");
}
