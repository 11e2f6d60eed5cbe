//! Abs: `|x|` (Softsign exports as `x / (1 + |x|)`). Its derivative is `sign(x)`, taken as 0 at 0 like PyTorch.

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Absolute value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Abs;

impl Pointwise for Abs {
    const OP: &'static str = "Abs";

    fn f<T: Element>(&self, x: T) -> T {
        x.abs()
    }

    fn df<T: Element>(&self, x: T) -> T {
        sign(x)
    }
}

/// `sign(x)`: ±1, and 0 at 0 and for NaN (PyTorch's `sign` at 0; FGSM and PGD step by it too).
pub fn sign<T: Element>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

pointwise_op!(Abs);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        // Values away from the kink at 0, where central differences are exact.
        let mut rng = Rng::new(43);
        let x = rng.tensor(&[2, 3, 4], 0.2, 2.0);
        let signs = rng.tensor(&[2, 3, 4], -1.0, 1.0);
        let x = ndarray::Zip::from(&x).and(&signs).map_collect(|&v, &s| if s < 0.0 { -v } else { v });
        check_vjp(&Abs, &[x], &[true], 3);
    }

    #[test]
    fn gradient_at_zero_is_zero() {
        assert_eq!(Abs.df(0.0f64), 0.0);
        assert_eq!(Abs.f(-2.5f64), 2.5);
    }
}
