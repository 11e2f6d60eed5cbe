//! Shared machinery for element-wise binary ops with numpy broadcasting.

use crate::error::OpError;
use crate::tensor::{broadcast_shapes, sum_to_shape, Tensor};
use crate::Element;
use ndarray::{IxDyn, Zip};

/// The broadcast output shape of two inputs.
pub(crate) fn output_shape(inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    super::arity(inputs, 2, 2)?;
    broadcast_shapes(inputs[0], inputs[1]).ok_or_else(|| OpError::shape("shapes cannot be broadcast together", inputs))
}

/// Applies `f` element-wise over the broadcast of `a` and `b`.
pub(crate) fn map<T: Element>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> Result<Tensor<T>, OpError> {
    let shape = output_shape(&[a.shape(), b.shape()])?;
    let (av, bv) = (a.broadcast(IxDyn(&shape)), b.broadcast(IxDyn(&shape)));
    let (av, bv) =
        av.zip(bv).ok_or_else(|| OpError::shape("shapes cannot be broadcast together", &[a.shape(), b.shape()]))?;
    Ok(Zip::from(&av).and(&bv).par_map_collect(|&x, &y| f(x, y)))
}

/// The gradient of one operand: `f(grad, a, b)` over the broadcast shape, summed back to the operand's shape.
pub(crate) fn operand_grad<T: Element>(
    grad: &Tensor<T>,
    a: &Tensor<T>,
    b: &Tensor<T>,
    shape: &[usize],
    f: impl Fn(T, T, T) -> T + Sync + Send,
) -> Tensor<T> {
    let out = IxDyn(grad.shape());
    let (av, bv) =
        (a.broadcast(out.clone()).expect("validated in forward"), b.broadcast(out).expect("validated in forward"));
    let full = Zip::from(grad).and(&av).and(&bv).par_map_collect(|&g, &x, &y| f(g, x, y));
    sum_to_shape(full, shape)
}

/// The gradient of one operand from the other alone: `f(grad, other)` over the broadcast shape, summed back to
/// `shape` (the operand's). For rules that read only the other operand (a product's, a quotient's numerator), whose
/// own value need not have been kept.
pub(crate) fn grad_from_other<T: Element>(
    grad: &Tensor<T>,
    other: &Tensor<T>,
    shape: &[usize],
    f: impl Fn(T, T) -> T + Sync + Send,
) -> Result<Tensor<T>, OpError> {
    let ov = other
        .broadcast(IxDyn(grad.shape()))
        .ok_or_else(|| OpError::shape("shapes cannot be broadcast together", &[other.shape(), grad.shape()]))?;
    let full = Zip::from(grad).and(&ov).par_map_collect(|&g, &o| f(g, o));
    Ok(sum_to_shape(full, shape))
}
