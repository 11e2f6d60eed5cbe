//! MatMul: numpy `matmul` — rank-1 operands are promoted, leading (batch) dimensions broadcast.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{broadcast_shapes, sum_to_shape, Tensor};
use crate::Element;
use ndarray::{Axis, Ix3, IxDyn};

/// Batched matrix product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatMul;

/// Shapes of the operands as (possibly promoted) matrices, and the shape of the result.
struct Layout {
    a: Vec<usize>,
    b: Vec<usize>,
    batch: Vec<usize>,
    out: Vec<usize>,
}

fn layout(inputs: &[&[usize]]) -> Result<Layout, OpError> {
    arity(inputs, 2, 2)?;
    let (a0, b0) = (inputs[0], inputs[1]);
    if a0.is_empty() || b0.is_empty() {
        return Err(OpError::shape("operands must have rank ≥ 1", inputs));
    }
    let a = if a0.len() == 1 { vec![1, a0[0]] } else { a0.to_vec() };
    let b = if b0.len() == 1 { vec![b0[0], 1] } else { b0.to_vec() };
    let (m, ka) = (a[a.len() - 2], a[a.len() - 1]);
    let (kb, n) = (b[b.len() - 2], b[b.len() - 1]);
    if ka != kb {
        return Err(OpError::shape(format!("inner dimensions differ ({ka} vs {kb})"), inputs));
    }
    let batch = broadcast_shapes(&a[..a.len() - 2], &b[..b.len() - 2])
        .ok_or_else(|| OpError::shape("batch dimensions cannot be broadcast", inputs))?;
    let mut out = batch.clone();
    if a0.len() > 1 {
        out.push(m);
    }
    if b0.len() > 1 {
        out.push(n);
    }
    Ok(Layout { a, b, batch, out })
}

/// `x` broadcast to `batch ++ mat` and reshaped to `[B, rows, cols]`.
fn batched<T: Element>(x: &Tensor<T>, promoted: &[usize], batch: &[usize]) -> Result<ndarray::Array3<T>, OpError> {
    let full: Vec<usize> = batch.iter().chain(&promoted[promoted.len() - 2..]).copied().collect();
    let view = x.view().into_shape_with_order(IxDyn(promoted)).map_err(|e| OpError::Invalid(e.to_string()))?;
    let b = view.broadcast(IxDyn(&full)).ok_or_else(|| OpError::Invalid("broadcast failed".into()))?;
    let count = batch.iter().product::<usize>();
    b.as_standard_layout()
        .into_owned()
        .into_shape_with_order(Ix3(count, full[full.len() - 2], full[full.len() - 1]))
        .map_err(|e| OpError::Invalid(e.to_string()))
}

fn bmm<T: Element>(a: &ndarray::Array3<T>, b: &ndarray::Array3<T>, ta: bool, tb: bool) -> ndarray::Array3<T> {
    let mats: Vec<ndarray::Array2<T>> = a
        .outer_iter()
        .zip(b.outer_iter())
        .map(|(x, y)| {
            let x = if ta { x.t() } else { x };
            let y = if tb { y.t() } else { y };
            super::thin_matmul::matmul(&x, &y)
        })
        .collect();
    let views: Vec<_> = mats.iter().map(|m| m.view()).collect();
    ndarray::stack(Axis(0), &views).expect("equal shapes")
}

impl<T: Element> Op<T> for MatMul {
    fn op_type(&self) -> &'static str {
        "MatMul"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        Ok(vec![layout(inputs)?.out])
    }

    fn fusion(&self) -> Option<super::Fusable> {
        Some(super::Fusable::Linear(super::Gemm { alpha: 1.0, beta: 0.0, trans_a: false, trans_b: false }))
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let l = layout(&[inputs[0].shape(), inputs[1].shape()])?;
        let y = bmm(&batched(inputs[0], &l.a, &l.batch)?, &batched(inputs[1], &l.b, &l.batch)?, false, false);
        Ok(Outputs::one(y.into_shape_with_order(IxDyn(&l.out)).map_err(|e| OpError::Invalid(e.to_string()))?))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![wanted[1], wanted[0]], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let l = layout(&cx.input_shapes)?;
        let count = l.batch.iter().product::<usize>();
        let (m, n) = (l.a[l.a.len() - 2], l.b[l.b.len() - 1]);
        let g = cx
            .grad()?
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(Ix3(count, m, n))
            .map_err(|e| OpError::Invalid(e.to_string()))?;
        let reduce = |full: ndarray::Array3<T>, promoted: &[usize], original: &[usize]| -> Result<Tensor<T>, OpError> {
            let shape: Vec<usize> = l.batch.iter().chain(&promoted[promoted.len() - 2..]).copied().collect();
            let full = full.into_shape_with_order(IxDyn(&shape)).map_err(|e| OpError::Invalid(e.to_string()))?;
            sum_to_shape(full, promoted)
                .into_shape_with_order(IxDyn(original))
                .map_err(|e| OpError::Invalid(e.to_string()))
        };
        let mut grads = vec![None, None];
        if cx.wants(0) {
            let b = batched(cx.input(1)?, &l.b, &l.batch)?;
            grads[0] = Some(reduce(bmm(&g, &b, false, true), &l.a, cx.input_shapes[0])?);
        }
        if cx.wants(1) {
            let a = batched(cx.input(0)?, &l.a, &l.batch)?;
            grads[1] = Some(reduce(bmm(&a, &g, true, false), &l.b, cx.input_shapes[1])?);
        }
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences_with_promotion_and_broadcast() {
        let mut rng = Rng::new(8);
        let cases: [(&[usize], &[usize]); 5] = [
            (&[3, 4], &[4, 2]),
            (&[2, 3, 4], &[4, 5]),
            (&[4], &[2, 4, 3]),
            (&[2, 1, 3, 4], &[3, 4, 2]),
            (&[3, 4], &[4]),
        ];
        for (a, b) in cases {
            check_vjp(&MatMul, &[rng.tensor(a, -1.0, 1.0), rng.tensor(b, -1.0, 1.0)], &[true, true], 4);
        }
    }

    #[test]
    fn output_shape_follows_numpy() {
        let s = Op::<f32>::output_shapes(&MatMul, &[&[2, 1, 3, 4], &[5, 4, 6]]).unwrap();
        assert_eq!(s, vec![vec![2, 5, 3, 6]]);
        assert!(Op::<f32>::output_shapes(&MatMul, &[&[3, 4], &[5, 6]]).is_err());
    }
}
