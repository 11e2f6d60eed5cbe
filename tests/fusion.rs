//! Fused convolution chains keep every layer addressable: requesting a value inside a chain (a convolution's or a
//! batch-norm's output) cuts the chain there, and activations and gradients equal the op-by-op path.

mod common;

use common::{npy_f32, one_hot, random};
use gradcam::ops::{Clip, Conv, Pad, PadMode};
use gradcam::{Gradients, Graph, GraphBuilder, Model, Plan, Tensor};

fn rel_err(a: &Tensor<f32>, b: &Tensor<f32>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let scale = b.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)).max(1e-30);
    common::pairs(a.iter(), b.iter()).fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs())) / scale
}

fn rel_l2(a: &Tensor<f32>, b: &Tensor<f32>) -> f64 {
    let d: f64 = common::pairs(a.iter(), b.iter()).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (d / n.max(1e-300)).sqrt()
}

#[test]
fn values_inside_chains_stay_addressable_with_equal_gradients() {
    let model = Model::bundled().unwrap();
    let g = &model.graph;
    let x = npy_f32("models/inputs/chelsea.npy");
    // Outputs of convolutions and of the batch-norms that follow them: all inside fused chains by default.
    let inside: Vec<String> = g
        .nodes()
        .iter()
        .filter(|n| matches!(n.op.op_type(), "Conv" | "BatchNormalization"))
        .map(|n| g.value(n.outputs[0]).name.clone())
        .collect();
    assert!(inside.len() > 60, "{}", inside.len());
    let full = g.plan(&[&model.logits], &[], &[]).unwrap();
    let picks = [&inside[1], &inside[inside.len() / 2], &inside[inside.len() - 3]];
    for name in picks {
        let plan = g.plan(&[&model.logits], &[name, &model.input], &[name]).unwrap();
        assert!(plan.fused_chains().0 > 0, "nothing fused around {name}");
        let reference = plan.clone().unfused();
        let fused = g.forward(&plan, vec![(&model.input, x.clone())]).unwrap();
        let plain = g.forward(&reference, vec![(&model.input, x.clone())]).unwrap();
        let logits = plain.get(&model.logits).unwrap();
        let seed = one_hot(logits.shape()[1], 285);
        let (gf, gp) = (
            fused.backward(vec![(&model.logits, seed.clone())]).unwrap(),
            plain.backward(vec![(&model.logits, seed)]).unwrap(),
        );
        let e = rel_err(fused.get(name).unwrap(), plain.get(name).unwrap());
        assert!(e < 1e-4, "{name}: activation differs by {e:.2e}");
        // Gradients this deep cross every ReLU6 of the network: the odd f32 mask flip between the two rounding
        // orders moves single elements, so compare in the L2 sense (the bound of tests/model_parity.rs).
        let e = rel_l2(gf.get(name).unwrap(), gp.get(name).unwrap());
        assert!(e < 5e-3, "{name}: gradient differs by {e:.2e} (relative L2)");
        let e = rel_err(fused.get(&model.logits).unwrap(), logits);
        assert!(e < 1e-4, "{name}: logits differ by {e:.2e}");
    }
    // With nothing requested inside, every chain is fused: convolution, batch-norm and ReLU6 as one.
    let (chains, absorbed) = full.fused_chains();
    assert!(chains >= 49 && absorbed >= chains, "{chains} chains absorbing {absorbed} ops");
}

/// The gradients of graph `g`'s input `x` for a random seed (from `seed`) of value `out`: on `plan` as it is (fused
/// or packed), and op by op.
fn fused_and_plain_gradients(
    g: &Graph<f32>,
    plan: &Plan,
    input: Tensor<f32>,
    out: &str,
    seed: u64,
) -> (Gradients<f32>, Gradients<f32>) {
    let fused = g.forward(plan, vec![("x", input.clone())]).unwrap();
    let plain = g.forward(&plan.clone().unfused(), vec![("x", input)]).unwrap();
    let seed = random::<f32>(plain.get(out).unwrap().shape(), seed);
    (fused.backward(vec![(out, seed.clone())]).unwrap(), plain.backward(vec![(out, seed)]).unwrap())
}

/// `x → pad → conv → relu6`: the graph of a TF-style padded layer, with an optional bias.
fn pad_conv_relu6(x_shape: &[usize], pad: Pad, w: Tensor<f32>, bias: Option<Tensor<f32>>, conv: Conv) -> Graph<f32> {
    let mut b = GraphBuilder::<f32>::new();
    let x = b.input("x", x_shape).unwrap();
    let padded = b.node("pad", pad, &[x]).unwrap();
    let mut inputs = vec![padded, b.constant("w", w).unwrap()];
    inputs.extend(bias.map(|bias| b.constant("b", bias).unwrap()));
    let y = b.node("conv", conv, &inputs).unwrap();
    let out = b.node("relu6", Clip { min: 0.0, max: 6.0 }, &[y]).unwrap();
    b.output(out);
    b.build()
}

/// TF-style "SAME" padding exported as a zero `Pad` node in front of a convolution (EfficientNet-Lite's ONNX export):
/// folded into the convolution's own padding, for a regular and a depthwise convolution with stride 2 and
/// asymmetric pads, with the same output and input gradient as running the `Pad` on its own (the backward sweep takes
/// the convolution's input gradient for the `Pad`'s input directly) — and kept as a node when its output is
/// requested, or when it does not pad with zeros.
#[test]
fn zero_pads_fold_into_the_following_convolution() {
    for (groups, in_per_group) in [(1, 6), (6, 1)] {
        for (mode, value) in [(PadMode::Constant, 0.0), (PadMode::Constant, 0.5), (PadMode::Edge, 0.0)] {
            let pad = Pad { pads: vec![0, 0, 0, 1, 0, 0, 2, 1], mode, value };
            let out_channels = if groups == 1 { 5 } else { 6 };
            let w = random(&[out_channels, in_per_group, 3, 3], 3);
            let conv = Conv { strides: [2, 2], groups, ..Conv::default() };
            let g = pad_conv_relu6(&[2, 6, 9, 10], pad, w, Some(random(&[out_channels], 4)), conv);
            let input = random::<f32>(&[2, 6, 9, 10], 5);
            let zero_pad = mode == PadMode::Constant && value == 0.0;
            for keep_pad in [false, true] {
                let keep: &[&str] = if keep_pad { &["pad"] } else { &[] };
                let plan = g.plan(&["relu6"], &["x"], keep).unwrap();
                let (chains, absorbed) = plan.fused_chains();
                let folded = zero_pad && !keep_pad;
                assert_eq!((chains, absorbed), (1, if folded { 2 } else { 1 }), "{mode:?} {value} keep {keep_pad}");
                let fused = g.forward(&plan, vec![("x", input.clone())]).unwrap();
                let plain = g.forward(&plan.clone().unfused(), vec![("x", input.clone())]).unwrap();
                let e = rel_err(fused.get("relu6").unwrap(), plain.get("relu6").unwrap());
                assert!(e < 1e-5, "groups {groups} {mode:?}: output differs by {e:.2e}");
                let seed = random::<f32>(plain.get("relu6").unwrap().shape(), 6);
                let (gf, gp) = (
                    fused.backward(vec![("relu6", seed.clone())]).unwrap(),
                    plain.backward(vec![("relu6", seed)]).unwrap(),
                );
                let e = rel_err(gf.get("x").unwrap(), gp.get("x").unwrap());
                assert!(e < 1e-5, "groups {groups} {mode:?}: input gradient differs by {e:.2e}");
                // A folded Pad's rule (a crop of the gradient) does not run: the convolution's input gradient is
                // taken for the Pad's input directly.
                let pad_rule_ran = gf.trace.iter().any(|r| r.node == "pad");
                assert_eq!(pad_rule_ran, !folded, "groups {groups} {mode:?} {value} keep {keep_pad}");
                let conv = gf.trace.iter().find(|r| r.node == "conv").expect("the convolution's rule ran");
                assert_eq!(conv.input_grads, [if folded { "x" } else { "pad" }]);
            }
        }
    }
}

/// Stride-1 convolutions after a zero `Pad`: 3×3 layers whose folded padding stays within the kernel's reach (the
/// packed input gradient takes the fold, and the `Pad`'s rule does not run), and a 1×1 whose folded padding does not
/// (the packed kernel runs at the padded size and the `Pad`'s crop follows). The input gradient equals the op-by-op
/// path either way.
#[test]
fn folded_pads_before_stride_one_convolutions_keep_the_input_gradient() {
    // (kernel, ONNX pads [n, c, h, w begins, then ends], whether the Pad's rule still runs)
    let cases = [
        (3, [0, 0, 1, 1, 0, 0, 1, 1], false),
        (3, [0, 0, 0, 1, 0, 0, 2, 1], false),
        (1, [0, 0, 1, 1, 0, 0, 1, 1], true),
    ];
    for (i, (k, pads, pad_rule_runs)) in cases.into_iter().enumerate() {
        let pad = Pad { pads: pads.to_vec(), mode: PadMode::Constant, value: 0.0 };
        let g = pad_conv_relu6(&[2, 8, 10, 9], pad, random(&[6, 8, k, k], 40 + i as u64), None, Conv::default());
        let plan = g.plan(&["relu6"], &["x"], &[]).unwrap();
        assert_eq!(plan.fused_chains(), (1, 2), "case {i}: the Pad folds in the forward pass");
        let input = random::<f32>(&[2, 8, 10, 9], 50 + i as u64);
        let (gf, gp) = fused_and_plain_gradients(&g, &plan, input, "relu6", 60 + i as u64);
        let e = rel_err(gf.get("x").unwrap(), gp.get("x").unwrap());
        assert!(e < 1e-5, "case {i}: input gradient differs by {e:.2e}");
        assert_eq!(gf.trace.iter().any(|r| r.node == "pad"), pad_rule_runs, "case {i}");
    }
}

/// The input gradient of stride-1 convolutions runs as a convolution with transposed, flipped weights on the packed
/// kernels (Winograd where the forward would use it), and that of strided ones as columns `Wᵀ·∂L/∂y` on the packed
/// kernels and col2im: the same gradient as each op's own backward rule, for 1×1, 3×3 (Winograd-sized and not),
/// dilated 3×3 and asymmetric-padded 5×5 layers, and strided 3×3, 7×7 (a stem), 1×1 (a downsample) and dilated
/// ones with unequal strides.
#[test]
fn packed_input_gradients_equal_the_ops_own_rule() {
    // (in, out, kernel, pads [t, l, b, r], dilation, stride, size)
    let cases = [
        (24, 20, 1, [0, 0, 0, 0], 1, [1, 1], 17),
        (32, 24, 3, [1, 1, 1, 1], 1, [1, 1], 20),
        (8, 6, 3, [1, 1, 1, 1], 1, [1, 1], 9),
        (16, 18, 3, [2, 2, 2, 2], 2, [1, 1], 15),
        (12, 10, 5, [1, 2, 3, 0], 1, [1, 1], 13),
        (16, 16, 3, [1, 1, 1, 1], 1, [2, 2], 16),
        (3, 16, 7, [3, 3, 3, 3], 1, [2, 2], 21),
        (16, 24, 1, [0, 0, 0, 0], 1, [2, 2], 14),
        (6, 10, 3, [2, 1, 1, 2], 2, [2, 3], 17),
    ];
    for (i, &(cin, cout, k, pads, d, s, size)) in cases.iter().enumerate() {
        let mut b = GraphBuilder::<f32>::new();
        let x = b.input("x", &[2, cin, size, size]).unwrap();
        let w = b.constant("w", random(&[cout, cin, k, k], 10 + i as u64)).unwrap();
        let conv = Conv { strides: s, dilations: [d, d], pads, ..Conv::default() };
        let y = b.node("conv", conv, &[x, w]).unwrap();
        b.output(y);
        let g = b.build();
        let plan = g.plan(&["conv"], &["x"], &[]).unwrap();
        let input = random::<f32>(&[2, cin, size, size], 20 + i as u64);
        let (gp, gr) = fused_and_plain_gradients(&g, &plan, input, "conv", 30 + i as u64);
        let e = rel_err(gp.get("x").unwrap(), gr.get("x").unwrap());
        assert!(e < 1e-5, "case {i}: input gradient differs by {e:.2e}");
    }
}

/// A residual `Add` after a convolution (ResNet's `conv → bn → + identity → relu`, MobileNet's linear bottleneck)
/// runs in the convolution's epilogue (summed in the Add's own order; bit-identity with a separate Add after the same
/// packed convolution is a kernel test): outputs and the gradients of the convolution's input and of the residual
/// equal the op-by-op path on the GEMM (1×1, small 3×3) and Winograd layouts, and the Add stays a node where the
/// residual is not ready when the convolution runs, broadcasts, or is the convolution's own value.
#[test]
fn residual_adds_fuse_into_the_convolution_epilogue() {
    use gradcam::ops::{Add, Relu};
    // (channels, kernel, size): 1×1 on the GEMM path, 3×3 too small for Winograd, 3×3 on Winograd.
    for (i, &(c, k, size)) in [(12, 1, 9), (6, 3, 7), (16, 3, 14)].iter().enumerate() {
        for order in ["before", "after", "broadcast", "self"] {
            let mut b = GraphBuilder::<f32>::new();
            let x = b.input("x", &[2, c, size, size]).unwrap();
            let skip_shape: &[usize] = if order == "broadcast" { &[1, c, 1, 1] } else { &[2, c, size, size] };
            let s = b.input("s", skip_shape).unwrap();
            let p = k / 2;
            let conv = |b: &mut GraphBuilder<f32>, name: &str, input, seed| {
                let w = b.constant(&format!("{name}.w"), random(&[c, c, k, k], seed)).unwrap();
                let bias = b.constant(&format!("{name}.b"), random(&[c], seed + 1)).unwrap();
                b.node(name, Conv { pads: [p, p, p, p], ..Conv::default() }, &[input, w, bias]).unwrap()
            };
            // The residual: made by a node before the convolution, or after it (then not ready in time).
            let early = if order == "before" { Some(b.node("early", Relu, &[s]).unwrap()) } else { None };
            let y = conv(&mut b, "conv", x, 40 + i as u64);
            let residual = match order {
                "before" => early.unwrap(),
                "after" => b.node("late", Relu, &[s]).unwrap(),
                "self" => y,
                _ => s,
            };
            let sum = b.node("add", Add, &[residual, y]).unwrap();
            let out = b.node("relu", Relu, &[sum]).unwrap();
            b.output(out);
            let g = b.build();
            let plan = g.plan(&["relu"], &["x", "s"], &[]).unwrap();
            let fuses = order == "before";
            assert_eq!(plan.fused_chains(), (1, if fuses { 2 } else { 0 }), "case {i} {order}");
            let inputs = vec![("x", random::<f32>(&[2, c, size, size], 50)), ("s", random::<f32>(skip_shape, 51))];
            let fused = g.forward(&plan, inputs.clone()).unwrap();
            let plain = g.forward(&plan.clone().unfused(), inputs).unwrap();
            let e = rel_err(fused.get("relu").unwrap(), plain.get("relu").unwrap());
            assert!(e < 1e-5, "case {i} {order}: outputs differ by {e:.2e}");
            let seed = random::<f32>(plain.get("relu").unwrap().shape(), 52);
            let (gf, gp) =
                (fused.backward(vec![("relu", seed.clone())]).unwrap(), plain.backward(vec![("relu", seed)]).unwrap());
            for wrt in ["x", "s"] {
                let e = rel_err(gf.get(wrt).unwrap(), gp.get(wrt).unwrap());
                assert!(e < 1e-5, "case {i} {order}: gradient of {wrt} differs by {e:.2e}");
            }
        }
    }
}
