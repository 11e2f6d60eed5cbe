//! Adversarial attacks and the robustness of explanations (Grad-CAM paper §7), on the bundled EfficientNet-Lite0.

mod common;

use gradcam::attack::{compare_cams, fgsm, min_epsilon, pgd, AttackConfig, Norm};
use gradcam::cam::{CamMethod, Method};
use gradcam::input::image_to_tensor;
use gradcam::{Model, Tensor};

const AIRLINER: usize = 404;
const ESPRESSO: usize = 967;
const EGYPTIAN_CAT: usize = 285;

fn composite(model: &Model) -> Tensor<f32> {
    image_to_tensor(&common::cat_and_espresso(224), model.input_size)
}

fn peak_side(x: usize) -> &'static str {
    if x < 112 {
        "left"
    } else {
        "right"
    }
}

/// The paper's experiment: a targeted PGD attack makes the model call a cat-and-coffee photo "airliner" with
/// > 0.99 confidence within ε = 8/255, yet Grad-CAM for the true classes still finds the cat and the cup.
#[test]
fn explanations_survive_a_targeted_attack_to_airliner() {
    let model = Model::bundled().unwrap();
    let clean = composite(&model);
    let cfg = AttackConfig {
        eps: 8.0 / 255.0,
        norm: Norm::Linf,
        steps: 40,
        step_size: 1.0 / 255.0,
        target: Some(AIRLINER),
        random_start: false,
        seed: 0,
        early_stop: true,
        min_confidence: 0.995,
    };
    let adv = pgd(&model, &clean, EGYPTIAN_CAT, &cfg).unwrap();
    let last = adv.history.last().unwrap();
    assert!(adv.success && last.top1 == AIRLINER, "attack failed after {} steps: {last:?}", adv.steps);
    assert!(last.target_prob.unwrap() > 0.99, "airliner only at {:?}", last.target_prob);
    assert!(adv.linf <= 8.0 / 255.0 + 1e-6);
    let report =
        compare_cams(&model, &clean, &adv.pixels, &[EGYPTIAN_CAT, ESPRESSO], Method::Cam(CamMethod::GradCam)).unwrap();
    let (cat, cup) = (&report[0], &report[1]);
    eprintln!(
        "airliner p = {:.4} after {} steps, L∞ = {:.4}, L2 = {:.3}; cat: pearson {:.3} spearman {:.3} IoU {:.3}; espresso: pearson {:.3} spearman {:.3} IoU {:.3}",
        last.target_prob.unwrap(),
        adv.steps,
        adv.linf,
        adv.l2,
        cat.pearson,
        cat.spearman,
        cat.iou_top15,
        cup.pearson,
        cup.spearman,
        cup.iou_top15
    );
    assert_eq!(peak_side(cat.adv_peak[0]), "left", "cat map peaks at {:?}", cat.adv_peak);
    assert_eq!(peak_side(cup.adv_peak[0]), "right", "espresso map peaks at {:?}", cup.adv_peak);
    assert!(cat.pearson > 0.5 && cup.pearson > 0.5, "maps changed too much: {} / {}", cat.pearson, cup.pearson);
}

/// FGSM's direction equals the sign of PyTorch's pixel gradient of the cross-entropy
/// (fixtures/attack, tools/make_attack_fixtures.py).
#[test]
fn fgsm_direction_matches_pytorch() {
    let model = Model::bundled().unwrap();
    let pixels = common::npy_f32("attack/chelsea_pixels.npy");
    let want = common::npy_f32("attack/chelsea_ce_grad_285.npy");
    let eps = 2.0 / 255.0;
    let adv = fgsm(&model, &pixels, EGYPTIAN_CAT, None, eps).unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    // Compare where PyTorch's gradient is clearly non-zero (below that its sign is float32 rounding noise of two
    // different summation orders) and the [0, 1] clamp did not hold the pixel back. Above 1 % of the largest
    // gradient every sign must agree; above 0.1 %, all but 1 in 10 000 (a few kinks of ReLU6 flip in float32).
    for (threshold, required) in [(1e-2f32, 1.0f64), (1e-3, 0.9999)] {
        let (mut checked, mut agree) = (0usize, 0usize);
        for ((&a, &x), &g) in common::pairs(common::pairs(adv.pixels.iter(), pixels.iter()), want.iter()) {
            if g.abs() < threshold * scale || a <= 0.0 || a >= 1.0 {
                continue;
            }
            checked += 1;
            agree += usize::from(((a - x) > 0.0) == (g > 0.0) && ((a - x).abs() - eps).abs() < 1e-6);
        }
        assert!(checked > 10_000, "only {checked} pixels compared");
        let rate = agree as f64 / checked as f64;
        assert!(
            rate >= required,
            "threshold {threshold}: {} of {checked} FGSM steps disagree with PyTorch",
            checked - agree
        );
    }
}

/// Untargeted PGD never leaves the ε-ball or [0, 1], and lowers the true-class probability at every step.
#[test]
fn untargeted_pgd_stays_in_bounds_and_lowers_the_true_class() {
    let model = Model::bundled().unwrap();
    let pixels = common::npy_f32("attack/chelsea_pixels.npy");
    for norm in [Norm::Linf, Norm::L2] {
        let eps = if norm == Norm::Linf { 2.0 / 255.0 } else { 0.5 };
        let cfg =
            AttackConfig { eps, norm, steps: 6, step_size: eps / 8.0, early_stop: false, ..AttackConfig::pgd(eps, 6) };
        let r = pgd(&model, &pixels, EGYPTIAN_CAT, &cfg).unwrap();
        assert!(r.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
        match norm {
            Norm::Linf => assert!(r.linf <= eps + 1e-6, "L∞ {}", r.linf),
            Norm::L2 => assert!(r.l2 <= eps * (1.0 + 1e-5), "L2 {}", r.l2),
        }
        let probs: Vec<f32> = r.history.iter().map(|h| h.true_prob).collect();
        assert!(probs.windows(2).all(|w| w[1] < w[0]), "{norm:?}: true-class probability not decreasing: {probs:?}");
    }
}

#[test]
fn same_seed_gives_a_bit_identical_adversarial_image() {
    let model = Model::bundled().unwrap();
    let pixels = common::npy_f32("attack/chelsea_pixels.npy");
    let cfg = AttackConfig { random_start: true, seed: 7, ..AttackConfig::pgd(4.0 / 255.0, 3) };
    let a = pgd(&model, &pixels, EGYPTIAN_CAT, &cfg).unwrap();
    let b = pgd(&model, &pixels, EGYPTIAN_CAT, &cfg).unwrap();
    assert!(common::pairs(a.pixels.iter(), b.pixels.iter()).all(|(x, y)| x.to_bits() == y.to_bits()));
    let c = pgd(&model, &pixels, EGYPTIAN_CAT, &AttackConfig { seed: 8, ..cfg }).unwrap();
    assert!(a.pixels != c.pixels, "another seed starts elsewhere");
}

#[test]
fn minimal_epsilon_is_found_by_bisection() {
    let model = Model::bundled().unwrap();
    let pixels = common::npy_f32("attack/chelsea_pixels.npy");
    let cfg = AttackConfig { early_stop: true, ..AttackConfig::pgd(4.0 / 255.0, 5) };
    let (eps, adv) =
        min_epsilon(&model, &pixels, EGYPTIAN_CAT, &cfg, 4.0 / 255.0, 0.1 / 255.0).unwrap().expect("succeeds at 4/255");
    assert!(adv.success && adv.linf <= eps + 1e-6);
    // Just below the minimum the attack fails.
    let below = pgd(
        &model,
        &pixels,
        EGYPTIAN_CAT,
        &AttackConfig { eps: eps - 0.1 / 255.0, step_size: (eps - 0.1 / 255.0) * 0.5, ..cfg },
    )
    .unwrap();
    assert!(!below.success, "succeeded below the minimal ε {eps}");
}

#[test]
fn bad_attack_requests_are_errors() {
    let model = Model::bundled().unwrap();
    let pixels = common::npy_f32("attack/chelsea_pixels.npy");
    assert!(pgd(&model, &pixels, 1000, &AttackConfig::pgd(0.01, 1)).is_err());
    assert!(pgd(&model, &pixels, 1, &AttackConfig { eps: f32::NAN, ..AttackConfig::pgd(0.01, 1) }).is_err());
}
