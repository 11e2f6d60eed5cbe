//! Squeeze: removes size-1 axes (the listed ones, or all).

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{normalize_axis, reshaped, Tensor};
use crate::Element;

/// Removes size-1 axes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Squeeze {
    pub axes: Option<Vec<i64>>,
}

impl<T: Element> Op<T> for Squeeze {
    fn op_type(&self) -> &'static str {
        "Squeeze"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        let drop: Vec<usize> = match &self.axes {
            None => (0..x.len()).filter(|&i| x[i] == 1).collect(),
            Some(axes) => axes.iter().map(|&a| normalize_axis(a, x.len())).collect::<Result<_, _>>()?,
        };
        if let Some(&a) = drop.iter().find(|&&a| x[a] != 1) {
            return Err(OpError::shape(format!("axis {a} has size {}, not 1", x[a]), inputs));
        }
        Ok(vec![x.iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, &d)| d).collect()])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let shape = Op::<T>::output_shapes(self, &[inputs[0].shape()])?.remove(0);
        Ok(Outputs::one(reshaped(inputs[0], &shape)?))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        Ok(vec![Some(reshaped(cx.grad()?, cx.input_shapes[0])?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(22);
        check_vjp(&Squeeze { axes: Some(vec![-1, 2]) }, &[rng.tensor(&[2, 3, 1, 1], -1.0, 1.0)], &[true], 1);
        assert_eq!(Op::<f32>::output_shapes(&Squeeze::default(), &[&[1, 3, 1]]).unwrap(), vec![vec![3]]);
        assert!(Op::<f32>::output_shapes(&Squeeze { axes: Some(vec![1]) }, &[&[1, 3, 1]]).is_err());
    }
}
