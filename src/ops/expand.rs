//! Expand: broadcast to a shape (numpy rules, both ways, as ONNX's Expand); the gradient sums back.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{broadcast_shapes, sum_to_shape, Tensor};
use crate::Element;
use ndarray::IxDyn;

/// Broadcast to `shape`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expand {
    pub shape: Vec<usize>,
}

impl<T: Element> Op<T> for Expand {
    fn op_type(&self) -> &'static str {
        "Expand"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        let s = broadcast_shapes(inputs[0], &self.shape)
            .ok_or_else(|| OpError::shape(format!("cannot expand to {:?}", self.shape), inputs))?;
        Ok(vec![s])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let s = Op::<T>::output_shapes(self, &[inputs[0].shape()])?.remove(0);
        let b = inputs[0].broadcast(IxDyn(&s)).ok_or_else(|| OpError::Invalid("broadcast".into()))?;
        Ok(Outputs::one(b.to_owned()))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        Ok(vec![Some(sum_to_shape(cx.grad()?.clone(), cx.input_shapes[0]))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(45);
        check_vjp(&Expand { shape: vec![2, 3, 4] }, &[rng.tensor(&[3, 1], -1.0, 1.0)], &[true], 1);
        check_vjp(&Expand { shape: vec![1, 1] }, &[rng.tensor(&[2, 3], -1.0, 1.0)], &[true], 2);
    }
}
