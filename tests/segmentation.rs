//! Explaining a segmentation model (output `[N, classes, H, W]`): the sum of a class's logits over the pixels
//! predicted as it, or over a mask (pytorch-grad-cam's SemanticSegmentationTarget), on torchvision's LRASPP with a
//! small MobileNetV3 backbone and seeded weights (tools/make_seg_fixtures.py), against pytorch-grad-cam 1.5.7.

mod common;

use common::{max_abs_diff, npy_f32};
use gradcam::cam::{default_layer, explain, ClassChoice, Method, Request, Target};
use gradcam::{Model, Tensor};
use ndarray::Array2;
use std::process::Command;

const LAYER: &str = "/m/backbone/backbone.12/backbone.12.2/HardSwish_output_0";

fn model() -> Model {
    Model::from_onnx(&common::fixture("onnx/segmentation/lraspp_mnv3s.onnx")).unwrap()
}

fn left_half() -> Array2<f32> {
    let img = gradcam::input::decode_image(&common::fixture("images/left_half_mask.png")).unwrap();
    Array2::from_shape_fn((img.height() as usize, img.width() as usize), |(y, x)| {
        if img.get_pixel(x as u32, y as u32).0[0] > 0 {
            1.0
        } else {
            0.0
        }
    })
}

fn raw_error(ours: &ndarray::ArrayD<f32>, want: &ndarray::ArrayD<f32>) -> f32 {
    assert_eq!(ours.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    max_abs_diff(ours.iter(), want.iter()) / scale
}

#[test]
fn gradcam_of_a_segmentation_class_matches_pytorch_grad_cam() {
    let model = model();
    assert_eq!(model.classes(), 4);
    let x: Tensor<f32> = npy_f32("models/inputs/chelsea.npy");
    let predicted = npy_f32("cam/segmentation/seg_classes.npy")[[0]] as usize;
    // Over the pixels predicted as the class.
    let req =
        Request { layers: vec![LAYER.into()], classes: ClassChoice::Classes(vec![predicted]), ..Request::default() };
    let r = explain(&model, x.clone(), &req).unwrap().remove(0);
    let err = raw_error(&r.explanations[0].raw[0], &npy_f32("cam/segmentation/seg_pred_raw.npy"));
    assert!(err < 1e-4, "predicted region: raw map off by {err:.2e}");
    // Over a mask (the left half), for another class.
    let req = Request { classes: ClassChoice::Classes(vec![1]), seg_mask: Some(left_half()), ..req };
    let r = explain(&model, x.clone(), &req).unwrap().remove(0);
    let err = raw_error(&r.explanations[0].raw[0], &npy_f32("cam/segmentation/seg_mask_raw.npy"));
    assert!(err < 1e-4, "mask: raw map off by {err:.2e}");
    // Every other method runs on a segmentation output too (finercam excepted: it compares classifier logits).
    let methods: Vec<Method> = Method::ALL.into_iter().filter(|m| m.name() != "finercam").collect();
    let req = Request { methods, samples: 2, steps: 2, ..req };
    let r = explain(&model, x.clone(), &req).unwrap().remove(0);
    assert!(r.explanations.iter().all(|e| e.cam.iter().all(|v| v.is_finite())));
    // What does not apply is a clear error.
    let prob = Request { target: Target::Probability, ..Request::default() };
    assert!(explain(&model, x.clone(), &prob).unwrap_err().to_string().contains("classifiers"));
    let nowhere = Request { classes: ClassChoice::Classes(vec![3]), ..Request::default() };
    assert!(explain(&model, x, &nowhere).unwrap_err().to_string().contains("no pixel"));
}

#[test]
fn the_default_layer_of_a_segmentation_model_is_a_feature_map() {
    let model = model();
    let layer = default_layer(&model.graph, &model.logits).unwrap();
    let shape = &model.graph.value(model.graph.find(&layer).unwrap()).shape;
    assert!(shape[1] != model.classes() && shape[2] * shape[3] > 1, "{layer}: {shape:?}");
}

#[test]
fn seg_class_and_mask_on_the_command_line() {
    let bin = env!("CARGO_BIN_EXE_gradcam");
    let dir = std::env::temp_dir().join(format!("gradcam-seg-{}", std::process::id()));
    let (onnx, mask) =
        (common::fixture("onnx/segmentation/lraspp_mnv3s.onnx"), common::fixture("images/left_half_mask.png"));
    let cat = common::fixture("images/chelsea.png");
    let o = Command::new(bin)
        .args(["explain", cat.to_str().unwrap(), "--model", onnx.to_str().unwrap(), "--seg-class", "1"])
        .args(["--mask", mask.to_str().unwrap(), "--json", "--out-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(line["explanations"][0]["class"], 1);
    let o = Command::new(bin).args(["explain", cat.to_str().unwrap(), "--seg-class", "1"]).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("segmentation models"));
}

/// Class scores shaped `[N, C, 1, 1]` are a classifier's, not a 1×1 segmentation: SqueezeNet of the ONNX test data
/// ends Flatten → Softmax → Reshape to `[1, 1000, 1, 1]`; explanations follow the scores before the softmax.
#[test]
fn class_scores_shaped_n_c_1_1_are_a_classifier() {
    let model = Model::from_onnx(&common::fixture("onnx/light/light_squeezenet.onnx")).unwrap();
    assert!(!model.is_segmentation());
    assert_eq!(model.logits, "softmaxout_1::flatten");
    assert_eq!(model.classes(), 1000);
    let x: Tensor<f32> = npy_f32("models/inputs/chelsea.npy");
    let req = Request { target: Target::Probability, ..Request::default() };
    let r = explain(&model, x, &req).unwrap().remove(0);
    assert_eq!(r.explanations.len(), 1);
    assert!(r.explanations[0].cam.iter().all(|v| v.is_finite()));
    let layer = default_layer(&model.graph, &model.logits).unwrap();
    assert_eq!(model.graph.value(model.graph.find(&layer).unwrap()).shape[1], 1000, "{layer}: the last conv's maps");
}

#[test]
fn labels_mean_and_std_apply_to_onnx_models() {
    let bin = env!("CARGO_BIN_EXE_gradcam");
    let dir = std::env::temp_dir().join(format!("gradcam-labels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let labels = dir.join("labels.txt");
    std::fs::write(&labels, "background\nroad\ncat\nsky\n").unwrap();
    let onnx = common::fixture("onnx/segmentation/lraspp_mnv3s.onnx");
    let cat = common::fixture("images/chelsea.png");
    let run = |extra: &[&str]| {
        Command::new(bin)
            .args(["explain", cat.to_str().unwrap(), "--model", onnx.to_str().unwrap(), "--json"])
            .args(["--out-dir", dir.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--seg-class", "1", "--labels", labels.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(line["explanations"][0]["label"], "road");
    // Another normalization gives other predictions.
    let plain: serde_json::Value = serde_json::from_slice(&run(&[]).stdout).unwrap();
    let shifted: serde_json::Value =
        serde_json::from_slice(&run(&["--mean", "0.9,0.1,0.5", "--std", "0.5,0.5,0.5"]).stdout).unwrap();
    assert_ne!(plain["predictions"], shifted["predictions"]);
    std::fs::write(&labels, "background\nroad\n").unwrap();
    let o = run(&["--labels", labels.to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("2 labels for a model of 4 classes"));
}
