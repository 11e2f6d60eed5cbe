//! Softmax along one axis (opset-13 semantics), computed stably by subtracting the maximum.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{normalize_axis, Tensor};
use crate::Element;
use ndarray::{Axis, Zip};

/// Softmax along `axis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Softmax {
    pub axis: i64,
}

impl Default for Softmax {
    fn default() -> Self {
        Softmax { axis: -1 }
    }
}

/// The lane's largest value (−∞ for an empty lane): what softmax and log-sum-exp subtract to stay finite.
fn lane_max<'a, T: Element>(lane: impl IntoIterator<Item = &'a T>) -> T {
    lane.into_iter().fold(T::neg_infinity(), |m, &v| if v > m { v } else { m })
}

/// `log Σ exp(v)` over a lane, computed stably as `max + log Σ exp(v − max)` (LogSoftmax, CrossEntropyLoss).
pub(crate) fn log_sum_exp<'a, T: Element>(lane: impl IntoIterator<Item = &'a T> + Clone) -> T {
    let max = lane_max(lane.clone());
    max + lane.into_iter().fold(T::zero(), |s, &v| s + (v - max).exp()).ln()
}

/// Softmax of `x` along `axis`.
pub fn softmax<T: Element>(x: &Tensor<T>, axis: usize) -> Tensor<T> {
    let mut y = x.to_owned();
    for mut lane in y.lanes_mut(Axis(axis)) {
        let max = lane_max(lane.iter());
        lane.mapv_inplace(|v| (v - max).exp());
        let sum = lane.iter().fold(T::zero(), |s, &v| s + v);
        lane.mapv_inplace(|v| v / sum);
    }
    y
}

impl<T: Element> Op<T> for Softmax {
    fn op_type(&self) -> &'static str {
        "Softmax"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        normalize_axis(self.axis, inputs[0].len())?;
        Ok(vec![inputs[0].to_vec()])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        Ok(Outputs::one(softmax(inputs[0], normalize_axis(self.axis, inputs[0].ndim())?)))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: true }
    }

    /// `dx = y ⊙ (g − Σ g·y)`.
    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let (y, g) = (cx.output(0)?, cx.grad()?);
        let axis = Axis(normalize_axis(self.axis, y.ndim())?);
        let dot = (g * y).sum_axis(axis).insert_axis(axis);
        let dot = dot.broadcast(y.raw_dim()).ok_or_else(|| OpError::Invalid("broadcast".into()))?;
        Ok(vec![Some(Zip::from(y).and(g).and(&dot).map_collect(|&y, &g, &d| y * (g - d)))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(25);
        check_vjp(&Softmax { axis: 1 }, &[rng.tensor(&[2, 5, 3], -3.0, 3.0)], &[true], 1);
        check_vjp(&Softmax::default(), &[rng.tensor(&[3, 4], -3.0, 3.0)], &[true], 2);
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let x = ndarray::arr1(&[1000.0f32, 0.0]).into_dyn();
        let y = softmax(&x, 0);
        assert!((y[0] - 1.0).abs() < 1e-6 && y[1] == 0.0);
    }
}
