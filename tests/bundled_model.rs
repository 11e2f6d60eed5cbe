//! The bundled EfficientNet-Lite0 classifies the test photos like PyTorch does.

mod common;

use gradcam::input::load_image;
use gradcam::Model;

fn probabilities(model: &Model, image: &str) -> Vec<f32> {
    let img = load_image(&common::fixture(&format!("images/{image}")), model.input_size).unwrap();
    let x = model.normalization.apply(&img.pixels);
    let plan = model.graph.inference_plan(&[&model.logits]).unwrap();
    let acts = model.graph.forward(&plan, vec![(&model.input, x)]).unwrap();
    let logits = acts.get(&model.logits).unwrap();
    let max = logits.iter().cloned().fold(f32::MIN, f32::max);
    let e: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn top1(p: &[f32]) -> usize {
    (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap()
}

#[test]
fn cat_photo_is_a_cat_and_coffee_is_espresso() {
    let model = Model::bundled().unwrap();
    let cat = probabilities(&model, "chelsea.png");
    let c = top1(&cat);
    assert!((281..=285).contains(&c), "top-1 {} ({}) p={}", c, model.label(c), cat[c]);
    let coffee = probabilities(&model, "coffee.png");
    assert_eq!(top1(&coffee), 967, "espresso");
    eprintln!("cat: {} {:.4}; coffee: espresso {:.4}", model.label(c), cat[c], coffee[967]);
}
