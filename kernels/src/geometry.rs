//! The geometry of sliding windows: how many fit along an axis, and the shape of one 2-D convolution — shared by
//! the convolution kernels (im2col, packed, Winograd, depthwise) and the pools.

use crate::im2col::Window;

/// How many windows of `kernel` taps (`dilation` apart) fit at `stride` along an axis of `len` padded by
/// `(begin, end)`, rounding up with `ceil_mode` (where the last window must still start inside the input or the leading
/// padding, as in PyTorch and ONNX); `None` when none fits. Checked arithmetic: the attributes come from files.
pub fn window_count(
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

/// TF / ONNX "SAME" padding `(begin, end)` along an axis of `len`: the total that makes the output `⌈len / stride⌉`
/// long, split evenly with the odd element at the end (`upper`, TF's and ONNX `SAME_UPPER`) or the beginning
/// (`SAME_LOWER`). A zero stride or kernel counts as 1 (the window's own checks refuse them).
pub fn same_padding(len: usize, kernel: usize, stride: usize, dilation: usize, upper: bool) -> (usize, usize) {
    let s = stride.max(1);
    let span = dilation.saturating_mul(kernel.max(1) - 1).saturating_add(1);
    let total = (len.div_ceil(s).saturating_sub(1).saturating_mul(s)).saturating_add(span).saturating_sub(len);
    let small = total / 2;
    if upper {
        (small, total - small)
    } else {
        (total - small, small)
    }
}

/// Shape and hyper-parameters of one 2-D convolution (NCHW input, OIHW weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub pad_bottom: usize,
    pub pad_right: usize,
    pub groups: usize,
}

impl ConvGeometry {
    /// Output height, or `None` when the (padded) input is smaller than the dilated kernel (or the sizes overflow).
    pub fn out_h(&self) -> Option<usize> {
        window_count(self.in_h, self.kernel_h, self.stride_h, self.dilation_h, (self.pad_top, self.pad_bottom), false)
    }

    /// Output width, or `None` when the (padded) input is smaller than the dilated kernel (or the sizes overflow).
    pub fn out_w(&self) -> Option<usize> {
        window_count(self.in_w, self.kernel_w, self.stride_w, self.dilation_w, (self.pad_left, self.pad_right), false)
    }

    pub(crate) fn in_per_group(&self) -> usize {
        self.in_channels / self.groups
    }

    pub(crate) fn out_per_group(&self) -> usize {
        self.out_channels / self.groups
    }

    /// Rows of the im2col matrix: `C_in/groups · KH · KW`.
    pub fn k(&self) -> usize {
        self.in_per_group() * self.kernel_h * self.kernel_w
    }

    pub(crate) fn window(&self) -> Window {
        Window {
            in_h: self.in_h,
            in_w: self.in_w,
            out_h: self.out_h().unwrap_or(0),
            out_w: self.out_w().unwrap_or(0),
            kernel_h: self.kernel_h,
            kernel_w: self.kernel_w,
            stride_h: self.stride_h,
            stride_w: self.stride_w,
            dilation_h: self.dilation_h,
            dilation_w: self.dilation_w,
            pad_top: self.pad_top,
            pad_left: self.pad_left,
        }
    }

    /// True for 1×1, stride-1, unpadded convolutions, whose im2col matrix is the input itself.
    pub fn is_pointwise(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top + self.pad_left + self.pad_bottom + self.pad_right == 0
    }

    /// For a 1×1, unpadded layer with a stride: the pointwise layer over the pixels it reads (every `stride`-th of
    /// each row and column, see [`crate::im2col::subsample`]), which gives the same outputs. `None` otherwise.
    pub fn subsampled_pointwise(&self) -> Option<ConvGeometry> {
        let dense = ConvGeometry {
            in_h: self.out_h().unwrap_or(0),
            in_w: self.out_w().unwrap_or(0),
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            ..*self
        };
        ((self.stride_h > 1 || self.stride_w > 1) && dense.is_pointwise()).then_some(dense)
    }

    /// True when each group reads exactly one input channel (depthwise, possibly with a channel multiplier).
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels
    }

    pub(crate) fn out_plane(&self) -> usize {
        self.out_h().unwrap_or(0) * self.out_w().unwrap_or(0)
    }

    pub(crate) fn in_plane(&self) -> usize {
        self.in_h * self.in_w
    }

    /// Number of multiply-adds ×2 of the forward pass.
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.out_channels * self.out_plane() * self.k()) as f64
    }

    pub(crate) fn check(&self, input: usize, weight: usize, output: usize) {
        assert!(
            self.groups > 0
                && self.in_channels.is_multiple_of(self.groups)
                && self.out_channels.is_multiple_of(self.groups)
        );
        let (out_h, out_w) = (self.out_h(), self.out_w());
        assert!(out_h.is_some() && out_w.is_some(), "conv: kernel larger than padded input");
        // Products that overflow match no buffer (the kernels index by them: a wrapped size would let them write
        // past the output).
        let product = |v: &[usize]| v.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        let (in_per_group, out) = (self.in_channels / self.groups, [out_h.unwrap_or(0), out_w.unwrap_or(0)]);
        let sizes = [self.batch, self.in_channels, self.in_h, self.in_w];
        assert_eq!(Some(input), product(&sizes), "conv: input length");
        let sizes = [self.out_channels, in_per_group, self.kernel_h, self.kernel_w];
        assert_eq!(Some(weight), product(&sizes), "conv: weight length");
        assert_eq!(Some(output), product(&[self.batch, self.out_channels, out[0], out[1]]), "conv: output length");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values TensorFlow's SAME padding gives (EfficientNet-Lite's stems and stages).
    #[test]
    fn same_padding_matches_tensorflow() {
        assert_eq!(same_padding(224, 3, 2, 1, true), (0, 1));
        assert_eq!(same_padding(56, 5, 2, 1, true), (1, 2));
        assert_eq!(same_padding(14, 5, 1, 1, true), (2, 2));
        assert_eq!(same_padding(7, 1, 1, 1, true), (0, 0));
        assert_eq!(same_padding(56, 5, 2, 1, false), (2, 1));
        // Dilation widens the window: 3 taps 2 apart span 5.
        assert_eq!(same_padding(10, 3, 1, 2, true), (2, 2));
    }

    #[test]
    fn window_count_rounds_as_pytorch() {
        assert_eq!(window_count(112, 3, 2, 1, (1, 1), false), Some(56));
        assert_eq!(window_count(6, 3, 2, 1, (0, 0), true), Some(3));
        // ceil mode: a last window starting in the end padding is dropped.
        assert_eq!(window_count(5, 2, 2, 1, (0, 1), true), Some(3));
        assert_eq!(window_count(2, 5, 1, 1, (0, 0), false), None);
        assert_eq!(window_count(8, 3, 0, 1, (0, 0), false), None);
    }
}
