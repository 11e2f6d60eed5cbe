//! Matrix products with a weight held in 16 bits, run without widening the weight whole.
//!
//! A classifier's `Gemm`/`MatMul` weight is the largest tensor of many models (VGG-16: 411 MB in f32). Where it is
//! held in f16/bf16, the forward product and the input gradient (what Grad-CAM, saliency and the attacks need) read
//! it row by row through `gradcam_kernels::stored_matmul`, widening a few KB at a time. Anything else — a gradient
//! for the weight itself, a transposed `A`, operands that are not matrices — runs the op's own rule on a widened
//! copy (the reference these paths are tested against).

use super::fuse::{f32_view, from_f32};
use super::{Graph, Node};
use crate::error::{GraphError, GraphResult as Result, OpError};
use crate::ops::{Fusable, Gemm};
use crate::tensor::{contiguous, HalfTensor, Tensor};
use crate::Element;
use gradcam_kernels::stored_matmul;
use ndarray::IxDyn;

impl<T: Element> Graph<T> {
    /// The product attributes and 16-bit weight of `node`, where the stored path applies: an f32 graph, a
    /// `Gemm`/`MatMul` whose `B` is a 16-bit constant matrix and whose `A` is not transposed.
    pub(super) fn stored_linear(&self, node: &Node<T>) -> Option<(Gemm, &HalfTensor)> {
        let Some(Fusable::Linear(gemm)) = node.op.fusion() else { return None };
        let w = self.half_constant(*node.inputs.get(1)?)?;
        let a_is_matrix = self.values[node.inputs[0].0].shape.len() == 2;
        (super::fuse::is_f32::<T>() && !gemm.trans_a && w.shape().len() == 2 && a_is_matrix).then_some((gemm, w))
    }

    /// The forward pass of `node` on its 16-bit weight, or `None` where the stored path does not apply.
    pub(super) fn stored_linear_forward(
        &self,
        node: &Node<T>,
        a: &Tensor<T>,
        c: Option<&Tensor<T>>,
    ) -> Option<Result<Tensor<T>>> {
        let (gemm, w) = self.stored_linear(node)?;
        let wrap = |source| GraphError::Op { node: node.name.clone(), op: node.op.op_type(), source };
        let run = || -> std::result::Result<Tensor<T>, OpError> {
            // The plan chose this path from the declared rank: a run-time value of another rank is an error here
            // (the caller has no widened weight to fall back on).
            if a.ndim() != 2 {
                return Err(OpError::Invalid(format!("expected a matrix, got shape {:?}", a.shape())));
            }
            let a32 = f32_view(a).ok_or_else(not_f32)?;
            let (m, k) = (a.shape()[0], a.shape()[1]);
            let (rows, cols) = (w.shape()[0], w.shape()[1]);
            let (y, n) = if gemm.trans_b {
                check_inner(k, cols)?;
                (stored_matmul::matmul_transposed(&contiguous(a32), m, w.values(), rows, cols), rows)
            } else {
                check_inner(k, rows)?;
                (stored_matmul::matmul(&contiguous(a32), m, w.values(), rows, cols), cols)
            };
            let mut y = Tensor::from_shape_vec(IxDyn(&[m, n]), y).map_err(|e| OpError::Invalid(e.to_string()))?;
            if gemm.alpha != 1.0 {
                let alpha = gemm.alpha as f32;
                y.mapv_inplace(|v| v * alpha);
            }
            if let Some(c) = c {
                let c = f32_view(c).ok_or_else(not_f32)?;
                let c = c.broadcast(IxDyn(&[m, n])).ok_or_else(|| OpError::Invalid("C does not broadcast".into()))?;
                let beta = gemm.beta as f32;
                y.zip_mut_with(&c, |y, &c| *y += beta * c);
            }
            from_f32(y).ok_or_else(not_f32)
        };
        Some(run().map_err(wrap))
    }

    /// `∂L/∂A` of `node` on its 16-bit weight given `∂L/∂Y`, or `None` where the stored path does not apply.
    pub(super) fn stored_linear_input_gradient(
        &self,
        node: &Node<T>,
        grad_output: &Tensor<T>,
    ) -> Option<Result<Tensor<T>>> {
        let (gemm, w) = self.stored_linear(node)?;
        if grad_output.ndim() != 2 {
            return None;
        }
        let wrap = |source| GraphError::Op { node: node.name.clone(), op: node.op.op_type(), source };
        let run = || -> std::result::Result<Tensor<T>, OpError> {
            let g = contiguous(f32_view(grad_output).ok_or_else(not_f32)?);
            let (m, n) = (grad_output.shape()[0], grad_output.shape()[1]);
            let (rows, cols) = (w.shape()[0], w.shape()[1]);
            // dA = α·G·B'ᵀ: with B' = Wᵀ that is G·W; with B' = W, G·Wᵀ.
            let (da, k) = if gemm.trans_b {
                check_inner(n, rows)?;
                (stored_matmul::matmul(&g, m, w.values(), rows, cols), cols)
            } else {
                check_inner(n, cols)?;
                (stored_matmul::matmul_transposed(&g, m, w.values(), rows, cols), rows)
            };
            let mut da = Tensor::from_shape_vec(IxDyn(&[m, k]), da).map_err(|e| OpError::Invalid(e.to_string()))?;
            if gemm.alpha != 1.0 {
                let alpha = gemm.alpha as f32;
                da.mapv_inplace(|v| v * alpha);
            }
            from_f32(da).ok_or_else(not_f32)
        };
        Some(run().map_err(wrap))
    }
}

fn check_inner(a: usize, b: usize) -> std::result::Result<(), OpError> {
    if a == b {
        Ok(())
    } else {
        Err(OpError::Invalid(format!("inner dimensions differ ({a} vs {b})")))
    }
}

fn not_f32() -> OpError {
    OpError::Invalid("16-bit weights on a non-f32 graph".into())
}
