//! Vision transformers from ONNX against PyTorch and pytorch-grad-cam 1.5.7 with its documented
//! `reshape_transform`s (tools/make_transformer_fixtures.py): a ViT shaped like torchvision's `vit_b_16` (class
//! token + 14×14 patch tokens) and a Swin shaped like `swin_t` (channels-last [N, 28, 28, C] blocks), both with
//! seeded weights and reduced depth and width. Logits within 1e-4; Grad-CAM, Grad-CAM++, LayerCAM, HiResCAM,
//! Score-CAM and Ablation-CAM raw maps within 1e-4 of the largest value (Ablation-CAM 1e-3, see cam_parity.rs);
//! Grad-CAM's final map within 1e-4; the input gradient (saliency) within 1e-4; all at the default layer, which must
//! be the one pytorch-grad-cam's tutorials choose.

mod common;

use common::{max_abs_diff, npy_f32, relative_error};
use gradcam::cam::{explain, CamMethod, ClassChoice, Method, Request, TokenOptions};
use gradcam::{Error, Model};

const METHODS: [(&str, CamMethod); 6] = [
    ("gradcam", CamMethod::GradCam),
    ("gradcampp", CamMethod::GradCamPlusPlus),
    ("layercam", CamMethod::LayerCam),
    ("hirescam", CamMethod::HiResCam),
    ("scorecam", CamMethod::ScoreCam),
    ("ablationcam", CamMethod::AblationCam),
];

fn model(name: &str) -> Model {
    Model::from_onnx(&common::fixture(&format!("onnx/transformers/{name}.onnx"))).unwrap()
}

fn request(class: usize, tokens: TokenOptions) -> Request {
    let mut methods: Vec<Method> = METHODS.iter().map(|&(_, m)| Method::Cam(m)).collect();
    methods.push(Method::Saliency);
    Request { classes: ClassChoice::Classes(vec![class]), methods, tokens, ..Request::default() }
}

fn check(name: &str, layer: &str, grid: [usize; 2]) {
    let m = model(name);
    assert_eq!(gradcam::cam::default_layer(&m.graph, &m.logits).unwrap(), layer, "{name}: default layer");
    let x = npy_f32("models/inputs/chelsea.npy");
    let want_logits = npy_f32(&format!("cam/{name}/logits.npy"));
    let class = want_logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    let result = explain(&m, x, &request(class, TokenOptions::default())).unwrap().remove(0);
    // Logits, through the predictions (top 5 of 10 classes).
    assert_eq!(result.predictions[0].class, class, "{name}: top-1");
    for p in &result.predictions {
        let err = (p.logit - want_logits[p.class]).abs();
        assert!(err < 1e-4, "{name}: logit {} off by {err:.2e}", p.class);
    }
    assert_eq!(result.layers, [layer]);
    assert_eq!(result.explanations.len(), METHODS.len() + 1);
    for ((method, _), e) in common::pairs(METHODS.iter(), &result.explanations[..METHODS.len()]) {
        assert_eq!(e.method.name(), *method);
        assert_eq!(e.raw[0].shape(), grid, "{name} {method}: the token grid");
        let want = npy_f32(&format!("cam/{name}/{method}_raw.npy"));
        let err = relative_error(&e.raw[0].iter().copied().collect::<Vec<_>>(), want.as_slice().unwrap());
        let tolerance = if *method == "ablationcam" { 1e-3 } else { 1e-4 };
        assert!(err < tolerance, "{name} {method}: raw map off by {err:.2e} (relative)");
    }
    let want_cam = npy_f32(&format!("cam/{name}/gradcam_cam.npy"));
    let cam = &result.explanations[0].cam;
    assert_eq!(cam.shape(), want_cam.shape());
    let err = max_abs_diff(cam.iter(), want_cam.iter());
    assert!(err < 1e-4, "{name}: final Grad-CAM map off by {err:.2e}");
    let saliency = result.explanations.last().unwrap();
    assert_eq!(saliency.method, Method::Saliency);
    let sampled: Vec<f32> = saliency.raw[0].iter().step_by(11).copied().collect();
    let err = relative_error(&sampled, npy_f32(&format!("cam/{name}/saliency.npy")).as_slice().unwrap());
    assert!(err < 1e-4, "{name}: input gradient off by {err:.2e} (relative)");
}

#[test]
fn vit_matches_pytorch_grad_cam_with_its_reshape_transform() {
    check("vit", "/encoder/layers/encoder_layer_1/ln_1/LayerNormalization_output_0", [14, 14]);
}

#[test]
fn swin_matches_pytorch_grad_cam_with_its_reshape_transform() {
    check("swin", "/features/features.3/features.3.1/norm1/LayerNormalization_output_0", [28, 28]);
}

#[test]
fn token_grid_given_or_inferred_gives_the_same_maps_and_a_wrong_one_is_refused() {
    let m = model("vit");
    let x = npy_f32("models/inputs/chelsea.npy");
    let req = |tokens| Request { methods: vec![Method::Cam(CamMethod::GradCam)], tokens, ..Request::default() };
    let auto = explain(&m, x.clone(), &req(TokenOptions::default())).unwrap().remove(0);
    for tokens in [
        TokenOptions { grid: Some((14, 14)), skip: None },
        TokenOptions { grid: Some((14, 14)), skip: Some(1) },
        TokenOptions { grid: None, skip: Some(1) },
    ] {
        let given = explain(&m, x.clone(), &req(tokens)).unwrap().remove(0);
        assert_eq!(given.explanations[0].raw, auto.explanations[0].raw, "{tokens:?}");
    }
    // 197 tokens are not 1 + 16×16, nor 2 + a square grid.
    let layer = "/encoder/layers/encoder_layer_1/ln_1/LayerNormalization_output_0".to_string();
    for tokens in [TokenOptions { grid: Some((16, 16)), skip: None }, TokenOptions { grid: None, skip: Some(2) }] {
        match explain(&m, x.clone(), &Request { layers: vec![layer.clone()], ..req(tokens) }) {
            Err(Error::NotSpatial { shape, why, .. }) => {
                assert_eq!(shape, [1, 197, 32]);
                assert!(why.contains("197"), "{why}");
            }
            other => panic!("{tokens:?}: expected a NotSpatial error, got {other:?}"),
        }
    }
}

#[test]
fn a_batch_runs_one_image_at_a_time_on_an_export_traced_for_one() {
    // The exports spell batch 1 out in their reshapes: two images still get two explanations, each the same as
    // explained alone.
    let m = model("vit");
    assert!(m.single_item());
    let x = npy_f32("models/inputs/chelsea.npy");
    let two = ndarray::concatenate(ndarray::Axis(0), &[x.view(), x.view()]).unwrap();
    let req = Request { methods: vec![Method::Cam(CamMethod::GradCam)], ..Request::default() };
    let alone = explain(&m, x, &req).unwrap().remove(0);
    let both = explain(&m, two, &req).unwrap();
    assert_eq!(both.len(), 2);
    for r in &both {
        assert_eq!(r.explanations[0].raw, alone.explanations[0].raw);
    }
}
