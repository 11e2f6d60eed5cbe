//! AveragePool: 2-D average pooling; `count_include_pad` chooses whether padded taps count in the divisor.

use super::{Op, Outputs, PoolAttrs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{contiguous, Tensor};
use crate::Element;
use gradcam_kernels::{avg_pool2d_backward, avg_pool2d_forward};
use ndarray::IxDyn;

/// Average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AveragePool {
    pub attrs: PoolAttrs,
    pub count_include_pad: bool,
}

impl<T: Element> Op<T> for AveragePool {
    fn op_type(&self) -> &'static str {
        "AveragePool"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        Ok(vec![self.attrs.output_shape(inputs)?])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let geo = self.attrs.geometry(&[inputs[0].shape()])?;
        let mut y = Tensor::zeros(IxDyn(&self.attrs.output_shape(&[inputs[0].shape()])?));
        avg_pool2d_forward(&geo, self.count_include_pad, &contiguous(inputs[0]), y.as_slice_mut().expect("contiguous"));
        Ok(Outputs::one(y))
    }

    /// Linear: only shapes are needed.
    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let geo = self.attrs.geometry(&cx.input_shapes)?;
        let mut dx = Tensor::zeros(IxDyn(cx.input_shapes[0]));
        avg_pool2d_backward(
            &geo,
            self.count_include_pad,
            &contiguous(cx.grad()?),
            dx.as_slice_mut().expect("contiguous"),
        );
        Ok(vec![Some(dx)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences_with_and_without_pad_counting() {
        let mut rng = Rng::new(19);
        for case in 0..8 {
            let attrs = PoolAttrs {
                kernel: [rng.int(2, 3), rng.int(2, 3)],
                strides: [rng.int(1, 3), rng.int(1, 2)],
                pads: [rng.int(0, 1), rng.int(0, 1), rng.int(0, 1), rng.int(0, 1)],
                dilations: [1, 1],
                ceil_mode: case % 2 == 0,
            };
            let (h, w) = (rng.int(4, 8), rng.int(4, 8));
            let x = rng.tensor(&[1, 2, h, w], -1.0, 1.0);
            check_vjp(&AveragePool { attrs, count_include_pad: case % 4 < 2 }, &[x], &[true], case);
        }
    }
}
