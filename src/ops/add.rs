//! Add: element-wise sum with numpy broadcasting.

use super::{binary, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;

/// element-wise sum with numpy broadcasting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Add;

impl<T: Element> Op<T> for Add {
    fn op_type(&self) -> &'static str {
        "Add"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        Ok(vec![binary::output_shape(inputs)?])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        Ok(Outputs::one(binary::map(inputs[0], inputs[1], |a, b| a + b)?))
    }

    fn fusion(&self) -> Option<super::Fusable> {
        Some(super::Fusable::Add)
    }

    /// Gradients need only the shapes.
    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let g = cx.grad()?;
        let (sa, sb) = (cx.input_shapes[0], cx.input_shapes[1]);
        let da = cx.wants(0).then(|| crate::tensor::sum_to_shape(g.clone(), sa));
        let db = cx.wants(1).then(|| crate::tensor::sum_to_shape(g.clone(), sb));
        Ok(vec![da, db])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::check_broadcasting_binary;

    #[test]
    fn vjp_and_shape_errors() {
        check_broadcasting_binary(&Add, -1.0, 1.0, 5);
    }
}
