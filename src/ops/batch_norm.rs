//! BatchNormalization (inference): `y = (x − mean) / √(var + ε) · scale + bias` per channel (axis 1).
//! Inputs: `x [N, C, …]`, `scale`, `bias`, `mean`, `var` (each `[C]`).

use super::{arity, Fusable, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{contiguous, Tensor};
use crate::Element;
use ndarray::{Axis, IxDyn};
use rayon::prelude::*;

/// Elements per task of the in-place input gradient (small planes are grouped: a 7×7 layer is not 1000 tasks).
const ELEMENTS_PER_TASK: usize = 16 * 1024;

/// Inference-mode batch normalization.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormalization {
    pub epsilon: f64,
}

impl Default for BatchNormalization {
    fn default() -> Self {
        BatchNormalization { epsilon: 1e-5 }
    }
}

/// A `[C]` vector reshaped to broadcast along axis 1 of a rank-`rank` tensor.
fn per_channel<T: Element>(v: &Tensor<T>, rank: usize) -> Tensor<T> {
    let mut shape = vec![1; rank];
    shape[1] = v.len();
    v.to_owned().into_shape_with_order(IxDyn(&shape)).expect("validated [C] vector")
}

/// Sums over every axis but 1.
fn sum_per_channel<T: Element>(t: Tensor<T>) -> Tensor<T> {
    let mut t = t;
    while t.ndim() > 2 {
        t = t.sum_axis(Axis(t.ndim() - 1));
    }
    t.sum_axis(Axis(0))
}

impl BatchNormalization {
    /// `a = scale · 1/√(var + ε)` per channel, in PyTorch's order of operations: the factor of `x` in the forward
    /// pass and of the output gradient in the input gradient.
    fn scale_per_channel<T: Element>(&self, scale: &Tensor<T>, var: &Tensor<T>) -> Vec<T> {
        let eps = T::lit(self.epsilon);
        var.iter().zip(scale).map(|(&v, &s)| (T::one() / (v + eps).sqrt()) * s).collect()
    }

    fn inv_std<T: Element>(&self, var: &Tensor<T>, rank: usize) -> Tensor<T> {
        per_channel(&var.mapv(|v| T::one() / (v + T::lit(self.epsilon)).sqrt()), rank)
    }
}

impl<T: Element> Op<T> for BatchNormalization {
    fn op_type(&self) -> &'static str {
        "BatchNormalization"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 5, 5)?;
        if inputs[0].len() < 2 {
            return Err(OpError::shape("input must have rank ≥ 2 (channels on axis 1)", inputs));
        }
        let c = inputs[0][1];
        if inputs[1..].iter().any(|s| *s != [c]) {
            return Err(OpError::shape(format!("scale, bias, mean and var must all have shape [{c}]"), inputs));
        }
        Ok(vec![inputs[0].to_vec()])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let x = inputs[0];
        let c = x.shape()[1];
        // y = x·a + b per channel with a = scale·(1/√(var + ε)), b = bias − mean·a (PyTorch's order of operations, so
        // that rounding matches); one pass over contiguous planes.
        let a = self.scale_per_channel(inputs[1], inputs[4]);
        let b: Vec<T> = (0..c).map(|k| inputs[2][k] - inputs[3][k] * a[k]).collect();
        let plane: usize = x.shape()[2..].iter().product();
        let src = contiguous(x);
        let mut y = vec![T::zero(); src.len()];
        if plane > 0 {
            y.par_chunks_mut(plane).zip(src.par_chunks(plane)).enumerate().for_each(|(i, (out, inp))| {
                let (ak, bk) = (a[i % c], b[i % c]);
                for (o, &v) in out.iter_mut().zip(inp) {
                    *o = v * ak + bk;
                }
            });
        }
        Ok(Outputs::one(Tensor::from_shape_vec(x.raw_dim(), y).map_err(|e| OpError::Invalid(e.to_string()))?))
    }

    /// The input gradient reads only scale and variance; `x` and the mean are kept only when the scale or the
    /// variance need a gradient. Without this, a saliency pass would keep every convolution output alive.
    fn saves(&self, wanted: &[bool]) -> Saves {
        let w = |i: usize| wanted.get(i).copied().unwrap_or(false);
        let needs_xhat = w(1) || w(4);
        Saves { inputs: vec![needs_xhat, true, false, needs_xhat, true], outputs: false }
    }

    fn fusion(&self) -> Option<Fusable> {
        Some(Fusable::BatchNorm { epsilon: self.epsilon })
    }

    /// `g · a` per channel, `a = scale / √(var + ε)`, as [`Op::backward`] computes it (bit-identical), in place:
    /// one pass over the gradient instead of a broadcast product into a new tensor.
    fn input_gradient_in_place(&self, cx: &Vjp<'_, T>, g: &mut Tensor<T>) -> Option<Result<(), OpError>> {
        let (scale, var) = (cx.input(1).ok()?, cx.input(4).ok()?);
        let channels = *g.shape().get(1)?;
        if !g.is_standard_layout() || scale.len() != channels || var.len() != channels {
            return None;
        }
        let a = self.scale_per_channel(scale, var);
        let plane: usize = g.shape()[2..].iter().product();
        let xs = g.as_slice_mut()?;
        if plane > 0 {
            xs.par_chunks_mut(plane).with_min_len(ELEMENTS_PER_TASK.div_ceil(plane)).enumerate().for_each(|(i, p)| {
                let ak = a[i % channels];
                p.iter_mut().for_each(|v| *v *= ak);
            });
        }
        Some(Ok(()))
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let g = cx.grad()?;
        let r = g.ndim();
        let (scale, var) = (cx.input(1)?, cx.input(4)?);
        let inv = self.inv_std(var, r);
        let mut grads = vec![None; 5];
        if cx.wants(0) {
            grads[0] = Some(g * &(&inv * &per_channel(scale, r)));
        }
        if cx.wants(1) || cx.wants(4) {
            let (x, mean) = (cx.input(0)?, cx.input(3)?);
            let xhat = (x - &per_channel(mean, r)) * &inv;
            let g_xhat = sum_per_channel(g * &xhat);
            if cx.wants(4) {
                // ∂y/∂var = scale · (x − mean) · (−½)(var + ε)^(−3/2) = −½ · scale · x̂ / (var + ε)
                let inv_flat = var.mapv(|v| T::one() / (v + T::lit(self.epsilon)));
                grads[4] = Some((&g_xhat * scale * &inv_flat).mapv(|v| v * T::lit(-0.5)));
            }
            if cx.wants(1) {
                grads[1] = Some(g_xhat);
            }
        }
        if cx.wants(2) {
            grads[2] = Some(sum_per_channel(g.clone()));
        }
        if cx.wants(3) {
            let inv_flat = var.mapv(|v| T::one() / (v + T::lit(self.epsilon)).sqrt());
            grads[3] = Some((sum_per_channel(g.clone()) * scale * &inv_flat).mapv(|v| -v));
        }
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    /// `x` of `shape` and positive scales and variances for its channels (axis 1).
    fn random_inputs(rng: &mut Rng, shape: &[usize]) -> [Tensor<f64>; 5] {
        let c = shape[1];
        [
            rng.tensor(shape, -2.0, 2.0),
            rng.tensor(&[c], 0.5, 1.5),
            rng.tensor(&[c], -1.0, 1.0),
            rng.tensor(&[c], -0.5, 0.5),
            rng.tensor(&[c], 0.5, 2.0),
        ]
    }

    #[test]
    fn vjp_matches_finite_differences_for_input_and_all_parameters() {
        let mut rng = Rng::new(6);
        for shape in [vec![2, 3, 4, 5], vec![3, 4]] {
            let inputs = random_inputs(&mut rng, &shape);
            check_vjp(&BatchNormalization { epsilon: 1e-3 }, &inputs, &[true; 5], 3);
        }
    }

    #[test]
    fn in_place_input_gradient_equals_the_rule_bit_for_bit() {
        let mut rng = Rng::new(7);
        // Planes of 1 (rank 2), odd sizes, and enough 7×7 planes that tasks group several of them.
        for shape in [vec![2, 3, 4, 5], vec![3, 4], vec![1, 5, 7], vec![2, 400, 7, 7]] {
            let inputs = random_inputs(&mut rng, &shape);
            let g = rng.tensor(&shape, -1.0, 1.0);
            let op = BatchNormalization { epsilon: 1e-3 };
            let wanted = [true, false, false, false, false];
            let kept = Op::<f64>::saves(&op, &wanted).inputs;
            let cx = |output_grads| Vjp {
                inputs: inputs.iter().zip(&kept).map(|(t, &k)| k.then_some(t)).collect(),
                input_shapes: inputs.iter().map(|t| t.shape()).collect(),
                outputs: vec![None],
                saved: None,
                output_grads,
                wanted: &wanted,
            };
            let rule = op.backward(&cx(vec![Some(&g)])).unwrap().remove(0).unwrap();
            let mut in_place = g.clone();
            op.input_gradient_in_place(&cx(vec![None]), &mut in_place).expect("applies").unwrap();
            assert_eq!(rule, in_place, "{shape:?}");
        }
    }
}
