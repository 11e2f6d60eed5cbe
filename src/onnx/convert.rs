//! One ONNX node → engine ops, or a folded constant when every input is known.

use super::attrs::Attrs;
use super::constant::{Const, MAX_ELEMENTS};
use super::context::{
    const_floats, const_ints, input, need_input, op, unsupported, usize_list, Importer, Lowered, Val,
};
use super::proto::NodeProto;
use crate::error::{Error, Result};
use crate::ops::*;
use gradcam_kernels::geometry::same_padding;
use ndarray::{ArrayD, IxDyn};

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

/// Builds the engine op for a node whose value inputs may be dynamic.
fn lower(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = input(n, 0).unwrap_or("");
    let opset = im.opset;
    Ok(match n.op_type.as_str() {
        "Identity" | "Dropout" => Lowered::Alias(x.to_string()),
        "Relu" => op(Relu, &[x]),
        "Sigmoid" => op(Sigmoid, &[x]),
        "Tanh" => op(Tanh, &[x]),
        "Exp" => op(Exp, &[x]),
        "Abs" => op(Abs, &[x]),
        "Erf" => op(Erf, &[x]),
        "Gelu" => {
            let tanh = match a.string("approximate", "none").as_str() {
                "none" => false,
                "tanh" => true,
                other => return Err(unsupported(im, n, &format!("approximate '{other}'"))),
            };
            op(Gelu { tanh }, &[x])
        }
        "LayerNormalization" => {
            if n.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(unsupported(im, n, "the Mean and InvStdDev outputs"));
            }
            let ln = LayerNormalization { axis: a.int("axis", -1), epsilon: a.float("epsilon", 1e-5) as f64 };
            let mut ins = vec![x, need_input(im, n, 1)?];
            ins.extend(input(n, 2));
            op(ln, &ins)
        }
        "Einsum" => {
            let ins: Vec<&str> = n.input.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
            op(Einsum { equation: a.string("equation", "") }, &ins)
        }
        "Where" => op(Where, &[x, need_input(im, n, 1)?, need_input(im, n, 2)?]),
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" => {
            op(Compare(super::fold_int::comparison(&n.op_type)), &[x, need_input(im, n, 1)?])
        }
        "Sqrt" => op(Sqrt, &[x]),
        "Softplus" => op(Softplus, &[x]),
        "HardSwish" => op(HardSwish, &[x]),
        "LeakyRelu" => op(LeakyRelu { alpha: a.float("alpha", 0.01) as f64 }, &[x]),
        "Elu" => op(Elu { alpha: a.float("alpha", 1.0) as f64 }, &[x]),
        "Selu" => {
            let d = Selu::default();
            op(
                Selu { alpha: a.float("alpha", d.alpha as f32) as f64, gamma: a.float("gamma", d.gamma as f32) as f64 },
                &[x],
            )
        }
        "HardSigmoid" => {
            op(HardSigmoid { alpha: a.float("alpha", 0.2) as f64, beta: a.float("beta", 0.5) as f64 }, &[x])
        }
        "Neg" => {
            let minus = format!("{}::minus_one", n.output[0]);
            im.vals.insert(minus.clone(), Val::Const(Const::F(ArrayD::from_elem(IxDyn(&[]), -1.0))));
            op(Mul, &[x, &minus])
        }
        "Clip" => {
            let (lo, hi) = if opset < 11 {
                (a.float("min", f32::NEG_INFINITY), a.float("max", f32::INFINITY))
            } else {
                let scalar =
                    |i| -> Result<Option<f32>> { Ok(const_floats(im, n, i)?.and_then(|v| v.first().copied())) };
                (scalar(1)?.unwrap_or(f32::NEG_INFINITY), scalar(2)?.unwrap_or(f32::INFINITY))
            };
            op(Clip { min: lo as f64, max: hi as f64 }, &[x])
        }
        "PRelu" => {
            let slope = need_input(im, n, 1)?;
            let (xs, ss) = (im.shape(x, n)?, im.shape(slope, n)?);
            if im.opset < 7 && ss.len() == 1 && xs.len() > 2 && ss[0] == xs[1] && ss[0] != xs[xs.len() - 1] {
                // Before opset 7 a 1-D slope is per channel: make it [C, 1, …, 1].
                let mut shape = vec![ss[0] as i64];
                shape.resize(xs.len() - 1, 1);
                let reshaped = format!("{}::per_channel", n.output[0]);
                let step = NodeProto {
                    input: vec![slope.to_string()],
                    output: vec![reshaped.clone()],
                    name: reshaped.clone(),
                    op_type: "Reshape".into(),
                    attribute: vec![super::proto::AttributeProto {
                        name: "shape".into(),
                        ints: shape,
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                let saved = im.opset;
                im.opset = 1;
                let r = node(im, &step);
                im.opset = saved;
                r?;
                return Ok(Lowered::Op(Box::new(PRelu), vec![x.to_string(), reshaped]));
            }
            op(PRelu, &[x, slope])
        }
        "Add" | "Sum" if n.input.len() == 2 => op(Add, &[x, need_input(im, n, 1)?]),
        "Sum" | "Max" | "Min" | "Mean" if n.input.len() == 1 => Lowered::Alias(x.to_string()),
        "Sub" => op(Sub, &[x, need_input(im, n, 1)?]),
        "Mul" => op(Mul, &[x, need_input(im, n, 1)?]),
        "Div" => op(Div, &[x, need_input(im, n, 1)?]),
        "Pow" => op(Pow, &[x, need_input(im, n, 1)?]),
        "Max" if n.input.len() == 2 => op(Max, &[x, need_input(im, n, 1)?]),
        "Min" if n.input.len() == 2 => op(Min, &[x, need_input(im, n, 1)?]),
        "MatMul" => op(MatMul, &[x, need_input(im, n, 1)?]),
        "Gemm" => {
            let g = Gemm {
                alpha: a.float("alpha", 1.0) as f64,
                beta: a.float("beta", 1.0) as f64,
                trans_a: a.int("transA", 0) != 0,
                trans_b: a.int("transB", 0) != 0,
            };
            let mut ins = vec![x, need_input(im, n, 1)?];
            ins.extend(input(n, 2));
            op(g, &ins)
        }
        "Conv" if im.shape(need_input(im, n, 1)?, n)?.len() == 5 => super::lower_3d::conv(im, n)?,
        "ConvTranspose" if im.shape(need_input(im, n, 1)?, n)?.len() == 5 => super::lower_3d::conv_transpose(im, n)?,
        "MaxPool" | "AveragePool" if im.shape(x, n)?.len() == 5 => super::lower_3d::pool(im, n)?,
        "Conv" => {
            let w = need_input(im, n, 1)?;
            let ws = im.shape(w, n)?;
            if ws.len() != 4 {
                return Err(unsupported(im, n, &format!("weight shape {ws:?}: only 2-D convolutions are supported")));
            }
            let win = window(im, n, &im.shape(x, n)?, Some([ws[2], ws[3]]))?;
            let conv = Conv {
                strides: win.strides,
                dilations: win.dilations,
                pads: win.pads,
                groups: a.int("group", 1).max(1) as usize,
            };
            let mut ins = vec![x, w];
            ins.extend(input(n, 2));
            op(conv, &ins)
        }
        "ConvTranspose" => {
            let w = need_input(im, n, 1)?;
            let ws = im.shape(w, n)?;
            let xs = im.shape(x, n)?;
            if ws.len() != 4 {
                return Err(unsupported(im, n, &format!("weight shape {ws:?}: only 2-D convolutions are supported")));
            }
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
            op(ct, &ins)
        }
        "MaxPool" => {
            if n.output.len() > 1 && !n.output[1].is_empty() {
                return Err(unsupported(im, n, "the Indices output"));
            }
            let win = window(im, n, &im.shape(x, n)?, None)?;
            op(MaxPool(pool_attrs(&win, a.int("ceil_mode", 0) != 0)), &[x])
        }
        "AveragePool" => {
            let win = window(im, n, &im.shape(x, n)?, None)?;
            let ap = AveragePool {
                attrs: pool_attrs(&win, a.int("ceil_mode", 0) != 0),
                count_include_pad: a.int("count_include_pad", 0) != 0,
            };
            op(ap, &[x])
        }
        "GlobalAveragePool" => op(GlobalAveragePool, &[x]),
        "GlobalMaxPool" => op(GlobalMaxPool, &[x]),
        "BatchNormalization" => {
            let ins: Vec<&str> = (0..5).map(|i| need_input(im, n, i)).collect::<Result<_>>()?;
            op(BatchNormalization { epsilon: a.float("epsilon", 1e-5) as f64 }, &ins)
        }
        "InstanceNormalization" => {
            let ins: Vec<&str> = (0..3).map(|i| need_input(im, n, i)).collect::<Result<_>>()?;
            op(InstanceNormalization { epsilon: a.float("epsilon", 1e-5) as f64 }, &ins)
        }
        "LRN" => {
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
            op(lrn, &[x])
        }
        "Softmax" => coerced_softmax(im, n, false)?,
        "LogSoftmax" => coerced_softmax(im, n, true)?,
        "Flatten" => op(Flatten { axis: a.int("axis", 1) }, &[x]),
        "Reshape" => {
            let shape = if opset < 5 { a.ints("shape") } else { const_ints(im, n, 1)? };
            op(
                Reshape { shape: shape.ok_or_else(|| im.err(format!("node '{}': Reshape without a shape", n.name)))? },
                &[x],
            )
        }
        "Transpose" => op(Transpose { perm: a.ints("perm").map(|p| usize_list(im, n, &p, "perm")).transpose()? }, &[x]),
        "Squeeze" => {
            let axes = if opset < 13 { a.ints("axes") } else { const_ints(im, n, 1)? };
            op(Squeeze { axes }, &[x])
        }
        "Unsqueeze" => {
            let axes = if opset < 13 { a.ints("axes") } else { const_ints(im, n, 1)? };
            op(
                Unsqueeze { axes: axes.ok_or_else(|| im.err(format!("node '{}': Unsqueeze without axes", n.name)))? },
                &[x],
            )
        }
        "Concat" => {
            let ins: Vec<&str> = n.input.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
            op(Concat { axis: a.int("axis", 0) }, &ins)
        }
        "Split" => {
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
            op(Split { axis, lengths }, &[x])
        }
        "Pad" => {
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
            op(Pad { pads, mode, value: value as f64 }, &[x])
        }
        "ReduceMean" | "ReduceSum" => {
            let axes_from_input = (n.op_type == "ReduceSum" && opset >= 13) || opset >= 18;
            let axes = if axes_from_input { const_ints(im, n, 1)? } else { a.ints("axes") };
            let axes = match axes {
                Some(v) if v.is_empty() && a.int("noop_with_empty_axes", 0) != 0 => {
                    return Ok(Lowered::Alias(x.to_string()))
                }
                Some(v) if v.is_empty() => None,
                other => other,
            };
            let r = ReduceAxes { axes, keepdims: a.int("keepdims", 1) != 0 };
            if n.op_type == "ReduceMean" {
                op(ReduceMean(r), &[x])
            } else {
                op(ReduceSum(r), &[x])
            }
        }
        "Slice" => {
            let (starts, ends, axes, steps) = if opset < 10 {
                (a.ints("starts"), a.ints("ends"), a.ints("axes"), None)
            } else {
                (const_ints(im, n, 1)?, const_ints(im, n, 2)?, const_ints(im, n, 3)?, const_ints(im, n, 4)?)
            };
            let (starts, ends) =
                starts.zip(ends).ok_or_else(|| im.err(format!("node '{}': Slice without starts/ends", n.name)))?;
            op(Slice { starts, ends, axes, steps }, &[x])
        }
        "Gather" if im.constant(need_input(im, n, 1)?).is_none() => {
            op(GatherRuntime { axis: a.int("axis", 0) }, &[x, need_input(im, n, 1)?])
        }
        "Gather" => {
            let idx_name = need_input(im, n, 1)?;
            let idx = im.constant(idx_name).ok_or_else(|| unsupported(im, n, "indices must be constant"))?;
            let index_shape = idx.shape().to_vec();
            let indices = idx.to_i64s().map_err(|e| im.err(e))?;
            op(Gather { axis: a.int("axis", 0), indices, index_shape }, &[x])
        }
        "Expand" => {
            let shape =
                const_ints(im, n, 1)?.ok_or_else(|| im.err(format!("node '{}': Expand without a shape", n.name)))?;
            op(Expand { shape: usize_list(im, n, &shape, "shape")? }, &[x])
        }
        "Tile" => {
            let repeats = const_ints(im, n, 1)?
                .ok_or_else(|| im.err(format!("node '{}': Tile without constant repeats", n.name)))?;
            op(Tile { repeats: usize_list(im, n, &repeats, "repeats")? }, &[x])
        }
        "Resize" | "Upsample" => {
            let r = super::resize::lower(im, n, x)?;
            op(r, &[x])
        }
        _ => return Err(unsupported(im, n, "")),
    })
}

/// Integer constants folded through f32 ops must stay exact.
const EXACT_INT: i64 = 1 << 24;

/// Imports one node.
pub(crate) fn node(im: &mut Importer, n: &NodeProto) -> Result<()> {
    let out = match n.output.first() {
        Some(o) if !o.is_empty() => o.clone(),
        _ => return Err(im.err(format!("node '{}' ({}) has no output", n.name, n.op_type))),
    };
    if let Some(c) = super::fold::shape_arithmetic(im, n)? {
        im.vals.insert(out, Val::Const(c));
        return Ok(());
    }
    if let Some(c) = super::fold_int::fold(im, n)? {
        im.vals.insert(out, Val::Const(c));
        return Ok(());
    }
    if let Some(steps) = super::lift_1d::lift(im, n)? {
        return steps.iter().try_for_each(|step| node(im, step));
    }
    if matches!(n.op_type.as_str(), "Resize" | "Upsample")
        && input(n, 0).is_some_and(|x| im.constant(x).is_none())
        && super::resize::lower_nd(im, n, need_input(im, n, 0)?)?
    {
        return Ok(());
    }
    // n-ary Sum / Max / Min / Mean: a chain of binary nodes.
    if matches!(n.op_type.as_str(), "Sum" | "Max" | "Min") && n.input.len() > 2 {
        let mut acc = n.input[0].clone();
        for (k, next) in n.input[1..].iter().enumerate() {
            let last = k + 2 == n.input.len();
            let name = if last { out.clone() } else { format!("{out}::{}{k}", n.op_type) };
            let step = NodeProto {
                input: vec![acc.clone(), next.clone()],
                output: vec![name.clone()],
                name: if last { n.name.clone() } else { format!("{}::{k}", n.name) },
                op_type: n.op_type.clone(),
                ..Default::default()
            };
            node(im, &step)?;
            acc = name;
        }
        return Ok(());
    }
    let lowered = lower(im, n)?;
    let (op, inputs) = match lowered {
        Lowered::Alias(src) => {
            let v = im.val(&src, n)?.clone();
            im.vals.insert(out, v);
            return Ok(());
        }
        Lowered::Op(op, inputs) => (op, inputs),
    };
    let outputs: Vec<String> = n.output.iter().filter(|o| !o.is_empty()).cloned().collect();
    let known = inputs.iter().all(|i| im.constant(i).is_some());
    if known {
        // The inputs' f32 copies are allocated first: reserve them before anything is copied.
        let input_elements: u64 =
            inputs.iter().filter_map(|i| im.constant(i)).map(|c| c.shape().iter().product::<usize>() as u64).sum();
        im.reserve_folded(n, input_elements * 12)?;
    }
    let consts: Option<Vec<Const>> =
        if known { inputs.iter().map(|i| im.constant(i).cloned()).collect() } else { None };
    if let Some(consts) = consts {
        // Everything known: compute now.
        let all_int = consts.iter().all(|c| matches!(c, Const::I(_)));
        if all_int && consts.iter().any(|c| c.to_i64s().is_ok_and(|v| v.iter().any(|x| x.abs() >= EXACT_INT))) {
            return Err(im.err(format!("node '{}': integer constants too large to fold exactly", n.name)));
        }
        let floats: Vec<ArrayD<f32>> = consts.iter().map(Const::to_f32).collect();
        let refs: Vec<&ArrayD<f32>> = floats.iter().collect();
        let shapes: Vec<&[usize]> = refs.iter().map(|t| t.shape()).collect();
        let wrap =
            |source| Error::Graph(crate::error::GraphError::Op { node: n.name.clone(), op: op.op_type(), source });
        let mut elements = 0u64;
        for s in op.output_shapes(&shapes).map_err(wrap)? {
            let count = s.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d.max(1)));
            match count {
                Some(c) if c <= MAX_ELEMENTS => elements += c as u64,
                _ => return Err(im.err(format!("node '{}': folding would make a constant of shape {s:?}", n.name))),
            }
        }
        // f32 results, and their integer form (8 bytes) when the inputs were integers.
        im.reserve_folded(n, elements * if all_int { 12 } else { 4 })?;
        let values = op.forward(&refs).map_err(wrap)?.values;
        // Comparisons give booleans whatever their operands.
        let boolean = matches!(n.op_type.as_str(), "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual");
        for (name, v) in outputs.iter().zip(values) {
            let c = if all_int || boolean {
                let trunc = n.op_type == "Div";
                Const::I(v.mapv(|x| if trunc { x.trunc() as i64 } else { x.round() as i64 }))
            } else {
                Const::F(v)
            };
            im.vals.insert(name.clone(), Val::Const(c));
        }
        return Ok(());
    }
    let ids: Vec<_> = inputs.iter().map(|i| im.value(i, n)).collect::<Result<_>>()?;
    let node_name = if n.name.is_empty() { out.clone() } else { n.name.clone() };
    let names: Vec<&str> = outputs.iter().map(String::as_str).collect();
    let made = im.b.node_with_outputs(&node_name, op, &ids, &names)?;
    for (name, id) in outputs.iter().zip(made) {
        im.vals.insert(name.clone(), Val::Dyn(id));
    }
    Ok(())
}
