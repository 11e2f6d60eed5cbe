//! LeakyRelu: `x` for `x ≥ 0`, `alpha·x` otherwise.

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Leaky rectifier.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeakyRelu {
    pub alpha: f64,
}

impl Default for LeakyRelu {
    fn default() -> Self {
        LeakyRelu { alpha: 0.01 }
    }
}

impl Pointwise for LeakyRelu {
    const OP: &'static str = "LeakyRelu";

    fn f<T: Element>(&self, x: T) -> T {
        if x < T::zero() {
            x * T::lit(self.alpha)
        } else {
            x
        }
    }

    fn df<T: Element>(&self, x: T) -> T {
        if x < T::zero() {
            T::lit(self.alpha)
        } else {
            T::one()
        }
    }
}

pointwise_op!(LeakyRelu);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(11);
        let op = LeakyRelu { alpha: 0.1 };
        check_vjp(&op, &[rng.tensor(&[2, 3, 4, 5], -1.0, 1.0)], &[true], 3);
        check_vjp(&op, &[rng.tensor(&[7], -1.0, 1.0)], &[true], 4);
    }

    #[test]
    fn nan_propagates() {
        let op = LeakyRelu { alpha: 0.1 };
        assert!(op.f(f32::NAN).is_nan());
    }
}
