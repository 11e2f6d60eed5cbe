//! Where: `cond ? x : y` element-wise with numpy broadcasting of all three. Exports use it for masked attention and
//! shape logic; the gradient goes to `x` where the condition holds and to `y` elsewhere (the condition, a boolean,
//! has none).

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{broadcast_shapes, sum_to_shape, Tensor};
use crate::Element;
use ndarray::{IxDyn, Zip};

/// Element-wise selection; a non-zero condition picks `x`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Where;

fn out_shape(inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    arity(inputs, 3, 3)?;
    broadcast_shapes(inputs[0], inputs[1])
        .and_then(|s| broadcast_shapes(&s, inputs[2]))
        .ok_or_else(|| OpError::shape("condition, x and y cannot be broadcast together", inputs))
}

fn spread<'a, T>(t: &'a Tensor<T>, shape: &[usize]) -> Result<ndarray::ArrayViewD<'a, T>, OpError> {
    t.broadcast(IxDyn(shape)).ok_or_else(|| OpError::shape("cannot broadcast", &[t.shape(), shape]))
}

impl<T: Element> Op<T> for Where {
    fn op_type(&self) -> &'static str {
        "Where"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        Ok(vec![out_shape(inputs)?])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let shape = out_shape(&[inputs[0].shape(), inputs[1].shape(), inputs[2].shape()])?;
        let (c, x, y) = (spread(inputs[0], &shape)?, spread(inputs[1], &shape)?, spread(inputs[2], &shape)?);
        Ok(Outputs::one(Zip::from(&c).and(&x).and(&y).map_collect(|&c, &x, &y| if c != T::zero() { x } else { y })))
    }

    /// The condition alone decides where the gradient goes.
    fn saves(&self, wanted: &[bool]) -> Saves {
        let mut inputs = vec![false; wanted.len()];
        inputs[0] = true;
        Saves { inputs, outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let (cond, g) = (cx.input(0)?, cx.grad()?);
        let c = spread(cond, g.shape())?;
        let pick = |take_x: bool| {
            Zip::from(g).and(&c).map_collect(|&g, &c| if (c != T::zero()) == take_x { g } else { T::zero() })
        };
        Ok(vec![
            cx.wants(0).then(|| Tensor::zeros(IxDyn(cx.input_shapes[0]))),
            cx.wants(1).then(|| sum_to_shape(pick(true), cx.input_shapes[1])),
            cx.wants(2).then(|| sum_to_shape(pick(false), cx.input_shapes[2])),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    fn t(shape: &[usize], v: &[f64]) -> Tensor<f64> {
        Tensor::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
    }

    #[test]
    fn selects_with_broadcasting() {
        let cond = t(&[1, 3], &[1.0, 0.0, 1.0]);
        let x = t(&[2, 1], &[10.0, 20.0]);
        let y = t(&[], &[-1.0]);
        let out = Op::<f64>::forward(&Where, &[&cond, &x, &y]).unwrap().values.remove(0);
        assert_eq!(out, t(&[2, 3], &[10.0, -1.0, 10.0, 20.0, -1.0, 20.0]));
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(64);
        let cond = rng.tensor(&[2, 1, 4], -1.0, 1.0).mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
        let inputs = [cond, rng.tensor(&[3, 4], -2.0, 2.0), rng.tensor(&[2, 3, 1], -2.0, 2.0)];
        check_vjp(&Where, &inputs, &[false, true, true], 3);
    }
}
