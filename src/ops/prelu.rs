//! PRelu: `x` for `x ≥ 0`, `slope·x` otherwise, with `slope` broadcast to `x` (ONNX unidirectional broadcasting;
//! a per-channel slope is stored as `[C, 1, 1]`).

use super::{binary, Op, Outputs, Vjp};
use crate::error::OpError;
use crate::tensor::{broadcast_shapes, Tensor};
use crate::Element;

/// Parametric rectifier; inputs `x` and `slope`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PRelu;

impl<T: Element> Op<T> for PRelu {
    fn op_type(&self) -> &'static str {
        "PRelu"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        super::arity(inputs, 2, 2)?;
        match broadcast_shapes(inputs[0], inputs[1]) {
            Some(s) if s == inputs[0] => Ok(vec![s]),
            _ => Err(OpError::shape("slope must broadcast to the input's shape", inputs)),
        }
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        Ok(Outputs::one(binary::map(inputs[0], inputs[1], |x, s| if x < T::zero() { s * x } else { x })?))
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let (x, s, g) = (cx.input(0)?, cx.input(1)?, cx.grad()?);
        let zero = T::zero();
        let dx =
            cx.wants(0).then(|| binary::operand_grad(g, x, s, x.shape(), |g, x, s| if x < zero { g * s } else { g }));
        let ds = cx
            .wants(1)
            .then(|| binary::operand_grad(g, x, s, s.shape(), |g, x, _| if x < zero { g * x } else { zero }));
        Ok(vec![dx, ds])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences_with_channel_slopes() {
        let mut rng = Rng::new(3);
        let x = rng.tensor(&[2, 3, 4, 5], -1.0, 1.0);
        check_vjp(&PRelu, &[x.clone(), rng.tensor(&[3, 1, 1], 0.0, 0.5)], &[true, true], 1);
        check_vjp(&PRelu, &[x, rng.tensor(&[1], 0.0, 0.5)], &[true, true], 2);
    }

    #[test]
    fn slope_that_would_grow_the_input_is_rejected() {
        assert!(Op::<f32>::output_shapes(&PRelu, &[&[3], &[2, 3]]).is_err());
    }
}
