//! Slice: `x[starts:ends:steps]` along the given axes (ONNX semantics: negative indices count from the end, bounds
//! are clamped, steps may be negative).

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{normalize_axis, Tensor};
use crate::Element;
use ndarray::{IxDyn, Slice as NdSlice};

/// Strided slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    pub axes: Option<Vec<i64>>,
    pub steps: Option<Vec<i64>>,
}

impl Slice {
    /// Per axis: `(axis, start, end, step)` with start/end resolved for ndarray (end exclusive, step ≠ 0).
    fn resolve(&self, shape: &[usize]) -> Result<Vec<(usize, isize, isize, isize)>, OpError> {
        let n = self.starts.len();
        if self.ends.len() != n {
            return Err(OpError::attribute("ends", "must have as many entries as starts"));
        }
        let axes: Vec<i64> = self.axes.clone().unwrap_or_else(|| (0..n as i64).collect());
        let steps: Vec<i64> = self.steps.clone().unwrap_or_else(|| vec![1; n]);
        if axes.len() != n || steps.len() != n {
            return Err(OpError::attribute("axes/steps", "must have as many entries as starts"));
        }
        let mut out: Vec<(usize, isize, isize, isize)> = Vec::with_capacity(n);
        for i in 0..n {
            let axis = normalize_axis(axes[i], shape.len())?;
            // ONNX leaves a repeated axis undefined; applied one after the other, the second range would index an
            // axis the first already cut.
            if out.iter().any(|&(a, ..)| a == axis) {
                return Err(OpError::attribute("axes", format!("axis {axis} is named twice")));
            }
            let dim = shape[axis] as i64;
            let step = steps[i];
            if step == 0 {
                return Err(OpError::attribute("steps", "must not be 0"));
            }
            let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
            let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
            let (start, end) = if step > 0 {
                (clamp(fix(starts_at(&self.starts, i)), 0, dim), clamp(fix(self.ends[i]), 0, dim))
            } else {
                (clamp(fix(starts_at(&self.starts, i)), -1, dim - 1), clamp(fix(self.ends[i]), -1, dim - 1))
            };
            out.push((axis, start as isize, end as isize, step as isize));
        }
        Ok(out)
    }

    /// Where the output starts in the input and its step, per axis, when every step is positive (the output is then
    /// a strided box of the input: what device kernels copy); `None` for negative steps.
    pub(crate) fn strided_box(&self, shape: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
        let (mut start, mut step) = (vec![0usize; shape.len()], vec![1usize; shape.len()]);
        let out = self.output_shape(shape).ok()?;
        for (axis, first, _, by) in self.resolve(shape).ok()? {
            start[axis] = usize::try_from(first).ok()?;
            // Along an axis of at most one output element the step is never taken.
            step[axis] = if out[axis] <= 1 { 1 } else { usize::try_from(by).ok().filter(|&s| s > 0)? };
        }
        Some((start, step))
    }

    fn output_shape(&self, shape: &[usize]) -> Result<Vec<usize>, OpError> {
        let mut s = shape.to_vec();
        for (axis, start, end, step) in self.resolve(shape)? {
            let len = if step > 0 { (end - start).max(0) as usize } else { (start - end).max(0) as usize };
            s[axis] = len.div_ceil(step.unsigned_abs());
        }
        Ok(s)
    }

    /// The ndarray slices selecting the output from the input.
    fn nd_slices(&self, shape: &[usize]) -> Result<Vec<(usize, NdSlice)>, OpError> {
        Ok(self
            .resolve(shape)?
            .into_iter()
            .map(|(axis, start, end, step)| {
                if step > 0 {
                    (axis, NdSlice::new(start, Some(end.max(start)), step))
                } else {
                    // Walk backwards from `start` (inclusive) down to `end` (exclusive).
                    let lo = end + 1;
                    let hi = start + 1;
                    (axis, NdSlice::new(lo.min(hi), Some(hi), step))
                }
            })
            .collect())
    }
}

fn starts_at(starts: &[i64], i: usize) -> i64 {
    starts[i]
}

impl<T: Element> Op<T> for Slice {
    fn op_type(&self) -> &'static str {
        "Slice"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        Ok(vec![self.output_shape(inputs[0])?])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let mut v = inputs[0].view();
        for (axis, s) in self.nd_slices(inputs[0].shape())? {
            v.slice_axis_inplace(ndarray::Axis(axis), s);
        }
        Ok(Outputs::one(v.to_owned()))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let shape = cx.input_shapes[0];
        let mut dx = Tensor::zeros(IxDyn(shape));
        {
            let mut v = dx.view_mut();
            for (axis, s) in self.nd_slices(shape)? {
                v.slice_axis_inplace(ndarray::Axis(axis), s);
            }
            v.assign(cx.grad()?);
        }
        Ok(vec![Some(dx)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_axis_is_refused() {
        let op = Slice { starts: vec![2, 1], ends: vec![8, 3], axes: Some(vec![0, -1]), steps: None };
        let err = <Slice as Op<f32>>::output_shapes(&op, &[&[10]]).unwrap_err();
        assert!(err.to_string().contains("named twice"), "{err}");
    }
    use crate::ops::testing::{check_vjp, Rng};
    use ndarray::arr1;

    #[test]
    fn matches_numpy_slicing() {
        let x = arr1(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).into_dyn();
        let run = |starts, ends, steps| {
            let s = Slice { starts: vec![starts], ends: vec![ends], axes: None, steps: Some(vec![steps]) };
            Op::<f64>::forward(&s, &[&x]).unwrap().values.remove(0).iter().copied().collect::<Vec<_>>()
        };
        assert_eq!(run(1, 4, 1), vec![1.0, 2.0, 3.0]);
        assert_eq!(run(-2, i64::MAX, 1), vec![4.0, 5.0]);
        assert_eq!(run(0, 6, 2), vec![0.0, 2.0, 4.0]);
        assert_eq!(run(-1, i64::MIN, -1), vec![5.0, 4.0, 3.0, 2.0, 1.0, 0.0]);
        assert_eq!(run(4, 1, -2), vec![4.0, 2.0]);
        assert_eq!(run(3, 1, 1), Vec::<f64>::new());
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(44);
        let s = Slice { starts: vec![1, -3], ends: vec![3, i64::MAX], axes: Some(vec![1, 2]), steps: Some(vec![1, 2]) };
        check_vjp(&s, &[rng.tensor(&[2, 4, 6], -1.0, 1.0)], &[true], 1);
        let r = Slice { starts: vec![-1], ends: vec![i64::MIN], axes: Some(vec![-1]), steps: Some(vec![-1]) };
        check_vjp(&r, &[rng.tensor(&[2, 5], -1.0, 1.0)], &[true], 2);
    }
}
