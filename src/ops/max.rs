//! Max: element-wise maximum (the gradient goes to the larger operand; to the first on ties) with numpy broadcasting.

use super::{binary, Op, Outputs, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;

/// element-wise maximum (the gradient goes to the larger operand; to the first on ties) with numpy broadcasting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Max;

impl<T: Element> Op<T> for Max {
    fn op_type(&self) -> &'static str {
        "Max"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        Ok(vec![binary::output_shape(inputs)?])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        Ok(Outputs::one(binary::map(inputs[0], inputs[1], |a, b| if b > a { b } else { a })?))
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let (a, b, g) = (cx.input(0)?, cx.input(1)?, cx.grad()?);
        let zero = T::zero();
        let da = cx.wants(0).then(|| binary::operand_grad(g, a, b, a.shape(), |g, x, y| if y > x { zero } else { g }));
        let db = cx.wants(1).then(|| binary::operand_grad(g, a, b, b.shape(), |g, x, y| if y > x { g } else { zero }));
        Ok(vec![da, db])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::check_broadcasting_binary;

    #[test]
    fn vjp_and_shape_errors() {
        check_broadcasting_binary(&Max, -1.0, 1.0, 5);
    }
}
