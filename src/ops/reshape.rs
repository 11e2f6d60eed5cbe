//! Reshape to a target shape where `0` copies the input dimension and one `-1` is inferred (ONNX semantics).

use super::arity;
use super::view::{view_op, View};
use crate::error::OpError;

/// Reshape to `shape`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reshape {
    pub shape: Vec<i64>,
}

impl Reshape {
    fn resolve(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
        arity(inputs, 1, 1)?;
        let input = inputs[0];
        let total: usize = input.iter().product();
        let mut out = Vec::with_capacity(self.shape.len());
        let mut infer = None;
        for (i, &d) in self.shape.iter().enumerate() {
            match d {
                -1 if infer.is_none() => {
                    infer = Some(i);
                    out.push(1);
                }
                0 => {
                    out.push(*input.get(i).ok_or_else(|| {
                        OpError::shape(format!("0 at position {i} copies a missing dimension"), inputs)
                    })?)
                }
                d if d > 0 => out.push(d as usize),
                _ => return Err(OpError::attribute("shape", format!("{:?} has an invalid entry {d}", self.shape))),
            }
        }
        let known = out
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| OpError::attribute("shape", format!("{:?} overflows", self.shape)))?;
        if let Some(i) = infer {
            if known == 0 || !total.is_multiple_of(known) {
                return Err(OpError::shape(format!("cannot infer -1 in {:?}", self.shape), inputs));
            }
            out[i] = total / known;
        }
        if out.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) != Some(total) {
            return Err(OpError::shape(format!("cannot reshape {total} elements to {:?}", self.shape), inputs));
        }
        Ok(out)
    }
}

impl View for Reshape {
    const OP: &'static str = "Reshape";

    fn view_shape(&self, x: &[usize]) -> Result<Vec<usize>, OpError> {
        self.resolve(&[x])
    }
}

view_op!(Reshape);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};
    use crate::ops::Op;

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(15);
        check_vjp(&Reshape { shape: vec![0, -1] }, &[rng.tensor(&[2, 3, 4], -1.0, 1.0)], &[true], 1);
    }

    #[test]
    fn zero_and_minus_one_follow_onnx() {
        let r = Reshape { shape: vec![0, 2, -1] };
        assert_eq!(Op::<f32>::output_shapes(&r, &[&[3, 4, 5]]).unwrap(), vec![vec![3, 2, 10]]);
        assert!(Op::<f32>::output_shapes(&Reshape { shape: vec![7, -1] }, &[&[3, 4]]).is_err());
        assert!(Op::<f32>::output_shapes(&Reshape { shape: vec![-1, -1] }, &[&[3, 4]]).is_err());
        // Found by fuzzing: a product that overflows is an error, not a panic.
        assert!(Op::<f32>::output_shapes(&Reshape { shape: vec![1 << 40, 1 << 40, 0] }, &[&[3, 4]]).is_err());
    }
}
