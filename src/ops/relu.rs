//! Relu: `max(x, 0)`, with NaN propagated.

use super::pointwise::map1;
use super::Mask;
use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;

/// Rectified linear unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relu;

impl<T: Element> Op<T> for Relu {
    fn op_type(&self) -> &'static str {
        "Relu"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        Ok(vec![inputs[0].to_vec()])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        // `x < 0` is false for NaN, so NaN passes through.
        Ok(Outputs::one(map1(inputs[0], move |x| if x < T::zero() { T::zero() } else { x })))
    }

    /// Nothing: the executor keeps a one-bit mask of `y > 0` (⇔ `x > 0`).
    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn mask_interval(&self) -> Option<(f64, f64)> {
        Some((0.0, f64::INFINITY))
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let mask = cx.saved::<Mask>()?;
        Ok(vec![Some(mask.apply(cx.grad()?))])
    }

    fn fusion(&self) -> Option<super::Fusable> {
        Some(super::Fusable::Clamp { lo: 0.0, hi: f64::INFINITY })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};
    use ndarray::arr1;

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(1);
        check_vjp(&Relu, &[rng.tensor(&[2, 3, 5, 7], -1.0, 1.0)], &[true], 1);
    }

    #[test]
    fn nan_propagates() {
        let x = arr1(&[f32::NAN, -1.0]).into_dyn();
        let y = Op::<f32>::forward(&Relu, &[&x]).unwrap().values.remove(0);
        assert!(y[0].is_nan() && y[1] == 0.0);
    }
}
