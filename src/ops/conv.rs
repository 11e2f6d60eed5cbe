//! Conv: 2-D convolution (NCHW input `[N, C, H, W]`, OIHW weight `[M, C/groups, KH, KW]`, optional bias `[M]`).
//!
//! Strides, dilations, asymmetric pads and groups (including depthwise with a channel multiplier) are supported.
//! The compute lives in `gradcam_kernels::conv`: im2col + GEMM, or a direct kernel for depthwise.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{contiguous, expect_rank, Tensor};
use crate::Element;
use gradcam_kernels::{conv2d_backward_data, conv2d_backward_weight, conv2d_forward, ConvGeometry};
use ndarray::{Axis, IxDyn};

/// 2-D convolution attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conv {
    /// `[stride_h, stride_w]`.
    pub strides: [usize; 2],
    /// `[dilation_h, dilation_w]`.
    pub dilations: [usize; 2],
    /// `[top, left, bottom, right]` (ONNX order: all begins, then all ends).
    pub pads: [usize; 4],
    pub groups: usize,
}

impl Default for Conv {
    fn default() -> Self {
        Conv { strides: [1, 1], dilations: [1, 1], pads: [0; 4], groups: 1 }
    }
}

impl Conv {
    /// Symmetric padding `pad` on all sides with stride `stride`.
    pub fn new(stride: usize, pad: usize) -> Self {
        Conv { strides: [stride; 2], pads: [pad; 4], ..Conv::default() }
    }

    /// Sets the number of groups.
    pub fn groups(self, groups: usize) -> Self {
        Conv { groups, ..self }
    }

    /// Validates shapes and attributes and returns the kernel geometry.
    pub fn geometry(&self, shapes: &[&[usize]]) -> Result<ConvGeometry, OpError> {
        arity(shapes, 2, 3)?;
        let (x, w) = (shapes[0], shapes[1]);
        expect_rank(x, 4, "input", shapes)?;
        expect_rank(w, 4, "weight", shapes)?;
        if self.strides.contains(&0) || self.dilations.contains(&0) {
            return Err(OpError::attribute("strides/dilations", "must be positive"));
        }
        let g = self.groups;
        if g == 0 || x[1] % g != 0 || w[0] % g != 0 {
            return Err(OpError::shape(
                format!("groups = {g} must divide input channels {} and output channels {}", x[1], w[0]),
                shapes,
            ));
        }
        if w[1] * g != x[1] {
            return Err(OpError::shape(
                format!("weight expects {} input channels per group ({} in all), input has {}", w[1], w[1] * g, x[1]),
                shapes,
            ));
        }
        if let Some(b) = shapes.get(2) {
            if *b != [w[0]] {
                return Err(OpError::shape(format!("bias must have shape [{}]", w[0]), shapes));
            }
        }
        let geo = ConvGeometry {
            batch: x[0],
            in_channels: x[1],
            in_h: x[2],
            in_w: x[3],
            out_channels: w[0],
            kernel_h: w[2],
            kernel_w: w[3],
            stride_h: self.strides[0],
            stride_w: self.strides[1],
            dilation_h: self.dilations[0],
            dilation_w: self.dilations[1],
            pad_top: self.pads[0],
            pad_left: self.pads[1],
            pad_bottom: self.pads[2],
            pad_right: self.pads[3],
            groups: g,
        };
        if geo.out_h().is_none() || geo.out_w().is_none() || w[2] == 0 || w[3] == 0 {
            return Err(OpError::shape("kernel (with dilation) is larger than the padded input", shapes));
        }
        Ok(geo)
    }
}

/// What a convolution-like op's backward reads: the data gradient reads the weight, the weight gradient reads the
/// input, the bias gradient neither.
pub(crate) fn conv_saves(wanted: &[bool]) -> Saves {
    let mut inputs = vec![wanted.get(1).copied().unwrap_or(false), wanted.first().copied().unwrap_or(false)];
    inputs.resize(wanted.len(), false);
    Saves { inputs, outputs: false }
}

/// The gradient of a per-channel bias of an NCHW output.
pub(crate) fn bias_gradient<T: Element>(grad: &Tensor<T>) -> Tensor<T> {
    grad.sum_axis(Axis(3)).sum_axis(Axis(2)).sum_axis(Axis(0))
}

impl<T: Element> Op<T> for Conv {
    fn op_type(&self) -> &'static str {
        "Conv"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        let g = self.geometry(inputs)?;
        Ok(vec![vec![g.batch, g.out_channels, g.out_h().unwrap_or(0), g.out_w().unwrap_or(0)]])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let geo = self.geometry(&shapes)?;
        let out_shape = [geo.batch, geo.out_channels, geo.out_h().unwrap_or(0), geo.out_w().unwrap_or(0)];
        let mut y = Tensor::zeros(IxDyn(&out_shape));
        let bias = inputs.get(2).map(|b| contiguous(b));
        conv2d_forward(
            &geo,
            &contiguous(inputs[0]),
            &contiguous(inputs[1]),
            bias.as_deref(),
            y.as_slice_mut().expect("fresh array is contiguous"),
        );
        Ok(Outputs::one(y))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        conv_saves(wanted)
    }

    fn fusion(&self) -> Option<super::Fusable> {
        Some(super::Fusable::Conv(self.clone()))
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let geo = self.geometry(&cx.input_shapes)?;
        let g = contiguous(cx.grad()?);
        let mut grads = vec![None; cx.input_shapes.len()];
        if cx.wants(0) {
            let mut dx = Tensor::zeros(IxDyn(cx.input_shapes[0]));
            conv2d_backward_data(&geo, &contiguous(cx.input(1)?), &g, dx.as_slice_mut().expect("contiguous"));
            grads[0] = Some(dx);
        }
        if cx.wants(1) {
            let mut dw = Tensor::zeros(IxDyn(cx.input_shapes[1]));
            conv2d_backward_weight(&geo, &contiguous(cx.input(0)?), &g, dw.as_slice_mut().expect("contiguous"));
            grads[1] = Some(dw);
        }
        if cx.wants(2) {
            grads[2] = Some(bias_gradient(cx.grad()?));
        }
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    /// Random geometries: odd sizes, strides up to 3, dilations up to 2, asymmetric pads, groups, depthwise with and
    /// without a channel multiplier, 1×1 pointwise.
    #[test]
    fn vjp_matches_finite_differences_on_random_geometries() {
        let mut rng = Rng::new(7);
        for case in 0..24 {
            let groups = [1, 1, 2, 3][case % 4];
            let depthwise = case % 6 == 5;
            let cin = if depthwise { rng.int(2, 4) } else { groups * rng.int(1, 3) };
            let groups = if depthwise { cin } else { groups };
            let cout = groups * rng.int(1, 3);
            let (kh, kw) = if case % 5 == 4 { (1, 1) } else { (rng.int(1, 3), rng.int(1, 3)) };
            let conv = Conv {
                strides: [rng.int(1, 3), rng.int(1, 2)],
                dilations: [rng.int(1, 2), rng.int(1, 2)],
                pads: [rng.int(0, 2), rng.int(0, 1), rng.int(0, 1), rng.int(0, 2)],
                groups,
            };
            let (h, w) = (rng.int(6, 9), rng.int(6, 8));
            let n = rng.int(1, 2);
            let x = rng.tensor(&[n, cin, h, w], -1.0, 1.0);
            let wt = rng.tensor(&[cout, cin / groups, kh, kw], -1.0, 1.0);
            let b = rng.tensor(&[cout], -1.0, 1.0);
            check_vjp(&conv, &[x, wt, b], &[true, true, true], case as u64);
        }
    }

    #[test]
    fn rejects_channel_mismatch_naming_both_shapes() {
        let err = <Conv as Op<f32>>::output_shapes(&Conv::default(), &[&[1, 3, 8, 8], &[4, 2, 3, 3]]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("[1, 3, 8, 8]") && msg.contains("[4, 2, 3, 3]"), "{msg}");
    }

    #[test]
    fn rejects_kernel_larger_than_input_and_zero_groups() {
        assert!(<Conv as Op<f32>>::output_shapes(&Conv::default(), &[&[1, 1, 2, 2], &[1, 1, 3, 3]]).is_err());
        assert!(<Conv as Op<f32>>::output_shapes(&Conv::default().groups(0), &[&[1, 1, 4, 4], &[1, 1, 3, 3]]).is_err());
        assert!(<Conv as Op<f32>>::output_shapes(&Conv::default(), &[&[1, 1, 4], &[1, 1, 3, 3]]).is_err());
    }
}
