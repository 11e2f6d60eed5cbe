//! Softplus: `ln(1 + eˣ)`, computed without overflow.

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Smooth rectifier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Softplus;

impl Pointwise for Softplus {
    const OP: &'static str = "Softplus";

    fn f<T: Element>(&self, x: T) -> T {
        // max(x, 0) + ln(1 + e^-|x|)
        let zero = T::zero();
        (if x > zero { x } else { zero }) + (-x.abs()).exp().ln_1p()
    }

    fn df<T: Element>(&self, x: T) -> T {
        super::sigmoid::logistic(x)
    }
}

pointwise_op!(Softplus);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(41);
        check_vjp(&Softplus, &[rng.tensor(&[2, 3, 4], -3.0, 3.0)], &[true], 3);
    }
}
