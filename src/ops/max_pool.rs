//! MaxPool: 2-D max pooling with any kernel, stride, padding, dilation and `ceil_mode`. Backward finds each
//! window's argmax again from the saved input and routes the gradient there — correct for overlapping windows
//! (ResNet's 3×3/2). Finding it costs more than the maximum itself, so forward-only runs (and Grad-CAM, whose
//! backward stops at a later layer) never pay for it.

use super::{Op, Outputs, PoolAttrs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{contiguous, Tensor};
use crate::Element;
use gradcam_kernels::{max_pool2d_argmax, max_pool2d_backward, max_pool2d_forward};
use ndarray::IxDyn;

/// Max pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool(pub PoolAttrs);

impl<T: Element> Op<T> for MaxPool {
    fn op_type(&self) -> &'static str {
        "MaxPool"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        Ok(vec![self.0.output_shape(inputs)?])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let geo = self.0.geometry(&[inputs[0].shape()])?;
        // The backward pass records positions within a plane as u32.
        if geo.in_h.checked_mul(geo.in_w).is_none_or(|p| p > u32::MAX as usize) {
            return Err(OpError::shape("planes over 2^32 elements", &[inputs[0].shape()]));
        }
        let shape = self.0.output_shape(&[inputs[0].shape()])?;
        let mut y = Tensor::zeros(IxDyn(&shape));
        max_pool2d_forward(&geo, &contiguous(inputs[0]), y.as_slice_mut().expect("contiguous"));
        Ok(Outputs { values: vec![y], saved: None })
    }

    /// The input, to find the argmax again.
    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: wanted.to_vec(), outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let geo = self.0.geometry(&cx.input_shapes)?;
        let mut argmax = vec![0u32; geo.planes * geo.out_h * geo.out_w];
        max_pool2d_argmax(&geo, &contiguous(cx.input(0)?), &mut argmax);
        let mut dx = Tensor::zeros(IxDyn(cx.input_shapes[0]));
        max_pool2d_backward(&geo, &argmax, &contiguous(cx.grad()?), dx.as_slice_mut().expect("contiguous"));
        Ok(vec![Some(dx)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences_on_overlapping_and_dilated_windows() {
        let mut rng = Rng::new(17);
        for case in 0..12 {
            let attrs = PoolAttrs {
                kernel: [rng.int(2, 3), rng.int(2, 3)],
                strides: [rng.int(1, 3), rng.int(1, 2)],
                pads: [rng.int(0, 1), rng.int(0, 1), rng.int(0, 1), rng.int(0, 1)],
                dilations: [rng.int(1, 2), 1],
                ceil_mode: case % 3 == 0,
            };
            // Distinct values so that no window has a tie (the max is not differentiable there).
            let (h, w) = (rng.int(5, 9), rng.int(5, 8));
            let n = 2 * 3 * h * w;
            let mut perm: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
            for i in (1..n).rev() {
                perm.swap(i, rng.int(0, i));
            }
            let x = Tensor::from_shape_vec(IxDyn(&[2, 3, h, w]), perm).unwrap();
            check_vjp(&MaxPool(attrs), &[x], &[true], case);
        }
    }
}
