//! GlobalMaxPool: max over all spatial axes, `[N, C, …] → [N, C, 1, …]`; the gradient goes to the (first) maximum.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;
use ndarray::{Axis, IxDyn};

/// Spatial maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalMaxPool;

impl<T: Element> Op<T> for GlobalMaxPool {
    fn op_type(&self) -> &'static str {
        "GlobalMaxPool"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        if inputs[0].len() < 3 || inputs[0][2..].iter().product::<usize>() == 0 {
            return Err(OpError::shape("input must be [N, C, spatial…] with a non-empty spatial extent", inputs));
        }
        let mut s = inputs[0][..2].to_vec();
        s.resize(inputs[0].len(), 1);
        Ok(vec![s])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let x = inputs[0];
        let p: usize = x.shape()[..2].iter().product();
        let flat =
            x.view().into_shape_with_order((p, x.len() / p.max(1))).map_err(|e| OpError::Invalid(e.to_string()))?;
        let mut argmax = Vec::with_capacity(p);
        let mut maxima = Vec::with_capacity(p);
        for row in flat.axis_iter(Axis(0)) {
            let (mut best, mut at) = (row[0], 0);
            for (i, &v) in row.iter().enumerate().skip(1) {
                if v > best || (v.is_nan() && !best.is_nan()) {
                    best = v;
                    at = i;
                }
            }
            maxima.push(best);
            argmax.push(at);
        }
        let shape = Op::<T>::output_shapes(self, &[x.shape()])?.remove(0);
        let y = Tensor::from_shape_vec(IxDyn(&shape), maxima).map_err(|e| OpError::Invalid(e.to_string()))?;
        Ok(Outputs { values: vec![y], saved: Some(Box::new(argmax)) })
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let argmax: &Vec<usize> = cx.saved()?;
        let shape = cx.input_shapes[0];
        let size: usize = shape[2..].iter().product();
        let mut dx = vec![T::zero(); shape.iter().product()];
        for ((p, &at), &g) in argmax.iter().enumerate().zip(cx.grad()?.iter()) {
            dx[p * size + at] = g;
        }
        Ok(vec![Some(Tensor::from_shape_vec(IxDyn(shape), dx).map_err(|e| OpError::Invalid(e.to_string()))?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(4);
        check_vjp(&GlobalMaxPool, &[rng.tensor(&[2, 3, 4, 5], -1.0, 1.0)], &[true], 1);
    }
}
