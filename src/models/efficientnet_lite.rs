//! EfficientNet-Lite0 with the parameter names of `efficientnet-lite-pytorch` 0.1.0: `_conv_stem`, `_bn0`,
//! `_blocks.N._{expand,depthwise,project}_conv`, `_blocks.N._bn{0,1,2}`, `_conv_head`, `_bn1`, `_fc`. ReLU6
//! activations, no squeeze-excitation, and TensorFlow "SAME" padding — asymmetric at stride 2 (the extra row and
//! column go at the bottom/right), computed from the actual input size.

use super::net::{ConvSpec, Net};
use crate::error::Result;
use crate::graph::ValueId;
use crate::ops::{Add, Dropout, Flatten, GlobalAveragePool};

const EPS: f64 = 1e-3;

/// `(repeats, kernel, stride, expand ratio, in, out)` per stage (lite0: no width/depth scaling).
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// TF "SAME" padding `[top, left, bottom, right]` for a square kernel on an `h × w` input.
pub fn same_pads(h: usize, w: usize, kernel: usize, stride: usize) -> [usize; 4] {
    let (top, bottom) = gradcam_kernels::geometry::same_padding(h, kernel, stride, 1, true);
    let (left, right) = gradcam_kernels::geometry::same_padding(w, kernel, stride, 1, true);
    [top, left, bottom, right]
}

fn same_conv(
    net: &mut Net,
    name: &str,
    x: ValueId,
    out: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
) -> Result<ValueId> {
    let s = net.shape(x);
    let spec = ConvSpec::same(out, kernel, stride).groups(groups).pads(same_pads(s[2], s[3], kernel, stride));
    net.conv(name, x, spec)
}

fn mbconv(
    net: &mut Net,
    index: usize,
    x: ValueId,
    kernel: usize,
    stride: usize,
    expand: usize,
    out: usize,
) -> Result<ValueId> {
    let name = format!("_blocks.{index}");
    let cin = net.shape(x)[1];
    let hidden = cin * expand;
    let mut h = x;
    if expand != 1 {
        h = same_conv(net, &format!("{name}._expand_conv"), h, hidden, 1, 1, 1)?;
        h = net.bn(&format!("{name}._bn0"), h, EPS)?;
        h = net.relu6(&format!("{name}.act0"), h)?;
    }
    h = same_conv(net, &format!("{name}._depthwise_conv"), h, hidden, kernel, stride, hidden)?;
    h = net.bn(&format!("{name}._bn1"), h, EPS)?;
    h = net.relu6(&format!("{name}.act1"), h)?;
    h = same_conv(net, &format!("{name}._project_conv"), h, out, 1, 1, 1)?;
    h = net.bn(&format!("{name}._bn2"), h, EPS)?;
    if stride == 1 && cin == out {
        net.node(&name, Add, &[h, x])
    } else {
        net.alias(&name, h)
    }
}

/// Builds the network on `x`; returns the logits value (`_fc`).
pub(crate) fn build(net: &mut Net, x: ValueId, classes: usize) -> Result<ValueId> {
    let h = same_conv(net, "_conv_stem", x, 32, 3, 2, 1)?;
    let h = net.bn("_bn0", h, EPS)?;
    let mut h = net.relu6("stem_act", h)?;
    let mut index = 0;
    for (repeats, kernel, stride, expand, _, out) in STAGES {
        for i in 0..repeats {
            h = mbconv(net, index, h, kernel, if i == 0 { stride } else { 1 }, expand, out)?;
            index += 1;
        }
    }
    let h = same_conv(net, "_conv_head", h, 1280, 1, 1, 1)?;
    let h = net.bn("_bn1", h, EPS)?;
    let h = net.relu6("head_act", h)?;
    net.alias("features", h)?;
    let h = net.node("_avg_pooling", GlobalAveragePool, &[h])?;
    let h = net.node("flatten", Flatten::default(), &[h])?;
    let h = net.node("_dropout", Dropout { ratio: 0.2 }, &[h])?;
    net.linear("_fc", h, classes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_padding_matches_tensorflow() {
        // 224 → 112 with a 3×3/2 kernel: one extra row/column at the bottom/right.
        assert_eq!(super::same_pads(224, 224, 3, 2), [0, 0, 1, 1]);
        assert_eq!(super::same_pads(56, 56, 5, 2), [1, 1, 2, 2]);
        assert_eq!(super::same_pads(14, 14, 5, 1), [2, 2, 2, 2]);
        assert_eq!(super::same_pads(7, 7, 1, 1), [0, 0, 0, 0]);
    }
}
