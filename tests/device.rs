//! The device executor (`--device cuda`) on whole models: forward, Grad-CAM, saliency and guided backpropagation
//! equal the CPU path. Without a GPU the device is the host emulation of the CUDA kernels (the same `.cu`
//! sources compiled by the C++ compiler, see `gradcam_kernels::device::host`), so the lowering of every op, the
//! kernels' arithmetic and the bookkeeping of device values are all checked here. Built with `--features cuda` on
//! a machine with a GPU, the same checks run on GPU 0 (and say so when no GPU can be used).

mod common;

use gradcam::cam::{explain, CamMethod, ClassChoice, Method, Request};
use gradcam::models::{Arch, Weights};
use gradcam::{Model, Tensor};
use gradcam_kernels::device::Device;
use std::sync::Arc;

/// The device the tests run on: built with `--features cuda`, GPU 0 when one can be used (and a line saying why
/// not when it cannot); otherwise the host emulation of the CUDA kernels.
fn device() -> Option<Arc<Device>> {
    #[cfg(feature = "cuda")]
    match Device::cuda(0) {
        Ok(d) => return Some(Arc::new(d)),
        Err(e) => eprintln!("device tests: GPU runs skipped ({e}); running on the host emulation"),
    }
    match Device::host_emulation() {
        Ok(d) => Some(Arc::new(d)),
        Err(e) => {
            eprintln!("device tests skipped: {e}");
            None
        }
    }
}

fn close(a: &[f32], b: &[f32], rtol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let (worst, at) = a.iter().zip(b).enumerate().fold((0f32, 0), |(w, at), (i, (x, y))| {
        let e = (x - y).abs() / scale;
        if e > w {
            (e, i)
        } else {
            (w, at)
        }
    });
    assert!(worst <= rtol, "{what}: element {at}: {} vs {} (scale {scale})", a[at], b[at]);
}

fn methods() -> Request {
    Request {
        classes: ClassChoice::Top(1),
        methods: vec![
            Method::Cam(CamMethod::GradCam),
            Method::Cam(CamMethod::GradCamPlusPlus),
            Method::Saliency,
            Method::GuidedBackprop,
        ],
        ..Request::default()
    }
}

/// Relative L2 distance of `a` from `b`.
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let n: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (d / n.max(1e-300)).sqrt()
}

/// Runs `model` on the CPU, then on the device, and compares logits, maps and raw gradients: each element within
/// 1e-4 of the largest magnitude. With `clipped`, gradients through the whole network (saliency, guided
/// backpropagation) cross every ReLU6, where an element one ulp from 0 or 6 can fall on the other side under the
/// other summation order and move its gradient: those compare in the relative L2 sense, as the fused and unfused
/// CPU paths do (tests/fusion.rs).
fn compare(mut model: Model, input: Tensor<f32>, what: &str, clipped: bool) {
    let Some(dev) = device() else { return };
    let request = methods();
    let cpu = explain(&model, input.clone(), &request).unwrap().remove(0);
    model.graph.set_device(Some(dev));
    let on_device = explain(&model, input, &request).unwrap().remove(0);
    assert_eq!(model.graph.device_host_fallbacks(), [], "{what}: every forward and backward rule on the device");
    assert_eq!(cpu.predictions[0].class, on_device.predictions[0].class, "{what}: top class");
    let (p, q) = (&cpu.predictions[0], &on_device.predictions[0]);
    assert!((p.logit - q.logit).abs() <= 1e-4 * p.logit.abs().max(1.0), "{what}: logit {} vs {}", p.logit, q.logit);
    for (a, b) in cpu.explanations.iter().zip(&on_device.explanations) {
        let name = format!("{what} {}", a.method.name());
        let whole_network = matches!(a.method, Method::Saliency | Method::GuidedBackprop);
        for (ra, rb) in a.raw.iter().zip(&b.raw) {
            let (ra, rb) = (ra.as_slice().unwrap(), rb.as_slice().unwrap());
            if clipped && whole_network {
                let e = rel_l2(rb, ra);
                assert!(e < 5e-3, "{name}: gradient differs by {e:.2e} (relative L2)");
            } else {
                close(rb, ra, 1e-4, &format!("{name} raw"));
            }
        }
        if !(clipped && whole_network) {
            close(b.cam.as_slice().unwrap(), a.cam.as_slice().unwrap(), 1e-4, &format!("{name} map"));
        }
    }
}

fn photo() -> Tensor<f32> {
    common::cast(&common::npy_f32("models/inputs/chelsea.npy"))
}

#[test]
fn resnet18_on_the_device_equals_the_cpu() {
    compare(Model::build(Arch::Resnet18, Weights::synthetic(), [224, 224], 1000).unwrap(), photo(), "resnet18", false);
}

#[test]
fn bundled_efficientnet_lite0_on_the_device_equals_the_cpu() {
    compare(Model::bundled().unwrap(), photo(), "efficientnet_lite0", true);
}

#[test]
fn vgg16_bn_at_a_small_size_on_the_device_equals_the_cpu() {
    let model = Model::build(Arch::Vgg16Bn, Weights::synthetic(), [64, 64], 10).unwrap();
    compare(model, common::random(&[1, 3, 64, 64], 5), "vgg16_bn", false);
}

/// A segmentation model (MobileNetV3 with squeeze-excitation, hard-swish, bilinear upsampling) runs wholly on the
/// device, and equals the CPU path.
#[test]
fn onnx_segmentation_model_on_the_device_equals_the_cpu() {
    let Some(dev) = device() else { return };
    let mut model = Model::from_onnx(&common::fixture("onnx/segmentation/lraspp_mnv3s.onnx")).unwrap();
    let image = gradcam::input::load_image(&common::fixture("images/chelsea.png"), model.input_size).unwrap();
    let x = model.normalization.apply(&image.pixels);
    let request = Request {
        classes: ClassChoice::Classes(vec![1]),
        methods: vec![Method::Cam(CamMethod::GradCam), Method::Saliency],
        ..Request::default()
    };
    let cpu = explain(&model, x.clone(), &request).unwrap().remove(0);
    model.graph.set_device(Some(dev));
    let on_device = explain(&model, x, &request).unwrap().remove(0);
    assert_eq!(model.graph.device_host_fallbacks(), []);
    for (a, b) in cpu.explanations.iter().zip(&on_device.explanations) {
        for (ra, rb) in a.raw.iter().zip(&b.raw) {
            let e = rel_l2(rb.as_slice().unwrap(), ra.as_slice().unwrap());
            assert!(e < 5e-3, "{}: differs by {e:.2e} (relative L2)", a.method.name());
        }
    }
    assert_eq!(cpu.explanations.len(), 2);
}

/// Constant padding, slicing (unit and larger steps) and concatenation run as device copies; outputs and input
/// gradients equal the CPU path.
#[test]
fn padding_slicing_and_concatenation_on_the_device_equal_the_cpu() {
    use gradcam::ops::{Concat, Mul, Pad, PadMode, Slice};
    let Some(dev) = device() else { return };
    let build = || {
        let mut b = gradcam::GraphBuilder::<f32>::new();
        let x = b.input("x", &[2, 3, 5, 6]).unwrap();
        let pad = Pad { pads: vec![0, 0, 1, 2, 0, 0, 2, 1], mode: PadMode::Constant, value: 0.5 };
        let padded = b.node("pad", pad, &[x]).unwrap();
        let rows = Slice { starts: vec![1], ends: vec![6], axes: Some(vec![2]), steps: None };
        let rows = b.node("rows", rows, &[padded]).unwrap();
        let cols = Slice { starts: vec![-7], ends: vec![-1], axes: Some(vec![3]), steps: None };
        let cols = b.node("cols", cols, &[rows]).unwrap();
        let joined = b.node("joined", Concat { axis: -3 }, &[cols, x]).unwrap();
        let squared = b.node("squared", Mul, &[joined, joined]).unwrap();
        let strided = Slice { starts: vec![0], ends: vec![6], axes: Some(vec![3]), steps: Some(vec![2]) };
        let strided = b.node("strided", strided, &[squared]).unwrap();
        b.output(strided);
        b.build()
    };
    let x: Tensor<f32> = common::random(&[2, 3, 5, 6], 9);
    let run = |graph: &gradcam::Graph<f32>| {
        let plan = graph.plan(&["strided"], &["x", "joined"], &[]).unwrap();
        let acts = graph.forward(&plan, vec![("x", x.clone())]).unwrap();
        let y = acts.get("strided").unwrap().clone();
        let seed: Tensor<f32> = common::random(y.shape(), 10);
        let grads = acts.backward(vec![("strided", seed)]).unwrap();
        (y, grads.get("x").unwrap().clone(), grads.get("joined").unwrap().clone())
    };
    let cpu = run(&build());
    let mut on_device = build();
    on_device.set_device(Some(dev));
    let device = run(&on_device);
    assert_eq!(cpu.0.shape(), [2, 6, 5, 3]);
    close(device.0.as_slice().unwrap(), cpu.0.as_slice().unwrap(), 1e-6, "output");
    close(device.1.as_slice().unwrap(), cpu.1.as_slice().unwrap(), 1e-6, "input gradient");
    close(device.2.as_slice().unwrap(), cpu.2.as_slice().unwrap(), 1e-6, "concatenation gradient");
}

/// Two images at once, twice: the device gives each image what the CPU gives it, and repeats itself bit for bit.
#[test]
fn a_batch_on_the_device_equals_the_cpu_and_repeats_exactly() {
    let Some(dev) = device() else { return };
    let mut model = Model::build(Arch::Resnet18, Weights::synthetic(), [96, 96], 10).unwrap();
    let x: Tensor<f32> = common::random(&[2, 3, 96, 96], 21);
    let plan = model.graph.plan(&[&model.logits], &[&model.input], &[]).unwrap();
    let run = |model: &Model| {
        let acts = model.graph.forward(&plan, vec![(&model.input, x.clone())]).unwrap();
        let logits = acts.get(&model.logits).unwrap().clone();
        let grads = acts.backward(vec![(&model.logits, Tensor::ones(logits.raw_dim()))]).unwrap();
        (logits, grads.get(&model.input).unwrap().clone())
    };
    let cpu = run(&model);
    model.graph.set_device(Some(dev));
    let (first, again) = (run(&model), run(&model));
    close(first.0.as_slice().unwrap(), cpu.0.as_slice().unwrap(), 1e-4, "logits");
    close(first.1.as_slice().unwrap(), cpu.1.as_slice().unwrap(), 1e-4, "input gradient");
    assert_eq!(first.0, again.0, "logits differ between runs");
    assert_eq!(first.1, again.1, "gradients differ between runs");
}

/// The diagnostic forward names the first node whose output is not finite, on the device as on the CPU.
#[test]
fn non_finite_values_are_named_by_node_on_the_device() {
    use gradcam::ops::{Div, Relu};
    let Some(dev) = device() else { return };
    let mut b = gradcam::GraphBuilder::<f32>::new();
    let x = b.input("x", &[1, 2, 3, 3]).unwrap();
    let ok = b.node("relu", Relu, &[x]).unwrap();
    let zero = b.constant("zero", Tensor::zeros(ndarray::IxDyn(&[1]))).unwrap();
    let bad = b.node("divide", Div, &[ok, zero]).unwrap();
    let y = b.node("after", Relu, &[bad]).unwrap();
    b.output(y);
    let mut graph = b.build();
    let x: Tensor<f32> = common::random(&[1, 2, 3, 3], 22);
    let plan = graph.inference_plan(&["after"]).unwrap();
    let finite = gradcam::ForwardOptions { check_finite: true, ..Default::default() };
    let cpu = graph.forward_with(&plan, vec![("x", x.clone())], finite).unwrap_err().to_string();
    graph.set_device(Some(dev));
    let err = graph.forward_with(&plan, vec![("x", x.clone())], finite).unwrap_err().to_string();
    assert!(err.starts_with("node 'divide' (Div)"), "{err}");
    assert_eq!(err, cpu);
    // Without the check, the pass runs and the non-finite values propagate.
    assert!(graph.forward(&plan, vec![("x", x)]).is_ok());
}

/// Vision transformers (a ViT and a Swin from ONNX: products with batch axes, softmax, layer norm, transposes,
/// GELU through erf) on the device equal the CPU path.
#[test]
fn vision_transformers_on_the_device_equal_the_cpu() {
    for name in ["vit", "swin"] {
        let model = Model::from_onnx(&common::fixture(&format!("onnx/transformers/{name}.onnx"))).unwrap();
        compare(model, photo(), name, false);
    }
}

/// Products with batch axes on the device, both operands wanted: where one operand is broadcast over batch items,
/// its gradient sums their products (the accumulating path), as on the CPU.
#[test]
fn batched_products_and_their_gradients_on_the_device_equal_the_cpu() {
    use gradcam::ops::MatMul;
    let Some(dev) = device() else { return };
    for (sa, sb) in [
        (vec![2, 3, 4], vec![4, 5]),
        (vec![3, 4], vec![2, 4, 5]),
        (vec![2, 1, 3, 4], vec![5, 4, 6]),
        (vec![2, 2, 3, 4], vec![2, 2, 4, 3]),
    ] {
        let build = || {
            let mut b = gradcam::GraphBuilder::<f32>::new();
            let x = b.input("a", &sa).unwrap();
            let y = b.input("b", &sb).unwrap();
            let p = b.node("product", MatMul, &[x, y]).unwrap();
            b.output(p);
            b.build()
        };
        let (a, b): (Tensor<f32>, Tensor<f32>) = (common::random(&sa, 31), common::random(&sb, 32));
        let run = |graph: &gradcam::Graph<f32>| {
            let plan = graph.plan(&["product"], &["a", "b"], &[]).unwrap();
            let acts = graph.forward(&plan, vec![("a", a.clone()), ("b", b.clone())]).unwrap();
            let y = acts.get("product").unwrap().clone();
            let seed: Tensor<f32> = common::random(y.shape(), 33);
            let g = acts.backward(vec![("product", seed)]).unwrap();
            (y, g.get("a").unwrap().clone(), g.get("b").unwrap().clone())
        };
        let cpu = run(&build());
        let mut graph = build();
        graph.set_device(Some(dev.clone()));
        let on_device = run(&graph);
        let what = format!("{sa:?} × {sb:?}");
        close(on_device.0.as_slice().unwrap(), cpu.0.as_slice().unwrap(), 1e-5, &format!("{what} product"));
        close(on_device.1.as_slice().unwrap(), cpu.1.as_slice().unwrap(), 1e-5, &format!("{what} left gradient"));
        close(on_device.2.as_slice().unwrap(), cpu.2.as_slice().unwrap(), 1e-5, &format!("{what} right gradient"));
    }
}

/// Local response normalization, resizes in both interpolations, every coordinate mode and every nearest rounding,
/// and adaptive pooling that shrinks, grows and keeps a size run on the device: outputs and input gradients equal
/// the CPU path.
#[test]
fn lrn_resizing_and_adaptive_pooling_on_the_device_equal_the_cpu() {
    use gradcam::ops::{AdaptiveAvgPool, CoordinateMode, Lrn, NearestRounding, Resize, ResizeMode};
    let Some(dev) = device() else { return };
    let resizes = [
        (ResizeMode::Linear, CoordinateMode::HalfPixel, [11, 8]),
        (ResizeMode::Linear, CoordinateMode::AlignCorners, [4, 9]),
        (ResizeMode::Linear, CoordinateMode::PytorchHalfPixel, [1, 5]),
        (ResizeMode::Linear, CoordinateMode::Asymmetric, [13, 3]),
        (ResizeMode::Nearest(NearestRounding::Floor), CoordinateMode::Asymmetric, [14, 12]),
        (ResizeMode::Nearest(NearestRounding::RoundPreferFloor), CoordinateMode::HalfPixel, [3, 2]),
        (ResizeMode::Nearest(NearestRounding::RoundPreferCeil), CoordinateMode::AlignCorners, [9, 7]),
        (ResizeMode::Nearest(NearestRounding::Ceil), CoordinateMode::PytorchHalfPixel, [5, 11]),
    ];
    for (mode, coordinates, [out_h, out_w]) in resizes {
        let build = || {
            let mut b = gradcam::GraphBuilder::<f32>::new();
            let x = b.input("x", &[2, 6, 7, 6]).unwrap();
            let lrn = b.node("lrn", Lrn { size: 5, alpha: 1e-2, beta: 0.75, bias: 2.0 }, &[x]).unwrap();
            let resize = Resize { out_h, out_w, mode, coordinates, scales: None };
            let resized = b.node("resized", resize, &[lrn]).unwrap();
            let shrunk = b.node("shrunk", AdaptiveAvgPool { output: [3, 2] }, &[resized]).unwrap();
            let grown = b.node("grown", AdaptiveAvgPool { output: [5, 4] }, &[shrunk]).unwrap();
            let same = b.node("same", AdaptiveAvgPool { output: [5, 4] }, &[grown]).unwrap();
            b.output(same);
            b.build()
        };
        let x: Tensor<f32> = common::random(&[2, 6, 7, 6], 41);
        let run = |graph: &gradcam::Graph<f32>| {
            let plan = graph.plan(&["same"], &["x", "resized"], &[]).unwrap();
            let acts = graph.forward(&plan, vec![("x", x.clone())]).unwrap();
            let y = acts.get("same").unwrap().clone();
            let seed: Tensor<f32> = common::random(y.shape(), 42);
            let g = acts.backward(vec![("same", seed)]).unwrap();
            (y, g.get("x").unwrap().clone(), g.get("resized").unwrap().clone())
        };
        let cpu = run(&build());
        let mut graph = build();
        graph.set_device(Some(dev.clone()));
        let on_device = run(&graph);
        assert_eq!(graph.device_host_fallbacks(), []);
        let what = format!("{mode:?} {coordinates:?} to {out_h}×{out_w}");
        close(on_device.0.as_slice().unwrap(), cpu.0.as_slice().unwrap(), 1e-5, &format!("{what}: output"));
        close(on_device.1.as_slice().unwrap(), cpu.1.as_slice().unwrap(), 1e-5, &format!("{what}: input gradient"));
        close(on_device.2.as_slice().unwrap(), cpu.2.as_slice().unwrap(), 1e-5, &format!("{what}: resize gradient"));
    }
}

/// An op without a device lowering still runs (its CPU rule on host copies), equals the CPU path, and is named,
/// forward and backward, by `device_host_fallbacks`.
#[test]
fn ops_without_a_device_lowering_run_on_the_host_and_are_reported() {
    use gradcam::ops::{InstanceNormalization, Relu};
    let Some(dev) = device() else { return };
    let build = || {
        let mut b = gradcam::GraphBuilder::<f32>::new();
        let x = b.input("x", &[1, 3, 4, 5]).unwrap();
        let scale = b.constant("scale", common::random(&[3], 51)).unwrap();
        let bias = b.constant("bias", common::random(&[3], 52)).unwrap();
        let normed = b.node("normed", InstanceNormalization::default(), &[x, scale, bias]).unwrap();
        let y = b.node("relu", Relu, &[normed]).unwrap();
        b.output(y);
        b.build()
    };
    let x: Tensor<f32> = common::random(&[1, 3, 4, 5], 53);
    let run = |graph: &gradcam::Graph<f32>| {
        let plan = graph.plan(&["relu"], &["x"], &[]).unwrap();
        let acts = graph.forward(&plan, vec![("x", x.clone())]).unwrap();
        let y = acts.get("relu").unwrap().clone();
        let g = acts.backward(vec![("relu", Tensor::ones(y.raw_dim()))]).unwrap();
        (y, g.get("x").unwrap().clone())
    };
    let cpu = run(&build());
    let mut graph = build();
    graph.set_device(Some(dev));
    assert_eq!(graph.device_host_fallbacks(), []);
    let on_device = run(&graph);
    close(on_device.0.as_slice().unwrap(), cpu.0.as_slice().unwrap(), 1e-5, "output");
    close(on_device.1.as_slice().unwrap(), cpu.1.as_slice().unwrap(), 1e-5, "input gradient");
    let report: Vec<(String, &str, bool)> =
        graph.device_host_fallbacks().into_iter().map(|f| (f.node, f.op, f.backward)).collect();
    assert_eq!(
        report,
        [("normed".to_string(), "InstanceNormalization", false), ("normed".to_string(), "InstanceNormalization", true)]
    );
}

/// The ONNX project's nine `light/` architectures (AlexNet and GoogLeNet with LRN, DenseNet, Inception-v2,
/// ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet) run wholly on the device: outputs and input gradients equal
/// the CPU path.
#[test]
fn onnx_light_architectures_run_wholly_on_the_device() {
    use gradcam::onnx::load;
    let Some(dev) = device() else { return };
    for name in [
        "bvlc_alexnet",
        "densenet121",
        "inception_v1",
        "inception_v2",
        "resnet50",
        "shufflenet",
        "squeezenet",
        "vgg19",
        "zfnet512",
    ] {
        let mut m = load(&common::fixture(&format!("onnx/light/light_{name}.onnx"))).unwrap();
        let input = m.inputs[0].clone();
        // The pass ends at the logits: with the light models' constant weights, a gradient through their final
        // softmax (whose input gradient sums to zero) cancels to rounding noise in the constant classifier.
        let softmax = m.graph.nodes().iter().rev().find(|n| n.op.op_type() == "Softmax");
        let output = softmax.map_or_else(|| m.outputs[0].clone(), |n| m.graph.value(n.inputs[0]).name.clone());
        let shape = m.graph.value(m.graph.find(&input).unwrap()).shape.clone();
        let x: Tensor<f32> = common::random(&shape, 61);
        let run = |graph: &gradcam::Graph<f32>| {
            let plan = graph.plan(&[&output], &[&input], &[]).unwrap();
            let acts = graph.forward(&plan, vec![(&input, x.clone())]).unwrap();
            let y = acts.get(&output).unwrap().clone();
            let seed: Tensor<f32> = common::random(y.shape(), 62);
            let g = acts.backward(vec![(&output, seed)]).unwrap();
            (y, g.get(&input).unwrap().clone())
        };
        let cpu = run(&m.graph);
        m.graph.set_device(Some(dev.clone()));
        let on_device = run(&m.graph);
        assert_eq!(m.graph.device_host_fallbacks(), [], "{name}");
        close(on_device.0.as_slice().unwrap(), cpu.0.as_slice().unwrap(), 1e-4, &format!("{name} output"));
        close(on_device.1.as_slice().unwrap(), cpu.1.as_slice().unwrap(), 1e-4, &format!("{name} input gradient"));
    }
}
