//! Shared machinery for element-wise activations: each one states `f(x)` and `f'(x)`; this file turns that into an
//! [`Op`](super::Op) whose forward and backward run in parallel over the elements.

use super::ReluRule;
use crate::tensor::Tensor;
use crate::Element;
use ndarray::Zip;

/// An element-wise function with its derivative.
pub trait Pointwise: std::fmt::Debug + Send + Sync + 'static {
    /// Operator name.
    const OP: &'static str;
    /// `f(x)`.
    fn f<T: Element>(&self, x: T) -> T;
    /// `f'(x)`, given `x`.
    fn df<T: Element>(&self, x: T) -> T;

    /// Whether this is a rectifier (zero for negative inputs), to which guided backpropagation applies.
    fn rectifies(&self) -> bool {
        false
    }
}

pub(crate) fn forward<T: Element, P: Pointwise>(p: &P, x: &Tensor<T>) -> Tensor<T> {
    Zip::from(x).par_map_collect(|&v| p.f(v))
}

pub(crate) fn backward<T: Element, P: Pointwise>(p: &P, x: &Tensor<T>, g: &Tensor<T>, rule: ReluRule) -> Tensor<T> {
    if rule == ReluRule::Guided && p.rectifies() {
        // Guided backpropagation: also drop negative incoming gradients.
        let zero = T::zero();
        return Zip::from(x).and(g).par_map_collect(|&v, &gv| if gv > zero { gv * p.df(v) } else { zero });
    }
    Zip::from(x).and(g).par_map_collect(|&v, &gv| gv * p.df(v))
}

/// Implements [`Op`](super::Op) for a [`Pointwise`] type.
macro_rules! pointwise_op {
    ($ty:ty) => {
        impl<T: $crate::Element> $crate::ops::Op<T> for $ty {
            fn op_type(&self) -> &'static str {
                <$ty as $crate::ops::Pointwise>::OP
            }

            fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, $crate::OpError> {
                $crate::ops::arity(inputs, 1, 1)?;
                Ok(vec![inputs[0].to_vec()])
            }

            fn forward(&self, inputs: &[&$crate::Tensor<T>]) -> Result<$crate::ops::Outputs<T>, $crate::OpError> {
                Ok($crate::ops::Outputs::one($crate::ops::pointwise::forward(self, inputs[0])))
            }

            fn backward(
                &self,
                cx: &$crate::ops::Vjp<'_, T>,
            ) -> Result<Vec<Option<$crate::Tensor<T>>>, $crate::OpError> {
                Ok(vec![Some($crate::ops::pointwise::backward(self, cx.input(0)?, cx.grad()?, cx.relu_rule))])
            }
        }
    };
}
pub(crate) use pointwise_op;
