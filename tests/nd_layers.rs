//! 1-D and 3-D layers from ONNX against PyTorch (tools/make_nd_layer_fixtures.py): Resize of signals `[N, C, L]` and
//! volumes `[N, C, D, H, W]` (imported as separable 2-D resizes; `F.interpolate` linear, trilinear with and without
//! aligned corners, nearest; by scale and by size), a transposed 3-D convolution and an Einsum, within 1e-5; the input gradient
//! equal to finite differences (the maps are linear, so differences are exact up to rounding).

mod common;

use gradcam::onnx::load;
use gradcam::Tensor;

const CASES: [&str; 8] = [
    "signal_linear_x2",
    "signal_linear_size_corners",
    "signal_nearest_size",
    "volume_trilinear_x2",
    "volume_trilinear_size",
    "volume_nearest_x2",
    "volume_conv_transpose",
    "einsum_attention",
];

#[test]
fn one_and_three_dimensional_layers_match_pytorch_and_their_gradients_finite_differences() {
    for case in CASES {
        let m = load(&common::fixture(&format!("onnx/nd_layers/{case}/model.onnx"))).unwrap();
        let g = &m.graph;
        let x = common::npy_f32(&format!("onnx/nd_layers/{case}/input.npy"));
        let want = common::npy_f32(&format!("onnx/nd_layers/{case}/output.npy"));
        let (input, output) = (m.inputs[0].as_str(), m.outputs[0].as_str());
        let plan = g.plan(&[output], &[input], &[]).unwrap();
        let acts = g.forward(&plan, vec![(input, x.clone())]).unwrap();
        let y = acts.get(output).unwrap().clone();
        assert_eq!(y.shape(), want.shape(), "{case}");
        let err = common::max_abs_diff(y.iter(), want.iter());
        assert!(err < 1e-5, "{case}: off by {err:.2e}");
        // ∂(Σ r·y)/∂x against central differences, at a few entries.
        let r = common::random::<f32>(y.shape(), 17);
        let grads = acts.backward(vec![(output, r.clone())]).unwrap();
        let gx = grads.get(input).unwrap();
        let loss = |x: Tensor<f32>| -> f64 {
            let acts = g.forward(&plan, vec![(input, x)]).unwrap();
            common::pairs(acts.get(output).unwrap().iter(), r.iter()).map(|(a, b)| (*a as f64) * (*b as f64)).sum()
        };
        let h = 1e-2f32;
        for flat in [0, x.len() / 3, x.len() - 1] {
            let mut plus = x.clone();
            plus.as_slice_mut().unwrap()[flat] += h;
            let mut minus = x.clone();
            minus.as_slice_mut().unwrap()[flat] -= h;
            let numeric = (loss(plus) - loss(minus)) / (2.0 * h as f64);
            let analytic = gx.as_slice().unwrap()[flat] as f64;
            assert!(
                (analytic - numeric).abs() < 1e-3 * (1.0 + numeric.abs()),
                "{case}[{flat}]: {analytic} vs {numeric}"
            );
        }
    }
}
