//! Gather whose indices are computed at run time (an Embedding: token ids → rows of a table). The indices arrive
//! as the engine's float values; each must be a whole number within the axis (negative ones count from the end).
//! The table's gradient scatters back as for [`Gather`]; the indices have none.

use super::gather::Gather;
use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;
use ndarray::IxDyn;

/// Gather along `axis` with the indices as the second input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatherRuntime {
    pub axis: i64,
}

impl GatherRuntime {
    /// The constant-index Gather these indices make.
    fn with<T: Element>(&self, indices: &Tensor<T>) -> Result<Gather, OpError> {
        let values = indices
            .iter()
            .map(|&v| {
                let f = v.to_f64().unwrap_or(f64::NAN);
                if f.is_finite() && f.fract() == 0.0 && f.abs() < (1u64 << 53) as f64 {
                    Ok(f as i64)
                } else {
                    Err(OpError::Invalid(format!("index {f} is not a whole number")))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Gather { axis: self.axis, indices: values, index_shape: indices.shape().to_vec() })
    }
}

impl<T: Element> Op<T> for GatherRuntime {
    fn op_type(&self) -> &'static str {
        "Gather"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 2, 2)?;
        let (x, idx) = (inputs[0], inputs[1]);
        let axis = crate::tensor::normalize_axis(self.axis, x.len())?;
        let mut s = x[..axis].to_vec();
        s.extend_from_slice(idx);
        s.extend_from_slice(&x[axis + 1..]);
        Ok(vec![s])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        Op::<T>::forward(&self.with(inputs[1])?, &[inputs[0]])
    }

    /// The indices say where the gradient goes.
    fn saves(&self, wanted: &[bool]) -> Saves {
        let mut inputs = vec![false; wanted.len()];
        inputs[1] = true;
        Saves { inputs, outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let gather = self.with(cx.input(1)?)?;
        let inner = Vjp {
            inputs: vec![None],
            input_shapes: vec![cx.input_shapes[0]],
            outputs: vec![],
            saved: None,
            output_grads: cx.output_grads.clone(),
            wanted: &[true],
        };
        let dx = if cx.wants(0) { Op::<T>::backward(&gather, &inner)?.remove(0) } else { None };
        let di = cx.wants(1).then(|| Tensor::zeros(IxDyn(cx.input_shapes[1])));
        Ok(vec![dx, di])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn rows_of_a_table_by_run_time_ids() {
        let table = Tensor::from_shape_vec(IxDyn(&[3, 2]), vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0]).unwrap();
        let ids = Tensor::from_shape_vec(IxDyn(&[2, 2]), vec![2.0, 0.0, -1.0, 1.0]).unwrap();
        let y = Op::<f64>::forward(&GatherRuntime { axis: 0 }, &[&table, &ids]).unwrap().values.remove(0);
        assert_eq!(y.shape(), [2, 2, 2]);
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), [20.0, 21.0, 0.0, 1.0, 20.0, 21.0, 10.0, 11.0]);
        for bad in [0.5, 3.0, f64::NAN] {
            let ids = Tensor::from_elem(IxDyn(&[1]), bad);
            assert!(Op::<f64>::forward(&GatherRuntime { axis: 0 }, &[&table, &ids]).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_gradient_matches_finite_differences_with_repeated_ids() {
        let mut rng = Rng::new(73);
        let ids = Tensor::from_shape_vec(IxDyn(&[4]), vec![1.0, 3.0, 1.0, 0.0]).unwrap();
        check_vjp(&GatherRuntime { axis: 0 }, &[rng.tensor(&[4, 3], -1.0, 1.0), ids], &[true, false], 3);
    }
}
