//! Window attributes of the 3-D convolution and pools (`[N, C, D, H, W]` volumes and videos), and their output-size
//! rule: the 2-D ops' rule along three axes.

use crate::error::OpError;

/// How many windows of `kernel` taps (`dilation` apart) fit at `stride` along an axis of `len` padded by
/// `(begin, end)`, rounding up with `ceil_mode` (where the last window must still start inside the input or the leading
/// padding, as in PyTorch and ONNX); `None` when none fits. Checked arithmetic: the attributes come from files.
pub(crate) fn window_count(
    len: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    (begin, end): (usize, usize),
    ceil_mode: bool,
) -> Option<usize> {
    let span = dilation.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    let padded = len.checked_add(begin)?.checked_add(end)?;
    if stride == 0 || padded < span {
        return None;
    }
    let mut out = if ceil_mode { (padded - span).div_ceil(stride) + 1 } else { (padded - span) / stride + 1 };
    if ceil_mode && (out - 1).checked_mul(stride).is_none_or(|start| start >= len + begin) {
        out -= 1;
    }
    Some(out)
}

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
