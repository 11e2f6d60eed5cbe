//! LRN: local response normalization across channels (AlexNet, GoogLeNet):
//! `y_c = x_c / (bias + alpha/size · Σ_{c' ∈ W(c)} x_{c'}²)^beta`, with `W(c) = [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉]`.

use super::{arity, Op, Outputs, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;
use ndarray::Axis;

/// Cross-channel local response normalization.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lrn {
    pub size: usize,
    pub alpha: f64,
    pub beta: f64,
    pub bias: f64,
}

impl Lrn {
    fn window(&self, c: usize, channels: usize) -> std::ops::Range<usize> {
        let before = (self.size - 1) / 2;
        let after = self.size - 1 - before;
        c.saturating_sub(before)..(c + after + 1).min(channels)
    }

    /// `d_c = bias + alpha/size · Σ x²` for every element.
    fn denominators<T: Element>(&self, x: &Tensor<T>) -> Tensor<T> {
        let channels = x.shape()[1];
        let sq = x.mapv(|v| v * v);
        let mut d = Tensor::from_elem(x.raw_dim(), T::lit(self.bias));
        let k = T::lit(self.alpha / self.size as f64);
        for c in 0..channels {
            let mut dc = d.index_axis_mut(Axis(1), c);
            for c2 in self.window(c, channels) {
                dc.zip_mut_with(&sq.index_axis(Axis(1), c2), |d, &s| *d += k * s);
            }
        }
        d
    }
}

impl<T: Element> Op<T> for Lrn {
    fn op_type(&self) -> &'static str {
        "LRN"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        if inputs[0].len() < 3 {
            return Err(OpError::shape("input must be [N, C, spatial…]", inputs));
        }
        if self.size == 0 {
            return Err(OpError::attribute("size", "must be positive"));
        }
        Ok(vec![inputs[0].to_vec()])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let x = inputs[0];
        let d = self.denominators(x);
        let beta = T::lit(self.beta);
        Ok(Outputs::one(ndarray::Zip::from(x).and(&d).par_map_collect(|&x, &d| x / d.powf(beta))))
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let (x, g) = (cx.input(0)?, cx.grad()?);
        let channels = x.shape()[1];
        let d = self.denominators(x);
        let beta = T::lit(self.beta);
        // dx_i = g_i·d_i^(−β) − 2β·(α/size)·x_i · Σ_{j : i ∈ W(j)} g_j·x_j·d_j^(−β−1)
        let mut dx = ndarray::Zip::from(g).and(&d).par_map_collect(|&g, &d| g * d.powf(-beta));
        let t = ndarray::Zip::from(g).and(x).and(&d).par_map_collect(|&g, &x, &d| g * x * d.powf(-beta - T::one()));
        let k = T::lit(-2.0 * self.beta * self.alpha / self.size as f64);
        for j in 0..channels {
            let tj = t.index_axis(Axis(1), j);
            for i in self.window(j, channels) {
                let xi = x.index_axis(Axis(1), i);
                let mut dxi = dx.index_axis_mut(Axis(1), i);
                ndarray::Zip::from(&mut dxi).and(&xi).and(&tj).for_each(|d, &xv, &tv| *d += k * xv * tv);
            }
        }
        Ok(vec![Some(dx)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences_for_odd_and_even_sizes() {
        let mut rng = Rng::new(10);
        for size in [1, 2, 3, 5] {
            let op = Lrn { size, alpha: 0.3, beta: 0.75, bias: 1.5 };
            check_vjp(&op, &[rng.tensor(&[2, 6, 3, 2], -2.0, 2.0)], &[true], size as u64);
        }
    }
}
