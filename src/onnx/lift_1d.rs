//! 1-D convolutions and pools (`[N, C, L]`) run as their 2-D forms on `[N, C, 1, L]`: the input (and a
//! convolution's weight) gain a unit height, the window attributes a unit first axis, and the output loses the
//! height again. Every 2-D kernel, fusion and backward rule then serves 1-D models; a constant weight is reshaped at
//! import, so it stays a packable constant.

use super::constant::Const;
use super::context::{Importer, Val};
use super::proto::{AttributeProto, NodeProto};
use crate::error::Result;
use ndarray::{ArrayD, IxDyn};

/// The window ops that lift.
const LIFTED: [&str; 4] = ["Conv", "ConvTranspose", "MaxPool", "AveragePool"];

/// A Reshape node of `input` to `shape` (ONNX semantics: 0 copies, -1 infers) named `output`, for the caller to
/// lower (its shape constant is already in place).
pub(crate) fn reshape(im: &mut Importer, n: &NodeProto, input: &str, output: &str, shape: &[i64]) -> NodeProto {
    let shape_name = format!("{output}::shape");
    let dims = ArrayD::from_shape_vec(IxDyn(&[shape.len()]), shape.to_vec()).expect("1-D shape");
    im.vals.insert(shape_name.clone(), Val::Const(Const::I(dims)));
    NodeProto {
        input: vec![input.to_string(), shape_name],
        output: vec![output.to_string()],
        name: format!("{}::{output}", n.name),
        op_type: "Reshape".into(),
        ..Default::default()
    }
}

/// The 2-D form of a 1-D window attribute: a unit (or zero) first axis in front.
fn lifted_attribute(a: &AttributeProto) -> AttributeProto {
    let mut a = a.clone();
    match a.name.as_str() {
        "kernel_shape" | "strides" | "dilations" if a.ints.len() == 1 => a.ints.insert(0, 1),
        "output_padding" if a.ints.len() == 1 => a.ints.insert(0, 0),
        "output_shape" if a.ints.len() == 1 => a.ints.insert(0, 1),
        // [begin, end] → [top = 0, begin, bottom = 0, end].
        "pads" if a.ints.len() == 2 => a.ints = vec![0, a.ints[0], 0, a.ints[1]],
        _ => {}
    }
    a
}

/// The nodes that import `n` through its 2-D form, in order, when it is a 1-D window op (`None` when it is not
/// one): reshapes to `[N, C, 1, L]`, the 2-D op, a reshape back.
pub(crate) fn lift(im: &mut Importer, n: &NodeProto) -> Result<Option<Vec<NodeProto>>> {
    if !LIFTED.contains(&n.op_type.as_str()) || n.input.is_empty() || n.output.len() != 1 {
        return Ok(None);
    }
    if im.shape(&n.input[0], n)?.len() != 3 {
        return Ok(None);
    }
    let mut steps = Vec::with_capacity(4);
    let out = n.output[0].clone();
    let mut inputs = n.input.clone();
    let x2d = format!("{out}::as_2d");
    steps.push(reshape(im, n, &n.input[0], &x2d, &[0, 0, 1, -1]));
    inputs[0] = x2d;
    if matches!(n.op_type.as_str(), "Conv" | "ConvTranspose") && inputs.len() > 1 && !inputs[1].is_empty() {
        let w2d = format!("{out}::weight_2d");
        steps.push(reshape(im, n, &n.input[1], &w2d, &[0, 0, 1, -1]));
        inputs[1] = w2d;
    }
    let flat = format!("{out}::2d");
    let lifted = NodeProto {
        input: inputs,
        output: vec![flat.clone()],
        name: n.name.clone(),
        op_type: n.op_type.clone(),
        domain: n.domain.clone(),
        attribute: n.attribute.iter().map(lifted_attribute).collect(),
    };
    steps.push(lifted);
    steps.push(reshape(im, n, &flat, &out, &[0, 0, -1]));
    Ok(Some(steps))
}
