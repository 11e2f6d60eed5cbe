//! The CUDA kernels, run through the host emulation, against the CPU kernels of this crate.

use super::{Activation, BinaryOp, Buffer, Device};
use crate::geometry::{window_count, ConvGeometry};
use crate::pool::PoolGeometry;

fn device() -> Option<Device> {
    match Device::host_emulation() {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("device emulation tests skipped: {e}");
            None
        }
    }
}

/// Deterministic values in [-1, 1) (the kernels' shared test data).
fn values(len: usize, seed: u64) -> Vec<f32> {
    crate::conv::tests::data_f32(len, seed as usize)
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{what}: element {i}: {g} vs {w}");
    }
}

fn conv_cases() -> Vec<ConvGeometry> {
    let mut cases = Vec::new();
    for (groups, cin, cout, k, stride, pad, dilation) in [
        (1, 3, 5, 3, 1, 1, 1),
        (1, 4, 6, 3, 2, 1, 1),
        (1, 2, 3, 1, 1, 0, 1),
        (1, 3, 4, 3, 1, 2, 2),
        (2, 4, 6, 3, 2, 0, 1),
        (6, 6, 6, 3, 1, 1, 1),
        (6, 6, 12, 5, 2, 2, 1),
    ] {
        cases.push(ConvGeometry {
            batch: 2,
            in_channels: cin,
            in_h: 9,
            in_w: 7,
            out_channels: cout,
            kernel_h: k,
            kernel_w: k,
            stride_h: stride,
            stride_w: stride,
            dilation_h: dilation,
            dilation_w: dilation,
            pad_top: pad,
            pad_left: pad,
            pad_bottom: pad,
            pad_right: pad + 1,
            groups,
        });
    }
    // A plain 1×1 (its products read the input and write the input gradient directly) and a 3×3, each at a batch of
    // three: in test builds the columns of two images fill one product, so the last image is a group of its own.
    let plain =
        ConvGeometry { kernel_h: 1, kernel_w: 1, pad_top: 0, pad_left: 0, pad_bottom: 0, pad_right: 0, ..cases[0] };
    cases.push(ConvGeometry { batch: 3, ..plain });
    cases.push(ConvGeometry { batch: 3, ..cases[0] });
    cases
}

#[test]
fn convolution_and_its_input_gradient_match_the_cpu() {
    let Some(dev) = device() else { return };
    for (c, geo) in conv_cases().into_iter().enumerate() {
        let (oh, ow) = (geo.out_h().unwrap(), geo.out_w().unwrap());
        let x = values(geo.batch * geo.in_channels * geo.in_h * geo.in_w, 1 + c as u64);
        let w = values(geo.out_channels * geo.in_channels / geo.groups * geo.kernel_h * geo.kernel_w, 50 + c as u64);
        let bias = values(geo.out_channels, 90 + c as u64);
        let out_len = geo.batch * geo.out_channels * oh * ow;
        let mut want = vec![0.0; out_len];
        crate::conv2d_forward(&geo, &x, &w, Some(&bias), &mut want);
        let (dx, dw, db) = (dev.upload(&x).unwrap(), dev.upload(&w).unwrap(), dev.upload(&bias).unwrap());
        let mut y = dev.zeros(out_len).unwrap();
        dev.conv(&geo, &dx, &dw, Some(&db), &mut y).unwrap();
        assert_close(&dev.download(&y).unwrap(), &want, &format!("conv case {c}"));

        let dy = values(out_len, 200 + c as u64);
        let mut want = vec![0.0; x.len()];
        crate::conv2d_backward_data(&geo, &w, &dy, &mut want);
        let mut grad = dev.zeros(x.len()).unwrap();
        dev.conv_backward_data(&geo, &dev.upload(&dy).unwrap(), &dw, &mut grad).unwrap();
        assert_close(&dev.download(&grad).unwrap(), &want, &format!("conv backward case {c}"));
    }
}

#[test]
fn wrong_buffer_sizes_are_refused_before_launching() {
    let Some(dev) = device() else { return };
    let geo = conv_cases()[0];
    let x = dev.zeros(10).unwrap();
    let w = dev.zeros(10).unwrap();
    let mut y = dev.zeros(10).unwrap();
    assert!(dev.conv(&geo, &x, &w, None, &mut y).is_err());
    assert!(dev.activation(Activation::Sigmoid, &x, &mut dev.zeros(9).unwrap()).is_err());
    let big = dev.zeros(4).unwrap();
    assert!(dev.gemm((2, 2, 2), (&big, 1, false), (&big, 0, false), (&mut y, 0), 1.0, 0.0).is_err());
    // Batched products: the last one must fit too, and their outputs must not overlap.
    let (a, b) = (dev.zeros(8).unwrap(), dev.zeros(8).unwrap());
    let batched = |count, stride_c, c: &mut Buffer| {
        dev.gemm_batched((2, 2, 2), (count, [4, 4, stride_c]), (&a, 0, false), (&b, 0, false), (c, 0), 1.0, 0.0)
    };
    assert!(batched(2, 4, &mut dev.zeros(8).unwrap()).is_ok());
    assert!(batched(3, 4, &mut dev.zeros(12).unwrap()).is_err(), "A and B hold two products, not three");
    assert!(batched(2, 2, &mut dev.zeros(8).unwrap()).is_err(), "overlapping outputs");
}

#[test]
fn batched_products_equal_one_product_at_a_time() {
    let Some(dev) = device() else { return };
    // Three 3×4 · 4×5 products sharing A (stride 0), B read transposed, C with a gap between its matrices.
    let (a, b) = (values(12, 1), values(3 * 20, 2));
    let (da, db) = (dev.upload(&a).unwrap(), dev.upload(&b).unwrap());
    let mut batched = dev.zeros(3 * 16).unwrap();
    let call = (3, [0, 20, 16]);
    dev.gemm_batched((3, 5, 4), call, (&da, 0, false), (&db, 0, true), (&mut batched, 0), 1.0, 0.0).unwrap();
    let mut single = dev.zeros(3 * 16).unwrap();
    for i in 0..3 {
        dev.gemm((3, 5, 4), (&da, 0, false), (&db, i * 20, true), (&mut single, i * 16), 1.0, 0.0).unwrap();
    }
    assert_eq!(dev.download(&batched).unwrap(), dev.download(&single).unwrap());
}

fn pool_cases() -> Vec<(PoolGeometry, bool)> {
    let mut cases = Vec::new();
    for (k, s, p, d, ceil, include_pad) in
        [(3, 2, 1, 1, false, false), (2, 2, 0, 1, true, true), (3, 1, 1, 2, false, true), (3, 2, 1, 1, true, false)]
    {
        let (h, w) = (9, 8);
        let out_h = window_count(h, k, s, d, (p, p), ceil).unwrap();
        let out_w = window_count(w, k, s, d, (p, p), ceil).unwrap();
        let geo = PoolGeometry {
            planes: 5,
            in_h: h,
            in_w: w,
            out_h,
            out_w,
            kernel_h: k,
            kernel_w: k,
            stride_h: s,
            stride_w: s,
            dilation_h: d,
            dilation_w: d,
            pad_top: p,
            pad_left: p,
            pad_bottom: p,
            pad_right: p,
        };
        cases.push((geo, include_pad));
    }
    cases
}

#[test]
fn pooling_and_its_gradients_match_the_cpu() {
    let Some(dev) = device() else { return };
    for (c, (geo, include_pad)) in pool_cases().into_iter().enumerate() {
        let input = geo.planes * geo.in_h * geo.in_w;
        let output = geo.planes * geo.out_h * geo.out_w;
        // Coarse values: ties are common, so the first-maximum rule is exercised.
        let x: Vec<f32> = values(input, 7 + c as u64).iter().map(|v| (v * 4.0).round()).collect();
        let dy = values(output, 70 + c as u64);
        let (xb, dyb) = (dev.upload(&x).unwrap(), dev.upload(&dy).unwrap());

        let mut want = vec![0.0; output];
        crate::max_pool2d_forward(&geo, &x, &mut want);
        let mut y = dev.zeros(output).unwrap();
        dev.max_pool(&geo, &xb, &mut y).unwrap();
        assert_close(&dev.download(&y).unwrap(), &want, &format!("max pool case {c}"));

        let mut argmax = vec![0u32; output];
        crate::max_pool2d_argmax(&geo, &x, &mut argmax);
        let mut want = vec![0.0; input];
        crate::max_pool2d_backward(&geo, &argmax, &dy, &mut want);
        let mut dx = dev.zeros(input).unwrap();
        dev.max_pool_backward(&geo, &xb, &dyb, &mut dx).unwrap();
        assert_close(&dev.download(&dx).unwrap(), &want, &format!("max pool backward case {c}"));

        let mut want = vec![0.0; output];
        crate::avg_pool2d_forward(&geo, include_pad, &x, &mut want);
        dev.avg_pool(&geo, include_pad, &xb, &mut y).unwrap();
        assert_close(&dev.download(&y).unwrap(), &want, &format!("avg pool case {c}"));

        let mut want = vec![0.0; input];
        crate::avg_pool2d_backward(&geo, include_pad, &dy, &mut want);
        dev.avg_pool_backward(&geo, include_pad, &dyb, &mut dx).unwrap();
        assert_close(&dev.download(&dx).unwrap(), &want, &format!("avg pool backward case {c}"));
    }
}

#[test]
fn activations_and_their_slopes_match_finite_differences() {
    let Some(dev) = device() else { return };
    let x: Vec<f32> = values(400, 3).iter().map(|v| v * 5.0).collect();
    let xb = dev.upload(&x).unwrap();
    let ones = dev.upload(&vec![1.0; x.len()]).unwrap();
    let acts = [
        Activation::Clamp(0.0, f32::INFINITY),
        Activation::Clamp(0.0, 6.0),
        Activation::LeakyRelu(0.1),
        Activation::Sigmoid,
        Activation::Silu,
        Activation::HardSwish,
        Activation::HardSigmoid { alpha: 0.2, beta: 0.5 },
        Activation::Tanh,
        Activation::Elu(1.0),
        Activation::Gelu,
        Activation::Selu { alpha: 1.67326, gamma: 1.0507 },
        Activation::Softplus,
        Activation::Erf,
        Activation::PositivePart,
    ];
    for act in acts {
        let mut y = dev.zeros(x.len()).unwrap();
        dev.activation(act, &xb, &mut y).unwrap();
        let y = dev.download(&y).unwrap();
        let mut slope = dev.zeros(x.len()).unwrap();
        dev.activation_backward(act, &xb, &ones, &mut slope).unwrap();
        let slope = dev.download(&slope).unwrap();
        let f = |v: f64| -> f64 {
            let v32 = dev.upload(&[v as f32]).unwrap();
            let mut out = dev.zeros(1).unwrap();
            dev.activation(act, &v32, &mut out).unwrap();
            f64::from(dev.download(&out).unwrap()[0])
        };
        for (i, &v) in x.iter().enumerate().step_by(7) {
            let h = 1e-2;
            // Away from the kinks, a central difference in f32 is good to about 1e-3.
            let kinks = [0.0, 6.0, -3.0, 3.0, -2.5, 2.5];
            if kinks.iter().any(|k| (f64::from(v) - k).abs() < 2.0 * h) {
                continue;
            }
            let numeric = (f(f64::from(v) + h) - f(f64::from(v) - h)) / (2.0 * h);
            assert!((f64::from(slope[i]) - numeric).abs() < 2e-3, "{act:?} at {v}: {} vs {numeric}", slope[i]);
            assert!(y[i].is_finite());
        }
    }
    // The positive part drops NaN (as guided backpropagation's CPU filter does); a ReLU clamp keeps it.
    let nan = dev.upload(&[f32::NAN, -1.0, 2.0]).unwrap();
    let mut y = dev.zeros(3).unwrap();
    dev.activation(Activation::PositivePart, &nan, &mut y).unwrap();
    assert_eq!(dev.download(&y).unwrap(), [0.0, 0.0, 2.0]);
    dev.activation(Activation::Clamp(0.0, f32::INFINITY), &nan, &mut y).unwrap();
    assert!(dev.download(&y).unwrap()[0].is_nan());
}

#[test]
fn broadcasting_binary_ops_and_their_gradients() {
    let Some(dev) = device() else { return };
    let out = [2, 3, 4];
    let (sa, sb) = ([2, 1, 4], [3, 1]);
    let a = values(8, 11);
    let b: Vec<f32> = values(3, 12).iter().map(|v| v + 2.0).collect();
    let dy = values(24, 13);
    let (ab, bb, dyb) = (dev.upload(&a).unwrap(), dev.upload(&b).unwrap(), dev.upload(&dy).unwrap());
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
        let f = |u: f32, v: f32| match op {
            BinaryOp::Add => u + v,
            BinaryOp::Sub => u - v,
            BinaryOp::Mul => u * v,
            BinaryOp::Div => u / v,
        };
        let (mut want, mut da, mut db) = (vec![0.0; 24], vec![0.0f32; 8], vec![0.0f32; 3]);
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    let (u, v, g) = (a[i * 4 + k], b[j], dy[(i * 3 + j) * 4 + k]);
                    want[(i * 3 + j) * 4 + k] = f(u, v);
                    let (du, dv) = match op {
                        BinaryOp::Add => (1.0, 1.0),
                        BinaryOp::Sub => (1.0, -1.0),
                        BinaryOp::Mul => (v, u),
                        BinaryOp::Div => (1.0 / v, -u / (v * v)),
                    };
                    da[i * 4 + k] += g * du;
                    db[j] += g * dv;
                }
            }
        }
        let mut y = dev.zeros(24).unwrap();
        dev.binary(op, &ab, &sa, &bb, &sb, &mut y, &out).unwrap();
        assert_close(&dev.download(&y).unwrap(), &want, &format!("{op:?}"));
        let mut ga = dev.zeros(8).unwrap();
        dev.binary_backward(op, 0, Some(&ab), &sa, Some(&bb), &sb, &dyb, &out, &mut ga).unwrap();
        assert_close(&dev.download(&ga).unwrap(), &da, &format!("{op:?} left gradient"));
        let mut gb = dev.zeros(3).unwrap();
        dev.binary_backward(op, 1, Some(&ab), &sa, Some(&bb), &sb, &dyb, &out, &mut gb).unwrap();
        assert_close(&dev.download(&gb).unwrap(), &db, &format!("{op:?} right gradient"));
    }
}

#[test]
fn boxes_pad_crop_and_place() {
    let Some(dev) = device() else { return };
    let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let xb = dev.upload(&x).unwrap();
    // Pad [3, 4] by one row on top and two columns on the left into [5, 6].
    let mut padded = dev.zeros(30).unwrap();
    dev.box_read(&[5, 6], &[3, 4], &[1, 2], -1.0, &xb, &mut padded).unwrap();
    let p = dev.download(&padded).unwrap();
    assert_eq!(&p[..6], &[-1.0; 6]);
    assert_eq!(&p[6..12], &[-1.0, -1.0, 0.0, 1.0, 2.0, 3.0]);
    assert_eq!(&p[24..30], &[-1.0; 6]);
    // Crop it back.
    let mut back = dev.zeros(12).unwrap();
    dev.box_read(&[3, 4], &[5, 6], &[-1, -2], 0.0, &padded, &mut back).unwrap();
    assert_eq!(dev.download(&back).unwrap(), x);
    // Place x at the bottom right of a zero [4, 5].
    let mut target = dev.zeros(20).unwrap();
    dev.box_write(&[4, 5], &[3, 4], &[1, 1], &xb, &mut target).unwrap();
    let t = dev.download(&target).unwrap();
    assert_eq!(&t[..5], &[0.0; 5]);
    assert_eq!(&t[5..10], &[0.0, 0.0, 1.0, 2.0, 3.0]);
    assert!(dev.box_write(&[4, 5], &[3, 4], &[2, 1], &xb, &mut target).is_err());
}

#[test]
fn channel_affine_and_plane_means() {
    let Some(dev) = device() else { return };
    let x = values(2 * 3 * 5, 21);
    let (scale, shift) = (values(3, 22), values(3, 23));
    let mut y = dev.zeros(30).unwrap();
    let xb = dev.upload(&x).unwrap();
    dev.channel_affine(&xb, Some(&dev.upload(&scale).unwrap()), Some(&dev.upload(&shift).unwrap()), 3, 5, &mut y)
        .unwrap();
    let want: Vec<f32> = x.iter().enumerate().map(|(k, v)| v * scale[(k / 5) % 3] + shift[(k / 5) % 3]).collect();
    assert_close(&dev.download(&y).unwrap(), &want, "affine");
    let mut means = dev.zeros(6).unwrap();
    dev.plane_mean(5, &xb, &mut means).unwrap();
    let want: Vec<f32> = x.chunks(5).map(|c| c.iter().sum::<f32>() / 5.0).collect();
    assert_close(&dev.download(&means).unwrap(), &want, "plane means");
    let mut spread = dev.zeros(30).unwrap();
    dev.plane_mean_backward(5, &means, &mut spread).unwrap();
    let want: Vec<f32> = (0..30).map(|k| want[k / 5] / 5.0).collect();
    assert_close(&dev.download(&spread).unwrap(), &want, "plane mean gradient");
}

#[test]
fn parameters_that_would_wrap_and_foreign_buffers_are_refused() {
    let Some(dev) = device() else { return };
    // A stride that would read as negative in the kernels' 64-bit arithmetic.
    let geo = PoolGeometry {
        planes: 1,
        in_h: 2,
        in_w: 1,
        out_h: 1,
        out_w: 1,
        kernel_h: 2,
        kernel_w: 1,
        stride_h: usize::MAX,
        stride_w: 1,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: 0,
        pad_left: 0,
        pad_bottom: 0,
        pad_right: 0,
    };
    let dy = dev.zeros(1).unwrap();
    let mut dx = dev.zeros(2).unwrap();
    assert!(dev.avg_pool_backward(&geo, false, &dy, &mut dx).is_err());
    let x = dev.zeros(4).unwrap();
    let mut y = dev.zeros(4).unwrap();
    assert!(dev.box_read(&[4], &[4], &[i64::MIN], 0.0, &x, &mut y).is_err());
    // A buffer of another memory space (another GPU, or the GPU under emulation) never reaches a kernel.
    let mut foreign = dev.zeros(4).unwrap();
    foreign.space = 7;
    assert!(dev.activation(Activation::Tanh, &foreign, &mut y).is_err());
    assert!(dev.activation(Activation::Tanh, &x, &mut foreign).is_err());
    assert!(dev.download(&foreign).is_err());
    assert!(dev.gemm((2, 2, 2), (&foreign, 0, false), (&x, 0, false), (&mut y, 0), 1.0, 0.0).is_err());
}

#[test]
fn permutations_softmax_and_layer_norm_rows() {
    let Some(dev) = device() else { return };
    // Permute [2, 3, 4] by (2, 0, 1): y[c, a, b] = x[a, b, c].
    let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let mut y = dev.zeros(24).unwrap();
    dev.permute(&[2, 3, 4], &[2, 0, 1], &dev.upload(&x).unwrap(), &mut y).unwrap();
    let y = dev.download(&y).unwrap();
    for a in 0..2 {
        for b in 0..3 {
            for c in 0..4 {
                assert_eq!(y[(c * 2 + a) * 3 + b], x[(a * 3 + b) * 4 + c]);
            }
        }
    }
    assert!(dev.permute(&[2, 3, 4], &[0, 0, 1], &dev.zeros(24).unwrap(), &mut dev.zeros(24).unwrap()).is_err());

    let m = 7;
    let x: Vec<f32> = values(3 * m, 31).iter().map(|v| v * 4.0).collect();
    let (scale, bias) = (values(m, 32), values(m, 33));
    let dy = values(3 * m, 34);
    let xb = dev.upload(&x).unwrap();
    let mut y = dev.zeros(3 * m).unwrap();
    dev.softmax_rows(m, &xb, &mut y).unwrap();
    let soft = dev.download(&y).unwrap();
    for row in 0..3 {
        let r = &x[row * m..(row + 1) * m];
        let top = r.iter().fold(f32::MIN, |a, &b| a.max(b));
        let sum: f32 = r.iter().map(|v| (v - top).exp()).sum();
        let want: Vec<f32> = r.iter().map(|v| (v - top).exp() / sum).collect();
        assert_close(&soft[row * m..(row + 1) * m], &want, "softmax");
    }
    // Gradients against central differences of ⟨dy, f(x)⟩ in f64 on the host reference formulas.
    let softmax = |x: &[f64]| -> Vec<f64> {
        x.chunks(m)
            .flat_map(|r| {
                let top = r.iter().fold(f64::MIN, |a, &b| a.max(b));
                let s: f64 = r.iter().map(|v| (v - top).exp()).sum();
                r.iter().map(move |v| (v - top).exp() / s).collect::<Vec<_>>()
            })
            .collect()
    };
    let layer_norm = |x: &[f64]| -> Vec<f64> {
        x.chunks(m)
            .flat_map(|r| {
                let mean = r.iter().sum::<f64>() / m as f64;
                let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64;
                let inv = 1.0 / (var + 1e-5).sqrt();
                r.iter()
                    .enumerate()
                    .map(|(k, v)| (v - mean) * inv * f64::from(scale[k]) + f64::from(bias[k]))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let numeric = |f: &dyn Fn(&[f64]) -> Vec<f64>| -> Vec<f32> {
        let base: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        (0..x.len())
            .map(|i| {
                let (mut up, mut down) = (base.clone(), base.clone());
                up[i] += 1e-4;
                down[i] -= 1e-4;
                let (fu, fd) = (f(&up), f(&down));
                let d: f64 = fu.iter().zip(&fd).zip(&dy).map(|((a, b), g)| (a - b) * f64::from(*g)).sum();
                (d / 2e-4) as f32
            })
            .collect()
    };
    let dyb = dev.upload(&dy).unwrap();
    let mut dx = dev.zeros(3 * m).unwrap();
    dev.softmax_rows_backward(m, &dev.upload(&soft).unwrap(), &dyb, &mut dx).unwrap();
    assert_close(&dev.download(&dx).unwrap(), &numeric(&softmax), "softmax gradient");

    let (sb, bb) = (dev.upload(&scale).unwrap(), dev.upload(&bias).unwrap());
    dev.layer_norm_rows(m, 1e-5, &xb, (&sb, Some(&bb)), &mut y).unwrap();
    let base: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let want: Vec<f32> = layer_norm(&base).iter().map(|&v| v as f32).collect();
    assert_close(&dev.download(&y).unwrap(), &want, "layer norm");
    dev.layer_norm_rows_backward(m, 1e-5, (&xb, &sb), &dyb, &mut dx).unwrap();
    let got = dev.download(&dx).unwrap();
    let want = numeric(&layer_norm);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() < 2e-3 * (1.0 + w.abs()), "layer norm gradient {i}: {g} vs {w}");
    }
}

#[test]
fn strided_slices_read_and_write_back() {
    let Some(dev) = device() else { return };
    // x[1::2, 0:5:3] of a [5, 6] tensor.
    let x: Vec<f32> = (0..30).map(|v| v as f32).collect();
    let mut y = dev.zeros(4).unwrap();
    let xb = dev.upload(&x).unwrap();
    dev.strided_read((&[2, 2], &[5, 6]), (&[1, 0], &[2, 3]), &xb, &mut y).unwrap();
    assert_eq!(dev.download(&y).unwrap(), vec![6.0, 9.0, 18.0, 21.0]);
    let mut back = dev.zeros(30).unwrap();
    dev.strided_write((&[2, 2], &[5, 6]), (&[1, 0], &[2, 3]), &y, &mut back).unwrap();
    let back = dev.download(&back).unwrap();
    assert_eq!(back.iter().filter(|&&v| v != 0.0).count(), 4);
    assert_eq!((back[6], back[9], back[18], back[21]), (6.0, 9.0, 18.0, 21.0));
    // A slice reaching past the end is refused before launching.
    assert!(dev.strided_read((&[3, 2], &[5, 6]), (&[1, 0], &[2, 3]), &xb, &mut dev.zeros(6).unwrap()).is_err());
}

#[test]
fn axis_resampling_matches_its_table_and_the_transposed_table_is_its_adjoint() {
    use super::transpose_taps;
    let Some(dev) = device() else { return };
    // A ragged table over an axis of 4 → 5: an empty row, a repeated index, every input read.
    let rows: Vec<Vec<(usize, f32)>> =
        vec![vec![(0, 1.0)], vec![(1, 0.25), (2, 0.75)], vec![], vec![(3, 0.5), (3, 0.5)], vec![(2, -1.0), (0, 2.0)]];
    let (outer, inner) = (3, 2);
    let x = values(outer * 4 * inner, 41);
    let table = dev.resample_table(4, &rows).unwrap();
    let mut y = dev.zeros(outer * 5 * inner).unwrap();
    dev.axis_resample(&table, outer, inner, &dev.upload(&x).unwrap(), &mut y).unwrap();
    let mut want = vec![0.0f32; outer * 5 * inner];
    for o in 0..outer {
        for (j, row) in rows.iter().enumerate() {
            for r in 0..inner {
                want[(o * 5 + j) * inner + r] = row.iter().map(|&(i, w)| w * x[(o * 4 + i) * inner + r]).sum();
            }
        }
    }
    let y = dev.download(&y).unwrap();
    assert_close(&y, &want, "resample");
    // <R x, g> = <x, Rᵀ g>.
    let g = values(outer * 5 * inner, 42);
    let back = dev.resample_table(5, &transpose_taps(4, &rows)).unwrap();
    let mut dx = dev.zeros(x.len()).unwrap();
    dev.axis_resample(&back, outer, inner, &dev.upload(&g).unwrap(), &mut dx).unwrap();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| f64::from(*p) * f64::from(*q)).sum::<f64>();
    let (lhs, rhs) = (dot(&y, &g), dot(&x, &dev.download(&dx).unwrap()));
    assert!((lhs - rhs).abs() < 1e-5 * (1.0 + lhs.abs()), "adjoint: {lhs} vs {rhs}");
    // Out-of-range taps are refused on the host, before anything reaches the device.
    assert!(dev.resample_table(4, &[vec![(4, 1.0)]]).is_err());
    assert!(dev
        .axis_resample(&table, outer + 1, inner, &dev.upload(&x).unwrap(), &mut dev.zeros(40).unwrap())
        .is_err());
}

#[test]
fn local_response_normalization_and_its_gradient() {
    use super::LrnParameters;
    let Some(dev) = device() else { return };
    let (batch, channels, inner) = (2, 7, 3);
    let x: Vec<f32> = values(batch * channels * inner, 51).iter().map(|v| 2.0 * v).collect();
    let xb = dev.upload(&x).unwrap();
    for size in [1, 2, 3, 5] {
        let p = LrnParameters { channels, inner, size, alpha: 0.3, beta: 0.75, bias: 1.5 };
        let run = |x: &[f32]| {
            let mut y = dev.zeros(x.len()).unwrap();
            dev.lrn(&p, &dev.upload(x).unwrap(), &mut y).unwrap();
            dev.download(&y).unwrap()
        };
        // The definition, in f64.
        let (before, after) = ((size - 1) / 2, size - 1 - (size - 1) / 2);
        let want: Vec<f32> = (0..x.len())
            .map(|k| {
                let (r, c, b) = (k % inner, (k / inner) % channels, k / (inner * channels));
                let lo = c.saturating_sub(before);
                let hi = (c + after + 1).min(channels);
                let sq: f64 = (lo..hi).map(|q| f64::from(x[(b * channels + q) * inner + r]).powi(2)).sum();
                let d = 1.5 + 0.3 / size as f64 * sq;
                (f64::from(x[k]) * d.powf(-0.75)) as f32
            })
            .collect();
        assert_close(&run(&x), &want, &format!("LRN size {size}"));
        // The gradient against central differences of the forward, through a random projection.
        let g = values(x.len(), 52 + size as u64);
        let mut dx = dev.zeros(x.len()).unwrap();
        dev.lrn_backward(&p, &xb, &dev.upload(&g).unwrap(), &mut dx).unwrap();
        let dx = dev.download(&dx).unwrap();
        for k in [0, 5, 11, 20, 33, x.len() - 1] {
            let h = 1e-2f32;
            let (mut up, mut down) = (x.clone(), x.clone());
            up[k] += h;
            down[k] -= h;
            let proj = |y: Vec<f32>| y.iter().zip(&g).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>();
            let fd = (proj(run(&up)) - proj(run(&down))) / (2.0 * f64::from(h));
            assert!(
                (f64::from(dx[k]) - fd).abs() < 2e-3 * (1.0 + fd.abs()),
                "LRN size {size} dx[{k}]: {} vs {fd}",
                dx[k]
            );
        }
    }
    let bad = LrnParameters { channels: 4, inner: 3, size: 3, alpha: 1.0, beta: 1.0, bias: 1.0 };
    assert!(dev.lrn(&bad, &xb, &mut dev.zeros(x.len()).unwrap()).is_err());
}
