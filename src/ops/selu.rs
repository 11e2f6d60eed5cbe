//! Selu: `scale·x` for `x > 0`, `scale·alpha·(eˣ − 1)` otherwise (ONNX defaults).

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Scaled exponential linear unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Selu {
    pub alpha: f64,
    pub gamma: f64,
}

impl Default for Selu {
    fn default() -> Self {
        Selu { alpha: 1.673_263_192_176_818_8, gamma: 1.050_701_022_148_132_3 }
    }
}

impl Pointwise for Selu {
    const OP: &'static str = "Selu";

    fn f<T: Element>(&self, x: T) -> T {
        let g = T::lit(self.gamma);
        if x > T::zero() {
            g * x
        } else {
            g * T::lit(self.alpha) * x.exp_m1()
        }
    }

    fn df<T: Element>(&self, x: T) -> T {
        let g = T::lit(self.gamma);
        if x > T::zero() {
            g
        } else {
            g * T::lit(self.alpha) * x.exp()
        }
    }
}

pointwise_op!(Selu);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(41);
        check_vjp(&Selu::default(), &[rng.tensor(&[2, 3, 4], -2.0, 2.0)], &[true], 3);
    }
}
