//! 1-D models (signals `[N, C, L]`): a seeded 1-D CNN from ONNX explained against pytorch-grad-cam 1.5.7, which is
//! given the signal as a one-row image (tools/make_signal_fixtures.py). Raw maps of Grad-CAM, Grad-CAM++, LayerCAM,
//! HiResCAM and Score-CAM within 1e-4 of the largest value, the final Grad-CAM map (linear upsampling to the
//! signal's length) within 1e-4, the input gradient within 1e-4; and the command line end to end on a `.npy` signal.

mod common;

use common::{max_abs_diff, npy_f32, relative_error};
use gradcam::cam::{explain, CamMethod, ClassChoice, Method, Request};
use gradcam::Model;
use std::process::Command;

const LAYER: &str = "/relu2/Relu_output_0";
const METHODS: [(&str, CamMethod); 5] = [
    ("gradcam", CamMethod::GradCam),
    ("gradcampp", CamMethod::GradCamPlusPlus),
    ("layercam", CamMethod::LayerCam),
    ("hirescam", CamMethod::HiResCam),
    ("scorecam", CamMethod::ScoreCam),
];

fn model_path() -> std::path::PathBuf {
    common::fixture("onnx/signal/signal_cnn.onnx")
}

#[test]
fn a_signal_model_matches_pytorch_grad_cam_on_a_one_row_image() {
    let model = Model::from_onnx(&model_path()).unwrap();
    assert!(model.is_signal());
    assert!(!model.preprocess().normalization_assumed, "signals are fed as they are");
    assert_eq!(model.input_size, [1, 128]);
    let signal = npy_f32("cam/signal/x.npy");
    assert_eq!(signal.shape(), [2, 128]);
    let x = signal.insert_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(0));
    let want_logits = npy_f32("cam/signal/logits.npy");
    let class = want_logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    let mut methods: Vec<Method> = METHODS.iter().map(|&(_, m)| Method::Cam(m)).collect();
    methods.push(Method::Saliency);
    let req = Request {
        layers: vec![LAYER.into()],
        classes: ClassChoice::Classes(vec![class]),
        methods,
        ..Request::default()
    };
    let result = explain(&model, x, &req).unwrap().remove(0);
    for p in &result.predictions {
        let err = (p.logit - want_logits[p.class]).abs();
        assert!(err < 1e-5, "logit {} off by {err:.2e}", p.class);
    }
    assert_eq!(result.explanations.len(), METHODS.len() + 1);
    for ((name, _), e) in common::pairs(METHODS.iter(), &result.explanations[..METHODS.len()]) {
        assert_eq!(e.method.name(), *name);
        assert_eq!(e.raw[0].shape(), [1, 64], "{name}: a one-row map at the layer's length");
        let want = npy_f32(&format!("cam/signal/{name}_raw.npy"));
        let err = relative_error(e.raw[0].as_slice().unwrap(), want.as_slice().unwrap());
        assert!(err < 1e-4, "{name}: raw map off by {err:.2e} (relative)");
    }
    let cam = &result.explanations[0].cam;
    assert_eq!(cam.shape(), [1, 128]);
    let want = npy_f32("cam/signal/gradcam_cam.npy");
    let err = max_abs_diff(cam.iter(), want.iter());
    assert_eq!(cam.len(), want.len());
    assert!(err < 1e-4, "final map off by {err:.2e}");
    let saliency = result.explanations.last().unwrap();
    assert_eq!(saliency.raw[0].shape(), [2, 1, 128]);
    let err =
        relative_error(saliency.raw[0].as_slice().unwrap(), npy_f32("cam/signal/saliency.npy").as_slice().unwrap());
    assert!(err < 1e-4, "input gradient off by {err:.2e} (relative)");
}

#[test]
fn explain_a_signal_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("gradcam-signal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A batch of two signals.
    let one = npy_f32("cam/signal/x.npy");
    let two = ndarray::stack(ndarray::Axis(0), &[one.view(), one.mapv(|v| -v).view()]).unwrap();
    let input = dir.join("signals.npy");
    ndarray_npy::write_npy(&input, &two).unwrap();
    let out = dir.join("out");
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_gradcam")).args(args).output().unwrap();
    let m = model_path();
    let o = run(&[
        "explain",
        input.to_str().unwrap(),
        "--model",
        m.to_str().unwrap(),
        "--layer",
        LAYER,
        "--method",
        "gradcam",
        "--method",
        "saliency",
        "--npy",
        "--json",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "one JSON line per signal");
    for v in &lines {
        assert_eq!(v["cam_size"], serde_json::json!([128, 1]), "[length, 1]");
        for e in v["explanations"].as_array().unwrap() {
            // The overlay is a line plot of the signal under the map: one column per sample (at least 256 wide).
            let png = image::open(e["overlay"].as_str().unwrap()).unwrap();
            assert_eq!((png.width(), png.height()), (256, gradcam::render::PLOT_HEIGHT));
            let cam: ndarray::ArrayD<f32> = ndarray_npy::read_npy(e["cam_npy"].as_str().unwrap()).unwrap();
            assert_eq!(cam.shape(), [1, 128]);
        }
    }
    // An image given to a signal model, and a signal of the wrong length: one clear line each.
    let cat = common::fixture("images/chelsea.png");
    let o =
        run(&["explain", cat.to_str().unwrap(), "--model", m.to_str().unwrap(), "--out-dir", out.to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("takes signals [N, 2, 128]"));
    let short = dir.join("short.npy");
    ndarray_npy::write_npy(&short, &ndarray::Array3::<f32>::zeros((1, 2, 100))).unwrap();
    let o =
        run(&["explain", short.to_str().unwrap(), "--model", m.to_str().unwrap(), "--out-dir", out.to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("[N, 2, 128]"));
}
