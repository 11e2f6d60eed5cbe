//! Flatten: `[d0, …, dn] → [d0·…·d(axis−1), d(axis)·…·dn]` (the bridge from conv features to a classifier).

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{reshaped, Tensor};
use crate::Element;

/// Flatten to a matrix at `axis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flatten {
    pub axis: i64,
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten { axis: 1 }
    }
}

impl<T: Element> Op<T> for Flatten {
    fn op_type(&self) -> &'static str {
        "Flatten"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        let r = inputs[0].len() as i64;
        if self.axis < -r || self.axis > r {
            return Err(OpError::attribute("axis", format!("{} is out of range for rank {r}", self.axis)));
        }
        let axis = if self.axis < 0 { self.axis + r } else { self.axis } as usize;
        Ok(vec![vec![inputs[0][..axis].iter().product(), inputs[0][axis..].iter().product()]])
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
        let mut rng = Rng::new(14);
        check_vjp(&Flatten::default(), &[rng.tensor(&[2, 3, 2, 2], -1.0, 1.0)], &[true], 1);
        check_vjp(&Flatten { axis: -1 }, &[rng.tensor(&[2, 3, 2], -1.0, 1.0)], &[true], 2);
        let s = Op::<f32>::output_shapes(&Flatten { axis: 0 }, &[&[2, 3]]).unwrap();
        assert_eq!(s, vec![vec![1, 6]]);
    }
}
