//! Lowerings of the ONNX ops that move, select or reduce values: reshapes, transposes, concatenation, splits, pads,
//! slices, gathers, broadcasts, reductions and resizes.

use super::attrs::Attrs;
use super::context::{const_floats, const_ints, first, need_input, op, unsupported, usize_list, Importer, Lowered};
use super::proto::NodeProto;
use crate::error::Result;
use crate::ops::*;

/// ONNX Flatten.
pub(super) fn flatten(_im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    Ok(op(Flatten { axis: Attrs::of(n).int("axis", 1) }, &[first(n)]))
}

/// ONNX Transpose.
pub(super) fn transpose(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let perm = Attrs::of(n).ints("perm").map(|p| usize_list(im, n, &p, "perm")).transpose()?;
    Ok(op(Transpose { perm }, &[first(n)]))
}

/// ONNX ReduceMean, ReduceSum.
pub(super) fn reduce(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let (a, x, opset) = (Attrs::of(n), first(n), im.opset);
    let axes_from_input = (n.op_type == "ReduceSum" && opset >= 13) || opset >= 18;
    let axes = if axes_from_input { const_ints(im, n, 1)? } else { a.ints("axes") };
    let axes = match axes {
        Some(v) if v.is_empty() && a.int("noop_with_empty_axes", 0) != 0 => return Ok(Lowered::Alias(x.to_string())),
        Some(v) if v.is_empty() => None,
        other => other,
    };
    let r = ReduceAxes { axes, keepdims: a.int("keepdims", 1) != 0 };
    Ok(if n.op_type == "ReduceMean" { op(ReduceMean(r), &[x]) } else { op(ReduceSum(r), &[x]) })
}

/// ONNX Reshape.
pub(super) fn reshape(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    let opset = im.opset;
    let shape = if opset < 5 { a.ints("shape") } else { const_ints(im, n, 1)? };
    let shape = shape.ok_or_else(|| im.err(format!("node '{}': Reshape without a shape", n.name)))?;
    // Our Reshape reads 0 as "copy this dimension" (ONNX's default). With `allowzero = 1` (opset 14) a 0 asks for
    // an empty dimension instead, which no image model computes with: refused rather than read the other way.
    if a.int("allowzero", 0) != 0 && shape.contains(&0) {
        return Err(im.err(format!(
            "node '{}': Reshape with allowzero=1 and a 0 in its shape {shape:?} (an empty dimension) is not supported",
            n.name
        )));
    }
    Ok(op(Reshape { shape }, &[x]))
}

/// ONNX Squeeze.
pub(super) fn squeeze(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    let opset = im.opset;
    let axes = if opset < 13 { a.ints("axes") } else { const_ints(im, n, 1)? };
    Ok(op(Squeeze { axes }, &[x]))
}

/// ONNX Unsqueeze.
pub(super) fn unsqueeze(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    let opset = im.opset;
    let axes = if opset < 13 { a.ints("axes") } else { const_ints(im, n, 1)? };
    Ok(op(Unsqueeze { axes: axes.ok_or_else(|| im.err(format!("node '{}': Unsqueeze without axes", n.name)))? }, &[x]))
}

/// ONNX Concat.
pub(super) fn concat(_im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let ins: Vec<&str> = n.input.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
    Ok(op(Concat { axis: a.int("axis", 0) }, &ins))
}

/// ONNX Split.
pub(super) fn split(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    let opset = im.opset;
    let shape = im.shape(x, n)?;
    let axis = a.int("axis", 0);
    let ax = crate::tensor::normalize_axis(axis, shape.len()).map_err(|e| im.err(e.to_string()))?;
    let given = if opset < 13 { a.ints("split") } else { const_ints(im, n, 1)? };
    let lengths = match given {
        Some(v) => usize_list(im, n, &v, "split")?,
        None => {
            let parts = n.output.len().max(1);
            let each = shape[ax].div_ceil(parts);
            (0..parts).map(|i| each.min(shape[ax].saturating_sub(i * each))).collect()
        }
    };
    Ok(op(Split { axis, lengths }, &[x]))
}

/// ONNX Pad.
pub(super) fn pad(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    let opset = im.opset;
    let (pads, value) = if opset < 11 {
        (a.ints("pads").or_else(|| a.ints("paddings")), a.float("value", 0.0))
    } else {
        let v = const_floats(im, n, 2)?.and_then(|v| v.first().copied()).unwrap_or(0.0);
        (const_ints(im, n, 1)?, v)
    };
    let pads = pads.ok_or_else(|| im.err(format!("node '{}': Pad without pads", n.name)))?;
    let rank = im.shape(x, n)?.len();
    let pads = if let Some(axes) = const_ints(im, n, 3)? {
        // Opset 18: pads for the listed axes only.
        if pads.len() != 2 * axes.len() {
            return Err(im.err(format!("node '{}': {} pads for {} axes", n.name, pads.len(), axes.len())));
        }
        let mut full = vec![0i64; 2 * rank];
        for (k, &ax) in axes.iter().enumerate() {
            let ax = crate::tensor::normalize_axis(ax, rank).map_err(|e| im.err(e.to_string()))?;
            full[ax] = pads[k];
            full[ax + rank] = pads[k + axes.len()];
        }
        full
    } else {
        pads
    };
    if pads.iter().any(|&p| p < 0) {
        return Err(unsupported(im, n, "negative pads (cropping)"));
    }
    let pads = usize_list(im, n, &pads, "pads")?;
    let mode = match a.string("mode", "constant").as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        other => return Err(unsupported(im, n, &format!("mode '{other}'"))),
    };
    Ok(op(Pad { pads, mode, value: value as f64 }, &[x]))
}

/// ONNX Slice.
pub(super) fn slice(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    let opset = im.opset;
    let (starts, ends, axes, steps) = if opset < 10 {
        (a.ints("starts"), a.ints("ends"), a.ints("axes"), None)
    } else {
        (const_ints(im, n, 1)?, const_ints(im, n, 2)?, const_ints(im, n, 3)?, const_ints(im, n, 4)?)
    };
    let (starts, ends) =
        starts.zip(ends).ok_or_else(|| im.err(format!("node '{}': Slice without starts/ends", n.name)))?;
    Ok(op(Slice { starts, ends, axes, steps }, &[x]))
}

/// ONNX Gather.
pub(super) fn gather(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    if im.constant(need_input(im, n, 1)?).is_none() {
        return Ok(op(GatherRuntime { axis: a.int("axis", 0) }, &[x, need_input(im, n, 1)?]));
    }
    let idx_name = need_input(im, n, 1)?;
    let idx = im.constant(idx_name).ok_or_else(|| unsupported(im, n, "indices must be constant"))?;
    let index_shape = idx.shape().to_vec();
    let indices = idx.to_i64s().map_err(|e| im.err(e))?;
    Ok(op(Gather { axis: a.int("axis", 0), indices, index_shape }, &[x]))
}

/// ONNX Expand.
pub(super) fn expand(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let x = first(n);
    let shape = const_ints(im, n, 1)?.ok_or_else(|| im.err(format!("node '{}': Expand without a shape", n.name)))?;
    Ok(op(Expand { shape: usize_list(im, n, &shape, "shape")? }, &[x]))
}

/// ONNX Tile.
pub(super) fn tile(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let x = first(n);
    let repeats =
        const_ints(im, n, 1)?.ok_or_else(|| im.err(format!("node '{}': Tile without constant repeats", n.name)))?;
    Ok(op(Tile { repeats: usize_list(im, n, &repeats, "repeats")? }, &[x]))
}

/// ONNX Resize, Upsample.
pub(super) fn resize(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let x = first(n);
    let r = super::resize::lower(im, n, x)?;
    Ok(op(r, &[x]))
}
