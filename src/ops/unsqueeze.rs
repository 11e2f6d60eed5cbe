//! Unsqueeze: inserts size-1 axes at the given positions of the output.

use super::view::{view_op, View};
use crate::error::OpError;
use crate::tensor::normalize_axis;

/// Inserts size-1 axes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unsqueeze {
    pub axes: Vec<i64>,
}

impl View for Unsqueeze {
    const OP: &'static str = "Unsqueeze";

    fn view_shape(&self, x: &[usize]) -> Result<Vec<usize>, OpError> {
        let rank = x.len() + self.axes.len();
        let mut axes: Vec<usize> = self.axes.iter().map(|&a| normalize_axis(a, rank)).collect::<Result<_, _>>()?;
        axes.sort_unstable();
        if axes.windows(2).any(|w| w[0] == w[1]) {
            return Err(OpError::attribute("axes", format!("{:?} repeats an axis", self.axes)));
        }
        let mut rest = x.iter();
        Ok((0..rank).map(|i| if axes.contains(&i) { 1 } else { *rest.next().unwrap_or(&1) }).collect())
    }
}

view_op!(Unsqueeze);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};
    use crate::ops::Op;

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(23);
        check_vjp(&Unsqueeze { axes: vec![0, -1] }, &[rng.tensor(&[2, 3], -1.0, 1.0)], &[true], 1);
        assert_eq!(
            Op::<f32>::output_shapes(&Unsqueeze { axes: vec![1, 3] }, &[&[2, 3]]).unwrap(),
            vec![vec![2, 1, 3, 1]]
        );
    }
}
