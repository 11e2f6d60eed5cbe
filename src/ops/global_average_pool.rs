//! GlobalAveragePool: mean over all spatial axes, `[N, C, …] → [N, C, 1, …]`.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;
use ndarray::{Axis, IxDyn};

/// Spatial mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalAveragePool;

fn planes(shape: &[usize]) -> (usize, usize) {
    (shape[..2].iter().product(), shape[2..].iter().product())
}

impl<T: Element> Op<T> for GlobalAveragePool {
    fn op_type(&self) -> &'static str {
        "GlobalAveragePool"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        if inputs[0].len() < 3 {
            return Err(OpError::shape("input must be [N, C, spatial…]", inputs));
        }
        let mut s = inputs[0][..2].to_vec();
        s.resize(inputs[0].len(), 1);
        Ok(vec![s])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let x = inputs[0];
        let (p, size) = planes(x.shape());
        let flat = x.view().into_shape_with_order((p, size)).map_err(|e| OpError::Invalid(e.to_string()))?;
        let scale = T::one() / T::lit(size.max(1) as f64);
        let means = flat.map_axis(Axis(1), |row| row.iter().fold(T::zero(), |a, &v| a + v) * scale);
        let shape = Op::<T>::output_shapes(self, &[x.shape()])?.remove(0);
        Ok(Outputs::one(means.into_shape_with_order(IxDyn(&shape)).map_err(|e| OpError::Invalid(e.to_string()))?))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let shape = cx.input_shapes[0];
        let (_, size) = planes(shape);
        let scale = T::one() / T::lit(size.max(1) as f64);
        // Every position of plane i gets g_i / size: one fill per plane (a broadcast view's `mapv` visits the planes
        // element by element through dynamic indices).
        let g = cx.grad()?;
        let pooled = Op::<T>::output_shapes(self, &[shape])?.remove(0);
        if g.shape() != pooled.as_slice() {
            return Err(OpError::Invalid(format!("gradient shape {:?}, expected {pooled:?}", g.shape())));
        }
        let g = crate::tensor::contiguous(g);
        let mut dx = vec![T::zero(); g.len() * size];
        for (plane, &v) in dx.chunks_exact_mut(size.max(1)).zip(g.iter()) {
            plane.fill(v * scale);
        }
        Ok(vec![Some(crate::tensor::from_vec(shape, dx)?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(2);
        check_vjp(&GlobalAveragePool, &[rng.tensor(&[2, 3, 5, 7], -1.0, 1.0)], &[true], 1);
        check_vjp(&GlobalAveragePool, &[rng.tensor(&[2, 3, 6], -1.0, 1.0)], &[true], 2);
    }
}
