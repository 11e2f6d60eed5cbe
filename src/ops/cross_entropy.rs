//! CrossEntropyLoss: mean over the batch of `−log softmax(logits)[target]`.
//!
//! Inputs: logits `[N, C]` and targets `[N]` holding class indices (as floats, since the engine has one scalar
//! type). Targets that are not integers in `0..C` are an error naming the offending entry. For graphs that end in a
//! loss; the attacks (`attack::pgd`) need only its gradient at the logits, `softmax − one-hot`, and seed the
//! backward pass with that row directly rather than adding this node to the model's graph.

use super::{arity, softmax::softmax, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{expect_rank, Tensor};
use crate::Element;
use ndarray::{Axis, IxDyn};

/// Softmax cross-entropy with integer class targets, mean reduction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrossEntropyLoss;

fn targets<T: Element>(t: &Tensor<T>, classes: usize) -> Result<Vec<usize>, OpError> {
    t.iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = v.to_f64().unwrap_or(f64::NAN);
            if k.fract() != 0.0 || k < 0.0 || k >= classes as f64 {
                Err(OpError::Invalid(format!("target {i} is {k}, not a class index in 0..{classes}")))
            } else {
                Ok(k as usize)
            }
        })
        .collect()
}

impl<T: Element> Op<T> for CrossEntropyLoss {
    fn op_type(&self) -> &'static str {
        "CrossEntropyLoss"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 2, 2)?;
        expect_rank(inputs[0], 2, "logits", inputs)?;
        if inputs[1] != [inputs[0][0]] {
            return Err(OpError::shape(format!("targets must have shape [{}]", inputs[0][0]), inputs));
        }
        Ok(vec![vec![]])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let (logits, n) = (inputs[0], inputs[0].shape()[0]);
        let t = targets(inputs[1], logits.shape()[1])?;
        let mut total = T::zero();
        for (row, &k) in logits.axis_iter(Axis(0)).zip(&t) {
            total += super::softmax::log_sum_exp(row.iter()) - row[k];
        }
        Ok(Outputs::one(Tensor::from_elem(IxDyn(&[]), total / T::lit(n.max(1) as f64))))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![true; wanted.len()], outputs: false }
    }

    /// `∂L/∂logits = (softmax − onehot(target)) / N`; targets get no gradient.
    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let logits = cx.input(0)?;
        let n = logits.shape()[0];
        let t = targets(cx.input(1)?, logits.shape()[1])?;
        let scale = *cx.grad()?.iter().next().unwrap_or(&T::zero()) / T::lit(n.max(1) as f64);
        let mut p = softmax(logits, 1);
        for (mut row, &k) in p.axis_iter_mut(Axis(0)).zip(&t) {
            row[k] -= T::one();
        }
        Ok(vec![cx.wants(0).then(|| p.mapv(|v| v * scale)), None])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};
    use ndarray::arr1;

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(28);
        let logits = rng.tensor(&[3, 5], -2.0, 2.0);
        check_vjp(&CrossEntropyLoss, &[logits, arr1(&[4.0, 0.0, 2.0]).into_dyn()], &[true, false], 1);
    }

    #[test]
    fn equals_negative_log_probability() {
        let logits = arr1(&[1.0, 2.0, 3.0]).into_shape_with_order(IxDyn(&[1, 3])).unwrap();
        let loss =
            Op::<f64>::forward(&CrossEntropyLoss, &[&logits, &arr1(&[1.0]).into_dyn()]).unwrap().values.remove(0);
        let p = 2f64.exp() / (1f64.exp() + 2f64.exp() + 3f64.exp());
        assert!((loss[[]] + p.ln()).abs() < 1e-12);
    }

    #[test]
    fn invalid_targets_are_errors() {
        let logits = Tensor::<f32>::zeros(IxDyn(&[1, 3]));
        for bad in [3.0, -1.0, 0.5, f32::NAN] {
            assert!(Op::<f32>::forward(&CrossEntropyLoss, &[&logits, &arr1(&[bad]).into_dyn()]).is_err());
        }
    }
}
