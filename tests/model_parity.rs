//! Whole models against PyTorch (fixtures/models, made by tools/make_model_fixtures.py): logits, the activation and
//! its gradient at the usual Grad-CAM layer within 1e-4 of the reference's largest magnitude, and the input gradient
//! against PyTorch's float64 result. torchvision models use synthetic weights that both sides compute from the same formula; the bundled
//! EfficientNet-Lite0 uses its real (f16-rounded) weights.

mod common;

use common::{max_abs_diff, npy_f32, one_hot};
use gradcam::input::load_image;
use gradcam::models::Weights;
use gradcam::{Arch, Model, Tensor};

/// Largest |a − b| relative to the largest |b|.
fn rel_err(a: &Tensor<f32>, b: &Tensor<f32>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let scale = b.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)).max(1e-30);
    common::pairs(a.iter(), b.iter()).fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs())) / scale
}

fn check(model: &Model, case: &str, layer: Option<&str>) {
    check_fused(model, case, layer);
    let dir = format!("models/{case}");
    let image = if case.ends_with("coffee") { "coffee" } else { "chelsea" };
    let x = npy_f32(&format!("models/inputs/{image}.npy"));
    let want_logits = npy_f32(&format!("{dir}/logits.npy"));
    let g = &model.graph;
    let Some(layer) = layer else {
        let plan = g.inference_plan(&[&model.logits]).unwrap().unfused();
        let acts = g.forward(&plan, vec![(&model.input, x)]).unwrap();
        let e = rel_err(acts.get(&model.logits).unwrap(), &want_logits);
        assert!(e < 1e-4, "{case}: logits off by {e:.2e}");
        return;
    };
    let plan = g.plan(&[&model.logits], &[layer, &model.input], &[layer]).unwrap().unfused();
    let acts = g.forward(&plan, vec![(&model.input, x)]).unwrap();
    let logits = acts.get(&model.logits).unwrap();
    let e = rel_err(logits, &want_logits);
    assert!(e < 1e-4, "{case}: logits off by {e:.2e}");
    let class = (0..logits.shape()[1]).max_by(|&a, &b| logits[[0, a]].total_cmp(&logits[[0, b]])).unwrap();
    let grads = acts.backward(vec![(&model.logits, one_hot(logits.shape()[1], class))]).unwrap();
    for (name, got, want) in [
        ("activation", acts.get(layer).unwrap(), "act"),
        ("activation gradient", grads.get(layer).unwrap(), "act_grad"),
    ] {
        let e = rel_err(got, &npy_f32(&format!("{dir}/{want}.npy")));
        assert!(e < 1e-4, "{case}: {name} at '{layer}' off by {e:.2e}");
    }
    // The input gradient crosses every ReLU kink, so float32 rounding flips a few masks in any implementation: judge
    // it against PyTorch's float64 gradient, and require no more than twice PyTorch's own float32 error.
    let reference = npy_f32(&format!("{dir}/input_grad_f64.npy"));
    let ours = rel_l2(grads.get(&model.input).unwrap(), &reference);
    let torch = rel_l2(&npy_f32(&format!("{dir}/input_grad.npy")), &reference);
    assert!(ours <= 2.0 * torch + 1e-5, "{case}: input gradient off by {ours:.2e} (PyTorch f32: {torch:.2e})");
}

/// The fused path (batch-norm folded into the weights, clamps in the GEMM epilogue, FMA kernels) against PyTorch,
/// with every fused chain's output compared to the unfused path. Folding and FMA round differently from PyTorch's
/// op-by-op f32, which moves values by a few ulps per layer and can flip the odd ReLU/ReLU6 mask in the input
/// gradient; the bounds below are set from the errors measured on every SIMD level (README of BENCHMARKS.md: fused
/// path accuracy) with a margin, and stay orders of magnitude below what a wrong fold or a wrong mask would give.
fn check_fused(model: &Model, case: &str, layer: Option<&str>) {
    let dir = format!("models/{case}");
    let image = if case.ends_with("coffee") { "coffee" } else { "chelsea" };
    let x = npy_f32(&format!("models/inputs/{image}.npy"));
    let g = &model.graph;
    let layers: Vec<&str> = layer.into_iter().collect();
    let wrt: Vec<&str> = layers.iter().copied().chain([model.input.as_str()]).collect();
    let plan = g.plan(&[&model.logits], &wrt, &layers).unwrap();
    assert!(plan.fused_chains().0 > 0, "{case}: nothing was fused");
    let acts = g.forward(&plan, vec![(&model.input, x.clone())]).unwrap();
    let logits = acts.get(&model.logits).unwrap();
    let e = rel_err(logits, &npy_f32(&format!("{dir}/logits.npy")));
    eprintln!("{case}: fused logits {e:.2e}");
    assert!(e < 5e-4, "{case}: fused logits off by {e:.2e}");
    let class = (0..logits.shape()[1]).max_by(|&a, &b| logits[[0, a]].total_cmp(&logits[[0, b]])).unwrap();
    let grads = acts.backward(vec![(&model.logits, one_hot(logits.shape()[1], class))]).unwrap();
    if let Some(layer) = layer {
        for (name, got, want) in [
            ("activation", acts.get(layer).unwrap(), "act"),
            ("activation gradient", grads.get(layer).unwrap(), "act_grad"),
        ] {
            let e = rel_err(got, &npy_f32(&format!("{dir}/{want}.npy")));
            eprintln!("{case}: fused {name} {e:.2e}");
            assert!(e < 5e-4, "{case}: fused {name} at '{layer}' off by {e:.2e}");
        }
        let reference = npy_f32(&format!("{dir}/input_grad_f64.npy"));
        let ours = rel_l2(grads.get(&model.input).unwrap(), &reference);
        let torch = rel_l2(&npy_f32(&format!("{dir}/input_grad.npy")), &reference);
        eprintln!("{case}: fused input gradient {ours:.2e} (PyTorch f32 {torch:.2e})");
        assert!(
            ours <= (2.0 * torch).max(5e-3),
            "{case}: fused input gradient off by {ours:.2e} (PyTorch f32: {torch:.2e})"
        );
    }
}

/// ‖a − b‖ / ‖b‖.
fn rel_l2(a: &Tensor<f32>, b: &Tensor<f32>) -> f64 {
    let d: f64 = common::pairs(a.iter(), b.iter()).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (d / n.max(1e-300)).sqrt()
}

fn synthetic(arch: Arch) -> Model {
    Model::build(arch, Weights::synthetic(), [224, 224], 1000).unwrap()
}

#[test]
fn efficientnet_lite0_bundled_matches_pytorch() {
    let model = Model::bundled().unwrap();
    check(&model, "efficientnet_lite0_chelsea", Some("features"));
    check(&model, "efficientnet_lite0_coffee", Some("features"));
}

#[test]
fn resnet18_matches_pytorch() {
    check(&synthetic(Arch::Resnet18), "resnet18_synthetic", Some("layer4"));
}

#[test]
fn vgg16_matches_pytorch() {
    check(&synthetic(Arch::Vgg16), "vgg16_synthetic", Some("features.29"));
}

#[test]
fn mobilenet_v2_matches_pytorch() {
    check(&synthetic(Arch::MobilenetV2), "mobilenet_v2_synthetic", Some("features.18"));
}

#[test]
fn other_torchvision_architectures_match_pytorch_logits() {
    for (arch, case) in [
        (Arch::Resnet34, "resnet34_synthetic"),
        (Arch::Resnet50, "resnet50_synthetic"),
        (Arch::Vgg11, "vgg11_synthetic"),
        (Arch::Vgg16Bn, "vgg16_bn_synthetic"),
    ] {
        check(&synthetic(arch), case, None);
    }
}

/// The image path (decode, antialiased resize, normalize) reproduces PyTorch's preprocessing, and the bundled
/// model's probabilities match PyTorch's within 1e-3.
#[test]
fn image_preprocessing_and_probabilities_match_pytorch() {
    let model = Model::bundled().unwrap();
    for (image, case) in [("chelsea.png", "efficientnet_lite0_chelsea"), ("coffee.png", "efficientnet_lite0_coffee")] {
        let img = load_image(&common::fixture(&format!("images/{image}")), [224, 224]).unwrap();
        let x = model.normalization.apply(&img.pixels);
        let want_x = npy_f32(&format!("models/inputs/{}.npy", image.trim_end_matches(".png")));
        let dx = max_abs_diff(x.iter(), want_x.iter());
        assert!(dx < 1e-4, "{image}: preprocessing differs by {dx}");
        let plan = model.graph.inference_plan(&[&model.logits]).unwrap();
        let acts = model.graph.forward(&plan, vec![(&model.input, x)]).unwrap();
        let softmax = |l: &Tensor<f32>| {
            let m = l.iter().cloned().fold(f32::MIN, f32::max);
            let e: Vec<f64> = l.iter().map(|v| ((v - m) as f64).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect::<Vec<_>>()
        };
        let (p, q) =
            (softmax(acts.get(&model.logits).unwrap()), softmax(&npy_f32(&format!("models/{case}/logits.npy"))));
        let worst = common::pairs(p.iter(), &q).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 1e-3, "{image}: probabilities differ by {worst}");
    }
}
