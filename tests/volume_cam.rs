//! 3-D models (volumes `[N, C, D, H, W]`): a seeded 3-D CNN from ONNX explained against pytorch-grad-cam 1.5.7,
//! which handles 5-D activations itself (tools/make_volume_fixtures.py). Raw maps of Grad-CAM, Grad-CAM++, LayerCAM
//! and HiResCAM within 1e-4 of the largest value, Score-CAM's against its computation written out in torch with
//! trilinear masks; the final Grad-CAM map (trilinear upsampling, as torchcam does) within 1e-4; the input gradient
//! within 1e-4; Integrated Gradients complete (its attributions sum to the score's change from the zero volume);
//! FullGrad and aug-smooth refused; the command line end to end with a montage overlay.

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

fn model() -> Model {
    Model::from_onnx(&common::fixture("onnx/volume/volume_cnn.onnx")).unwrap()
}

fn input() -> ndarray::ArrayD<f32> {
    npy_f32("cam/volume/x.npy").insert_axis(ndarray::Axis(0))
}

#[test]
fn a_volume_model_matches_pytorch_grad_cam() {
    let m = model();
    assert_eq!(m.volume_depth(), Some(8));
    assert_eq!(gradcam::cam::default_layer(&m.graph, &m.logits).unwrap(), LAYER);
    let want_logits = npy_f32("cam/volume/logits.npy");
    let class = want_logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    let mut methods: Vec<Method> = METHODS.iter().map(|&(_, m)| Method::Cam(m)).collect();
    methods.push(Method::Saliency);
    let req = Request { classes: ClassChoice::Classes(vec![class]), methods, ..Request::default() };
    let result = explain(&m, input(), &req).unwrap().remove(0);
    for p in &result.predictions {
        let err = (p.logit - want_logits[p.class]).abs();
        assert!(err < 1e-5, "logit {} off by {err:.2e}", p.class);
    }
    assert_eq!(result.explanations.len(), METHODS.len() + 1);
    for ((name, _), e) in common::pairs(METHODS.iter(), &result.explanations[..METHODS.len()]) {
        assert_eq!(e.method.name(), *name);
        assert_eq!(e.raw[0].shape(), [4, 8, 8], "{name}: the layer's volume");
        let want = npy_f32(&format!("cam/volume/{name}_raw.npy"));
        let err = relative_error(e.raw[0].as_slice().unwrap(), want.as_slice().unwrap());
        assert!(err < 1e-4, "{name}: raw map off by {err:.2e} (relative)");
    }
    // The final map: the volume's slices stacked, [D·H, W].
    let cam = &result.explanations[0].cam;
    assert_eq!(cam.shape(), [8 * 16, 16]);
    let want = npy_f32("cam/volume/gradcam_cam.npy");
    assert_eq!(cam.len(), want.len());
    let err = max_abs_diff(cam.iter(), want.iter());
    assert!(err < 1e-4, "final map off by {err:.2e}");
    let saliency = result.explanations.last().unwrap();
    let err =
        relative_error(saliency.raw[0].as_slice().unwrap(), npy_f32("cam/volume/saliency.npy").as_slice().unwrap());
    assert!(err < 1e-4, "input gradient off by {err:.2e} (relative)");
}

#[test]
fn gradient_methods_run_on_volumes_and_the_unported_ones_are_refused() {
    let m = model();
    // Integrated Gradients from the zero volume: the attributions sum to the class score's change along the path
    // (completeness), up to the quadrature's error on a piecewise-linear network.
    let req = Request {
        classes: ClassChoice::Classes(vec![0]),
        methods: vec![Method::IntegratedGradients, Method::SmoothGrad],
        steps: 64,
        samples: 4,
        ..Request::default()
    };
    let result = explain(&m, input(), &req).unwrap().remove(0);
    let ig = &result.explanations[0];
    assert_eq!(ig.method, Method::IntegratedGradients);
    assert_eq!(ig.cam.shape(), [8 * 16, 16]);
    let total: f32 = ig.raw[0].iter().sum();
    let zero = explain(&m, input().mapv(|_| 0.0), &Request::default()).unwrap().remove(0);
    let at = |r: &gradcam::cam::ImageResult| r.predictions.iter().find(|p| p.class == 0).unwrap().logit;
    let change = at(&result) - at(&zero);
    assert!((total - change).abs() <= 0.05 * change.abs().max(1e-3), "attributions {total} vs score change {change}");
    assert_eq!(result.explanations[1].cam.shape(), [8 * 16, 16], "SmoothGrad");
    let req = Request { methods: vec![Method::FullGrad], ..Request::default() };
    let e = explain(&m, input(), &req).unwrap_err().to_string();
    assert!(e.contains("volumes") && e.contains("fullgrad"), "{e}");
    let e = explain(&m, input(), &Request { aug_smooth: true, ..Request::default() }).unwrap_err().to_string();
    assert!(e.contains("aug_smooth") && e.contains("volumes"), "{e}");
}

#[test]
fn explain_a_volume_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("gradcam-volume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("scan.npy");
    ndarray_npy::write_npy(&path, &input()).unwrap();
    let out = dir.join("out");
    let m = common::fixture("onnx/volume/volume_cnn.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_gradcam"))
        .args(["explain", path.to_str().unwrap(), "--model", m.to_str().unwrap(), "--npy", "--json"])
        .args(["--out-dir", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = &v["explanations"][0];
    // The overlay: a montage of the 8 slices (3 × 3 grid of 16² slices, drawn at 4× for visibility).
    let png = image::open(e["overlay"].as_str().unwrap()).unwrap();
    assert_eq!((png.width(), png.height()), (3 * 16 * 4, 3 * 16 * 4));
    let cam: ndarray::ArrayD<f32> = ndarray_npy::read_npy(e["cam_npy"].as_str().unwrap()).unwrap();
    assert_eq!(cam.shape(), [8, 16, 16], "the map as a volume");
}
