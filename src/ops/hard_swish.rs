//! HardSwish: `x · relu6(x + 3) / 6` (MobileNetV3).

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Piecewise-quadratic swish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardSwish;

impl Pointwise for HardSwish {
    const OP: &'static str = "HardSwish";

    fn f<T: Element>(&self, x: T) -> T {
        let three = T::lit(3.0);
        if x <= -three {
            T::zero()
        } else if x >= three {
            x
        } else {
            x * (x + three) / T::lit(6.0)
        }
    }

    fn df<T: Element>(&self, x: T) -> T {
        let three = T::lit(3.0);
        if x < -three {
            T::zero()
        } else if x > three {
            T::one()
        } else {
            (T::lit(2.0) * x + three) / T::lit(6.0)
        }
    }
}

pointwise_op!(HardSwish);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(11);
        let op = HardSwish;
        check_vjp(&op, &[rng.tensor(&[2, 3, 4, 5], -5.0, 5.0)], &[true], 3);
        check_vjp(&op, &[rng.tensor(&[7], -5.0, 5.0)], &[true], 4);
    }

    #[test]
    fn nan_propagates() {
        let op = HardSwish;
        assert!(op.f(f32::NAN).is_nan());
    }
}
