//! Device lowerings of the ops that move elements without arithmetic: constant padding, slicing with positive steps,
//! concatenation and gathering one index of an axis, forward and backward, as box copies (`box_read` / `box_write`)
//! and strided copies (`strided_read` / `strided_write`, for slices) in kernels/cuda/layout.cu.

use super::device::{count, DeviceValue};
use crate::ops::{self, Op, PadMode};
use crate::tensor::normalize_axis;
use crate::Element;
use gradcam_kernels::device::{Device, DeviceError, MAX_RANK};
use std::any::Any;

type Lowered<T> = Result<Option<T>, DeviceError>;

fn signed(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&p| p as i64).collect()
}

/// The one index a `Gather` takes along its axis of an input shaped `shape`, as `(axis, index)`; `None` for
/// several indices (or one out of range).
fn single_gather(gather: &ops::Gather, shape: &[usize]) -> Option<(usize, usize)> {
    let axis = normalize_axis(gather.axis, shape.len()).ok()?;
    let [index] = gather.indices.as_slice() else { return None };
    let dim = shape[axis] as i64;
    let index = if *index < 0 { index + dim } else { *index };
    usize::try_from(index).ok().filter(|&i| i < shape[axis]).map(|i| (axis, i))
}

/// The forward of a layout op on the device, or `None` when it is not one (or not in a form the kernels take).
pub(super) fn forward<T: Element>(
    dev: &Device,
    op: &dyn Op<T>,
    args: &[DeviceValue],
    out_shape: &[usize],
) -> Lowered<DeviceValue> {
    let any: &dyn Any = op;
    if out_shape.len() > MAX_RANK || out_shape.is_empty() {
        return Ok(None);
    }
    let done = |y| Ok(Some(DeviceValue::new(y, out_shape.to_vec())));
    if let Some(pad) = any.downcast_ref::<ops::Pad>() {
        let x = &args[0];
        if pad.mode != PadMode::Constant || pad.pads.len() != 2 * x.shape().len() {
            return Ok(None);
        }
        let mut y = dev.zeros(count(out_shape))?;
        let origin = signed(&pad.pads[..x.shape().len()]);
        dev.box_read(out_shape, x.shape(), &origin, pad.value as f32, x.buffer(), &mut y)?;
        return done(y);
    }
    if let Some(slice) = any.downcast_ref::<ops::Slice>() {
        let x = &args[0];
        let Some((start, step)) = slice.strided_box(x.shape()) else { return Ok(None) };
        let mut y = dev.zeros(count(out_shape))?;
        dev.strided_read((out_shape, x.shape()), (&start, &step), x.buffer(), &mut y)?;
        return done(y);
    }
    if let Some(gather) = any.downcast_ref::<ops::Gather>() {
        // One index: the slab at that index, read as a box of the input (its layout is the output's).
        let x = &args[0];
        let Some((axis, index)) = single_gather(gather, x.shape()) else { return Ok(None) };
        if x.shape().len() > MAX_RANK {
            return Ok(None);
        }
        let mut slab = x.shape().to_vec();
        slab[axis] = 1;
        let mut origin = vec![0i64; slab.len()];
        origin[axis] = -(index as i64);
        let mut y = dev.zeros(count(out_shape))?;
        dev.box_read(&slab, x.shape(), &origin, 0.0, x.buffer(), &mut y)?;
        return done(y);
    }
    if let Some(concat) = any.downcast_ref::<ops::Concat>() {
        let Some(axis) = normalize_axis(concat.axis, out_shape.len()).ok() else { return Ok(None) };
        let mut y = dev.zeros(count(out_shape))?;
        let mut origin = vec![0i64; out_shape.len()];
        for part in args {
            dev.box_write(out_shape, part.shape(), &origin, part.buffer(), &mut y)?;
            origin[axis] += part.shape()[axis] as i64;
        }
        return done(y);
    }
    Ok(None)
}

/// The input gradients of a layout op on the device (`None` where not wanted), or `None` when it is not one.
pub(super) fn backward<T: Element>(
    dev: &Device,
    op: &dyn Op<T>,
    input_shapes: &[Vec<usize>],
    wanted: &[bool],
    dy: &DeviceValue,
) -> Lowered<Vec<Option<DeviceValue>>> {
    let any: &dyn Any = op;
    if dy.shape().len() > MAX_RANK || dy.shape().is_empty() {
        return Ok(None);
    }
    let first = |g| {
        let mut out = vec![None; input_shapes.len()];
        out[0] = Some(DeviceValue::new(g, input_shapes[0].clone()));
        Ok(Some(out))
    };
    if let Some(pad) = any.downcast_ref::<ops::Pad>() {
        let x = &input_shapes[0];
        if pad.mode != PadMode::Constant || pad.pads.len() != 2 * x.len() {
            return Ok(None);
        }
        // The crop of the output gradient that the input occupies.
        let origin: Vec<i64> = signed(&pad.pads[..x.len()]).iter().map(|o| -o).collect();
        let mut dx = dev.zeros(count(x))?;
        dev.box_read(x, dy.shape(), &origin, 0.0, dy.buffer(), &mut dx)?;
        return first(dx);
    }
    if let Some(slice) = any.downcast_ref::<ops::Slice>() {
        let x = &input_shapes[0];
        let Some((start, step)) = slice.strided_box(x) else { return Ok(None) };
        // The output gradient put back where the slice was taken, zeros elsewhere.
        let mut dx = dev.zeros(count(x))?;
        dev.strided_write((dy.shape(), x), (&start, &step), dy.buffer(), &mut dx)?;
        return first(dx);
    }
    if let Some(gather) = any.downcast_ref::<ops::Gather>() {
        let x = &input_shapes[0];
        let Some((axis, index)) = single_gather(gather, x) else { return Ok(None) };
        if x.len() > MAX_RANK {
            return Ok(None);
        }
        // The output gradient put back at its index, zeros elsewhere.
        let mut slab = x.clone();
        slab[axis] = 1;
        let mut origin = vec![0i64; slab.len()];
        origin[axis] = index as i64;
        let mut dx = dev.zeros(count(x))?;
        dev.box_read(x, &slab, &origin, 0.0, dy.buffer(), &mut dx)?;
        return first(dx);
    }
    if let Some(concat) = any.downcast_ref::<ops::Concat>() {
        let Some(axis) = normalize_axis(concat.axis, dy.shape().len()).ok() else { return Ok(None) };
        let mut out = vec![None; input_shapes.len()];
        let mut at = 0i64;
        for (k, shape) in input_shapes.iter().enumerate() {
            if wanted.get(k).copied().unwrap_or(false) {
                let mut origin = vec![0i64; shape.len()];
                origin[axis] = -at;
                let mut dx = dev.zeros(count(shape))?;
                dev.box_read(shape, dy.shape(), &origin, 0.0, dy.buffer(), &mut dx)?;
                out[k] = Some(DeviceValue::new(dx, shape.clone()));
            }
            at += shape.get(axis).copied().unwrap_or(0) as i64;
        }
        return Ok(Some(out));
    }
    Ok(None)
}
