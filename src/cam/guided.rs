//! Guided backpropagation's rule (Springenberg et al.), installed into a backward sweep as a gradient filter: at
//! every rectifier the gradient passes only where the input was positive *and* the incoming gradient is positive.
//!
//! A rectifier's true backward is linear in the output gradient and zero wherever its input was not positive, so
//! the guided rule is that backward applied to `max(g, 0)`: the filter clips the incoming gradient and the op's own
//! rule does the rest — whether it reads a saved mask (in place, the sweep's shortcut), the input or the output.

use crate::graph::GradientFilter;
use crate::ops::Op;
use crate::tensor::Tensor;
use crate::Element;

/// The guided rule at rectifiers: ReLU and clips from zero (ReLU6) — what pytorch-grad-cam replaces.
pub struct GuidedRectifiers;

/// Whether `op` is zero for every input at or below zero and passes its gradient above: a clamp whose open
/// gradient interval starts at 0.
fn is_rectifier<T: Element>(op: &dyn Op<T>) -> bool {
    matches!(op.mask_interval(), Some((lo, _)) if lo == 0.0)
}

impl<T: Element> GradientFilter<T> for GuidedRectifiers {
    fn applies_to(&self, op: &dyn Op<T>) -> bool {
        is_rectifier(op)
    }

    fn filter(&self, gradient: &mut Tensor<T>) {
        let zero = T::zero();
        // `v > 0` is false for NaN: a NaN gradient is dropped, as the fused rule this replaced did.
        gradient.mapv_inplace(|v| if v > zero { v } else { zero });
    }

    fn keeps_positive_part(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Clip, LeakyRelu, Mask, Relu, Vjp};
    use ndarray::{arr1, ArrayD};

    /// The op's own backward on the filtered gradient, as the sweep runs it.
    fn guided_backward(op: &dyn Op<f64>, y: &ArrayD<f64>, g: &ArrayD<f64>) -> ArrayD<f64> {
        assert!(GuidedRectifiers.applies_to(op));
        let (lo, hi) = op.mask_interval().unwrap();
        let mask = Mask::open_interval(y, lo, hi);
        let mut filtered = g.clone();
        GuidedRectifiers.filter(&mut filtered);
        let shape = [g.len()];
        let cx = Vjp {
            inputs: vec![None],
            input_shapes: vec![&shape[..]],
            outputs: vec![None],
            saved: Some(&mask),
            output_grads: vec![Some(&filtered)],
            wanted: &[true],
        };
        op.backward(&cx).unwrap().remove(0).unwrap()
    }

    #[test]
    fn relu_passes_positive_gradients_where_the_input_was_positive() {
        let y = arr1(&[0.0, 2.0, 3.0, 0.0]).into_dyn();
        let g = arr1(&[1.0, -1.0, 4.0, -2.0]).into_dyn();
        assert_eq!(guided_backward(&Relu, &y, &g), arr1(&[0.0, 0.0, 4.0, 0.0]).into_dyn());
    }

    #[test]
    fn relu6_is_a_rectifier_and_other_activations_are_not() {
        let relu6 = Clip { min: 0.0, max: 6.0 };
        let y = arr1(&[0.0, 2.0, 6.0, 5.0]).into_dyn();
        let g = arr1(&[1.0, 3.0, 4.0, -2.0]).into_dyn();
        assert_eq!(guided_backward(&relu6, &y, &g), arr1(&[0.0, 3.0, 0.0, 0.0]).into_dyn());
        assert!(!GradientFilter::<f64>::applies_to(&GuidedRectifiers, &Clip { min: -1.0, max: 1.0 }));
        assert!(!GradientFilter::<f64>::applies_to(&GuidedRectifiers, &LeakyRelu { alpha: 0.01 }));
    }

    #[test]
    fn the_filter_drops_negative_and_nan_gradients() {
        let mut g = arr1(&[1.5, -1.0, 0.0, f64::NAN]).into_dyn();
        GradientFilter::<f64>::filter(&GuidedRectifiers, &mut g);
        assert_eq!(g, arr1(&[1.5, 0.0, 0.0, 0.0]).into_dyn());
    }
}
