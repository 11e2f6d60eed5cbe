//! torchvision ResNet-18/34/50 (v1.5: the stride sits on the 3×3 convolution of a bottleneck).

use super::net::{ConvSpec, Net};
use crate::error::Result;
use crate::graph::ValueId;
use crate::ops::{Add, Flatten, GlobalAveragePool, MaxPool, PoolAttrs};

const EPS: f64 = 1e-5;

/// Depth variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    R18,
    R34,
    R50,
}

fn basic_block(net: &mut Net, name: &str, x: ValueId, planes: usize, stride: usize) -> Result<ValueId> {
    let h = net.conv(&format!("{name}.conv1"), x, ConvSpec::same(planes, 3, stride))?;
    let h = net.bn(&format!("{name}.bn1"), h, EPS)?;
    let h = net.relu(&format!("{name}.relu"), h)?;
    let h = net.conv(&format!("{name}.conv2"), h, ConvSpec::same(planes, 3, 1))?;
    let h = net.bn(&format!("{name}.bn2"), h, EPS)?;
    let shortcut = downsample(net, name, x, planes, stride)?;
    let s = net.node(&format!("{name}.add"), Add, &[h, shortcut])?;
    net.relu(name, s)
}

fn bottleneck(net: &mut Net, name: &str, x: ValueId, planes: usize, stride: usize) -> Result<ValueId> {
    let h = net.conv(&format!("{name}.conv1"), x, ConvSpec::same(planes, 1, 1))?;
    let h = net.bn(&format!("{name}.bn1"), h, EPS)?;
    let h = net.relu(&format!("{name}.relu"), h)?;
    let h = net.conv(&format!("{name}.conv2"), h, ConvSpec::same(planes, 3, stride))?;
    let h = net.bn(&format!("{name}.bn2"), h, EPS)?;
    let h = net.relu(&format!("{name}.relu_1"), h)?;
    let h = net.conv(&format!("{name}.conv3"), h, ConvSpec::same(planes * 4, 1, 1))?;
    let h = net.bn(&format!("{name}.bn3"), h, EPS)?;
    let shortcut = downsample(net, name, x, planes * 4, stride)?;
    let s = net.node(&format!("{name}.add"), Add, &[h, shortcut])?;
    net.relu(name, s)
}

/// The identity, or a 1×1 strided conv + BN when the shape changes.
fn downsample(net: &mut Net, name: &str, x: ValueId, out: usize, stride: usize) -> Result<ValueId> {
    if stride == 1 && net.shape(x)[1] == out {
        return Ok(x);
    }
    let d = net.conv(&format!("{name}.downsample.0"), x, ConvSpec::same(out, 1, stride))?;
    net.bn(&format!("{name}.downsample.1"), d, EPS)
}

/// Builds the network on `x`; returns the logits value (`fc`).
pub(crate) fn build(net: &mut Net, x: ValueId, depth: Depth, classes: usize) -> Result<ValueId> {
    let blocks: [usize; 4] = match depth {
        Depth::R18 => [2, 2, 2, 2],
        Depth::R34 | Depth::R50 => [3, 4, 6, 3],
    };
    let h = net.conv("conv1", x, ConvSpec::same(64, 7, 2))?;
    let h = net.bn("bn1", h, EPS)?;
    let h = net.relu("relu", h)?;
    let mut h = net.node("maxpool", MaxPool(PoolAttrs::square(3, 2, 1)), &[h])?;
    for (stage, (&count, planes)) in blocks.iter().zip([64, 128, 256, 512]).enumerate() {
        for i in 0..count {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let name = format!("layer{}.{i}", stage + 1);
            h = match depth {
                Depth::R50 => bottleneck(net, &name, h, planes, stride)?,
                _ => basic_block(net, &name, h, planes, stride)?,
            };
        }
        net.alias(&format!("layer{}", stage + 1), h)?;
    }
    let h = net.node("avgpool", GlobalAveragePool, &[h])?;
    let h = net.node("flatten", Flatten::default(), &[h])?;
    net.linear("fc", h, classes)
}
