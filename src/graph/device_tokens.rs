//! Device lowerings of the ops transformers are made of: matrix products with batch axes, softmax and layer
//! normalization over the last axes, and axis permutations, forward and backward.

use super::device::{count, DeviceValue};
use crate::ops::{self, Op};
use crate::tensor::normalize_axis;
use crate::Element;
use gradcam_kernels::device::{Device, DeviceError, MAX_RANK};
use std::any::Any;

type Lowered<T> = Result<Option<T>, DeviceError>;

/// The permutation of a `Transpose` of a rank-`rank` tensor (reversed axes by default).
fn permutation(t: &ops::Transpose, rank: usize) -> Vec<usize> {
    t.perm.clone().unwrap_or_else(|| (0..rank).rev().collect())
}

/// Per batch index of a product's output, the element offsets of that batch's matrices in the two operands (their
/// batch axes broadcast to the output's); `None` unless both operands have at least two axes.
fn batch_offsets(a: &[usize], b: &[usize], out: &[usize]) -> Option<Vec<(usize, usize)>> {
    if a.len() < 2 || b.len() < 2 || out.len() < 2 || out.len() > MAX_RANK {
        return None;
    }
    let batch = &out[..out.len() - 2];
    let strides = |shape: &[usize]| -> Option<Vec<usize>> {
        let own = &shape[..shape.len() - 2];
        let matrix = shape[shape.len() - 2] * shape[shape.len() - 1];
        let lead = batch.len().checked_sub(own.len())?;
        let mut strides = vec![0; batch.len()];
        let mut stride = matrix;
        for d in (0..batch.len()).rev() {
            if d < lead {
                continue;
            }
            let s = own[d - lead];
            if s == batch[d] {
                strides[d] = stride;
            } else if s != 1 {
                return None;
            }
            stride *= s;
        }
        Some(strides)
    };
    let (sa, sb) = (strides(a)?, strides(b)?);
    let items = count(batch);
    Some(
        (0..items)
            .map(|mut i| {
                let (mut oa, mut ob) = (0, 0);
                for d in (0..batch.len()).rev() {
                    let c = i % batch[d];
                    i /= batch[d];
                    oa += c * sa[d];
                    ob += c * sb[d];
                }
                (oa, ob)
            })
            .collect(),
    )
}

/// The forward of a transformer op on the device, or `None` when it is not one (or not in a form the kernels take).
pub(super) fn forward<T: Element>(
    dev: &Device,
    op: &dyn Op<T>,
    args: &[DeviceValue],
    out_shape: &[usize],
) -> Lowered<DeviceValue> {
    let any: &dyn Any = op;
    let done = |y| Ok(Some(DeviceValue::new(y, out_shape.to_vec())));
    if any.is::<ops::MatMul>() {
        let (a, b) = (&args[0], &args[1]);
        let Some(offsets) = batch_offsets(a.shape(), b.shape(), out_shape) else { return Ok(None) };
        let (m, k, n) =
            (a.shape()[a.shape().len() - 2], a.shape()[a.shape().len() - 1], b.shape()[b.shape().len() - 1]);
        let mut y = dev.zeros(count(out_shape))?;
        for (item, &(oa, ob)) in offsets.iter().enumerate() {
            dev.gemm((m, n, k), (a.buffer(), oa, false), (b.buffer(), ob, false), (&mut y, item * m * n), 1.0, 0.0)?;
        }
        return done(y);
    }
    if let Some(softmax) = any.downcast_ref::<ops::Softmax>() {
        let x = &args[0];
        let rank = x.shape().len();
        if normalize_axis(softmax.axis, rank).ok() != Some(rank.wrapping_sub(1)) || count(x.shape()) == 0 {
            return Ok(None);
        }
        let mut y = dev.zeros(count(out_shape))?;
        dev.softmax_rows(x.shape()[rank - 1], x.buffer(), &mut y)?;
        return done(y);
    }
    if let Some(norm) = any.downcast_ref::<ops::LayerNormalization>() {
        let x = &args[0];
        let Some(axis) = normalize_axis(norm.axis, x.shape().len()).ok() else { return Ok(None) };
        let m = count(&x.shape()[axis..]);
        if m == 0 || count(x.shape()) == 0 || args[1..].iter().any(|p| p.buffer().len() != m) {
            return Ok(None);
        }
        let mut y = dev.zeros(count(out_shape))?;
        let bias = args.get(2).map(DeviceValue::buffer);
        dev.layer_norm_rows(m, norm.epsilon as f32, x.buffer(), (args[1].buffer(), bias), &mut y)?;
        return done(y);
    }
    if let Some(t) = any.downcast_ref::<ops::Transpose>() {
        let x = &args[0];
        if x.shape().is_empty() || x.shape().len() > MAX_RANK {
            return Ok(None);
        }
        let mut y = dev.zeros(count(out_shape))?;
        dev.permute(x.shape(), &permutation(t, x.shape().len()), x.buffer(), &mut y)?;
        return done(y);
    }
    Ok(None)
}

/// The input gradients of a transformer op on the device (`None` where not wanted), or `None` when it is not one.
/// `input(k)` is forward input `k` as the device keeps it, `output` the forward output.
pub(super) fn backward<T: Element>(
    dev: &Device,
    op: &dyn Op<T>,
    (shapes, wanted): (&[Vec<usize>], &[bool]),
    input: &dyn Fn(usize) -> Result<Option<DeviceValue>, DeviceError>,
    output: &dyn Fn() -> Result<Option<DeviceValue>, DeviceError>,
    dy: &DeviceValue,
) -> Lowered<Vec<Option<DeviceValue>>> {
    let any: &dyn Any = op;
    let mut grads: Vec<Option<DeviceValue>> = vec![None; shapes.len()];
    let only_first = wanted.iter().skip(1).all(|w| !w);
    if any.is::<ops::MatMul>() {
        let (sa, sb) = (&shapes[0], &shapes[1]);
        let Some(offsets) = batch_offsets(sa, sb, dy.shape()) else { return Ok(None) };
        let (Some(a), Some(b)) = (input(0)?, input(1)?) else { return Ok(None) };
        let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
        if wanted[0] {
            // dA (m×k) += dY (m×n) · Bᵀ, summed in batch order where A is broadcast.
            let mut da = dev.zeros(count(sa))?;
            let mut seen = std::collections::HashSet::new();
            for (item, &(oa, ob)) in offsets.iter().enumerate() {
                let beta = if seen.insert(oa) { 0.0 } else { 1.0 };
                dev.gemm(
                    (m, k, n),
                    (dy.buffer(), item * m * n, false),
                    (b.buffer(), ob, true),
                    (&mut da, oa),
                    1.0,
                    beta,
                )?;
            }
            grads[0] = Some(DeviceValue::new(da, sa.clone()));
        }
        if wanted[1] {
            // dB (k×n) += Aᵀ · dY (m×n).
            let mut db = dev.zeros(count(sb))?;
            let mut seen = std::collections::HashSet::new();
            for (item, &(oa, ob)) in offsets.iter().enumerate() {
                let beta = if seen.insert(ob) { 0.0 } else { 1.0 };
                dev.gemm(
                    (k, n, m),
                    (a.buffer(), oa, true),
                    (dy.buffer(), item * m * n, false),
                    (&mut db, ob),
                    1.0,
                    beta,
                )?;
            }
            grads[1] = Some(DeviceValue::new(db, sb.clone()));
        }
        return Ok(Some(grads));
    }
    if !only_first {
        return Ok(None);
    }
    let x_shape = &shapes[0];
    if let Some(softmax) = any.downcast_ref::<ops::Softmax>() {
        let rank = x_shape.len();
        if normalize_axis(softmax.axis, rank).ok() != Some(rank.wrapping_sub(1)) || count(x_shape) == 0 {
            return Ok(None);
        }
        let Some(y) = output()? else { return Ok(None) };
        let mut dx = dev.zeros(count(x_shape))?;
        dev.softmax_rows_backward(x_shape[rank - 1], y.buffer(), dy.buffer(), &mut dx)?;
        grads[0] = Some(DeviceValue::new(dx, x_shape.clone()));
        return Ok(Some(grads));
    }
    if let Some(norm) = any.downcast_ref::<ops::LayerNormalization>() {
        let Some(axis) = normalize_axis(norm.axis, x_shape.len()).ok() else { return Ok(None) };
        let m = count(&x_shape[axis..]);
        let (Some(x), Some(scale)) = (input(0)?, input(1)?) else { return Ok(None) };
        if m == 0 || count(x_shape) == 0 || scale.buffer().len() != m {
            return Ok(None);
        }
        let mut dx = dev.zeros(count(x_shape))?;
        dev.layer_norm_rows_backward(m, norm.epsilon as f32, (x.buffer(), scale.buffer()), dy.buffer(), &mut dx)?;
        grads[0] = Some(DeviceValue::new(dx, x_shape.clone()));
        return Ok(Some(grads));
    }
    if let Some(t) = any.downcast_ref::<ops::Transpose>() {
        let rank = x_shape.len();
        if rank == 0 || rank > MAX_RANK {
            return Ok(None);
        }
        let perm = permutation(t, rank);
        let mut inverse = vec![0; rank];
        for (d, &p) in perm.iter().enumerate() {
            if let Some(slot) = inverse.get_mut(p) {
                *slot = d;
            }
        }
        let mut dx = dev.zeros(count(x_shape))?;
        dev.permute(dy.shape(), &inverse, dy.buffer(), &mut dx)?;
        grads[0] = Some(DeviceValue::new(dx, x_shape.clone()));
        return Ok(Some(grads));
    }
    Ok(None)
}
