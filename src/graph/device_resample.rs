//! Device lowerings of the separable linear maps of image planes — `Resize` (nearest and linear, every coordinate
//! mode) and `AdaptiveAvgPool` of any output size — as one `axis_resample` pass per spatial axis (width, then
//! height), and their input gradients as the transposed passes in reverse order. Axes the map leaves as they are
//! (an adaptive pool of a 7×7 input to 7×7) cost no pass.

use super::device::{count, DeviceValue};
use crate::ops::{self, Op};
use crate::Element;
use gradcam_kernels::device::{transpose_taps, Device, DeviceError};
use std::any::Any;

type Lowered<T> = Result<Option<T>, DeviceError>;

/// Per-axis taps, f32, one row per output index.
type AxisTaps = Vec<Vec<(usize, f32)>>;

/// The height and width taps of `op` on an `[n, c, h, w]` input, if it is a separable plane map.
fn plane_taps<T: Element>(op: &dyn Op<T>, h: usize, w: usize) -> Option<(AxisTaps, AxisTaps)> {
    let any: &dyn Any = op;
    let narrow = |t: Vec<Vec<(usize, f64)>>| -> AxisTaps {
        t.into_iter().map(|row| row.into_iter().map(|(i, w)| (i, w as f32)).collect()).collect()
    };
    if let Some(resize) = any.downcast_ref::<ops::Resize>() {
        let (ty, tx) = resize.tables(h, w);
        return Some((narrow(ty), narrow(tx)));
    }
    if let Some(pool) = any.downcast_ref::<ops::AdaptiveAvgPool>() {
        let [oh, ow] = pool.output;
        return Some((narrow(ops::AdaptiveAvgPool::axis_taps(h, oh)), narrow(ops::AdaptiveAvgPool::axis_taps(w, ow))));
    }
    None
}

/// Whether `taps` over an axis of `len` copies it unchanged.
fn is_identity(taps: &[Vec<(usize, f32)>], len: usize) -> bool {
    taps.len() == len && taps.iter().enumerate().all(|(j, row)| row.as_slice() == [(j, 1.0)])
}

/// `x` (with `outer · in_len · inner` elements) resampled along one axis by `taps`, or `x` itself when they are
/// the identity.
fn pass(
    dev: &Device,
    taps: &[Vec<(usize, f32)>],
    in_len: usize,
    (outer, inner): (usize, usize),
    x: DeviceValue,
    shape: Vec<usize>,
) -> Result<DeviceValue, DeviceError> {
    if is_identity(taps, in_len) {
        return Ok(x.reshaped(shape));
    }
    let table = dev.resample_table(in_len, taps)?;
    let mut y = dev.zeros(count(&shape))?;
    dev.axis_resample(&table, outer, inner, x.buffer(), &mut y)?;
    Ok(DeviceValue::new(y, shape))
}

/// The forward of a resize or adaptive pool on the device, or `None` when `op` is neither.
pub(super) fn forward<T: Element>(dev: &Device, op: &dyn Op<T>, args: &[DeviceValue]) -> Lowered<DeviceValue> {
    let Some(x) = args.first() else { return Ok(None) };
    let &[n, c, h, w] = x.shape() else { return Ok(None) };
    let Some((ty, tx)) = plane_taps(op, h, w) else { return Ok(None) };
    let (oh, ow) = (ty.len(), tx.len());
    let along_w = pass(dev, &tx, w, (n * c * h, 1), x.clone(), vec![n, c, h, ow])?;
    Ok(Some(pass(dev, &ty, h, (n * c, ow), along_w, vec![n, c, oh, ow])?))
}

/// The input gradient of a resize or adaptive pool on the device from its output gradient `dy`, or `None` when
/// `op` is neither.
pub(super) fn backward<T: Element>(
    dev: &Device,
    op: &dyn Op<T>,
    input_shape: &[usize],
    dy: &DeviceValue,
) -> Lowered<DeviceValue> {
    let &[n, c, h, w] = input_shape else { return Ok(None) };
    let Some((ty, tx)) = plane_taps(op, h, w) else { return Ok(None) };
    let (oh, ow) = (ty.len(), tx.len());
    let along_h = pass(dev, &transpose_taps(h, &ty), oh, (n * c, ow), dy.clone(), vec![n, c, h, ow])?;
    Ok(Some(pass(dev, &transpose_taps(w, &tx), ow, (n * c * h, 1), along_h, vec![n, c, h, w])?))
}
