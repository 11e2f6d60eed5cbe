//! Erf: the Gauss error function. PyTorch exports exact GELU as `x·½·(1 + erf(x/√2))`, so every ViT/Swin export
//! runs through it. Its derivative is `2/√π · exp(−x²)`.

use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// The error function, element-wise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Erf;

/// `2/√π`.
const TWO_OVER_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;

/// `erf(x)` in the element type, computed in f64 (libm: correctly rounded to well under an f32 ulp).
pub(crate) fn erf<T: Element>(x: T) -> T {
    T::lit(libm::erf(x.to_f64().unwrap_or(f64::NAN)))
}

impl Pointwise for Erf {
    const OP: &'static str = "Erf";

    fn f<T: Element>(&self, x: T) -> T {
        erf(x)
    }

    fn df<T: Element>(&self, x: T) -> T {
        T::lit(TWO_OVER_SQRT_PI) * (-(x * x)).exp()
    }
}

pointwise_op!(Erf);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn forward_matches_tabulated_values() {
        // Abramowitz & Stegun, table 7.1.
        for (x, want) in [(0.0f64, 0.0), (0.5, 0.520_499_877_8), (1.0, 0.842_700_792_9), (2.0, 0.995_322_265_0)] {
            assert!((Erf.f(x) - want).abs() < 1e-9, "erf({x}) = {}", Erf.f(x));
            assert!((Erf.f(-x) + want).abs() < 1e-9, "erf is odd");
        }
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(61);
        check_vjp(&Erf, &[rng.tensor(&[2, 3, 5], -2.5, 2.5)], &[true], 3);
    }
}
