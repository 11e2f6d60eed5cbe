//! ConvTranspose: the transposed (fractionally strided) 2-D convolution — the data-gradient of a convolution, run
//! forward. Input `[N, C_in, H, W]`, weight `[C_in, C_out/groups, KH, KW]`, optional bias `[C_out]`.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{contiguous, expect_rank, Tensor};
use crate::Element;
use gradcam_kernels::{conv2d_backward_data, conv2d_backward_weight, conv2d_forward, ConvGeometry};
use ndarray::{Axis, IxDyn};

/// Transposed convolution attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvTranspose {
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// `[top, left, bottom, right]`, removed from the full output.
    pub pads: [usize; 4],
    pub output_padding: [usize; 2],
    pub groups: usize,
}

impl Default for ConvTranspose {
    fn default() -> Self {
        ConvTranspose { strides: [1, 1], dilations: [1, 1], pads: [0; 4], output_padding: [0, 0], groups: 1 }
    }
}

impl ConvTranspose {
    /// The convolution whose data-gradient this is: it maps the output `[N, C_out, OH, OW]` to the input.
    fn geometry(&self, shapes: &[&[usize]]) -> Result<ConvGeometry, OpError> {
        arity(shapes, 2, 3)?;
        let (x, w) = (shapes[0], shapes[1]);
        expect_rank(x, 4, "input", shapes)?;
        expect_rank(w, 4, "weight", shapes)?;
        let g = self.groups;
        if g == 0 || w[0] != x[1] || x[1] % g != 0 || self.strides.contains(&0) || self.dilations.contains(&0) {
            return Err(OpError::shape(
                format!("weight must be [C_in = {}, C_out/groups, KH, KW] with groups = {g} dividing C_in", x[1]),
                shapes,
            ));
        }
        if x[2] == 0 || x[3] == 0 || w[2] == 0 || w[3] == 0 {
            return Err(OpError::shape("empty input or kernel", shapes));
        }
        let out = |len: usize, axis: usize| -> Option<usize> {
            let full = (len - 1) * self.strides[axis]
                + self.dilations[axis] * (w[2 + axis] - 1)
                + 1
                + self.output_padding[axis];
            full.checked_sub(self.pads[axis] + self.pads[axis + 2]).filter(|&v| v > 0)
        };
        let (Some(oh), Some(ow)) = (out(x[2], 0), out(x[3], 1)) else {
            return Err(OpError::shape("pads remove the whole output", shapes));
        };
        if let Some(b) = shapes.get(2) {
            if *b != [w[1] * g] {
                return Err(OpError::shape(format!("bias must have shape [{}]", w[1] * g), shapes));
            }
        }
        let geo = ConvGeometry {
            batch: x[0],
            in_channels: w[1] * g,
            in_h: oh,
            in_w: ow,
            out_channels: x[1],
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
        if geo.out_h() != Some(x[2]) || geo.out_w() != Some(x[3]) {
            return Err(OpError::shape("output_padding must be smaller than the stride", shapes));
        }
        Ok(geo)
    }
}

impl<T: Element> Op<T> for ConvTranspose {
    fn op_type(&self) -> &'static str {
        "ConvTranspose"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        let g = self.geometry(inputs)?;
        Ok(vec![vec![g.batch, g.in_channels, g.in_h, g.in_w]])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let geo = self.geometry(&shapes)?;
        let mut y = Tensor::zeros(IxDyn(&[geo.batch, geo.in_channels, geo.in_h, geo.in_w]));
        conv2d_backward_data(
            &geo,
            &contiguous(inputs[1]),
            &contiguous(inputs[0]),
            y.as_slice_mut().expect("contiguous"),
        );
        if let Some(b) = inputs.get(2) {
            for (c, mut plane) in y.axis_iter_mut(Axis(1)).enumerate() {
                let bv = b[c];
                plane.mapv_inplace(|v| v + bv);
            }
        }
        Ok(Outputs::one(y))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        super::conv::conv_saves(wanted)
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let geo = self.geometry(&cx.input_shapes)?;
        let g = contiguous(cx.grad()?);
        let mut grads = vec![None; cx.input_shapes.len()];
        if cx.wants(0) {
            // The adjoint of the data-gradient is the convolution itself.
            let mut dx = Tensor::zeros(IxDyn(cx.input_shapes[0]));
            conv2d_forward(&geo, &g, &contiguous(cx.input(1)?), None, dx.as_slice_mut().expect("contiguous"));
            grads[0] = Some(dx);
        }
        if cx.wants(1) {
            let mut dw = Tensor::zeros(IxDyn(cx.input_shapes[1]));
            conv2d_backward_weight(&geo, &g, &contiguous(cx.input(0)?), dw.as_slice_mut().expect("contiguous"));
            grads[1] = Some(dw);
        }
        if cx.wants(2) {
            grads[2] = Some(super::conv::bias_gradient(cx.grad()?));
        }
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(48);
        for (stride, pads, out_pad, groups, dil) in
            [(2, [1, 1, 1, 1], [1, 1], 1, 1), (1, [0; 4], [0, 0], 2, 1), (3, [0, 1, 2, 0], [2, 0], 1, 2)]
        {
            let op = ConvTranspose { strides: [stride; 2], dilations: [dil; 2], pads, output_padding: out_pad, groups };
            let x = rng.tensor(&[2, 4, 3, 4], -1.0, 1.0);
            let w = rng.tensor(&[4, 3, 3, 2], -1.0, 1.0);
            let b = rng.tensor(&[3 * groups], -1.0, 1.0);
            check_vjp(&op, &[x, w, b], &[true, true, true], 1);
        }
    }
}
