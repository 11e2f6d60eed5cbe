//! Split: cuts one input into several outputs along an axis (ShuffleNet's channel split).

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{normalize_axis, Tensor};
use crate::Element;
use ndarray::{Axis, Slice};

/// Split along `axis` into pieces of the given lengths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub axis: i64,
    pub lengths: Vec<usize>,
}

impl<T: Element> Op<T> for Split {
    fn op_type(&self) -> &'static str {
        "Split"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        let axis = normalize_axis(self.axis, inputs[0].len())?;
        if self.lengths.is_empty() || self.lengths.iter().sum::<usize>() != inputs[0][axis] {
            return Err(OpError::shape(
                format!("split lengths {:?} must add up to axis {axis}'s size", self.lengths),
                inputs,
            ));
        }
        Ok(self
            .lengths
            .iter()
            .map(|&l| {
                let mut s = inputs[0].to_vec();
                s[axis] = l;
                s
            })
            .collect())
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let axis = normalize_axis(self.axis, inputs[0].ndim())?;
        let mut start = 0;
        let values = self
            .lengths
            .iter()
            .map(|&l| {
                let piece = inputs[0].slice_axis(Axis(axis), Slice::from(start..start + l)).to_owned();
                start += l;
                piece
            })
            .collect();
        Ok(Outputs { values, saved: None })
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let axis = normalize_axis(self.axis, cx.input_shapes[0].len())?;
        let mut dx = Tensor::zeros(cx.input_shapes[0]);
        let mut start = 0;
        for (&l, g) in self.lengths.iter().zip(&cx.output_grads) {
            if let Some(g) = g {
                dx.slice_axis_mut(Axis(axis), Slice::from(start..start + l)).assign(*g);
            }
            start += l;
        }
        Ok(vec![Some(dx)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(13);
        check_vjp(&Split { axis: 1, lengths: vec![1, 3, 2] }, &[rng.tensor(&[2, 6, 3], -1.0, 1.0)], &[true], 1);
    }

    #[test]
    fn lengths_must_cover_the_axis() {
        assert!(Op::<f32>::output_shapes(&Split { axis: 0, lengths: vec![1, 1] }, &[&[3, 2]]).is_err());
    }
}
