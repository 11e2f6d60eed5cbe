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
        let g = cx.grad()?;
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        let da = cx.wants(0).then(|| binary::operand_grad(g, a, b, a.shape(), |g, _, y| g / y));
        let db = cx.wants(1).then(|| binary::operand_grad(g, a, b, b.shape(), |g, x, y| -g * x / (y * y)));
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
