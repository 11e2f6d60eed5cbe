//! Lowerings of the element-wise ONNX ops: activations, arithmetic, comparisons, selection.

use super::attrs::Attrs;
use super::constant::Const;
use super::context::{const_floats, first, need_input, op, unsupported, Importer, Lowered, Val};
use super::proto::NodeProto;
use crate::error::Result;
use crate::ops::*;
use ndarray::{ArrayD, IxDyn};

/// A pass-through (Identity, inference-mode Dropout).
pub(super) fn alias(_im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    Ok(Lowered::Alias(first(n).to_string()))
}

/// A one-input op without attributes.
pub(super) fn unary<O: Op<f32> + Default + 'static>(_im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    Ok(op(O::default(), &[first(n)]))
}

/// A two-input op without attributes.
pub(super) fn binary<O: Op<f32> + Default + 'static>(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    Ok(op(O::default(), &[first(n), need_input(im, n, 1)?]))
}

/// Sum / Max / Min of one input is the input; of two, the binary op (longer lists are chained by
/// `convert::node` first).
pub(super) fn variadic<O: Op<f32> + Default + 'static>(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    match n.input.len() {
        1 => alias(im, n),
        2 => binary::<O>(im, n),
        _ => Err(unsupported(im, n, "")),
    }
}

/// ONNX Mean: of one input only (the input).
pub(super) fn mean(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    if n.input.len() == 1 {
        alias(im, n)
    } else {
        Err(unsupported(im, n, ""))
    }
}

/// ONNX LeakyRelu.
pub(super) fn leaky_relu(_im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    Ok(op(LeakyRelu { alpha: Attrs::of(n).float("alpha", 0.01) as f64 }, &[first(n)]))
}

/// ONNX Elu.
pub(super) fn elu(_im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    Ok(op(Elu { alpha: Attrs::of(n).float("alpha", 1.0) as f64 }, &[first(n)]))
}

/// ONNX Where.
pub(super) fn where_select(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    Ok(op(Where, &[first(n), need_input(im, n, 1)?, need_input(im, n, 2)?]))
}

/// ONNX Gelu.
pub(super) fn gelu(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    let tanh = match a.string("approximate", "none").as_str() {
        "none" => false,
        "tanh" => true,
        other => return Err(unsupported(im, n, &format!("approximate '{other}'"))),
    };
    Ok(op(Gelu { tanh }, &[x]))
}

/// ONNX Equal, Less, Greater, LessOrEqual, GreaterOrEqual.
pub(super) fn compare(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let x = first(n);
    Ok(op(Compare(super::fold_int::comparison(&n.op_type)), &[x, need_input(im, n, 1)?]))
}

/// ONNX Selu.
pub(super) fn selu(_im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    let d = Selu::default();
    Ok(op(
        Selu { alpha: a.float("alpha", d.alpha as f32) as f64, gamma: a.float("gamma", d.gamma as f32) as f64 },
        &[x],
    ))
}

/// ONNX HardSigmoid.
pub(super) fn hard_sigmoid(_im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    Ok(op(HardSigmoid { alpha: a.float("alpha", 0.2) as f64, beta: a.float("beta", 0.5) as f64 }, &[x]))
}

/// ONNX Neg.
pub(super) fn neg(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let x = first(n);
    let minus = format!("{}::minus_one", n.output[0]);
    im.vals.insert(minus.clone(), Val::Const(Const::F(ArrayD::from_elem(IxDyn(&[]), -1.0))));
    Ok(op(Mul, &[x, &minus]))
}

/// ONNX Clip.
pub(super) fn clip(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let a = Attrs::of(n);
    let x = first(n);
    let opset = im.opset;
    let (lo, hi) = if opset < 11 {
        (a.float("min", f32::NEG_INFINITY), a.float("max", f32::INFINITY))
    } else {
        let scalar = |i| -> Result<Option<f32>> { Ok(const_floats(im, n, i)?.and_then(|v| v.first().copied())) };
        (scalar(1)?.unwrap_or(f32::NEG_INFINITY), scalar(2)?.unwrap_or(f32::INFINITY))
    };
    Ok(op(Clip { min: lo as f64, max: hi as f64 }, &[x]))
}

/// ONNX PRelu.
pub(super) fn prelu(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let x = first(n);
    let slope = need_input(im, n, 1)?;
    let (xs, ss) = (im.shape(x, n)?, im.shape(slope, n)?);
    if im.opset < 7 && ss.len() == 1 && xs.len() > 2 && ss[0] == xs[1] && ss[0] != xs[xs.len() - 1] {
        // Before opset 7 a 1-D slope is per channel: make it [C, 1, …, 1].
        let mut shape = vec![ss[0] as i64];
        shape.resize(xs.len() - 1, 1);
        let reshaped = format!("{}::per_channel", n.output[0]);
        match im.constant(slope) {
            // An initializer (the usual case): reshaped here, so it stays a constant.
            Some(c) => {
                let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
                let c = Const::F(c.to_f32().into_shape_with_order(IxDyn(&dims)).map_err(|e| im.err(e.to_string()))?);
                im.vals.insert(reshaped.clone(), Val::Const(c));
            }
            None => {
                let id = im.value(slope, n)?;
                let r = im.b.node(&reshaped, Reshape { shape }, &[id])?;
                im.vals.insert(reshaped.clone(), Val::Dyn(r));
            }
        }
        return Ok(Lowered::Op(Box::new(PRelu), vec![x.to_string(), reshaped]));
    }
    Ok(op(PRelu, &[x, slope]))
}
