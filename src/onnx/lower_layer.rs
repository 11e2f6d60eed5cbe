//! Lowerings of the ONNX layers: products, convolutions, pools, normalizations, softmax.

use super::attrs::Attrs;
use super::context::{first, input, need_input, op, unsupported, usize_list, Importer, Lowered, Val};
use super::proto::NodeProto;
use crate::error::Result;
use crate::ops::*;
use gradcam_kernels::geometry::same_padding;

/// 2-D window attributes shared by Conv, ConvTranspose and the pools, with `auto_pad` resolved.
struct Window {
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [usize; 4],
}

fn window(im: &Importer, n: &NodeProto, x: &[usize], kernel: Option<[usize; 2]>) -> Result<Window> {
    let a = Attrs::of(n);
    let pair = |name: &str, default: usize| -> Result<[usize; 2]> {
        match a.ints(name) {
            None => Ok([default; 2]),
            Some(v) if v.len() == 2 => {
                let u = usize_list(im, n, &v, name)?;
                Ok([u[0], u[1]])
            }
            Some(v) => Err(unsupported(im, n, &format!("{name} {v:?}: only 2-D windows are supported"))),
        }
    };
    let kernel = match kernel {
        Some(k) => k,
        None => pair("kernel_shape", 0)?,
    };
    if x.len() != 4 {
        return Err(unsupported(im, n, &format!("input shape {x:?}: only 2-D (NCHW) inputs are supported")));
    }
    let (strides, dilations) = (pair("strides", 1)?, pair("dilations", 1)?);
    let pads = match a.ints("pads") {
        None => [0; 4],
        Some(v) if v.len() == 4 => {
            let u = usize_list(im, n, &v, "pads")?;
            [u[0], u[1], u[2], u[3]]
        }
        Some(v) => return Err(unsupported(im, n, &format!("pads {v:?}: only 2-D windows are supported"))),
    };
    let auto = a.string("auto_pad", "NOTSET");
    let pads = match auto.as_str() {
        "NOTSET" => pads,
        "VALID" => [0; 4],
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = [0; 4];
            for axis in 0..2 {
                (p[axis], p[axis + 2]) =
                    same_padding(x[2 + axis], kernel[axis], strides[axis], dilations[axis], auto == "SAME_UPPER");
            }
            p
        }
        other => return Err(im.err(format!("node '{}': unknown auto_pad '{other}'", n.name))),
    };
    Ok(Window { kernel, strides, dilations, pads })
}

fn pool_attrs(w: &Window, ceil_mode: bool) -> PoolAttrs {
    PoolAttrs { kernel: w.kernel, strides: w.strides, pads: w.pads, dilations: w.dilations, ceil_mode }
}

/// Softmax / LogSoftmax before opset 13 normalise over all axes from `axis` on: flatten, apply, restore.
fn coerced_softmax(im: &mut Importer, n: &NodeProto, log: bool) -> Result<Lowered> {
    let x = need_input(im, n, 0)?;
    let shape = im.shape(x, n)?;
    let default = if im.opset < 13 { 1 } else { -1 };
    let axis = Attrs::of(n).int("axis", default);
    let rank = shape.len() as i64;
    let axis_u = if axis < 0 { axis + rank } else { axis };
    let make = |axis: i64| -> Box<dyn Op<f32>> {
        if log {
            Box::new(LogSoftmax { axis })
        } else {
            Box::new(Softmax { axis })
        }
    };
    if im.opset >= 13 || axis_u == rank - 1 {
        return Ok(Lowered::Op(make(axis), vec![x.to_string()]));
    }
    // Flatten to [outer, inner], normalise over inner, reshape back.
    let out = &n.output[0];
    let id = im.value(x, n)?;
    let flat = im.b.node(&format!("{out}::flatten"), Flatten { axis: axis_u }, &[id])?;
    let sm = im.b.node_with_outputs(&format!("{out}::softmax"), make(1), &[flat], &[&format!("{out}::softmax")])?[0];
    im.vals.insert(format!("{out}::softmax"), Val::Dyn(sm));
    let back = Reshape { shape: shape.iter().map(|&d| d as i64).collect() };
    Ok(Lowered::Op(Box::new(back), vec![format!("{out}::softmax")]))
}

/// ONNX Softmax.
pub(super) fn softmax(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    coerced_softmax(im, n, false)
}

/// ONNX LogSoftmax.
pub(super) fn log_softmax(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    coerced_softmax(im, n, true)
}

/// ONNX LayerNormalization.
pub(super) fn layer_normalization(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    if n.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(unsupported(im, n, "the Mean and InvStdDev outputs"));
    }
    let ln = LayerNormalization { axis: a.int("axis", -1), epsilon: a.float("epsilon", 1e-5) as f64 };
    let mut ins = vec![x, need_input(im, n, 1)?];
    ins.extend(input(n, 2));
    Ok(op(ln, &ins))
}

/// ONNX Einsum.
pub(super) fn einsum(_im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let ins: Vec<&str> = n.input.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
    Ok(op(Einsum { equation: a.string("equation", "") }, &ins))
}

/// ONNX Gemm.
pub(super) fn gemm(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    let g = Gemm {
        alpha: a.float("alpha", 1.0) as f64,
        beta: a.float("beta", 1.0) as f64,
        trans_a: a.int("transA", 0) != 0,
        trans_b: a.int("transB", 0) != 0,
    };
    let mut ins = vec![x, need_input(im, n, 1)?];
    ins.extend(input(n, 2));
    Ok(op(g, &ins))
}

/// A convolution's weight input and its shape, which must be 4-D (`[M, C/groups, kh, kw]`).
fn weight_2d<'n>(im: &Importer, n: &'n NodeProto) -> Result<(&'n str, Vec<usize>)> {
    let w = need_input(im, n, 1)?;
    let ws = im.shape(w, n)?;
    if ws.len() != 4 {
        return Err(unsupported(im, n, &format!("weight shape {ws:?}: only 2-D convolutions are supported")));
    }
    Ok((w, ws))
}

/// ONNX Conv.
pub(super) fn conv(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    if im.shape(need_input(im, n, 1)?, n)?.len() == 5 {
        return super::lower_3d::conv(im, n);
    }
    let (a, x) = (Attrs::of(n), first(n));
    let (w, ws) = weight_2d(im, n)?;
    let win = window(im, n, &im.shape(x, n)?, Some([ws[2], ws[3]]))?;
    let conv = Conv {
        strides: win.strides,
        dilations: win.dilations,
        pads: win.pads,
        groups: a.int("group", 1).max(1) as usize,
    };
    let mut ins = vec![x, w];
    ins.extend(input(n, 2));
    Ok(op(conv, &ins))
}

/// ONNX ConvTranspose.
pub(super) fn conv_transpose(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    if im.shape(need_input(im, n, 1)?, n)?.len() == 5 {
        return super::lower_3d::conv_transpose(im, n);
    }
    let (a, x) = (Attrs::of(n), first(n));
    let (w, ws) = weight_2d(im, n)?;
    let xs = im.shape(x, n)?;
    let mut win = window(im, n, &xs, Some([ws[2], ws[3]]))?;
    let out_pad = match a.ints("output_padding") {
        Some(v) if v.len() == 2 => {
            let u = usize_list(im, n, &v, "output_padding")?;
            [u[0], u[1]]
        }
        _ => [0, 0],
    };
    if let Some(out) = a.ints("output_shape") {
        // Pads that produce the requested size (SAME_UPPER-style split of the excess).
        let out = usize_list(im, n, &out, "output_shape")?;
        let out = &out[out.len().saturating_sub(2)..];
        for axis in 0..2 {
            let full = xs[2 + axis].saturating_sub(1) * win.strides[axis]
                + win.dilations[axis] * (ws[2 + axis] - 1)
                + 1
                + out_pad[axis];
            let total = full
                .checked_sub(out[axis])
                .ok_or_else(|| im.err(format!("node '{}': output_shape too large", n.name)))?;
            win.pads[axis] = total / 2;
            win.pads[axis + 2] = total - total / 2;
        }
    }
    let ct = ConvTranspose {
        strides: win.strides,
        dilations: win.dilations,
        pads: win.pads,
        output_padding: out_pad,
        groups: a.int("group", 1).max(1) as usize,
    };
    let mut ins = vec![x, w];
    ins.extend(input(n, 2));
    Ok(op(ct, &ins))
}

/// ONNX MaxPool.
pub(super) fn max_pool(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    if im.shape(x, n)?.len() == 5 {
        return super::lower_3d::pool(im, n);
    }
    if n.output.len() > 1 && !n.output[1].is_empty() {
        return Err(unsupported(im, n, "the Indices output"));
    }
    let win = window(im, n, &im.shape(x, n)?, None)?;
    Ok(op(MaxPool(pool_attrs(&win, a.int("ceil_mode", 0) != 0)), &[x]))
}

/// ONNX AveragePool.
pub(super) fn average_pool(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    if im.shape(x, n)?.len() == 5 {
        return super::lower_3d::pool(im, n);
    }
    let win = window(im, n, &im.shape(x, n)?, None)?;
    let ap = AveragePool {
        attrs: pool_attrs(&win, a.int("ceil_mode", 0) != 0),
        count_include_pad: a.int("count_include_pad", 0) != 0,
    };
    Ok(op(ap, &[x]))
}

/// ONNX BatchNormalization.
pub(super) fn batch_normalization(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let ins: Vec<&str> = (0..5).map(|i| need_input(im, n, i)).collect::<Result<_>>()?;
    Ok(op(BatchNormalization { epsilon: a.float("epsilon", 1e-5) as f64 }, &ins))
}

/// ONNX InstanceNormalization.
pub(super) fn instance_normalization(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let ins: Vec<&str> = (0..3).map(|i| need_input(im, n, i)).collect::<Result<_>>()?;
    Ok(op(InstanceNormalization { epsilon: a.float("epsilon", 1e-5) as f64 }, &ins))
}

/// ONNX LRN.
pub(super) fn lrn(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    let size = a.int("size", 1);
    if size < 1 {
        return Err(im.err(format!("node '{}': LRN size {size}", n.name)));
    }
    let lrn = Lrn {
        size: size as usize,
        alpha: a.float("alpha", 1e-4) as f64,
        beta: a.float("beta", 0.75) as f64,
        bias: a.float("bias", 1.0) as f64,
    };
    Ok(op(lrn, &[x]))
}
