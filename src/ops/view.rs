//! Shared machinery for ops that only change the shape, not the data (Flatten, Reshape, Squeeze, Unsqueeze): each
//! states its shape rule; forward and backward are the same row-major reshape in both directions.

use crate::error::OpError;

/// A shape rule for a data-preserving view.
pub trait View: std::fmt::Debug + Send + Sync + 'static {
    /// Operator name.
    const OP: &'static str;
    /// The output shape for input shape `x`.
    fn view_shape(&self, x: &[usize]) -> Result<Vec<usize>, OpError>;
}

/// Implements [`Op`](super::Op) for a [`View`] type.
macro_rules! view_op {
    ($ty:ty) => {
        impl<T: $crate::Element> $crate::ops::Op<T> for $ty {
            fn op_type(&self) -> &'static str {
                <$ty as $crate::ops::view::View>::OP
            }

            fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, $crate::OpError> {
                $crate::ops::arity(inputs, 1, 1)?;
                Ok(vec![$crate::ops::view::View::view_shape(self, inputs[0])?])
            }

            fn forward(&self, inputs: &[&$crate::Tensor<T>]) -> Result<$crate::ops::Outputs<T>, $crate::OpError> {
                let shape = $crate::ops::view::View::view_shape(self, inputs[0].shape())?;
                Ok($crate::ops::Outputs::one($crate::tensor::reshaped(inputs[0], &shape)?))
            }

            fn saves(&self, wanted: &[bool]) -> $crate::ops::Saves {
                $crate::ops::Saves { inputs: vec![false; wanted.len()], outputs: false }
            }

            fn backward(
                &self,
                cx: &$crate::ops::Vjp<'_, T>,
            ) -> Result<Vec<Option<$crate::Tensor<T>>>, $crate::OpError> {
                Ok(vec![Some($crate::tensor::reshaped(cx.grad()?, cx.input_shapes[0])?)])
            }
        }
    };
}
pub(crate) use view_op;
