//! SiLU (Swish): `x · sigmoid(x)`.

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Sigmoid-weighted linear unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Silu;

impl Pointwise for Silu {
    const OP: &'static str = "Silu";

    fn f<T: Element>(&self, x: T) -> T {
        x * super::sigmoid::logistic(x)
    }

    fn df<T: Element>(&self, x: T) -> T {
        let s = super::sigmoid::logistic(x);
        s * (T::one() + x * (T::one() - s))
    }
}

pointwise_op!(Silu);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(11);
        let op = Silu;
        check_vjp(&op, &[rng.tensor(&[2, 3, 4, 5], -4.0, 4.0)], &[true], 3);
        check_vjp(&op, &[rng.tensor(&[7], -4.0, 4.0)], &[true], 4);
    }

    #[test]
    fn nan_propagates() {
        let op = Silu;
        assert!(op.f(f32::NAN).is_nan());
    }
}
