//! Sigmoid: `1 / (1 + e⁻ˣ)`, evaluated without overflow for large `|x|`.

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Logistic sigmoid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sigmoid;

/// Overflow-free logistic function.
pub fn logistic<T: Element>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

impl Pointwise for Sigmoid {
    const OP: &'static str = "Sigmoid";

    fn f<T: Element>(&self, x: T) -> T {
        logistic(x)
    }

    fn df<T: Element>(&self, x: T) -> T {
        let s = logistic(x);
        s * (T::one() - s)
    }
}

pointwise_op!(Sigmoid);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(11);
        let op = Sigmoid;
        check_vjp(&op, &[rng.tensor(&[2, 3, 4, 5], -4.0, 4.0)], &[true], 3);
        check_vjp(&op, &[rng.tensor(&[7], -4.0, 4.0)], &[true], 4);
    }

    #[test]
    fn nan_propagates() {
        let op = Sigmoid;
        assert!(op.f(f32::NAN).is_nan());
    }
}
