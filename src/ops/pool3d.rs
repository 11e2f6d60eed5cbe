//! MaxPool and AveragePool over `[N, C, D, H, W]` (3-D windows). Max keeps each output's source index for its
//! backward (the first maximum wins ties, as in PyTorch); average divides by the taps inside the input, or by every
//! tap inside the padded input with `count_include_pad`.

use super::window3d::Window3d;
use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{contiguous, Tensor};
use crate::Element;
use ndarray::IxDyn;
use rayon::prelude::*;

/// Which reduction the window applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool3dKind {
    Max,
    Average { count_include_pad: bool },
}

/// A 3-D pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool3d {
    pub window: Window3d,
    pub kind: Pool3dKind,
}

/// Most window taps visited per plane (outputs × kernel volume): far beyond any real network's pooling.
const MAX_WINDOW_WORK: usize = 1 << 36;

/// Argmax indices (within each input plane) of a max pool's outputs.
struct Argmax(Vec<u32>);

impl Pool3d {
    fn shapes(&self, x: &[usize], shapes: &[&[usize]]) -> Result<[usize; 3], OpError> {
        let out = self.window.output(x, shapes)?;
        let span = |a: usize| self.window.kernel[a].saturating_mul(self.window.dilations[a]);
        if (0..3).any(|a| self.window.pads[a] >= span(a) || self.window.pads[a + 3] >= span(a)) {
            return Err(OpError::attribute("pads", format!("{:?} must be smaller than the window", self.window.pads)));
        }
        if x[2..].iter().product::<usize>() > u32::MAX as usize {
            return Err(OpError::shape("a plane larger than 2³² elements", shapes));
        }
        // Every output visits every tap: a huge window over a padded tiny input would run for days.
        let work = out.iter().chain(&self.window.kernel).try_fold(1usize, |a, &d| a.checked_mul(d));
        if work.is_none_or(|w| w > MAX_WINDOW_WORK) {
            return Err(OpError::attribute(
                "kernel_shape",
                format!("{:?} over {out:?} outputs is too much work", self.window.kernel),
            ));
        }
        Ok(out)
    }

    /// The taps of output `(od, oh, ow)`: in-input flat indices within the plane, and the divisor an average uses.
    fn taps(&self, dims: [usize; 3], o: [usize; 3], taps: &mut Vec<usize>) -> usize {
        let w = &self.window;
        taps.clear();
        let mut padded = 1;
        for axis in 0..3 {
            // Taps inside the padded input along this axis.
            let lo = -(w.pads[axis] as i64);
            let hi = (dims[axis] + w.pads[axis + 3]) as i64;
            let count = (0..w.kernel[axis])
                .filter(|&k| {
                    let at = (o[axis] * w.strides[axis] + k * w.dilations[axis]) as i64 + lo;
                    at < hi
                })
                .count();
            padded *= count;
        }
        for a in 0..w.kernel[0] {
            let Some(d) = w.source(o[0], a, 0, dims[0]) else { continue };
            for b in 0..w.kernel[1] {
                let Some(h) = w.source(o[1], b, 1, dims[1]) else { continue };
                for e in 0..w.kernel[2] {
                    if let Some(x) = w.source(o[2], e, 2, dims[2]) {
                        taps.push((d * dims[1] + h) * dims[2] + x);
                    }
                }
            }
        }
        match self.kind {
            Pool3dKind::Average { count_include_pad: true } => padded,
            _ => taps.len(),
        }
    }
}

impl<T: Element> Op<T> for Pool3d {
    fn op_type(&self) -> &'static str {
        match self.kind {
            Pool3dKind::Max => "MaxPool",
            Pool3dKind::Average { .. } => "AveragePool",
        }
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        let out = self.shapes(inputs[0], inputs)?;
        Ok(vec![vec![inputs[0][0], inputs[0][1], out[0], out[1], out[2]]])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let x = inputs[0];
        let s = x.shape().to_vec();
        let out = self.shapes(&s, &[&s])?;
        let dims = [s[2], s[3], s[4]];
        let (in_plane, out_plane) = (dims.iter().product::<usize>(), out.iter().product::<usize>());
        let src = contiguous(x);
        let planes: Vec<(Vec<T>, Vec<u32>)> = (0..s[0] * s[1])
            .into_par_iter()
            .map(|p| {
                let plane = &src[p * in_plane..(p + 1) * in_plane];
                let mut taps = Vec::new();
                let mut values = Vec::with_capacity(out_plane);
                let mut argmax = Vec::new();
                for od in 0..out[0] {
                    for oh in 0..out[1] {
                        for ow in 0..out[2] {
                            let divisor = self.taps(dims, [od, oh, ow], &mut taps);
                            match self.kind {
                                Pool3dKind::Max => {
                                    // The first maximum wins; a later tap replaces it only when strictly larger.
                                    let best = taps.iter().copied().fold(None, |best: Option<usize>, t| match best {
                                        Some(b) if plane[t] > plane[b] => Some(t),
                                        Some(b) => Some(b),
                                        None => Some(t),
                                    });
                                    values.push(best.map_or(T::neg_infinity(), |b| plane[b]));
                                    argmax.push(best.map_or(u32::MAX, |b| b as u32));
                                }
                                Pool3dKind::Average { .. } => {
                                    let sum = taps.iter().fold(T::zero(), |a, &t| a + plane[t]);
                                    values.push(if divisor == 0 { T::zero() } else { sum / T::lit(divisor as f64) });
                                }
                            }
                        }
                    }
                }
                (values, argmax)
            })
            .collect();
        let mut y = Vec::with_capacity(s[0] * s[1] * out_plane);
        let mut arg = Vec::new();
        for (v, a) in planes {
            y.extend(v);
            arg.extend(a);
        }
        let y = Tensor::from_shape_vec(IxDyn(&[s[0], s[1], out[0], out[1], out[2]]), y)
            .map_err(|e| OpError::Invalid(e.to_string()))?;
        let saved: Option<super::Saved> = match self.kind {
            Pool3dKind::Max => Some(Box::new(Argmax(arg))),
            Pool3dKind::Average { .. } => None,
        };
        Ok(Outputs { values: vec![y], saved })
    }

    /// Max reads its saved indices, average only shapes.
    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![false; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let s = cx.input_shapes[0].to_vec();
        let out = self.shapes(&s, &[&s])?;
        let dims = [s[2], s[3], s[4]];
        let (in_plane, out_plane) = (dims.iter().product::<usize>(), out.iter().product::<usize>());
        let g = contiguous(cx.grad()?);
        let mut dx = vec![T::zero(); s[0] * s[1] * in_plane];
        match self.kind {
            Pool3dKind::Max => {
                let Argmax(arg) = cx.saved::<Argmax>()?;
                dx.par_chunks_mut(in_plane.max(1)).enumerate().for_each(|(p, d)| {
                    for k in 0..out_plane {
                        let i = arg[p * out_plane + k];
                        if i != u32::MAX {
                            d[i as usize] += g[p * out_plane + k];
                        }
                    }
                });
            }
            Pool3dKind::Average { .. } => {
                dx.par_chunks_mut(in_plane.max(1)).enumerate().for_each(|(p, d)| {
                    let mut taps = Vec::new();
                    let mut k = 0;
                    for od in 0..out[0] {
                        for oh in 0..out[1] {
                            for ow in 0..out[2] {
                                let divisor = self.taps(dims, [od, oh, ow], &mut taps);
                                if divisor > 0 {
                                    let share = g[p * out_plane + k] / T::lit(divisor as f64);
                                    for &t in &taps {
                                        d[t] += share;
                                    }
                                }
                                k += 1;
                            }
                        }
                    }
                });
            }
        }
        Ok(vec![Some(Tensor::from_shape_vec(IxDyn(&s), dx).map_err(|e| OpError::Invalid(e.to_string()))?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    fn pool(kind: Pool3dKind, kernel: [usize; 3], strides: [usize; 3], pads: [usize; 6], ceil_mode: bool) -> Pool3d {
        Pool3d { window: Window3d { kernel, strides, dilations: [1; 3], pads, ceil_mode }, kind }
    }

    #[test]
    fn max_and_average_of_a_known_volume() {
        // 1×1×2×2×2 holding 0..8: the whole-volume max is 7, the mean 3.5; with a pad of 1 on every side and
        // count_include_pad, the corner window [−1..1]³ sees only element 0 among 8 taps.
        let x = Tensor::from_shape_vec(IxDyn(&[1, 1, 2, 2, 2]), (0..8).map(f64::from).collect()).unwrap();
        let run = |p: Pool3d| Op::<f64>::forward(&p, &[&x]).unwrap().values.remove(0);
        assert_eq!(
            run(pool(Pool3dKind::Max, [2; 3], [1; 3], [0; 6], false)).iter().copied().collect::<Vec<_>>(),
            [7.0]
        );
        let avg = Pool3dKind::Average { count_include_pad: false };
        assert_eq!(run(pool(avg, [2; 3], [1; 3], [0; 6], false)).iter().copied().collect::<Vec<_>>(), [3.5]);
        let with_pad = run(pool(Pool3dKind::Average { count_include_pad: true }, [2; 3], [2; 3], [1; 6], false));
        assert_eq!(with_pad.shape(), [1, 1, 2, 2, 2]);
        assert_eq!(with_pad[[0, 0, 0, 0, 0]], 0.0 / 8.0);
        assert_eq!(with_pad[[0, 0, 1, 1, 1]], 7.0 / 8.0);
        let without = run(pool(avg, [2; 3], [2; 3], [1; 6], false));
        assert_eq!(without[[0, 0, 1, 1, 1]], 7.0, "one tap inside the input");
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(72);
        let cases = [
            pool(Pool3dKind::Max, [2, 2, 2], [2, 2, 2], [0; 6], false),
            pool(Pool3dKind::Max, [3, 2, 3], [1, 2, 2], [1, 0, 1, 1, 1, 0], true),
            pool(Pool3dKind::Average { count_include_pad: false }, [2, 3, 2], [1, 2, 1], [0, 1, 1, 1, 1, 0], false),
            pool(Pool3dKind::Average { count_include_pad: true }, [3, 3, 3], [2, 2, 2], [1; 6], true),
        ];
        for p in cases {
            // Distinct values: a max never ties, so finite differences see one winner.
            let x = rng.tensor(&[2, 2, 4, 5, 5], -1.0, 1.0);
            check_vjp(&p, &[x], &[true], 3);
        }
    }
}
