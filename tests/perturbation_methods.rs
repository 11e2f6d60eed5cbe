//! The methods that run the model on altered copies of the image (Score-CAM, Ablation-CAM, SmoothGrad, Integrated
//! Gradients) and FullGrad: the properties their definitions promise, on small models. Their parity with
//! pytorch-grad-cam and Captum is in cam_parity.rs.

mod common;

use common::{max_abs_diff, random};
use gradcam::cam::{explain, CamMethod, ClassChoice, Method, Request};
use gradcam::models::Weights;
use gradcam::ops::{Conv, Flatten, Gemm, GlobalAveragePool, Softplus};
use gradcam::{Arch, GraphBuilder, Model, Tensor};
use ndarray::Axis;

fn request(methods: Vec<Method>, class: usize) -> Request {
    Request { classes: ClassChoice::Classes(vec![class]), methods, ..Request::default() }
}

fn small_resnet() -> Model {
    Model::build(Arch::Resnet18, Weights::synthetic(), [64, 64], 1000).unwrap()
}

/// Fed the values a full pass computed, the part of the network after a layer gives the full pass's logits; a
/// layer inside a residual block also needs the block's input (its shortcut), but not the image.
#[test]
fn a_suffix_plan_reproduces_the_logits_from_inside_a_residual_block() {
    let model = small_resnet();
    let g = &model.graph;
    let x: Tensor<f32> = random(&[2, 3, 64, 64], 7);
    for from in ["layer3", "layer4.0.relu"] {
        let suffix = g.suffix_plan(&[from], &[&model.logits]).unwrap();
        let feeds: Vec<String> = suffix.feeds().iter().map(|&v| g.value(v).name.clone()).collect();
        assert!(suffix.feeds().contains(&g.find(from).unwrap()), "{from}: {feeds:?}");
        assert!(!feeds.contains(&model.input), "{from}: the image is not needed ({feeds:?})");
        if from == "layer4.0.relu" {
            assert_eq!(feeds.len(), 2, "the layer and the block's shortcut input: {feeds:?}");
        }
        let mut keep: Vec<&str> = feeds.iter().map(String::as_str).collect();
        keep.push(&model.logits);
        let full = g.forward(&g.inference_plan(&keep).unwrap(), vec![(&model.input, x.clone())]).unwrap();
        let inputs: Vec<(&str, Tensor<f32>)> =
            feeds.iter().map(|f| (f.as_str(), full.get(f).unwrap().clone())).collect();
        let part = g.forward(&suffix, inputs).unwrap();
        let (a, b) = (full.get(&model.logits).unwrap(), part.get(&model.logits).unwrap());
        let err = max_abs_diff(a.iter(), b.iter());
        assert!(err < 1e-4, "{from}: logits differ by {err}");
        // Without its feeds, the suffix refuses to run.
        assert!(g.forward(&suffix, vec![]).is_err());
    }
}

/// Score-CAM and Ablation-CAM need no backward pass; their maps are weighted sums of the activation's channels, and
/// a batch size of 1 gives the same map as 32 (the copies are independent).
#[test]
fn score_and_ablation_cam_do_not_depend_on_the_batch_size() {
    let model = small_resnet();
    let x: Tensor<f32> = random(&[1, 3, 64, 64], 3);
    let methods = vec![Method::Cam(CamMethod::ScoreCam), Method::Cam(CamMethod::AblationCam)];
    let mut req = request(methods, 281);
    req.layers = vec!["layer4".into()];
    let a = explain(&model, x.clone(), &req).unwrap().remove(0);
    req.batch_size = 1;
    let b = explain(&model, x, &req).unwrap().remove(0);
    for (ea, eb) in common::pairs(a.explanations.iter(), &b.explanations) {
        let scale = ea.raw[0].iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = max_abs_diff(ea.raw[0].iter(), eb.raw[0].iter());
        assert!(
            scale > 0.0 && err <= 1e-4 * scale,
            "{}: batch 1 vs 32 differ by {err} (scale {scale})",
            ea.method.name()
        );
    }
}

/// A smooth classifier (softplus): conv → softplus → global average pool → linear.
fn smooth_model(classes: usize) -> Model {
    let mut b = GraphBuilder::<f32>::new();
    let x = b.input("input", &[1, 3, 12, 12]).unwrap();
    let wc = b.constant("conv.weight", random(&[8, 3, 3, 3], 11)).unwrap();
    let conv = b.node("conv", Conv::new(1, 1), &[x, wc]).unwrap();
    let act = b.node("features", Softplus, &[conv]).unwrap();
    let pooled = b.node("pool", GlobalAveragePool, &[act]).unwrap();
    let flat = b.node("flat", Flatten::default(), &[pooled]).unwrap();
    let wf = b.constant("fc.weight", random(&[classes, 8], 12)).unwrap();
    let logits = b.node("logits", Gemm::linear(), &[flat, wf]).unwrap();
    b.output(logits);
    Model {
        graph: b.build(),
        name: "smooth".into(),
        arch: None,
        input: "input".into(),
        logits: "logits".into(),
        input_size: [12, 12],
        labels: None,
        normalization: gradcam::input::Normalization::imagenet(),
        normalization_assumed: false,
    }
}

/// Integrated Gradients' completeness axiom: the attributions sum to y(x) − y(baseline) (the baseline being the
/// black image), here within the quadrature's error on a smooth model.
#[test]
fn integrated_gradients_sum_to_the_score_difference() {
    let model = smooth_model(3);
    let x: Tensor<f32> = random(&[1, 3, 12, 12], 5);
    let mut req = request(vec![Method::IntegratedGradients], 1);
    req.steps = 32;
    let e = explain(&model, x.clone(), &req).unwrap().remove(0).explanations.remove(0);
    let total: f64 = e.raw[0].iter().map(|&v| v as f64).sum();
    let n = &model.normalization;
    let black = Tensor::<f32>::from_shape_fn(x.raw_dim(), |idx| -n.mean[idx[1] % 3] / n.std[idx[1] % 3]);
    let plan = model.graph.inference_plan(&[]).unwrap();
    let y = |t: Tensor<f32>| model.graph.forward(&plan, vec![("input", t)]).unwrap().get("logits").unwrap()[[0, 1]];
    let want = (y(x) - y(black)) as f64;
    assert!((total - want).abs() < 1e-3 * want.abs().max(1.0), "Σ attributions {total} vs y(x) − y(x') {want}");
}

/// SmoothGrad without noise is the absolute gradient (every copy is the image).
#[test]
fn smoothgrad_without_noise_is_the_absolute_gradient() {
    let model = smooth_model(3);
    let x: Tensor<f32> = random(&[1, 3, 12, 12], 9);
    let mut req = request(vec![Method::SmoothGrad, Method::Saliency], 2);
    req.noise = 0.0;
    req.samples = 3;
    let r = explain(&model, x, &req).unwrap().remove(0);
    let (sg, sal) = (&r.explanations[0].raw[0], &r.explanations[1].raw[0]);
    let err = common::pairs(sg.iter(), sal.iter()).fold(0f32, |m, (a, b)| m.max((a - b.abs()).abs()));
    let scale = sal.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(err <= 1e-5 * scale, "SmoothGrad(σ = 0) vs |saliency|: {err}");
    // With noise the map changes, and the same request gives the same map (seeded noise).
    let x: Tensor<f32> = random(&[1, 3, 12, 12], 9);
    let mut req = request(vec![Method::SmoothGrad], 2);
    req.samples = 4;
    let a = explain(&model, x.clone(), &req).unwrap().remove(0).explanations.remove(0);
    let b = explain(&model, x, &req).unwrap().remove(0).explanations.remove(0);
    assert_eq!(a.raw[0], b.raw[0]);
    let moved = common::pairs(a.raw[0].iter(), sal.iter()).fold(0f32, |m, (a, b)| m.max((a - b.abs()).abs()));
    assert!(moved > 1e-4 * scale, "noise changed nothing");
}

/// FullGrad sums the input term and one term per bias layer: on a network without biases it is the input term,
/// `|∂y/∂x ⊙ x|` with each channel min-max scaled.
#[test]
fn fullgrad_without_bias_layers_is_the_scaled_input_term() {
    let model = smooth_model(3);
    let x: Tensor<f32> = random(&[1, 3, 12, 12], 4);
    let r = explain(&model, x.clone(), &request(vec![Method::FullGrad, Method::Saliency], 0)).unwrap().remove(0);
    let (fg, gx) = (&r.explanations[0].raw[0], &r.explanations[1].raw[0]);
    let mut want = ndarray::Array2::<f32>::zeros((12, 12));
    for c in 0..3 {
        let term = (&gx.index_axis(Axis(0), c) * &x.index_axis(Axis(0), 0).index_axis(Axis(0), c)).mapv(f32::abs);
        let (lo, hi) = term.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        want += &term.mapv(|v| (v - lo) / (hi - lo + 1e-7));
    }
    let err = max_abs_diff(fg.iter(), want.iter());
    assert!(err < 1e-5, "FullGrad vs the scaled input term: {err}");
}

#[test]
fn copies_and_noise_out_of_range_are_refused() {
    let model = smooth_model(3);
    let x: Tensor<f32> = random(&[1, 3, 12, 12], 1);
    for (samples, steps, noise, batch) in [
        (0, 50, 0.15, 32),
        (50, 0, 0.15, 32),
        (50, 10_001, 0.15, 32),
        (50, 50, f32::NAN, 32),
        (50, 50, -1.0, 32),
        (50, 50, 0.1, 0),
    ] {
        let mut req = request(vec![Method::SmoothGrad], 0);
        (req.samples, req.steps, req.noise, req.batch_size) = (samples, steps, noise, batch);
        let err = explain(&model, x.clone(), &req).unwrap_err().to_string();
        assert!(err.contains("must be"), "{err}");
    }
}

/// A class named twice is explained once, for every method (SmoothGrad's maps were keyed by class).
#[test]
fn a_class_named_twice_is_explained_once() {
    let model = smooth_model(3);
    let x: Tensor<f32> = random(&[1, 3, 12, 12], 2);
    let req = Request {
        classes: ClassChoice::Classes(vec![1, 1]),
        methods: vec![Method::SmoothGrad, Method::IntegratedGradients, Method::Cam(CamMethod::ScoreCam)],
        samples: 2,
        steps: 2,
        layers: vec!["features".into()],
        ..Request::default()
    };
    let r = explain(&model, x, &req).unwrap().remove(0);
    assert_eq!(r.explanations.len(), 3);
}

/// Class scores shaped `[N, C, 1, 1]` (a 1×1 convolution and a global pool, no Flatten) are a classifier's: every
/// target and Finer-CAM work on them.
#[test]
fn class_scores_shaped_n_c_1_1_work_with_every_target() {
    let mut b = GraphBuilder::<f32>::new();
    let x = b.input("input", &[1, 3, 12, 12]).unwrap();
    let wc = b.constant("conv.weight", random(&[8, 3, 3, 3], 21)).unwrap();
    let conv = b.node("conv", Conv::new(1, 1), &[x, wc]).unwrap();
    let act = b.node("features", Softplus, &[conv]).unwrap();
    let wk = b.constant("head.weight", random(&[4, 8, 1, 1], 22)).unwrap();
    let head = b.node("head", Conv::new(1, 0), &[act, wk]).unwrap();
    let pooled = b.node("logits", GlobalAveragePool, &[head]).unwrap();
    b.output(pooled);
    let model = Model { graph: b.build(), logits: "logits".into(), ..smooth_model(4) };
    assert!(!model.is_segmentation());
    let x: Tensor<f32> = random(&[1, 3, 12, 12], 3);
    for target in [gradcam::cam::Target::Logit, gradcam::cam::Target::Probability] {
        let req = Request {
            layers: vec!["features".into()],
            methods: vec![Method::Cam(CamMethod::GradCam), Method::Cam(CamMethod::FinerCam), Method::SmoothGrad],
            samples: 2,
            target,
            ..Request::default()
        };
        let r = explain(&model, x.clone(), &req).unwrap().remove(0);
        assert!(r.explanations.iter().all(|e| e.cam.iter().all(|v| v.is_finite())), "{target:?}");
    }
}

/// On the CPU a small model's altered copies run as their items, side by side (`Graph::runs_items_apart`): the maps
/// are those of copies run one at a time, bit for bit (batch size 1 runs each copy as a batch of its own).
#[test]
fn copies_run_side_by_side_give_the_maps_of_copies_run_one_at_a_time() {
    let model = smooth_model(3);
    assert!(model.graph.runs_items_apart(4) && !model.graph.runs_items_apart(1));
    let x: Tensor<f32> = random(&[1, 3, 12, 12], 9);
    let methods = vec![Method::SmoothGrad, Method::IntegratedGradients, Method::Cam(CamMethod::ScoreCam)];
    let mut req = request(methods, 2);
    req.layers = vec!["features".into()];
    (req.samples, req.steps, req.batch_size) = (6, 6, 4);
    let side_by_side = explain(&model, x.clone(), &req).unwrap().remove(0);
    req.batch_size = 1;
    let one_at_a_time = explain(&model, x, &req).unwrap().remove(0);
    assert_eq!(side_by_side.explanations.len(), 3);
    for (a, b) in common::pairs(&side_by_side.explanations, &one_at_a_time.explanations) {
        assert!(a.raw[0].iter().any(|&v| v != 0.0), "{}: an empty map", a.method.name());
        assert!(a.raw == b.raw && a.cam == b.cam, "{}: the maps differ", a.method.name());
    }
}
