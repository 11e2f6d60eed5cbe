//! Concat: joins any number of inputs along an axis (DenseNet, Inception, SqueezeNet).

use super::{Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{normalize_axis, Tensor};
use crate::Element;
use ndarray::{Axis, Slice};

/// Concatenation along `axis` (negative counts from the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concat {
    pub axis: i64,
}

impl<T: Element> Op<T> for Concat {
    fn op_type(&self) -> &'static str {
        "Concat"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        let first = inputs.first().ok_or(OpError::Arity { expected: "at least 1".into(), got: 0 })?;
        let axis = normalize_axis(self.axis, first.len())?;
        let mut out = first.to_vec();
        for s in &inputs[1..] {
            if s.len() != first.len() || s.iter().zip(first.iter()).enumerate().any(|(i, (a, b))| i != axis && a != b) {
                return Err(OpError::shape(format!("inputs must agree on every axis but {axis}"), inputs));
            }
            out[axis] += s[axis];
        }
        Ok(vec![out])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let axis = normalize_axis(self.axis, inputs[0].ndim())?;
        let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
        Ok(Outputs::one(ndarray::concatenate(Axis(axis), &views).map_err(|e| OpError::Invalid(e.to_string()))?))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let g = cx.grad()?;
        let axis = normalize_axis(self.axis, g.ndim())?;
        let mut start = 0;
        let mut grads = Vec::with_capacity(cx.input_shapes.len());
        for (i, s) in cx.input_shapes.iter().enumerate() {
            let len = s[axis];
            grads.push(cx.wants(i).then(|| g.slice_axis(Axis(axis), Slice::from(start..start + len)).to_owned()));
            start += len;
        }
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(12);
        let parts =
            [rng.tensor(&[2, 1, 3], -1.0, 1.0), rng.tensor(&[2, 4, 3], -1.0, 1.0), rng.tensor(&[2, 2, 3], -1.0, 1.0)];
        check_vjp(&Concat { axis: 1 }, &parts, &[true, false, true], 1);
        check_vjp(
            &Concat { axis: -1 },
            &[rng.tensor(&[2, 3], -1.0, 1.0), rng.tensor(&[2, 1], -1.0, 1.0)],
            &[true, true],
            2,
        );
    }

    #[test]
    fn mismatched_inputs_are_rejected() {
        assert!(Op::<f32>::output_shapes(&Concat { axis: 1 }, &[&[1, 2, 3], &[2, 2, 3]]).is_err());
        assert!(Op::<f32>::output_shapes(&Concat { axis: 3 }, &[&[1, 2, 3]]).is_err());
    }
}
