//! The importer's working state and the helpers every lowering reads nodes with: what the per-op lowerings
//! (`convert`, `fold`, `fold_int`, `resize`, `lower_3d`, `lift_1d`) share, so that none of them depends on another's
//! module and `import` drives them all.

use super::constant::Const;
use super::proto::NodeProto;
use crate::error::{Error, Result};
use crate::graph::{GraphBuilder, ValueId};
use crate::ops::Op;
use crate::tensor::HalfTensor;
use gradcam_kernels::Precision;
use std::collections::HashMap;
use std::path::Path;

/// ONNX operators the importer maps (or folds).
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Div",
    "Dropout",
    "Einsum",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Gather",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InstanceNormalization",
    "LRN",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "LogSoftmax",
    "MatMul",
    "Max",
    "Mean",
    "MaxPool",
    "Min",
    "Mod",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "Range",
    "ReduceMean",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "ScatterND",
    "Selu",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Softplus",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Tile",
    "Transpose",
    "Unsqueeze",
    "Upsample",
    "Where",
    "Xor",
];

/// A value during import.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Const(Const),
    Dyn(ValueId),
}

pub(crate) struct Importer<'a> {
    pub b: GraphBuilder<f32>,
    pub vals: HashMap<String, Val>,
    pub opset: i64,
    pub origin: &'a str,
    pub dir: Option<&'a Path>,
    /// How weights (float constants of rank ≥ 2) are held in the graph.
    pub weights: Precision,
    /// Bytes that constant folding may still allocate: a tiny file must not compute gigabytes at import time
    /// (a `Range` or `ConstantOfShape` of 2^27 elements feeding the graph).
    pub fold_budget: u64,
}

impl Importer<'_> {
    pub fn err(&self, why: impl Into<String>) -> Error {
        Error::Onnx { origin: self.origin.to_string(), why: why.into() }
    }

    /// Takes `bytes` from the folding budget before node `node` allocates them, or refuses.
    pub fn reserve_folded(&mut self, node: &NodeProto, bytes: u64) -> Result<()> {
        if bytes > self.fold_budget {
            return Err(self.err(format!(
                "node '{}' ({}): folding it would take {:.0} MB, beyond what is left of the import budget ({:.0} MB; \
                 --max-memory)",
                if node.name.is_empty() { node.output.first().map_or("", String::as_str) } else { &node.name },
                node.op_type,
                bytes as f64 / 1e6,
                self.fold_budget as f64 / 1e6
            )));
        }
        self.fold_budget -= bytes;
        Ok(())
    }

    pub fn val(&self, name: &str, node: &NodeProto) -> Result<&Val> {
        self.vals
            .get(name)
            .ok_or_else(|| self.err(format!("node '{}' reads '{name}', which nothing produces", node.name)))
    }

    /// The constant `name`, if it is one.
    pub fn constant(&self, name: &str) -> Option<&Const> {
        match self.vals.get(name) {
            Some(Val::Const(c)) => Some(c),
            _ => None,
        }
    }

    /// `name` as a graph value (placing a constant in the graph if needed).
    ///
    /// A placed constant moves into the graph — the importer keeps no copy and from then on treats it as a graph
    /// value — so each weight exists once.
    pub fn value(&mut self, name: &str, node: &NodeProto) -> Result<ValueId> {
        let slot = match self.vals.get_mut(name) {
            Some(slot) => slot,
            None => return Err(self.err(format!("node '{}' reads '{name}', which nothing produces", node.name))),
        };
        let c = match slot {
            Val::Dyn(id) => return Ok(*id),
            Val::Const(c) => std::mem::replace(c, Const::I(ndarray::ArrayD::zeros(ndarray::IxDyn(&[0])))),
        };
        let id = match c {
            Const::H(h) => self.b.constant_half(name, h)?,
            // A weight folded at import time (a transposed or reshaped initializer) is held like the others.
            Const::F(a) if a.ndim() >= 2 => match HalfTensor::from_f32(&a, self.weights) {
                None => self.b.constant(name, a)?,
                Some(Ok(h)) => self.b.constant_half(name, h)?,
                Some(Err(i)) => {
                    let why = format!("value {i} of '{name}' is beyond the range of {}", self.weights);
                    return Err(self.err(format!("{why} (largest finite: 65504); load it with --weights bf16 or f32")));
                }
            },
            Const::F(a) => self.b.constant(name, a)?,
            Const::I(a) => self.b.constant(name, a.mapv(|v| v as f32))?,
        };
        self.vals.insert(name.to_string(), Val::Dyn(id));
        Ok(id)
    }

    /// The shape of `name`, known statically.
    pub fn shape(&self, name: &str, node: &NodeProto) -> Result<Vec<usize>> {
        Ok(match self.val(name, node)? {
            Val::Const(c) => c.shape().to_vec(),
            Val::Dyn(id) => self.b.shape(*id).to_vec(),
        })
    }
}

/// A lowered node: an engine op over the named data inputs, or a pass-through.
pub(crate) enum Lowered {
    Op(Box<dyn Op<f32>>, Vec<String>),
    Alias(String),
}

pub(crate) fn op(o: impl Op<f32> + 'static, inputs: &[&str]) -> Lowered {
    Lowered::Op(Box::new(o), inputs.iter().map(|s| s.to_string()).collect())
}

pub(crate) fn unsupported(im: &Importer, n: &NodeProto, why: &str) -> Error {
    let op = if why.is_empty() { n.op_type.clone() } else { format!("{} ({why})", n.op_type) };
    Error::UnsupportedOp { op, node: n.name.clone(), opset: im.opset, supported: SUPPORTED_OPS.join(", ") }
}

/// The node's first input, or "" (a lowering that needs it finds it missing when it asks for its shape or value).
pub(crate) fn first(n: &NodeProto) -> &str {
    input(n, 0).unwrap_or("")
}

/// Input `i` of the node, if present and non-empty.
pub(crate) fn input(n: &NodeProto, i: usize) -> Option<&str> {
    n.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
}

pub(crate) fn need_input<'n>(im: &Importer, n: &'n NodeProto, i: usize) -> Result<&'n str> {
    input(n, i).ok_or_else(|| im.err(format!("node '{}' ({}) lacks input {i}", n.name, n.op_type)))
}

/// Integer values of a constant input (shapes, axes, pads…).
pub(crate) fn const_ints(im: &Importer, n: &NodeProto, i: usize) -> Result<Option<Vec<i64>>> {
    let Some(name) = input(n, i) else { return Ok(None) };
    let c = im.constant(name).ok_or_else(|| unsupported(im, n, &format!("input '{name}' must be a constant")))?;
    c.to_i64s().map(Some).map_err(|e| im.err(format!("node '{}': input '{name}': {e}", n.name)))
}

pub(crate) fn const_floats(im: &Importer, n: &NodeProto, i: usize) -> Result<Option<Vec<f32>>> {
    let Some(name) = input(n, i) else { return Ok(None) };
    let c = im.constant(name).ok_or_else(|| unsupported(im, n, &format!("input '{name}' must be a constant")))?;
    Ok(Some(c.to_f32().iter().copied().collect()))
}

/// Largest window size, stride, dilation or pad accepted (16 Mi): no real model comes near it, and every sum or
/// product of a few of them stays far from overflow.
const MAX_WINDOW_ATTR: usize = 1 << 24;

pub(crate) fn usize_list(im: &Importer, n: &NodeProto, v: &[i64], what: &str) -> Result<Vec<usize>> {
    v.iter()
        .map(|&x| {
            let u = usize::try_from(x)
                .map_err(|_| im.err(format!("node '{}': {what} {v:?} has a negative entry", n.name)))?;
            if u > MAX_WINDOW_ATTR {
                return Err(im.err(format!("node '{}': {what} {v:?} has an entry above {MAX_WINDOW_ATTR}", n.name)));
            }
            Ok(u)
        })
        .collect()
}
