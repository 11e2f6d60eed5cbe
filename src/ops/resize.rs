//! Resize / Upsample of the two spatial axes of NCHW tensors: nearest or (bi)linear, with ONNX's coordinate
//! transformation modes. A linear map of the input, so the gradient applies the transposed weights.

use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{expect_rank, Tensor};
use crate::Element;
use ndarray::IxDyn;

/// Interpolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    Nearest(NearestRounding),
    Linear,
}

/// How nearest mode rounds a fractional source coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestRounding {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Output coordinate → input coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordinateMode {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
}

/// Resize to `[out_h, out_w]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resize {
    pub out_h: usize,
    pub out_w: usize,
    pub mode: ResizeMode,
    pub coordinates: CoordinateMode,
    /// Scale factors as given (`out / in` unless the model says otherwise).
    pub scales: Option<[f64; 2]>,
}

/// For every output index along one axis, the input indices it reads and their weights.
pub(crate) type Taps = Vec<Vec<(usize, f64)>>;

impl Resize {
    /// Source taps `(index, weight)` of every output index along one axis.
    fn taps(&self, input: usize, output: usize, scale: f64) -> Taps {
        (0..output)
            .map(|o| {
                let x = o as f64;
                let src = match self.coordinates {
                    CoordinateMode::HalfPixel => (x + 0.5) / scale - 0.5,
                    CoordinateMode::PytorchHalfPixel if output > 1 => (x + 0.5) / scale - 0.5,
                    CoordinateMode::PytorchHalfPixel => 0.0,
                    CoordinateMode::AlignCorners if output > 1 => x * (input as f64 - 1.0) / (output as f64 - 1.0),
                    CoordinateMode::AlignCorners => 0.0,
                    CoordinateMode::Asymmetric => x / scale,
                };
                let last = input as f64 - 1.0;
                match self.mode {
                    ResizeMode::Nearest(r) => {
                        let i = match r {
                            NearestRounding::RoundPreferFloor => {
                                if src.fract() == 0.5 {
                                    src.floor()
                                } else {
                                    src.round()
                                }
                            }
                            NearestRounding::RoundPreferCeil => {
                                if src.fract() == 0.5 {
                                    src.ceil()
                                } else {
                                    src.round()
                                }
                            }
                            NearestRounding::Floor => src.floor(),
                            NearestRounding::Ceil => src.ceil(),
                        };
                        vec![(i.clamp(0.0, last) as usize, 1.0)]
                    }
                    ResizeMode::Linear => {
                        let s = src.clamp(0.0, last);
                        let i0 = s.floor();
                        let i1 = (i0 + 1.0).min(last);
                        let w = s - i0;
                        if w == 0.0 || i1 == i0 {
                            vec![(i0 as usize, 1.0)]
                        } else {
                            vec![(i0 as usize, 1.0 - w), (i1 as usize, w)]
                        }
                    }
                }
            })
            .collect()
    }

    /// Bilinear taps with half-pixel centres along one axis of `input` → `output` (cv2 INTER_LINEAR, PyTorch
    /// `align_corners=False`): for every output index, the two input indices it reads and the second one's weight
    /// (the same index twice, weight 0, where one tap suffices). The CAM maps are resized with these.
    pub fn half_pixel_linear_taps(input: usize, output: usize) -> Vec<(usize, usize, f64)> {
        let linear = Resize {
            out_h: output,
            out_w: output,
            mode: ResizeMode::Linear,
            coordinates: CoordinateMode::HalfPixel,
            scales: None,
        };
        linear
            .taps(input, output, output as f64 / input as f64)
            .into_iter()
            .map(|t| match t.as_slice() {
                [(i0, _), (i1, w1)] => (*i0, *i1, *w1),
                [(i, _)] => (*i, *i, 0.0),
                _ => unreachable!("a linear tap set has one or two entries"),
            })
            .collect()
    }

    /// The taps along the height and the width of an `h`×`w` input: the resize is their (separable) product.
    pub(crate) fn tables(&self, h: usize, w: usize) -> (Taps, Taps) {
        let [sh, sw] = self.scales.unwrap_or([self.out_h as f64 / h as f64, self.out_w as f64 / w as f64]);
        (self.taps(h, self.out_h, sh), self.taps(w, self.out_w, sw))
    }
}

impl<T: Element> Op<T> for Resize {
    fn op_type(&self) -> &'static str {
        "Resize"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        arity(inputs, 1, 1)?;
        expect_rank(inputs[0], 4, "input", inputs)?;
        if inputs[0][2] == 0 || inputs[0][3] == 0 || self.out_h == 0 || self.out_w == 0 {
            return Err(OpError::shape(format!("cannot resize to {}×{}", self.out_h, self.out_w), inputs));
        }
        Ok(vec![vec![inputs[0][0], inputs[0][1], self.out_h, self.out_w]])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let x = inputs[0];
        let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let (ty, tx) = self.tables(h, w);
        let mut y = Tensor::zeros(IxDyn(&[n, c, self.out_h, self.out_w]));
        for b in 0..n {
            for ch in 0..c {
                for (oy, ry) in ty.iter().enumerate() {
                    for (ox, rx) in tx.iter().enumerate() {
                        let mut acc = T::zero();
                        for &(iy, wy) in ry {
                            for &(ix, wx) in rx {
                                acc += T::lit(wy * wx) * x[[b, ch, iy, ix]];
                            }
                        }
                        y[[b, ch, oy, ox]] = acc;
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
        let (ty, tx) = self.tables(h, w);
        let g = cx.grad()?;
        let mut dx = Tensor::zeros(IxDyn(s));
        for b in 0..n {
            for ch in 0..c {
                for (oy, ry) in ty.iter().enumerate() {
                    for (ox, rx) in tx.iter().enumerate() {
                        let gv = g[[b, ch, oy, ox]];
                        for &(iy, wy) in ry {
                            for &(ix, wx) in rx {
                                dx[[b, ch, iy, ix]] += T::lit(wy * wx) * gv;
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
    fn vjp_matches_finite_differences_for_each_mode() {
        let mut rng = Rng::new(47);
        for (mode, coordinates) in [
            (ResizeMode::Nearest(NearestRounding::Floor), CoordinateMode::Asymmetric),
            (ResizeMode::Nearest(NearestRounding::RoundPreferFloor), CoordinateMode::HalfPixel),
            (ResizeMode::Linear, CoordinateMode::HalfPixel),
            (ResizeMode::Linear, CoordinateMode::AlignCorners),
            (ResizeMode::Linear, CoordinateMode::PytorchHalfPixel),
        ] {
            let op = Resize { out_h: 7, out_w: 4, mode, coordinates, scales: None };
            check_vjp(&op, &[rng.tensor(&[1, 2, 3, 5], -1.0, 1.0)], &[true], 1);
        }
    }

    #[test]
    fn nearest_doubling_repeats_pixels() {
        let x = Tensor::from_shape_vec(IxDyn(&[1, 1, 1, 2]), vec![1.0f64, 2.0]).unwrap();
        let op = Resize {
            out_h: 2,
            out_w: 4,
            mode: ResizeMode::Nearest(NearestRounding::Floor),
            coordinates: CoordinateMode::Asymmetric,
            scales: None,
        };
        let y = Op::<f64>::forward(&op, &[&x]).unwrap().values.remove(0);
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
    }
}
