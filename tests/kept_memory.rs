//! A backward pass keeps only what the backward rules read (issue #10).

mod common;

use common::{npy_f32, one_hot};
use gradcam::Model;

/// Saliency on the bundled EfficientNet-Lite0 (gradient of a logit down to the input): 52 MB of activations were
/// kept when the issue was filed (27 MB of convolution outputs for batch-norm's backward, the rest ReLU6 outputs);
/// now every ReLU6 keeps a one-bit mask, the depthwise and pointwise convolutions need only their weights, and
/// batch-norm only its constants. What remains is the input (0.6 MB), the logits, and 33 masks (0.77 MB).
#[test]
fn saliency_on_the_bundled_model_keeps_under_one_and_a_half_megabytes() {
    let model = Model::bundled().unwrap();
    let g = &model.graph;
    let x = npy_f32("models/inputs/chelsea.npy");
    let plan = g.plan(&[&model.logits], &[&model.input], &[]).unwrap();
    let acts = g.forward(&plan, vec![(&model.input, x)]).unwrap();
    let kept = acts.kept_bytes();
    eprintln!("saliency plan keeps {kept} bytes: {:?}", acts.kept());
    assert!(kept <= 1_500_000, "{kept} bytes kept");
    // The values kept are exactly the seed and the input; the masks are the ops' saved state.
    let mut names = acts.kept();
    names.sort();
    let mut want = vec![model.input.as_str(), model.logits.as_str()];
    want.sort();
    assert_eq!(names, want);
    // And the gradient is still the full one (the parity tests compare it with PyTorch).
    let grads = acts.backward(vec![(&model.logits, one_hot(1000, 285))]).unwrap();
    let dx = grads.get(&model.input).unwrap();
    assert!(dx.iter().any(|&v| v != 0.0) && dx.iter().all(|v| v.is_finite()));
}
