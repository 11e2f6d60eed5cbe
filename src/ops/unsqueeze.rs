//! Unsqueeze: inserts size-1 axes at the given positions of the output.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{normalize_axis, reshaped, Tensor};
use crate::Element;

/// Inserts size-1 axes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unsqueeze {
    pub axes: Vec<i64>,
}

impl<T: Element> Op<T> for Unsqueeze {
    fn op_type(&self) -> &'static str {
        "Unsqueeze"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        let rank = inputs[0].len() + self.axes.len();
        let mut axes: Vec<usize> = self.axes.iter().map(|&a| normalize_axis(a, rank)).collect::<Result<_, _>>()?;
        axes.sort_unstable();
        if axes.windows(2).any(|w| w[0] == w[1]) {
            return Err(OpError::attribute("axes", format!("{:?} repeats an axis", self.axes)));
        }
        let mut rest = inputs[0].iter();
        Ok(vec![(0..rank).map(|i| if axes.contains(&i) { 1 } else { *rest.next().unwrap_or(&1) }).collect()])
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
        let mut rng = Rng::new(23);
        check_vjp(&Unsqueeze { axes: vec![0, -1] }, &[rng.tensor(&[2, 3], -1.0, 1.0)], &[true], 1);
        assert_eq!(
            Op::<f32>::output_shapes(&Unsqueeze { axes: vec![1, 3] }, &[&[2, 3]]).unwrap(),
            vec![vec![2, 1, 3, 1]]
        );
    }
}
