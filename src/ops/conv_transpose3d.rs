//! ConvTranspose3d: the transposed 3-D convolution (3-D U-Net decoders). Its forward is [`Conv3d`]'s input
//! gradient and its input gradient is `Conv3d`'s forward, with the same window on the output's geometry — so both
//! directions reuse the convolution's tested kernels.

use super::conv3d::Conv3d;
use super::window3d::Window3d;
use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{contiguous, from_vec, Tensor};
use crate::Element;

/// Transposed 3-D convolution; input `[N, C, D, H, W]`, weight `[C, M/groups, kd, kh, kw]`, optional bias `[M]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose3d {
    pub window: Window3d,
    /// Extra size at the end of each output axis (to reach an exact size after a strided convolution).
    pub output_padding: [usize; 3],
    pub groups: usize,
}

impl ConvTranspose3d {
    fn conv(&self) -> Conv3d {
        Conv3d { window: self.window, groups: self.groups }
    }

    /// The output shape, and the convolution geometry that maps it back to the input.
    fn shapes(&self, shapes: &[&[usize]]) -> Result<(Vec<usize>, super::conv3d::Geo), OpError> {
        arity(shapes, 2, 3)?;
        let (x, w) = (shapes[0], shapes[1]);
        if x.len() != 5 || w.len() != 5 || w[0] != x[1] || self.groups == 0 || x[1] % self.groups != 0 {
            return Err(OpError::shape("input [N, C, D, H, W] and weight [C, M/groups, kd, kh, kw] needed", shapes));
        }
        let win = &self.window;
        let mut out = vec![x[0], w[1] * self.groups];
        for axis in 0..3 {
            let (s, d, k) = (win.strides[axis], win.dilations[axis], w[2 + axis]);
            if self.output_padding[axis] >= s.max(d) {
                return Err(OpError::attribute("output_padding", "must be smaller than the stride or the dilation"));
            }
            let len = x[2 + axis]
                .checked_sub(1)
                .and_then(|v| v.checked_mul(s))
                .and_then(|v| v.checked_add(d.checked_mul(k.checked_sub(1)?)? + 1 + self.output_padding[axis]))
                .and_then(|v| v.checked_sub(win.pads[axis] + win.pads[axis + 3]))
                .filter(|&v| v > 0)
                .ok_or_else(|| OpError::shape("the padding leaves no output", shapes))?;
            out.push(len);
        }
        if shapes.get(2).is_some_and(|b| *b != [out[1]]) {
            return Err(OpError::shape(format!("bias must be [{}]", out[1]), shapes));
        }
        let geo = self.conv().geo(&[&out, w])?;
        if geo.out != [x[2], x[3], x[4]] {
            return Err(OpError::shape("the window does not map the output back onto the input", shapes));
        }
        Ok((out, geo))
    }
}

impl<T: Element> Op<T> for ConvTranspose3d {
    fn op_type(&self) -> &'static str {
        "ConvTranspose"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        Ok(vec![self.shapes(inputs)?.0])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let (out, geo) = self.shapes(&shapes)?;
        let (x, w) = (contiguous(inputs[0]), contiguous(inputs[1]));
        let mut y = self.conv().input_grad(&x, &w, &geo);
        if let Some(b) = inputs.get(2) {
            let per = out[2..].iter().product::<usize>();
            for (k, chunk) in y.chunks_mut(per.max(1)).enumerate() {
                let bias = b[k % out[1]];
                chunk.iter_mut().for_each(|v| *v += bias);
            }
        }
        Ok(Outputs::one(from_vec(&out, y)?))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        super::conv::conv_saves(wanted)
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let (out, geo) = self.shapes(&cx.input_shapes)?;
        let gy = contiguous(cx.grad()?);
        let dx = if cx.wants(0) {
            Some(from_vec(cx.input_shapes[0], self.conv().apply(&gy, &contiguous(cx.input(1)?), None, &geo))?)
        } else {
            None
        };
        let dw = if cx.wants(1) {
            Some(from_vec(cx.input_shapes[1], self.conv().weight_grad(&gy, &contiguous(cx.input(0)?), &geo))?)
        } else {
            None
        };
        let mut grads = vec![dx, dw];
        if cx.input_shapes.len() > 2 {
            grads.push(if cx.wants(2) {
                let per = out[2..].iter().product::<usize>();
                let mut db = vec![T::zero(); out[1]];
                for (k, chunk) in gy.chunks(per.max(1)).enumerate() {
                    db[k % out[1]] += chunk.iter().fold(T::zero(), |a, &v| a + v);
                }
                Some(from_vec(&[out[1]], db)?)
            } else {
                None
            });
        }
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};
    use ndarray::IxDyn;

    fn op(
        kernel: [usize; 3],
        strides: [usize; 3],
        pads: [usize; 6],
        output_padding: [usize; 3],
        groups: usize,
    ) -> ConvTranspose3d {
        ConvTranspose3d {
            window: Window3d { kernel, strides, dilations: [1; 3], pads, ceil_mode: false },
            output_padding,
            groups,
        }
    }

    #[test]
    fn a_stride_two_kernel_two_upsampling_places_each_input_block() {
        // One input voxel of value 1 at the origin, kernel 2³ of ones, stride 2: a 2³ block of ones, zeros elsewhere.
        let mut x = Tensor::<f64>::zeros(IxDyn(&[1, 1, 2, 2, 2]));
        x[[0, 0, 0, 0, 0]] = 1.0;
        let w = Tensor::<f64>::from_elem(IxDyn(&[1, 1, 2, 2, 2]), 1.0);
        let y = Op::<f64>::forward(&op([2; 3], [2; 3], [0; 6], [0; 3], 1), &[&x, &w]).unwrap().values.remove(0);
        assert_eq!(y.shape(), [1, 1, 4, 4, 4]);
        assert_eq!(y.sum(), 8.0);
        assert_eq!(y[[0, 0, 1, 1, 1]], 1.0);
        assert_eq!(y[[0, 0, 2, 0, 0]], 0.0);
    }

    #[test]
    fn vjp_matches_finite_differences_for_input_weight_and_bias() {
        let mut rng = Rng::new(74);
        for (t, xs, m) in [
            (op([2, 3, 2], [2, 1, 2], [0, 1, 0, 0, 1, 1], [1, 0, 0], 1), [1, 2, 2, 3, 3], 3),
            (op([3, 3, 3], [1, 1, 1], [1; 6], [0; 3], 2), [2, 4, 2, 3, 2], 4),
        ] {
            let inputs = [
                rng.tensor(&xs, -1.0, 1.0),
                rng.tensor(
                    &[xs[1], m / t.groups, t.window.kernel[0], t.window.kernel[1], t.window.kernel[2]],
                    -1.0,
                    1.0,
                ),
                rng.tensor(&[m], -1.0, 1.0),
            ];
            check_vjp(&t, &inputs, &[true, true, true], 3);
        }
    }
}
