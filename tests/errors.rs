//! Bad input gives typed errors that name the node, op and shapes — never a panic.

mod common;

use common::{random, tiny_resnet};
use gradcam::ops::{Add, Conv, Relu};
use gradcam::{ForwardOptions, Graph, GraphBuilder, GraphError, OpError, Tensor};

#[test]
fn mismatched_shapes_at_build_time_name_node_op_and_shapes() {
    let mut b = GraphBuilder::<f32>::new();
    let x = b.input("x", &[1, 3, 8, 8]).unwrap();
    let w = b.constant("w", random(&[4, 2, 3, 3], 1)).unwrap();
    let err = b.node("conv1", Conv::default(), &[x, w]).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, GraphError::Op { ref node, op: "Conv", source: OpError::Shape { .. } } if node == "conv1"),
        "{err:?}"
    );
    assert!(msg.contains("conv1") && msg.contains("[1, 3, 8, 8]") && msg.contains("[4, 2, 3, 3]"), "{msg}");

    let y = b.input("y", &[1, 5, 8, 8]).unwrap();
    let msg = b.node("sum", Add, &[x, y]).unwrap_err().to_string();
    assert!(msg.contains("'sum' (Add)") && msg.contains("[1, 5, 8, 8]"), "{msg}");
}

#[test]
fn wrong_rank_is_an_error() {
    let mut b = GraphBuilder::<f32>::new();
    let x = b.input("x", &[3, 8, 8]).unwrap();
    let w = b.constant("w", random(&[4, 3, 3, 3], 1)).unwrap();
    let msg = b.node("conv1", Conv::default(), &[x, w]).unwrap_err().to_string();
    assert!(msg.contains("rank 4") && msg.contains("[3, 8, 8]"), "{msg}");
}

#[test]
fn wrong_input_shape_at_run_time_names_the_input() {
    let g: Graph<f32> = tiny_resnet(1, 4, 3);
    let plan = g.inference_plan(&[]).unwrap();
    let err = g.forward(&plan, vec![("input", random(&[1, 4, 32, 32], 1))]).unwrap_err();
    assert!(matches!(err, GraphError::InputShape { ref name, .. } if name == "input"), "{err}");
    let err = g.forward(&plan, vec![("input", random(&[3, 32, 32], 1))]).unwrap_err();
    assert!(err.to_string().contains("[3, 32, 32]"), "{err}");
    // A different batch size is fine.
    let acts = g.forward(&plan, vec![("input", random(&[2, 3, 32, 32], 1))]).unwrap();
    assert_eq!(acts.get("logits").unwrap().shape(), &[2, 3]);
}

#[test]
fn spatial_size_change_is_caught_by_the_node_that_cannot_take_it() {
    // Only the batch dimension may change; other dims are checked at the input.
    let mut b = GraphBuilder::<f32>::new();
    let x = b.input("x", &[1, 1, 4, 4]).unwrap();
    let w = b.constant("w", random(&[1, 1, 3, 3], 1)).unwrap();
    b.node("c", Conv::default(), &[x, w]).unwrap();
    let g = b.build();
    let err = g.forward(&g.inference_plan(&["c"]).unwrap(), vec![("x", random(&[1, 1, 2, 2], 1))]).unwrap_err();
    assert!(matches!(err, GraphError::InputShape { .. }), "{err}");
}

#[test]
fn missing_and_unknown_inputs_are_named() {
    let g: Graph<f32> = tiny_resnet(1, 4, 3);
    let plan = g.inference_plan(&[]).unwrap();
    let err = g.forward(&plan, vec![]).unwrap_err();
    assert!(matches!(err, GraphError::MissingInput { ref name, .. } if name == "input"), "{err}");
    let err = g.forward(&plan, vec![("image", random(&[1, 3, 32, 32], 1))]).unwrap_err();
    assert!(err.to_string().contains("'image' is not an input") && err.to_string().contains("'input'"), "{err}");
}

#[test]
fn unknown_value_names_suggest_close_ones() {
    let g: Graph<f32> = tiny_resnet(2, 4, 3);
    let err = g.plan(&["logits"], &["layer_lats"], &[]).unwrap_err();
    assert!(err.to_string().contains("'layer_last'"), "{err}");
}

#[test]
fn nan_input_propagates_as_nan_or_is_reported_on_request() {
    let g: Graph<f32> = tiny_resnet(1, 4, 3);
    let plan = g.plan(&["logits"], &["input"], &[]).unwrap();
    let mut x = random::<f32>(&[1, 3, 32, 32], 1);
    x[[0, 1, 5, 5]] = f32::NAN;
    let acts = g.forward(&plan, vec![("input", x.clone())]).unwrap();
    assert!(acts.get("logits").unwrap().iter().any(|v| v.is_nan()));
    let grads = acts.backward(vec![("logits", common::one_hot(3, 0))]).unwrap();
    // Backward runs too (ReLU masks NaN activations out, as PyTorch's threshold_backward does).
    assert_eq!(grads.get("input").unwrap().shape(), &[1, 3, 32, 32]);

    let checked = ForwardOptions { check_finite: true, ..Default::default() };
    let err = g.forward_with(&plan, vec![("input", x)], checked).unwrap_err();
    assert!(matches!(err, GraphError::NonFinite { .. }) && err.to_string().contains("graph input 'input'"), "{err}");

    // A node that creates infinity is named.
    let mut b = GraphBuilder::<f32>::new();
    let x = b.input("x", &[2]).unwrap();
    let big = b.constant("big", Tensor::from_elem(ndarray::IxDyn(&[2]), f32::MAX)).unwrap();
    let s = b.node("overflow", Add, &[x, big]).unwrap();
    b.node("r", Relu, &[s]).unwrap();
    let g = b.build();
    let plan = g.inference_plan(&["r"]).unwrap();
    let err =
        g.forward_with(&plan, vec![("x", Tensor::from_elem(ndarray::IxDyn(&[2]), f32::MAX))], checked).unwrap_err();
    assert!(err.to_string().contains("node 'overflow' (Add)"), "{err}");
}

#[test]
fn seeds_must_match_the_plan_and_the_value_shape() {
    let g: Graph<f32> = tiny_resnet(1, 4, 3);
    let plan = g.plan(&["logits"], &["layer_last"], &[]).unwrap();
    let acts = g.forward(&plan, vec![("input", random(&[1, 3, 32, 32], 1))]).unwrap();
    let err = acts.backward(vec![("logits", common::one_hot(4, 0))]).unwrap_err();
    assert!(matches!(err, GraphError::SeedShape { .. }) && err.to_string().contains("[1, 4]"), "{err}");
    let err = acts.backward(vec![("avgpool", random(&[1, 4, 1, 1], 1))]).unwrap_err();
    assert!(matches!(err, GraphError::NotPlanned { .. }), "{err}");
    // A value that was freed cannot be read back.
    assert!(matches!(acts.get("stem").unwrap_err(), GraphError::NotRetained { .. }));
}

#[test]
fn duplicate_names_are_rejected() {
    let mut b = GraphBuilder::<f32>::new();
    let x = b.input("x", &[2]).unwrap();
    assert!(matches!(b.node("x", Relu, &[x]).unwrap_err(), GraphError::DuplicateName { .. }));
}
