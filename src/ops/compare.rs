//! Equal, Less, Greater, LessOrEqual, GreaterOrEqual: element-wise comparisons with numpy broadcasting, giving 1 or
//! 0 (the engine computes in one float type; ONNX's booleans become 1/0). Their output is piecewise constant, so
//! the gradient of both operands is zero.

use super::{binary, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;
use ndarray::IxDyn;

/// Which comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
}

/// An element-wise comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compare(pub Comparison);

impl Comparison {
    /// Whether `a ⋄ b` holds.
    pub fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Comparison::Equal => a == b,
            Comparison::Less => a < b,
            Comparison::Greater => a > b,
            Comparison::LessOrEqual => a <= b,
            Comparison::GreaterOrEqual => a >= b,
        }
    }

    /// The ONNX operator name.
    pub fn op_type(self) -> &'static str {
        match self {
            Comparison::Equal => "Equal",
            Comparison::Less => "Less",
            Comparison::Greater => "Greater",
            Comparison::LessOrEqual => "LessOrEqual",
            Comparison::GreaterOrEqual => "GreaterOrEqual",
        }
    }
}

impl<T: Element> Op<T> for Compare {
    fn op_type(&self) -> &'static str {
        self.0.op_type()
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        Ok(vec![binary::output_shape(inputs)?])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let kind = self.0;
        Ok(Outputs::one(binary::map(inputs[0], inputs[1], |a, b| if kind.holds(a, b) { T::one() } else { T::zero() })?))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        Ok((0..2).map(|i| cx.wants(i).then(|| Tensor::zeros(IxDyn(cx.input_shapes[i])))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::check_vjp;

    #[test]
    fn compares_with_broadcasting() {
        let a = Tensor::from_shape_vec(IxDyn(&[2, 2]), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = Tensor::from_shape_vec(IxDyn(&[2]), vec![2.0, 2.0]).unwrap();
        let run = |k| {
            Op::<f64>::forward(&Compare(k), &[&a, &b]).unwrap().values.remove(0).iter().copied().collect::<Vec<_>>()
        };
        assert_eq!(run(Comparison::Equal), [0.0, 1.0, 0.0, 0.0]);
        assert_eq!(run(Comparison::Less), [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(run(Comparison::Greater), [0.0, 0.0, 1.0, 1.0]);
        assert_eq!(run(Comparison::LessOrEqual), [1.0, 1.0, 0.0, 0.0]);
        assert_eq!(run(Comparison::GreaterOrEqual), [0.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn gradient_is_zero_like_finite_differences_away_from_ties() {
        // Operands far apart: nudging either changes nothing.
        let a = Tensor::from_shape_vec(IxDyn(&[3]), vec![0.0, 5.0, -5.0]).unwrap();
        let b = Tensor::from_shape_vec(IxDyn(&[3]), vec![1.0, 2.0, -2.0]).unwrap();
        check_vjp(&Compare(Comparison::Less), &[a, b], &[true, true], 3);
    }
}
