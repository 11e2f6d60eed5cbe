//! Gelu (ONNX opset 20): `x·Φ(x)`, exactly through erf or by the tanh approximation. Exports at older opsets spell
//! the exact form out as Div/Erf/Add/Mul, which [`super::erf::Erf`] covers.

use super::erf::erf;
use super::pointwise::pointwise_op;
use super::Pointwise;
use crate::Element;

/// Gaussian error linear unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gelu {
    /// `approximate="tanh"`: `½x(1 + tanh(√(2/π)(x + 0.044715x³)))`.
    pub tanh: bool,
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const CUBIC: f64 = 0.044_715;

impl Pointwise for Gelu {
    const OP: &'static str = "Gelu";

    fn f<T: Element>(&self, x: T) -> T {
        let half = T::lit(0.5);
        if self.tanh {
            let inner = T::lit(SQRT_2_OVER_PI) * (x + T::lit(CUBIC) * x * x * x);
            half * x * (T::one() + inner.tanh())
        } else {
            half * x * (T::one() + erf(x * T::lit(std::f64::consts::FRAC_1_SQRT_2)))
        }
    }

    fn df<T: Element>(&self, x: T) -> T {
        let half = T::lit(0.5);
        if self.tanh {
            let inner = T::lit(SQRT_2_OVER_PI) * (x + T::lit(CUBIC) * x * x * x);
            let t = inner.tanh();
            let d_inner = T::lit(SQRT_2_OVER_PI) * (T::one() + T::lit(3.0 * CUBIC) * x * x);
            half * (T::one() + t) + half * x * (T::one() - t * t) * d_inner
        } else {
            // Φ(x) + x·φ(x).
            let cdf = half * (T::one() + erf(x * T::lit(std::f64::consts::FRAC_1_SQRT_2)));
            let pdf = (-(x * x) * half).exp()
                * T::lit(0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2);
            cdf + x * pdf
        }
    }
}

pointwise_op!(Gelu);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn forward_matches_closed_form_values() {
        // x·Φ(x) with Φ(1) = 0.841344746…, Φ(−2) = 0.022750131…; tanh form from PyTorch's definition.
        let exact = Gelu { tanh: false };
        assert!((exact.f(1.0f64) - 0.841_344_746_068_542_9).abs() < 1e-12);
        assert!((exact.f(-2.0f64) - -2.0 * 0.022_750_131_948_179_2).abs() < 1e-12);
        let approx = Gelu { tanh: true };
        let want = 0.5 * (1.0 + (SQRT_2_OVER_PI * (1.0 + CUBIC)).tanh());
        assert!((approx.f(1.0f64) - want).abs() < 1e-15);
        assert!((approx.f(1.0f64) - exact.f(1.0f64)).abs() < 1e-3, "the approximation stays close");
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(62);
        for tanh in [false, true] {
            check_vjp(&Gelu { tanh }, &[rng.tensor(&[3, 7], -3.0, 3.0)], &[true], 3);
        }
    }
}
