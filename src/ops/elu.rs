//! Elu: `x` for `x > 0`, `alpha·(eˣ − 1)` otherwise.

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Exponential linear unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Elu {
    pub alpha: f64,
}

impl Default for Elu {
    fn default() -> Self {
        Elu { alpha: 1.0 }
    }
}

impl Pointwise for Elu {
    const OP: &'static str = "Elu";

    fn f<T: Element>(&self, x: T) -> T {
        if x > T::zero() {
            x
        } else {
            T::lit(self.alpha) * x.exp_m1()
        }
    }

    fn df<T: Element>(&self, x: T) -> T {
        if x > T::zero() {
            T::one()
        } else {
            T::lit(self.alpha) * x.exp()
        }
    }
}

pointwise_op!(Elu);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(11);
        let op = Elu { alpha: 0.7 };
        check_vjp(&op, &[rng.tensor(&[2, 3, 4, 5], -2.0, 2.0)], &[true], 3);
        check_vjp(&op, &[rng.tensor(&[7], -2.0, 2.0)], &[true], 4);
    }

    #[test]
    fn nan_propagates() {
        let op = Elu { alpha: 0.7 };
        assert!(op.f(f32::NAN).is_nan());
    }
}
