//! Div: element-wise quotient with numpy broadcasting.

use super::{binary, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;

/// element-wise quotient with numpy broadcasting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Div;

impl<T: Element> Op<T> for Div {
    fn op_type(&self) -> &'static str {
        "Div"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        Ok(vec![binary::output_shape(inputs)?])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        Ok(Outputs::one(binary::map(inputs[0], inputs[1], |a, b| a / b)?))
    }

    /// The numerator's gradient reads the denominator; the denominator's reads both.
    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![wanted[1], wanted[0] || wanted[1]], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        // The numerator is kept only when the denominator's gradient is wanted (see `saves`).
        let g = cx.grad()?;
        let b = cx.input(1)?;
        let da =
            if cx.wants(0) { Some(binary::grad_from_other(g, b, cx.input_shapes[0], |g, y| g / y)?) } else { None };
        let db = if cx.wants(1) {
            let a = cx.input(0)?;
            Some(binary::operand_grad(g, a, b, b.shape(), |g, x, y| -g * x / (y * y)))
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
        check_broadcasting_binary(&Div, 0.5, 2.0, 5);
    }
}
