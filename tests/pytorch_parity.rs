//! Conv, pooling and batch-norm outputs and input gradients against PyTorch references
//! (fixtures/engine, made by tools/make_engine_fixtures.py). Each case runs through a one-node graph, forward and
//! backward, in f32 (tolerance 1e-4 relative) and in f64 (1e-10: only rounding differs).

mod common;

use common::{cast, npy_f32, npy_f64, worst_ratio};
use gradcam::ops::{AveragePool, BatchNormalization, Conv, MaxPool, Op, PoolAttrs};
use gradcam::{Element, GraphBuilder};

fn check<T: Element>(case: &str, op: impl Op<T> + Clone + 'static, params: &[&str], rtol: f64, atol: f64) {
    let x = npy_f32(&format!("engine/{case}/x.npy"));
    let mut b = GraphBuilder::<T>::new();
    let xv = b.input("x", x.shape()).unwrap();
    let mut inputs = vec![xv];
    for p in params {
        let t = npy_f32(&format!("engine/{case}/{p}.npy"));
        inputs.push(b.constant(p, cast(&t)).unwrap());
    }
    let y = b.node("y", op, &inputs).unwrap();
    b.output(y);
    let g = b.build();
    let plan = g.plan(&["y"], &["x"], &[]).unwrap();
    let acts = g.forward(&plan, vec![("x", cast(&x))]).unwrap();
    let want_y = npy_f64(&format!("engine/{case}/y.npy"));
    let r = worst_ratio(acts.get("y").unwrap(), &want_y, rtol, atol);
    assert!(r <= 1.0, "{case} ({}): forward off by {r}× the tolerance", T::NAME);
    let gy = cast::<T>(&npy_f32(&format!("engine/{case}/gy.npy")));
    let grads = acts.backward(vec![("y", gy)]).unwrap();
    let want_gx = npy_f64(&format!("engine/{case}/gx.npy"));
    let r = worst_ratio(grads.get("x").unwrap(), &want_gx, rtol, atol);
    assert!(r <= 1.0, "{case} ({}): input gradient off by {r}× the tolerance", T::NAME);
}

fn all_cases<T: Element>(rtol: f64, atol: f64) {
    let conv = |stride, pads, dilation, groups| Conv { strides: [stride; 2], pads, dilations: [dilation; 2], groups };
    let wb: &[&str] = &["w", "b"];
    check::<T>("conv_basic", conv(1, [1; 4], 1, 1), wb, rtol, atol);
    check::<T>("conv_stride2_asym", conv(2, [0, 0, 1, 1], 1, 1), wb, rtol, atol);
    check::<T>("conv_dilated", Conv { pads: [2, 1, 2, 1], dilations: [2, 2], ..Conv::default() }, wb, rtol, atol);
    check::<T>("conv_groups", conv(1, [1; 4], 1, 3), &["w"], rtol, atol);
    check::<T>("conv_depthwise", conv(2, [1, 1, 2, 2], 1, 8), wb, rtol, atol);
    check::<T>("conv_depthwise_mult", conv(1, [1; 4], 1, 4), wb, rtol, atol);
    check::<T>("conv_pointwise", Conv::default(), wb, rtol, atol);
    check::<T>("conv_resnet_stem", conv(2, [3; 4], 1, 1), wb, rtol, atol);

    check::<T>("maxpool_resnet", MaxPool(PoolAttrs::square(3, 2, 1)), &[], rtol, atol);
    check::<T>("maxpool_ceil", MaxPool(PoolAttrs { ceil_mode: true, ..PoolAttrs::square(3, 2, 0) }), &[], rtol, atol);
    let dilated = PoolAttrs { kernel: [2, 3], strides: [1, 2], pads: [1; 4], dilations: [2, 1], ceil_mode: false };
    check::<T>("maxpool_dilated", MaxPool(dilated), &[], rtol, atol);
    let avg = |attrs, count_include_pad| AveragePool { attrs, count_include_pad };
    check::<T>("avgpool_include_pad", avg(PoolAttrs::square(3, 2, 1), true), &[], rtol, atol);
    check::<T>("avgpool_exclude_pad", avg(PoolAttrs::square(3, 2, 1), false), &[], rtol, atol);
    check::<T>("avgpool_ceil", avg(PoolAttrs { ceil_mode: true, ..PoolAttrs::square(2, 2, 0) }, true), &[], rtol, atol);

    check::<T>("batchnorm", BatchNormalization { epsilon: 1e-3 }, &["scale", "shift", "mean", "var"], rtol, atol);
}

#[test]
fn f32_matches_pytorch() {
    all_cases::<f32>(1e-4, 1e-5);
}

#[test]
fn f64_matches_pytorch_to_rounding() {
    all_cases::<f64>(1e-10, 1e-12);
}
