//! AdaptiveAvgPool: average pooling to a fixed output size, with PyTorch's windows
//! `[⌊i·H/out⌋, ⌈(i+1)·H/out⌉)` (VGG's 7×7 pool before the classifier, any input size).

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{expect_rank, Tensor};
use crate::Element;
use ndarray::{Axis, IxDyn};

/// Adaptive average pooling to `[out_h, out_w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveAvgPool {
    pub output: [usize; 2],
}

fn window(i: usize, len: usize, out: usize) -> std::ops::Range<usize> {
    (i * len / out)..((i + 1) * len).div_ceil(out)
}

impl AdaptiveAvgPool {
    /// The pool along one axis of `len` to `out` as taps `(index, 1/window)`: the 2-D pool is the (separable)
    /// product of the one along the height and the one along the width.
    pub(crate) fn axis_taps(len: usize, out: usize) -> Vec<Vec<(usize, f64)>> {
        (0..out)
            .map(|i| {
                let range = window(i, len, out);
                let share = 1.0 / range.len() as f64;
                range.map(|k| (k, share)).collect()
            })
            .collect()
    }
}

impl<T: Element> Op<T> for AdaptiveAvgPool {
    fn op_type(&self) -> &'static str {
        "AdaptiveAvgPool"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        expect_rank(inputs[0], 4, "input", inputs)?;
        if self.output.contains(&0) || inputs[0][2] == 0 || inputs[0][3] == 0 {
            return Err(OpError::shape(format!("cannot pool to {:?}", self.output), inputs));
        }
        Ok(vec![vec![inputs[0][0], inputs[0][1], self.output[0], self.output[1]]])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let x = inputs[0];
        let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let [oh, ow] = self.output;
        let mut y = Tensor::zeros(IxDyn(&[n, c, oh, ow]));
        for b in 0..n {
            for ch in 0..c {
                let plane = x.index_axis(Axis(0), b);
                let plane = plane.index_axis(Axis(0), ch);
                for i in 0..oh {
                    for j in 0..ow {
                        let (ry, rx) = (window(i, h, oh), window(j, w, ow));
                        let count = T::lit((ry.len() * rx.len()) as f64);
                        let mut sum = T::zero();
                        for yy in ry {
                            for xx in rx.clone() {
                                sum += plane[[yy, xx]];
                            }
                        }
                        y[[b, ch, i, j]] = sum / count;
                    }
                }
            }
        }
        Ok(Outputs::one(y))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let s = cx.input_shapes[0];
        let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
        let [oh, ow] = self.output;
        let g = cx.grad()?;
        let mut dx = Tensor::zeros(IxDyn(s));
        for b in 0..n {
            for ch in 0..c {
                for i in 0..oh {
                    for j in 0..ow {
                        let (ry, rx) = (window(i, h, oh), window(j, w, ow));
                        let share = g[[b, ch, i, j]] / T::lit((ry.len() * rx.len()) as f64);
                        for yy in ry {
                            for xx in rx.clone() {
                                dx[[b, ch, yy, xx]] += share;
                            }
                        }
                    }
                }
            }
        }
        Ok(vec![Some(dx)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    #[test]
    fn vjp_matches_finite_differences_when_shrinking_and_growing() {
        let mut rng = Rng::new(30);
        check_vjp(&AdaptiveAvgPool { output: [3, 2] }, &[rng.tensor(&[1, 2, 7, 5], -1.0, 1.0)], &[true], 1);
        check_vjp(&AdaptiveAvgPool { output: [7, 7] }, &[rng.tensor(&[2, 1, 3, 2], -1.0, 1.0)], &[true], 2);
    }

    #[test]
    fn windows_match_pytorch() {
        // torch: adaptive_avg_pool1d over 5 → 3 uses [0,2), [1,4), [3,5).
        assert_eq!((window(0, 5, 3), window(1, 5, 3), window(2, 5, 3)), (0..2, 1..4, 3..5));
    }
}
