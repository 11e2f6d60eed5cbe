//! Properties the Grad-CAM paper proves or shows: equivalence with CAM on GAP networks, class discrimination,
//! counterfactual maps complementary to Grad-CAM.

mod common;

use common::{max_abs_diff, random};
use gradcam::cam::{explain, CamMethod, ClassChoice, Method, Request};
use gradcam::input::{decode_image, image_to_tensor, Normalization};
use gradcam::models::imagenet_labels;
use gradcam::ops::{Conv, Flatten, Gemm, GlobalAveragePool, Relu, Reshape};
use gradcam::{GraphBuilder, Model, Tensor};
use ndarray::{Array2, Axis};

fn gradcam(layers: &[&str], class: usize, counterfactual: bool) -> Request {
    Request {
        layers: layers.iter().map(|s| s.to_string()).collect(),
        classes: ClassChoice::Classes(vec![class]),
        methods: vec![Method::Cam(CamMethod::GradCam)],
        counterfactual,
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

/// conv → ReLU → global average pool → linear: Grad-CAM's weights are the linear weights / Z (paper §3.1), so the
/// raw Grad-CAM map is the CAM map Σ_k w_ck A_k divided by the number of positions Z.
#[test]
fn gradcam_equals_cam_on_a_gap_network() {
    let (c, h, w, classes) = (6, 5, 7, 4);
    let mut b = GraphBuilder::<f32>::new();
    let x = b.input("input", &[1, 3, h, w]).unwrap();
    let wc = b.constant("conv.weight", random(&[c, 3, 3, 3], 1)).unwrap();
    let conv = b.node("conv", Conv::new(1, 1), &[x, wc]).unwrap();
    b.node("features", Relu, &[conv]).unwrap();
    let feat = b.shape(conv).to_vec();
    assert_eq!(feat, [1, c, h, w]);
    let relu = b.build();
    // Rebuild with the head (the builder is consumed by build).
    let mut b = GraphBuilder::<f32>::new();
    let x = b.input("input", &[1, 3, h, w]).unwrap();
    let wc = b.constant("conv.weight", random(&[c, 3, 3, 3], 1)).unwrap();
    let conv = b.node("conv", Conv::new(1, 1), &[x, wc]).unwrap();
    let a = b.node("features", Relu, &[conv]).unwrap();
    let gap = b.node("gap", GlobalAveragePool, &[a]).unwrap();
    let flat = b.node("flatten", Flatten::default(), &[gap]).unwrap();
    let fc_w: Tensor<f32> = random(&[classes, c], 2);
    let fw = b.constant("fc.weight", fc_w.clone()).unwrap();
    let fb = b.constant("fc.bias", random(&[classes], 3)).unwrap();
    let logits = b.node("fc", Gemm::linear(), &[flat, fw, fb]).unwrap();
    b.output(logits);
    drop(relu);
    let model = Model {
        graph: b.build(),
        name: "gap-net".into(),
        arch: None,
        input: "input".into(),
        logits: "fc".into(),
        input_size: [h, w],
        labels: None,
        normalization: Normalization::imagenet(),
        normalization_assumed: false,
    };
    let input: Tensor<f32> = random(&[1, 3, h, w], 4);
    let plan = model.graph.inference_plan(&["features"]).unwrap();
    let acts = model.graph.forward(&plan, vec![("input", input.clone())]).unwrap();
    let a = acts.get("features").unwrap().index_axis(Axis(0), 0).to_owned();
    for class in 0..classes {
        let result = explain(&model, input.clone(), &gradcam(&["features"], class, false)).unwrap().remove(0);
        let raw = result.explanations[0].raw[0].clone().into_dimensionality::<ndarray::Ix2>().unwrap();
        let z = (h * w) as f32;
        let mut cam = Array2::<f32>::zeros((h, w));
        for k in 0..c {
            cam.scaled_add(fc_w[[class, k]] / z, &a.index_axis(Axis(0), k));
        }
        let err = (&raw - &cam).iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(err < 1e-6, "class {class}: Grad-CAM differs from CAM/Z by {err}");
    }
}

/// A cat on the left, an espresso on the right: the bundled model's Grad-CAM for a cat class peaks on the left
/// half, for espresso on the right half.
#[test]
fn class_discrimination_on_a_cat_and_espresso_composite() {
    let model = Model::bundled().unwrap();
    let cat = decode_image(&common::fixture("images/chelsea.png")).unwrap();
    let cup = decode_image(&common::fixture("images/coffee.png")).unwrap();
    let side = 224u32;
    let cat = image::imageops::resize(&cat, side, side, image::imageops::FilterType::Triangle);
    let cup = image::imageops::resize(&cup, side, side, image::imageops::FilterType::Triangle);
    let mut composite = image::RgbImage::new(2 * side, side);
    image::imageops::replace(&mut composite, &cat, 0, 0);
    image::imageops::replace(&mut composite, &cup, side as i64, 0);
    let x = model.normalization.apply(&image_to_tensor(&composite, model.input_size));
    let labels = imagenet_labels();
    let mut request = gradcam(&[], 0, false);
    request.classes = ClassChoice::Classes(vec![285, 967]);
    let result = explain(&model, x, &request).unwrap().remove(0);
    let (cat_class, cup_class) = (&result.explanations[0], &result.explanations[1]);
    let mass = |m: &Array2<f32>| {
        let half = m.shape()[1] / 2;
        let left: f32 = m.slice(ndarray::s![.., ..half]).sum();
        let right: f32 = m.slice(ndarray::s![.., half..]).sum();
        (left, right)
    };
    let peak_x = |m: &Array2<f32>| gradcam::cam::localize(m).peak[0];
    let (cl, cr) = mass(&cat_class.cam);
    let (el, er) = mass(&cup_class.cam);
    assert!(
        peak_x(&cat_class.cam) < 112 && cl > cr,
        "{}: peak {} mass {cl}/{cr}",
        labels[cat_class.class],
        peak_x(&cat_class.cam)
    );
    assert!(peak_x(&cup_class.cam) >= 112 && er > el, "espresso: peak {} mass {el}/{er}", peak_x(&cup_class.cam));
}

/// The counterfactual map (negated gradients) and the Grad-CAM map are positive on disjoint sets of positions.
#[test]
fn counterfactual_and_gradcam_do_not_overlap() {
    let model = Model::bundled().unwrap();
    let x = common::npy_f32("models/inputs/chelsea.npy");
    for class in [285, 967] {
        let pos = explain(&model, x.clone(), &gradcam(&[], class, false)).unwrap().remove(0);
        let neg = explain(&model, x.clone(), &gradcam(&[], class, true)).unwrap().remove(0);
        let (p, n) = (&pos.explanations[0].raw[0], &neg.explanations[0].raw[0]);
        let overlap = common::pairs(p.iter(), n.iter()).filter(|(a, b)| **a > 0.0 && **b > 0.0).count();
        assert_eq!(overlap, 0, "class {class}");
        // Negating the gradients negates the raw map exactly, so wherever one map is positive the other is negative.
        assert!(
            common::pairs(p.iter(), n.iter()).all(|(a, b)| *b == -*a),
            "class {class}: counterfactual is not the negated map"
        );
        assert!(p.iter().chain(n.iter()).any(|v| *v > 0.0), "class {class}: neither map has support");
    }
}

/// A batch explains each image as if it were alone: on the CPU a small model's batch runs as its images, side by
/// side on the threads, so the maps are those of each image alone, bit for bit, on any number of threads.
#[test]
fn a_batch_gives_the_same_maps_as_single_images() {
    let model = Model::bundled().unwrap();
    assert!(model.graph.runs_items_apart(3));
    let cat = common::npy_f32("models/inputs/chelsea.npy");
    let cup = common::npy_f32("models/inputs/coffee.npy");
    let batch = ndarray::concatenate(Axis(0), &[cat.view(), cup.view(), cat.view()]).unwrap();
    let mut request = gradcam(&[], 0, false);
    request.classes = ClassChoice::Top(1);
    request.methods.push(Method::Saliency);
    let on_threads = |n: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
        pool.install(|| explain(&model, batch.clone(), &request).unwrap())
    };
    let together = on_threads(2);
    assert_eq!(together.len(), 3);
    for (i, x) in [cat.clone(), cup, cat].into_iter().enumerate() {
        let alone = explain(&model, x, &request).unwrap().remove(0);
        assert_eq!(together[i].predictions[0].class, alone.predictions[0].class);
        assert_eq!(together[i].explanations.len(), 2);
        for (a, b) in common::pairs(together[i].explanations.iter(), &alone.explanations) {
            assert!(a.cam == b.cam && a.raw == b.raw, "image {i} {}: batch and single maps differ", a.method.name());
        }
    }
    assert_eq!(together[1].predictions[0].class, 967);
    for threads in [1, 3] {
        let again = on_threads(threads);
        for (r, a) in common::pairs(&together, &again) {
            for (x, y) in common::pairs(&r.explanations, &a.explanations) {
                assert!(x.cam == y.cam && x.raw == y.raw, "{threads} threads: {} differs", x.method.name());
            }
        }
    }
}

/// A layer named twice is explained once (the mean of two equal maps is the map): same maps, one layer reported.
#[test]
fn a_layer_named_twice_is_explained_once() {
    let model = Model::bundled().unwrap();
    let x: Tensor<f32> = common::npy_f32("models/inputs/chelsea.npy");
    let once = explain(&model, x.clone(), &gradcam(&["head_act"], 285, false)).unwrap().remove(0);
    let twice = explain(&model, x, &gradcam(&["head_act", "head_act"], 285, false)).unwrap().remove(0);
    let (a, b) = (&once.explanations[0], &twice.explanations[0]);
    assert_eq!(b.layers, ["head_act"]);
    assert_eq!(b.raw.len(), 1);
    assert_eq!(a.cam, b.cam);
}

/// A model exported for a fixed batch (its Reshape holds the batch size, as torch.onnx writes `x.view(8, -1)`) takes
/// that batch whole: Grad-CAM on it gives each image the map a batch-agnostic twin gives. It used to be split into
/// single images, which the Reshape then refused ("inner dimensions differ" at the classifier).
#[test]
fn a_model_traced_for_a_fixed_batch_is_explained_whole() {
    let (batch, c, classes, side) = (3, 6, 5, 10);
    let build = |fixed: bool| {
        let mut b = GraphBuilder::<f32>::new();
        let x = b.input("input", &[batch, 3, side, side]).unwrap();
        let wc = b.constant("conv.weight", random(&[c, 3, 3, 3], 21)).unwrap();
        let conv = b.node("conv", Conv::new(1, 1), &[x, wc]).unwrap();
        let a = b.node("features", Relu, &[conv]).unwrap();
        let gap = b.node("gap", GlobalAveragePool, &[a]).unwrap();
        let flat = if fixed {
            b.node("flatten", Reshape { shape: vec![batch as i64, -1] }, &[gap]).unwrap()
        } else {
            b.node("flatten", Flatten::default(), &[gap]).unwrap()
        };
        let fw = b.constant("fc.weight", random(&[classes, c], 22)).unwrap();
        let logits = b.node("fc", Gemm::linear(), &[flat, fw]).unwrap();
        b.output(logits);
        Model {
            graph: b.build(),
            name: if fixed { "fixed-batch".into() } else { "any-batch".into() },
            arch: None,
            input: "input".into(),
            logits: "fc".into(),
            input_size: [side, side],
            labels: None,
            normalization: Normalization::imagenet(),
            normalization_assumed: false,
        }
    };
    let (fixed, any) = (build(true), build(false));
    assert!(fixed.graph.accepts_batch(batch) && !fixed.graph.accepts_batch(1));
    let x: Tensor<f32> = random(&[batch, 3, side, side], 23);
    let req = gradcam(&["features"], 2, false);
    let got = explain(&fixed, x.clone(), &req).expect("the fixed batch runs whole");
    let want = explain(&any, x, &req).unwrap();
    assert_eq!(got.len(), batch);
    for (g, w) in common::pairs(&got, &want) {
        let (g, w) = (&g.explanations[0].raw[0], &w.explanations[0].raw[0]);
        assert!(w.iter().any(|&v| v != 0.0), "a map with something in it");
        assert!(max_abs_diff(g.iter(), w.iter()) <= 1e-6, "fixed-batch and batch-agnostic maps differ");
    }
}
