//! HardSigmoid: `clamp(alpha·x + beta, 0, 1)`. ONNX defaults `alpha = 0.2`; PyTorch uses `1/6` (see [`HardSigmoid::pytorch`]).

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Piecewise-linear sigmoid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HardSigmoid {
    pub alpha: f64,
    pub beta: f64,
}

impl Default for HardSigmoid {
    fn default() -> Self {
        HardSigmoid { alpha: 0.2, beta: 0.5 }
    }
}

impl HardSigmoid {
    /// `torch.nn.Hardsigmoid`: `relu6(x + 3) / 6`.
    pub fn pytorch() -> Self {
        HardSigmoid { alpha: 1.0 / 6.0, beta: 0.5 }
    }
}

impl Pointwise for HardSigmoid {
    const OP: &'static str = "HardSigmoid";

    fn f<T: Element>(&self, x: T) -> T {
        let v = T::lit(self.alpha) * x + T::lit(self.beta);
        if v < T::zero() {
            T::zero()
        } else if v > T::one() {
            T::one()
        } else {
            v
        }
    }

    fn df<T: Element>(&self, x: T) -> T {
        let v = T::lit(self.alpha) * x + T::lit(self.beta);
        if v > T::zero() && v < T::one() {
            T::lit(self.alpha)
        } else {
            T::zero()
        }
    }
}

pointwise_op!(HardSigmoid);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(11);
        let op = HardSigmoid::default();
        check_vjp(&op, &[rng.tensor(&[2, 3, 4, 5], -4.0, 4.0)], &[true], 3);
        check_vjp(&op, &[rng.tensor(&[7], -4.0, 4.0)], &[true], 4);
    }

    #[test]
    fn nan_propagates() {
        let op = HardSigmoid::default();
        assert!(op.f(f32::NAN).is_nan());
    }
}
