//! One ONNX node → engine ops (through the table of per-op lowerings), or a folded constant when every input is
//! known.

use super::constant::{Const, MAX_ELEMENTS};
use super::context::{input, need_input, unsupported, Importer, Lowered, Val};
use super::lower_layer as layer;
use super::lower_pointwise as pw;
use super::lower_shape as shape;
use super::proto::NodeProto;
use crate::error::{Error, Result};
use crate::ops::*;
use ndarray::ArrayD;

/// How one ONNX op becomes engine ops.
type Lowering = fn(&mut Importer, &NodeProto) -> Result<Lowered>;

/// Every ONNX op that lowers to engine ops, and the function that does it (ops that only fold — Shape, Constant,
/// Range, … — are in `fold` and `fold_int`).
const LOWERINGS: &[(&str, Lowering)] = &[
    ("Identity", pw::alias),
    ("Dropout", pw::alias),
    ("Relu", pw::unary::<Relu>),
    ("Sigmoid", pw::unary::<Sigmoid>),
    ("Tanh", pw::unary::<Tanh>),
    ("Exp", pw::unary::<Exp>),
    ("Abs", pw::unary::<Abs>),
    ("Erf", pw::unary::<Erf>),
    ("Sqrt", pw::unary::<Sqrt>),
    ("Softplus", pw::unary::<Softplus>),
    ("HardSwish", pw::unary::<HardSwish>),
    ("Gelu", pw::gelu),
    ("LeakyRelu", pw::leaky_relu),
    ("Elu", pw::elu),
    ("Selu", pw::selu),
    ("HardSigmoid", pw::hard_sigmoid),
    ("Neg", pw::neg),
    ("Clip", pw::clip),
    ("PRelu", pw::prelu),
    ("Where", pw::where_select),
    ("Equal", pw::compare),
    ("Less", pw::compare),
    ("Greater", pw::compare),
    ("LessOrEqual", pw::compare),
    ("GreaterOrEqual", pw::compare),
    ("Add", pw::binary::<Add>),
    ("Sub", pw::binary::<Sub>),
    ("Mul", pw::binary::<Mul>),
    ("Div", pw::binary::<Div>),
    ("Pow", pw::binary::<Pow>),
    ("Sum", pw::variadic::<Add>),
    ("Max", pw::variadic::<Max>),
    ("Min", pw::variadic::<Min>),
    ("Mean", pw::mean),
    ("MatMul", pw::binary::<MatMul>),
    ("Gemm", layer::gemm),
    ("Einsum", layer::einsum),
    ("Conv", layer::conv),
    ("ConvTranspose", layer::conv_transpose),
    ("MaxPool", layer::max_pool),
    ("AveragePool", layer::average_pool),
    ("GlobalAveragePool", pw::unary::<GlobalAveragePool>),
    ("GlobalMaxPool", pw::unary::<GlobalMaxPool>),
    ("BatchNormalization", layer::batch_normalization),
    ("InstanceNormalization", layer::instance_normalization),
    ("LayerNormalization", layer::layer_normalization),
    ("LRN", layer::lrn),
    ("Softmax", layer::softmax),
    ("LogSoftmax", layer::log_softmax),
    ("Flatten", shape::flatten),
    ("Reshape", shape::reshape),
    ("Transpose", shape::transpose),
    ("Squeeze", shape::squeeze),
    ("Unsqueeze", shape::unsqueeze),
    ("Concat", shape::concat),
    ("Split", shape::split),
    ("Pad", shape::pad),
    ("ReduceMean", shape::reduce),
    ("ReduceSum", shape::reduce),
    ("Slice", shape::slice),
    ("Gather", shape::gather),
    ("Expand", shape::expand),
    ("Tile", shape::tile),
    ("Resize", shape::resize),
    ("Upsample", shape::resize),
];

/// Builds the engine op for a node whose value inputs may be dynamic.
fn lower(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    match LOWERINGS.iter().find(|(name, _)| *name == n.op_type) {
        Some((_, lowering)) => lowering(im, n),
        None => Err(unsupported(im, n, "")),
    }
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
    // Mean of several inputs: their Sum times 1/count.
    if n.op_type == "Mean" && n.input.len() >= 2 {
        let sum = format!("{out}::sum");
        let total = NodeProto {
            input: n.input.clone(),
            output: vec![sum.clone()],
            name: format!("{}::sum", n.name),
            op_type: "Sum".into(),
            ..Default::default()
        };
        node(im, &total)?;
        let scale = format!("{out}::inverse_count");
        let inverse = ArrayD::from_elem(ndarray::IxDyn(&[]), 1.0 / n.input.len() as f32);
        im.vals.insert(scale.clone(), Val::Const(Const::F(inverse)));
        let step = NodeProto {
            input: vec![sum, scale],
            output: vec![out],
            name: n.name.clone(),
            op_type: "Mul".into(),
            ..Default::default()
        };
        return node(im, &step);
    }
    // n-ary Sum / Max / Min: a chain of binary nodes.
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

#[cfg(test)]
mod tests {
    use super::LOWERINGS;
    use crate::onnx::SUPPORTED_OPS;

    /// The table and the published list agree: every lowering is listed as supported, and no op has two.
    #[test]
    fn every_lowering_is_a_supported_op_once() {
        for (i, (name, _)) in LOWERINGS.iter().enumerate() {
            assert!(SUPPORTED_OPS.contains(name), "{name} lowers but is not in SUPPORTED_OPS");
            assert!(LOWERINGS[..i].iter().all(|(other, _)| other != name), "{name} has two lowerings");
        }
    }
}
