//! Hostile inputs (issue #11): each case is generated here, at test time, and must give one clear error line and a
//! non-zero exit — never an abort, a panic, a hang, a read outside the model's folder, or a huge allocation.

mod common;

use gradcam::onnx::proto::*;
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gradcam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradcam")).args(args).output().expect("run gradcam")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradcam-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The one stderr line of a failed run (asserting that it failed cleanly: exit code 1, not a signal or a panic).
fn error_line(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(o.status.code(), Some(1), "expected a clean failure, got {:?}: {err}", o.status);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "expected one line on stderr, got: {err}");
    err
}

/// A `.npy` whose header claims `shape` but which holds only `data_bytes` bytes of data.
fn npy_claiming(path: &Path, shape: &[usize], data_bytes: usize) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let trailing = if shape.len() == 1 { "," } else { "" };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}{trailing}), }}", dims.join(", "));
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, data_bytes));
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn npy_headers_claiming_more_than_the_file_holds_are_errors_not_aborts() {
    let dir = scratch("npy");
    let huge = dir.join("huge.npy");
    npy_claiming(&huge, &[100_000, 3, 224, 224], 1000);
    let model = common::fixture("onnx/light/light_squeezenet.onnx");
    let out = dir.join("out");
    for args in [
        vec!["explain", huge.to_str().unwrap(), "--out-dir", out.to_str().unwrap()],
        vec!["attack", huge.to_str().unwrap(), "--out-dir", out.to_str().unwrap()],
        vec!["infer", "--model", model.to_str().unwrap(), "--input", huge.to_str().unwrap()],
    ] {
        let e = error_line(&gradcam(&args));
        assert!(e.contains("header claims shape [100000, 3, 224, 224]") && e.contains("holds"), "{args:?}: {e}");
    }
    // A shape whose byte count overflows, and a file longer than its header says.
    let overflow = dir.join("overflow.npy");
    npy_claiming(&overflow, &[1 << 40, 1 << 40, 3, 3], 16);
    assert!(error_line(&gradcam(&["explain", overflow.to_str().unwrap()])).contains("beyond any file"));
    let long = dir.join("long.npy");
    npy_claiming(&long, &[1, 3, 2, 2], 48 + 4);
    assert!(error_line(&gradcam(&["explain", long.to_str().unwrap()])).contains("holds"));
}

/// Found by the npy_read fuzzer: a 148-byte `.npy` whose header nests braces (`{{ { { …`) kept the header parser
/// backtracking for seconds (4 s under ASAN, a timeout when the machine was busy). Such a header is refused before
/// that parser runs (the input is kept as fuzz/seeds/npy_read/regression-nested-braces-timeout).
#[test]
fn npy_headers_with_nested_braces_are_refused() {
    let dir = scratch("npy-nested");
    let path = dir.join("nested.npy");
    std::fs::write(&path, include_bytes!("../fuzz/seeds/npy_read/regression-nested-braces-timeout")).unwrap();
    let e = gradcam::input::read_npy_f32(&path).unwrap_err().to_string();
    assert!(e.contains("not a plain"), "{e}");
    // A regular header still reads.
    let ok = dir.join("ok.npy");
    npy_claiming(&ok, &[1, 3, 2, 2], 48);
    assert_eq!(gradcam::input::read_npy_f32(&ok).unwrap().shape(), [1, 3, 2, 2]);
}

#[test]
fn empty_batches_are_errors() {
    let dir = scratch("empty");
    let empty = dir.join("empty.npy");
    npy_claiming(&empty, &[0, 3, 224, 224], 0);
    let out = dir.join("out");
    let e = error_line(&gradcam(&["explain", empty.to_str().unwrap(), "--out-dir", out.to_str().unwrap()]));
    assert!(e.contains("no image"), "{e}");
    let e = error_line(&gradcam(&["attack", empty.to_str().unwrap(), "--out-dir", out.to_str().unwrap()]));
    assert!(e.contains("one image") && e.contains("holds 0"), "{e}");
}

#[test]
fn flags_out_of_range_are_errors_before_anything_is_written() {
    let dir = scratch("flags");
    let out = dir.join("out");
    let cat = common::fixture("images/chelsea.png");
    let cat = cat.to_str().unwrap();
    let o = out.to_str().unwrap();
    for (args, needle) in [
        (vec!["explain", cat, "--top", "0", "--out-dir", o], "--top"),
        (vec!["attack", cat, "--confidence", "2", "--out-dir", o], "--confidence"),
        (vec!["attack", cat, "--confidence=-0.5", "--out-dir", o], "--confidence"),
        (vec!["attack", cat, "--steps", "1000000", "--out-dir", o], "--steps"),
        (vec!["attack", cat, "--explain", "5000", "--out-dir", o], "out of range"),
        (vec!["attack", cat, "--target", "1000", "--out-dir", o], "out of range"),
        (vec!["explain", cat, "--batch-size", "0", "--out-dir", o], "--batch-size"),
    ] {
        let e = error_line(&gradcam(&args));
        assert!(e.contains(needle), "{args:?}: {e}");
        assert!(!out.exists(), "{args:?} wrote {} before failing", out.display());
    }
}

use common::onnx_value_info as value_info;

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: 7, ints: v.to_vec(), ..Default::default() }
}

/// A one-node model on `x: [1, 3, 4, 4]`, written to `path`.
fn one_node_model(path: &Path, node: NodeProto, initializers: Vec<TensorProto>) {
    let out = node.output[0].clone();
    let bytes = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "hostile".into(),
        graph: Some(GraphProto {
            node: vec![node],
            name: "g".into(),
            initializer: initializers,
            input: vec![value_info("x", &[1, 3, 4, 4])],
            output: vec![value_info(&out, &[])],
        }),
    }
    .encode_to_vec();
    std::fs::write(path, bytes).unwrap();
}

/// A 3×3 convolution `conv` (one output channel) on `x` with one extra attribute, written to `path`.
fn conv_model(path: &Path, attribute: AttributeProto) {
    let w = TensorProto {
        name: "w".into(),
        dims: vec![1, 3, 3, 3],
        data_type: dtype::FLOAT,
        float_data: vec![0.5; 27],
        ..Default::default()
    };
    let node = NodeProto {
        op_type: "Conv".into(),
        name: "conv".into(),
        input: vec!["x".into(), "w".into()],
        output: vec!["y".into()],
        attribute: vec![attribute],
        ..Default::default()
    };
    one_node_model(path, node, vec![w]);
}

fn int_tensor(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: dtype::INT64,
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

#[test]
fn pads_near_the_limits_of_i64_are_errors_not_panics_or_zeros() {
    let dir = scratch("pads");
    let huge = i64::MAX - 3;
    // Pad (opset 17: pads as an input).
    let pad = dir.join("pad.onnx");
    let node = NodeProto {
        op_type: "Pad".into(),
        name: "pad".into(),
        input: vec!["x".into(), "pads".into()],
        output: vec!["y".into()],
        ..Default::default()
    };
    one_node_model(&pad, node, vec![int_tensor("pads", &[0, 0, 0, huge, 0, 0, 0, 1])]);
    let e = error_line(&gradcam(&["layers", "--model", pad.to_str().unwrap()]));
    assert!(e.contains("pads") && e.contains("above"), "{e}");
    // Conv with huge pads: used to wrap around and return zeros with exit 0.
    let conv = dir.join("conv.onnx");
    conv_model(&conv, ints("pads", &[huge, 0, huge, 0]));
    let e = error_line(&gradcam(&["layers", "--model", conv.to_str().unwrap()]));
    assert!(e.contains("pads") && e.contains("above"), "{e}");
}

#[cfg(unix)]
#[test]
fn external_data_may_not_follow_links_out_of_the_models_folder() {
    let dir = scratch("links");
    let secret_dir = dir.join("elsewhere");
    std::fs::create_dir_all(&secret_dir).unwrap();
    let secret: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(secret_dir.join("secret.bin"), &secret).unwrap();
    let model_dir = dir.join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    std::os::unix::fs::symlink(secret_dir.join("secret.bin"), model_dir.join("weights.bin")).unwrap();
    std::os::unix::fs::symlink(&secret_dir, model_dir.join("data")).unwrap();
    std::fs::write(model_dir.join("inside.bin"), &secret).unwrap();
    let entry = |k: &str, v: &str| StringStringEntryProto { key: k.into(), value: v.into() };
    for (location, allowed) in [("inside.bin", true), ("weights.bin", false), ("data/secret.bin", false)] {
        let w = TensorProto {
            name: "w".into(),
            dims: vec![4],
            data_type: dtype::FLOAT,
            data_location: 1,
            external_data: vec![entry("location", location), entry("length", "16")],
            ..Default::default()
        };
        let path = model_dir.join("m.onnx");
        let node = NodeProto {
            op_type: "Add".into(),
            name: "add".into(),
            input: vec!["x".into(), "w".into()],
            output: vec!["y".into()],
            ..Default::default()
        };
        one_node_model(&path, node, vec![w]);
        let x = model_dir.join("x.npy");
        ndarray_npy::write_npy(&x, &ndarray::Array4::<f32>::zeros((1, 3, 4, 4))).unwrap();
        let out = dir.join("out");
        let o = gradcam(&[
            "infer",
            "--model",
            path.to_str().unwrap(),
            "--input",
            x.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ]);
        if allowed {
            assert!(o.status.success(), "{location}: {}", String::from_utf8_lossy(&o.stderr));
        } else {
            let e = error_line(&o);
            assert!(e.contains("outside the model's directory"), "{location}: {e}");
        }
    }
}

#[test]
fn inputs_with_the_same_stem_get_distinct_outputs() {
    let dir = scratch("stems");
    for sub in ["a", "b"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::copy(common::fixture("images/chelsea.png"), dir.join(sub).join("img.png")).unwrap();
    }
    let out = dir.join("out");
    let (a, b) = (dir.join("a/img.png"), dir.join("b/img.png"));
    let o =
        gradcam(&["explain", a.to_str().unwrap(), b.to_str().unwrap(), "--json", "--out-dir", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let overlays: Vec<String> = o
        .stdout
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            v["explanations"][0]["overlay"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(overlays.len(), 2);
    assert_ne!(overlays[0], overlays[1], "both inputs point at one file");
    assert!(overlays.iter().all(|p| Path::new(p).exists()));
    assert!(overlays[1].contains("img_2_"), "{overlays:?}");
}

/// A model with outputs named `a/b`, `a:b` and `x`, each a ReLU of the input.
fn three_output_model(path: &Path) {
    let relu = |name: &str, out: &str| NodeProto {
        op_type: "Relu".into(),
        name: name.into(),
        input: vec!["x_in".into()],
        output: vec![out.into()],
        ..Default::default()
    };
    let bytes = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "hostile".into(),
        graph: Some(GraphProto {
            node: vec![relu("r1", "a/b"), relu("r2", "a:b"), relu("r3", "x")],
            name: "g".into(),
            initializer: vec![],
            input: vec![value_info("x_in", &[1, 3, 4, 4])],
            output: vec![value_info("a/b", &[]), value_info("a:b", &[]), value_info("x", &[])],
        }),
    }
    .encode_to_vec();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn infer_never_maps_two_outputs_to_one_file_nor_overwrites_its_input() {
    let dir = scratch("infer-names");
    let model = dir.join("m.onnx");
    three_output_model(&model);
    // The input lives where the output named `x` would go.
    let input = dir.join("x.npy");
    let x = ndarray::Array4::<f32>::from_elem((1, 3, 4, 4), -1.0);
    ndarray_npy::write_npy(&input, &x).unwrap();
    let o = gradcam(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out-dir",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let files: Vec<&str> = v["outputs"].as_array().unwrap().iter().map(|o| o["npy"].as_str().unwrap()).collect();
    assert_eq!(files.len(), 3);
    let unique: std::collections::HashSet<&&str> = files.iter().collect();
    assert_eq!(unique.len(), 3, "{files:?}");
    assert!(!files.contains(&input.to_str().unwrap()), "{files:?}");
    let kept: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&input).unwrap();
    assert!(kept.iter().all(|&v| v == -1.0), "the input was overwritten");
}

#[test]
fn nan_weights_nan_inputs_and_symbolic_sizes_are_errors() {
    let dir = scratch("nan");
    // An initializer holding NaN: named in the error.
    let w = TensorProto {
        name: "bad_weight".into(),
        dims: vec![4],
        data_type: dtype::FLOAT,
        float_data: vec![1.0, f32::NAN, 0.0, 2.0],
        ..Default::default()
    };
    let node = NodeProto {
        op_type: "Add".into(),
        name: "add".into(),
        input: vec!["x".into(), "bad_weight".into()],
        output: vec!["y".into()],
        ..Default::default()
    };
    let model = dir.join("nan.onnx");
    one_node_model(&model, node, vec![w]);
    let e = error_line(&gradcam(&["layers", "--model", model.to_str().unwrap()]));
    assert!(e.contains("bad_weight") && e.contains("NaN"), "{e}");

    // A NaN in the input of `infer`.
    let relu = dir.join("relu.onnx");
    let node = NodeProto {
        op_type: "Relu".into(),
        name: "r".into(),
        input: vec!["x".into()],
        output: vec!["y".into()],
        ..Default::default()
    };
    one_node_model(&relu, node, vec![]);
    let input = dir.join("x.npy");
    let mut x = ndarray::Array4::<f32>::zeros((1, 3, 4, 4));
    x[[0, 1, 2, 3]] = f32::NAN;
    ndarray_npy::write_npy(&input, &x).unwrap();
    let e = error_line(&gradcam(&["infer", "--model", relu.to_str().unwrap(), "--input", input.to_str().unwrap()]));
    assert!(e.contains("NaN"), "{e}");

    // A symbolic height: it used to run at 1 × 1.
    let symbolic = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "hostile".into(),
        graph: Some(GraphProto {
            node: vec![NodeProto {
                op_type: "Relu".into(),
                name: "r".into(),
                input: vec!["x".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            name: "g".into(),
            initializer: vec![],
            input: vec![ValueInfoProto {
                name: "x".into(),
                r#type: Some(TypeProto {
                    tensor_type: Some(TensorTypeProto {
                        elem_type: dtype::FLOAT,
                        shape: Some(TensorShapeProto {
                            dim: vec![
                                Dimension { dim_value: None, dim_param: Some("N".into()) },
                                Dimension { dim_value: Some(3), dim_param: None },
                                Dimension { dim_value: None, dim_param: Some("height".into()) },
                                Dimension { dim_value: Some(4), dim_param: None },
                            ],
                        }),
                    }),
                }),
            }],
            output: vec![value_info("y", &[])],
        }),
    };
    let path = dir.join("symbolic.onnx");
    std::fs::write(&path, symbolic.encode_to_vec()).unwrap();
    let e = error_line(&gradcam(&["layers", "--model", path.to_str().unwrap()]));
    assert!(e.contains("symbolic size 'height' on axis 2"), "{e}");
}

/// A bad input among good ones: every input is tried, the failure is reported as a JSON line with an `error` field,
/// the good inputs still get their files, and the exit status is non-zero at the end; `--fail-fast` stops at it.
#[test]
fn one_bad_input_does_not_stop_the_others() {
    let dir = scratch("batch-errors");
    let bad = dir.join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n not really").unwrap();
    let cat = common::fixture("images/chelsea.png");
    let coffee = common::fixture("images/coffee.png");
    let out = dir.join("out");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = ["explain", cat.to_str().unwrap(), bad.to_str().unwrap(), coffee.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(["--json", "--batch-size", "2", "--out-dir", out.to_str().unwrap()].iter().map(|s| s.to_string()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |a: Vec<String>| Command::new(env!("CARGO_BIN_EXE_gradcam")).args(a).output().unwrap();
    let o = run(args(&[]));
    assert_eq!(o.status.code(), Some(1));
    let lines: Vec<serde_json::Value> =
        o.stdout.split(|&c| c == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "one JSON line per input");
    // Lines come as inputs finish (a failure to read is reported before the batch it would have joined).
    let of = |p: &Path| lines.iter().find(|l| l["input"] == p.to_str().unwrap()).unwrap_or_else(|| panic!("{p:?}"));
    assert_eq!(of(&cat)["predictions"][0]["class"], 285);
    assert_eq!(of(&coffee)["predictions"][0]["class"], 967);
    assert!(of(&bad)["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", of(&bad));
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 of 3 inputs failed"));
    for l in [of(&cat), of(&coffee)] {
        assert!(Path::new(l["explanations"][0]["overlay"].as_str().unwrap()).exists());
    }
    // --fail-fast: the first failure ends the run, with one line.
    let _ = std::fs::remove_dir_all(&out);
    let o = run(args(&["--fail-fast"]));
    let e = error_line(&o);
    assert!(e.contains("broken.png"), "{e}");
    let written = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    assert!(written <= 1, "nothing after the failure: {written} files");
}

/// Closing stdout (`| head -1`) does not end the run: every input still gets its files.
#[cfg(unix)]
#[test]
fn a_closed_stdout_still_writes_every_input() {
    use std::process::Stdio;
    let dir = scratch("closed-stdout");
    let out = dir.join("out");
    let cat = common::fixture("images/chelsea.png");
    let coffee = common::fixture("images/coffee.png");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradcam"))
        .args(["explain", cat.to_str().unwrap(), coffee.to_str().unwrap(), "--batch-size", "1", "--out-dir"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before anything is printed
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{:?} {}", o.status, String::from_utf8_lossy(&o.stderr));
    let pngs =
        std::fs::read_dir(&out).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png"));
    assert_eq!(pngs.count(), 2, "an overlay for each input");
}

/// A 2^28-element `ConstantOfShape` that feeds nothing the outputs need used to take 22 s and 11.5 GB: unused
/// nodes and initializers are now never materialized. The child runs under a 1.5 GB address-space limit
/// (`ulimit -v`), which the constant alone (2 GB of int64) would exceed.
#[cfg(unix)]
#[test]
fn unused_huge_constants_are_never_materialized() {
    let dir = scratch("unused");
    let node = |op: &str, name: &str, inputs: &[&str], out: &str| NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        ..Default::default()
    };
    let shape = int_tensor("shape", &[1 << 28]);
    let unused_weight = TensorProto {
        name: "unused_weight".into(),
        dims: vec![4],
        data_type: dtype::FLOAT,
        float_data: vec![f32::NAN; 4],
        ..Default::default()
    };
    let bytes = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "hostile".into(),
        graph: Some(GraphProto {
            node: vec![
                node("Relu", "r", &["x"], "y"),
                node("ConstantOfShape", "big", &["shape"], "c"),
                node("Add", "twice", &["c", "c"], "unused"),
            ],
            name: "g".into(),
            initializer: vec![shape, unused_weight],
            input: vec![value_info("x", &[1, 3, 4, 4])],
            output: vec![value_info("y", &[])],
        }),
    }
    .encode_to_vec();
    let model = dir.join("unused.onnx");
    std::fs::write(&model, bytes).unwrap();
    let input = dir.join("x.npy");
    ndarray_npy::write_npy(&input, &ndarray::Array4::<f32>::from_elem((1, 3, 4, 4), -2.0)).unwrap();
    let started = std::time::Instant::now();
    let o = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 1500000 && exec \"$0\" infer --model \"$1\" --input \"$2\" --out-dir \"$3\"")
        .arg(env!("CARGO_BIN_EXE_gradcam"))
        .args([&model, &input, &dir.join("out")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let secs = started.elapsed().as_secs_f64();
    assert!(secs < 10.0, "{secs:.1} s");
    let y: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.join("out").join("y.npy")).unwrap();
    assert!(y.iter().all(|&v| v == 0.0), "ReLU of −2");
}

/// A tiny file whose *used* constants fold into gigabytes (a `Range` of 2^27 elements — 2.6 GB before — or a
/// `ConstantOfShape` of 2^27) is refused at import from the folding budget (the file's own weights + 1 GiB, or
/// `--max-memory`), before anything is allocated: the child runs under a 1.5 GB address-space limit.
#[cfg(unix)]
#[test]
fn used_constants_that_fold_into_gigabytes_are_refused_before_allocating() {
    let dir = scratch("fold-budget");
    let node = |op: &str, inputs: &[&str], out: &str| NodeProto {
        op_type: op.into(),
        name: out.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        ..Default::default()
    };
    let cases = [
        (
            "range",
            vec![node("Range", &["start", "limit", "delta"], "r"), node("Add", &["x", "r"], "y")],
            vec![int_tensor("start", &[0]), int_tensor("limit", &[1 << 27]), int_tensor("delta", &[1])],
        ),
        (
            "fill",
            vec![
                NodeProto {
                    // Filled with int64 ones: 2 GiB.
                    attribute: vec![AttributeProto {
                        name: "value".into(),
                        r#type: 4,
                        t: Some(int_tensor("one", &[1])),
                        ..Default::default()
                    }],
                    ..node("ConstantOfShape", &["shape"], "r")
                },
                node("Add", &["x", "r"], "y"),
            ],
            vec![int_tensor("shape", &[1 << 27, 2])],
        ),
        (
            // 1 GiB of f32 zeros fits the budget; adding it to itself would copy it twice more before computing
            // (found in review): refused before any copy.
            "add",
            vec![
                node("ConstantOfShape", &["shape"], "c"),
                node("Add", &["c", "c"], "r"),
                node("Add", &["x", "r"], "y"),
            ],
            vec![int_tensor("shape", &[1 << 28])],
        ),
    ];
    for (name, nodes, initializer) in cases {
        let bytes = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
            producer_name: "hostile".into(),
            graph: Some(GraphProto {
                node: nodes,
                name: "g".into(),
                initializer,
                input: vec![value_info("x", &[1])],
                output: vec![value_info("y", &[])],
            }),
        }
        .encode_to_vec();
        let model = dir.join(format!("{name}.onnx"));
        std::fs::write(&model, bytes).unwrap();
        let o = Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 1500000 && exec \"$0\" layers --model \"$1\"")
            .arg(env!("CARGO_BIN_EXE_gradcam"))
            .arg(&model)
            .output()
            .unwrap();
        let e = error_line(&o);
        assert!(e.contains("folding") && e.contains("budget"), "{name}: {e}");
        // A budget given on the command line is the limit.
        let o = gradcam(&["layers", "--model", model.to_str().unwrap(), "--max-memory", "16M"]);
        let e = error_line(&o);
        assert!(e.contains("folding") && e.contains("--max-memory"), "{name}: {e}");
    }
}

/// A 29-byte GIF whose canvas claims 16000² pixels (it used to take 15–40 s and up to 7.8 GB) is refused from its
/// header; a truncated JPEG (decoders fill the missing part with grey) is an error, the complete one is not.
#[test]
fn images_claiming_huge_canvases_or_cut_short_are_errors() {
    let dir = scratch("images");
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&16000u16.to_le_bytes());
    gif.extend_from_slice(&16000u16.to_le_bytes());
    gif.extend_from_slice(&[0, 0, 0, b',', 0, 0, 0, 0]);
    gif.extend_from_slice(&16000u16.to_le_bytes());
    gif.extend_from_slice(&16000u16.to_le_bytes());
    gif.extend_from_slice(&[0, 2, 2, 0x4c, 1, 0, b';']);
    let big = dir.join("big.gif");
    std::fs::write(&big, &gif).unwrap();
    let started = std::time::Instant::now();
    let e = error_line(&gradcam(&["explain", big.to_str().unwrap(), "--out-dir", dir.join("out").to_str().unwrap()]));
    assert!(e.contains("16000×16000") && e.contains("--max-pixels"), "{e}");
    assert!(started.elapsed().as_secs_f64() < 5.0);

    let cat = image::open(common::fixture("images/chelsea.png")).unwrap().to_rgb8();
    let jpeg = dir.join("cat.jpg");
    cat.save_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
    let bytes = std::fs::read(&jpeg).unwrap();
    let cut = dir.join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = error_line(&gradcam(&["explain", cut.to_str().unwrap(), "--out-dir", dir.join("out").to_str().unwrap()]));
    assert!(e.contains("truncated JPEG"), "{e}");
    let o = gradcam(&["explain", jpeg.to_str().unwrap(), "--json", "--out-dir", dir.join("out").to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A smaller --max-pixels refuses the cat photo itself (451 × 300).
    let e = error_line(&gradcam(&["explain", jpeg.to_str().unwrap(), "--max-pixels", "100000"]));
    assert!(e.contains("above the limit"), "{e}");
}

/// A 139-byte MaxPool with end pads of 20000 would make a 4.8 GB activation: the run is refused from the shapes
/// before anything is allocated (the default budget is the weights + 1 GiB); `--max-memory` can lower it too.
#[test]
fn runs_over_the_memory_budget_are_refused_before_they_start() {
    let dir = scratch("budget");
    let node = NodeProto {
        op_type: "MaxPool".into(),
        name: "pool".into(),
        input: vec!["x".into()],
        output: vec!["y".into()],
        attribute: vec![ints("kernel_shape", &[1, 1]), ints("pads", &[0, 0, 20000, 20000])],
        ..Default::default()
    };
    let model = dir.join("pool.onnx");
    one_node_model(&model, node, vec![]);
    let input = dir.join("x.npy");
    ndarray_npy::write_npy(&input, &ndarray::Array4::<f32>::zeros((1, 3, 4, 4))).unwrap();
    let started = std::time::Instant::now();
    let e = error_line(&gradcam(&["infer", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()]));
    assert!(e.contains("memory budget") && e.contains("--max-memory"), "{e}");
    assert!(started.elapsed().as_secs_f64() < 5.0);
    // The bundled model under a budget too small for one image; and a malformed size.
    let cat = common::fixture("images/chelsea.png");
    let e = error_line(&gradcam(&["explain", cat.to_str().unwrap(), "--max-memory", "10M"]));
    assert!(e.contains("memory budget of 10 MB"), "{e}");
    let o = gradcam(&["explain", cat.to_str().unwrap(), "--max-memory", "lots"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--max-memory"));
}

/// A pooled [1, 1280, 1, 1] layer is 4-D: the error says what is really missing (a spatial extent).
#[test]
fn a_layer_without_spatial_extent_is_named_as_such() {
    let cat = common::fixture("images/chelsea.png");
    let dir = scratch("pooled-layer");
    let layers = gradcam(&["layers", "--json"]);
    assert!(layers.status.success());
    let pooled = String::from_utf8_lossy(&layers.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["shape"].as_array().is_some_and(|s| s.len() == 4 && s[2] == 1 && s[3] == 1))
        .and_then(|v| v["layer"].as_str().map(str::to_string))
        .expect("the bundled model has a pooled [N, C, 1, 1] value");
    let o = gradcam(&["explain", cat.to_str().unwrap(), "--layer", &pooled, "--out-dir", dir.to_str().unwrap()]);
    let e = error_line(&o);
    assert!(e.contains("H × W > 1") && e.contains(&pooled), "{e}");
}

/// An engine error that quotes its cause is not followed by the cause again ("must be positive: … must be
/// positive" before).
#[test]
fn error_lines_say_each_cause_once() {
    let dir = scratch("once");
    let model = dir.join("stride0.onnx");
    conv_model(&model, ints("strides", &[0, 1]));
    let e = error_line(&gradcam(&["layers", "--model", model.to_str().unwrap()]));
    assert_eq!(e.matches("must be positive").count(), 1, "{e}");
    assert!(e.contains("node 'conv' (Conv)"), "{e}");
}

#[test]
fn overlays_of_large_images_are_drawn_smaller_when_the_budget_is_tight() {
    let dir = scratch("overlay-budget");
    let big = dir.join("big.png");
    image::RgbImage::from_fn(3000, 2000, |x, _| image::Rgb([(x / 12) as u8, 90, 30])).save(&big).unwrap();
    let out = dir.join("out");
    let run = |budget: &str| {
        let o = gradcam(&[
            "explain",
            big.to_str().unwrap(),
            "--max-memory",
            budget,
            "--json",
            "--out-dir",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let e = v["explanations"][0].clone();
        let png = image::image_dimensions(e["overlay"].as_str().unwrap()).unwrap();
        (e, png)
    };
    // A generous budget: the overlay has the photo's size.
    let (e, png) = run("2G");
    assert_eq!(png, (3000, 2000));
    assert!(e["overlay_downscaled_to"].is_null(), "{e}");
    // 100 MB: weights (19 MB) and a batch's activations leave room for a smaller overlay only; it keeps the aspect
    // ratio, says so, and the peak and box are still in the photo's pixels.
    let (small, png) = run("100M");
    let [w, h] = [0, 1].map(|i| small["overlay_downscaled_to"][i].as_u64().unwrap() as u32);
    assert_eq!(png, (w, h));
    assert!(w < 3000 && h < 2000 && (w as f64 / h as f64 - 1.5).abs() < 0.01, "{w}x{h}");
    let (px, py) = (small["peak"][0].as_u64().unwrap() as f64, small["peak"][1].as_u64().unwrap() as f64);
    let (qx, qy) = (e["peak"][0].as_u64().unwrap() as f64, e["peak"][1].as_u64().unwrap() as f64);
    let cell = 3000.0 / w as f64;
    assert!((px - qx).abs() <= 2.0 * cell && (py - qy).abs() <= 2.0 * cell, "peak ({px}, {py}) vs ({qx}, {qy})");
    std::fs::remove_dir_all(&dir).ok();
}

/// A convolution over zero input channels (an empty inner dimension) used to loop forever in the packed GEMM
/// (found in review): it now gives the bias (none here: zeros), in f32 and with 16-bit weights.
#[test]
fn a_convolution_over_zero_channels_ends_with_zeros() {
    let dir = scratch("zero-channels");
    let w = TensorProto { name: "w".into(), dims: vec![2, 0, 3, 3], data_type: dtype::FLOAT, ..Default::default() };
    let node = NodeProto {
        op_type: "Conv".into(),
        name: "conv".into(),
        input: vec!["x".into(), "w".into()],
        output: vec!["y".into()],
        attribute: vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])],
        ..Default::default()
    };
    let bytes = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "hostile".into(),
        graph: Some(GraphProto {
            node: vec![node],
            name: "g".into(),
            initializer: vec![w],
            input: vec![value_info("x", &[1, 0, 4, 4])],
            output: vec![value_info("y", &[1, 2, 4, 4])],
        }),
    }
    .encode_to_vec();
    let model = dir.join("zero.onnx");
    std::fs::write(&model, bytes).unwrap();
    let input = dir.join("x.npy");
    ndarray_npy::write_npy(&input, &ndarray::Array4::<f32>::zeros((1, 0, 4, 4))).unwrap();
    for weights in ["f32", "f16"] {
        let out = dir.join(format!("out-{weights}"));
        let started = std::time::Instant::now();
        let o = gradcam(&[
            "infer",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--weights",
            weights,
        ]);
        assert!(o.status.success(), "{weights}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(started.elapsed().as_secs_f64() < 10.0);
        let y: ndarray::ArrayD<f32> = ndarray_npy::read_npy(out.join("y.npy")).unwrap();
        assert_eq!(y.shape(), &[1, 2, 4, 4]);
        assert!(y.iter().all(|&v| v == 0.0), "{weights}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A FIFO given as the model, as an input or as external data would block the run forever on `open` (no writer
/// comes): every reader checks for a regular file first.
#[cfg(unix)]
#[test]
fn fifos_as_model_input_or_weights_are_errors_not_hangs() {
    let dir = scratch("fifo");
    let fifo = |name: &str| {
        let p = dir.join(name);
        let ok = Command::new("mkfifo").arg(&p).status().map(|s| s.success()).unwrap_or(false);
        ok.then_some(p)
    };
    let (Some(onnx), Some(st), Some(npy), Some(png)) =
        (fifo("m.onnx"), fifo("w.safetensors"), fifo("x.npy"), fifo("cat.png"))
    else {
        eprintln!("SKIPPED: mkfifo is not available");
        return;
    };
    let model = common::fixture("onnx/light/light_squeezenet.onnx");
    let out = dir.join("out");
    let cases: Vec<Vec<&str>> = vec![
        vec!["layers", "--model", onnx.to_str().unwrap()],
        vec!["layers", "--model", st.to_str().unwrap(), "--arch", "resnet18"],
        vec![
            "infer",
            "--model",
            model.to_str().unwrap(),
            "--input",
            npy.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ],
        vec!["explain", png.to_str().unwrap(), "--out-dir", out.to_str().unwrap()],
        vec!["explain", npy.to_str().unwrap(), "--out-dir", out.to_str().unwrap()],
    ];
    for args in cases {
        let started = std::time::Instant::now();
        let e = error_line(&gradcam(&args));
        assert!(e.contains("not a regular file"), "{args:?}: {e}");
        assert!(started.elapsed().as_secs_f64() < 10.0, "{args:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Found by fuzzing the command line: the budget counted the graph's values but not the copies of the input batch
/// the commands hold (pixels, normalized, stacked), so `bench --batch 77738` on a tiny model passed the check and
/// took more than 2 GB. Those copies count now: a batch whose inputs alone overflow the budget is refused up front.
#[test]
fn a_huge_batch_of_a_tiny_model_is_refused_by_the_budget() {
    let dir = scratch("huge-batch");
    let model = dir.join("pool.onnx");
    let node = |op: &str, input: &str, out: &str| NodeProto {
        op_type: op.into(),
        name: out.into(),
        input: vec![input.into()],
        output: vec![out.into()],
        ..Default::default()
    };
    // x [N, 3, 4, 4] → GlobalAveragePool → Flatten: three "classes".
    let bytes = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "hostile".into(),
        graph: Some(GraphProto {
            node: vec![node("GlobalAveragePool", "x", "p"), node("Flatten", "p", "y")],
            name: "g".into(),
            initializer: vec![],
            input: vec![value_info("x", &[1, 3, 4, 4])],
            output: vec![value_info("y", &[1, 3])],
        }),
    }
    .encode_to_vec();
    std::fs::write(&model, bytes).unwrap();
    // Per image: 192 bytes of input, 24 of values after it, 3 more input copies: 792 bytes. 2 M images: 1.6 GB (the
    // graph's values alone: 0.4 GB, which passed before).
    let o =
        gradcam(&["bench", "--model", model.to_str().unwrap(), "--batch", "2000000", "--iters", "1", "--warmup", "0"]);
    let e = error_line(&o);
    assert!(e.contains("--max-memory") && e.contains("2000000 image(s)"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

fn float_tensor(name: &str, v: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: dtype::FLOAT,
        float_data: v.to_vec(),
        ..Default::default()
    }
}

/// Resize with a negative size, or a scale that is NaN, infinite, zero or negative: one line naming the value (a
/// negative size used to wrap to 2^64 − 1 and be reported as "too large"; a NaN scale became a 0×0 output).
#[test]
fn resize_to_negative_sizes_or_non_positive_scales_is_an_error() {
    let dir = scratch("resize");
    let resize = |inputs: &[&str]| NodeProto {
        op_type: "Resize".into(),
        name: "resize".into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec!["y".into()],
        ..Default::default()
    };
    let path = dir.join("size.onnx");
    one_node_model(&path, resize(&["x", "", "", "sizes"]), vec![int_tensor("sizes", &[1, 3, -1, 8])]);
    let e = error_line(&gradcam(&["layers", "--model", path.to_str().unwrap()]));
    assert!(e.contains("Resize size -1"), "{e}");
    for (i, bad) in [f32::NAN, f32::INFINITY, 0.0, -2.0].into_iter().enumerate() {
        let path = dir.join(format!("scale{i}.onnx"));
        one_node_model(&path, resize(&["x", "", "scales"]), vec![float_tensor("scales", &[1.0, 1.0, bad, 2.0])]);
        let e = error_line(&gradcam(&["layers", "--model", path.to_str().unwrap()]));
        // NaN initializers are refused on load already, naming the tensor.
        let named = if bad.is_nan() { "initializer 'scales'".into() } else { format!("Resize scale {bad}") };
        assert!(e.contains(&named), "{bad}: {e}");
    }
}

/// Found by review: folding a comparison of two small constants that broadcast to 2³² elements charged only the
/// operands to the folding budget; and a Conv with a 3-D weight on a 4-D input indexed past the input's shape.
#[test]
fn huge_broadcasts_of_folded_logic_and_mismatched_3d_windows_are_errors() {
    let dir = scratch("fold-logic");
    let column = TensorProto {
        name: "column".into(),
        dims: vec![65536, 1],
        data_type: dtype::INT64,
        int64_data: vec![1; 65536],
        ..Default::default()
    };
    let row = TensorProto { name: "row".into(), dims: vec![1, 65536], ..column.clone() };
    let node = NodeProto {
        op_type: "Equal".into(),
        name: "eq".into(),
        input: vec!["column".into(), "row".into()],
        output: vec!["y".into()],
        ..Default::default()
    };
    let model = dir.join("equal.onnx");
    one_node_model(&model, node, vec![column, row]);
    let e = error_line(&gradcam(&["layers", "--model", model.to_str().unwrap()]));
    assert!(e.contains("folding would make a constant"), "{e}");

    let w = TensorProto {
        name: "w".into(),
        dims: vec![1, 3, 3, 3, 3],
        data_type: dtype::FLOAT,
        float_data: vec![0.5; 81],
        ..Default::default()
    };
    let same = AttributeProto { name: "auto_pad".into(), r#type: 3, s: b"SAME_UPPER".to_vec(), ..Default::default() };
    let node = NodeProto {
        op_type: "Conv".into(),
        name: "conv".into(),
        input: vec!["x".into(), "w".into()],
        output: vec!["y".into()],
        attribute: vec![same],
        ..Default::default()
    };
    let model = dir.join("conv3d-on-4d.onnx");
    one_node_model(&model, node, vec![w]);
    let e = error_line(&gradcam(&["layers", "--model", model.to_str().unwrap()]));
    assert!(e.contains("[N, C, D, H, W]"), "{e}");
}
