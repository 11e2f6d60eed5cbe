//! Squeeze: removes size-1 axes (the listed ones, or all).

use super::view::{view_op, View};
use crate::error::OpError;
use crate::tensor::normalize_axis;

/// Removes size-1 axes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Squeeze {
    pub axes: Option<Vec<i64>>,
}

impl View for Squeeze {
    const OP: &'static str = "Squeeze";

    fn view_shape(&self, x: &[usize]) -> Result<Vec<usize>, OpError> {
        let drop: Vec<usize> = match &self.axes {
            None => (0..x.len()).filter(|&i| x[i] == 1).collect(),
            Some(axes) => axes.iter().map(|&a| normalize_axis(a, x.len())).collect::<Result<_, _>>()?,
        };
        if let Some(&a) = drop.iter().find(|&&a| x[a] != 1) {
            return Err(OpError::shape(format!("axis {a} has size {}, not 1", x[a]), &[x]));
        }
        Ok(x.iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, &d)| d).collect())
    }
}

view_op!(Squeeze);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};
    use crate::ops::Op;

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(22);
        check_vjp(&Squeeze { axes: Some(vec![-1, 2]) }, &[rng.tensor(&[2, 3, 1, 1], -1.0, 1.0)], &[true], 1);
        assert_eq!(Op::<f32>::output_shapes(&Squeeze::default(), &[&[1, 3, 1]]).unwrap(), vec![vec![3]]);
        assert!(Op::<f32>::output_shapes(&Squeeze { axes: Some(vec![1]) }, &[&[1, 3, 1]]).is_err());
    }
}
