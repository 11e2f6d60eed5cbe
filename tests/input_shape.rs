//! ONNX models exported with symbolic input sizes (`dynamic_axes` on height and width): sized by `--input-shape`,
//! by the first input file (an image's size, a `.npy`'s shape), or refused with a line that says how to size them.

mod common;

use gradcam::onnx::proto::*;
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gradcam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradcam")).args(args).output().expect("run gradcam")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradcam-input-shape-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn error_line(o: &Output) -> String {
    assert!(!o.status.success(), "expected a failure");
    let s = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(s.lines().count(), 1, "one line on stderr: {s}");
    s
}

fn dim(v: Option<i64>, p: &str) -> Dimension {
    Dimension { dim_value: v, dim_param: v.is_none().then(|| p.to_string()) }
}

/// A classifier `x: [N, 3, height, width]` → Conv 3→4 (3×3, pad 1) → Relu → GlobalAveragePool → Flatten → `[N, 4]`.
fn symbolic_classifier(path: &Path) {
    let w = TensorProto {
        name: "w".into(),
        dims: vec![4, 3, 3, 3],
        data_type: dtype::FLOAT,
        float_data: (0..108).map(|i| ((i * 37 % 19) as f32 - 9.0) / 20.0).collect(),
        ..Default::default()
    };
    let node = common::onnx_node;
    let pads = AttributeProto { name: "pads".into(), r#type: 7, ints: vec![1, 1, 1, 1], ..Default::default() };
    let input = ValueInfoProto {
        name: "x".into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: dtype::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: vec![dim(None, "N"), dim(Some(3), ""), dim(None, "height"), dim(None, "width")],
                }),
            }),
        }),
    };
    let nodes = vec![
        node("Conv", "x,w", "conv", vec![pads]),
        node("Relu", "conv", "relu", vec![]),
        node("GlobalAveragePool", "relu", "pool", vec![]),
        node("Flatten", "pool", "logits", vec![]),
    ];
    let model = common::onnx_model(nodes, vec![w], input, "logits");
    std::fs::write(path, model.encode_to_vec()).unwrap();
}

/// The shape `gradcam layers --json` reports for `layer`.
fn layer_shape(o: &Output, layer: &str) -> Vec<u64> {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["layer"] == layer)
        .map(|v| v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect())
        .unwrap_or_else(|| panic!("no layer {layer}"))
}

#[test]
fn symbolic_sizes_come_from_input_shape_or_are_refused_with_advice() {
    let dir = scratch("flag");
    let model = dir.join("dynamic.onnx");
    symbolic_classifier(&model);
    let m = model.to_str().unwrap();
    let e = error_line(&gradcam(&["layers", "--model", m]));
    assert!(e.contains("'height' on axis 2") && e.contains("--input-shape"), "{e}");
    for given in ["1,3,32,48", "x=1,3,32,48"] {
        let o = gradcam(&["layers", "--json", "--model", m, "--input-shape", given]);
        assert_eq!(layer_shape(&o, "relu"), [1, 4, 32, 48], "{given}");
    }
    // Sizes that contradict the model's fixed ones, or are not sizes at all.
    let e = error_line(&gradcam(&["layers", "--model", m, "--input-shape", "1,5,32,48"]));
    assert!(e.contains("does not fit input 'x'"), "{e}");
    for bad in ["1,3,0,4", "1,3,a,4", "=1,3", ""] {
        let o = gradcam(&["layers", "--model", m, "--input-shape", bad]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains("--input-shape"), "{bad}: {e}");
    }
}

#[test]
fn symbolic_sizes_come_from_the_first_image_or_npy() {
    let dir = scratch("files");
    let model = dir.join("dynamic.onnx");
    symbolic_classifier(&model);
    let m = model.to_str().unwrap();
    // explain: the image's own size (chelsea.png is 451 × 300).
    let cat = common::fixture("images/chelsea.png");
    let out = dir.join("out");
    let o = gradcam(&["explain", cat.to_str().unwrap(), "--model", m, "--json", "--out-dir", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cam_size"], serde_json::json!([451, 300]), "[width, height]");
    assert_eq!(v["explanations"][0]["layer"], "relu");
    // infer: the .npy's shape, every item of its batch.
    let x = ndarray::Array4::<f32>::from_shape_fn((2, 3, 6, 5), |(n, c, y, x)| (n + c + y * x) as f32 / 10.0);
    let input = dir.join("x.npy");
    ndarray_npy::write_npy(&input, &x).unwrap();
    let o = gradcam(&[
        "infer",
        "--model",
        m,
        "--input",
        input.to_str().unwrap(),
        "--json",
        "--out-dir",
        dir.join("inferred").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let y: ndarray::ArrayD<f32> = ndarray_npy::read_npy(v["outputs"][0]["npy"].as_str().unwrap()).unwrap();
    assert_eq!(y.shape(), [2, 4]);
}
