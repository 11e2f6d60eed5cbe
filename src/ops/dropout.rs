//! Dropout: the identity at inference, which is the only mode an explanation runs in.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;

/// Inference-mode dropout (identity).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Dropout {
    /// Kept for reference; unused at inference.
    pub ratio: f64,
}

impl<T: Element> Op<T> for Dropout {
    fn op_type(&self) -> &'static str {
        "Dropout"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        Ok(vec![inputs[0].to_vec()])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        Ok(Outputs::one(inputs[0].clone()))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        Ok(vec![Some(cx.grad()?.clone())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn is_the_identity_with_identity_gradient() {
        check_vjp(&Dropout { ratio: 0.5 }, &[Rng::new(1).tensor(&[3, 4], -1.0, 1.0)], &[true], 1);
    }
}
