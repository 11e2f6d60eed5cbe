//! torchvision VGG-11 / VGG-16 / VGG-16-BN: `features.N` numbered as in `nn.Sequential`.

use super::net::{ConvSpec, Net};
use crate::error::Result;
use crate::graph::ValueId;
use crate::ops::{AdaptiveAvgPool, Dropout, Flatten, MaxPool, PoolAttrs};

/// Channel plan; 0 marks a 2×2 max-pool.
const VGG11: &[usize] = &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0];
const VGG16: &[usize] = &[64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0];

/// Variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Vgg11,
    Vgg16,
    Vgg16Bn,
}

/// Builds the network on `x`; returns the logits value (`classifier.6`).
pub(crate) fn build(net: &mut Net, x: ValueId, variant: Variant, classes: usize) -> Result<ValueId> {
    let (plan, bn) = match variant {
        Variant::Vgg11 => (VGG11, false),
        Variant::Vgg16 => (VGG16, false),
        Variant::Vgg16Bn => (VGG16, true),
    };
    let mut h = x;
    let mut index = 0;
    for &c in plan {
        if c == 0 {
            h = net.node(&format!("features.{index}"), MaxPool(PoolAttrs::square(2, 2, 0)), &[h])?;
            index += 1;
            continue;
        }
        h = net.conv(&format!("features.{index}"), h, ConvSpec::same(c, 3, 1).bias())?;
        index += 1;
        if bn {
            h = net.bn(&format!("features.{index}"), h, 1e-5)?;
            index += 1;
        }
        h = net.relu(&format!("features.{index}"), h)?;
        index += 1;
    }
    net.alias("features", h)?;
    let h = net.node("avgpool", AdaptiveAvgPool { output: [7, 7] }, &[h])?;
    let h = net.node("flatten", Flatten::default(), &[h])?;
    let h = net.linear("classifier.0", h, 4096)?;
    let h = net.relu("classifier.1", h)?;
    let h = net.node("classifier.2", Dropout { ratio: 0.5 }, &[h])?;
    let h = net.linear("classifier.3", h, 4096)?;
    let h = net.relu("classifier.4", h)?;
    let h = net.node("classifier.5", Dropout { ratio: 0.5 }, &[h])?;
    net.linear("classifier.6", h, classes)
}
