//! Window attributes of the 3-D convolution and pools (`[N, C, D, H, W]` volumes and videos), and their output-size
//! rule: the 2-D ops' rule along three axes.

use crate::error::OpError;
use gradcam_kernels::geometry::window_count;

/// A 3-D sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window3d {
    pub kernel: [usize; 3],
    pub strides: [usize; 3],
    pub dilations: [usize; 3],
    /// `[d_begin, h_begin, w_begin, d_end, h_end, w_end]` (ONNX order).
    pub pads: [usize; 6],
    /// Round the output size up (pools only).
    pub ceil_mode: bool,
}

impl Window3d {
    /// Output length along `axis` (0 = depth) for an input of length `len`.
    fn out_len(&self, len: usize, axis: usize) -> Option<usize> {
        let pads = (self.pads[axis], self.pads[axis + 3]);
        window_count(len, self.kernel[axis], self.strides[axis], self.dilations[axis], pads, self.ceil_mode)
    }

    /// The output's `[D, H, W]` for an input `[N, C, D, H, W]`.
    pub fn output(&self, x: &[usize], shapes: &[&[usize]]) -> Result<[usize; 3], OpError> {
        if x.len() != 5 {
            return Err(OpError::shape("input must be [N, C, D, H, W]", shapes));
        }
        if self.kernel.contains(&0) || self.strides.contains(&0) || self.dilations.contains(&0) {
            return Err(OpError::attribute("kernel_shape/strides/dilations", "must be positive"));
        }
        let mut out = [0; 3];
        for (axis, o) in out.iter_mut().enumerate() {
            *o = self.out_len(x[2 + axis], axis).ok_or_else(|| {
                OpError::shape(format!("window {:?} is larger than the padded input", self.kernel), shapes)
            })?;
        }
        Ok(out)
    }

    /// Input coordinate of tap `k` of output position `o` along `axis`, if inside the input of length `len`.
    #[inline]
    pub fn source(&self, o: usize, k: usize, axis: usize, len: usize) -> Option<usize> {
        let at = (o * self.strides[axis] + k * self.dilations[axis]).checked_sub(self.pads[axis])?;
        (at < len).then_some(at)
    }
}
