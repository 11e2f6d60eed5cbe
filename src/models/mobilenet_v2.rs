//! torchvision MobileNetV2 (width 1.0): `features.0` stem, 17 inverted residual blocks, `features.18` head.

use super::net::{ConvSpec, Net};
use crate::error::Result;
use crate::graph::ValueId;
use crate::ops::{Add, Dropout, Flatten, GlobalAveragePool};

/// `(expand ratio, channels, repeats, stride)` per stage.
const STAGES: [(usize, usize, usize, usize); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

/// Conv2dNormActivation: `name.0` conv, `name.1` BN, `name.2` ReLU6 (aliased as `name`).
fn conv_bn_relu6(net: &mut Net, name: &str, x: ValueId, spec: ConvSpec) -> Result<ValueId> {
    let h = net.conv(&format!("{name}.0"), x, spec)?;
    let h = net.bn(&format!("{name}.1"), h, 1e-5)?;
    let h = net.relu6(&format!("{name}.2"), h)?;
    net.alias(name, h)
}

fn inverted_residual(
    net: &mut Net,
    name: &str,
    x: ValueId,
    expand: usize,
    out: usize,
    stride: usize,
) -> Result<ValueId> {
    let cin = net.shape(x)[1];
    let hidden = cin * expand;
    let mut h = x;
    let mut part = 0;
    if expand != 1 {
        h = conv_bn_relu6(net, &format!("{name}.conv.{part}"), h, ConvSpec::same(hidden, 1, 1))?;
        part += 1;
    }
    h = conv_bn_relu6(net, &format!("{name}.conv.{part}"), h, ConvSpec::same(hidden, 3, stride).groups(hidden))?;
    h = net.conv(&format!("{name}.conv.{}", part + 1), h, ConvSpec::same(out, 1, 1))?;
    h = net.bn(&format!("{name}.conv.{}", part + 2), h, 1e-5)?;
    if stride == 1 && cin == out {
        net.node(name, Add, &[h, x])
    } else {
        net.alias(name, h)
    }
}

/// Builds the network on `x`; returns the logits value (`classifier.1`).
pub(crate) fn build(net: &mut Net, x: ValueId, classes: usize) -> Result<ValueId> {
    let mut h = conv_bn_relu6(net, "features.0", x, ConvSpec::same(32, 3, 2))?;
    let mut index = 1;
    for (expand, out, repeats, stride) in STAGES {
        for i in 0..repeats {
            h = inverted_residual(net, &format!("features.{index}"), h, expand, out, if i == 0 { stride } else { 1 })?;
            index += 1;
        }
    }
    h = conv_bn_relu6(net, "features.18", h, ConvSpec::same(1280, 1, 1))?;
    net.alias("features", h)?;
    let h = net.node("avgpool", GlobalAveragePool, &[h])?;
    let h = net.node("flatten", Flatten::default(), &[h])?;
    let h = net.node("classifier.0", Dropout { ratio: 0.2 }, &[h])?;
    net.linear("classifier.1", h, classes)
}
