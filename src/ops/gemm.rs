//! Gemm: `Y = alpha · A' · B' + beta · C` with `A' = transA ? Aᵀ : A` (likewise `B'`), `C` broadcast to `Y`.
//! A PyTorch `Linear` layer is `Gemm { trans_b: true, .. }` with the weight `[out, in]` as `B`.

use super::thin_matmul::matmul;
use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{broadcast_shapes, expect_rank, sum_to_shape, Tensor};
use crate::Element;
use ndarray::{Ix2, IxDyn};

/// General matrix multiply.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub alpha: f64,
    pub beta: f64,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Default for Gemm {
    fn default() -> Self {
        Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false }
    }
}

impl Gemm {
    /// `x · Wᵀ + b`, PyTorch's `nn.Linear`.
    pub fn linear() -> Self {
        Gemm { trans_b: true, ..Gemm::default() }
    }
}

fn as2<T: Element>(t: &Tensor<T>) -> Result<ndarray::ArrayView2<'_, T>, OpError> {
    t.view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| OpError::Invalid(format!("expected a matrix, got shape {:?}", t.shape())))
}

impl<T: Element> Op<T> for Gemm {
    fn op_type(&self) -> &'static str {
        "Gemm"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 2, 3)?;
        expect_rank(inputs[0], 2, "A", inputs)?;
        expect_rank(inputs[1], 2, "B", inputs)?;
        let (m, ka) = if self.trans_a { (inputs[0][1], inputs[0][0]) } else { (inputs[0][0], inputs[0][1]) };
        let (kb, n) = if self.trans_b { (inputs[1][1], inputs[1][0]) } else { (inputs[1][0], inputs[1][1]) };
        if ka != kb {
            return Err(OpError::shape(
                format!("inner dimensions differ ({ka} vs {kb}) with transA={}, transB={}", self.trans_a, self.trans_b),
                inputs,
            ));
        }
        if let Some(c) = inputs.get(2) {
            if broadcast_shapes(c, &[m, n]).as_deref() != Some(&[m, n][..]) {
                return Err(OpError::shape(format!("C must broadcast to [{m}, {n}]"), inputs));
            }
        }
        Ok(vec![vec![m, n]])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let (a, b) = (as2(inputs[0])?, as2(inputs[1])?);
        let a = if self.trans_a { a.t() } else { a };
        let b = if self.trans_b { b.t() } else { b };
        let alpha = T::lit(self.alpha);
        let mut y = matmul(&a, &b);
        if alpha != T::one() {
            y.mapv_inplace(|v| v * alpha);
        }
        if let Some(c) = inputs.get(2) {
            let c = c.broadcast(IxDyn(y.shape())).ok_or_else(|| OpError::Invalid("C does not broadcast".into()))?;
            y.zip_mut_with(&c.into_dimensionality::<Ix2>().map_err(|e| OpError::Invalid(e.to_string()))?, |y, &c| {
                *y += T::lit(self.beta) * c
            });
        }
        Ok(Outputs::one(y.into_dyn()))
    }

    fn fusion(&self) -> Option<super::Fusable> {
        Some(super::Fusable::Linear(*self))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        let mut inputs = vec![wanted[1], wanted[0]];
        inputs.resize(wanted.len(), false);
        Saves { inputs, outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let g = as2(cx.grad()?)?;
        let alpha = T::lit(self.alpha);
        let mut grads = vec![None; cx.input_shapes.len()];
        if cx.wants(0) {
            // dA' = α·G·B'ᵀ
            let b = as2(cx.input(1)?)?;
            let bp = if self.trans_b { b.t() } else { b };
            let mut da = matmul(&g, &bp.t());
            if alpha != T::one() {
                da.mapv_inplace(|v| v * alpha);
            }
            grads[0] = Some(if self.trans_a { da.t().to_owned() } else { da }.into_dyn());
        }
        if cx.wants(1) {
            // dB' = α·A'ᵀ·G
            let a = as2(cx.input(0)?)?;
            let ap = if self.trans_a { a.t() } else { a };
            let db = ap.t().dot(&g).mapv(|v| v * alpha);
            grads[1] = Some(if self.trans_b { db.t().to_owned() } else { db }.into_dyn());
        }
        if cx.wants(2) {
            let beta = T::lit(self.beta);
            let dc = g.mapv(|v| v * beta).into_dyn();
            grads[2] = Some(
                sum_to_shape(dc, cx.input_shapes[2])
                    .into_shape_with_order(IxDyn(cx.input_shapes[2]))
                    .map_err(|e| OpError::Invalid(e.to_string()))?,
            );
        }
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences_for_all_transpositions() {
        let mut rng = Rng::new(5);
        for (ta, tb, c) in
            [(false, false, vec![4]), (true, false, vec![3, 4]), (false, true, vec![3, 1]), (true, true, vec![])]
        {
            let op = Gemm { alpha: 0.7, beta: 1.3, trans_a: ta, trans_b: tb };
            let a = rng.tensor(if ta { &[5, 3] } else { &[3, 5] }, -1.0, 1.0);
            let b = rng.tensor(if tb { &[4, 5] } else { &[5, 4] }, -1.0, 1.0);
            check_vjp(&op, &[a, b, rng.tensor(&c, -1.0, 1.0)], &[true, true, true], 9);
        }
    }

    #[test]
    fn inner_dimension_mismatch_names_shapes() {
        let err = Op::<f32>::output_shapes(&Gemm::linear(), &[&[1, 512], &[1000, 256]]).unwrap_err().to_string();
        assert!(err.contains("[1, 512]") && err.contains("[1000, 256]"), "{err}");
    }
}
