//! Dropout: the identity at inference, which is the only mode an explanation runs in.

use super::{Identity, Op, Outputs, Saves, Vjp};
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
        Op::<T>::output_shapes(&Identity, inputs)
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        Identity.forward(inputs)
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Op::<T>::saves(&Identity, wanted)
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        Identity.backward(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    /// Inference mode neither zeroes nor rescales (training-mode dropout would scale kept values by 1/(1 − ratio)).
    #[test]
    fn forward_returns_the_input_unchanged() {
        let x = Rng::new(1).tensor(&[3, 4], -1.0, 1.0);
        let y = Dropout { ratio: 0.5 }.forward(&[&x]).unwrap().values.remove(0);
        assert_eq!(y, x);
    }

    #[test]
    fn vjp_matches_finite_differences() {
        check_vjp(&Dropout { ratio: 0.5 }, &[Rng::new(1).tensor(&[3, 4], -1.0, 1.0)], &[true], 1);
    }
}
