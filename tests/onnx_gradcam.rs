//! Grad-CAM through ONNX equals Grad-CAM through the safetensors path for the same model (resnet18, mobilenet_v2,
//! EfficientNet-Lite0 exported by `torch.onnx.export(..., opset_version=17)`, tools/export_onnx_models.py), within
//! 1e-5. The exported files keep their weights as external data, which this test rebuilds from the same source as
//! the safetensors-path model (the synthetic formula, or the bundled weights): initializer names are state-dict keys.

mod common;

use gradcam::cam::{explain, CamMethod, ClassChoice, Method, Request};
use gradcam::graph::Source;
use gradcam::models::Weights;
use gradcam::onnx::proto::ModelProto;
use gradcam::{Arch, Model};
use prost::Message;
use std::path::PathBuf;

/// Copies `fixtures/onnx/exported/<name>.onnx` to a temporary directory and writes its external weights file from
/// the constants of `reference`.
fn materialize(name: &str, reference: &Model) -> PathBuf {
    let src = common::fixture(&format!("onnx/exported/{name}.onnx"));
    let bytes = std::fs::read(&src).unwrap();
    let proto = ModelProto::decode(bytes.as_slice()).unwrap();
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("gradcam-onnx-{}-{name}-{k}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut weights = Vec::<u8>::new();
    let mut location = String::new();
    for t in proto.graph.as_ref().unwrap().initializer.iter().filter(|t| t.data_location == 1) {
        let get = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.clone()).unwrap();
        location = get("location");
        let (offset, length): (usize, usize) = (get("offset").parse().unwrap(), get("length").parse().unwrap());
        let id = reference.graph.find(&t.name).unwrap_or_else(|_| panic!("{name}: no weight '{}'", t.name));
        let Source::Constant(c) = &reference.graph.value(id).source else { panic!("{} is not a constant", t.name) };
        let data: Vec<u8> = c.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(data.len(), length, "{}", t.name);
        if weights.len() < offset + length {
            weights.resize(offset + length, 0);
        }
        weights[offset..offset + length].copy_from_slice(&data);
    }
    std::fs::write(dir.join(&location), weights).unwrap();
    let path = dir.join(format!("{name}.onnx"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn gradcam(layer: &str) -> Request {
    Request {
        layers: vec![layer.to_string()],
        classes: ClassChoice::Classes(vec![285, 967]),
        methods: vec![Method::Cam(CamMethod::GradCam), Method::Saliency],
        counterfactual: false,
        eigen_smooth: false,
        aug_smooth: false,
        target: Default::default(),
        batch_size: gradcam::cam::DEFAULT_PERTURBATION_BATCH,
        samples: gradcam::cam::DEFAULT_SAMPLES,
        noise: gradcam::cam::DEFAULT_NOISE,
        steps: gradcam::cam::DEFAULT_STEPS,
        seg_mask: None,
        tokens: Default::default(),
    }
}

fn compare(name: &str, reference: Model, reference_layer: &str, onnx_layer: &str) {
    let path = materialize(name, &reference);
    let onnx = Model::from_onnx(&path).unwrap();
    let x = common::npy_f32("models/inputs/chelsea.npy");
    let a = explain(&reference, x.clone(), &gradcam(reference_layer)).unwrap().remove(0);
    let b = explain(&onnx, x, &gradcam(onnx_layer)).unwrap().remove(0);
    for (p, q) in common::pairs(a.predictions.iter(), &b.predictions) {
        assert_eq!(p.class, q.class, "{name}: predictions differ");
        assert!((p.logit - q.logit).abs() <= 1e-5 * p.logit.abs().max(1.0), "{name}: logit {} vs {}", p.logit, q.logit);
    }
    for (e, f) in common::pairs(a.explanations.iter(), &b.explanations) {
        let d = common::max_abs_diff(e.cam.iter(), f.cam.iter());
        assert!(d <= 1e-5, "{name} {} class {}: maps differ by {d:.2e}", e.method.name(), e.class);
        let scale = e.raw[0].iter().fold(0f32, |m, v| m.max(v.abs()));
        let r = common::max_abs_diff(e.raw[0].iter(), f.raw[0].iter()) / scale;
        assert!(r <= 1e-5, "{name} {} class {}: raw maps differ by {r:.2e} (relative)", e.method.name(), e.class);
    }
}

/// An f32 ONNX file loaded with `--weights f16|bf16` (weights read straight into 16 bits): the same prediction, and
/// a Grad-CAM map correlated with the f32 one at r ≥ 0.999 (tolerances as in tests/half_weights.rs).
#[test]
fn resnet18_onnx_in_16_bits_explains_like_f32() {
    use gradcam::{LoadOptions, Precision};
    let reference = Model::build(Arch::Resnet18, Weights::synthetic(), [224, 224], 1000).unwrap();
    let path = materialize("resnet18", &reference);
    let full = Model::from_onnx(&path).unwrap();
    let x = common::npy_f32("models/inputs/chelsea.npy");
    let req = gradcam("/layer4/layer4.1/relu_1/Relu_output_0");
    let a = explain(&full, x.clone(), &req).unwrap().remove(0);
    for precision in [Precision::F16, Precision::Bf16] {
        let half = Model::from_onnx_with(&path, LoadOptions::weights(precision)).unwrap();
        let ratio = half.graph.constant_bytes() as f64 / full.graph.constant_bytes() as f64;
        assert!(ratio < 0.51, "{precision}: weights take {ratio:.3} of f32's bytes");
        let b = explain(&half, x.clone(), &req).unwrap().remove(0);
        assert_eq!(a.predictions[0].class, b.predictions[0].class, "{precision}: top-1 differs");
        let rel = (a.predictions[0].logit - b.predictions[0].logit).abs() / a.predictions[0].logit.abs();
        assert!(rel as f64 <= 25.0 * precision.unit_roundoff(), "{precision}: top logit off by {rel:.2e}");
        let e = &a.explanations[0];
        let f = &b.explanations[0];
        assert_eq!(e.cam.len(), f.cam.len());
        let r = common::pearson(e.cam.as_slice().unwrap(), f.cam.as_slice().unwrap());
        eprintln!("resnet18 ONNX {precision}: top logit off by {rel:.2e}, Grad-CAM r = {r:.5}");
        assert!(r >= 0.999, "{precision}: Grad-CAM r = {r}");
    }
}

#[test]
fn resnet18_onnx_equals_safetensors() {
    let m = Model::build(Arch::Resnet18, Weights::synthetic(), [224, 224], 1000).unwrap();
    compare("resnet18", m, "layer4", "/layer4/layer4.1/relu_1/Relu_output_0");
}

#[test]
fn mobilenet_v2_onnx_equals_safetensors() {
    let m = Model::build(Arch::MobilenetV2, Weights::synthetic(), [224, 224], 1000).unwrap();
    compare("mobilenet_v2", m, "features.18", "/features/features.18/features.18.2/Clip_output_0");
}

#[test]
fn efficientnet_lite0_onnx_equals_bundled() {
    compare("efficientnet_lite0", Model::bundled().unwrap(), "head_act", "/_swish_1/Clip_output_0");
}

#[test]
fn default_layer_of_an_onnx_export_is_the_last_spatial_activation() {
    let m = Model::build(Arch::Resnet18, Weights::synthetic(), [224, 224], 1000).unwrap();
    let onnx = Model::from_onnx(&materialize("resnet18", &m)).unwrap();
    assert_eq!(
        gradcam::cam::default_layer(&onnx.graph, &onnx.logits).unwrap(),
        "/layer4/layer4.1/relu_1/Relu_output_0"
    );
}

/// An ONNX file does not say how its pixels are normalized: `Model::from_onnx` assumes ImageNet's statistics and
/// says so; `LoadOptions::normalization` gives the real ones; built-in architectures know theirs.
#[test]
fn preprocessing_is_reported_and_can_be_given() {
    let path = common::fixture("onnx/transformers/vit.onnx");
    let assumed = Model::from_onnx(&path).unwrap().preprocess();
    assert!(assumed.normalization_assumed);
    assert_eq!(assumed.normalization, gradcam::input::Normalization::imagenet());
    assert_eq!(assumed.input_size, [224, 224]);
    let half = gradcam::input::Normalization { mean: [0.5; 3], std: [0.5; 3] };
    let options = gradcam::LoadOptions { normalization: Some(half), ..Default::default() };
    let given = Model::from_onnx_with(&path, options).unwrap().preprocess();
    assert!(!given.normalization_assumed);
    assert_eq!(given.normalization, half);
    assert!(!Model::bundled().unwrap().preprocess().normalization_assumed);
}
