//! Mul: element-wise product with numpy broadcasting.

use super::{binary, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;

/// element-wise product with numpy broadcasting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mul;

impl<T: Element> Op<T> for Mul {
    fn op_type(&self) -> &'static str {
        "Mul"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        Ok(vec![binary::output_shape(inputs)?])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        Ok(Outputs::one(binary::map(inputs[0], inputs[1], |a, b| a * b)?))
    }

    /// Each operand's gradient reads the other operand.
    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![wanted[1], wanted[0]], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        // Only the operand the other's gradient reads was kept (see `saves`).
        let g = cx.grad()?;
        let da = if cx.wants(0) {
            Some(binary::grad_from_other(g, cx.input(1)?, cx.input_shapes[0], |g, y| g * y)?)
        } else {
            None
        };
        let db = if cx.wants(1) {
            Some(binary::grad_from_other(g, cx.input(0)?, cx.input_shapes[1], |g, x| g * x)?)
        } else {
            None
        };
        Ok(vec![da, db])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::check_broadcasting_binary;

    #[test]
    fn vjp_and_shape_errors() {
        check_broadcasting_binary(&Mul, -1.0, 1.0, 5);
    }
}
