//! End-to-end explanation cost on the bundled EfficientNet-Lite0 (224×224, batch 1): forward only, Grad-CAM
//! (forward + partial backward to the head), and saliency (forward + full backward to the input).
//!
//! Run: `cargo bench --bench explain`. The PyTorch / pytorch-grad-cam side is `tools/bench_pytorch_gradcam.py`.

use criterion::{criterion_group, criterion_main, Criterion};
use gradcam::cam::{explain, CamMethod, ClassChoice, Method, Request};
use gradcam::input::load_image;
use gradcam::Model;
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let model = Model::bundled().unwrap();
    let img = load_image(std::path::Path::new("fixtures/images/chelsea.png"), model.input_size).unwrap();
    let x = model.normalization.apply(&img.pixels);
    let mut group = c.benchmark_group("efficientnet_lite0");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    group.bench_function("forward", |b| {
        let plan = model.graph.inference_plan(&[&model.logits]).unwrap();
        b.iter(|| {
            black_box(
                model.graph.forward(&plan, vec![(&model.input, x.clone())]).unwrap().get(&model.logits).unwrap().sum(),
            )
        })
    });
    for (name, method) in [("gradcam", Method::Cam(CamMethod::GradCam)), ("saliency", Method::Saliency)] {
        let req = Request {
            layers: vec![],
            classes: ClassChoice::Top(1),
            methods: vec![method],
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
        };
        group.bench_function(name, |b| b.iter(|| black_box(explain(&model, x.clone(), &req).unwrap())));
    }
    group.bench_function("load_bundled_model", |b| b.iter(|| black_box(Model::bundled().unwrap())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
