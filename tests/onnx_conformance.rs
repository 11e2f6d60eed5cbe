//! Conformance with the ONNX project's own test data (the `onnx` 1.23.2 wheel, `onnx/backend/test/data/`, copied
//! to fixtures/onnx): the 9 `light/` architectures, fed the runner's dummy input `arange(n)/n`, and the 2-D
//! `pytorch-converted/` and `pytorch-operator/` cases. Tolerance as the ONNX runner: |a − b| ≤ 1e-4 + 1e-3·|b|.

mod common;

use gradcam::onnx::{load, read_tensor, Const};
use gradcam::Tensor;
use ndarray::IxDyn;
use std::path::{Path, PathBuf};

fn run(model: &Path, inputs: Vec<Tensor<f32>>, expected: Vec<Const>) -> Result<(), String> {
    let m = load(model).map_err(|e| e.to_string())?;
    let g = &m.graph;
    let outs: Vec<&str> = m.outputs.iter().map(String::as_str).collect();
    let plan = g.inference_plan(&outs).map_err(|e| e.to_string())?;
    if m.inputs.len() != inputs.len() || outs.len() != expected.len() || expected.is_empty() {
        return Err(format!(
            "{} inputs and {} outputs, but the test data has {} and {}",
            m.inputs.len(),
            outs.len(),
            inputs.len(),
            expected.len()
        ));
    }
    let bound: Vec<(&str, Tensor<f32>)> = m.inputs.iter().map(String::as_str).zip(inputs).collect();
    let acts = g.forward(&plan, bound).map_err(|e| e.to_string())?;
    for (name, want) in outs.iter().zip(expected) {
        let got = acts.get(name).map_err(|e| e.to_string())?;
        let want = want.to_f32();
        if got.shape() != want.shape() {
            return Err(format!("output '{name}': shape {:?}, expected {:?}", got.shape(), want.shape()));
        }
        // Equal values (infinities included) and NaN where the reference has NaN match, as in numpy's
        // `assert_allclose`, which the ONNX runner uses (some cases hold values beyond f32's range: ±inf here).
        let error = |(a, b): (&f32, &f32)| {
            if a == b || (a.is_nan() && b.is_nan()) {
                0.0
            } else {
                (a - b).abs() / (1e-4 + 1e-3 * b.abs())
            }
        };
        let worst = common::worst(common::pairs(got.iter(), want.iter()).map(error));
        if worst.is_nan() || worst > 1.0 {
            return Err(format!("output '{name}': off by {worst:.2}× the tolerance"));
        }
    }
    Ok(())
}

fn data_set(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = (0..).map(|i| dir.join(format!("{prefix}_{i}.pb"))).take_while(|p| p.exists()).collect();
    v.sort();
    v
}

fn check_all(cases: Vec<(String, Result<(), String>)>, label: &str) {
    let failed: Vec<&(String, Result<(), String>)> = cases.iter().filter(|(_, r)| r.is_err()).collect();
    eprintln!("{label}: {} of {} cases pass", cases.len() - failed.len(), cases.len());
    for (name, r) in &failed {
        eprintln!("  {name}: {}", r.as_ref().unwrap_err());
    }
    assert!(failed.is_empty(), "{label}: {} failures", failed.len());
}

#[test]
fn light_architectures() {
    let dir = common::fixture("onnx/light");
    let mut cases = Vec::new();
    for name in [
        "bvlc_alexnet",
        "densenet121",
        "inception_v1",
        "inception_v2",
        "resnet50",
        "shufflenet",
        "squeezenet",
        "vgg19",
        "zfnet512",
    ] {
        let model = dir.join(format!("light_{name}.onnx"));
        let result = (|| {
            let m = load(&model).map_err(|e| e.to_string())?;
            let inputs = m
                .inputs
                .iter()
                .map(|i| {
                    let shape = m.graph.value(m.graph.find(i).unwrap()).shape.clone();
                    let n: usize = shape.iter().product();
                    Tensor::from_shape_vec(IxDyn(&shape), (0..n).map(|k| k as f32 / n as f32).collect()).unwrap()
                })
                .collect();
            let expected =
                vec![read_tensor(&dir.join(format!("light_{name}_output_0.pb"))).map_err(|e| e.to_string())?];
            run(&model, inputs, expected)
        })();
        cases.push((name.to_string(), result));
    }
    check_all(cases, "light");
}

fn op_cases(kind: &str) -> Vec<(String, Result<(), String>)> {
    let root = common::fixture(&format!("onnx/{kind}"));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| {
            let set = d.join("test_data_set_0");
            let result = (|| {
                let inputs = data_set(&set, "input")
                    .iter()
                    .map(|p| read_tensor(p).map(|c| c.to_f32()))
                    .collect::<Result<Vec<_>, _>>();
                let outputs = data_set(&set, "output").iter().map(|p| read_tensor(p)).collect::<Result<Vec<_>, _>>();
                run(&d.join("model.onnx"), inputs.map_err(|e| e.to_string())?, outputs.map_err(|e| e.to_string())?)
            })();
            (d.file_name().unwrap().to_string_lossy().into_owned(), result)
        })
        .collect()
}

/// The cases of the `onnx` wheel's pytorch-converted set kept in fixtures/ (82 in the set; left out: two cases of
/// several MB — see README).
const PYTORCH_CONVERTED_CASES: usize = 80;
/// Of the 35 pytorch-operator cases (left out: one case of 4.5 MB).
const PYTORCH_OPERATOR_CASES: usize = 34;

#[test]
fn pytorch_converted_cases() {
    let cases = op_cases("pytorch-converted");
    assert_eq!(cases.len(), PYTORCH_CONVERTED_CASES, "pytorch-converted cases in fixtures/");
    check_all(cases, "pytorch-converted");
}

#[test]
fn pytorch_operator_cases() {
    let cases = op_cases("pytorch-operator");
    assert_eq!(cases.len(), PYTORCH_OPERATOR_CASES, "pytorch-operator cases in fixtures/");
    check_all(cases, "pytorch-operator");
}

/// Our own small case: Mean of three inputs is their element-wise average (lowered as a Sum chain, then × 1/3).
#[test]
fn mean_of_several_inputs_is_their_average() {
    use gradcam::onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto};
    use prost::Message;
    let node = NodeProto {
        op_type: "Mean".into(),
        name: "m".into(),
        input: vec!["a".into(), "b".into(), "c".into()],
        output: vec!["y".into()],
        ..Default::default()
    };
    let info = common::onnx_value_info;
    let bytes = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "test".into(),
        graph: Some(GraphProto {
            node: vec![node],
            name: "g".into(),
            initializer: vec![],
            input: vec![info("a", &[1, 3]), info("b", &[1, 3]), info("c", &[1, 3])],
            output: vec![info("y", &[])],
        }),
    }
    .encode_to_vec();
    let m = gradcam::onnx::parse(&bytes, None, "mean.onnx").unwrap();
    let t = |v: [f32; 3]| Tensor::from_shape_vec(IxDyn(&[1, 3]), v.to_vec()).unwrap();
    let plan = m.graph.inference_plan(&["y"]).unwrap();
    let inputs = vec![("a", t([1.0, 2.0, 3.0])), ("b", t([4.0, 5.0, 6.0])), ("c", t([7.0, 8.0, 12.0]))];
    let acts = m.graph.forward(&plan, inputs).unwrap();
    assert_eq!(acts.get("y").unwrap(), &t([4.0, 5.0, 7.0]));
}
