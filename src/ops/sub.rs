//! Sub: element-wise difference with numpy broadcasting.

use super::{binary, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;

/// element-wise difference with numpy broadcasting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sub;

impl<T: Element> Op<T> for Sub {
    fn op_type(&self) -> &'static str {
        "Sub"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        Ok(vec![binary::output_shape(inputs)?])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        Ok(Outputs::one(binary::map(inputs[0], inputs[1], |a, b| a - b)?))
    }

    /// Gradients need only the shapes.
    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let g = cx.grad()?;
        let (sa, sb) = (cx.input_shapes[0], cx.input_shapes[1]);
        let da = cx.wants(0).then(|| crate::tensor::sum_to_shape(g.clone(), sa));
        let db = cx.wants(1).then(|| crate::tensor::sum_to_shape(g.mapv(|v| -v), sb));
        Ok(vec![da, db])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences_with_broadcasting() {
        let mut rng = Rng::new(21);
        for (a, b) in [
            (vec![2, 3, 4], vec![2, 3, 4]),
            (vec![2, 3, 4], vec![3, 1]),
            (vec![1, 4], vec![2, 3, 1]),
            (vec![], vec![2, 2]),
        ] {
            let x = rng.tensor(&a, -1.0, 1.0);
            let y = rng.tensor(&b, -1.0, 1.0);
            check_vjp(&Sub, &[x, y], &[true, true], 5);
        }
    }

    #[test]
    fn incompatible_shapes_are_an_error_naming_them() {
        let err = Op::<f32>::output_shapes(&Sub, &[&[2, 3], &[4, 3]]).unwrap_err().to_string();
        assert!(err.contains("[2, 3]") && err.contains("[4, 3]"), "{err}");
    }
}
