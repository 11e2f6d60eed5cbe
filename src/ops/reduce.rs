//! ReduceSum and ReduceMean over a set of axes (all when none are given), keeping them as size 1 or not.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{normalize_axis, Tensor};
use crate::Element;
use ndarray::{Axis, IxDyn};

/// Which axes to reduce and whether to keep them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReduceAxes {
    pub axes: Option<Vec<i64>>,
    pub keepdims: bool,
}

impl ReduceAxes {
    fn resolve(&self, shape: &[usize]) -> Result<Vec<usize>, OpError> {
        let mut axes: Vec<usize> = match &self.axes {
            None => (0..shape.len()).collect(),
            Some(a) => a.iter().map(|&a| normalize_axis(a, shape.len())).collect::<Result<_, _>>()?,
        };
        axes.sort_unstable();
        axes.dedup();
        Ok(axes)
    }

    fn output_shape(&self, shape: &[usize]) -> Result<Vec<usize>, OpError> {
        let axes = self.resolve(shape)?;
        Ok(shape
            .iter()
            .enumerate()
            .filter_map(|(i, &d)| match (axes.contains(&i), self.keepdims) {
                (false, _) => Some(d),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect())
    }

    fn sum<T: Element>(&self, x: &Tensor<T>) -> Result<(Tensor<T>, usize), OpError> {
        let axes = self.resolve(x.shape())?;
        let count = axes.iter().map(|&a| x.shape()[a]).product();
        let mut y = x.to_owned();
        for &a in axes.iter().rev() {
            y = y.sum_axis(Axis(a));
        }
        let shape = self.output_shape(x.shape())?;
        Ok((y.into_shape_with_order(IxDyn(&shape)).map_err(|e| OpError::Invalid(e.to_string()))?, count))
    }

    /// Broadcasts the output gradient back to the input shape, times `scale`.
    fn spread<T: Element>(&self, g: &Tensor<T>, shape: &[usize], scale: T) -> Result<Tensor<T>, OpError> {
        let axes = self.resolve(shape)?;
        let kept: Vec<usize> = shape.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
        let g = g
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&kept))
            .map_err(|e| OpError::Invalid(e.to_string()))?;
        let b = g.broadcast(IxDyn(shape)).ok_or_else(|| OpError::Invalid("broadcast".into()))?;
        Ok(b.mapv(|v| v * scale))
    }
}

/// Sum over axes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReduceSum(pub ReduceAxes);

/// Mean over axes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReduceMean(pub ReduceAxes);

impl<T: Element> Op<T> for ReduceSum {
    fn op_type(&self) -> &'static str {
        "ReduceSum"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        Ok(vec![self.0.output_shape(inputs[0])?])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        Ok(Outputs::one(self.0.sum(inputs[0])?.0))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        Ok(vec![Some(self.0.spread(cx.grad()?, cx.input_shapes[0], T::one())?)])
    }
}

impl<T: Element> Op<T> for ReduceMean {
    fn op_type(&self) -> &'static str {
        "ReduceMean"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        Ok(vec![self.0.output_shape(inputs[0])?])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let (s, count) = self.0.sum(inputs[0])?;
        let scale = T::one() / T::lit(count.max(1) as f64);
        Ok(Outputs::one(s.mapv(|v| v * scale)))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let shape = cx.input_shapes[0];
        let count: usize = self.0.resolve(shape)?.iter().map(|&a| shape[a]).product();
        Ok(vec![Some(self.0.spread(cx.grad()?, shape, T::one() / T::lit(count.max(1) as f64))?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(27);
        let x = rng.tensor(&[2, 3, 4], -1.0, 1.0);
        for axes in [
            ReduceAxes { axes: Some(vec![1]), keepdims: true },
            ReduceAxes { axes: Some(vec![0, -1]), keepdims: false },
            ReduceAxes::default(),
        ] {
            check_vjp(&ReduceSum(axes.clone()), std::slice::from_ref(&x), &[true], 1);
            check_vjp(&ReduceMean(axes), std::slice::from_ref(&x), &[true], 2);
        }
    }
}
