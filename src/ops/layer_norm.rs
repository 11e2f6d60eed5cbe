//! LayerNormalization (ONNX opset 17): each group of the trailing axes from `axis` on is standardized by its own
//! mean and variance, then scaled and shifted element-wise — `y = (x − μ)/√(σ² + ε) · scale + bias`. Every
//! transformer block normalizes its tokens this way (PyTorch's `nn.LayerNorm`).

use super::instance_norm::plane_stats;
use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{broadcast_shapes, contiguous, from_vec, normalize_axis, sum_to_shape, Tensor};
use crate::Element;
use ndarray::IxDyn;
use rayon::prelude::*;

/// Layer normalization over the axes `axis..rank`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormalization {
    pub axis: i64,
    pub epsilon: f64,
}

impl Default for LayerNormalization {
    fn default() -> Self {
        LayerNormalization { axis: -1, epsilon: 1e-5 }
    }
}

impl LayerNormalization {
    /// The normalized (trailing) shape of an input of shape `x`.
    fn normalized<'s>(&self, x: &'s [usize]) -> Result<&'s [usize], OpError> {
        Ok(&x[normalize_axis(self.axis, x.len())?..])
    }
}

/// `v` (scale or bias) broadcast over the normalized shape and flattened: one factor per element of a group.
fn per_element<T: Element>(v: &Tensor<T>, normalized: &[usize]) -> Result<Vec<T>, OpError> {
    let b = v.broadcast(IxDyn(normalized)).ok_or_else(|| {
        OpError::shape("scale and bias must broadcast to the normalized axes", &[v.shape(), normalized])
    })?;
    Ok(b.iter().copied().collect())
}

impl<T: Element> Op<T> for LayerNormalization {
    fn op_type(&self) -> &'static str {
        "LayerNormalization"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 2, 3)?;
        let normalized = self.normalized(inputs[0])?;
        for s in &inputs[1..] {
            if s.len() > normalized.len() || broadcast_shapes(s, normalized).as_deref() != Some(normalized) {
                return Err(OpError::shape(
                    format!("scale and bias must broadcast to the normalized axes {normalized:?}"),
                    inputs,
                ));
            }
        }
        Ok(vec![inputs[0].to_vec()])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let x = inputs[0];
        let normalized = self.normalized(x.shape())?;
        let m = normalized.iter().product::<usize>();
        let scale = per_element(inputs[1], normalized)?;
        let bias = inputs.get(2).map(|b| per_element(b, normalized)).transpose()?;
        let src = contiguous(x);
        let mut y = vec![T::zero(); src.len()];
        if m > 0 {
            y.par_chunks_mut(m).zip(src.par_chunks(m)).for_each(|(out, group)| {
                let (mean, inv) = plane_stats(group, self.epsilon);
                for (k, (o, &v)) in out.iter_mut().zip(group).enumerate() {
                    *o = (v - mean) * inv * scale[k] + bias.as_ref().map_or(T::zero(), |b| b[k]);
                }
            });
        }
        Ok(Outputs::one(from_vec(x.shape(), y)?))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        let mut inputs = vec![false; wanted.len()];
        inputs.iter_mut().take(2).for_each(|s| *s = true);
        Saves { inputs, outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let (x, scale_t) = (cx.input(0)?, cx.input(1)?);
        let g = cx.grad()?;
        let normalized = self.normalized(x.shape())?;
        let m = normalized.iter().product::<usize>();
        let scale = per_element(scale_t, normalized)?;
        let (xs, gs) = (contiguous(x), contiguous(g));
        let mut gx = vec![T::zero(); xs.len()];
        let (mut g_scale, mut g_bias) = (vec![T::zero(); m], vec![T::zero(); m]);
        if m > 0 {
            let mf = T::lit(m as f64);
            // Groups in order (the scale and bias sums must not depend on the thread count).
            for ((out, xg), gg) in gx.chunks_mut(m).zip(xs.chunks(m)).zip(gs.chunks(m)) {
                let (mean, inv) = plane_stats(xg, self.epsilon);
                let (mut sum_d, mut sum_dx) = (T::zero(), T::zero());
                for k in 0..m {
                    let xhat = (xg[k] - mean) * inv;
                    g_scale[k] += gg[k] * xhat;
                    g_bias[k] += gg[k];
                    let d = gg[k] * scale[k];
                    sum_d += d;
                    sum_dx += d * xhat;
                }
                // ∂/∂x of x̂ for the gradient d = g·scale of x̂: inv·(d − mean(d) − x̂·mean(d·x̂)).
                for k in 0..m {
                    let xhat = (xg[k] - mean) * inv;
                    out[k] = inv * (gg[k] * scale[k] - sum_d / mf - xhat * sum_dx / mf);
                }
            }
        }
        let reduce = |v: Vec<T>, i: usize| -> Result<Tensor<T>, OpError> {
            Ok(sum_to_shape(from_vec(normalized, v)?, cx.input_shapes[i]))
        };
        Ok(vec![
            if cx.wants(0) { Some(from_vec(x.shape(), gx)?) } else { None },
            if cx.wants(1) { Some(reduce(g_scale, 1)?) } else { None },
            if cx.wants(2) { Some(reduce(g_bias, 2)?) } else { None },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn groups_come_out_standardized_then_scaled() {
        // Closed form: a group [1, 2, 3] has mean 2 and variance 2/3, so x̂ = [−√1.5, 0, √1.5].
        let x = from_vec(&[1, 2, 3], vec![1.0, 2.0, 3.0, 10.0, 10.0, 13.0]).unwrap();
        let scale = from_vec(&[3], vec![1.0, 2.0, 3.0]).unwrap();
        let bias = from_vec(&[3], vec![0.5, 0.0, -0.5]).unwrap();
        let ln = LayerNormalization { axis: -1, epsilon: 0.0 };
        let y = Op::<f64>::forward(&ln, &[&x, &scale, &bias]).unwrap().values.remove(0);
        let r = 1.5f64.sqrt();
        let want = [0.5 - r, 0.0, 3.0 * r - 0.5, 0.5 - 1.0 / 2f64.sqrt(), -2.0 / 2f64.sqrt(), 3.0 * 2f64.sqrt() - 0.5];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{y:?}");
        }
        assert_eq!(y.len(), want.len());
    }

    #[test]
    fn vjp_matches_finite_differences_for_input_scale_and_bias() {
        let mut rng = Rng::new(63);
        // Last axis (transformer tokens), two trailing axes, and a scale broadcast along the first of them.
        for (shape, axis, param) in
            [(vec![2, 5, 6], -1, vec![6]), (vec![2, 3, 4], 1, vec![3, 4]), (vec![2, 3, 4], -2, vec![4])]
        {
            let ln = LayerNormalization { axis, epsilon: 1e-5 };
            let inputs = [rng.tensor(&shape, -2.0, 2.0), rng.tensor(&param, 0.5, 1.5), rng.tensor(&param, -1.0, 1.0)];
            check_vjp(&ln, &inputs, &[true, true, true], 3);
        }
    }

    #[test]
    fn bias_is_optional_and_shapes_are_checked() {
        let ln = LayerNormalization::default();
        assert_eq!(Op::<f32>::output_shapes(&ln, &[&[1, 4, 8], &[8]]).unwrap(), vec![vec![1, 4, 8]]);
        assert!(Op::<f32>::output_shapes(&ln, &[&[1, 4, 8], &[4]]).is_err());
        assert!(Op::<f32>::output_shapes(&ln, &[&[1, 4, 8], &[2, 8]]).is_err());
    }
}
