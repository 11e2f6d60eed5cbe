//! Every CAM method against pytorch-grad-cam 1.5.7 (fixtures/cam, made by tools/make_cam_fixtures.py and, for
//! Score-CAM and Ablation-CAM, tools/make_perturbation_fixtures.py; FullGrad, and SmoothGrad / Integrated Gradients
//! against Captum: tools/make_attribution_fixtures.py) on two
//! architectures and two layers each: raw maps within 1e-4 relative, final maps within 1e-4 absolute; several
//! layers averaged like pytorch-grad-cam; guided backpropagation against its GuidedBackpropReLUModel.

mod common;

use common::{max_abs_diff, npy_f32};
use gradcam::cam::{explain, CamMethod, ClassChoice, Method, Request, Target};
use gradcam::models::Weights;
use gradcam::{Arch, Model, Tensor};

/// Eigen-CAM and Eigen-Grad-CAM: the references carry gradcam's sign convention; RandomCAM: gradcam's seeded weights
/// (see tools/make_cam_fixtures.py).
const METHODS: [(&str, CamMethod); 11] = [
    ("gradcam", CamMethod::GradCam),
    ("gradcampp", CamMethod::GradCamPlusPlus),
    ("xgradcam", CamMethod::XGradCam),
    ("hirescam", CamMethod::HiResCam),
    ("layercam", CamMethod::LayerCam),
    ("gradcam-elementwise", CamMethod::GradCamElementWise),
    ("eigencam", CamMethod::EigenCam),
    ("eigengradcam", CamMethod::EigenGradCam),
    ("fem", CamMethod::Fem),
    ("randomcam", CamMethod::RandomCam),
    ("finercam", CamMethod::FinerCam),
];

/// Methods whose final maps are checked on the first layer only (see `check_model`).
const NEWER: [&str; 6] = ["gradcam-elementwise", "eigencam", "eigengradcam", "fem", "randomcam", "finercam"];

/// Methods compared on raw maps only: Σ_k w_k A_k like Grad-CAM, whose final maps (the same post-processing) are
/// checked above.
const RAW_ONLY: [&str; 3] = ["fem", "randomcam", "finercam"];

fn request(layers: &[&str], methods: Vec<Method>) -> Request {
    Request {
        layers: layers.iter().map(|s| s.to_string()).collect(),
        classes: ClassChoice::Top(1),
        methods,
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

fn check_model(model: &Model, dir: &str, layers: [&str; 2]) {
    let x: Tensor<f32> = npy_f32("models/inputs/chelsea.npy");
    for layer in layers {
        let methods = METHODS.iter().map(|&(_, m)| Method::Cam(m)).collect();
        let result = explain(model, x.clone(), &request(&[layer], methods)).unwrap().remove(0);
        assert_eq!(result.explanations.len(), METHODS.len(), "{dir} {layer}: one explanation per method");
        for ((name, _), e) in common::pairs(METHODS.iter(), &result.explanations) {
            assert_eq!(e.method.name(), *name);
            let want_raw = npy_f32(&format!("cam/{dir}/{name}_{layer}_raw.npy"));
            let scale = want_raw.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(e.raw[0].len(), want_raw.len(), "{dir} {name} {layer}: raw map size");
            let raw_err = max_abs_diff(e.raw[0].iter(), want_raw.iter()) / scale;
            assert!(raw_err < 1e-4, "{dir} {name} {layer}: raw map off by {raw_err:.2e} (relative)");
            // The newer methods keep a final-map reference for the first layer only (fixtures/ stays near 30 MB);
            // their raw maps are compared on both.
            if (layer != layers[0] && NEWER.contains(name)) || RAW_ONLY.contains(name) {
                continue;
            }
            let want_cam = npy_f32(&format!("cam/{dir}/{name}_{layer}_cam.npy"));
            assert_eq!(e.cam.shape(), want_cam.shape());
            let cam_err = max_abs_diff(e.cam.iter(), want_cam.iter());
            assert!(cam_err < 1e-4, "{dir} {name} {layer}: final map off by {cam_err:.2e}");
        }
    }
    // Score-CAM and Ablation-CAM (one pass per channel, batches of 32): raw maps on both layers.
    for layer in layers {
        let methods = vec![Method::Cam(CamMethod::ScoreCam), Method::Cam(CamMethod::AblationCam)];
        let result = explain(model, x.clone(), &request(&[layer], methods)).unwrap().remove(0);
        for (name, e) in common::pairs(["scorecam", "ablationcam"].iter(), &result.explanations) {
            let want = npy_f32(&format!("cam/{dir}/{name}_{layer}_raw.npy"));
            assert_eq!(e.raw[0].len(), want.len(), "{dir} {name} {layer}: raw map size");
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = max_abs_diff(e.raw[0].iter(), want.iter()) / scale;
            // Ablation-CAM's weights (y − y_¬k)/y subtract nearly equal scores: their float32 rounding (≈ 1e-6 of a
            // logit) is ≈ 1e-4 of a weight, and a map of signed activations (a batch-norm's output) cancels most of
            // its terms — 7e-4 on `_bn1`, under 1e-4 on the rectified layers.
            let tolerance = if *name == "ablationcam" { 1e-3 } else { 1e-4 };
            assert!(err < tolerance, "{dir} {name} {layer}: raw map off by {err:.2e} (relative)");
        }
    }
    // eigen_smooth (first layer; a weighted-sum method and an element-wise one): raw maps (the post-processing is
    // the one checked above).
    let smooth_methods = [("gradcam", CamMethod::GradCam), ("layercam", CamMethod::LayerCam)];
    let mut req = request(&layers[..1], smooth_methods.iter().map(|&(_, m)| Method::Cam(m)).collect());
    req.eigen_smooth = true;
    let smoothed = explain(model, x.clone(), &req).unwrap().remove(0);
    assert_eq!(smoothed.explanations.len(), 2);
    for ((name, _), e) in common::pairs(smooth_methods.iter(), &smoothed.explanations) {
        let want_raw = npy_f32(&format!("cam/{dir}/{name}_{}_eigensmooth_raw.npy", layers[0]));
        assert_eq!(e.raw[0].len(), want_raw.len());
        let scale = want_raw.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = max_abs_diff(e.raw[0].iter(), want_raw.iter()) / scale;
        assert!(err < 1e-4, "{dir} {name} eigen_smooth: raw map off by {err:.2e} (relative)");
    }
    // The softmax probability as the target: Grad-CAM's raw map (a different map from the logit's).
    let mut req = request(&layers[..1], vec![Method::Cam(CamMethod::GradCam)]);
    req.target = Target::Probability;
    let prob = explain(model, x.clone(), &req).unwrap().remove(0);
    let want = npy_f32(&format!("cam/{dir}/gradcam_{}_prob_raw.npy", layers[0]));
    let raw = &prob.explanations[0].raw[0];
    assert_eq!(raw.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = max_abs_diff(raw.iter(), want.iter()) / scale;
    assert!(err < 1e-4, "{dir} probability target: raw map off by {err:.2e} (relative)");
    let logit = npy_f32(&format!("cam/{dir}/gradcam_{}_raw.npy", layers[0]));
    let apart = max_abs_diff(logit.iter(), want.iter()) / scale;
    assert!(apart > 1e-3, "{dir}: the probability's map equals the logit's ({apart:.2e})");
    // aug_smooth (six augmented inputs, flipped back, averaged): Grad-CAM's final map on the bundled model.
    if dir == "efficientnet_lite0" {
        let mut req = request(&layers[..1], vec![Method::Cam(CamMethod::GradCam)]);
        req.aug_smooth = true;
        let smoothed = explain(model, x.clone(), &req).unwrap().remove(0);
        let want = npy_f32(&format!("cam/{dir}/gradcam_{}_augsmooth_cam.npy", layers[0]));
        let cam = &smoothed.explanations[0].cam;
        assert_eq!(cam.shape(), want.shape());
        let err = max_abs_diff(cam.iter(), want.iter());
        assert!(err < 1e-4, "{dir} aug_smooth: final map off by {err:.2e}");
        let plain = explain(model, x.clone(), &request(&layers[..1], vec![Method::Cam(CamMethod::GradCam)])).unwrap();
        let moved = max_abs_diff(cam.iter(), plain[0].explanations[0].cam.iter());
        assert!(moved > 1e-3, "aug_smooth changed nothing ({moved:.2e})");
    }
    let both = explain(model, x, &request(&layers, vec![Method::Cam(CamMethod::GradCam)])).unwrap().remove(0);
    let want = npy_f32(&format!("cam/{dir}/gradcam_{}+{}_cam.npy", layers[0], layers[1]));
    let err = max_abs_diff(both.explanations[0].cam.iter(), want.iter());
    assert!(err < 1e-4, "{dir}: two-layer Grad-CAM off by {err:.2e}");
}

#[test]
fn efficientnet_lite0_matches_pytorch_grad_cam() {
    check_model(&Model::bundled().unwrap(), "efficientnet_lite0", ["head_act", "_bn1"]);
}

#[test]
fn resnet18_matches_pytorch_grad_cam() {
    let model = Model::build(Arch::Resnet18, Weights::synthetic(), [224, 224], 1000).unwrap();
    check_model(&model, "resnet18", ["layer4", "layer3"]);
}

/// Guided backpropagation crosses every ReLU down to the input, where float32 rounding flips a few masks in any
/// implementation: compare with the float64 reference and require no more than twice pytorch-grad-cam's own float32
/// error.
#[test]
fn guided_backprop_matches_pytorch_grad_cam() {
    let model = Model::build(Arch::Resnet18, Weights::synthetic(), [224, 224], 1000).unwrap();
    let x: Tensor<f32> = npy_f32("models/inputs/chelsea.npy");
    let result = explain(&model, x, &request(&[], vec![Method::GuidedBackprop])).unwrap().remove(0);
    let ours = &result.explanations[0].raw[0];
    let (f32_ref, f64_ref) =
        (npy_f32("cam/resnet18/guided_backprop_f32.npy"), npy_f32("cam/resnet18/guided_backprop_f64.npy"));
    let rel_l2 = |a: &[f32]| {
        let (mut d, mut n) = (0f64, 0f64);
        for (x, y) in common::pairs(a.iter(), f64_ref.iter()) {
            d += ((x - y) as f64).powi(2);
            n += (*y as f64).powi(2);
        }
        (d / n).sqrt()
    };
    // The references keep every 11th value of the flattened image.
    let sampled = strided(ours);
    let (e_ours, e_torch) = (rel_l2(&sampled), rel_l2(f32_ref.as_slice().unwrap()));
    assert!(
        e_ours <= 2.0 * e_torch + 1e-5,
        "guided backprop off by {e_ours:.2e} (pytorch-grad-cam f32: {e_torch:.2e})"
    );
}

/// Every `STRIDE`-th value of a flattened map (the fixtures keep that many: tools/make_attribution_fixtures.py).
fn strided(a: &ndarray::ArrayD<f32>) -> Vec<f32> {
    const STRIDE: usize = 11;
    a.iter().step_by(STRIDE).copied().collect()
}

/// The largest difference relative to the reference's largest magnitude.
fn relative_error(ours: &[f32], want: &ndarray::ArrayD<f32>) -> f32 {
    assert_eq!(ours.len(), want.len(), "sampled sizes");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    max_abs_diff(ours.iter(), want.iter()) / scale
}

/// FullGrad against pytorch-grad-cam's (final maps: input-gradient and bias-gradient terms of every batch-norm).
#[test]
fn fullgrad_matches_pytorch_grad_cam() {
    let x: Tensor<f32> = npy_f32("models/inputs/chelsea.npy");
    let models = [
        ("efficientnet_lite0", Model::bundled().unwrap()),
        ("resnet18", Model::build(Arch::Resnet18, Weights::synthetic(), [224, 224], 1000).unwrap()),
    ];
    for (dir, model) in models {
        let e = explain(&model, x.clone(), &request(&[], vec![Method::FullGrad])).unwrap().remove(0);
        let cam = e.explanations[0].cam.clone().into_dyn();
        let err = relative_error(&strided(&cam), &npy_f32(&format!("cam/{dir}/fullgrad_cam.npy")));
        assert!(err < 1e-3, "{dir}: FullGrad's map off by {err:.2e}");
        if dir == "resnet18" {
            let mut req = request(&[], vec![Method::FullGrad]);
            req.aug_smooth = true;
            let e = explain(&model, x.clone(), &req).unwrap().remove(0);
            let cam = e.explanations[0].cam.clone().into_dyn();
            let err = relative_error(&strided(&cam), &npy_f32("cam/resnet18/fullgrad_augsmooth_cam.npy"));
            assert!(err < 1e-3, "FullGrad with aug_smooth off by {err:.2e}");
        }
    }
}

/// SmoothGrad and Integrated Gradients against Captum's NoiseTunnel(Saliency) and IntegratedGradients, given the
/// same noise (gradcam's seeded generator replaces torch.normal in the reference) and the black baseline. As for
/// guided backpropagation, ReLU and max-pool decisions near a tie flip under float32 rounding (more often on noisy
/// copies): both float32 results are measured against Captum's float64 one, ours may be off by at most twice
/// Captum's own float32 error (relative L2).
#[test]
fn smoothgrad_and_integrated_gradients_match_captum() {
    let model = Model::build(Arch::Resnet18, Weights::synthetic(), [224, 224], 1000).unwrap();
    let x: Tensor<f32> = npy_f32("models/inputs/chelsea.npy");
    let mut req = request(&[], vec![Method::SmoothGrad, Method::IntegratedGradients]);
    (req.samples, req.noise, req.steps) = (8, 0.15, 16);
    let e = explain(&model, x, &req).unwrap().remove(0);
    for (ex, name) in common::pairs(e.explanations.iter(), ["smoothgrad", "integrated_gradients"]) {
        let (f32_ref, f64_ref) =
            (npy_f32(&format!("cam/resnet18/{name}_f32.npy")), npy_f32(&format!("cam/resnet18/{name}_f64.npy")));
        let rel_l2 = |a: &[f32]| {
            assert_eq!(a.len(), f64_ref.len(), "sampled sizes");
            let (mut d, mut n) = (0f64, 0f64);
            for (x, y) in common::pairs(a.iter(), f64_ref.iter()) {
                d += ((x - y) as f64).powi(2);
                n += (*y as f64).powi(2);
            }
            (d / n).sqrt()
        };
        let (ours, captum) = (rel_l2(&strided(&ex.raw[0])), rel_l2(f32_ref.as_slice().unwrap()));
        assert!(ours <= 2.0 * captum + 1e-5, "{name}: off by {ours:.2e} (Captum float32: {captum:.2e})");
        eprintln!("{name}: relative L2 vs float64 {ours:.2e} (Captum float32 {captum:.2e})");
    }
}
