//! Tile: the input repeated `repeats[i]` times along each axis i (ONNX's Tile, PyTorch's `repeat`); the gradient
//! sums the copies back.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;
use ndarray::{Axis, IxDyn};

/// Repeat along every axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    pub repeats: Vec<usize>,
}

impl<T: Element> Op<T> for Tile {
    fn op_type(&self) -> &'static str {
        "Tile"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        if self.repeats.len() != inputs[0].len() {
            return Err(OpError::shape(
                format!("{} repeats for a rank-{} input", self.repeats.len(), inputs[0].len()),
                inputs,
            ));
        }
        let out: Option<Vec<usize>> = inputs[0].iter().zip(&self.repeats).map(|(&d, &r)| d.checked_mul(r)).collect();
        let out = out.filter(|s| s.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_some());
        Ok(vec![out.ok_or_else(|| OpError::shape(format!("repeats {:?} overflow", self.repeats), inputs))?])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let shape = Op::<T>::output_shapes(self, &[inputs[0].shape()])?.remove(0);
        if shape.contains(&0) {
            return Ok(Outputs::one(Tensor::zeros(IxDyn(&shape))));
        }
        let mut y = inputs[0].clone();
        for (axis, &r) in self.repeats.iter().enumerate() {
            if r != 1 {
                let copies = vec![y.view(); r];
                y = ndarray::concatenate(Axis(axis), &copies).map_err(|e| OpError::Invalid(e.to_string()))?;
            }
        }
        Ok(Outputs::one(y))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        // The output axis i of length r·d, read as [r, d] pairs: summing each r axis gives the input's gradient.
        let x_shape = cx.input_shapes[0];
        let split: Vec<usize> = x_shape.iter().zip(&self.repeats).flat_map(|(&d, &r)| [r, d]).collect();
        let g = cx.grad()?.as_standard_layout().into_owned();
        let mut g = g.into_shape_with_order(IxDyn(&split)).map_err(|e| OpError::Invalid(e.to_string()))?;
        for axis in (0..x_shape.len()).rev() {
            g = g.sum_axis(Axis(2 * axis));
        }
        Ok(vec![Some(g)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn tiles_like_numpy() {
        let x = Tensor::<f64>::from_shape_vec(IxDyn(&[2, 2]), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let y = Op::<f64>::forward(&Tile { repeats: vec![2, 3] }, &[&x]).unwrap().values.remove(0);
        assert_eq!(y.shape(), [4, 6]);
        let row0: Vec<f64> = y.index_axis(Axis(0), 0).iter().copied().collect();
        assert_eq!(row0, vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        assert_eq!(y[[2, 1]], 2.0);
        assert!(Op::<f64>::output_shapes(&Tile { repeats: vec![usize::MAX, 2] }, &[&[2, 2]]).is_err());
        assert!(Op::<f64>::output_shapes(&Tile { repeats: vec![2] }, &[&[2, 2]]).is_err());
        let empty = Op::<f64>::forward(&Tile { repeats: vec![0, 2] }, &[&x]).unwrap().values.remove(0);
        assert_eq!(empty.shape(), [0, 4]);
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(47);
        check_vjp(&Tile { repeats: vec![2, 1, 3] }, &[rng.tensor(&[2, 3, 2], -1.0, 1.0)], &[true], 1);
    }
}
