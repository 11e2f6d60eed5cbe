//! Tanh: hyperbolic tangent.

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Hyperbolic tangent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tanh;

impl Pointwise for Tanh {
    const OP: &'static str = "Tanh";

    fn f<T: Element>(&self, x: T) -> T {
        x.tanh()
    }

    fn df<T: Element>(&self, x: T) -> T {
        let t = x.tanh();
        T::one() - t * t
    }
}

pointwise_op!(Tanh);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(11);
        let op = Tanh;
        check_vjp(&op, &[rng.tensor(&[2, 3, 4, 5], -3.0, 3.0)], &[true], 3);
        check_vjp(&op, &[rng.tensor(&[7], -3.0, 3.0)], &[true], 4);
    }

    #[test]
    fn nan_propagates() {
        let op = Tanh;
        assert!(op.f(f32::NAN).is_nan());
    }
}
