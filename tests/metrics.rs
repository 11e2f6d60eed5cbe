//! The faithfulness metrics on the bundled model and the cat photo: deletion ranks Grad-CAM's map above a random
//! one (RandomCAM: the probability falls faster when Grad-CAM's pixels go first), insertion likewise, and masking by
//! Grad-CAM's map keeps more of the confidence than masking by the random one.

mod common;

use gradcam::cam::{explain, CamMethod, ClassChoice, Method, Request, Target};
use gradcam::input::load_image;
use gradcam::metrics::{cascading_randomization, confidence_change, deletion_insertion, Scorer};
use gradcam::Model;
use ndarray::{Array2, Axis, Ix3};

#[test]
fn deletion_and_insertion_rank_gradcam_above_a_random_map() {
    let model = Model::bundled().unwrap();
    let img = load_image(&common::fixture("images/chelsea.png"), model.input_size).unwrap();
    let x = model.normalization.apply(&img.pixels);
    // The baseline is RandomCAM (random channel weights, seeded): a map as smooth as Grad-CAM's that knows nothing
    // of the class. (A map random per pixel is no fair baseline: deleting scattered pixels destroys the image
    // faster than deleting any region.)
    let methods = vec![Method::Cam(CamMethod::GradCam), Method::Cam(CamMethod::RandomCam)];
    let result = explain(&model, x.clone(), &Request { classes: ClassChoice::Top(1), methods, ..Request::default() })
        .unwrap()
        .remove(0);
    let (class, cam) = (result.explanations[0].class, result.explanations[0].cam.clone());
    let random = result.explanations[1].cam.clone();
    let scorer = Scorer::new(&model, Target::Probability, 32).unwrap();
    let image = x.index_axis(Axis(0), 0).into_dimensionality::<Ix3>().unwrap();
    let ours = deletion_insertion(&scorer, image, &cam, class, 20).unwrap();
    let baseline = deletion_insertion(&scorer, image, &random, class, 20).unwrap();
    assert_eq!(ours.deletion_curve.len(), 21);
    let p = scorer.score(image, class).unwrap();
    assert!((ours.deletion_curve[0] - p).abs() < 1e-5, "deletion starts at the image's probability");
    eprintln!(
        "deletion {:.3} vs {:.3}, insertion {:.3} vs {:.3}",
        ours.deletion_auc, baseline.deletion_auc, ours.insertion_auc, baseline.insertion_auc
    );
    assert!(
        ours.deletion_auc < baseline.deletion_auc,
        "deletion AUC: Grad-CAM {} vs random {}",
        ours.deletion_auc,
        baseline.deletion_auc
    );
    assert!(
        ours.insertion_auc > baseline.insertion_auc,
        "insertion AUC: Grad-CAM {} vs random {}",
        ours.insertion_auc,
        baseline.insertion_auc
    );
    let kept = confidence_change(&scorer, image, &cam, class).unwrap();
    let lost = confidence_change(&scorer, image, &random, class).unwrap();
    assert!((kept.original - p).abs() < 1e-6);
    assert!(
        kept.average_drop() < lost.average_drop(),
        "Average Drop: Grad-CAM {} % vs random {} %",
        kept.average_drop(),
        lost.average_drop()
    );
}

#[test]
fn maps_of_the_wrong_size_and_bad_classes_are_errors() {
    let model = Model::bundled().unwrap();
    let scorer = Scorer::new(&model, Target::Probability, 4).unwrap();
    let image = ndarray::Array3::<f32>::zeros((3, 224, 224));
    let small = Array2::<f32>::zeros((7, 7));
    assert!(deletion_insertion(&scorer, image.view(), &small, 0, 10).is_err());
    let map = Array2::<f32>::zeros((224, 224));
    assert!(deletion_insertion(&scorer, image.view(), &map, 0, 0).is_err());
    assert!(confidence_change(&scorer, image.view(), &map, 5000).is_err());
    assert!(Scorer::new(&model, Target::Probability, 0).is_err());
}

/// Adebayo et al.'s cascading randomization on the bundled model: once the classifier and the head convolution
/// that Grad-CAM reads are random, its map no longer resembles the original; Guided Backpropagation's still does
/// (the paper's finding: it shows the image's edges, whatever the model).
#[test]
fn sanity_check_separates_gradcam_from_guided_backprop() {
    let mut model = Model::bundled().unwrap();
    let img = load_image(&common::fixture("images/chelsea.png"), model.input_size).unwrap();
    let x = model.normalization.apply(&img.pixels);
    let req = Request::default();
    let before = model.graph.constant_bytes();
    let layers = 6;
    let grad = cascading_randomization(&mut model, &x, Method::Cam(CamMethod::GradCam), &req, Some(layers)).unwrap();
    let guided = cascading_randomization(&mut model, &x, Method::GuidedBackprop, &req, Some(layers)).unwrap();
    for (g, b) in common::pairs(grad.iter(), &guided) {
        eprintln!(
            "{:>20}: gradcam ρ {:+.3} ssim {:+.3} | guided ρ {:+.3} ssim {:+.3}",
            g.layer, g.spearman, g.ssim, b.spearman, b.ssim
        );
    }
    assert_eq!(grad.len(), layers);
    assert_eq!(grad[0].layer, guided[0].layer);
    // Grad-CAM at head_act reads the classifier's gradient and the head's activations (_fc, _bn1, _conv_head: the
    // first three steps): each of them leaves a dissimilar map (measured: SSIM 0.40, 0.36, 0.26; ρ 0.12 once the
    // classifier is random).
    assert_eq!([&grad[0].layer, &grad[1].layer, &grad[2].layer], ["_fc", "_bn1", "_conv_head"]);
    for s in &grad[..3] {
        assert!(s.ssim < 0.5, "Grad-CAM still similar after {}: SSIM {}", s.layer, s.ssim);
    }
    assert!(grad[0].spearman < 0.5, "Grad-CAM's ranking survived a random classifier: ρ = {}", grad[0].spearman);
    // Guided backpropagation barely moves (measured: ρ and SSIM ≥ 0.99 at every step).
    for s in &guided {
        assert!(s.spearman > 0.9 && s.ssim > 0.9, "Guided Backprop changed after {}: {s:?}", s.layer);
    }
    // The model is restored: the same map as before the check.
    assert_eq!(model.graph.constant_bytes(), before);
    let again = cascading_randomization(&mut model, &x, Method::Cam(CamMethod::GradCam), &req, Some(1)).unwrap();
    assert_eq!(again[0], grad[0]);
}

/// pytorch-grad-cam's DropInConfidence, IncreaseInConfidence and ROAD (MoRF, LeRF at its default percentiles, with
/// the same seeded imputation noise) on the synthetic resnet18, for a map both sides compute exactly
/// (tools/make_metric_fixtures.py).
#[test]
fn confidence_and_road_match_pytorch_grad_cam() {
    use gradcam::metrics::{road, ROAD_PERCENTILES};
    use gradcam::models::Weights;
    let model = Model::build(gradcam::Arch::Resnet18, Weights::synthetic(), [224, 224], 1000).unwrap();
    let x = common::npy_f32("models/inputs/chelsea.npy");
    let image = x.index_axis(Axis(0), 0).into_dimensionality::<Ix3>().unwrap().to_owned();
    let (h, w) = (224i64, 224i64);
    let denominator = (((w - 1) * (w - 1) * (h - 1) * (h - 1)) as f64 / 16.0) as f32;
    let map = Array2::from_shape_fn((224, 224), |(y, x)| {
        let (y, x) = (y as i64, x as i64);
        (x * (w - 1 - x) * y * (h - 1 - y)) as f32 / denominator
    });
    let scorer = Scorer::new(&model, Target::Logit, 32).unwrap();
    let class = 671;
    let want = common::npy_f32("metrics/resnet18_chelsea.npy");
    let c = confidence_change(&scorer, image.view(), &map, class).unwrap();
    let r = road(&scorer, image.view(), &map, class, &ROAD_PERCENTILES).unwrap();
    let ours: Vec<f32> = [c.drop_in_confidence(), c.increase_in_confidence()]
        .into_iter()
        .chain(r.morf.iter().copied())
        .chain(r.lerf.iter().copied())
        .collect();
    assert_eq!(ours.len(), want.len());
    for (i, (a, b)) in common::pairs(ours.iter(), want.iter()).enumerate() {
        assert!((a - b).abs() <= 1e-3 + 1e-4 * b.abs(), "value {i}: ours {a}, pytorch-grad-cam {b}");
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!((r.combined - (mean(&r.lerf) - mean(&r.morf)) / 2.0).abs() < 1e-5);
}
