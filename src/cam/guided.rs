//! Guided backpropagation's rule (Springenberg et al.), installed into a backward sweep as an override: at every
//! rectifier the gradient passes only where the input was positive *and* the incoming gradient is positive.
//!
//! A rectifier's true backward is linear in the output gradient and zero wherever its input was not positive, so
//! the guided rule is that backward applied to `max(g, 0)`: the override clips the incoming gradient and then runs
//! the op's own rule — whether it reads a saved mask, the input or the output.

use crate::error::OpError;
use crate::graph::BackwardOverride;
use crate::ops::{Op, Vjp};
use crate::tensor::Tensor;
use crate::Element;

/// The guided rule at rectifiers: ReLU and clips from zero (ReLU6) — what pytorch-grad-cam replaces.
pub struct GuidedRectifiers;

/// Whether `op` is zero for every input at or below zero and passes its gradient above: a clamp whose open
/// gradient interval starts at 0.
fn is_rectifier<T: Element>(op: &dyn Op<T>) -> bool {
    matches!(op.mask_interval(), Some((lo, _)) if lo == 0.0)
}

impl<T: Element> BackwardOverride<T> for GuidedRectifiers {
    fn overrides(&self, op: &dyn Op<T>) -> bool {
        is_rectifier(op)
    }

    fn backward(&self, op: &dyn Op<T>, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let zero = T::zero();
        // `v > 0` is false for NaN: a NaN gradient is dropped, as the fused rule it replaces did.
        let positive: Vec<Option<Tensor<T>>> =
            cx.output_grads.iter().map(|g| g.map(|g| g.mapv(|v| if v > zero { v } else { zero }))).collect();
        let clipped = Vjp {
            inputs: cx.inputs.clone(),
            input_shapes: cx.input_shapes.clone(),
            outputs: cx.outputs.clone(),
            saved: cx.saved,
            output_grads: positive.iter().map(Option::as_ref).collect(),
            wanted: cx.wanted,
        };
        op.backward(&clipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Clip, LeakyRelu, Mask, Relu};
    use ndarray::{arr1, ArrayD};

    fn vjp_with_mask<'a>(mask: &'a Mask, g: &'a ArrayD<f64>, shape: &'a [usize]) -> Vjp<'a, f64> {
        Vjp {
            inputs: vec![None],
            input_shapes: vec![shape],
            outputs: vec![None],
            saved: Some(mask),
            output_grads: vec![Some(g)],
            wanted: &[true],
        }
    }

    #[test]
    fn relu_passes_positive_gradients_where_the_input_was_positive() {
        let y = arr1(&[0.0, 2.0, 3.0, 0.0]).into_dyn();
        let g = arr1(&[1.0, -1.0, 4.0, -2.0]).into_dyn();
        let (lo, hi) = Op::<f64>::mask_interval(&Relu).unwrap();
        let mask = Mask::open_interval(&y, lo, hi);
        let shape = [4usize];
        let cx = vjp_with_mask(&mask, &g, &shape);
        assert!(BackwardOverride::<f64>::overrides(&GuidedRectifiers, &Relu));
        let dx = GuidedRectifiers.backward(&Relu, &cx).unwrap().remove(0).unwrap();
        assert_eq!(dx, arr1(&[0.0, 0.0, 4.0, 0.0]).into_dyn());
        // The exact rule, for contrast, keeps the negative gradient where the input was positive.
        let exact = Op::<f64>::backward(&Relu, &cx).unwrap().remove(0).unwrap();
        assert_eq!(exact, arr1(&[0.0, -1.0, 4.0, 0.0]).into_dyn());
    }

    #[test]
    fn relu6_is_a_rectifier_and_other_activations_are_not() {
        let relu6 = Clip { min: 0.0, max: 6.0 };
        assert!(BackwardOverride::<f64>::overrides(&GuidedRectifiers, &relu6));
        let y = arr1(&[0.0, 2.0, 6.0, 5.0]).into_dyn();
        let g = arr1(&[1.0, 3.0, 4.0, -2.0]).into_dyn();
        let (lo, hi) = Op::<f64>::mask_interval(&relu6).unwrap();
        let mask = Mask::open_interval(&y, lo, hi);
        let shape = [4usize];
        let dx = GuidedRectifiers.backward(&relu6, &vjp_with_mask(&mask, &g, &shape)).unwrap().remove(0).unwrap();
        assert_eq!(dx, arr1(&[0.0, 3.0, 0.0, 0.0]).into_dyn());
        assert!(!BackwardOverride::<f64>::overrides(&GuidedRectifiers, &Clip { min: -1.0, max: 1.0 }));
        assert!(!BackwardOverride::<f64>::overrides(&GuidedRectifiers, &LeakyRelu { alpha: 0.01 }));
    }
}
