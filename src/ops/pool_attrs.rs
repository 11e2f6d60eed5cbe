//! Attributes shared by MaxPool and AveragePool, and their output-size rule.

use crate::error::OpError;
use crate::tensor::expect_rank;
use gradcam_kernels::PoolGeometry;

/// Window attributes of a 2-D pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolAttrs {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    /// Round the output size up instead of down (the last window may hang over the end).
    pub ceil_mode: bool,
}

impl PoolAttrs {
    /// A `k × k` window with stride `s` and symmetric padding `p`.
    pub fn square(k: usize, s: usize, p: usize) -> Self {
        PoolAttrs { kernel: [k, k], strides: [s, s], pads: [p; 4], dilations: [1, 1], ceil_mode: false }
    }

    fn out_len(&self, len: usize, axis: usize) -> Option<usize> {
        let pads = (self.pads[axis], self.pads[axis + 2]);
        gradcam_kernels::geometry::window_count(
            len,
            self.kernel[axis],
            self.strides[axis],
            self.dilations[axis],
            pads,
            self.ceil_mode,
        )
    }

    /// Validates the input shape (`[N, C, H, W]`) and returns the kernel geometry.
    pub fn geometry(&self, shapes: &[&[usize]]) -> Result<PoolGeometry, OpError> {
        super::arity(shapes, 1, 1)?;
        let x = shapes[0];
        expect_rank(x, 4, "input", shapes)?;
        if self.kernel.contains(&0) || self.strides.contains(&0) || self.dilations.contains(&0) {
            return Err(OpError::attribute("kernel_shape/strides/dilations", "must be positive"));
        }
        let span = |a: usize| self.kernel[a].saturating_mul(self.dilations[a]);
        if self.pads[0] >= span(0) || self.pads[1] >= span(1) {
            return Err(OpError::attribute(
                "pads",
                format!("{:?} must be smaller than the window {:?}", self.pads, self.kernel),
            ));
        }
        let (Some(out_h), Some(out_w)) = (self.out_len(x[2], 0), self.out_len(x[3], 1)) else {
            return Err(OpError::shape(format!("window {:?} is larger than the padded input", self.kernel), shapes));
        };
        Ok(PoolGeometry {
            planes: x[0] * x[1],
            in_h: x[2],
            in_w: x[3],
            out_h,
            out_w,
            kernel_h: self.kernel[0],
            kernel_w: self.kernel[1],
            stride_h: self.strides[0],
            stride_w: self.strides[1],
            dilation_h: self.dilations[0],
            dilation_w: self.dilations[1],
            pad_top: self.pads[0],
            pad_left: self.pads[1],
            pad_bottom: self.pads[2],
            pad_right: self.pads[3],
        })
    }

    /// The output shape for input shape `x`.
    pub fn output_shape(&self, shapes: &[&[usize]]) -> Result<Vec<usize>, OpError> {
        let g = self.geometry(shapes)?;
        Ok(vec![shapes[0][0], shapes[0][1], g.out_h, g.out_w])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attributes built in code are not bounded like ONNX's: windows, dilations and pads near usize::MAX are
    /// errors (no overflow, no wrap-around).
    #[test]
    fn windows_near_the_limits_of_usize_are_errors() {
        let huge = usize::MAX / 2 + 7;
        for attrs in [
            PoolAttrs { kernel: [huge, 3], ..PoolAttrs::square(3, 1, 0) },
            PoolAttrs { dilations: [huge, 1], ..PoolAttrs::square(3, 1, 0) },
            PoolAttrs { pads: [1, 1, usize::MAX, 1], ..PoolAttrs::square(3, 1, 1) },
            PoolAttrs { strides: [huge, huge], ceil_mode: true, ..PoolAttrs::square(3, 1, 1) },
        ] {
            match attrs.geometry(&[&[1, 2, 9, 9]]) {
                Err(_) => {}
                Ok(g) => assert!(g.out_h <= 11 && g.out_w <= 11, "{attrs:?} gave {g:?}"),
            }
        }
    }

    #[test]
    fn ceil_mode_matches_pytorch_sizes() {
        // torch.nn.MaxPool2d(3, 2, ceil_mode=True) on 112 → 56; on 6 with pad 1 → 4 would start in the end padding → 3.
        let mut a = PoolAttrs::square(3, 2, 0);
        a.ceil_mode = true;
        assert_eq!(a.out_len(112, 0), Some(56));
        assert_eq!(a.out_len(8, 0), Some(4));
        let mut b = PoolAttrs::square(2, 2, 1);
        b.ceil_mode = true;
        assert_eq!(b.out_len(6, 0), Some(4));
        assert_eq!(PoolAttrs::square(3, 2, 1).out_len(112, 0), Some(56));
    }
}
