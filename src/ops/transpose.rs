//! Transpose: permutes axes (reverses them when no permutation is given).

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;

/// Axis permutation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transpose {
    pub perm: Option<Vec<usize>>,
}

impl Transpose {
    fn perm(&self, rank: usize) -> Vec<usize> {
        self.perm.clone().unwrap_or_else(|| (0..rank).rev().collect())
    }
}

impl<T: Element> Op<T> for Transpose {
    fn op_type(&self) -> &'static str {
        "Transpose"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        let perm = self.perm(inputs[0].len());
        let mut seen = vec![false; perm.len()];
        if perm.len() != inputs[0].len()
            || perm.iter().any(|&p| p >= seen.len() || std::mem::replace(&mut seen[p], true))
        {
            return Err(OpError::shape(format!("{perm:?} is not a permutation of the input's axes"), inputs));
        }
        Ok(vec![perm.iter().map(|&p| inputs[0][p]).collect()])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let perm = self.perm(inputs[0].ndim());
        Ok(Outputs::one(inputs[0].view().permuted_axes(perm).as_standard_layout().into_owned()))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let perm = self.perm(cx.input_shapes[0].len());
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(vec![Some(cx.grad()?.view().permuted_axes(inverse).as_standard_layout().into_owned())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(16);
        check_vjp(&Transpose { perm: Some(vec![0, 2, 3, 1]) }, &[rng.tensor(&[2, 3, 4, 2], -1.0, 1.0)], &[true], 1);
        check_vjp(&Transpose::default(), &[rng.tensor(&[2, 3], -1.0, 1.0)], &[true], 2);
        assert!(Op::<f32>::output_shapes(&Transpose { perm: Some(vec![0, 0]) }, &[&[2, 3]]).is_err());
    }
}
