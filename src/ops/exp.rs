//! Exp: `eˣ`.

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Exponential.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exp;

impl Pointwise for Exp {
    const OP: &'static str = "Exp";

    fn f<T: Element>(&self, x: T) -> T {
        x.exp()
    }

    fn df<T: Element>(&self, x: T) -> T {
        x.exp()
    }
}

pointwise_op!(Exp);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(41);
        check_vjp(&Exp, &[rng.tensor(&[2, 3, 4], -2.0, 2.0)], &[true], 3);
    }
}
