//! InstanceNormalization: each (image, channel) plane normalized by its own mean and variance, then scaled and
//! shifted per channel: `y = scale_c · (x − μ_nc) / √(σ²_nc + ε) + bias_c` (style-transfer and some segmentation
//! networks; PyTorch's `InstanceNorm2d(affine=True)`).

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{contiguous, Tensor};
use crate::Element;

/// Instance normalization over every axis after the channel axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstanceNormalization {
    pub epsilon: f64,
}

impl Default for InstanceNormalization {
    fn default() -> Self {
        InstanceNormalization { epsilon: 1e-5 }
    }
}

/// Mean and 1/√(var + ε) (population variance) of one plane — or of one group of a layer normalization.
pub(super) fn plane_stats<T: Element>(plane: &[T], epsilon: f64) -> (T, T) {
    let m = T::lit(plane.len().max(1) as f64);
    let mean = plane.iter().fold(T::zero(), |a, &v| a + v) / m;
    let var = plane.iter().fold(T::zero(), |a, &v| a + (v - mean) * (v - mean)) / m;
    (mean, T::one() / (var + T::lit(epsilon)).sqrt())
}

impl<T: Element> Op<T> for InstanceNormalization {
    fn op_type(&self) -> &'static str {
        "InstanceNormalization"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 3, 3)?;
        if inputs[0].len() < 3 {
            return Err(OpError::shape("input must have rank ≥ 3 ([N, C, …])", inputs));
        }
        let c = inputs[0][1];
        if inputs[1] != [c] || inputs[2] != [c] {
            return Err(OpError::shape(format!("scale and bias must have shape [{c}]"), inputs));
        }
        Ok(vec![inputs[0].to_vec()])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let x = inputs[0];
        let (c, plane) = (x.shape()[1], x.shape()[2..].iter().product::<usize>());
        let src = contiguous(x);
        let mut y = vec![T::zero(); src.len()];
        if plane > 0 {
            for (i, (out, inp)) in y.chunks_mut(plane).zip(src.chunks(plane)).enumerate() {
                let (mean, inv) = plane_stats(inp, self.epsilon);
                let (s, b) = (inputs[1][i % c], inputs[2][i % c]);
                for (o, &v) in out.iter_mut().zip(inp) {
                    *o = (v - mean) * inv * s + b;
                }
            }
        }
        Ok(Outputs::one(Tensor::from_shape_vec(x.raw_dim(), y).map_err(|e| OpError::Invalid(e.to_string()))?))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        let mut inputs = vec![false; wanted.len()];
        inputs.iter_mut().take(2).for_each(|s| *s = true);
        Saves { inputs, outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let (x, scale) = (cx.input(0)?, cx.input(1)?);
        let g = cx.grad()?;
        let (c, plane) = (x.shape()[1], x.shape()[2..].iter().product::<usize>());
        let (xs, gs) = (contiguous(x), contiguous(g));
        let mut gx = vec![T::zero(); xs.len()];
        let (mut g_scale, mut g_bias) = (vec![T::zero(); c], vec![T::zero(); c]);
        if plane > 0 {
            let m = T::lit(plane as f64);
            for (i, ((out, xp), gp)) in gx.chunks_mut(plane).zip(xs.chunks(plane)).zip(gs.chunks(plane)).enumerate() {
                let (mean, inv) = plane_stats(xp, self.epsilon);
                let (mut sum_g, mut sum_gx) = (T::zero(), T::zero());
                for (&v, &gv) in xp.iter().zip(gp) {
                    sum_g += gv;
                    sum_gx += gv * (v - mean) * inv;
                }
                g_scale[i % c] += sum_gx;
                g_bias[i % c] += sum_g;
                // ∂/∂x of scale·x̂: scale·inv·(g − mean(g) − x̂·mean(g·x̂)).
                let k = scale[i % c] * inv;
                for ((o, &v), &gv) in out.iter_mut().zip(xp).zip(gp) {
                    *o = k * (gv - sum_g / m - (v - mean) * inv * sum_gx / m);
                }
            }
        }
        let vec1 =
            |v: Vec<T>| Tensor::from_shape_vec(ndarray::IxDyn(&[c]), v).map_err(|e| OpError::Invalid(e.to_string()));
        Ok(vec![
            if cx.wants(0) {
                Some(Tensor::from_shape_vec(x.raw_dim(), gx).map_err(|e| OpError::Invalid(e.to_string()))?)
            } else {
                None
            },
            if cx.wants(1) { Some(vec1(g_scale)?) } else { None },
            if cx.wants(2) { Some(vec1(g_bias)?) } else { None },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn planes_come_out_standardized() {
        let mut rng = Rng::new(48);
        let x = rng.tensor(&[2, 3, 4, 5], -3.0, 3.0);
        let ones = Tensor::<f64>::from_elem(ndarray::IxDyn(&[3]), 1.0);
        let zeros = Tensor::<f64>::zeros(ndarray::IxDyn(&[3]));
        let y =
            Op::<f64>::forward(&InstanceNormalization { epsilon: 0.0 }, &[&x, &ones, &zeros]).unwrap().values.remove(0);
        let plane: Vec<f64> = y.iter().take(20).copied().collect();
        let mean = plane.iter().sum::<f64>() / 20.0;
        let var = plane.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 20.0;
        assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-9);
    }

    #[test]
    fn vjp_matches_finite_differences_for_input_scale_and_bias() {
        let mut rng = Rng::new(49);
        for shape in [vec![2, 3, 4, 5], vec![1, 2, 7]] {
            let c = shape[1];
            let inputs = [rng.tensor(&shape, -2.0, 2.0), rng.tensor(&[c], 0.5, 1.5), rng.tensor(&[c], -1.0, 1.0)];
            check_vjp(&InstanceNormalization::default(), &inputs, &[true, true, true], 3);
        }
    }
}
