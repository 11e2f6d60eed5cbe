//! LogSoftmax along one axis: `x − logsumexp(x)`, computed stably.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{normalize_axis, Tensor};
use crate::Element;
use ndarray::{Axis, Zip};

/// Log-softmax along `axis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogSoftmax {
    pub axis: i64,
}

impl Default for LogSoftmax {
    fn default() -> Self {
        LogSoftmax { axis: -1 }
    }
}

impl<T: Element> Op<T> for LogSoftmax {
    fn op_type(&self) -> &'static str {
        "LogSoftmax"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        normalize_axis(self.axis, inputs[0].len())?;
        Ok(vec![inputs[0].to_vec()])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let axis = normalize_axis(self.axis, inputs[0].ndim())?;
        let mut y = inputs[0].to_owned();
        for mut lane in y.lanes_mut(Axis(axis)) {
            let lse = super::softmax::log_sum_exp(lane.iter());
            lane.mapv_inplace(|v| v - lse);
        }
        Ok(Outputs::one(y))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: true }
    }

    /// `dx = g − softmax(x) · Σ g`, with `softmax(x) = exp(y)`.
    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let (y, g) = (cx.output(0)?, cx.grad()?);
        let axis = Axis(normalize_axis(self.axis, y.ndim())?);
        let total = g.sum_axis(axis).insert_axis(axis);
        let total = total.broadcast(y.raw_dim()).ok_or_else(|| OpError::Invalid("broadcast".into()))?;
        Ok(vec![Some(Zip::from(y).and(g).and(&total).map_collect(|&y, &g, &s| g - y.exp() * s))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(26);
        check_vjp(&LogSoftmax { axis: 1 }, &[rng.tensor(&[2, 5, 3], -3.0, 3.0)], &[true], 1);
    }
}
