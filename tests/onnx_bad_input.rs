//! Corrupt or hostile ONNX files give typed errors with bounded memory, never a panic.

mod common;

use gradcam::onnx::proto::*;
use gradcam::onnx::{load, parse};
use gradcam::Error;
use prost::Message;

use common::onnx_value_info as value_info;

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, initializers: Vec<TensorProto>, output: &str) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "test".into(),
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: initializers,
            input: vec![value_info("x", &[1, 2, 4, 4])],
            output: vec![value_info(output, &[])],
        }),
    }
    .encode_to_vec()
}

fn err(bytes: &[u8]) -> String {
    match parse(bytes, None, "test.onnx") {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_valid_hand_built_model_imports() {
    let bytes = model(vec![node("Relu", "r", &["x"], &["y"])], vec![], "y");
    let m = parse(&bytes, None, "test.onnx").unwrap();
    assert_eq!(m.inputs, ["x"]);
    assert_eq!(m.graph.value(m.graph.find("y").unwrap()).shape, vec![1, 2, 4, 4]);
}

#[test]
fn truncated_and_garbage_files_are_errors() {
    let bytes = std::fs::read(common::fixture("onnx/light/light_squeezenet.onnx")).unwrap();
    for cut in [1, 10, 100, 1000, bytes.len() / 2, bytes.len() - 3] {
        let e = parse(&bytes[..cut], None, "cut.onnx").unwrap_err();
        assert!(matches!(e, Error::Onnx { .. }), "{cut}: {e}");
    }
    assert!(err(b"definitely not protobuf \xff\xff\xff").contains("test.onnx"));
    assert!(err(&[]).contains("no graph"));
}

#[test]
fn cycles_are_errors_naming_nodes() {
    let e =
        err(&model(vec![node("Relu", "first", &["b"], &["a"]), node("Relu", "second", &["a"], &["b"])], vec![], "b"));
    assert!(e.contains("cycle") && e.contains("first") && e.contains("second"), "{e}");
}

#[test]
fn missing_initializers_are_errors_naming_the_value() {
    let e = err(&model(vec![node("Conv", "conv1", &["x", "conv1.weight"], &["y"])], vec![], "y"));
    assert!(e.contains("conv1") && e.contains("'conv1.weight'"), "{e}");
}

#[test]
fn dims_claiming_terabytes_or_negative_sizes_are_errors() {
    let huge = TensorProto {
        name: "w".into(),
        dims: vec![1 << 20, 1 << 20, 1 << 10],
        data_type: dtype::FLOAT,
        raw_data: vec![0; 16].into(),
        ..Default::default()
    };
    let e = err(&model(vec![node("Add", "add", &["x", "w"], &["y"])], vec![huge], "y"));
    assert!(e.contains("more than"), "{e}");
    let negative = TensorProto { name: "w".into(), dims: vec![-1, 3], data_type: dtype::FLOAT, ..Default::default() };
    let e = err(&model(vec![node("Add", "add", &["x", "w"], &["y"])], vec![negative], "y"));
    assert!(e.contains("negative"), "{e}");
    // Raw data shorter than the shape says.
    let short = TensorProto {
        name: "w".into(),
        dims: vec![4],
        data_type: dtype::FLOAT,
        raw_data: vec![0; 8].into(),
        ..Default::default()
    };
    assert!(err(&model(vec![node("Add", "add", &["x", "w"], &["y"])], vec![short], "y")).contains("needs 16"));
    // A ConstantOfShape asked for 2^60 elements.
    let shape = TensorProto {
        name: "s".into(),
        dims: vec![3],
        data_type: dtype::INT64,
        int64_data: vec![1 << 20, 1 << 20, 1 << 20],
        ..Default::default()
    };
    let e = err(&model(
        vec![node("ConstantOfShape", "cos", &["s"], &["c"]), node("Add", "add", &["x", "c"], &["y"])],
        vec![shape],
        "y",
    ));
    assert!(e.contains("more than"), "{e}");
}

#[test]
fn unsupported_ops_list_type_node_opset_and_the_supported_set() {
    let e = parse(&model(vec![node("Tile", "tile1", &["x", "x"], &["y"])], vec![], "y"), None, "t.onnx").unwrap_err();
    assert!(matches!(e, Error::UnsupportedOp { .. }));
    let msg = e.to_string();
    assert!(msg.contains("Tile") && msg.contains("tile1") && msg.contains("opset 17") && msg.contains("Conv"), "{msg}");
}

#[test]
fn external_data_may_not_leave_the_model_directory() {
    let t = TensorProto {
        name: "w".into(),
        dims: vec![1],
        data_type: dtype::FLOAT,
        data_location: 1,
        external_data: vec![StringStringEntryProto { key: "location".into(), value: "../../etc/passwd".into() }],
        ..Default::default()
    };
    let bytes = model(vec![node("Add", "add", &["x", "w"], &["y"])], vec![t], "y");
    let e = parse(&bytes, Some(std::path::Path::new("/tmp")), "ext.onnx").unwrap_err().to_string();
    assert!(e.contains("leaves the model's directory"), "{e}");
}

#[test]
fn unreadable_file_names_the_path() {
    let e = load(std::path::Path::new("/nonexistent/model.onnx")).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/model.onnx"), "{e}");
}
