//! Reading an ONNX model into an engine graph.

use super::constant::{checked_shape, decode, decode_with, Const, FileRange};
use super::context::{Importer, Val, SUPPORTED_OPS};
use super::proto::{ModelProto, NodeProto};
use super::stream::{self, RawRange};
use crate::error::{Error, Result};
use crate::graph::{Graph, GraphBuilder};
use gradcam_kernels::Precision;
use prost::Message;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;

/// An imported model.
#[derive(Debug)]
pub struct OnnxGraph {
    pub graph: Graph<f32>,
    /// Non-initializer inputs, in graph order.
    pub inputs: Vec<String>,
    /// Graph outputs.
    pub outputs: Vec<String>,
    /// Default-domain opset.
    pub opset: i64,
}

/// Orders nodes so that every node comes after the producers of its inputs; a cycle is an error naming its nodes.
/// Names of the values that `outputs` depend on (themselves included), walking back through `nodes`.
fn needed_values<'a>(nodes: &'a [NodeProto], outputs: impl Iterator<Item = &'a str>) -> HashSet<&'a str> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in &n.output {
            producer.entry(o.as_str()).or_insert(i);
        }
    }
    let mut needed: HashSet<&str> = HashSet::new();
    let mut stack: Vec<&str> = outputs.collect();
    let mut visited = vec![false; nodes.len()];
    while let Some(v) = stack.pop() {
        if !needed.insert(v) {
            continue;
        }
        if let Some(&i) = producer.get(v) {
            if !std::mem::replace(&mut visited[i], true) {
                stack.extend(nodes[i].input.iter().map(String::as_str).filter(|s| !s.is_empty()));
            }
        }
    }
    needed
}

fn topological(nodes: &[NodeProto], known: &HashSet<String>, origin: &str) -> Result<Vec<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if producer.insert(o, i).is_some() || known.contains(o) {
                return Err(Error::Onnx { origin: origin.into(), why: format!("value '{o}' is produced twice") });
            }
        }
    }
    let mut pending = vec![0usize; nodes.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            if let Some(&p) = producer.get(inp.as_str()) {
                pending[i] += 1;
                consumers[p].push(i);
            } else if !known.contains(inp) {
                return Err(Error::Onnx {
                    origin: origin.into(),
                    why: format!("node '{}' ({}) reads '{inp}', which is neither an input, an initializer nor produced by a node", n.name, n.op_type),
                });
            }
        }
    }
    let mut queue: VecDeque<usize> = (0..nodes.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = queue.pop_front() {
        order.push(i);
        for &c in &consumers[i] {
            pending[c] -= 1;
            if pending[c] == 0 {
                queue.push_back(c);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck: Vec<&str> =
            (0..nodes.len()).filter(|&i| pending[i] > 0).take(5).map(|i| nodes[i].name.as_str()).collect();
        return Err(Error::Onnx {
            origin: origin.into(),
            why: format!("the graph has a cycle through nodes {stuck:?}"),
        });
    }
    Ok(order)
}

/// Parses an ONNX model from bytes. `dir` is where external data files live.
pub fn parse(bytes: &[u8], dir: Option<&Path>, origin: &str) -> Result<OnnxGraph> {
    parse_with(bytes, None, dir, origin, &ImportOptions::default())
}

/// How an ONNX file is imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// How weights (float initializers and folded constants of rank ≥ 2) are held.
    pub weights: Precision,
    /// Most bytes constant folding may allocate beyond the size of the file's own weights (default 1 GiB, the
    /// default headroom of `--max-memory`): folding a weight (a transposed initializer) is always allowed, a tiny
    /// file computing gigabytes is not.
    pub fold_budget: u64,
    /// Shapes for inputs whose sizes are symbolic (`--input-shape`): `(Some(name), shape)` for a named input;
    /// unnamed ones `(None, shape)` go to the inputs in order. A given shape must agree with the input's fixed sizes.
    pub input_shapes: Vec<(Option<String>, Vec<usize>)>,
    /// Signal inputs `[N, C, L]` enter as `[N, C, 1, L]` (graph input `<name>::as_2d`, reshaped back to the ONNX
    /// input): the explanation methods then treat a signal as a one-row image.
    pub signals_as_images: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            weights: Precision::F32,
            fold_budget: 1 << 30,
            input_shapes: Vec::new(),
            signals_as_images: false,
        }
    }
}

/// An input's shape: the given one where the model's sizes are symbolic (checked against its fixed sizes), else
/// the fixed sizes with a symbolic batch taken as 1.
fn resolve_input_shape(
    origin: &str,
    name: &str,
    dims: &[super::proto::Dimension],
    given: Option<&[usize]>,
) -> Result<Vec<usize>> {
    let shown = || {
        let parts: Vec<String> = dims
            .iter()
            .map(|d| match (d.dim_value, &d.dim_param) {
                (Some(v), _) => v.to_string(),
                (None, Some(p)) => p.clone(),
                (None, None) => "?".into(),
            })
            .collect();
        format!("[{}]", parts.join(", "))
    };
    if let Some(given) = given {
        let agrees = given.len() == dims.len()
            && dims.iter().zip(given).all(|(d, &g)| d.dim_value.is_none_or(|v| v == g as i64));
        if !agrees || given.contains(&0) {
            return Err(Error::Onnx {
                origin: origin.into(),
                why: format!("--input-shape {given:?} does not fit input '{name}' of shape {}", shown()),
            });
        }
        let raw: Vec<i64> = given.iter().map(|&g| g as i64).collect();
        return checked_shape(&raw, &format!("input '{name}'"))
            .map_err(|why| Error::Onnx { origin: origin.into(), why });
    }
    // A symbolic batch (axis 0, "N") is taken as 1 — any batch runs. A symbolic size elsewhere would silently
    // become 1 (an image of 1 × 1 pixels): it must be given.
    if let Some((axis, d)) = dims.iter().enumerate().skip(1).find(|(_, d)| d.dim_value.is_none()) {
        return Err(Error::SymbolicInput {
            origin: origin.into(),
            input: name.into(),
            axis,
            dim: d.dim_param.clone().unwrap_or_else(|| "?".into()),
            shape: shown(),
        });
    }
    let raw: Vec<i64> = dims.iter().map(|d| d.dim_value.unwrap_or(1)).collect();
    checked_shape(&raw, &format!("input '{name}'")).map_err(|why| Error::Onnx { origin: origin.into(), why })
}

/// [`parse`] of a message whose initializers' raw data were left in a file (`raw.1[i]`: where initializer `i`'s
/// bytes are in file `raw.0`); each weight is read from there straight into its tensor, which then moves into the
/// graph, so every weight exists once.
fn parse_with(
    bytes: &[u8],
    raw: Option<(&Path, &[Option<RawRange>])>,
    dir: Option<&Path>,
    origin: &str,
    options: &ImportOptions,
) -> Result<OnnxGraph> {
    let weights = options.weights;
    let model = ModelProto::decode(bytes)
        .map_err(|e| Error::Onnx { origin: origin.into(), why: format!("not a valid ONNX protobuf: {e}") })?;
    let graph =
        model.graph.ok_or_else(|| Error::Onnx { origin: origin.into(), why: "the model has no graph".into() })?;
    let opset =
        model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(1, |o| o.version);
    if !(1..=23).contains(&opset) {
        return Err(Error::Onnx {
            origin: origin.into(),
            why: format!("opset {opset} is not supported (1 to 23 are)"),
        });
    }
    let mut im = Importer {
        b: GraphBuilder::new(),
        vals: HashMap::new(),
        opset,
        origin,
        dir,
        weights,
        fold_budget: options.fold_budget,
    };
    // Only what the graph outputs depend on is decoded or converted: an unused initializer or node (a huge
    // ConstantOfShape feeding nothing) costs nothing.
    let needed = needed_values(&graph.node, graph.output.iter().map(|o| o.name.as_str()));
    for (i, t) in graph.initializer.iter().enumerate() {
        if !needed.contains(t.name.as_str()) {
            continue;
        }
        let in_file = raw.and_then(|(path, ranges)| {
            let (offset, length) = ranges.get(i).copied().flatten()?;
            Some(FileRange { path: path.to_path_buf(), offset, length })
        });
        let c = decode_with(t, in_file, dir, origin, weights)?;
        // NaN weights would make every output NaN (±∞ is kept: attention masks use it).
        let has_nan = match &c {
            Const::F(a) => a.iter().any(|v| v.is_nan()),
            Const::H(h) => (0..h.values().len()).any(|i| h.values().get(i).is_nan()),
            Const::I(_) => false,
        };
        if has_nan {
            return Err(im.err(format!("initializer '{}' holds NaN values", t.name)));
        }
        let element_bytes = if matches!(c, Const::I(_)) { 8 } else { 4 };
        im.fold_budget = im.fold_budget.saturating_add(c.shape().iter().product::<usize>() as u64 * element_bytes);
        im.vals.insert(t.name.clone(), Val::Const(c));
    }
    let mut inputs = Vec::new();
    let mut unnamed_used = 0;
    for vi in &graph.input {
        // Old exporters list initializers among the inputs too (used or not): they are not inputs.
        if im.vals.contains_key(&vi.name) || graph.initializer.iter().any(|t| t.name == vi.name) {
            continue;
        }
        let dims = vi.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).and_then(|t| t.shape.as_ref());
        let dims = dims.ok_or_else(|| im.err(format!("input '{}' has no tensor shape", vi.name)))?;
        let named = options.input_shapes.iter().find(|(n, _)| n.as_deref() == Some(vi.name.as_str()));
        let given = match named {
            Some((_, s)) => Some(s.as_slice()),
            None => {
                // Unnamed shapes go, in order, to the inputs no shape names.
                let next = options.input_shapes.iter().filter(|(n, _)| n.is_none()).nth(unnamed_used);
                unnamed_used += usize::from(next.is_some());
                next.map(|(_, s)| s.as_slice())
            }
        };
        let shape = resolve_input_shape(origin, &vi.name, &dims.dim, given)?;
        if let (true, &[n, c, l]) = (options.signals_as_images, shape.as_slice()) {
            let lifted = format!("{}::as_2d", vi.name);
            let id = im.b.input(&lifted, &[n, c, 1, l])?;
            im.vals.insert(lifted.clone(), Val::Dyn(id));
            let at = NodeProto { name: lifted.clone(), ..Default::default() };
            let step = super::lift_1d::reshape(&mut im, &at, &lifted, &vi.name, &[0, 0, -1]);
            super::convert::node(&mut im, &step)?;
            inputs.push(lifted);
            continue;
        }
        let id = im.b.input(&vi.name, &shape)?;
        im.vals.insert(vi.name.clone(), Val::Dyn(id));
        inputs.push(vi.name.clone());
    }
    // Initializers left undecoded still count as known values (the nodes reading them are skipped too).
    let known: HashSet<String> =
        im.vals.keys().cloned().chain(graph.initializer.iter().map(|t| t.name.clone())).collect();
    let order = topological(&graph.node, &known, origin)?;
    for i in order {
        let node = &graph.node[i];
        if !node.output.iter().any(|o| needed.contains(o.as_str())) {
            continue;
        }
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(Error::UnsupportedOp {
                op: format!("{}::{}", node.domain, node.op_type),
                node: node.name.clone(),
                opset,
                supported: SUPPORTED_OPS.join(", "),
            });
        }
        super::convert::node(&mut im, node)?;
    }
    let mut outputs = Vec::new();
    for vi in &graph.output {
        let node = NodeProto { name: "graph output".into(), ..Default::default() };
        let id = im.value(&vi.name, &node)?;
        im.b.output(id);
        outputs.push(vi.name.clone());
    }
    let mut graph = im.b.build();
    // An export traced at a fixed batch takes any batch where its reshapes allow it (see the method).
    graph.untie_batch_from_reshapes();
    Ok(OnnxGraph { graph, inputs, outputs, opset })
}

/// Loads an `.onnx` file (external data is read from beside it).
pub fn load(path: &Path) -> Result<OnnxGraph> {
    load_with(path, Precision::F32)
}

/// [`load`], with weights (float initializers and folded constants of rank ≥ 2) held in `weights`: read from the
/// file straight into 16 bits when asked to, so the model never exists whole in f32.
pub fn load_with(path: &Path, weights: Precision) -> Result<OnnxGraph> {
    load_with_options(path, &ImportOptions { weights, ..ImportOptions::default() })
}

/// [`load`] with all import options.
pub fn load_with_options(path: &Path, options: &ImportOptions) -> Result<OnnxGraph> {
    let shown = path.display().to_string();
    let file = crate::input::open_regular(path).map_err(|e| Error::Io { path: shown.clone(), why: e.to_string() })?;
    let pruned = stream::prune(file)
        .map_err(|why| Error::Onnx { origin: shown.clone(), why: format!("not a valid ONNX protobuf: {why}") })?;
    parse_with(&pruned.message, Some((path, &pruned.raw)), path.parent(), &shown, options)
}

/// Reads a serialized `TensorProto` (`input_0.pb`, `output_0.pb` of the ONNX test data).
pub fn read_tensor(path: &Path) -> Result<Const> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: shown.clone(), why: e.to_string() })?;
    let t = super::proto::TensorProto::decode(bytes.as_slice())
        .map_err(|e| Error::Onnx { origin: shown.clone(), why: format!("not a TensorProto: {e}") })?;
    decode(&t, path.parent(), &shown)
}
