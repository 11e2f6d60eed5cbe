//! The faithfulness metrics on the bundled model and the cat photo: deletion ranks Grad-CAM's map above a random
//! one (RandomCAM: the probability falls faster when Grad-CAM's pixels go first), insertion likewise, and masking by
//! Grad-CAM's map keeps more of the confidence than masking by the random one.

mod common;

use gradcam::cam::{explain, CamMethod, ClassChoice, Method, Request, Target};
use gradcam::input::load_image;
use gradcam::metrics::{confidence_change, deletion_insertion, Scorer};
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
