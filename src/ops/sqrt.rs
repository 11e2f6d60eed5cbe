//! Sqrt: `√x` (NaN for negative inputs, as IEEE says).

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Square root.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sqrt;

impl Pointwise for Sqrt {
    const OP: &'static str = "Sqrt";

    fn f<T: Element>(&self, x: T) -> T {
        x.sqrt()
    }

    fn df<T: Element>(&self, x: T) -> T {
        T::lit(0.5) / x.sqrt()
    }
}

pointwise_op!(Sqrt);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(41);
        check_vjp(&Sqrt, &[rng.tensor(&[2, 3, 4], 0.2, 3.0)], &[true], 3);
    }
}
