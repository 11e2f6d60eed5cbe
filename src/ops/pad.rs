//! Pad: constant, reflect or edge padding of any axes (`pads` = all begins, then all ends, ONNX order).
//! TF-style "SAME" padding in exported EfficientNets arrives as this op.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;
use ndarray::{Axis, IxDyn};

/// Padding mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PadMode {
    #[default]
    Constant,
    /// Mirror without repeating the border (`[1 2 3] → 3 2 [1 2 3] 2 1`).
    Reflect,
    /// Repeat the border (`[1 2 3] → 1 1 [1 2 3] 3 3`).
    Edge,
}

/// Padding.
#[derive(Clone, Debug, PartialEq)]
pub struct Pad {
    pub pads: Vec<usize>,
    pub mode: PadMode,
    pub value: f64,
}

impl Pad {
    /// For each axis, the source index of every output index (`None`: the constant).
    fn index_maps(&self, shape: &[usize]) -> Vec<Vec<Option<usize>>> {
        let r = shape.len();
        (0..r)
            .map(|a| {
                let (before, n) = (self.pads[a] as isize, shape[a] as isize);
                (0..shape[a] + self.pads[a] + self.pads[a + r])
                    .map(|o| {
                        let i = o as isize - before;
                        if (0..n).contains(&i) {
                            return Some(i as usize);
                        }
                        match self.mode {
                            PadMode::Constant => None,
                            PadMode::Edge => Some(i.clamp(0, n - 1) as usize),
                            PadMode::Reflect => Some(if i < 0 { -i } else { 2 * (n - 1) - i } as usize),
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

impl<T: Element> Op<T> for Pad {
    fn fusion(&self) -> Option<super::Fusable> {
        // ONNX order: all begins, then all ends. Only N and C unpadded, constant zero.
        let zero_fill = self.mode == PadMode::Constant && self.value == 0.0;
        match self.pads.as_slice() {
            &[0, 0, top, left, 0, 0, bottom, right] if zero_fill => {
                Some(super::Fusable::ZeroPad2d([top, left, bottom, right]))
            }
            _ => None,
        }
    }

    fn op_type(&self) -> &'static str {
        "Pad"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        let r = x.len();
        if self.pads.len() != 2 * r {
            return Err(OpError::shape(format!("pads {:?} must have 2 × rank = {} entries", self.pads, 2 * r), inputs));
        }
        for (a, &len) in x.iter().enumerate() {
            let (b, e) = (self.pads[a], self.pads[a + r]);
            let limit = match self.mode {
                PadMode::Constant => usize::MAX,
                PadMode::Reflect => len.saturating_sub(1),
                PadMode::Edge if len == 0 => 0,
                PadMode::Edge => usize::MAX,
            };
            if b > limit || e > limit {
                return Err(OpError::shape(
                    format!("{:?} padding of {b}/{e} on axis {a} needs a larger axis", self.mode),
                    inputs,
                ));
            }
        }
        let out: Option<Vec<usize>> =
            (0..r).map(|a| x[a].checked_add(self.pads[a])?.checked_add(self.pads[a + r])).collect();
        let out = out.ok_or_else(|| OpError::shape(format!("pads {:?} overflow the shape", self.pads), inputs))?;
        Ok(vec![out])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let x = inputs[0];
        let shape = Op::<T>::output_shapes(self, &[x.shape()])?.remove(0);
        let r = x.ndim();
        if self.mode == PadMode::Constant {
            // Fast path: fill, then copy the input block.
            let mut y = Tensor::from_elem(IxDyn(&shape), T::lit(self.value));
            crate::tensor::paste(&mut y, &self.pads[..r], x);
            return Ok(Outputs::one(y));
        }
        let maps = self.index_maps(x.shape());
        let mut src = vec![0; r];
        Ok(Outputs::one(Tensor::from_shape_fn(IxDyn(&shape), |idx| {
            for a in 0..r {
                src[a] = maps[a][idx[a]].unwrap_or(0);
            }
            x[IxDyn(&src)]
        })))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let shape = cx.input_shapes[0];
        let g = cx.grad()?;
        let r = shape.len();
        let padded = Op::<T>::output_shapes(self, &[shape])?.remove(0);
        if g.shape() != padded.as_slice() {
            return Err(OpError::Invalid(format!("Pad: gradient shaped {:?}, output {padded:?}", g.shape())));
        }
        if self.mode == PadMode::Constant {
            // The gradient of the input is the interior of the output gradient: one block copy.
            return Ok(vec![Some(crate::tensor::crop(g, &self.pads[..r], shape))]);
        }
        // Reflect/edge: undo the padding one axis at a time, adding each output slice into the input slice it was
        // copied from (whole sub-arrays at a time).
        let maps = self.index_maps(shape);
        let mut cur = g.to_owned();
        for a in (0..r).filter(|&a| self.pads[a] + self.pads[a + r] > 0) {
            let mut reduced_shape = cur.shape().to_vec();
            reduced_shape[a] = shape[a];
            let mut reduced = Tensor::zeros(IxDyn(&reduced_shape));
            for (o, src) in maps[a].iter().enumerate() {
                if let Some(i) = *src {
                    let mut dst = reduced.index_axis_mut(Axis(a), i);
                    dst += &cur.index_axis(Axis(a), o);
                }
            }
            cur = reduced;
        }
        Ok(vec![Some(cur)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};
    use ndarray::arr1;

    /// A gradient of the wrong shape is an error, not a block copy outside the tensor.
    #[test]
    fn a_misshaped_gradient_is_refused() {
        let op = Pad { pads: vec![0, 1, 2, 0, 1, 2], mode: PadMode::Constant, value: 0.0 };
        let shape = [2usize, 3, 4];
        for wrong in [[2usize, 5, 7], [2, 5, 9], [1, 5, 8]] {
            let g = Tensor::<f32>::zeros(IxDyn(&wrong));
            let cx = Vjp {
                inputs: vec![None],
                input_shapes: vec![&shape],
                outputs: vec![None],
                saved: None,
                output_grads: vec![Some(&g)],
                wanted: &[true],
            };
            let err = op.backward(&cx).expect_err("misshaped gradient");
            assert!(err.to_string().contains("gradient shaped"), "{err}");
        }
    }

    #[test]
    fn vjp_matches_finite_differences_for_every_mode() {
        let mut rng = Rng::new(24);
        for mode in [PadMode::Constant, PadMode::Reflect, PadMode::Edge] {
            let op = Pad { pads: vec![0, 1, 2, 0, 0, 2, 1, 1], mode, value: 0.5 };
            check_vjp(&op, &[rng.tensor(&[2, 3, 4, 3], -1.0, 1.0)], &[true], 1);
        }
    }

    #[test]
    fn modes_match_numpy() {
        let x = arr1(&[1.0, 2.0, 3.0]).into_dyn();
        let pad =
            |mode| Op::<f64>::forward(&Pad { pads: vec![2, 2], mode, value: 9.0 }, &[&x]).unwrap().values.remove(0);
        assert_eq!(pad(PadMode::Constant).as_slice().unwrap(), &[9.0, 9.0, 1.0, 2.0, 3.0, 9.0, 9.0]);
        assert_eq!(pad(PadMode::Reflect).as_slice().unwrap(), &[3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
        assert_eq!(pad(PadMode::Edge).as_slice().unwrap(), &[1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]);
        assert!(
            Op::<f64>::output_shapes(&Pad { pads: vec![3, 0], mode: PadMode::Reflect, value: 0.0 }, &[&[3]]).is_err()
        );
    }
}
