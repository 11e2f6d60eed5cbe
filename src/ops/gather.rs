//! Gather: pick entries along an axis by constant indices (`x[:, 3]`, `x[[0, 2]]`); the gradient scatters back.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{normalize_axis, Tensor};
use crate::Element;
use ndarray::{Axis, IxDyn};

/// Gather along `axis` with indices of shape `index_shape` (empty for a scalar index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gather {
    pub axis: i64,
    pub indices: Vec<i64>,
    pub index_shape: Vec<usize>,
}

impl Gather {
    fn resolved(&self, dim: usize) -> Result<Vec<usize>, OpError> {
        self.indices
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + dim as i64 } else { i };
                if j < 0 || j >= dim as i64 {
                    Err(OpError::Invalid(format!("index {i} is out of range for an axis of size {dim}")))
                } else {
                    Ok(j as usize)
                }
            })
            .collect()
    }
}

impl<T: Element> Op<T> for Gather {
    fn op_type(&self) -> &'static str {
        "Gather"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        let axis = normalize_axis(self.axis, x.len())?;
        self.resolved(x[axis])?;
        if self.index_shape.iter().product::<usize>() != self.indices.len() {
            return Err(OpError::attribute("indices", "shape does not match the number of indices"));
        }
        let mut s = x[..axis].to_vec();
        s.extend_from_slice(&self.index_shape);
        s.extend_from_slice(&x[axis + 1..]);
        Ok(vec![s])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let x = inputs[0];
        let axis = normalize_axis(self.axis, x.ndim())?;
        let idx = self.resolved(x.shape()[axis])?;
        let picked = x.select(Axis(axis), &idx);
        let s = Op::<T>::output_shapes(self, &[x.shape()])?.remove(0);
        Ok(Outputs::one(
            picked
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(&s))
                .map_err(|e| OpError::Invalid(e.to_string()))?,
        ))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let shape = cx.input_shapes[0];
        let axis = normalize_axis(self.axis, shape.len())?;
        let idx = self.resolved(shape[axis])?;
        let mut flat_shape = shape[..axis].to_vec();
        flat_shape.push(idx.len());
        flat_shape.extend_from_slice(&shape[axis + 1..]);
        let g = cx
            .grad()?
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&flat_shape))
            .map_err(|e| OpError::Invalid(e.to_string()))?;
        let mut dx = Tensor::zeros(IxDyn(shape));
        for (k, &i) in idx.iter().enumerate() {
            let mut dst = dx.index_axis_mut(Axis(axis), i);
            dst += &g.index_axis(Axis(axis), k);
        }
        Ok(vec![Some(dx)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences_with_repeated_indices() {
        let mut rng = Rng::new(46);
        let g = Gather { axis: 1, indices: vec![2, 0, -1, 2], index_shape: vec![2, 2] };
        check_vjp(&g, &[rng.tensor(&[2, 3, 2], -1.0, 1.0)], &[true], 1);
        let scalar = Gather { axis: 0, indices: vec![1], index_shape: vec![] };
        assert_eq!(Op::<f64>::output_shapes(&scalar, &[&[3, 4]]).unwrap(), vec![vec![4]]);
        assert!(Op::<f64>::output_shapes(&Gather { axis: 0, indices: vec![3], index_shape: vec![1] }, &[&[3]]).is_err());
    }
}
