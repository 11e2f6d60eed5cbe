//! Flatten: `[d0, …, dn] → [d0·…·d(axis−1), d(axis)·…·dn]` (the bridge from conv features to a classifier).

use super::view::{view_op, View};
use crate::error::OpError;

/// Flatten to a matrix at `axis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flatten {
    pub axis: i64,
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten { axis: 1 }
    }
}

impl View for Flatten {
    const OP: &'static str = "Flatten";

    fn view_shape(&self, x: &[usize]) -> Result<Vec<usize>, OpError> {
        let r = x.len() as i64;
        if self.axis < -r || self.axis > r {
            return Err(OpError::attribute("axis", format!("{} is out of range for rank {r}", self.axis)));
        }
        let axis = if self.axis < 0 { self.axis + r } else { self.axis } as usize;
        Ok(vec![x[..axis].iter().product(), x[axis..].iter().product()])
    }
}

view_op!(Flatten);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};
    use crate::ops::Op;

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(14);
        check_vjp(&Flatten::default(), &[rng.tensor(&[2, 3, 2, 2], -1.0, 1.0)], &[true], 1);
        check_vjp(&Flatten { axis: -1 }, &[rng.tensor(&[2, 3, 2], -1.0, 1.0)], &[true], 2);
        let s = Op::<f32>::output_shapes(&Flatten { axis: 0 }, &[&[2, 3]]).unwrap();
        assert_eq!(s, vec![vec![1, 6]]);
    }
}
