//! Clip: `min(max(x, min), max)`; ReLU6 is `Clip { min: 0, max: 6 }`. NaN passes through.

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Clamp to `[min, max]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clip {
    pub min: f64,
    pub max: f64,
}

impl Clip {
    /// ReLU6, as in MobileNet and EfficientNet-Lite.
    pub fn relu6() -> Self {
        Clip { min: 0.0, max: 6.0 }
    }
}

impl Pointwise for Clip {
    const OP: &'static str = "Clip";

    fn f<T: Element>(&self, x: T) -> T {
        let (lo, hi) = (T::lit(self.min), T::lit(self.max));
        if x < lo {
            lo
        } else if x > hi {
            hi
        } else {
            x
        }
    }

    /// `lo < x < hi ⇔ lo < clip(x) < hi`, so the mask can come from the output (ReLU6's backward after a fused
    /// convolution reads the fused output).
    const DERIVATIVE_FROM_OUTPUT: bool = true;

    fn fusion(&self) -> Option<super::Fusable> {
        (self.min <= self.max).then_some(super::Fusable::Clamp { lo: self.min, hi: self.max })
    }

    /// PyTorch convention: gradient flows strictly inside the interval.
    fn df<T: Element>(&self, x: T) -> T {
        if x > T::lit(self.min) && x < T::lit(self.max) {
            T::one()
        } else {
            T::zero()
        }
    }
}

pointwise_op!(Clip);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(11);
        let op = Clip { min: -0.5, max: 0.7 };
        check_vjp(&op, &[rng.tensor(&[2, 3, 4, 5], -1.0, 1.0)], &[true], 3);
        check_vjp(&op, &[rng.tensor(&[7], -1.0, 1.0)], &[true], 4);
    }

    #[test]
    fn nan_propagates() {
        let op = Clip { min: -0.5, max: 0.7 };
        assert!(op.f(f32::NAN).is_nan());
    }
}
