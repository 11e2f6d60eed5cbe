//! The backward sweep does only the work a request needs: Grad-CAM at the last block of a deep network runs no
//! backward rule below that block and no weight gradient at all; several classes reuse one forward pass.

mod common;

use common::{one_hot, random, tiny_resnet};
use gradcam::Graph;

#[test]
fn gradient_at_last_block_runs_nothing_below_it() {
    let g: Graph<f32> = tiny_resnet(6, 16, 10);
    let plan = g.plan(&["logits"], &["layer_last"], &["layer_last"]).unwrap();
    // Only the head lies between the seed and the requested activation.
    assert_eq!(plan.backward_nodes(), 3, "Gemm, Flatten, GlobalAveragePool");
    let acts = g.forward(&plan, vec![("input", random(&[1, 3, 32, 32], 1))]).unwrap();
    let grads = acts.backward(vec![("logits", one_hot(10, 3))]).unwrap();
    let ops: Vec<&str> = grads.trace.iter().map(|r| r.op).collect();
    assert_eq!(ops, ["Gemm", "Flatten", "GlobalAveragePool"]);
    assert!(grads.trace.iter().all(|r| r.input_grads.iter().all(|n| !n.contains("weight") && !n.contains("bias"))));
    assert_eq!(grads.get("layer_last").unwrap().shape(), &[1, 16, 8, 8]);
    // The forward pass kept only what was asked for: the activation and the logits (GAP, Flatten and the Gemm read
    // no activations in their backward rules).
    let mut kept = acts.kept();
    kept.sort();
    assert_eq!(kept, ["layer_last", "logits"]);
}

#[test]
fn gradient_at_an_inner_block_stops_there_and_skips_weights() {
    let g: Graph<f32> = tiny_resnet(6, 16, 10);
    let plan = g.plan(&["logits"], &["block2"], &[]).unwrap();
    let acts = g.forward(&plan, vec![("input", random(&[1, 3, 32, 32], 2))]).unwrap();
    let grads = acts.backward(vec![("logits", one_hot(10, 1))]).unwrap();
    let visited: Vec<&str> = grads.trace.iter().map(|r| r.node.as_str()).collect();
    for below in ["stem.conv", "block0.a.conv", "block1.b.conv", "block2.add", "maxpool"] {
        assert!(!visited.contains(&below), "{below} ran backward: {visited:?}");
    }
    assert!(visited.contains(&"block3.a.conv") && visited.contains(&"layer_last"));
    for r in &grads.trace {
        for name in &r.input_grads {
            assert!(
                !name.contains("weight") && !name.contains(".bn."),
                "{} computed a parameter gradient {name}",
                r.node
            );
        }
    }
}

#[test]
fn several_classes_reuse_one_forward_pass() {
    let g: Graph<f64> = tiny_resnet(2, 8, 5);
    let plan = g.plan(&["logits"], &["layer_last"], &["layer_last"]).unwrap();
    let acts = g.forward(&plan, vec![("input", random(&[1, 3, 32, 32], 3))]).unwrap();
    let per_class: Vec<_> =
        (0..5).map(|c| acts.backward(vec![("logits", one_hot(5, c))]).unwrap().take("layer_last").unwrap()).collect();
    // Linearity: the gradient of the sum of logits is the sum of the per-class gradients.
    let all = acts
        .backward(vec![("logits", ndarray::ArrayD::ones(ndarray::IxDyn(&[1, 5])))])
        .unwrap()
        .take("layer_last")
        .unwrap();
    let sum = per_class.iter().fold(ndarray::ArrayD::<f64>::zeros(all.raw_dim()), |acc, g| acc + g);
    assert!((&all - &sum).iter().all(|d| d.abs() < 1e-12));
    assert!(per_class[0] != per_class[1]);
}

#[test]
fn weight_gradients_are_computed_only_when_requested() {
    let g: Graph<f64> = tiny_resnet(1, 4, 3);
    let plan = g.plan(&["logits"], &["fc.weight", "stem.weight"], &[]).unwrap();
    let acts = g.forward(&plan, vec![("input", random(&[1, 3, 32, 32], 4))]).unwrap();
    let grads = acts.backward(vec![("logits", one_hot(3, 0))]).unwrap();
    assert_eq!(grads.get("stem.weight").unwrap().shape(), &[4, 3, 3, 3]);
    assert_eq!(grads.get("fc.weight").unwrap().shape(), &[3, 4]);
    // Other parameters were not differentiated.
    assert!(grads
        .trace
        .iter()
        .flat_map(|r| &r.input_grads)
        .all(|n| !n.contains(".bn.") && !n.contains("block0.a.weight")));
}

/// The whole-graph gradient with respect to the input agrees with central finite differences (f64).
#[test]
fn input_gradient_of_a_whole_network_matches_finite_differences() {
    let g: Graph<f64> = tiny_resnet(2, 6, 4);
    let x = random::<f64>(&[1, 3, 32, 32], 5);
    let plan = g.plan(&["logits"], &["input"], &[]).unwrap();
    let acts = g.forward(&plan, vec![("input", x.clone())]).unwrap();
    let grad = acts.backward(vec![("logits", one_hot(4, 2))]).unwrap().take("input").unwrap();
    let score = |x: ndarray::ArrayD<f64>| {
        let p = g.inference_plan(&["logits"]).unwrap();
        g.forward(&p, vec![("input", x)]).unwrap().get("logits").unwrap()[[0, 2]]
    };
    let h = 1e-6;
    for flat in [0, 17, 500, 1023, 2048, 3071] {
        let (mut plus, mut minus) = (x.clone(), x.clone());
        plus.as_slice_mut().unwrap()[flat] += h;
        minus.as_slice_mut().unwrap()[flat] -= h;
        let numeric = (score(plus) - score(minus)) / (2.0 * h);
        let analytic = grad.as_slice().unwrap()[flat];
        assert!((analytic - numeric).abs() < 1e-6 + 1e-5 * numeric.abs(), "[{flat}]: {analytic} vs {numeric}");
    }
}
