//! Typed errors. Every error names the node, op, value or shapes involved so that a user can find the culprit.

/// Errors of the engine: building, planning and running a graph, forward and backward.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// An operator rejected its inputs or attributes.
    #[error("node '{node}' ({op}): {source}")]
    Op {
        node: String,
        op: &'static str,
        #[source]
        source: OpError,
    },
    /// A graph input was not bound.
    #[error("graph input '{name}' was not provided (the graph's inputs are: {expected})")]
    MissingInput { name: String, expected: String },
    /// A name was bound that is not a graph input.
    #[error("'{name}' is not an input of this graph (its inputs are: {expected})")]
    NotAnInput { name: String, expected: String },
    /// A bound input has the wrong shape.
    #[error("graph input '{name}' expects shape {expected:?} (any batch size), got {got:?}")]
    InputShape { name: String, expected: Vec<usize>, got: Vec<usize> },
    /// A name that no value of the graph carries.
    #[error("no value named '{name}' in the graph{hint}")]
    UnknownValue { name: String, hint: String },
    /// Two values with the same name.
    #[error("the graph already has a value named '{name}'")]
    DuplicateName { name: String },
    /// `check_finite` found NaN or infinity.
    #[error("{origin} produced a non-finite value (NaN or ±inf) in its output of shape {shape:?}")]
    NonFinite { origin: String, shape: Vec<usize> },
    /// A seed gradient whose shape differs from its value's.
    #[error("seed gradient for '{name}' has shape {got:?}, but the value has shape {expected:?}")]
    SeedShape { name: String, expected: Vec<usize>, got: Vec<usize> },
    /// A value was used in a way the plan did not prepare for.
    #[error("'{name}' is not {role} of this plan; make a plan that names it")]
    NotPlanned { name: String, role: &'static str },
    /// A plan made for a different graph.
    #[error("the plan was made for a different graph")]
    PlanMismatch,
    /// A value the forward pass did not keep (it was freed after its last use).
    #[error("value '{name}' was not kept by the forward pass; list it in the plan's `keep`")]
    NotRetained { name: String },
    /// A device could not run a node (the message names the node and what failed).
    #[error("{0}")]
    Device(String),
    /// A constant replaced by something else, or by a constant of another shape.
    #[error("constant '{name}': {why}")]
    Constant { name: String, why: String },
    /// A value asked of a batch run item by item that is not one item's slice of the batch.
    #[error("value '{name}' has shape {shape:?} for one item: without a batch axis of 1, the items' values cannot be stacked into the batch's")]
    NotPerItem { name: String, shape: Vec<usize> },
    /// One item of a batch run item by item failed: which one (`item` counts from 0; the message from 1), out of how
    /// many.
    #[error("item {} of {items}: {source}", .item + 1)]
    InItem {
        item: usize,
        items: usize,
        #[source]
        source: Box<GraphError>,
    },
}

/// Result type of the engine.
pub type GraphResult<T> = std::result::Result<T, GraphError>;

/// Errors of the application: loading models and inputs, serving explanation and attack requests. Engine errors
/// arrive wrapped, unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine refused a graph, a plan or a pass.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A weight the architecture needs is absent.
    #[error("weights from {origin}: missing tensor '{key}' (the architecture expects shape {expected:?})")]
    MissingWeight { origin: String, key: String, expected: Vec<usize> },
    /// A weight with the wrong shape.
    #[error("weights from {origin}: tensor '{key}' has shape {got:?}, the architecture expects {expected:?}")]
    WeightShape { origin: String, key: String, expected: Vec<usize>, got: Vec<usize> },
    /// Weights that the architecture does not use (probably a different architecture).
    #[error("weights from {origin}: {count} tensors are not used by {arch}, e.g. {examples}")]
    UnexpectedWeights { origin: String, arch: String, count: usize, examples: String },
    /// A weight stored in a type we do not read.
    #[error("weights from {origin}: tensor '{key}' has dtype {dtype}; supported are F32, F16 and BF16")]
    WeightDtype { origin: String, key: String, dtype: String },
    /// A file that is not valid safetensors.
    #[error("{origin}: not a valid safetensors file: {why}")]
    Safetensors { origin: String, why: String },
    /// A file that could not be read or written.
    #[error("{path}: {why}")]
    Io { path: String, why: String },
    /// An image that could not be decoded or is unusable.
    #[error("image {path}: {why}")]
    Image { path: String, why: String },
    /// A `.npy` input that is unusable.
    #[error("tensor file {path}: {why}")]
    Npy { path: String, why: String },
    /// An architecture name we do not know.
    #[error("unknown architecture '{name}' (known: {known})")]
    UnknownArch { name: String, known: String },
    /// An ONNX file that cannot be imported.
    #[error("{origin}: {why}")]
    Onnx { origin: String, why: String },
    /// An ONNX input whose size is symbolic beyond the batch axis, and no shape was given for it.
    #[error(
        "{origin}: input '{input}' has a symbolic size '{dim}' on axis {axis} (shape {shape}): give its shape with \
         --input-shape (e.g. --input-shape {input}=1,3,224,224)"
    )]
    SymbolicInput { origin: String, input: String, axis: usize, dim: String, shape: String },
    /// An ONNX operator the importer does not map.
    #[error("node '{node}': unsupported ONNX op {op} (opset {opset}); supported: {supported}")]
    UnsupportedOp { op: String, node: String, opset: i64, supported: String },
    /// A class index beyond the model's classes.
    #[error("class {class} is out of range: the model has {classes} classes (0..{classes})")]
    ClassOutOfRange { class: usize, classes: usize },
    /// A target layer that cannot be read as maps (not `[N, C, H, W]`, channels-last or a token grid).
    #[error("layer '{layer}' has shape {shape:?}, which a CAM method cannot use: {why}")]
    NotSpatial { layer: String, shape: Vec<usize>, why: String },
    /// A method name we do not know.
    #[error("unknown method '{name}' (known: {known})")]
    UnknownMethod { name: String, known: String },
    /// An argument out of its range or in a form the function does not take; `name` says which (the message
    /// names it in the user's words).
    #[error("{why}")]
    InvalidArgument { name: &'static str, why: String },
    /// A model whose inputs or outputs do not fit what is asked of it (e.g. not an image classifier).
    #[error("{0}")]
    ModelInterface(String),
    /// A combination that is not offered (a method for a kind of model, an option for an output kind).
    #[error("{0}")]
    Unsupported(String),
    /// The target gives nothing to explain (an empty mask, a class predicted nowhere, a zero score to divide by).
    #[error("{0}")]
    NothingToExplain(String),
    /// An input (image, tensor) holding NaN or ±inf.
    #[error("{origin} holds a non-finite value (NaN or ±inf); shape {shape:?}")]
    NonFiniteInput { origin: String, shape: Vec<usize> },
    /// A broken invariant of this library (a bug: please report it).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Errors raised by a single operator; the executor wraps them into [`GraphError::Op`] with the node's name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    #[error("expected {expected} inputs, got {got}")]
    Arity { expected: String, got: usize },
    #[error("{what}; input shapes {}", fmt_shapes(shapes))]
    Shape { what: String, shapes: Vec<Vec<usize>> },
    #[error("attribute '{name}': {why}")]
    Attribute { name: &'static str, why: String },
    #[error("{0}")]
    Invalid(String),
}

impl OpError {
    /// A shape error quoting all input shapes.
    pub fn shape(what: impl Into<String>, shapes: &[&[usize]]) -> Self {
        OpError::Shape { what: what.into(), shapes: shapes.iter().map(|s| s.to_vec()).collect() }
    }

    /// An attribute error.
    pub fn attribute(name: &'static str, why: impl Into<String>) -> Self {
        OpError::Attribute { name, why: why.into() }
    }
}

/// Result type of the application.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shapes as `[2, 3], [3]` for messages.
pub fn fmt_shapes(shapes: &[Vec<usize>]) -> String {
    shapes.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
}
